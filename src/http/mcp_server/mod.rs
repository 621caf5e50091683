//! The MCP resource server: rmcp's streamable HTTP service at `/mcp` and at `/`, behind composable
//! layers (Host and Origin, the access token, the scope gate, the MCP session's owner; the order
//! is in `router.rs`), with RFC 9728 metadata (`metadata.rs`) and the tools (`tools.rs`). Its
//! state (`state.rs`) is immutable configuration and its actors: `JwksCache` (the AS's keys),
//! `McpSessions` (which user owns which MCP session), `RevocationFeed` (the AS's revoked tokens,
//! unless `--no-revocation-feed`) and, with `--introspect`, `IntrospectionCache` (recent
//! introspection answers, `introspection.rs`). This file builds the
//! state and runs the server.

mod bearer;
mod guard;
mod health;
pub mod introspection;
mod jsonrpc;
mod metadata;
mod origin;
mod origin_check;
mod refusal;
mod router;
mod scope_gate;
mod session_owner;
mod state;
pub mod tools;

pub use bearer::LEEWAY_SECONDS;
pub use state::McpState;

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
use jsonwebtoken::{Algorithm, Validation};
use origin::RequestOrigins;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The MCP resource server, bound to its port and ready to run.
pub struct McpServer {
    listener: TcpListener,
    router: Router,
    state: McpState,
}

impl McpServer {
    pub async fn build(settings: McpSettings) -> Result<Self, BuildError> {
        let addr = settings.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BuildError::Bind { addr, source })?;
        Self::build_on(listener, settings).await
    }

    pub async fn build_on(
        listener: TcpListener,
        settings: McpSettings,
    ) -> Result<Self, BuildError> {
        let local = listener.local_addr()?;
        let (router, state) = Self::build_router(settings, local.ip().is_loopback()).await?;
        Ok(McpServer {
            listener,
            router,
            state,
        })
    }

    /// Builds the server's routes and actors without a listener of its own, for an app that
    /// serves them on its listener (`listening_on_loopback` says whether that listener is on
    /// loopback, which widens the default hosts and origins).
    pub async fn build_router(
        settings: McpSettings,
        listening_on_loopback: bool,
    ) -> Result<(Router, McpState), BuildError> {
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
                Some(introspection::Introspector {
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
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        let required = ScopeSet::from_names(settings.required_scopes.iter().cloned());
        let challenge_scope = required.union(&ScopeSet::from_names(
            tools::TOOL_SCOPES.iter().map(|(_, scope)| *scope),
        ));
        let origins = RequestOrigins::new(&settings, listening_on_loopback);
        let notes = spawn_supervised::<crate::actors::notes::Notes>(&supervisor, ()).await;
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
            notes,
        };
        let router = router::router(state.clone());
        Ok((router, state))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &McpState {
        &self.state
    }

    /// Serves until `shutdown` resolves; then stops accepting and lets in-flight requests finish
    /// (bounded by [`crate::http::DRAIN_TIMEOUT`]).
    pub fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        self.run(Box::pin(shutdown))
    }

    /// [`Self::run_until`] without its type parameter: the serving code is compiled here once.
    async fn run(self, shutdown: crate::http::Shutdown) -> std::io::Result<()> {
        tracing::info!(
            server = "mcp",
            resource = %self.state.config.root_resource(),
            authorization_server = %self.state.config.authorization_server,
            introspect = self.state.introspection.is_some(),
            revocation_feed = self.state.config.revocation_feed.as_ref().map(|f| f.url.as_str()),
            listen = %self.listener.local_addr()?,
            "MCP server listening"
        );
        let read_timeout = self.state.config.read_timeout;
        crate::http::serve(self.listener, self.router, read_timeout, shutdown).await
    }
}
