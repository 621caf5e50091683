//! The authorization request (OAuth 2.1 section 4.1.1, AZ-1..AZ-6), checked in two parts because
//! they fail differently. The client and its redirect URI come first: while either is in doubt no
//! error may go to a redirect URI, so those errors ([`NotRedirectable`]) are told to the user
//! (OAuth 2.1 section 4.1.2.1). Everything else ([`Redirectable`]) may go back to the client's
//! redirect URI, which the endpoint does without a page only when the signed-in user approved
//! that redirect URI (AZ-5, RFC 9700 section 4.11.2).

use crate::oauth::ErrorCode;
use crate::oauth::params::{MAX_CLIENT_ID_LEN, Params};
use crate::oauth::pkce;
use crate::oauth::redirect_uri;
use crate::oauth::resource::{self, ResourceError};
use crate::oauth::scope::ScopeSet;

/// Longest `state` sent back; a longer one is refused (and not sent back).
pub const MAX_STATE_LEN: usize = 2048;

/// An error about the client or its redirect URI: never sent to a redirect URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRedirectable {
    RepeatedClientOrRedirectUri,
    MissingClientId,
    InvalidClientId,
    UnregisteredRedirectUri,
    RedirectUriRequired,
}

impl NotRedirectable {
    /// What the user is told.
    pub fn message(self) -> &'static str {
        match self {
            NotRedirectable::RepeatedClientOrRedirectUri => {
                "The client_id or redirect_uri parameter is repeated."
            }
            NotRedirectable::MissingClientId => "The request has no client_id.",
            NotRedirectable::InvalidClientId => "The client_id is not valid.",
            NotRedirectable::UnregisteredRedirectUri => {
                "The redirect_uri does not match any redirect URI registered for this application."
            }
            NotRedirectable::RedirectUriRequired => {
                "The request has no redirect_uri and the application registered several."
            }
        }
    }
}

/// An error sent back to the client's redirect URI as `error` and `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirectable {
    pub code: ErrorCode,
    pub description: &'static str,
}

fn redirectable(code: ErrorCode, description: &'static str) -> Redirectable {
    Redirectable { code, description }
}

/// The `client_id` the request names, when neither it nor the redirect URI is repeated.
pub fn client_id(params: &Params) -> Result<&str, NotRedirectable> {
    if params.is_repeated("client_id") || params.is_repeated("redirect_uri") {
        return Err(NotRedirectable::RepeatedClientOrRedirectUri);
    }
    let Some(client_id) = params.get("client_id") else {
        return Err(NotRedirectable::MissingClientId);
    };
    if client_id.len() > MAX_CLIENT_ID_LEN {
        return Err(NotRedirectable::InvalidClientId);
    }
    Ok(client_id)
}

/// Where the answer goes: the redirect URI the request names, which must match one the client
/// registered ([`redirect_uri::matches`]), or the client's only one when it names none.
pub fn redirect_uri<'a, R: AsRef<str>>(
    params: &'a Params,
    registered: &'a [R],
) -> Result<&'a str, NotRedirectable> {
    match params.get("redirect_uri") {
        Some(uri) => {
            if registered
                .iter()
                .any(|r| redirect_uri::matches(r.as_ref(), uri))
            {
                Ok(uri)
            } else {
                Err(NotRedirectable::UnregisteredRedirectUri)
            }
        }
        None => match registered {
            [only] => Ok(only.as_ref()),
            _ => Err(NotRedirectable::RedirectUriRequired),
        },
    }
}

/// The rest of a valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedRequest {
    pub code_challenge: String,
    pub scope: ScopeSet,
    /// The known resource the token will be for.
    pub resource: String,
}

