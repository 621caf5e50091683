//! The authorization server's command line: every flag, its environment variable, its default
//! and its `--help` text. Clap checks each value's type and range; [`AuthServerConfig::validate`]
//! (in `auth.rs`) checks the rest and turns it into [`super::AuthSettings`].

use super::checks::{parse_base_url, parse_proxy};
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The session secret used when none is configured: fine for a laptop, refused for https issuers.
pub const DEV_SESSION_SECRET: &str = "dev-session-secret-change-me";
/// The issuer when none is configured.
pub const DEFAULT_ISSUER: &str = "http://localhost:8999";
/// The resource server URL when none is configured.
pub const DEFAULT_RESOURCE_SERVER: &str = "http://localhost:8990";

/// Settings of the authorization server.
#[derive(Debug, Clone, Args)]
pub struct AuthServerConfig {
    /// The issuer identifier, exactly as clients will see it (no trailing slash is added)
    /// [default: http://localhost:8999].
    #[arg(long = "issuer", env = "AUTH_SERVER_ISSUER", value_parser = parse_base_url)]
    pub issuer: Option<String>,

    /// The resource (MCP server URL) a token is for when a client sends no `resource` parameter
    /// [default: http://localhost:8990; with both servers, the resource server URL].
    #[arg(long = "resource", env = "AUTH_SERVER_RESOURCE", value_parser = parse_base_url)]
    pub resource: Option<String>,

    /// Resources clients may request, comma-separated (default: the resource and its `/mcp`).
    #[arg(long = "known-resources", env = "AUTH_SERVER_KNOWN_RESOURCES", value_delimiter = ',', value_parser = parse_base_url)]
    pub known_resources: Vec<String>,

    /// Secret that signs the session cookie. Must be set (16+ characters) when the issuer is https.
    #[arg(long = "session-secret", env = "AUTH_SERVER_SESSION_SECRET", default_value = DEV_SESSION_SECRET, hide_env_values = true)]
    pub session_secret: String,

    /// Lifetime of access tokens, in seconds.
    #[arg(long = "access-token-ttl", env = "AUTH_SERVER_ACCESS_TOKEN_TTL_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub access_token_ttl_seconds: u64,

    /// Lifetime of authorization codes, in seconds (at most 600).
    #[arg(long = "auth-code-ttl", env = "AUTH_SERVER_AUTH_CODE_TTL_SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub auth_code_ttl_seconds: u64,

    /// Lifetime of a login session, in seconds.
    #[arg(long = "session-ttl", env = "AUTH_SERVER_SESSION_TTL_SECONDS", default_value_t = 8 * 3600, value_parser = clap::value_parser!(u64).range(60..))]
    pub session_ttl_seconds: u64,

    /// How long an authorization request may wait for login and consent, in seconds.
    #[arg(long = "pending-request-ttl", env = "AUTH_SERVER_PENDING_REQUEST_TTL_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub pending_request_ttl_seconds: u64,

    /// How long an approved consent is remembered, in seconds.
    #[arg(long = "consent-ttl", env = "AUTH_SERVER_CONSENT_TTL_SECONDS", default_value_t = 30 * 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub consent_ttl_seconds: u64,

