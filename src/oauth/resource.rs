//! Resource indicators (RFC 8707): the `resource` parameter names the protected resource a token
//! is for, and becomes the token's `aud`. It must be an absolute URI without a fragment, and one of
//! the resources this server knows (compared as exact strings: the MCP spec's canonical URI, and
//! clients compare it to the letter).

use url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("the resource must be an absolute URI")]
    NotAbsolute,
    #[error("the resource must not contain a fragment")]
    Fragment,
    #[error("the resource is not served by this authorization server")]
    Unknown,
}

/// Checks the shape of a resource indicator.
pub fn validate_shape(resource: &str) -> Result<(), ResourceError> {
    if resource.contains('#') {
        return Err(ResourceError::Fragment);
    }
    let url = Url::parse(resource).map_err(|_| ResourceError::NotAbsolute)?;
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(ResourceError::NotAbsolute);
    }
    Ok(())
}

/// Resolves the requested resource: the known one it names, or `default` when none was sent
/// (older MCP clients send none).
pub fn resolve<'a>(
    requested: Option<&str>,
    known: &'a [String],
    default: &'a str,
) -> Result<&'a str, ResourceError> {
    let Some(requested) = requested else {
        return Ok(default);
    };
    validate_shape(requested)?;
    known_spelling(requested, known).ok_or(ResourceError::Unknown)
}

/// The resource indicator of a token request (`/token`), as the server recorded it: its shape
/// checked, then spelled as the known resource it names, or left as sent when it names none (the
/// code or refresh token it is compared with then refuses it).
pub fn canonicalize<'a>(requested: &'a str, known: &'a [String]) -> Result<&'a str, ResourceError> {
    validate_shape(requested)?;
    Ok(known_spelling(requested, known).unwrap_or(requested))
}

/// The known resource that `requested` names ([`same_resource`]), spelled as it is known.
fn known_spelling<'a>(requested: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .find(|k| same_resource(k, requested))
        .map(String::as_str)
}

/// Exact string equality, except that an origin with an empty path equals the same origin with
/// the path `/`: they are one URL, and SDKs that pass URLs through a URL parser add the slash
/// (`http://localhost:8990` becomes `http://localhost:8990/`).
pub fn same_resource(known: &str, requested: &str) -> bool {
    if known == requested {
        return true;
    }
    let (short, long) = if known.len() < requested.len() {
        (known, requested)
    } else {
        (requested, known)
    };
    long.len() == short.len() + 1
        && long.ends_with('/')
        && long.starts_with(short)
        && Url::parse(long).is_ok_and(|u| u.path() == "/" && u.query().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_cases() {
        let known = vec![
            "http://localhost:8990".to_string(),
            "http://localhost:8990/mcp".to_string(),
        ];
        let d = "http://localhost:8990";
        assert_eq!(resolve(None, &known, d), Ok(d));
        assert_eq!(
            resolve(Some("http://localhost:8990/mcp"), &known, d),
            Ok("http://localhost:8990/mcp")
        );
        assert_eq!(
            resolve(Some("http://localhost:8990/mcp/"), &known, d),
            Err(ResourceError::Unknown)
        );
        assert_eq!(
            resolve(Some("http://localhost:8990/"), &known, d),
            Ok("http://localhost:8990")
        );
        assert_eq!(
            resolve(Some("http://localhost:8990//"), &known, d),
            Err(ResourceError::Unknown)
        );
        assert_eq!(
            resolve(Some("/mcp"), &known, d),
            Err(ResourceError::NotAbsolute)
        );
        assert_eq!(
            resolve(Some("http://localhost:8990/mcp#x"), &known, d),
            Err(ResourceError::Fragment)
        );
        assert_eq!(
            resolve(Some("urn:example"), &known, d),
            Err(ResourceError::NotAbsolute)
        );
    }

    #[test]
    fn canonicalize_cases() {
        let known = vec![
            "http://localhost:8990".to_string(),
            "http://localhost:8990/mcp".to_string(),
        ];
        for (requested, expected) in [
            ("http://localhost:8990", Ok("http://localhost:8990")),
            ("http://localhost:8990/", Ok("http://localhost:8990")),
            ("http://localhost:8990/mcp", Ok("http://localhost:8990/mcp")),
            // Unknown but well-formed: kept as sent, for the grant to refuse.
            (
                "http://localhost:8990/mcp/",
                Ok("http://localhost:8990/mcp/"),
            ),
            ("http://other.example/", Ok("http://other.example/")),
            ("/mcp", Err(ResourceError::NotAbsolute)),
            ("urn:example", Err(ResourceError::NotAbsolute)),
            ("http://localhost:8990#x", Err(ResourceError::Fragment)),
        ] {
            assert_eq!(canonicalize(requested, &known), expected, "{requested}");
        }
    }
}
