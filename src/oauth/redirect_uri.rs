//! Redirect URIs: which ones a client may register (RFC 7591, RFC 8252, OAuth 2.1 section 2.3.1)
//! and when a presented one matches a registered one (exact string match, except the port of a
//! loopback URI, RFC 8252 section 7.3). Used by `/register` and `/authorize`.

use url::{Host, Url};

/// Why a redirect URI cannot be registered. The message names the rule, never the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("redirect URIs must be absolute URIs")]
    NotAbsolute,
    #[error("redirect URIs must not contain a fragment")]
    Fragment,
    #[error("redirect URIs must not contain user information")]
    UserInfo,
    #[error("redirect URIs must not contain wildcards")]
    Wildcard,
    #[error("this URI scheme is not allowed for redirect URIs")]
    ForbiddenScheme,
    #[error("http redirect URIs are only allowed for loopback hosts; use https")]
    InsecureHttp,
    #[error("private-use URI schemes must be reverse domain names containing a dot (RFC 8252)")]
    PrivateSchemeWithoutDot,
    #[error("redirect URIs are limited to 2000 characters")]
    TooLong,
}

/// The longest redirect URI a client may register, in bytes.
pub const MAX_REDIRECT_URI_LEN: usize = 2000;

const FORBIDDEN_SCHEMES: &[&str] = &[
    "javascript",
    "data",
    "file",
    "vbscript",
    "blob",
    "about",
    "ftp",
    "ws",
    "wss",
    "mailto",
    "filesystem",
];

/// Checks a redirect URI a client asks to register. `extra_schemes` are private-use schemes
/// without a dot that the operator allows anyway (some MCP clients use such schemes).
pub fn validate_for_registration(
    uri: &str,
    extra_schemes: &[String],
) -> Result<(), RedirectUriError> {
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err(RedirectUriError::TooLong);
    }
    if uri.contains('#') {
        return Err(RedirectUriError::Fragment);
    }
    if uri.contains('*') {
        return Err(RedirectUriError::Wildcard);
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RedirectUriError::NotAbsolute);
    }
    let url = Url::parse(uri).map_err(|_| RedirectUriError::NotAbsolute)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectUriError::UserInfo);
    }
    let scheme = url.scheme();
    if FORBIDDEN_SCHEMES.contains(&scheme) {
        return Err(RedirectUriError::ForbiddenScheme);
    }
    match scheme {
        "https" => {
            if url.host().is_none() {
                return Err(RedirectUriError::NotAbsolute);
            }
            Ok(())
        }
        "http" => {
            if is_loopback_host(&url) {
                Ok(())
            } else {
                Err(RedirectUriError::InsecureHttp)
            }
        }
        _ => {
            if scheme.contains('.') || extra_schemes.iter().any(|s| s == scheme) {
                Ok(())
            } else {
                Err(RedirectUriError::PrivateSchemeWithoutDot)
            }
        }
    }
}

/// True when `presented` matches `registered`: the exact string, or, for loopback http URIs, the
/// same URI on another port (RFC 8252 section 7.3: native apps get an ephemeral port at run time).
pub fn matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    // Only the port may differ; characters that parsers read differently never match.
    if presented.contains(['#', '\\'])
        || presented
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    let (Ok(reg), Ok(pres)) = (Url::parse(registered), Url::parse(presented)) else {
        return false;
    };
    reg.scheme() == "http"
        && pres.scheme() == "http"
        && is_loopback_host(&reg)
        && reg.host() == pres.host()
        && pres.username().is_empty()
        && pres.password().is_none()
        && reg.path() == pres.path()
        && reg.query() == pres.query()
        && pres.fragment().is_none()
        // The host and path as written, not only as normalised (`127.1` is not `127.0.0.1`,
        // `/a/../cb` is not `/cb`).
        && host_as_written(registered).is_some()
        && host_as_written(registered) == host_as_written(presented)
        && path_as_written(registered) == path_as_written(presented)
}

/// The host of an `http://` URI as written (lowercase), without port; `None` with user info.
fn host_as_written(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("http://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return None;
    }
    let host = match authority.find(']') {
        Some(close) if authority.starts_with('[') => &authority[..=close],
        _ => authority.split(':').next().unwrap_or(authority),
    };
    Some(host.to_ascii_lowercase())
}

