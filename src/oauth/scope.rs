//! Scopes (OAuth 2.1 section 1.4.1): a space-separated set of tokens. The server knows a fixed list,
//! each with a plain-language description shown on the consent page.

use std::collections::BTreeSet;

/// Scopes this server issues, with what each one lets a client do.
pub const SUPPORTED: &[(&str, &str)] = &[
    (
        "mcp.read",
        "Read data and call read-only tools on the MCP server",
    ),
    (
        "mcp.write",
        "Call tools that change things on the MCP server",
    ),
];

/// A set of scope tokens, kept sorted so that its string form is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<String>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("the scope parameter is malformed")]
    Malformed,
    #[error("a requested scope is not supported")]
    Unknown,
}

impl ScopeSet {
    /// Parses a `scope` parameter: tokens of `%x21 / %x23-5B / %x5D-7E` separated by single spaces.
    pub fn parse(value: &str) -> Result<Self, ScopeError> {
        let mut set = BTreeSet::new();
        for token in value.split(' ') {
            if token.is_empty() {
                continue;
            }
            if token.len() > 128
                || !token
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
            {
                return Err(ScopeError::Malformed);
            }
            set.insert(token.to_string());
        }
        Ok(ScopeSet(set))
    }

    /// Parses and checks every scope against the supported list.
    pub fn parse_supported(value: &str) -> Result<Self, ScopeError> {
        let set = Self::parse(value)?;
        if set.0.iter().all(|s| is_supported(s)) {
            Ok(set)
        } else {
            Err(ScopeError::Unknown)
        }
    }

    pub fn all_supported() -> Self {
        ScopeSet(SUPPORTED.iter().map(|(s, _)| s.to_string()).collect())
    }

    pub fn from_names<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        ScopeSet(names.into_iter().map(Into::into).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.union(&other.0).cloned().collect())
    }

    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.intersection(&other.0).cloned().collect())
    }

    /// The scopes of `required` that this set lacks.
    pub fn missing(&self, required: &ScopeSet) -> ScopeSet {
        ScopeSet(required.0.difference(&self.0).cloned().collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl std::fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

pub fn is_supported(scope: &str) -> bool {
    SUPPORTED.iter().any(|(s, _)| *s == scope)
}

/// The plain-language description of a supported scope.
pub fn describe(scope: &str) -> &'static str {
    SUPPORTED
        .iter()
        .find(|(s, _)| *s == scope)
        .map(|(_, d)| *d)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cases() {
        assert_eq!(
            ScopeSet::parse("mcp.write mcp.read").unwrap().to_string(),
            "mcp.read mcp.write"
        );
        assert_eq!(ScopeSet::parse("").unwrap(), ScopeSet::default());
        assert_eq!(ScopeSet::parse("a\"b"), Err(ScopeError::Malformed));
        assert_eq!(ScopeSet::parse("a\\b"), Err(ScopeError::Malformed));
        assert_eq!(ScopeSet::parse("a\tb"), Err(ScopeError::Malformed));
        assert_eq!(
            ScopeSet::parse_supported("mcp.read admin"),
            Err(ScopeError::Unknown)
        );
        let have = ScopeSet::parse("mcp.read").unwrap();
        let need = ScopeSet::parse("mcp.read mcp.write").unwrap();
        assert_eq!(have.missing(&need).to_string(), "mcp.write");
        assert!(have.is_subset(&need));
    }
}
