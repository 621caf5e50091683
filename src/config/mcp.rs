//! The MCP resource server's validated settings, [`McpSettings`]: what `McpServer::build` reads,
//! every lifetime a [`Duration`], the JWKS and introspection URLs resolved against the
//! authorization server. [`McpServerConfig::validate`] is the one conversion from the command
//! line. The limits that have no flag are the named constants below.

#![warn(missing_docs)]

use super::auth_args::{DEFAULT_ISSUER, DEFAULT_RESOURCE_SERVER};
use super::checks::{ConfigError, long_secret, loopback_listen, parse_base_url};
use super::mcp_args::McpServerConfig;
use crate::trace::Secret;
use std::net::SocketAddr;
use std::time::Duration;

/// The `resource_name` this project's MCP server publishes (a library user sets its own).
pub const RESOURCE_NAME: &str = "mcp-oauth MCP server";
/// Most MCP sessions bound to their user at once.
pub const MAX_MCP_SESSIONS: usize = 100_000;
/// Most introspection answers cached.
pub const MAX_CACHED_INTROSPECTIONS: usize = 100_000;
/// How long known signing keys are trusted while the JWKS cannot be fetched.
pub const JWKS_MAX_STALE: Duration = Duration::from_secs(3600);
/// How long one request to the authorization server (JWKS, introspection) may take.
pub const AUTHORIZATION_SERVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything the MCP resource server is built from.
#[derive(Debug, Clone)]
pub struct McpSettings {
    /// The authorization server's issuer, exactly as it publishes it.
    pub authorization_server: String,
    /// The URL of this server as clients use it; the MCP endpoints are it and its `/mcp`.
    pub resource_server: String,
    /// The address the server listens on.
    pub listen: SocketAddr,
    /// How long a client may take to send a request's headers, and its body.
    pub read_timeout: Duration,
    /// Scopes every MCP request needs (trimmed, none empty).
    pub required_scopes: Vec<String>,
    /// `Host` values the MCP endpoint answers for (empty: the defaults of `origin.rs`).
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call the MCP endpoint (empty: the defaults of `origin.rs`).
    pub allowed_origins: Vec<String>,
    /// How long one request to the authorization server may take.
    pub authorization_server_timeout: Duration,
    /// Where the authorization server's keys come from.
    pub jwks: JwksSettings,
    /// MCP sessions' binding to their user.
    pub sessions: McpSessionSettings,
    /// Set with `--introspect`: every locally valid token is also checked at the AS.
    pub introspection: Option<IntrospectionSettings>,
    /// The AS's revocation feed, unless `--no-revocation-feed`.
    pub revocation_feed: Option<RevocationFeedSettings>,
    /// The token `/metrics` requires, if any.
    pub metrics_token: Option<Secret>,
    /// The `resource_name` of the protected resource metadata (RFC 9728), which clients may
    /// show.
    pub resource_name: String,
    /// Metrics recorded and served on `/metrics` (on by default).
    pub metrics: bool,
}

/// Following the authorization server's feed of revoked tokens.
#[derive(Debug, Clone)]
pub struct RevocationFeedSettings {
    /// The feed's URL.
    pub url: String,
    /// The resource-server credential, when this server has one.
    pub credential: Option<Secret>,
    /// How long the feed may be silent before no token is accepted.
    pub max_lag: Duration,
    /// How long each long poll asks the AS to wait: a few seconds less than `max_lag`, so a
    /// quiet feed still answers well within it (at most 30 s, at least 1 s).
    pub wait: Duration,
}

/// Where the authorization server's keys are fetched, and how often at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// The JWKS URL.
    pub url: String,
    /// Least time between two fetches caused by unknown key ids.
    pub cooldown: Duration,
    /// Time between two background fetches (how soon a removed key stops being trusted).
    pub refresh: Duration,
    /// How long known keys are trusted while no fetch succeeds.
    pub max_stale: Duration,
}

/// MCP sessions' binding to the user who opened them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McpSessionSettings {
    /// How long a session stays bound to its user.
    pub ttl: Duration,
    /// Most sessions bound at once.
    pub max_sessions: usize,
}

/// Asking the authorization server's introspection endpoint (RFC 7662) about every token.
#[derive(Debug, Clone)]
pub struct IntrospectionSettings {
    /// The introspection endpoint's URL.
    pub url: String,
    /// The credential presented there.
    pub secret: Secret,
    /// How long an answer is reused for the same token (zero: never).
    pub cache_ttl: Duration,
    /// Most answers cached.
    pub max_cached: usize,
}

/// An endpoint setting: a path on the authorization server, or an absolute URL.
fn endpoint_url(
    setting: &'static str,
    authorization_server: &str,
    endpoint: String,
) -> Result<String, ConfigError> {
    if endpoint.starts_with('/') {
        Ok(format!(
            "{}{endpoint}",
            authorization_server.trim_end_matches('/')
        ))
    } else {
        parse_base_url(&endpoint).map_err(|reason| ConfigError { setting, reason })
    }
}

