//! The first check in front of the MCP endpoints (RS-5, DNS rebinding): the `Host` header must
//! name this server and an `Origin`, when sent, must be allowed (the rule is `origin.rs`).
//! Anything else is 403 before the token is even read.

use super::refusal::{Endpoint, Refusal, refuse};
use super::state::McpState;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::Response;

/// The check (step 1 of `gate.rs`): `Some` answer refuses the request.
pub fn check(state: &McpState, endpoint: Endpoint, request: &Parts) -> Option<Response> {
    let headers = &request.headers;
    let host_ok = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri.authority().map(|a| a.as_str()))
        .is_some_and(|h| state.origins.host_allowed(h));
    if !host_ok {
        return Some(refuse(
            state,
            endpoint,
            Refusal::Forbidden("the Host header names another server"),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN)
        && !origin
            .to_str()
            .is_ok_and(|o| state.origins.origin_allowed(o))
    {
        return Some(refuse(
            state,
            endpoint,
            Refusal::Forbidden("the Origin is not allowed"),
        ));
    }
    None
}
