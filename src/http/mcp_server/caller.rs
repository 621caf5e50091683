//! [`Caller`]: who is calling, from the validated access token. The token check makes it, the
//! checks after it read it, and the gate puts it into the request it hands to the MCP service;
//! rmcp hands the request parts to tools as an extension, so a tool reads it with
//! `Extension(parts): Extension<http::request::Parts>` and `parts.extensions.get::<Caller>()`.

#![warn(missing_docs)]

use crate::oauth::scope::ScopeSet;
use std::sync::Arc;

/// Who is calling, from the validated access token: the identity the token check establishes
/// for the checks after it and for the tools.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's `sub`: the user, or the client itself for a `client_credentials` token.
    /// Shared, so the session-owner check keeps it past the call without a copy.
    pub subject: Arc<str>,
    /// The token's `client_id`.
    pub client_id: String,
    /// The token's scopes.
    pub scopes: ScopeSet,
    /// The token's `flow` claim, when it has one.
    pub flow: Option<String>,
    /// The token's `jti` (empty when it states none).
    pub jti: String,
}

impl Caller {
    /// The id that ties the request to the flow trace: the token's flow, else its `jti`, else
    /// `-`.
    pub fn trace_id(&self) -> &str {
        match (&self.flow, self.jti.as_str()) {
            (Some(flow), _) => flow,
            (None, "") => "-",
            (None, jti) => jti,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_cases() {
        let caller = |flow: Option<&str>, jti: &str| Caller {
            subject: Arc::from("alice"),
            client_id: "c".into(),
            scopes: ScopeSet::default(),
            flow: flow.map(str::to_string),
            jti: jti.into(),
        };
        for (flow, jti, expected) in [
            (Some("f1"), "j1", "f1"),
            (None, "j1", "j1"),
            (None, "", "-"),
            (Some(""), "j1", ""),
        ] {
            assert_eq!(caller(flow, jti).trace_id(), expected);
        }
    }
}
