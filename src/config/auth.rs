//! The authorization server's validated settings, [`AuthSettings`]: what `AuthServer::build`
//! reads, grouped by concern, every lifetime a [`Duration`]. [`AuthServerConfig::validate`] is
//! the one conversion from the command line: it checks what clap cannot, fills the derived
//! defaults, and converts seconds to durations. It reads no file: the users file, the clients
//! file and the key-encryption secret file are read when the server is built. The limits that
//! have no flag are the named constants below.

#![warn(missing_docs)]

use super::auth_args::{
    AuthServerConfig, DEFAULT_ISSUER, DEFAULT_RESOURCE_SERVER, DEV_SESSION_SECRET,
};
use super::checks::{ConfigError, long_secret, loopback_listen};
use crate::store::postgres::PoolOptions;
use crate::trace::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// Most Client ID Metadata Documents cached (fetched documents and failures).
pub const MAX_CLIENT_DOCUMENTS: usize = 10_000;
/// Most authorization requests one browser may have waiting; beyond it its oldest is dropped.
pub const MAX_PENDING_PER_SESSION: usize = 32;
/// Most rate-limit buckets and failed-login counters kept (sources and accounts).
pub const MAX_THROTTLE_ENTRIES: usize = 200_000;
/// Largest body accepted by the machine-facing endpoints (`/register`, `/token`, ...).
pub const MAX_API_BODY_BYTES: usize = 64 * 1024;
/// Largest body accepted by the pages (login and consent forms).
pub const MAX_PAGE_BODY_BYTES: usize = 16 * 1024;

/// Everything the authorization server is built from.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The issuer identifier, exactly as clients see it (no trailing slash is added).
    pub issuer: String,
    /// The resource a token is for when a client sends no `resource` parameter.
    pub resource: String,
    /// Resources clients may request; always contains `resource`.
    pub known_resources: Vec<String>,
    /// The address the server listens on.
    pub listen: SocketAddr,
    /// How long a client may take to send a request's headers, and its body.
    pub read_timeout: Duration,
    /// The credential of resource servers at `/introspect`, besides confidential clients.
    pub introspection_secret: Option<Secret>,
    /// The token `/metrics` requires, if any.
    pub metrics_token: Option<Secret>,
    /// Metrics recorded and served on `/metrics` (on by default).
    pub metrics: bool,
    /// Peers whose `X-Forwarded-For` names a request's source address (per-source limits).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The durable store.
    pub store: StoreSettings,
    /// The signing keys' rotation and sealing.
    pub keys: SigningKeySettings,
    /// Lifetimes of codes and tokens.
    pub tokens: TokenSettings,
    /// Login sessions, waiting authorization requests and consents.
    pub sessions: SessionSettings,
    /// Who may sign in, and lockouts.
    pub login: LoginSettings,
    /// Per-source request rates.
    pub rates: RateSettings,
    /// Which clients exist.
    pub registration: RegistrationSettings,
    /// Client ID Metadata Documents.
    pub cimd: CimdSettings,
    /// How much the server keeps.
    pub limits: LimitSettings,
}

/// Where the durable state (clients, consents, revocations, users, signing keys) lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// Nowhere: nothing survives a restart.
    InMemory,
    /// A SQLite database in this directory.
    Directory(PathBuf),
    /// A PostgreSQL database, which replicas share.
    Postgres {
        /// `postgres://…` (it may hold a password: never printed).
        url: String,
        /// The connection pool's size and patience.
        pool: PoolOptions,
    },
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSettings::InMemory => f.write_str("InMemory"),
            StoreSettings::Directory(dir) => f.debug_tuple("Directory").field(dir).finish(),
            StoreSettings::Postgres { url, pool } => f
                .debug_struct("Postgres")
                .field("url", &crate::store::postgres::redacted(url))
                .field("pool", pool)
                .finish(),
        }
    }
}

