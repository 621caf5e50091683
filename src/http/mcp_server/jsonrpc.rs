//! What the layers in front of rmcp read from an MCP request's JSON-RPC body (a message or a
//! batch): each message's method and, for `tools/call`, the tool's name. The scope gate needs the
//! tools' scopes, the trace the methods, and the choice of rmcp service ([`Route`]) whether the
//! request opens a session.

use super::tool_scopes::ToolScopes;
use crate::oauth::scope::ScopeSet;
use serde::Deserialize;

/// Which rmcp service serves a request: the stateful one (MCP sessions) or the stateless one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Stateful,
    Stateless,
}

/// What the layers read from a JSON-RPC body: each message's method and, for `tools/call`,
/// the tool's name.
pub struct Rpcs(Vec<(Option<String>, Option<String>)>);

impl Rpcs {
    pub fn parse(body: &[u8]) -> Option<Rpcs> {
        #[derive(Deserialize)]
        struct Params {
            name: Option<serde_json::Value>,
        }
        #[derive(Deserialize)]
        struct Rpc {
            method: Option<String>,
            params: Option<Params>,
        }
        fn one(rpc: Rpc) -> (Option<String>, Option<String>) {
            let name = rpc
                .params
                .and_then(|p| p.name)
                .and_then(|n| n.as_str().map(str::to_string));
            (rpc.method, name)
        }
        if let Ok(rpc) = serde_json::from_slice::<Rpc>(body) {
            return Some(Rpcs(vec![one(rpc)]));
        }
        serde_json::from_slice::<Vec<Rpc>>(body)
            .ok()
            .map(|batch| Rpcs(batch.into_iter().map(one).collect()))
    }

    pub fn has(&self, method: &str) -> bool {
        self.0.iter().any(|(m, _)| m.as_deref() == Some(method))
    }

    /// The scopes the tools called need, from `map`; a tool the map does not name needs nothing
    /// here.
    pub fn tool_scopes(&self, map: &ToolScopes) -> ScopeSet {
        ScopeSet::from_names(
            self.0
                .iter()
                .filter(|(m, _)| m.as_deref() == Some("tools/call"))
                .filter_map(|(_, name)| name.as_deref().and_then(|n| map.scope_of(n)))
                .map(str::to_string),
        )
    }

    /// For the trace: `initialize`, `tools/call greet`, ...
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|(method, name)| match (method, name) {
                (Some(method), Some(name)) if method == "tools/call" => {
                    format!("{method} {}", name.chars().take(64).collect::<String>())
                }
                (Some(method), _) => method.chars().take(64).collect(),
                (None, _) => "(response)".into(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_cases() {
        let call = |tool: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
            )
        };
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#;
        let batch = format!(
            "[{init},{},{}]",
            call("save_note"),
            r#"{"jsonrpc":"2.0","id":5,"result":{}}"#
        );
        // (body, read at all, opens a session, tools' scopes, trace)
        for (body, read, opens, scopes, trace) in [
            (call("greet"), true, false, "mcp.read", "tools/call greet"),
            (
                call("save_note"),
                true,
                false,
                "mcp.write",
                "tools/call save_note",
            ),
            (
                call("no_such_tool"),
                true,
                false,
                "",
                "tools/call no_such_tool",
            ),
            (init.to_string(), true, true, "", "initialize"),
            (
                batch,
                true,
                true,
                "mcp.write",
                "initialize,tools/call save_note,(response)",
            ),
            (
                r#"{"method":"tools/call","params":{"name":7}}"#.to_string(),
                true,
                false,
                "",
                "tools/call",
            ),
            ("not json".to_string(), false, false, "", ""),
            (r#""a string""#.to_string(), false, false, "", ""),
        ] {
            let rpcs = Rpcs::parse(body.as_bytes());
            assert_eq!(rpcs.is_some(), read, "{body}");
            let Some(rpcs) = rpcs else { continue };
            assert_eq!(rpcs.has("initialize"), opens, "{body}");
            let map = super::super::tools::tool_scopes();
            assert_eq!(rpcs.tool_scopes(&map).to_string(), scopes, "{body}");
            assert_eq!(rpcs.describe(), trace, "{body}");
        }
    }
}
