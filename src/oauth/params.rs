//! Request parameters of OAuth endpoints (query strings and form bodies). OAuth 2.1 section 3.1
//! and 3.2: "Request and response parameters MUST NOT be included more than once", so parsing
//! keeps every parameter and refuses a repeated one instead of silently taking the first or last.

use std::collections::HashMap;

/// Longest `client_id` an endpoint looks up; a longer one names no client (a URL client id is at
/// most [`crate::oauth::client_id_url::MAX_URL_LEN`] long, the same).
pub const MAX_CLIENT_ID_LEN: usize = 512;

/// Longest refresh token an endpoint looks up; the ones this server issues are much shorter, so a
/// longer one is not ours.
pub const MAX_REFRESH_TOKEN_LEN: usize = 512;

/// Parameters by name, each present at most once. Parameters sent without a value are treated as
/// omitted (RFC 6749 section 3.1).
#[derive(Debug, Default, Clone)]
pub struct Params {
    map: HashMap<String, String>,
    /// Every name that appeared more than once, in order of first repetition.
    repeated: Vec<String>,
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
        match params.repeated.first() {
            Some(name) => Err(RepeatedParam(name.clone())),
            None => Ok(params),
        }
    }

    /// Parses, keeping the first value of a repeated parameter and remembering every name that
    /// was repeated: `/authorize` needs to know whether the client and redirect URI themselves
    /// were repeated to decide where an `invalid_request` may be sent.
    pub fn parse_lenient(input: &[u8]) -> Self {
        let mut map = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        let mut repeated: Vec<String> = Vec::new();
        for (name, value) in form_urlencoded::parse(input) {
            // Repeated even when one of the copies is empty.
            if !seen.insert(name.clone()) {
                let name = truncate(&name, 40);
                if !repeated.contains(&name) {
                    repeated.push(name);
                }
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
        self.repeated.first().map(String::as_str)
    }

    /// Was this parameter repeated?
    pub fn is_repeated(&self, name: &str) -> bool {
        self.repeated.iter().any(|r| r == name)
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
        let lenient = Params::parse_lenient(b"state=a&state=b&client_id=x&client_id=y");
        assert!(lenient.is_repeated("state") && lenient.is_repeated("client_id"));
        assert_eq!(lenient.get("client_id"), Some("x"));
    }
}