    /// Most registered clients kept; registration answers 503 beyond it.
    #[arg(
        long = "max-clients",
        env = "AUTH_SERVER_MAX_CLIENTS",
        default_value_t = 100_000
    )]
    pub max_clients: usize,

    /// Private-use redirect URI schemes without a dot that registration accepts anyway.
    #[arg(
        long = "extra-redirect-schemes",
        env = "AUTH_SERVER_EXTRA_REDIRECT_SCHEMES",
        value_delimiter = ',',
        default_value = "cursor"
    )]
    pub extra_redirect_schemes: Vec<String>,

    /// Most login sessions kept; beyond it new browsers get 503.
    #[arg(
        long = "max-sessions",
        env = "AUTH_SERVER_MAX_SESSIONS",
        default_value_t = 100_000
    )]
    pub max_sessions: usize,

    /// Most authorization requests waiting for login and consent.
    #[arg(
        long = "max-pending-requests",
        env = "AUTH_SERVER_MAX_PENDING_REQUESTS",
        default_value_t = 100_000
    )]
    pub max_pending_requests: usize,

    /// Most unredeemed authorization codes.
    #[arg(
        long = "max-codes",
        env = "AUTH_SERVER_MAX_CODES",
        default_value_t = 100_000
    )]
    pub max_codes: usize,

    /// Seconds after which a registered client that never obtained a token is removed.
    #[arg(long = "unused-client-ttl", env = "AUTH_SERVER_UNUSED_CLIENT_TTL_SECONDS", default_value_t = 24 * 3600, value_parser = clap::value_parser!(u64).range(60..))]
    pub unused_client_ttl_seconds: u64,

    /// Registrations per minute from one source address (0: unlimited).
    #[arg(
        long = "rate-register",
        env = "AUTH_SERVER_RATE_REGISTER_PER_MINUTE",
        default_value_t = 60
    )]
    pub rate_register_per_minute: u32,

    /// Authorization requests (`/authorize`) per minute from one source address (0: unlimited).
    #[arg(
        long = "rate-authorize",
        env = "AUTH_SERVER_RATE_AUTHORIZE_PER_MINUTE",
        default_value_t = 600
    )]
    pub rate_authorize_per_minute: u32,

    /// Token requests per minute from one source address (0: unlimited).
    #[arg(
        long = "rate-token",
        env = "AUTH_SERVER_RATE_TOKEN_PER_MINUTE",
        default_value_t = 600
    )]
    pub rate_token_per_minute: u32,

    /// Proxies (addresses or CIDR ranges, comma-separated) whose `X-Forwarded-For` names the
    /// source address of a request, for the per-source limits; from any other peer the header is
    /// ignored. Unset: the peer address is the source.
    #[arg(long = "trusted-proxies", env = "AUTH_SERVER_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Login attempts per minute from one source address (0: unlimited).
    #[arg(
        long = "rate-login",
        env = "AUTH_SERVER_RATE_LOGIN_PER_MINUTE",
        default_value_t = 30
    )]
    pub rate_login_per_minute: u32,

    /// Failed logins of one account before it is locked for the lockout time (0: never).
    #[arg(
        long = "login-failures-per-account",
        env = "AUTH_SERVER_LOGIN_FAILURES_PER_ACCOUNT",
        default_value_t = 5
    )]
    pub login_failures_per_account: u32,

    /// Failed logins from one source address before it is locked for the lockout time (0: never).
    #[arg(
        long = "login-failures-per-source",
        env = "AUTH_SERVER_LOGIN_FAILURES_PER_SOURCE",
        default_value_t = 20
    )]
    pub login_failures_per_source: u32,

    /// How long failed logins are counted, from the first one, in seconds; a lockout ends when
    /// that window does.
    #[arg(long = "login-lockout", env = "AUTH_SERVER_LOGIN_LOCKOUT_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub login_lockout_seconds: u64,

    /// Seconds a client may take to send a request's headers, and its body.
    #[arg(long = "auth-read-timeout", env = "AUTH_SERVER_READ_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub read_timeout_seconds: u64,

    /// Seconds after a refresh during which the refresh token it retired may be presented once
    /// more (two concurrent refreshes): that caller gets the same new refresh token. 0 turns the
    /// window off: any reuse revokes the token's family.
    #[arg(long = "refresh-grace-seconds", env = "AUTH_SERVER_REFRESH_GRACE_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub refresh_grace_seconds: u64,

    /// A refresh token family unused for this many seconds ends.
    #[arg(long = "refresh-idle-ttl-seconds", env = "AUTH_SERVER_REFRESH_IDLE_TTL_SECONDS", default_value_t = 14 * 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub refresh_idle_ttl_seconds: u64,

    /// A refresh token family ends this many seconds after its authorization, used or not.
    #[arg(long = "refresh-absolute-ttl-seconds", env = "AUTH_SERVER_REFRESH_ABSOLUTE_TTL_SECONDS", default_value_t = 90 * 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub refresh_absolute_ttl_seconds: u64,

    /// Most live refresh token families; beyond it a code redemption answers no refresh token.
    #[arg(
        long = "max-refresh-families",
        env = "AUTH_SERVER_MAX_REFRESH_FAMILIES",
        default_value_t = 1_000_000
    )]
    pub max_refresh_families: usize,

    /// Most registered clients kept in memory (the most recently used); the others are read from
    /// the store when asked for.
    #[arg(
        long = "cached-clients",
        env = "AUTH_SERVER_CACHED_CLIENTS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub cached_clients: u64,

    /// Most refresh-token families kept in memory (the most recently used); the others are read
    /// from the store when one of their tokens is presented.
    #[arg(
        long = "cached-refresh-families",
        env = "AUTH_SERVER_CACHED_REFRESH_FAMILIES",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub cached_refresh_families: u64,

    /// Most revoked access tokens listed (each until it expires); beyond it a revocation is
    /// refused with 503, never acknowledged without being recorded. At most 2,000,000: a
    /// resource server reads the whole list as one page of the revocation feed.
    #[arg(
        long = "max-revocations",
        env = "AUTH_SERVER_MAX_REVOCATIONS",
        default_value_t = 1_000_000,
        value_parser = clap::value_parser!(u64).range(1..=2_000_000)
    )]
    pub max_revocations: u64,

    /// A credential for resource servers at `/introspect` (`Authorization: Bearer <secret>`),
    /// besides confidential clients; 16+ characters. Unset: only confidential clients.
    #[arg(
        long = "introspection-secret",
        env = "AUTH_SERVER_INTROSPECTION_SECRET",
        hide_env_values = true
    )]
    pub introspection_secret: Option<String>,

    /// A token `/metrics` requires (`Authorization: Bearer <token>`); 16+ characters. Unset:
    /// `/metrics` is open, like `/healthz`.
    #[arg(
        long = "metrics-token",
        env = "AUTH_SERVER_METRICS_TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,

    /// Turn the authorization server's metrics off: no `/metrics` and no HTTP metrics.
    #[arg(long = "no-metrics", env = "AUTH_SERVER_NO_METRICS", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub no_metrics: bool,

    /// Address the authorization server listens on (default: loopback, the issuer's port).
    #[arg(long = "auth-listen", env = "AUTH_SERVER_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Directory of the durable store (clients, consents, revocations, users, signing keys).
    #[arg(
        long = "data-dir",
        env = "AUTH_SERVER_DATA_DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,

    /// The database of the durable store: `postgres://user:password@host/db` puts it on a
    /// PostgreSQL server that replicas share; unset or `sqlite://DIR` keeps the embedded SQLite
    /// store (in DIR, else the data directory).
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Most connections to PostgreSQL open at once (with `DATABASE_URL=postgres://...`): half for
    /// the statements of every flow and the group commits, half for everything else (one of
    /// which listens for changes).
    #[arg(long = "database-max-connections", env = "AUTH_SERVER_DATABASE_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(i64::from(crate::store::postgres::MIN_CONNECTIONS)..=1000))]
    pub database_max_connections: u32,

    /// Longest wait for a PostgreSQL connection, in seconds; a request that needs the database
    /// then gets 503 instead of waiting longer.
    #[arg(long = "database-timeout", env = "AUTH_SERVER_DATABASE_TIMEOUT_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub database_timeout_seconds: u64,

    /// Keep everything in memory: nothing survives a restart, and no data directory is used.
    #[arg(long = "in-memory", env = "AUTH_SERVER_IN_MEMORY", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub in_memory: bool,

    /// Secret from which the key encrypting the stored signing keys is derived (default: a
    /// random secret generated in the data directory's `key-encryption.secret`).
    #[arg(
        long = "key-encryption-secret",
        env = "AUTH_SERVER_KEY_ENCRYPTION_SECRET",
        hide_env_values = true
    )]
    pub key_encryption_secret: Option<String>,

    /// A TOML file of users (username, password_hash, display_name) replacing the demo users.
    #[arg(long = "users-file", env = "AUTH_SERVER_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// A TOML file of upstream identity providers (OpenID Connect, or OAuth 2.0 with a user-info
    /// endpoint) users may sign in through: "Sign in with …" on the login page.
    #[arg(long = "identity-providers", env = "AUTH_SERVER_IDENTITY_PROVIDERS")]
    pub identity_providers: Option<PathBuf>,

    /// Let the demo users (alice, bob: public passwords) sign in on an https issuer, where they
    /// are refused by default. On an http issuer they sign in whenever no users are configured.
    #[arg(long = "allow-demo-users", env = "AUTH_SERVER_ALLOW_DEMO_USERS", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub allow_demo_users: bool,

    /// How long a signing key signs before the next one takes over, in seconds (0: never rotate).
    #[arg(
        long = "key-rotation-interval",
        env = "AUTH_SERVER_KEY_ROTATION_SECONDS",
        default_value_t = 30 * 86_400
    )]
    pub key_rotation_seconds: u64,

    /// How long a new signing key is published in the JWKS before it signs, in seconds.
    #[arg(long = "key-publication-delay", env = "AUTH_SERVER_KEY_PUBLICATION_DELAY_SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_publication_delay_seconds: u64,

    /// A TOML file of pre-registered clients (`[[client]]` tables: client_id, client_name,
    /// redirect_uris, token_endpoint_auth_method = "none" or client_secret_hash, optional
    /// grant_types and scope). They are never removed.
    #[arg(long = "clients-file", env = "AUTH_SERVER_CLIENTS_FILE")]
    pub clients_file: Option<PathBuf>,

    /// Turn dynamic client registration off: `/register` refuses every request and the metadata
    /// names no registration endpoint.
    #[arg(long = "no-dynamic-registration", env = "AUTH_SERVER_NO_DYNAMIC_REGISTRATION", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub no_dynamic_registration: bool,

    /// Let dynamic registration create `client_credentials` (machine) clients, which get tokens
    /// without a user signing in. Off: machine clients come from the clients file only.
    #[arg(long = "dynamic-machine-clients", env = "AUTH_SERVER_DYNAMIC_MACHINE_CLIENTS", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub dynamic_machine_clients: bool,

    /// Turn Client ID Metadata Documents off: an URL `client_id` is then an unknown client.
    #[arg(long = "no-client-metadata-documents", env = "AUTH_SERVER_NO_CLIENT_METADATA_DOCUMENTS", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub no_client_metadata_documents: bool,

    /// Development only: fetch client metadata documents from private, loopback and link-local
    /// addresses, and over plain http.
    #[arg(long = "cimd-allow-private", env = "AUTH_SERVER_CIMD_ALLOW_PRIVATE", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub cimd_allow_private: bool,

    /// Seconds a client metadata document fetch may take, connection included.
    #[arg(long = "cimd-timeout", env = "AUTH_SERVER_CIMD_TIMEOUT_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub cimd_timeout_seconds: u64,
}
