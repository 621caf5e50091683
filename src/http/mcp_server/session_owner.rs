//! The session-owner check in front of the MCP endpoints (RS-5): an MCP session belongs to the
//! subject whose token opened it (the `McpSessions` actor records it). A request on another
//! subject's session gets 403, on an unknown or expired one 404. When the answer opens a session,
//! its owner is recorded; when a DELETE closes one, it is forgotten.

use super::bearer::Authenticated;
use super::refusal::{Endpoint, Refusal, refuse};
use super::state::McpState;
use crate::actors::mcp_sessions::{Bind, Forget, Owner};
use crate::actors::revocation_feed::{OwnsSession, SessionClosed};
use crate::actors::{ask, tell};
use crate::trace::{Secret, SecretDigest, fingerprint};
use axum::http::Method;
use axum::http::request::Parts;
use axum::response::Response;
use tokio::time::Instant;

/// The header that carries the MCP session id.
pub const SESSION_HEADER: &str = "mcp-session-id";

/// The MCP session a request names (the `Mcp-Session-Id` header), if it names one.
pub fn named(request: &Parts) -> Option<&str> {
    request
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
}

/// The MCP session a request names, once its owner is checked.
pub struct Session {
    /// The request's `Mcp-Session-Id`: `None` when it names no session (it may open one).
    id: Option<String>,
    /// A DELETE: the request closes its session.
    closing: bool,
    /// The token's digest, by which the revocation feed remembers it.
    token: Option<SecretDigest>,
}

/// Step 4 of `gate.rs`: a request on a session must come from the session's owner. `Err` is the
/// answer that refuses it. `McpSessions` is asked unless the revocation feed already remembers
/// that this token owns the session; once asked, the feed is told, for the token's next requests.
pub async fn check(
    state: &McpState,
    endpoint: Endpoint,
    token: &Authenticated,
    request: &Parts,
) -> Result<Session, Response> {
    let id = named(request).map(str::to_string);
    let subject = &token.caller.subject;
    if let Some(session_id) = id.as_deref().filter(|_| !token.owns_session) {
        let owner = Owner {
            session_id: Secret::new(session_id),
        };
        match ask(&state.sessions, owner).await {
            Ok(Some(owned)) if *owned.subject == **subject => {
                remember_owner(state, token.digest, session_id, owned.until);
            }
            Ok(Some(_)) => {
                tracing::warn!(sub = %subject, session = %fingerprint(session_id), "MCP session of another user refused");
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
        token: token.digest,
    })
}

/// Tells the revocation feed that the token `digest` owns `session_id` until `until`.
fn remember_owner(
    state: &McpState,
    digest: Option<SecretDigest>,
    session_id: &str,
    until: Instant,
) {
    if let (Some(feed), Some(token)) = (&state.revocation_feed, digest) {
        let session = Secret::new(session_id);
        tell(
            feed,
            OwnsSession {
                token,
                session,
                until,
            },
        );
    }
}

/// After the MCP service answered `session`'s request: the owner of a session the answer opens
/// is recorded (when that fails, the answer is 503 instead), and a session a DELETE closed is
/// forgotten, by `McpSessions` and by the tokens the revocation feed remembers as its owners.
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
        match ask(&state.sessions, bind).await {
            Ok(until) => remember_owner(state, session.token, new_session, until),
            Err(_) => return refuse(state, endpoint, Refusal::Unavailable),
        }
    }
    if session.closing
        && response.status().is_success()
        && let Some(session_id) = session.id
    {
        let session_id = Secret::new(session_id);
        if let Some(feed) = &state.revocation_feed {
            let session = session_id.clone();
            tell(feed, SessionClosed { session });
        }
        let forget = Forget { session_id };
        let _ = ask(&state.sessions, forget).await;
    }
    response
}
