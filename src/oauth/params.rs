//! Request parameters of OAuth endpoints (query strings and form bodies). OAuth 2.1 section 3.1
//! and 3.2: "Request and response parameters MUST NOT be included more than once", so parsing
//! keeps every parameter and refuses a repeated one instead of silently taking the first or last.

use std::collections::HashMap;

/// Parameters by name, each present at most once. Parameters sent without a value are treated as
/// omitted (RFC 6749 section 3.1).
#[derive(Debug, Default, Clone)]
pub struct Params {
    map: HashMap<String, String>,
    repeated: Option<String>,
}

/// A parameter that appeared more than once; carries its name (a fixed, known name is safe to
/// echo, the value is not).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the parameter {0} is repeated")]
pub struct RepeatedParam(pub String);

impl Params {
    /// Parses `application/x-www-form-urlencoded` bytes (a query string or a form body),
    /// refusing a repeated parameter.
    pub fn parse(input: &[u8]) -> Result<Self, RepeatedParam> {
        let params = Self::parse_lenient(input);
        match params.repeated {
            Some(name) => Err(RepeatedParam(name)),
            None => Ok(params),
        }
    }

    /// Parses, keeping the first value of a repeated parameter and remembering the first name
    /// that was repeated: `/authorize` needs the client and redirect URI to decide where an
    /// `invalid_request` for the repetition may be sent.
    pub fn parse_lenient(input: &[u8]) -> Self {
        let mut map = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        let mut repeated = None;
        for (name, value) in form_urlencoded::parse(input) {
            // Repeated even when one of the copies is empty.
            if !seen.insert(name.clone()) {
                repeated.get_or_insert_with(|| truncate(&name, 40));
                continue;
            }
            if !value.is_empty() {
                map.insert(name.into_owned(), value.into_owned());
            }
        }
        Params { map, repeated }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    pub fn take(&mut self, name: &str) -> Option<String> {
        self.map.remove(name)
    }

    /// The first parameter name that was repeated, if any.
    pub fn repeated(&self) -> Option<&str> {
        self.repeated.as_deref()
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_repeats() {
        let p = Params::parse(b"a=1&b=two%20words&c=").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("two words"));
        assert_eq!(p.get("c"), None);
        assert_eq!(
            Params::parse(b"a=1&a=2").unwrap_err(),
            RepeatedParam("a".into())
        );
        assert_eq!(
            Params::parse(b"a=&a=2").unwrap_err(),
            RepeatedParam("a".into())
        );
        assert!(Params::parse(b"").is_ok());
    }
}
