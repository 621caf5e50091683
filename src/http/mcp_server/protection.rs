//! [`ProtectedResource`]: the resource-server half of this crate, for any rmcp server. It starts
//! the actors that validate bearer tokens (`JwksCache` for the authorization server's keys,
//! `McpSessions` for the owner of each MCP session, `RevocationFeed` unless turned off, and
//! `IntrospectionCache` with introspection on) and puts an MCP service behind the checks that
//! use them: Host and Origin, the access token (401 with the RFC 9728 challenge), the baseline
//! scopes and each tool's scope ([`ToolScopes`]; 403 `insufficient_scope`), the session's owner.
//! The tools read the caller from the request ([`super::Caller`]). The protected resource
//! metadata, CORS, the request trace, health checks and metrics come with it.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mcp_oauth::{McpSettings, ProtectedResource, ToolScopes};
//! # #[derive(Clone)] struct MyTools;
//! # impl rmcp::ServerHandler for MyTools {}
//! use rmcp::transport::streamable_http_server::{
//!     StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
//! };
//!
//! let settings = McpSettings::new("https://auth.example.com", "https://mcp.example.com")?;
//! let scopes = ToolScopes::new().tool("delete_everything", "mcp.write");
//! let protected = ProtectedResource::start(settings, scopes, false).await?;
//! let tools = StreamableHttpService::new(
//!     || Ok(MyTools),
//!     LocalSessionManager::default().into(),
//!     StreamableHttpServerConfig::default()
//!         .disable_allowed_hosts()
//!         .disable_allowed_origins(),
//! );
//! let app: axum::Router = protected.router(tools);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use super::introspection::Introspector;
use super::origin::RequestOrigins;
use super::router;
use super::state::McpState;
use super::tool_scopes::ToolScopes;
use crate::actors::introspection_cache::IntrospectionCacheArgs;
use crate::actors::jwks_cache::JwksCacheArgs;
use crate::actors::mcp_sessions::McpSessionsArgs;
use crate::actors::revocation_feed::RevocationFeedArgs;
use crate::actors::{
    IntrospectionCache, JwksCache, McpSessions, RevocationFeed, Supervisor, spawn_supervised,
};
use crate::config::McpSettings;
use crate::oauth::scope::ScopeSet;
use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use jsonwebtoken::{Algorithm, Validation};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why the resource server could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client for the authorization server could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    /// Another I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The actors and settings that protect an MCP service; [`Self::router`] puts a service behind
/// them.
pub struct ProtectedResource {
    state: McpState,
}

impl ProtectedResource {
    /// Starts the actors for `settings`, with the scope each tool needs. `listening_on_loopback`
    /// says whether the app listens on a loopback address, which admits the loopback host names
    /// and origins by default (for local clients such as MCP Inspector).
    pub async fn start(
        settings: McpSettings,
        tools: ToolScopes,
        listening_on_loopback: bool,
    ) -> Result<ProtectedResource, BuildError> {
        if settings.metrics {
            crate::http::metrics::install();
        }
        let http = reqwest::Client::builder()
            .timeout(settings.authorization_server_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BuildError::Http(e.to_string()))?;
        let supervisor = Supervisor::start();
        let revocation_feed = match &settings.revocation_feed {
            Some(feed) => Some(
                spawn_supervised::<RevocationFeed>(
                    &supervisor,
                    RevocationFeedArgs {
                        url: feed.url.clone(),
                        credential: feed.credential.clone(),
                        max_lag: feed.max_lag,
                        wait: feed.wait,
                        timeout: settings.authorization_server_timeout,
                        http: http.clone(),
                        remember_for: settings.jwks.refresh,
                    },
                )
                .await,
            ),
            None => None,
        };
        let jwks = spawn_supervised::<JwksCache>(
            &supervisor,
            JwksCacheArgs {
                jwks_url: settings.jwks.url.clone(),
                cooldown: settings.jwks.cooldown,
                refresh: settings.jwks.refresh,
                max_stale: settings.jwks.max_stale,
                http: http.clone(),
                remembered_tokens: revocation_feed.clone(),
            },
        )
        .await;
        let sessions = spawn_supervised::<McpSessions>(
            &supervisor,
            McpSessionsArgs {
                ttl: settings.sessions.ttl,
                max_sessions: settings.sessions.max_sessions,
            },
        )
        .await;
        let introspection = match &settings.introspection {
            Some(introspection) => {
                let cache = spawn_supervised::<IntrospectionCache>(
                    &supervisor,
                    IntrospectionCacheArgs {
                        ttl: introspection.cache_ttl,
                        max_entries: introspection.max_cached,
                    },
                )
                .await;
                Some(Introspector {
                    url: introspection.url.clone(),
                    secret: introspection.secret.clone(),
                    http,
                    cache,
                })
            }
            None => None,
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[settings.authorization_server.as_str()]);
        let root = settings.root_resource();
        validation.set_audience(&[root.clone(), format!("{root}/"), settings.mcp_resource()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = super::bearer::LEEWAY_SECONDS;
        validation.validate_nbf = true;
        let required = ScopeSet::from_names(settings.required_scopes.iter().cloned());
        let challenge_scope = required.union(&tools.all());
        let origins = RequestOrigins::new(&settings, listening_on_loopback);
        let state = McpState {
            supervisor,
            config: Arc::new(settings),
            jwks,
            sessions,
            validation: Arc::new(validation),
            required: Arc::new(required),
            challenge_scope: Arc::new(challenge_scope),
            origins: Arc::new(origins),
            introspection,
            revocation_feed,
            tool_scopes: Arc::new(tools),
        };
        Ok(ProtectedResource { state })
    }

    /// The MCP endpoints (`/mcp` and `/`) served by `mcp` behind the checks, with the protected
    /// resource metadata, CORS, the request trace, `/healthz`, `/readyz` and `/metrics`. `mcp`
    /// is cloned once for each request that passes the checks.
    pub fn router<S>(&self, mcp: S) -> Router
    where
        S: tower::Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
        S::Response: IntoResponse + 'static,
        S::Future: Send + 'static,
    {
        router::router(self.state.clone(), mcp)
    }

    /// [`Self::router`] for a service that is already a route.
    pub fn router_with(&self, mcp: axum::routing::MethodRouter) -> Router {
        router::router(self.state.clone(), mcp)
    }

    /// The state the checks share: settings and actor references.
    pub fn state(&self) -> &McpState {
        &self.state
    }

    /// The state, for an app that keeps it after building its router.
    pub fn into_state(self) -> McpState {
        self.state
    }
}
