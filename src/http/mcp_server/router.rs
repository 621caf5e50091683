//! The resource server's routes: RFC 9728 metadata, and the MCP endpoint at `/mcp` and at `/`
//! behind its layers, outermost first: Host and Origin (`origin_check.rs`), the access token
//! (`bearer.rs`, which attaches the [`Caller`](super::tools::Caller)), the baseline scopes
//! (`scope_gate.rs`), the MCP session's owner (`session_owner.rs`), then each called tool's scope
//! and the choice of rmcp service (`scope_gate.rs`). rmcp serves MCP sessions (the 2025
//! revisions) with one service and requests outside any session with another.

use super::guard::GuardLayer;
use super::jsonrpc::Route;
use super::state::McpState;
use super::{bearer, health, metadata, origin_check, scope_gate, session_owner, tools};
use crate::http::request_trace::RequestTraceLayer;
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::cors::{AllowHeaders, Any, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

type Service<M> = StreamableHttpService<tools::McpTools, M>;

/// The two rmcp services behind the layers.
#[derive(Clone)]
struct Services {
    stateful: Service<LocalSessionManager>,
    stateless: Service<NeverSessionManager>,
}

/// Hands the request to the service the scope gate chose ([`Route`]).
async fn dispatch(State(services): State<Services>, request: Request) -> Response {
    let route = request
        .extensions()
        .get::<Route>()
        .copied()
        .unwrap_or(Route::Stateful);
    let response = match route {
        Route::Stateful => services.stateful.oneshot(request).await,
        Route::Stateless => services.stateless.oneshot(request).await,
    };
    match response {
        Ok(response) => response.map(axum::body::Body::new).into_response(),
        Err(never) => match never {},
    }
}

pub fn router(state: McpState) -> Router {
    let body_timeout = state.config.read_timeout;
    // Host and Origin are checked by our own layer (one rule, one place), so rmcp's
    // built-in loopback-only host check is turned off.
    let notes = state.notes.clone();
    let stateful = StreamableHttpService::new(
        move || Ok(tools::McpTools::new(notes.clone())),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins(),
    );
    // Requests outside any session (2026-07-28, or a 2025 client that sends `tools/call`
    // without `initialize`): each is served on its own and answered with plain JSON.
    let notes = state.notes.clone();
    let stateless = StreamableHttpService::new(
        move || Ok(tools::McpTools::new(notes.clone())),
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
    // The layers, outermost first; each reads what the ones before it established.
    let shared = Arc::new(state.clone());
    let guard = ServiceBuilder::new()
        .layer(GuardLayer::new(Arc::clone(&shared), origin_check::check))
        .layer(from_fn_with_state(Arc::clone(&shared), bearer::layer))
        .layer(GuardLayer::new(Arc::clone(&shared), scope_gate::baseline))
        .layer(from_fn_with_state(
            Arc::clone(&shared),
            session_owner::layer,
        ))
        .layer(from_fn_with_state(shared, scope_gate::tool_calls));
    let protected = Router::new()
        .route("/mcp", any(dispatch))
        .route("/", any(dispatch))
        .with_state(services)
        .layer(guard);
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
    // Health checks and metrics, outside the Host/Origin and token layers, the request trace and
    // the metrics.
    let mut health = Router::new()
        .route("/healthz", get(crate::http::health::healthz))
        .route("/readyz", get(health::readyz));
    if state.config.metrics {
        health = health.route("/metrics", get(metrics));
    }
    let metrics_on = state.config.metrics;
    let health = health.with_state(state.clone());
    let app = Router::new()
        .route("/.well-known/oauth-protected-resource", get(metadata::root))
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(metadata::mcp),
        )
        .with_state(state)
        .merge(protected);
    app.layer(cors)
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(RequestTraceLayer::new("mcp", metrics_on))
        .merge(health)
}

async fn metrics(State(state): State<McpState>, headers: axum::http::HeaderMap) -> Response {
    crate::http::metrics::render(state.config.metrics_token.as_ref(), &headers)
}
