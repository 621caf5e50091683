//! The MCP resource server: rmcp's streamable HTTP service at `/mcp` and at `/`, behind the
//! bearer middleware (`bearer.rs`), with RFC 9728 metadata (`metadata.rs`) and the tools
//! (`tools.rs`). Its state is immutable configuration and its actors: `JwksCache` (the AS's keys),
//! `McpSessions` (which user owns which MCP session) and, with `--introspect`,
//! `IntrospectionCache` (recent introspection answers, `introspection.rs`).

mod bearer;
pub mod introspection;
mod metadata;
mod origin;
pub mod tools;

use crate::actors::introspection_cache::IntrospectionCacheArgs;
use crate::actors::jwks_cache::JwksCacheArgs;
use crate::actors::mcp_sessions::McpSessionsArgs;
use crate::actors::{IntrospectionCache, JwksCache, McpSessions, Supervisor, spawn_supervised};
use crate::config::McpServerConfig;
use crate::oauth::scope::ScopeSet;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use jsonwebtoken::{Algorithm, Validation};
use kameo::actor::ActorRef;
use origin::RequestOrigins;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::cors::{AllowHeaders, Any, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// What the resource server's handlers use: immutable configuration and actor references.
#[derive(Clone)]
pub struct McpState {
    /// Parent of this server's actors; they live as long as the state does.
    pub supervisor: ActorRef<Supervisor>,
    pub config: Arc<McpServerConfig>,
    pub jwks: ActorRef<JwksCache>,
    pub sessions: ActorRef<McpSessions>,
    pub validation: Arc<Validation>,
    /// Scopes every MCP request needs (the baseline; tools may need more).
    pub required: Arc<ScopeSet>,
    /// Scopes named in the 401 challenge: the baseline and every tool's scope, so a client
    /// that authorizes once can call every tool.
    pub challenge_scope: Arc<ScopeSet>,
    pub origins: Arc<RequestOrigins>,
    /// Set with `--introspect`: every locally valid token is also checked at the AS.
    pub introspection: Option<introspection::Introspector>,
}

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
    pub async fn build(config: McpServerConfig) -> Result<Self, BuildError> {
        let addr = config.listen_addr();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BuildError::Bind { addr, source })?;
        Self::build_on(listener, config).await
    }

    pub async fn build_on(
        listener: TcpListener,
        config: McpServerConfig,
    ) -> Result<Self, BuildError> {
        let local = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BuildError::Http(e.to_string()))?;
        let supervisor = Supervisor::start();
        let jwks = spawn_supervised::<JwksCache>(
            &supervisor,
            JwksCacheArgs {
                jwks_url: config.jwks_url(),
                cooldown: Duration::from_secs(config.jwks_cooldown_seconds),
                http: http.clone(),
            },
        )
        .await;
        let sessions = spawn_supervised::<McpSessions>(
            &supervisor,
            McpSessionsArgs {
                ttl: Duration::from_secs(config.mcp_session_ttl_seconds),
                max_sessions: 100_000,
            },
        )
        .await;
        let introspection = match (&config.introspect, &config.rs_introspection_secret) {
            (true, Some(secret)) => {
                let cache = spawn_supervised::<IntrospectionCache>(
                    &supervisor,
                    IntrospectionCacheArgs {
                        ttl: Duration::from_secs(config.introspection_cache_seconds),
                        max_entries: 100_000,
                    },
                )
                .await;
                Some(introspection::Introspector {
                    url: config.introspection_url(),
                    secret: crate::trace::Secret::new(secret.as_str()),
                    http,
                    cache,
                })
            }
            _ => None,
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[config.authorization_server.as_str()]);
        let root = config.root_resource();
        validation.set_audience(&[root.clone(), format!("{root}/"), config.mcp_resource()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        let required =
            ScopeSet::from_names(config.required_scopes.iter().map(|s| s.trim().to_string()));
        let challenge_scope = required.union(&ScopeSet::from_names(
            tools::TOOL_SCOPES.iter().map(|(_, scope)| *scope),
        ));
        let origins = RequestOrigins::new(&config, local.ip().is_loopback());
        let state = McpState {
            supervisor,
            config: Arc::new(config),
            jwks,
            sessions,
            validation: Arc::new(validation),
            required: Arc::new(required),
            challenge_scope: Arc::new(challenge_scope),
            origins: Arc::new(origins),
            introspection,
        };
        let router = router(state.clone());
        Ok(McpServer {
            listener,
            router,
            state,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &McpState {
        &self.state
    }

    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(
            server = "mcp",
            resource = %self.state.config.root_resource(),
            authorization_server = %self.state.config.authorization_server,
            introspect = self.state.introspection.is_some(),
            listen = %self.listener.local_addr()?,
            "MCP server listening"
        );
        let read_timeout = Duration::from_secs(self.state.config.mcp_read_timeout_seconds);
        crate::http::serve(self.listener, self.router, read_timeout, shutdown).await
    }
}

type Service<M> = StreamableHttpService<tools::McpTools, M>;

/// The two rmcp services behind the bearer middleware.
#[derive(Clone)]
struct Services {
    stateful: Service<LocalSessionManager>,
    stateless: Service<NeverSessionManager>,
}

/// Hands the request to the service the middleware chose ([`bearer::Route`]).
async fn dispatch(State(services): State<Services>, request: Request) -> Response {
    let route = request
        .extensions()
        .get::<bearer::Route>()
        .copied()
        .unwrap_or(bearer::Route::Stateful);
    let response = match route {
        bearer::Route::Stateful => services.stateful.oneshot(request).await,
        bearer::Route::Stateless => services.stateless.oneshot(request).await,
    };
    match response {
        Ok(response) => response.map(axum::body::Body::new).into_response(),
        Err(never) => match never {},
    }
}

fn router(state: McpState) -> Router {
    let body_timeout = Duration::from_secs(state.config.mcp_read_timeout_seconds);
    // Host and Origin are checked by our own middleware (one rule, one place), so rmcp's
    // built-in loopback-only host check is turned off.
    let stateful = StreamableHttpService::new(
        || Ok(tools::McpTools::new()),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins(),
    );
    // Requests outside any session (2026-07-28, or a 2025 client that sends `tools/call`
    // without `initialize`): each is served on its own and answered with plain JSON.
    let stateless = StreamableHttpService::new(
        || Ok(tools::McpTools::new()),
        NeverSessionManager::default().into(),
        StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins()
            .with_legacy_session_mode(false)
            .with_json_response(true),
    );
    let services = Services {
        stateful,
        stateless,
    };
    let protected = Router::new()
        .route("/mcp", any(dispatch))
        .route("/", any(dispatch))
        .with_state(services)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            bearer::middleware,
        ));
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderName::from_static("mcp-session-id"),
            axum::http::HeaderName::from_static("mcp-protocol-version"),
        ])
        .max_age(Duration::from_secs(600));
    Router::new()
        .route("/.well-known/oauth-protected-resource", get(metadata::root))
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(metadata::mcp),
        )
        .with_state(state)
        .merge(protected)
        .layer(cors)
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(crate::http::trace_layer("mcp"))
}
