//! The client record (RFC 7591, OpenID Connect Dynamic Client Registration 1.0): what a
//! registered, configured or metadata-document client is, kept beside the rules that validate its
//! metadata (`client_metadata`). [`NewClient`] is validated metadata; [`Client`] the immutable
//! record the registry, the store and the handlers share. A confidential client's secret is kept
//! only as a digest ([`SecretHash`]) and compared in constant time.

use crate::oauth::redirect_uri;
use crate::oauth::time::unix_now;
use crate::trace::SecretDigest;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The kind of application a client is (OpenID DCR `application_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplicationType {
    Native,
    Web,
}

impl ApplicationType {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "native" => Some(Self::Native),
            "web" => Some(Self::Web),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Web => "web",
        }
    }

    /// The type of a client that did not say: `native` when a redirect URI is a loopback or
    /// private-use one, else `web`.
    pub fn infer(redirect_uris: &[String]) -> Self {
        let native = redirect_uris.iter().any(|uri| {
            url::Url::parse(uri).is_ok_and(|u| {
                !matches!(u.scheme(), "http" | "https") || redirect_uri::is_loopback_host(&u)
            })
        });
        if native { Self::Native } else { Self::Web }
    }

    /// Checks a redirect URI (already valid for registration) against this type's rules.
    pub fn allows(self, uri: &str) -> Result<(), &'static str> {
        let Ok(url) = url::Url::parse(uri) else {
            return Err("redirect URIs must be absolute URIs");
        };
        match self {
            Self::Web if url.scheme() != "https" => {
                Err("web applications may register only https redirect URIs")
            }
            Self::Web if redirect_uri::is_loopback_host(&url) => {
                Err("web applications may not use a loopback host in redirect URIs")
            }
            Self::Web => Ok(()),
            Self::Native if url.scheme() == "http" && !redirect_uri::is_loopback_host(&url) => {
                Err("native applications may use http only with a loopback host")
            }
            Self::Native => Ok(()),
        }
    }
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointAuthMethod {
    None,
    ClientSecretBasic,
    ClientSecretPost,
}

impl TokenEndpointAuthMethod {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Self::None),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
        }
    }
}

/// Where a client's record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Dynamic client registration (`POST /register`).
    Registered,
    /// The configuration file (`--clients-file`).
    Configured,
    /// A Client ID Metadata Document fetched from its `client_id` URL.
    MetadataDocument,
}

/// The grant types a client may use. `authorization_code` is always one of them (registration
/// requires it); the only other grant this server supports is `refresh_token`, so the set is a
/// flag rather than a list of strings.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GrantTypes {
    refresh_token: bool,
}

/// As the list of names, the way the trace showed it when it was one.
impl std::fmt::Debug for GrantTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl GrantTypes {
    /// `authorization_code` alone.
    pub const AUTHORIZATION_CODE: GrantTypes = GrantTypes {
        refresh_token: false,
    };
    /// `authorization_code` and `refresh_token`: the registration default.
    pub const WITH_REFRESH_TOKEN: GrantTypes = GrantTypes {
        refresh_token: true,
    };

    /// The set a list of grant type names describes, if this server supports it: it must name
    /// `authorization_code`, and nothing beyond it and `refresh_token`.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Option<GrantTypes> {
        let mut code = false;
        let mut refresh_token = false;
        for name in names {
            match name.as_ref() {
                "authorization_code" => code = true,
                "refresh_token" => refresh_token = true,
                _ => return None,
            }
        }
        code.then_some(GrantTypes { refresh_token })
    }

    /// Whether the client may use refresh tokens.
    pub fn refresh_token(self) -> bool {
        self.refresh_token
    }

    /// The names, as registration metadata lists them.
    pub fn names(self) -> &'static [&'static str] {
        if self.refresh_token {
            &["authorization_code", "refresh_token"]
        } else {
            &["authorization_code"]
        }
    }
}

/// How a confidential client's secret is kept: never in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretHash {
    /// A registered client's secret (256 random bits) as its SHA-256 digest.
    Sha256(SecretDigest),
    /// A configured client's secret, as the argon2 PHC string the clients file gives.
    Argon2(String),
}

/// The response types every client has: the authorization code flow is the only one.
pub const RESPONSE_TYPES: [&str; 1] = ["code"];

/// A registered client. Immutable once registered; shared as `Arc<Client>` by the registry, the
/// in-memory store and the handlers. Kept compact, since a server may hold `--max-clients` of
/// them: the id is an `Arc<str>` the registry's reaping queue shares (its maps key the record by
/// this id, without a copy: the store's `ClientMap`), strings are boxed slices, a secret's
/// hash is boxed (public clients, the most common, have none), and the grant types are a flag.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: Arc<str>,
    pub secret: Option<Box<SecretHash>>,
    pub application_type: ApplicationType,
    pub kind: ClientKind,
    pub client_name: Option<Box<str>>,
    pub redirect_uris: Box<[Box<str>]>,
    pub grant_types: GrantTypes,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    pub scope: Option<Box<str>>,
    pub client_uri: Option<Box<str>>,
    pub issued_at: u64,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == TokenEndpointAuthMethod::None
    }

    /// Compares a presented secret with the stored digest in constant time (argon2 for a
    /// configured client's hash: slow on purpose, so call it off the async threads).
    pub fn secret_matches(&self, presented: &str) -> bool {
        match self.secret.as_deref() {
            Some(SecretHash::Argon2(phc)) => {
                use argon2::password_hash::{PasswordHash, PasswordVerifier};
                PasswordHash::new(phc).is_ok_and(|hash| {
                    argon2::Argon2::default()
                        .verify_password(presented.as_bytes(), &hash)
                        .is_ok()
                })
            }
            Some(SecretHash::Sha256(stored)) => {
                crate::trace::sha256(presented).ct_eq(stored).into()
            }
            None => false,
        }
    }

    /// Whether checking the secret is an argon2 verification (slow on purpose).
    pub fn secret_is_argon2(&self) -> bool {
        matches!(self.secret.as_deref(), Some(SecretHash::Argon2(_)))
    }

    /// A public client described by validated metadata (a metadata document, or a configured
    /// client before its secret is set).
    pub fn from_metadata(
        client_id: impl Into<Arc<str>>,
        meta: NewClient,
        kind: ClientKind,
    ) -> Client {
        Client {
            client_id: client_id.into(),
            secret: None,
            application_type: meta.application_type,
            kind,
            client_name: meta.client_name.map(String::into_boxed_str),
            redirect_uris: boxed_strs(meta.redirect_uris),
            grant_types: meta.grant_types,
            token_endpoint_auth_method: meta.token_endpoint_auth_method,
            scope: meta.scope.map(String::into_boxed_str),
            client_uri: meta.client_uri.map(String::into_boxed_str),
            issued_at: unix_now(),
        }
    }

    /// The name shown to users: the registered name, or the id when there is none.
    pub fn display_name(&self) -> &str {
        self.client_name.as_deref().unwrap_or(&self.client_id)
    }
}

/// A list of strings as one boxed slice of boxed strings, without spare capacity.
pub fn boxed_strs(list: Vec<String>) -> Box<[Box<str>]> {
    list.into_iter().map(String::into_boxed_str).collect()
}

#[cfg(test)]
impl NewClient {
    /// A public native client with one loopback redirect URI: the fixture of unit tests.
    pub(crate) fn public_loopback() -> NewClient {
        NewClient {
            client_name: None,
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            grant_types: GrantTypes::AUTHORIZATION_CODE,
            token_endpoint_auth_method: TokenEndpointAuthMethod::None,
            scope: None,
            client_uri: None,
            application_type: ApplicationType::Native,
        }
    }
}

/// Validated metadata of a client to register.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: GrantTypes,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    pub scope: Option<String>,
    pub client_uri: Option<String>,
    pub application_type: ApplicationType,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_types_are_a_flag() {
        assert_eq!(
            GrantTypes::parse(&["refresh_token", "authorization_code"]),
            Some(GrantTypes::WITH_REFRESH_TOKEN)
        );
        assert_eq!(
            GrantTypes::parse(&["authorization_code"]),
            Some(GrantTypes::AUTHORIZATION_CODE)
        );
        assert_eq!(GrantTypes::parse(&["refresh_token"]), None);
        assert_eq!(GrantTypes::parse(&["authorization_code", "implicit"]), None);
        assert_eq!(GrantTypes::parse::<&str>(&[]), None);
        assert_eq!(
            GrantTypes::WITH_REFRESH_TOKEN.names(),
            ["authorization_code", "refresh_token"]
        );
        assert!(!GrantTypes::AUTHORIZATION_CODE.refresh_token());
    }

    /// The record stays small: the registry holds up to `--max-clients` of them.
    #[test]
    fn a_client_record_is_compact() {
        assert!(
            std::mem::size_of::<Client>() <= 104,
            "{} bytes",
            std::mem::size_of::<Client>()
        );
    }
}
