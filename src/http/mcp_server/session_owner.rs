//! The session-owner layer in front of the MCP endpoints (RS-5): an MCP session belongs to the
//! subject whose token opened it (the `McpSessions` actor records it). A request on another
//! subject's session gets 403, on an unknown or expired one 404. When the answer opens a session,
//! its owner is recorded; when a DELETE closes one, it is forgotten.

use super::caller::Caller;
use super::refusal::{Endpoint, Refusal, refuse};
use super::state::McpState;
use crate::actors::ask;
use crate::actors::mcp_sessions::{Bind, Forget, Owner};
use crate::trace::{Secret, fingerprint};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// The header that carries the MCP session id.
pub const SESSION_HEADER: &str = "mcp-session-id";

pub async fn layer(State(state): State<Arc<McpState>>, request: Request, next: Next) -> Response {
    let endpoint = Endpoint::of(request.uri().path());
    let Some(caller) = request.extensions().get::<Caller>() else {
        return refuse(&state, endpoint, Refusal::NoToken);
    };
    let subject = Arc::clone(&caller.subject);
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(session_id) = &session {
        match ask(
            &state.sessions,
            Owner {
                session_id: Secret::new(session_id.as_str()),
            },
        )
        .await
        {
            Ok(Some(owner)) if *owner == *subject => {}
            Ok(Some(_)) => {
                tracing::warn!(sub = %subject, session = %fingerprint(session_id), "MCP session of another user refused");
                return refuse(
                    &state,
                    endpoint,
                    Refusal::Forbidden("the MCP session belongs to another user"),
                );
            }
            Ok(None) => return refuse(&state, endpoint, Refusal::SessionNotFound),
            Err(_) => return refuse(&state, endpoint, Refusal::Unavailable),
        }
    }
    let closing = request.method() == Method::DELETE;

    let response = next.run(request).await;

    if session.is_none()
        && let Some(new_session) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
    {
        let bind = Bind {
            session_id: Secret::new(new_session),
            subject: subject.to_string(),
        };
        if ask(&state.sessions, bind).await.is_err() {
            return refuse(&state, endpoint, Refusal::Unavailable);
        }
    }
    if closing
        && response.status().is_success()
        && let Some(session_id) = session
    {
        let forget = Forget {
            session_id: Secret::new(session_id),
        };
        let _ = ask(&state.sessions, forget).await;
    }
    response
}
