//! The resource server's routes: RFC 9728 metadata, and the MCP endpoint at `/mcp` and at `/`
//! behind its layers, outermost first: Host and Origin (`origin_check.rs`), the access token
//! (`bearer.rs`, which attaches the [`Caller`](super::caller::Caller)), the baseline scopes
//! (`scope_gate.rs`), the MCP session's owner (`session_owner.rs`), then each called tool's scope
//! and the choice of rmcp service (`scope_gate.rs`). The MCP service itself is the caller's:
//! this server's (`service.rs`), or an author's rmcp service (`protection.rs`).

use super::guard::GuardLayer;
use super::state::McpState;
use super::{bearer, health, metadata, origin_check, scope_gate, session_owner};
use crate::http::request_trace::RequestTraceLayer;
use axum::Router;
use axum::extract::State;
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::cors::{AllowHeaders, Any, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

/// The MCP endpoints served by `mcp` behind the layers, and the metadata, health and metrics
/// routes.
pub fn router(state: McpState, mcp: MethodRouter) -> Router {
    let body_timeout = state.config.read_timeout;
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
        .route("/mcp", mcp.clone())
        .route("/", mcp)
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
