//! Protected resource metadata (RFC 9728, PRM-1): `/.well-known/oauth-protected-resource/mcp`
//! describes the `/mcp` endpoint and `/.well-known/oauth-protected-resource` the root one. Each
//! names as `resource` exactly the URL of its endpoint, and the issuer exactly as the authorization
//! server publishes it.

use super::state::McpState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub fn document(state: &McpState, resource: &str) -> Value {
    json!({
        "resource": resource,
        "authorization_servers": [state.config.authorization_server],
        "scopes_supported": state.challenge_scope.iter().collect::<Vec<_>>(),
        "bearer_methods_supported": ["header"],
        "resource_name": state.config.resource_name,
    })
}

fn answer(doc: Value) -> Response {
    let mut response = Json(doc).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

pub async fn root(State(state): State<McpState>) -> Response {
    answer(document(&state, &state.config.root_resource()))
}

pub async fn mcp(State(state): State<McpState>) -> Response {
    answer(document(&state, &state.config.mcp_resource()))
}
