//! The authorization server's routes: which handler serves which path and method, and the layers
//! around them (body limits and timeout, CORS on the machine-facing endpoints, the HTTP trace).
//! An issuer with a path serves everything under that path.

use super::state::AuthState;
use super::{
    account, assets, authorize, consent, health, introspect, jwks, login, logout, metadata,
    register, revocation_feed, revoke, token, upstream_login,
};
use crate::http::request_trace::RequestTraceLayer;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::time::Duration;
use tower_http::cors::{AllowHeaders, Any, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

/// CORS for browser-based clients (MCP Inspector) on the machine-facing endpoints only (MD-2):
/// any origin, no credentials.
fn cors() -> CorsLayer {
    // Mirror the requested headers: a literal `*` does not cover `Authorization` (Fetch).
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers(AllowHeaders::mirror_request())
        .max_age(Duration::from_secs(600))
}

pub fn router(state: AuthState) -> Router {
    let body_timeout = state.config.read_timeout;
    let limits = state.config.limits;
    let metadata_routes = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::handler),
        )
        .route("/.well-known/openid-configuration", get(metadata::handler));
    let api = Router::new()
        .route("/register", post(register::handler))
        .route("/token", post(token::handler))
        .route("/introspect", post(introspect::handler))
        .route("/revoke", post(revoke::handler))
        .route("/oauth/jwks", get(jwks::handler))
        .route("/oauth/revocations", get(revocation_feed::handler))
        .layer(DefaultBodyLimit::max(limits.max_api_body_bytes));
    let pages = Router::new()
        .route(
            "/authorize",
            get(authorize::handle_get).post(authorize::handle_post),
        )
        .route("/login", get(login::show).post(login::submit))
        .route("/login/{provider}", post(upstream_login::begin))
        .route("/login/{provider}/callback", get(upstream_login::callback))
        .route("/logout", post(logout::handler))
        .route("/consent", get(consent::show).post(consent::submit))
        .route("/account", get(account::show))
        .route("/account/revoke", post(account::revoke))
        .route("/assets/style.css", get(assets::stylesheet))
        .layer(DefaultBodyLimit::max(limits.max_page_body_bytes));
    // An issuer with a path serves its endpoints under that path, and its metadata at the
    // path-inserted well-known URLs too (RFC 8414 section 3.1). CORS covers the machine-facing
    // endpoints only, never the pages (MD-2).
    let issuer_path = url::Url::parse(&state.config.issuer)
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default();
    let app = if issuer_path.is_empty() {
        metadata_routes.merge(api).layer(cors()).merge(pages)
    } else {
        let inserted = Router::new()
            .route(
                &format!("/.well-known/oauth-authorization-server{issuer_path}"),
                get(metadata::handler),
            )
            .route(
                &format!("/.well-known/openid-configuration{issuer_path}"),
                get(metadata::handler),
            );
        let machine = inserted
            .nest(&issuer_path, metadata_routes.merge(api))
            .layer(cors());
        machine.merge(Router::new().nest(&issuer_path, pages))
    };
    // Health checks and metrics at the root, outside the request trace and the metrics.
    let mut health = Router::new()
        .route("/healthz", get(crate::http::health::healthz))
        .route("/readyz", get(health::readyz));
    if state.config.metrics {
        health = health.route("/metrics", get(metrics));
    }
    app.with_state(state.clone())
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(RequestTraceLayer::new("auth", state.config.metrics))
        .merge(health.with_state(state))
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<AuthState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    crate::http::metrics::render(state.config.metrics_token.as_ref(), &headers)
}