/// The store the settings name: `--in-memory`, a `DATABASE_URL` (`postgres://…`, or
/// `sqlite://DIR`), or the data directory.
fn store_settings(
    in_memory: bool,
    data_dir: PathBuf,
    database_url: Option<String>,
    pool: PoolOptions,
) -> Result<StoreSettings, ConfigError> {
    let bad = |reason: &str| ConfigError {
        setting: "DATABASE_URL",
        reason: reason.into(),
    };
    match (in_memory, database_url.filter(|u| !u.is_empty())) {
        (true, Some(_)) => Err(bad("cannot be used with AUTH_SERVER_IN_MEMORY")),
        (true, None) => Ok(StoreSettings::InMemory),
        (false, None) => Ok(StoreSettings::Directory(data_dir)),
        (false, Some(url)) => {
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                url::Url::parse(&url).map_err(|e| bad(&format!("not a URL ({e})")))?;
                Ok(StoreSettings::Postgres { url, pool })
            } else if let Some(dir) = url.strip_prefix("sqlite://") {
                if dir.is_empty() {
                    return Err(bad("sqlite:// needs a directory: sqlite://./data"));
                }
                Ok(StoreSettings::Directory(PathBuf::from(dir)))
            } else {
                Err(bad("must start with postgres:// or sqlite://"))
            }
        }
    }
}

/// The signing keys' lifecycle, and the secret that seals them in the store.
#[derive(Debug, Clone)]
pub struct SigningKeySettings {
    /// How long a key signs before the next one takes over (`None`: never rotated).
    pub rotation: Option<Duration>,
    /// How long a new key is published in the JWKS before it signs.
    pub publication_delay: Duration,
    /// The secret the key-encryption key is derived from (`None`: the data directory's
    /// `key-encryption.secret`, made at the first start).
    pub encryption_secret: Option<Secret>,
}

/// Lifetimes of what `/token` and `/authorize` hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// Lifetime of an access token.
    pub access_ttl: Duration,
    /// Lifetime of an authorization code.
    pub code_ttl: Duration,
    /// Lifetimes of refresh token families.
    pub refresh: RefreshSettings,
}

/// Lifetimes of a refresh token family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshSettings {
    /// A family unused this long ends.
    pub idle_ttl: Duration,
    /// A family ends this long after its authorization, used or not.
    pub absolute_ttl: Duration,
    /// After a refresh, how long the retired token may be presented once more (zero: never).
    pub grace: Duration,
}

/// The browser side: login sessions, authorization requests waiting for the user, consents.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Signs the session cookie.
    pub cookie_secret: Secret,
    /// Lifetime of a login session (and of its cookie).
    pub ttl: Duration,
    /// How long an authorization request may wait for login and consent.
    pub pending_request_ttl: Duration,
    /// How long an approved consent is remembered.
    pub consent_ttl: Duration,
}

/// Who may sign in, and how failed sign-ins lock an account or a source out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSettings {
    /// A TOML file of users replacing the stored ones (read when the server is built).
    pub users_file: Option<PathBuf>,
    /// A TOML file of upstream identity providers (read when the server is built).
    pub identity_providers: Option<PathBuf>,
    /// The demo users may sign in on an https issuer (they always may on http).
    pub allow_demo_users: bool,
    /// Failed logins of one account before it is locked (0: never).
    pub failures_per_account: u32,
    /// Failed logins from one source address before it is locked (0: never).
    pub failures_per_source: u32,
    /// How long failed logins are counted, from the first; a lockout ends with it.
    pub lockout: Duration,
}

/// Requests per minute from one source address (0: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSettings {
    /// `/authorize` requests.
    pub authorize_per_minute: u32,
    /// `/register` requests.
    pub register_per_minute: u32,
    /// `/token` requests.
    pub token_per_minute: u32,
    /// Login attempts.
    pub login_per_minute: u32,
}

/// Which clients exist: registered ones, pre-registered ones, and their redirect rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationSettings {
    /// Dynamic client registration (`/register`) is open.
    pub dynamic: bool,
    /// Dynamic registration may create `client_credentials` clients.
    pub machine_clients: bool,
    /// A TOML file of pre-registered clients (read when the server is built).
    pub clients_file: Option<PathBuf>,
    /// Private-use redirect URI schemes without a dot that are accepted anyway.
    pub extra_redirect_schemes: Vec<String>,
    /// A registered client that never obtained a token is removed after this long.
    pub unused_client_ttl: Duration,
}

