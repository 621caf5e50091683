//! Client credentials at the token, revocation and introspection endpoints (OAuth 2.1 section
//! 2.4.1, RFC 6749 section 2.3.1): `client_secret_basic` (an `Authorization: Basic` header whose
//! two parts are form-urlencoded before base64), `client_secret_post` (`client_id` and
//! `client_secret` in the form), or none (a public client names itself with `client_id`). A
//! request presents exactly one of them; which client they name and whether the secret matches
//! is the registry's business.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The two parts of `Authorization: Basic` credentials, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub client_id: String,
    pub secret: String,
}

/// An `Authorization` header that is not well-formed `Basic` credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed client credentials")]
pub struct MalformedCredentials;

impl BasicCredentials {
    /// Parses the value of an `Authorization` header. Any other scheme is malformed too: at these
    /// endpoints the header carries client credentials or nothing.
    pub fn parse(value: &str) -> Result<Self, MalformedCredentials> {
        let (scheme, encoded) = value.split_once(' ').ok_or(MalformedCredentials)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(MalformedCredentials);
        }
        let decoded = STANDARD
            .decode(encoded.trim())
            .map_err(|_| MalformedCredentials)?;
        let decoded = String::from_utf8(decoded).map_err(|_| MalformedCredentials)?;
        let (id, secret) = decoded.split_once(':').ok_or(MalformedCredentials)?;
        let decode = |s: &str| {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        Ok(BasicCredentials {
            client_id: decode(id),
            secret: decode(secret),
        })
    }
}

/// The credentials a request presents, once exactly one method was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedCredentials<'a> {
    pub client_id: &'a str,
    /// `None` for a public client.
    pub secret: Option<&'a str>,
    /// The client used `client_secret_basic`: a refusal then carries a `Basic` challenge.
    pub basic: bool,
}

/// Why the credentials of a request cannot be told apart (`invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.description())]
pub enum CredentialsError {
    SeveralMethods,
    ClientIdMismatch,
    MissingClientId,
}

impl CredentialsError {
    /// The fixed `error_description` of this error.
    pub fn description(self) -> &'static str {
        match self {
            CredentialsError::SeveralMethods => "use exactly one client authentication method",
            CredentialsError::ClientIdMismatch => "client_id does not match the client credentials",
            CredentialsError::MissingClientId => "client_id is required",
        }
    }
}

/// Chooses the one authentication method a request uses, from its `Basic` credentials (if
/// any) and the form's `client_id` and `client_secret`. A form `client_id` beside `Basic`
/// credentials must name the same client.
pub fn presented<'a>(
    basic: Option<&'a BasicCredentials>,
    form_client_id: Option<&'a str>,
    form_secret: Option<&'a str>,
) -> Result<PresentedCredentials<'a>, CredentialsError> {
    if basic.is_some() && form_secret.is_some() {
        return Err(CredentialsError::SeveralMethods);
    }
    match basic {
        Some(basic) => {
            if form_client_id.is_some_and(|f| f != basic.client_id) {
                return Err(CredentialsError::ClientIdMismatch);
            }
            Ok(PresentedCredentials {
                client_id: &basic.client_id,
                secret: Some(&basic.secret),
                basic: true,
            })
        }
        None => match form_client_id {
            Some(client_id) => Ok(PresentedCredentials {
                client_id,
                secret: form_secret,
                basic: false,
            }),
            None => Err(CredentialsError::MissingClientId),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> String {
        format!("Basic {}", STANDARD.encode(raw))
    }

    fn creds(client_id: &str, secret: &str) -> BasicCredentials {
        BasicCredentials {
            client_id: client_id.into(),
            secret: secret.into(),
        }
    }

    #[test]
    fn parse_cases() {
        let ok = |id: &str, secret: &str| Ok(creds(id, secret));
        for (value, expected) in [
            (basic("client:secret"), ok("client", "secret")),
            (
                format!("bAsIc {}", STANDARD.encode("client:secret")),
                ok("client", "secret"),
            ),
            (
                format!("Basic  {} ", STANDARD.encode("client:secret")),
                ok("client", "secret"),
            ),
            // Both parts are form-urlencoded before base64.
            (basic("a%3Ab:s%20t+x"), ok("a:b", "s t x")),
            (basic("id:se:cret"), ok("id", "se:cret")),
            (basic("id:"), ok("id", "")),
            (basic(":secret"), ok("", "secret")),
            (basic("no-colon"), Err(MalformedCredentials)),
            ("Basic !!!".to_string(), Err(MalformedCredentials)),
            ("Basic".to_string(), Err(MalformedCredentials)),
            ("Bearer abc".to_string(), Err(MalformedCredentials)),
            (
                format!("Basic {}", STANDARD.encode([0xff, b':', b'x'])),
                Err(MalformedCredentials),
            ),
        ] {
            assert_eq!(BasicCredentials::parse(&value), expected, "{value}");
        }
    }

    #[test]
    fn presented_cases() {
        let b = creds("c1", "s1");
        let basic_c1 = Ok(PresentedCredentials {
            client_id: "c1",
            secret: Some("s1"),
            basic: true,
        });
        for (basic, id, secret, expected) in [
            (Some(&b), None, None, basic_c1),
            (Some(&b), Some("c1"), None, basic_c1),
            (
                Some(&b),
                Some("c2"),
                None,
                Err(CredentialsError::ClientIdMismatch),
            ),
            (
                Some(&b),
                Some("c1"),
                Some("s1"),
                Err(CredentialsError::SeveralMethods),
            ),
            (
                Some(&b),
                None,
                Some("s"),
                Err(CredentialsError::SeveralMethods),
            ),
            (
                None,
                Some("c2"),
                Some("s2"),
                Ok(PresentedCredentials {
                    client_id: "c2",
                    secret: Some("s2"),
                    basic: false,
                }),
            ),
            (
                None,
                Some("pub"),
                None,
                Ok(PresentedCredentials {
                    client_id: "pub",
                    secret: None,
                    basic: false,
                }),
            ),
            (
                None,
                None,
                Some("s"),
                Err(CredentialsError::MissingClientId),
            ),
            (None, None, None, Err(CredentialsError::MissingClientId)),
        ] {
            assert_eq!(
                presented(basic, id, secret),
                expected,
                "{basic:?} {id:?} {secret:?}"
            );
        }
    }
}
