//! The client record (RFC 7591, OpenID Connect Dynamic Client Registration 1.0): what a
//! registered, configured or metadata-document client is, kept beside the rules that validate its
//! metadata (`client_metadata`). [`NewClient`] is validated metadata; [`Client`] the immutable
//! record the registry, the store and the handlers share. A confidential client's secret is kept
//! only as a digest ([`SecretHash`]) and compared in constant time.

use crate::oauth::redirect_uri;
use crate::oauth::time::unix_now;
use crate::trace::SecretDigest;
use base64::Engine;
use base64::alphabet::Alphabet;
use base64::engine::general_purpose::{GeneralPurpose, NO_PAD};
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
    /// A JWT the client signs with a key of its registered JWKS (RFC 7523 section 2.2).
    PrivateKeyJwt,
}

impl TokenEndpointAuthMethod {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Self::None),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "private_key_jwt" => Some(Self::PrivateKeyJwt),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// Whether the client proves itself with a shared secret.
    pub fn uses_secret(self) -> bool {
        matches!(self, Self::ClientSecretBasic | Self::ClientSecretPost)
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

/// The grant types a client may use: `authorization_code` (with or without `refresh_token`, which
/// only continues what a code started), `client_credentials` (a confidential client acting for
/// itself), or both. A set of flags rather than a list of strings.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GrantTypes {
    authorization_code: bool,
    refresh_token: bool,
    client_credentials: bool,
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
        authorization_code: true,
        refresh_token: false,
        client_credentials: false,
    };
    /// `authorization_code` and `refresh_token`: the registration default.
    pub const WITH_REFRESH_TOKEN: GrantTypes = GrantTypes {
        authorization_code: true,
        refresh_token: true,
        client_credentials: false,
    };
    /// `client_credentials` alone: a machine client.
    pub const CLIENT_CREDENTIALS: GrantTypes = GrantTypes {
        authorization_code: false,
        refresh_token: false,
        client_credentials: true,
    };

    /// The set a list of grant type names describes, if this server supports it: only
    /// `authorization_code`, `refresh_token` and `client_credentials`, at least one of the first
    /// and the last, and `refresh_token` only with `authorization_code`.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Option<GrantTypes> {
        let mut set = GrantTypes {
            authorization_code: false,
            refresh_token: false,
            client_credentials: false,
        };
        for name in names {
            match name.as_ref() {
                "authorization_code" => set.authorization_code = true,
                "refresh_token" => set.refresh_token = true,
                "client_credentials" => set.client_credentials = true,
                _ => return None,
            }
        }
        let valid = set.authorization_code || (set.client_credentials && !set.refresh_token);
        valid.then_some(set)
    }

    /// Whether the client may use the authorization code flow (and so needs redirect URIs).
    pub fn authorization_code(self) -> bool {
        self.authorization_code
    }

    /// Whether the client may use refresh tokens.
    pub fn refresh_token(self) -> bool {
        self.refresh_token
    }

    /// Whether the client may obtain tokens for itself (`client_credentials`).
    pub fn client_credentials(self) -> bool {
        self.client_credentials
    }

    /// The names, as registration metadata lists them.
    pub fn names(self) -> Vec<&'static str> {
        [
            (self.authorization_code, "authorization_code"),
            (self.refresh_token, "refresh_token"),
            (self.client_credentials, "client_credentials"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// How a confidential client's secret is kept: never in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretHash {
    /// A registered client's secret (256 random bits) as its SHA-256 digest.
    Sha256(SecretDigest),
    /// A configured client's secret, as the argon2 PHC string the clients file gives.
    Argon2(String),
    /// No secret: a `private_key_jwt` client's public keys (its registered JWKS, as JSON), which
    /// its client assertions must be signed with.
    PublicKeys(Box<str>),
}

/// What a `client_credentials` token's `sub` starts with: the client acts for itself, and its
/// subject can never be a user's (usernames may not start with it).
pub const MACHINE_SUBJECT_PREFIX: &str = "client:";

/// The subject of a token a client obtained for itself (RFC 9068 section 2.2): `client:<id>`.
pub fn machine_subject(client_id: &str) -> String {
    format!("{MACHINE_SUBJECT_PREFIX}{client_id}")
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
            Some(SecretHash::PublicKeys(_)) | None => false,
        }
    }

    /// The JWKS (JSON) a `private_key_jwt` client's assertions are verified with.
    pub fn public_keys(&self) -> Option<&str> {
        match self.secret.as_deref() {
            Some(SecretHash::PublicKeys(jwks)) => Some(jwks),
            _ => None,
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
            secret: meta
                .jwks
                .map(|jwks| Box::new(SecretHash::PublicKeys(jwks.into_boxed_str()))),
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

/// The 64 characters of base64url in ASCII order, so that ids encoded with them sort as their
/// bytes do.
const SORTABLE_ALPHABET: &str = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

const SORTABLE: GeneralPurpose = match Alphabet::new(SORTABLE_ALPHABET) {
    Ok(alphabet) => GeneralPurpose::new(&alphabet, NO_PAD),
    Err(_) => panic!("the sortable alphabet is 64 distinct URL-safe characters"),
};

/// Characters of an id given to the registration's time: 42 bits of Unix milliseconds, which
/// wrap around in 2109 (ids then sort together less well, nothing else).
const ID_TIME_CHARS: usize = 7;

/// A new registered client's id: 29 characters of the base64url set. The first 7 are the Unix
/// time in milliseconds, the other 22 are 128 random bits (CL-1). A client id is public (RFC 7591
/// section 3.2.1 asks that it be unique, and unguessable by the random part); it is time-ordered
/// so that ids issued together sort together: the store's index of client ids then grows at one
/// end, and a commit of many registrations rewrites a page or two of it, not one per client.
pub fn new_client_id(unix_ms: u64) -> String {
    let alphabet = SORTABLE_ALPHABET.as_bytes();
    let mut id = String::with_capacity(ID_TIME_CHARS + 22);
    for i in (0..ID_TIME_CHARS).rev() {
        id.push(char::from(alphabet[((unix_ms >> (6 * i)) & 63) as usize]));
    }
    let mut random = [0u8; 16];
    rand::fill(&mut random[..]);
    SORTABLE.encode_string(random, &mut id);
    id
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
            jwks: None,
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
    /// A `private_key_jwt` client's public keys (a JWKS, as JSON).
    pub jwks: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_url_safe_unique_and_sort_by_time() {
        let base64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        let now = 1_796_000_000_000;
        let mut ids = Vec::new();
        for ms in [now, now, now + 1, now + 1_000, now + 86_400_000] {
            let id = new_client_id(ms);
            assert_eq!(id.len(), 29, "{id}");
            assert!(id.chars().all(base64url), "{id}");
            assert!(
                !id.starts_with('-'),
                "{id} would read as an option on a command line"
            );
            ids.push(id);
        }
        // A later millisecond always sorts after; within one, the random bits differ.
        assert!(ids[1..].windows(2).skip(1).all(|w| w[0] < w[1]), "{ids:?}");
        assert!(ids[0] < ids[2] && ids[1] < ids[2]);
        assert_ne!(ids[0], ids[1]);
        // The time is the first 7 characters: the same millisecond, the same prefix; the other
        // 22 are 128 random bits.
        assert_eq!(ids[0][..7], ids[1][..7]);
        assert_ne!(ids[0][7..], ids[1][7..]);
        let random = SORTABLE.decode(&ids[0][7..]).map(|bytes| bytes.len());
        assert_eq!(random, Ok(16));
    }

    #[test]
    fn the_sortable_alphabet_is_base64url_in_ascii_order() {
        let chars: Vec<char> = SORTABLE_ALPHABET.chars().collect();
        assert_eq!(chars.len(), 64);
        assert!(chars.windows(2).all(|w| w[0] < w[1]));
        let mut standard: Vec<char> =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                .chars()
                .collect();
        standard.sort();
        assert_eq!(chars, standard);
    }

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
        // A machine client: no code, so no refresh token either.
        let machine = GrantTypes::parse(&["client_credentials"]).unwrap();
        assert_eq!(machine, GrantTypes::CLIENT_CREDENTIALS);
        assert!(machine.client_credentials() && !machine.authorization_code());
        assert_eq!(
            GrantTypes::parse(&["client_credentials", "refresh_token"]),
            None
        );
        let both = GrantTypes::parse(&["client_credentials", "authorization_code"]).unwrap();
        assert_eq!(both.names(), ["authorization_code", "client_credentials"]);
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
