//! [`ToolScopes`]: the scope each tool needs, supplied by whoever serves the tools. The scope
//! gate refuses a `tools/call` whose token lacks its tool's scope with 403 `insufficient_scope`
//! before the tool runs; listing tools, and calling a tool the map does not name, need only the
//! baseline scopes (`McpSettings::required_scopes`). The 401 challenge and the protected
//! resource metadata name the baseline and every scope here, so a client that authorizes once
//! can call every tool.

#![warn(missing_docs)]

use crate::oauth::scope::ScopeSet;

/// The scope each tool needs, by tool name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolScopes(Vec<(String, String)>);

impl ToolScopes {
    /// No tool needs more than the baseline scopes.
    pub fn new() -> Self {
        ToolScopes::default()
    }

    /// Adds (or replaces) the scope `tool` needs.
    pub fn tool(mut self, tool: impl Into<String>, scope: impl Into<String>) -> Self {
        let (tool, scope) = (tool.into(), scope.into());
        match self.0.iter_mut().find(|(name, _)| *name == tool) {
            Some(entry) => entry.1 = scope,
            None => self.0.push((tool, scope)),
        }
        self
    }

    /// The scope `tool` needs beyond the baseline, if the map names one.
    pub fn scope_of(&self, tool: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == tool)
            .map(|(_, scope)| scope.as_str())
    }

    /// Every scope a tool of the map needs.
    pub fn all(&self) -> ScopeSet {
        ScopeSet::from_names(self.0.iter().map(|(_, scope)| scope.clone()))
    }
}

impl<T: Into<String>, S: Into<String>> FromIterator<(T, S)> for ToolScopes {
    fn from_iter<I: IntoIterator<Item = (T, S)>>(pairs: I) -> Self {
        pairs
            .into_iter()
            .fold(ToolScopes::new(), |map, (tool, scope)| {
                map.tool(tool, scope)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_entry_replaces_an_earlier_one() {
        let map: ToolScopes = [("a", "s1"), ("b", "s2"), ("a", "s3")]
            .into_iter()
            .collect();
        assert_eq!(map.scope_of("a"), Some("s3"));
        assert_eq!(map.scope_of("b"), Some("s2"));
        assert_eq!(map.scope_of("c"), None);
        assert_eq!(map.all().to_string(), "s2 s3");
    }
}
