//! The session-owner check in front of the MCP endpoints (RS-5): an MCP session belongs to the
//! subject whose token opened it (the `McpSessions` actor records it). A request on another
//! subject's session gets 403, on an unknown or expired one 404. When the answer opens a session,
//! its owner is recorded; when a DELETE closes one, it is forgotten.

use super::caller::Caller;
use super::refusal::{Endpoint, Refusal, refuse};
use super::state::McpState;
use crate::actors::ask;
use crate::actors::mcp_sessions::{Bind, Forget, Owner};
use crate::trace::{Secret, fingerprint};
use axum::http::Method;
use axum::http::request::Parts;
use axum::response::Response;

/// The header that carries the MCP session id.
pub const SESSION_HEADER: &str = "mcp-session-id";

/// The MCP session a request names, once its owner is checked.
pub struct Session {
    /// The request's `Mcp-Session-Id`: `None` when it names no session (it may open one).
    id: Option<String>,
    /// A DELETE: the request closes its session.
    closing: bool,
}

/// Step 4 of `gate.rs`: a request on a session must come from the session's owner. `Err` is the
/// answer that refuses it.
pub async fn check(
    state: &McpState,
    endpoint: Endpoint,
    caller: &Caller,
    request: &Parts,
) -> Result<Session, Response> {
    let id = request
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(session_id) = &id {
        let owner = Owner {
            session_id: Secret::new(session_id.as_str()),
        };
        match ask(&state.sessions, owner).await {
            Ok(Some(owner)) if *owner == *caller.subject => {}
            Ok(Some(_)) => {
                tracing::warn!(sub = %caller.subject, session = %fingerprint(session_id), "MCP session of another user refused");
                return Err(refuse(
                    state,
                    endpoint,
                    Refusal::Forbidden("the MCP session belongs to another user"),
                ));
            }
            Ok(None) => return Err(refuse(state, endpoint, Refusal::SessionNotFound)),
            Err(_) => return Err(refuse(state, endpoint, Refusal::Unavailable)),
        }
    }
    Ok(Session {
        id,
        closing: request.method == Method::DELETE,
    })
}

/// After the MCP service answered `session`'s request: the owner of a session the answer opens
/// is recorded (when that fails, the answer is 503 instead), and a session a DELETE closed is
/// forgotten.
pub async fn after(
    state: &McpState,
    endpoint: Endpoint,
    session: Session,
    subject: &str,
    response: Response,
) -> Response {
    if session.id.is_none()
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
            return refuse(state, endpoint, Refusal::Unavailable);
        }
    }
    if session.closing
        && response.status().is_success()
        && let Some(session_id) = session.id
    {
        let forget = Forget {
            session_id: Secret::new(session_id),
        };
        let _ = ask(&state.sessions, forget).await;
    }
    response
}
