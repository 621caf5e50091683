//! The scope gate in front of the MCP endpoints (RS-2, step-up), in two layers:
//! - [`baseline`], a check right after the token: every request needs the baseline scopes
//!   (`--required-scopes`, `mcp.read` by default).
//! - [`tool_calls`], after the session owner: a POST's JSON-RPC body is read (the one read of it,
//!   `jsonrpc.rs`) and traced, each `tools/call` needs the scope its tool declares
//!   (`ToolScopes`, from whoever serves the tools), and the request is routed: one with an `Mcp-Session-Id` or an
//!   `initialize`, or a GET/DELETE, goes to the stateful service (sessions of the 2025
//!   revisions); any other POST is served statelessly (2026-07-28 requests, and clients that
//!   never open a session), see [`Route`]. `tools/list` lists every tool.
//!
//! A token without the scopes gets 403 `insufficient_scope` whose `scope` names what the token
//! already has plus what is missing, so a client that replaces its scopes with the challenge's
//! (2025-11-25) and one that adds them (2026-07-28) both ask for enough.

use super::caller::Caller;
use super::jsonrpc::{Route, Rpcs};
use super::refusal::{Endpoint, Refusal, refuse};
use super::session_owner::SESSION_HEADER;
use super::state::McpState;
use crate::http::request_trace::{LINE_TARGET, McpCall};
use crate::oauth::scope::ScopeSet;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// 403 `insufficient_scope` when the caller's scopes lack part of `needed`. The challenge names
/// the token's own scopes that this server knows (the baseline and the tools') plus the missing
/// ones: a client that requests exactly the
/// challenge's scopes keeps what it had.
fn scope_refusal(state: &McpState, caller: &Caller, needed: &ScopeSet) -> Option<Refusal> {
    let granted = &caller.scopes;
    if needed.is_subset(granted) {
        return None;
    }
    tracing::info!(
        flow = caller.flow.as_deref().unwrap_or("-"),
        sub = %caller.subject,
        missing = %granted.missing(needed),
        "insufficient scope"
    );
    let kept = ScopeSet::from_names(
        granted
            .iter()
            .filter(|s| state.challenge_scope.contains(s))
            .map(str::to_string),
    );
    Some(Refusal::InsufficientScope(kept.union(needed)))
}

/// The baseline scopes, which every request needs: a check ([`super::guard`]), `Some` answer
/// refuses the request.
pub fn baseline(state: &McpState, request: &Request) -> Option<Response> {
    let endpoint = Endpoint::of(request.uri().path());
    let refusal = match request.extensions().get::<Caller>() {
        Some(caller) => scope_refusal(state, caller, &state.required)?,
        None => Refusal::NoToken,
    };
    Some(refuse(state, endpoint, refusal))
}

/// The called tools' scopes, with the trace of the request and its route: the answer carries
/// what was asked ([`McpCall`]) to the request's `response out` line.
pub async fn tool_calls(
    State(state): State<Arc<McpState>>,
    request: Request,
    next: Next,
) -> Response {
    let endpoint = Endpoint::of(request.uri().path());
    let (mut parts, body) = request.into_parts();
    let Some(caller) = parts.extensions.get::<Caller>() else {
        return refuse(&state, endpoint, Refusal::NoToken);
    };
    let mut call = McpCall {
        sub: Arc::clone(&caller.subject),
        client_id: caller.client_id.clone(),
        mcp_method: None,
    };
    let in_session = parts
        .headers
        .get(SESSION_HEADER)
        .is_some_and(|v| v.to_str().is_ok());
    let routed = if parts.method == Method::POST {
        read_and_route(&state, endpoint, parts, body, in_session, &mut call).await
    } else {
        parts.extensions.insert(Route::Stateful);
        Ok(Request::from_parts(parts, body))
    };
    let mut response = match routed {
        Ok(request) => next.run(request).await,
        Err(response) => response,
    };
    response.extensions_mut().insert(call);
    response
}

/// A POST: reads its JSON-RPC body (`call` learns the methods), checks the scopes of the tools it
/// calls, and routes it; `Err` is the answer that refuses it.
async fn read_and_route(
    state: &McpState,
    endpoint: Endpoint,
    mut parts: axum::http::request::Parts,
    body: Body,
    in_session: bool,
    call: &mut McpCall,
) -> Result<Request, Response> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response());
    }
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        // Too large while streaming, or too slow (the body read timeout).
        Err(_) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "the request body could not be read in time or is too large",
            )
                .into_response());
        }
    };
    let rpcs = Rpcs::parse(&bytes);
    // Described only for the trace line: the hot path does not build it when the line is off.
    if tracing::enabled!(target: LINE_TARGET, tracing::Level::INFO) {
        call.mcp_method = Some(
            rpcs.as_ref()
                .map_or_else(|| "(unparsed)".into(), Rpcs::describe),
        );
    }
    let Some(caller) = parts.extensions.get::<Caller>() else {
        return Err(refuse(state, endpoint, Refusal::NoToken));
    };
    // A body this parser cannot read (duplicate keys, say) might still read as a tool call
    // to rmcp: it needs every tool's scope, so no reading of it gets past the check.
    let needed = match &rpcs {
        Some(rpcs) => rpcs.tool_scopes(&state.tool_scopes).union(&state.required),
        None => state.challenge_scope.as_ref().clone(),
    };
    if let Some(refusal) = scope_refusal(state, caller, &needed) {
        return Err(refuse(state, endpoint, refusal));
    }
    let opens_session = rpcs.as_ref().is_some_and(|r| r.has("initialize"));
    parts.extensions.insert(if in_session || opens_session {
        Route::Stateful
    } else {
        Route::Stateless
    });
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
