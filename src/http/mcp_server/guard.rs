//! A check that needs no waiting, as a tower layer: it sees the request and lets it through or
//! answers it. It boxes nothing (a `from_fn` layer boxes its future and the next service on every
//! request), so the Host/Origin check and the baseline scope gate cost a request nothing beyond
//! the check itself; the layers that ask an actor are `from_fn` layers.

use super::state::McpState;
use axum::extract::Request;
use axum::response::Response;
use futures::future::{Either, Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The check: `Some(answer)` refuses the request with that answer.
pub type Check = fn(&McpState, &Request) -> Option<Response>;

/// Puts a [`Check`] in front of a service.
#[derive(Clone)]
pub struct GuardLayer {
    state: Arc<McpState>,
    check: Check,
}

impl GuardLayer {
    pub fn new(state: Arc<McpState>, check: Check) -> Self {
        GuardLayer { state, check }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            state: Arc::clone(&self.state),
            check: self.check,
        }
    }
}

/// A service behind a [`Check`].
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    state: Arc<McpState>,
    check: Check,
}

impl<S> Service<Request> for Guard<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match (self.check)(&self.state, &request) {
            Some(answer) => Either::Left(ready(Ok(answer))),
            None => Either::Right(self.inner.call(request)),
        }
    }
}
