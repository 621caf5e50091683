//! How the layers in front of the MCP endpoints refuse a request (RS-1..RS-5): one status, one
//! `WWW-Authenticate` challenge (RFC 6750 section 3, pointing to the endpoint's protected
//! resource metadata, RFC 9728) and one JSON body per reason, so that every layer answers alike.

use super::state::McpState;
use crate::oauth::scope::ScopeSet;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why a request is refused.
pub enum Refusal {
    Forbidden(&'static str),
    NoToken,
    BadRequest(&'static str),
    InvalidToken(&'static str),
    InsufficientScope(ScopeSet),
    SessionNotFound,
    Unavailable,
    /// Whether the token is still valid cannot be told: the revocation feed is behind, or the
    /// AS's introspection endpoint could not be asked.
    StatusUnknown,
}

/// Which of the two MCP endpoints a request is for: the challenge points to its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/`.
    Root,
    /// `/mcp`.
    Mcp,
}

impl Endpoint {
    /// The endpoint of a request path.
    pub fn of(path: &str) -> Self {
        match path {
            "/" | "" => Endpoint::Root,
            _ => Endpoint::Mcp,
        }
    }
}

fn prm_url(state: &McpState, endpoint: Endpoint) -> String {
    let base = state.config.root_resource();
    match endpoint {
        Endpoint::Root => format!("{base}/.well-known/oauth-protected-resource"),
        Endpoint::Mcp => format!("{base}/.well-known/oauth-protected-resource/mcp"),
    }
}

/// The answer to a refused request: its status, the `WWW-Authenticate` challenge where one is
/// due, and a JSON body with `error` and `error_description`.
pub fn refuse(state: &McpState, endpoint: Endpoint, refusal: Refusal) -> Response {
    let prm = prm_url(state, endpoint);
    let scope = state.challenge_scope.to_string();
    let (status, challenge, error, description) = match refusal {
        Refusal::Forbidden(why) => (StatusCode::FORBIDDEN, None, "forbidden", why),
        Refusal::NoToken => (
            StatusCode::UNAUTHORIZED,
            Some(format!(
                r#"Bearer resource_metadata="{prm}", scope="{scope}""#
            )),
            "invalid_token",
            "an access token is required",
        ),
        Refusal::BadRequest(why) => (
            StatusCode::BAD_REQUEST,
            Some(format!(
                r#"Bearer error="invalid_request", resource_metadata="{prm}""#
            )),
            "invalid_request",
            why,
        ),
        Refusal::InvalidToken(why) => (
            StatusCode::UNAUTHORIZED,
            Some(format!(
                r#"Bearer error="invalid_token", error_description="{why}", resource_metadata="{prm}", scope="{scope}""#
            )),
            "invalid_token",
            why,
        ),
        Refusal::InsufficientScope(needed) => (
            StatusCode::FORBIDDEN,
            Some(format!(
                r#"Bearer error="insufficient_scope", scope="{needed}", resource_metadata="{prm}", error_description="the token lacks a required scope""#
            )),
            "insufficient_scope",
            "the token lacks a required scope",
        ),
        Refusal::SessionNotFound => (
            StatusCode::NOT_FOUND,
            None,
            "session_not_found",
            "the MCP session is unknown or expired; initialize a new one",
        ),
        Refusal::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "temporarily_unavailable",
            "the server is busy; retry shortly",
        ),
        Refusal::StatusUnknown => (
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "temporarily_unavailable",
            "the authorization server could not confirm that the token is still valid; retry shortly",
        ),
    };
    let mut response = (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    if let Some(challenge) = challenge
        && let Ok(value) = HeaderValue::from_str(&challenge)
    {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
