//! This server's own MCP service: two rmcp streamable HTTP services over [`McpTools`], one for
//! MCP sessions (the 2025 revisions) and one for requests outside any session (2026-07-28, or a
//! 2025 client that sends `tools/call` without `initialize`, answered with plain JSON), and the
//! service that gives each request to the one the scope gate chose ([`Route`]).

use super::jsonrpc::Route;
use super::tools;
use crate::actors::notes::Notes;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use kameo::actor::ActorRef;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

type Service<M> = StreamableHttpService<tools::McpTools, M>;

/// The two rmcp services behind the gate, as one service that gives each request to the one the
/// scope gate chose ([`Route`]). Cloning it (once for each request) shares the two.
#[derive(Clone)]
pub struct McpService(Arc<Services>);

struct Services {
    stateful: Service<LocalSessionManager>,
    stateless: Service<NeverSessionManager>,
}

impl tower::Service<Request> for McpService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let services = Arc::clone(&self.0);
        Box::pin(async move {
            let route = request.extensions().get::<Route>().copied();
            // rmcp's own `call` would clone the service first; `handle` serves from a reference.
            let response = match route.unwrap_or(Route::Stateful) {
                Route::Stateful => services.stateful.handle(request).await,
                Route::Stateless => services.stateless.handle(request).await,
            };
            Ok(response.map(Body::new))
        })
    }
}

/// The service behind the gate, its tools keeping notes in `notes`.
pub fn mcp_service(notes: ActorRef<Notes>) -> McpService {
    // Host and Origin are checked by our own gate (one rule, one place), so rmcp's
    // built-in loopback-only host check is turned off.
    let for_stateful = notes.clone();
    let stateful = StreamableHttpService::new(
        move || Ok(tools::McpTools::new(for_stateful.clone())),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins(),
    );
    let stateless = StreamableHttpService::new(
        move || Ok(tools::McpTools::new(notes.clone())),
        NeverSessionManager::default().into(),
        StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins()
            .with_legacy_session_mode(false)
            .with_json_response(true),
    );
    McpService(Arc::new(Services {
        stateful,
        stateless,
    }))
}