impl McpServerConfig {
    /// Checks what clap cannot, resolves the endpoints and groups the settings.
    pub fn validate(self) -> Result<McpSettings, ConfigError> {
        let authorization_server = self
            .authorization_server
            .unwrap_or_else(|| DEFAULT_ISSUER.into());
        let resource_server = self
            .resource_server
            .unwrap_or_else(|| DEFAULT_RESOURCE_SERVER.into());
        if self.required_scopes.iter().any(|s| s.trim().is_empty()) {
            return Err(ConfigError {
                setting: "REQUIRED_SCOPES",
                reason: "contains an empty scope".into(),
            });
        }
        let credential = match self.rs_introspection_secret {
            Some(secret) => {
                long_secret("MCP_INTROSPECTION_SECRET", &secret)?;
                Some(Secret::new(secret))
            }
            None => None,
        };
        let secret = match (self.introspect, &credential) {
            (false, _) => None,
            (true, None) => {
                return Err(ConfigError {
                    setting: "MCP_INTROSPECTION_SECRET",
                    reason: "required with MCP_INTROSPECT".into(),
                });
            }
            (true, Some(secret)) => Some(secret.clone()),
        };
        let revocation_feed_url = endpoint_url(
            "MCP_REVOCATION_FEED_ENDPOINT",
            &authorization_server,
            self.revocation_feed_endpoint,
        )?;
        let max_lag = Duration::from_secs(self.revocation_feed_max_lag_seconds);
        if let Some(token) = &self.mcp_metrics_token {
            long_secret("MCP_METRICS_TOKEN", token)?;
        }
        let introspection_url = endpoint_url(
            "MCP_INTROSPECTION_ENDPOINT",
            &authorization_server,
            self.introspection_endpoint,
        )?;
        let jwks_url = endpoint_url("JWKS_ENDPOINT", &authorization_server, self.jwks_endpoint)?;
        let secs = Duration::from_secs;
        Ok(McpSettings {
            listen: self
                .mcp_listen
                .unwrap_or_else(|| loopback_listen(&resource_server)),
            authorization_server,
            resource_server,
            read_timeout: secs(self.mcp_read_timeout_seconds),
            required_scopes: self
                .required_scopes
                .iter()
                .map(|s| s.trim().to_string())
                .collect(),
            allowed_hosts: self.allowed_hosts,
            allowed_origins: self.allowed_origins,
            authorization_server_timeout: AUTHORIZATION_SERVER_TIMEOUT,
            jwks: JwksSettings {
                url: jwks_url,
                cooldown: secs(self.jwks_cooldown_seconds),
                refresh: secs(self.jwks_refresh_seconds),
                max_stale: JWKS_MAX_STALE,
            },
            sessions: McpSessionSettings {
                ttl: secs(self.mcp_session_ttl_seconds),
                max_sessions: MAX_MCP_SESSIONS,
            },
            introspection: secret.map(|secret| IntrospectionSettings {
                url: introspection_url,
                secret,
                cache_ttl: secs(self.introspection_cache_seconds),
                max_cached: MAX_CACHED_INTROSPECTIONS,
            }),
            metrics_token: self.mcp_metrics_token.map(Secret::new),
            resource_name: RESOURCE_NAME.into(),
            metrics: !self.mcp_no_metrics,
            revocation_feed: (!self.no_revocation_feed).then(|| RevocationFeedSettings {
                url: revocation_feed_url,
                credential,
                max_lag,
                wait: max_lag
                    .saturating_sub(Duration::from_secs(5))
                    .clamp(Duration::from_secs(1), Duration::from_secs(30)),
            }),
        })
    }
}

impl McpSettings {
    /// The URL of the root MCP endpoint, as in `resource` of its metadata (no slash added).
    pub fn root_resource(&self) -> String {
        self.resource_server.trim_end_matches('/').to_string()
    }

    /// The URL of the `/mcp` endpoint.
    pub fn mcp_resource(&self) -> String {
        format!("{}/mcp", self.root_resource())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mcp: McpServerConfig,
    }

    fn settings(args: &[&str]) -> Result<McpSettings, ConfigError> {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().mcp.validate()
    }

