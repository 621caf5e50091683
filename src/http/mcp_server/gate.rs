//! The gate in front of the MCP endpoints: one tower service that runs the checks in their order,
//! each from the file that owns its rule, and hands what passes to the MCP service behind it:
//! 1. Host and Origin (`origin_check.rs`, RS-5: DNS rebinding), before the token is read;
//! 2. the access token (`bearer.rs`, RS-1, RS-3, RS-4), which becomes the request's
//!    [`Caller`](super::caller::Caller);
//! 3. the baseline scopes (`scope_gate.rs`, RS-2);
//! 4. the MCP session's owner (`session_owner.rs`, RS-5);
//! 5. each called tool's scope, and the choice of rmcp service (`scope_gate.rs`);
//! 6. the MCP service; then the session's owner is recorded or forgotten.
//!
//! One service rather than a tower layer per step: each `from_fn` layer boxed its future and
//! cloned everything behind it (the MCP service included) on every request. Here the checks cost
//! a request one boxed future and one clone of the MCP service, and the MCP service sits behind
//! an `Arc`, so that the router's own clone of the gate for each request is two reference counts.

use super::refusal::Endpoint;
use super::state::McpState;
use super::{bearer, origin_check, scope_gate, session_owner};
use crate::http::request_trace::McpCall;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Service, ServiceExt};

/// The MCP service `inner` behind the checks.
pub struct Gate<S> {
    state: Arc<McpState>,
    inner: Arc<S>,
}

impl<S> Clone for Gate<S> {
    fn clone(&self) -> Self {
        Gate {
            state: Arc::clone(&self.state),
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> Gate<S> {
    pub fn new(state: Arc<McpState>, inner: S) -> Self {
        Gate {
            state,
            inner: Arc::new(inner),
        }
    }
}

impl<S> Service<Request> for Gate<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The MCP service is made ready when the request has passed, on its own clone.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let state = Arc::clone(&self.state);
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { Ok(pass(&state, inner.as_ref(), request).await) })
    }
}

/// One request through the checks and, when it passes them all, the MCP service.
async fn pass<S>(state: &McpState, inner: &S, request: Request) -> Response
where
    S: Service<Request, Error = Infallible> + Clone,
    S::Response: IntoResponse,
{
    let endpoint = Endpoint::of(request.uri().path());
    let (mut parts, body) = request.into_parts();
    if let Some(refused) = origin_check::check(state, endpoint, &parts) {
        return refused;
    }
    let session = session_owner::named(&parts);
    let token = match bearer::authenticate(state, endpoint, &parts, session).await {
        Ok(token) => token,
        Err(refused) => return refused,
    };
    if let Some(refused) = scope_gate::baseline(state, endpoint, &token.caller) {
        return refused;
    }
    let session = match session_owner::check(state, endpoint, &token, &parts).await {
        Ok(session) => session,
        Err(refused) => return refused,
    };
    let caller = token.caller;
    let mut call = McpCall {
        sub: Arc::clone(&caller.subject),
        client_id: caller.client_id.clone(),
        mcp_method: None,
    };
    let routed = scope_gate::route(state, endpoint, &caller, &mut parts, body, &mut call).await;
    let mut response = match routed {
        Ok(body) => {
            let subject = Arc::clone(&caller.subject);
            parts.extensions.insert(caller);
            let request = Request::from_parts(parts, body);
            let response = match S::clone(inner).oneshot(request).await {
                Ok(response) => response.into_response(),
                Err(never) => match never {},
            };
            session_owner::after(state, endpoint, session, &subject, response).await
        }
        Err(refused) => refused,
    };
    // What was asked, for the request's `response out` line.
    response.extensions_mut().insert(call);
    response
}
