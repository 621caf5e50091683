//! The scope gate in front of the MCP endpoints (RS-2, step-up), in two steps of `gate.rs`:
//! - [`baseline`], right after the token: every request needs the baseline scopes
//!   (`--required-scopes`, `mcp.read` by default).
//! - [`route`], after the session owner: a POST's JSON-RPC body is read (the one read of it,
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
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

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

/// Step 3 of `gate.rs`: the baseline scopes, which every request needs. `Some` answer refuses
/// the request.
pub fn baseline(state: &McpState, endpoint: Endpoint, caller: &Caller) -> Option<Response> {
    let refusal = scope_refusal(state, caller, &state.required)?;
    Some(refuse(state, endpoint, refusal))
}

/// Step 5 of `gate.rs`: the called tools' scopes, and the request's route (a [`Route`] in its
/// extensions). `call` learns what was asked, for the request's `response out` line. `Ok` is the
/// body to hand on; `Err` the answer that refuses the request.
pub async fn route(
    state: &McpState,
    endpoint: Endpoint,
    caller: &Caller,
    parts: &mut Parts,
    body: Body,
    call: &mut McpCall,
) -> Result<Body, Response> {
    if parts.method != Method::POST {
        parts.extensions.insert(Route::Stateful);
        return Ok(body);
    }
    let in_session = parts
        .headers
        .get(SESSION_HEADER)
        .is_some_and(|v| v.to_str().is_ok());
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
    Ok(Body::from(bytes))
}
