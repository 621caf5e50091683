//! The resource server's routes: RFC 9728 metadata, and the MCP endpoint at `/mcp` and at `/`
//! behind the gate (`gate.rs`: Host and Origin, the access token, the scopes, the MCP session's
//! owner, in that order), with CORS, the body read timeout and the request trace around them all.
//! The MCP service itself is the caller's: this server's (`service.rs`), or an author's rmcp
//! service (`protection.rs`).

use super::gate::Gate;
use super::state::McpState;
use super::{health, metadata};
use crate::http::request_trace::RequestTraceLayer;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowHeaders, Any, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

/// The MCP endpoints served by `mcp` behind the gate, and the metadata, health and metrics
/// routes.
pub fn router<S>(state: McpState, mcp: S) -> Router
where
    S: tower::Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    let body_timeout = state.config.read_timeout;
    let gate = Gate::new(Arc::new(state.clone()), mcp);
    let protected = Router::new()
        .route_service("/mcp", gate.clone())
        .route_service("/", gate);
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
    // Health checks and metrics, outside the gate, the request trace and the metrics.
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