/// Client ID Metadata Documents: URL client ids, fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CimdSettings {
    /// URL client ids are fetched (otherwise they are unknown clients).
    pub enabled: bool,
    /// Development only: private, loopback and link-local addresses and plain http allowed.
    pub allow_private: bool,
    /// How long a fetch may take, connection included.
    pub timeout: Duration,
}

/// How much the server keeps: beyond a limit it refuses or sheds rather than grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Registered clients kept.
    pub max_clients: usize,
    /// Client metadata documents cached.
    pub max_client_documents: usize,
    /// Unredeemed authorization codes.
    pub max_codes: usize,
    /// Login sessions.
    pub max_sessions: usize,
    /// Authorization requests waiting for the user.
    pub max_pending_requests: usize,
    /// Waiting requests of one browser.
    pub max_pending_per_session: usize,
    /// Live refresh token families.
    pub max_refresh_families: usize,
    /// Registered clients kept in memory.
    pub cached_clients: usize,
    /// Refresh-token families kept in memory.
    pub cached_refresh_families: usize,
    /// Revoked access tokens listed.
    pub max_revocations: usize,
    /// Rate-limit buckets and failed-login counters.
    pub max_throttle_entries: usize,
    /// Largest body of the machine-facing endpoints, in bytes.
    pub max_api_body_bytes: usize,
    /// Largest body of the pages' forms, in bytes.
    pub max_page_body_bytes: usize,
}

