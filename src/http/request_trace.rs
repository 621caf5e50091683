//! How both servers trace and count HTTP requests, in one layer: a span per request, named after
//! the server, with the method, the path and, once known, the flow (the actor messages logged
//! while handling it carry them); one `response out` line with the status and latency (an
//! error for a 5xx); and, with the metrics on, the request counted and timed by route and status
//! (`crate::http::metrics`). `request in` is at debug: on the hottest paths every line counts, and
//! the answer line already says which request it was. When spans are exported over
//! OpenTelemetry, a request's W3C `traceparent` is its span's parent.
//!
//! One layer rather than `tower_http`'s trace layer and a metrics middleware: the span is entered
//! only while the handler's future is polled (not again for each frame of the response body, where
//! nothing is logged), and neither the inner service nor its future is boxed or cloned for it.
//! Together these were a visible share of a `tools/call`.

use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

/// The layer for the server named `server` (`auth` or `mcp`), counting requests in the metrics
/// when `metrics` is on. Apply it with `Router::layer`, so that it sees the matched route.
#[derive(Debug, Clone, Copy)]
pub struct RequestTraceLayer {
    server: &'static str,
    metrics: bool,
}

impl RequestTraceLayer {
    pub fn new(server: &'static str, metrics: bool) -> Self {
        RequestTraceLayer { server, metrics }
    }
}

impl<S> tower::Layer<S> for RequestTraceLayer {
    type Service = RequestTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTrace {
            inner,
            layer: *self,
        }
    }
}

/// The service [`RequestTraceLayer`] makes.
#[derive(Debug, Clone)]
pub struct RequestTrace<S> {
    inner: S,
    layer: RequestTraceLayer,
}

impl<S, B, ResBody> tower::Service<Request<B>> for RequestTrace<S>
where
    S: tower::Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let server = self.layer.server;
        // The span's name says which server: a name costs nothing per line, a field is formatted.
        // `flow` is recorded once the request knows which flow it belongs to.
        let flow = tracing::field::Empty;
        let (method, path) = (request.method(), request.uri().path());
        let span = match server {
            "mcp" => tracing::info_span!("mcp", method = %method, path = %path, flow),
            _ => tracing::info_span!("auth", method = %method, path = %path, flow),
        };
        // When spans are exported, a client's `traceparent` makes this one part of its trace.
        crate::otel::continue_trace(&span, request.headers());
        tracing::debug!(parent: &span, "request in");
        let route = self
            .layer
            .metrics
            .then(|| request.extensions().get::<MatchedPath>().cloned());
        let started = Instant::now();
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        ResponseFuture {
            inner,
            span,
            started,
            server,
            route,
            answered: false,
        }
    }
}

/// What an MCP request asked, for its `response out` line: the MCP server's scope gate, which
/// reads the JSON-RPC body, puts it on the answer. One line then says who called what and how it
/// ended, where a line of its own before the answer would add a tenth to the cost of a tool call.
#[derive(Debug, Clone)]
pub struct McpCall {
    pub sub: std::sync::Arc<str>,
    pub client_id: String,
    /// The JSON-RPC methods of a POST (`tools/call greet`, comma-separated in a batch), when the
    /// line is on; `None` for a GET (the event stream) or a DELETE (the end of a session).
    pub mcp_method: Option<String>,
}

/// The target of the `response out` line: a handler that would do work only for that line asks
/// whether it is on (`tracing::enabled!(target: LINE_TARGET, ...)`).
pub const LINE_TARGET: &str = module_path!();

/// The line that ends a request: an error for a server error (which also marks an exported span
/// as failed, and is what alerting on error lines sees).
fn response_out(status: u16, us: u64, call: Option<&McpCall>) {
    macro_rules! line {
        ($level:ident) => {
            match call {
                Some(call) => tracing::$level!(
                    status,
                    us,
                    sub = %call.sub,
                    client_id = %call.client_id,
                    mcp_method = call.mcp_method.as_deref().map(tracing::field::display),
                    "response out"
                ),
                None => tracing::$level!(status, us, "response out"),
            }
        };
    }
    if status >= 500 {
        line!(error)
    } else {
        line!(info)
    }
}

pin_project_lite::pin_project! {
    /// A request being answered: its handler's future, polled inside the request's span.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        started: Instant,
        server: &'static str,
        // With the metrics on, the matched route (`None` inside when no route matched).
        route: Option<Option<MatchedPath>>,
        answered: bool,
    }

    /// A request dropped before its answer (the client went away, the server is stopping) says
    /// so, in its span: without this line it would leave none that ends it.
    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.answered {
                let _entered = this.span.enter();
                let us = this.started.elapsed().as_micros() as u64;
                tracing::info!(us, "request cancelled before its answer");
            }
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let result = ready!(this.inner.poll(cx));
        *this.answered = true;
        if let Ok(response) = &result {
            let elapsed = this.started.elapsed();
            let status = response.status().as_u16();
            if let Some(route) = this.route {
                let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
                crate::http::metrics::record_request(this.server, route, status, elapsed);
            }
            crate::otel::record_status(this.span, status);
            response_out(
                status,
                elapsed.as_micros() as u64,
                response.extensions().get(),
            );
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Captured;
    use tower::{Layer, Service};

    /// A request dropped before its answer writes a line saying so, in its span; an answered
    /// one does not.
    #[test]
    fn a_request_dropped_before_its_answer_says_so() {
        use tracing_subscriber::prelude::*;
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber =
            tracing_subscriber::registry().with(crate::trace::layer(move || writer.clone(), false));
        tracing::subscriber::with_default(subscriber, || {
            let never = tower::service_fn(|_: Request<()>| {
                std::future::pending::<Result<Response<()>, std::convert::Infallible>>()
            });
            let mut service = RequestTraceLayer::new("mcp", false).layer(never);
            let request = Request::post("/mcp").body(()).unwrap();
            let mut future = Box::pin(service.call(request));
            let waker = std::task::Waker::noop();
            assert!(
                future
                    .as_mut()
                    .poll(&mut Context::from_waker(waker))
                    .is_pending()
            );
            drop(future);

            let answered = tower::service_fn(|_: Request<()>| async {
                Ok::<_, std::convert::Infallible>(Response::new(()))
            });
            let mut service = RequestTraceLayer::new("mcp", false).layer(answered);
            let mut future = Box::pin(service.call(Request::get("/x").body(()).unwrap()));
            let waker = std::task::Waker::noop();
            assert!(
                future
                    .as_mut()
                    .poll(&mut Context::from_waker(waker))
                    .is_ready()
            );
        });
        let log = captured.text();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains(" DEBUG ")).collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(
            lines[0].contains(" INFO mcp: request cancelled before its answer us=")
                && lines[0].ends_with(" method=POST path=/mcp"),
            "{log}"
        );
        assert!(
            lines[1].contains(" INFO mcp: response out status=200 us="),
            "{log}"
        );
    }
}