/// Checks the rest of the request for a client whose registered scope is `client_scope` (every
/// supported scope when it registered none): `response_type=code`, `state` length, an S256 PKCE
/// challenge, the scope (none requested means all the client may have) and the resource (the
/// default when none is named).
pub fn validate(
    params: &Params,
    client_scope: Option<&str>,
    known_resources: &[String],
    default_resource: &str,
) -> Result<ValidatedRequest, Redirectable> {
    // One resource per token (RFC 8707 section 2): several are `invalid_target`.
    if params.is_repeated("resource") {
        return Err(redirectable(
            ErrorCode::InvalidTarget,
            "only one resource may be requested",
        ));
    }
    if params.repeated().is_some() {
        return Err(redirectable(
            ErrorCode::InvalidRequest,
            "a parameter is repeated",
        ));
    }
    match params.get("response_type") {
        None => {
            return Err(redirectable(
                ErrorCode::InvalidRequest,
                "response_type is required",
            ));
        }
        Some("code") => {}
        Some(_) => {
            return Err(redirectable(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
    }
    if params.get("state").is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return Err(redirectable(ErrorCode::InvalidRequest, "state is too long"));
    }
    let Some(challenge) = params.get("code_challenge") else {
        return Err(redirectable(
            ErrorCode::InvalidRequest,
            "code_challenge is required (PKCE with S256)",
        ));
    };
    match params.get("code_challenge_method") {
        Some(pkce::S256) => {}
        None => {
            return Err(redirectable(
                ErrorCode::InvalidRequest,
                "code_challenge_method=S256 is required",
            ));
        }
        Some(_) => {
            return Err(redirectable(
                ErrorCode::InvalidRequest,
                "only the S256 code_challenge_method is supported",
            ));
        }
    }
    if !pkce::is_valid_s256_challenge(challenge) {
        return Err(redirectable(
            ErrorCode::InvalidRequest,
            "code_challenge is not a valid S256 challenge",
        ));
    }
    let allowed = match client_scope {
        Some(registered) => ScopeSet::parse(registered).unwrap_or_default(),
        None => ScopeSet::all_supported(),
    };
    let scope = match params.get("scope") {
        None => allowed.clone(),
        Some(requested) => match ScopeSet::parse_supported(requested) {
            Ok(set) if set.is_empty() => allowed.clone(),
            Ok(set) => set,
            Err(_) => {
                return Err(redirectable(
                    ErrorCode::InvalidScope,
                    "a requested scope is not supported",
                ));
            }
        },
    };
    if !scope.is_subset(&allowed) {
        return Err(redirectable(
            ErrorCode::InvalidScope,
            "a requested scope is not allowed for this client",
        ));
    }
    let resource = resource::resolve(params.get("resource"), known_resources, default_resource)
        .map_err(|err| {
            redirectable(
                ErrorCode::InvalidTarget,
                match err {
                    ResourceError::NotAbsolute => "resource must be an absolute URI",
                    ResourceError::Fragment => "resource must not contain a fragment",
                    ResourceError::Unknown => "resource is not served by this authorization server",
                },
            )
        })?;
    Ok(ValidatedRequest {
        code_challenge: challenge.to_string(),
        scope,
        resource: resource.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const RS: &str = "http://localhost:8990";
    const MCP: &str = "http://localhost:8990/mcp";

    fn params(query: &str) -> Params {
        Params::parse_lenient(query.as_bytes())
    }

    #[test]
    fn client_id_cases() {
        use NotRedirectable::*;
        let long = format!("client_id={}", "c".repeat(MAX_CLIENT_ID_LEN + 1));
        let longest = format!("client_id={}", "c".repeat(MAX_CLIENT_ID_LEN));
        for (query, expected) in [
            ("client_id=abc", Ok("abc")),
            ("client_id=abc&state=1&state=2", Ok("abc")),
            ("client_id=a&client_id=b", Err(RepeatedClientOrRedirectUri)),
            (
                "client_id=a&redirect_uri=x&redirect_uri=y",
                Err(RepeatedClientOrRedirectUri),
            ),
            ("", Err(MissingClientId)),
            ("client_id=", Err(MissingClientId)),
            (long.as_str(), Err(InvalidClientId)),
            (longest.as_str(), Ok(&longest[10..])),
        ] {
            assert_eq!(client_id(&params(query)), expected, "{query}");
        }
    }

    #[test]
    fn redirect_uri_cases() {
        use NotRedirectable::*;
        let one = ["https://app.example/cb"];
        let two = ["https://app.example/cb", "http://127.0.0.1/cb"];
        let none: [&str; 0] = [];
        for (query, registered, expected) in [
            ("", &one[..], Ok("https://app.example/cb")),
            (
                "redirect_uri=https%3A%2F%2Fapp.example%2Fcb",
                &one[..],
                Ok("https://app.example/cb"),
            ),
            (
                "redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
                &one[..],
                Err(UnregisteredRedirectUri),
            ),
            ("", &two[..], Err(RedirectUriRequired)),
            ("", &none[..], Err(RedirectUriRequired)),
            // A loopback redirect URI matches with any port (RFC 8252 section 7.3).
            (
                "redirect_uri=http%3A%2F%2F127.0.0.1%3A5173%2Fcb",
                &two[..],
                Ok("http://127.0.0.1:5173/cb"),
            ),
        ] {
            let p = params(query);
            assert_eq!(redirect_uri(&p, registered), expected, "{query}");
        }
    }

    #[test]
    fn validate_cases() {
        let base =
            format!("response_type=code&code_challenge={CHALLENGE}&code_challenge_method=S256");
        let known = vec![RS.to_string(), MCP.to_string()];
        let scopes = |s: &str| ScopeSet::parse(s).unwrap();
        let ok = |scope: &str, resource: &str| {
            Ok(ValidatedRequest {
                code_challenge: CHALLENGE.to_string(),
                scope: scopes(scope),
                resource: resource.to_string(),
            })
        };
        let err = |code, description| Err(Redirectable { code, description });
        use ErrorCode::*;
        let long_state = format!("{base}&state={}", "s".repeat(MAX_STATE_LEN + 1));
        let cases: Vec<(String, Option<&str>, Result<ValidatedRequest, Redirectable>)> = vec![
            (base.clone(), None, ok("mcp.read mcp.write", RS)),
            (base.clone(), Some("mcp.read"), ok("mcp.read", RS)),
            (format!("{base}&scope=mcp.read"), None, ok("mcp.read", RS)),
            (
                format!("{base}&scope=+"),
                Some("mcp.read"),
                ok("mcp.read", RS),
            ),
            (
                format!("{base}&resource=http%3A%2F%2Flocalhost%3A8990%2Fmcp"),
                None,
                ok("mcp.read mcp.write", MCP),
            ),
            (
                format!("{base}&resource=http%3A%2F%2Flocalhost%3A8990%2F"),
                None,
                ok("mcp.read mcp.write", RS),
            ),
            (
                format!("{base}&state=a&state=b"),
                None,
                err(InvalidRequest, "a parameter is repeated"),
            ),
            (
                format!(
                    "{base}&resource=http%3A%2F%2Flocalhost%3A8990&resource=http%3A%2F%2Flocalhost%3A8990"
                ),
                None,
                err(InvalidTarget, "only one resource may be requested"),
            ),
            (
                base.replace("response_type=code&", ""),
                None,
                err(InvalidRequest, "response_type is required"),
            ),
            (
                base.replace("response_type=code", "response_type=token"),
                None,
                err(
                    UnsupportedResponseType,
                    "only response_type=code is supported",
                ),
            ),
            (long_state, None, err(InvalidRequest, "state is too long")),
            (
                "response_type=code&code_challenge_method=S256".to_string(),
                None,
                err(
                    InvalidRequest,
                    "code_challenge is required (PKCE with S256)",
                ),
            ),
            (
                base.replace("&code_challenge_method=S256", ""),
                None,
                err(InvalidRequest, "code_challenge_method=S256 is required"),
            ),
            (
                base.replace("S256", "plain"),
                None,
                err(
                    InvalidRequest,
                    "only the S256 code_challenge_method is supported",
                ),
            ),
            (
                base.replace(CHALLENGE, "short"),
                None,
                err(
                    InvalidRequest,
                    "code_challenge is not a valid S256 challenge",
                ),
            ),
            (
                format!("{base}&scope=admin"),
                None,
                err(InvalidScope, "a requested scope is not supported"),
            ),
            (
                format!("{base}&scope=mcp.write"),
                Some("mcp.read"),
                err(
                    InvalidScope,
                    "a requested scope is not allowed for this client",
                ),
            ),
            (
                format!("{base}&resource=%2Fmcp"),
                None,
                err(InvalidTarget, "resource must be an absolute URI"),
            ),
            (
                format!("{base}&resource=http%3A%2F%2Flocalhost%3A8990%23x"),
                None,
                err(InvalidTarget, "resource must not contain a fragment"),
            ),
            (
                format!("{base}&resource=http%3A%2F%2Fother.example"),
                None,
                err(
                    InvalidTarget,
                    "resource is not served by this authorization server",
                ),
            ),
        ];
        for (query, client_scope, expected) in cases {
            assert_eq!(
                validate(&params(&query), client_scope, &known, RS),
                expected,
                "{query}"
            );
        }
    }
}