/// The part of an `http://` URI after its authority, as written.
fn path_as_written(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("http://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some(&rest[end..])
}

/// True when the URL's host is a loopback name or address (localhost, 127.0.0.0/8, ::1).
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The host shown to a user on the consent page ("where will I be sent").
pub fn display_host(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(url) => match url.host_str() {
            Some(host) => host.to_string(),
            None => format!("{}:", url.scheme()),
        },
        Err(_) => String::from("(invalid)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RedirectUriError::*;

    #[test]
    fn registration_rules() {
        let extra = vec!["cursor".to_string()];
        let cases: &[(&str, Result<(), RedirectUriError>)] = &[
            ("https://app.example.com/cb", Ok(())),
            ("https://claude.ai/api/mcp/auth_callback", Ok(())),
            ("http://localhost:3000/callback", Ok(())),
            ("http://127.0.0.1/callback", Ok(())),
            ("http://[::1]:8080/cb", Ok(())),
            ("com.example.app:/oauth2redirect", Ok(())),
            ("cursor://anysphere.cursor-mcp/oauth/callback", Ok(())),
            ("myapp:/cb", Err(PrivateSchemeWithoutDot)),
            ("http://example.com/cb", Err(InsecureHttp)),
            ("http://localhost.evil.com/cb", Err(InsecureHttp)),
            ("https://app.example.com/cb#frag", Err(Fragment)),
            ("https://user:pw@app.example.com/cb", Err(UserInfo)),
            ("https://user@app.example.com/cb", Err(UserInfo)),
            ("https://*.example.com/cb", Err(Wildcard)),
            ("/relative/cb", Err(NotAbsolute)),
            ("example.com/cb", Err(NotAbsolute)),
            ("javascript:alert(1)", Err(ForbiddenScheme)),
            ("JavaScript:alert(1)", Err(ForbiddenScheme)),
            ("data:text/html,hi", Err(ForbiddenScheme)),
            ("file:///etc/passwd", Err(ForbiddenScheme)),
            ("vbscript:msgbox", Err(ForbiddenScheme)),
            ("blob:https://a.example/x", Err(ForbiddenScheme)),
            ("about:blank", Err(ForbiddenScheme)),
            ("https://app.example.com/cb\r\nX: y", Err(NotAbsolute)),
            ("", Err(NotAbsolute)),
        ];
        for (uri, expected) in cases {
            assert_eq!(validate_for_registration(uri, &extra), *expected, "{uri}");
        }
    }

    #[test]
    fn matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("https://a.example/cb", "https://a.example/cb", true),
            ("https://a.example/cb", "https://a.example/cb/", false),
            ("https://a.example/cb", "https://A.example/cb", false),
            ("https://a.example:443/cb", "https://a.example/cb", false),
            (
                "https://a.example:8443/cb",
                "https://a.example:9443/cb",
                false,
            ),
            (
                "http://127.0.0.1:3000/cb",
                "http://127.0.0.1:49152/cb",
                true,
            ),
            ("http://127.0.0.1/cb", "http://127.0.0.1:49152/cb", true),
            ("http://localhost:3000/cb", "http://localhost:5173/cb", true),
            ("http://[::1]:3000/cb", "http://[::1]:4000/cb", true),
            (
                "http://localhost:3000/cb",
                "http://127.0.0.1:3000/cb",
                false,
            ),
            (
                "http://localhost:3000/cb",
                "http://localhost:3000/other",
                false,
            ),
            (
                "http://localhost:3000/cb?a=1",
                "http://localhost:9/cb?a=2",
                false,
            ),
            (
                "http://localhost:3000/cb?a=1",
                "http://localhost:9/cb?a=1",
                true,
            ),
            (
                "http://localhost:3000/cb",
                "http://localhost:3000/cb#x",
                false,
            ),
            ("com.example.app:/cb", "com.example.app:/cb", true),
            ("com.example.app:/cb", "com.example.app:/cb2", false),
            (
                "http://127.0.0.1:53682/callback",
                "http://127.0.0.1:9#@x/callback",
                false,
            ),
            (
                "http://127.0.0.1:53682/callback",
                "http://127.0.0.1:9\\@x/callback",
                false,
            ),
            (
                "http://127.0.0.1:3000/cb",
                "http://127.0.0.1:4000/a/../cb",
                false,
            ),
            (
                "http://127.0.0.1:3000/cb",
                "http://user@127.0.0.1:4000/cb",
                false,
            ),
            (
                "http://127.0.0.1:3000/cb",
                "http://127.0.0.1:4000/cb?",
                false,
            ),
        ];
        for (reg, pres, ok) in cases {
            assert_eq!(matches(reg, pres), *ok, "{reg} vs {pres}");
        }
    }
}