    #[test]
    fn the_defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.listen, SocketAddr::from(([127, 0, 0, 1], 8990)));
        assert_eq!(s.read_timeout, Duration::from_secs(10));
        assert_eq!(s.required_scopes, ["mcp.read"]);
        assert_eq!(
            s.jwks,
            JwksSettings {
                url: "http://localhost:8999/oauth/jwks".into(),
                cooldown: Duration::from_secs(10),
                refresh: Duration::from_secs(60),
                max_stale: JWKS_MAX_STALE,
            }
        );
        assert_eq!(
            s.sessions,
            McpSessionSettings {
                ttl: Duration::from_secs(24 * 3600),
                max_sessions: MAX_MCP_SESSIONS,
            }
        );
        assert!(s.introspection.is_none());
        let feed = s.revocation_feed.clone().unwrap();
        assert_eq!(feed.url, "http://localhost:8999/oauth/revocations");
        assert!(feed.credential.is_none());
        assert_eq!(feed.max_lag, Duration::from_secs(15));
        assert_eq!(feed.wait, Duration::from_secs(10));
        assert_eq!(s.root_resource(), "http://localhost:8990");
        assert_eq!(s.mcp_resource(), "http://localhost:8990/mcp");
    }

    /// Endpoints: a path joins the authorization server (with its path), a URL stays as given.
    #[test]
    fn endpoints_resolve_against_the_authorization_server() {
        let cases: &[(&[&str], &str, &str)] = &[
            (
                &[],
                "http://localhost:8999/oauth/jwks",
                "http://localhost:8999/introspect",
            ),
            (
                &["--authorization-server", "https://as.example/tenant/"],
                "https://as.example/tenant/oauth/jwks",
                "https://as.example/tenant/introspect",
            ),
            (
                &[
                    "--jwks-endpoint",
                    "https://keys.example/jwks.json",
                    "--introspection-endpoint",
                    "https://as.example/i",
                ],
                "https://keys.example/jwks.json",
                "https://as.example/i",
            ),
        ];
        for (args, jwks, introspection) in cases {
            let mut all = args.to_vec();
            all.extend([
                "--introspect",
                "--rs-introspection-secret",
                "0123456789abcdef",
            ]);
            let s = settings(&all).unwrap();
            assert_eq!(s.jwks.url, *jwks, "{args:?}");
            let i = s.introspection.unwrap();
            assert_eq!(i.url, *introspection, "{args:?}");
            assert_eq!(i.secret.expose(), "0123456789abcdef");
            assert_eq!(i.cache_ttl, Duration::from_secs(5));
        }
    }

    /// The feed: off with `--no-revocation-feed`; its long poll a few seconds shorter than the
    /// lag allowed, within 1..30 s; the credential sent when given, with or without introspection.
    #[test]
    fn the_revocation_feed_settings() {
        assert!(
            settings(&["--no-revocation-feed"])
                .unwrap()
                .revocation_feed
                .is_none()
        );
        for (lag, wait) in [("2", 1), ("6", 1), ("20", 15), ("3600", 30)] {
            let s = settings(&["--revocation-feed-max-lag", lag]).unwrap();
            assert_eq!(s.revocation_feed.unwrap().wait, Duration::from_secs(wait));
        }
        assert!(Cli::try_parse_from(["test", "--revocation-feed-max-lag", "1"]).is_err());
        let s = settings(&[
            "--rs-introspection-secret",
            "0123456789abcdef",
            "--authorization-server",
            "https://as.example/tenant",
        ])
        .unwrap();
        assert!(s.introspection.is_none());
        let feed = s.revocation_feed.unwrap();
        assert_eq!(feed.url, "https://as.example/tenant/oauth/revocations");
        assert_eq!(
            feed.credential.as_ref().map(Secret::expose),
            Some("0123456789abcdef")
        );
    }

    #[test]
    fn each_flag_lands_in_its_group() {
        let s = settings(&[
            "--required-scopes",
            " mcp.read , mcp.write",
            "--mcp-listen",
            "0.0.0.0:9000",
            "--mcp-session-ttl",
            "60",
            "--jwks-cooldown",
            "0",
            "--mcp-read-timeout",
            "3",
            "--allowed-hosts",
            "mcp.example.com",
        ])
        .unwrap();
        assert_eq!(s.required_scopes, ["mcp.read", "mcp.write"]);
        assert_eq!(s.listen, SocketAddr::from(([0, 0, 0, 0], 9000)));
        assert_eq!(s.sessions.ttl, Duration::from_secs(60));
        assert!(s.jwks.cooldown.is_zero());
        assert_eq!(s.read_timeout, Duration::from_secs(3));
        assert_eq!(s.allowed_hosts, ["mcp.example.com"]);
        // Without `--introspect`, a secret alone turns nothing on.
        let s = settings(&["--rs-introspection-secret", "0123456789abcdef"]).unwrap();
        assert!(s.introspection.is_none());
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let cases: &[(&[&str], &str)] = &[
            (&["--required-scopes", "mcp.read,,x"], "REQUIRED_SCOPES"),
            (&["--introspect"], "MCP_INTROSPECTION_SECRET"),
            (
                &["--introspect", "--rs-introspection-secret", "short"],
                "MCP_INTROSPECTION_SECRET",
            ),
            (
                &["--introspection-endpoint", "introspect"],
                "MCP_INTROSPECTION_ENDPOINT",
            ),
            (
                &["--introspection-endpoint", "ftp://as.example/i"],
                "MCP_INTROSPECTION_ENDPOINT",
            ),
            (
                &["--jwks-endpoint", "https://as.example/jwks?x=1"],
                "JWKS_ENDPOINT",
            ),
            (
                &["--required-scopes", " ", "--jwks-endpoint", "jwks"],
                "REQUIRED_SCOPES",
            ),
        ];
        crate::config::checks::assert_refused(cases, settings);
    }
}
