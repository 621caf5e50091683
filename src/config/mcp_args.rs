//! The MCP resource server's command line: every flag, its environment variable, its default
//! and its `--help` text. Clap checks each value's type and range; [`McpServerConfig::validate`]
//! (in `mcp.rs`) checks the rest and turns it into [`super::McpSettings`].

use super::checks::parse_base_url;
use clap::Args;
use std::net::SocketAddr;

/// Settings of the MCP resource server.
#[derive(Debug, Clone, Args)]
pub struct McpServerConfig {
    /// The authorization server's issuer, exactly as it publishes it [default:
    /// http://localhost:8999; with both servers, the issuer].
    #[arg(long = "authorization-server", env = "AUTHORIZATION_SERVER_URL", value_parser = parse_base_url)]
    pub authorization_server: Option<String>,

    /// The URL of this server as clients use it; the MCP endpoints are it and its `/mcp`
    /// [default: http://localhost:8990].
    #[arg(long = "resource-server", env = "RESOURCE_SERVER_URL", value_parser = parse_base_url)]
    pub resource_server: Option<String>,

    /// The JWKS: a path on the authorization server, or an absolute URL.
    #[arg(
        long = "jwks-endpoint",
        env = "JWKS_ENDPOINT",
        default_value = "/oauth/jwks"
    )]
    pub jwks_endpoint: String,

    /// Scopes every MCP request needs, comma-separated; a tool call also needs its tool's scope
    /// (`mcp.read` for greet and whoami, `mcp.write` for save_note).
    #[arg(
        long = "required-scopes",
        env = "REQUIRED_SCOPES",
        value_delimiter = ',',
        default_value = "mcp.read"
    )]
    pub required_scopes: Vec<String>,

    /// Least time between two JWKS fetches caused by unknown key ids, in seconds.
    #[arg(
        long = "jwks-cooldown",
        env = "JWKS_REFETCH_COOLDOWN_SECONDS",
        default_value_t = 10
    )]
    pub jwks_cooldown_seconds: u64,

    /// Seconds between two fetches of the JWKS in the background: a key the authorization
    /// server stops publishing stops being trusted within this time.
    #[arg(long = "jwks-refresh", env = "JWKS_REFRESH_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub jwks_refresh_seconds: u64,

    /// Hosts (`host` or `host:port`) the MCP endpoint answers for, comma-separated (default: the
    /// resource server URL's host, and every loopback name while it listens on loopback).
    #[arg(
        long = "allowed-hosts",
        env = "MCP_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// Browser origins allowed to call the MCP endpoint, comma-separated (default: the resource
    /// server's origin, and any loopback origin while it listens on loopback).
    #[arg(
        long = "allowed-origins",
        env = "MCP_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Lifetime of an MCP session's binding to its user, in seconds.
    #[arg(long = "mcp-session-ttl", env = "MCP_SESSION_TTL_SECONDS", default_value_t = 24 * 3600)]
    pub mcp_session_ttl_seconds: u64,

    /// Seconds a client may take to send a request's headers, and its body.
    #[arg(long = "mcp-read-timeout", env = "MCP_SERVER_READ_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub mcp_read_timeout_seconds: u64,

    /// Also ask the authorization server's introspection endpoint (RFC 7662) about every token
    /// that validates locally, so that revoked access tokens are refused before they expire.
    #[arg(long = "introspect", env = "MCP_INTROSPECT", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub introspect: bool,

    /// The introspection endpoint: a path on the authorization server, or an absolute URL.
    #[arg(
        long = "introspection-endpoint",
        env = "MCP_INTROSPECTION_ENDPOINT",
        default_value = "/introspect"
    )]
    pub introspection_endpoint: String,

    /// The credential this server presents at the introspection endpoint and the revocation
    /// feed (the authorization server's `--introspection-secret`). Required with `--introspect`,
    /// and by the feed when the authorization server has one; the combined binary shares one.
    #[arg(
        long = "rs-introspection-secret",
        env = "MCP_INTROSPECTION_SECRET",
        hide_env_values = true
    )]
    pub rs_introspection_secret: Option<String>,

    /// Seconds an introspection answer is reused for the same token.
    #[arg(long = "introspection-cache-seconds", env = "MCP_INTROSPECTION_CACHE_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub introspection_cache_seconds: u64,

    /// The authorization server's revocation feed, followed so that revoked tokens are refused
    /// here within moments: a path on the authorization server, or an absolute URL.
    #[arg(
        long = "revocation-feed-endpoint",
        env = "MCP_REVOCATION_FEED_ENDPOINT",
        default_value = "/oauth/revocations"
    )]
    pub revocation_feed_endpoint: String,

    /// Do not follow the revocation feed (an authorization server without one): revoked tokens
    /// are then accepted until they expire, unless `--introspect` is on.
    #[arg(
        long = "no-revocation-feed",
        env = "MCP_NO_REVOCATION_FEED",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue
    )]
    pub no_revocation_feed: bool,

    /// Seconds the revocation feed may be silent before every token is refused (503) because
    /// none can be vouched for.
    #[arg(long = "revocation-feed-max-lag", env = "MCP_REVOCATION_FEED_MAX_LAG_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub revocation_feed_max_lag_seconds: u64,

    /// A token `/metrics` requires (`Authorization: Bearer <token>`); 16+ characters. Unset:
    /// `/metrics` is open, like `/healthz`.
    #[arg(
        long = "mcp-metrics-token",
        env = "MCP_METRICS_TOKEN",
        hide_env_values = true
    )]
    pub mcp_metrics_token: Option<String>,

    /// Turn the MCP server's metrics off: no `/metrics` and no HTTP metrics.
    #[arg(long = "mcp-no-metrics", env = "MCP_NO_METRICS", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub mcp_no_metrics: bool,

    /// Address the MCP server listens on (default: loopback, the resource server URL's port).
    #[arg(long = "mcp-listen", env = "MCP_SERVER_LISTEN")]
    pub mcp_listen: Option<SocketAddr>,
}