impl AuthServerConfig {
    /// Checks what clap cannot, fills the derived defaults and groups the settings. Reads no file.
    pub fn validate(self) -> Result<AuthSettings, ConfigError> {
        let issuer_id = self.issuer.unwrap_or_else(|| DEFAULT_ISSUER.into());
        let resource = self
            .resource
            .unwrap_or_else(|| DEFAULT_RESOURCE_SERVER.into());
        let issuer = Url::parse(&issuer_id).map_err(|e| ConfigError {
            setting: "AUTH_SERVER_ISSUER",
            reason: e.to_string(),
        })?;
        if issuer.scheme() == "https" && self.session_secret == DEV_SESSION_SECRET {
            return Err(ConfigError {
                setting: "AUTH_SERVER_SESSION_SECRET",
                reason: "the development session secret cannot be used with an https issuer; set a random secret".into(),
            });
        }
        long_secret("AUTH_SERVER_SESSION_SECRET", &self.session_secret)?;
        if self.key_rotation_seconds > 0
            && self.key_publication_delay_seconds >= self.key_rotation_seconds
        {
            return Err(ConfigError {
                setting: "AUTH_SERVER_KEY_PUBLICATION_DELAY_SECONDS",
                reason: "must be shorter than the key rotation interval".into(),
            });
        }
        if let Some(secret) = &self.key_encryption_secret {
            long_secret("AUTH_SERVER_KEY_ENCRYPTION_SECRET", secret)?;
        }
        if self.refresh_idle_ttl_seconds > self.refresh_absolute_ttl_seconds {
            return Err(ConfigError {
                setting: "AUTH_SERVER_REFRESH_IDLE_TTL_SECONDS",
                reason: "must not exceed AUTH_SERVER_REFRESH_ABSOLUTE_TTL_SECONDS".into(),
            });
        }
        if let Some(secret) = &self.introspection_secret {
            long_secret("AUTH_SERVER_INTROSPECTION_SECRET", secret)?;
        }
        if let Some(token) = &self.metrics_token {
            long_secret("AUTH_SERVER_METRICS_TOKEN", token)?;
        }
        let mut known_resources = self.known_resources;
        if known_resources.is_empty() {
            let base = resource.trim_end_matches('/');
            known_resources = vec![resource.clone(), format!("{base}/mcp")];
        }
        if !known_resources.contains(&resource) {
            known_resources.push(resource.clone());
        }
        let secs = Duration::from_secs;
        let store = store_settings(
            self.in_memory,
            self.data_dir,
            self.database_url,
            PoolOptions {
                max_connections: self.database_max_connections,
                acquire_timeout: secs(self.database_timeout_seconds),
            },
        )?;
        if matches!(store, StoreSettings::Postgres { .. }) && self.key_encryption_secret.is_none() {
            return Err(ConfigError {
                setting: "AUTH_SERVER_KEY_ENCRYPTION_SECRET",
                reason: "is needed with a PostgreSQL DATABASE_URL: every replica must open the stored signing keys with the same secret".into(),
            });
        }
        Ok(AuthSettings {
            listen: self.listen.unwrap_or_else(|| loopback_listen(&issuer_id)),
            issuer: issuer_id,
            resource,
            known_resources,
            read_timeout: secs(self.read_timeout_seconds),
            introspection_secret: self.introspection_secret.map(Secret::new),
            metrics_token: self.metrics_token.map(Secret::new),
            metrics: !self.no_metrics,
            trusted_proxies: self.trusted_proxies,
            store,
            keys: SigningKeySettings {
                rotation: (self.key_rotation_seconds > 0).then(|| secs(self.key_rotation_seconds)),
                publication_delay: secs(self.key_publication_delay_seconds),
                encryption_secret: self.key_encryption_secret.map(Secret::new),
            },
            tokens: TokenSettings {
                access_ttl: secs(self.access_token_ttl_seconds),
                code_ttl: secs(self.auth_code_ttl_seconds),
                refresh: RefreshSettings {
                    idle_ttl: secs(self.refresh_idle_ttl_seconds),
                    absolute_ttl: secs(self.refresh_absolute_ttl_seconds),
                    grace: secs(self.refresh_grace_seconds),
                },
            },
            sessions: SessionSettings {
                cookie_secret: Secret::new(self.session_secret),
                ttl: secs(self.session_ttl_seconds),
                pending_request_ttl: secs(self.pending_request_ttl_seconds),
                consent_ttl: secs(self.consent_ttl_seconds),
            },
            login: LoginSettings {
                users_file: self.users_file,
                identity_providers: self.identity_providers,
                allow_demo_users: self.allow_demo_users,
                failures_per_account: self.login_failures_per_account,
                failures_per_source: self.login_failures_per_source,
                lockout: secs(self.login_lockout_seconds),
            },
            rates: RateSettings {
                authorize_per_minute: self.rate_authorize_per_minute,
                register_per_minute: self.rate_register_per_minute,
                token_per_minute: self.rate_token_per_minute,
                login_per_minute: self.rate_login_per_minute,
            },
            registration: RegistrationSettings {
                dynamic: !self.no_dynamic_registration,
                machine_clients: self.dynamic_machine_clients,
                clients_file: self.clients_file,
                extra_redirect_schemes: self.extra_redirect_schemes,
                unused_client_ttl: secs(self.unused_client_ttl_seconds),
            },
            cimd: CimdSettings {
                enabled: !self.no_client_metadata_documents,
                allow_private: self.cimd_allow_private,
                timeout: secs(self.cimd_timeout_seconds),
            },
            limits: LimitSettings {
                max_clients: self.max_clients,
                max_client_documents: MAX_CLIENT_DOCUMENTS,
                max_codes: self.max_codes,
                max_sessions: self.max_sessions,
                max_pending_requests: self.max_pending_requests,
                max_pending_per_session: MAX_PENDING_PER_SESSION,
                max_refresh_families: self.max_refresh_families,
                cached_clients: usize::try_from(self.cached_clients).unwrap_or(usize::MAX),
                cached_refresh_families: usize::try_from(self.cached_refresh_families)
                    .unwrap_or(usize::MAX),
                max_revocations: usize::try_from(self.max_revocations).unwrap_or(usize::MAX),
                max_throttle_entries: MAX_THROTTLE_ENTRIES,
                max_api_body_bytes: MAX_API_BODY_BYTES,
                max_page_body_bytes: MAX_PAGE_BODY_BYTES,
            },
        })
    }
}

impl AuthSettings {
    /// True when cookies must be `Secure` (and `__Host-` prefixed).
    pub fn is_https(&self) -> bool {
        self.issuer.starts_with("https://")
    }

    /// An endpoint URL on the issuer's origin: the issuer (with its path) plus `path`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer.trim_end_matches('/'), path)
    }
}

#[cfg(test)]
mod tests;
