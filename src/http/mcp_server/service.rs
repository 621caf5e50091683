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
use std::sync::Arc;

type Service<M> = StreamableHttpService<tools::McpTools, M>;

/// The two rmcp services behind the gate.
struct Services {
    stateful: Service<LocalSessionManager>,
    stateless: Service<NeverSessionManager>,
}

/// The service behind the gate, its tools keeping notes in `notes`: it gives each request to the
/// rmcp service the scope gate chose ([`Route`]). Cloning it (once for each request) shares the
/// two.
pub fn mcp_service(
    notes: ActorRef<Notes>,
) -> impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
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
    let services = Arc::new(Services {
        stateful,
        stateless,
    });
    tower::service_fn(move |request: Request| {
        let services = Arc::clone(&services);
        async move {
            let route = request.extensions().get::<Route>().copied();
            // rmcp's own `call` would clone the service first; `handle` serves from a reference.
            let response = match route.unwrap_or(Route::Stateful) {
                Route::Stateful => services.stateful.handle(request).await,
                Route::Stateless => services.stateless.handle(request).await,
            };
            Ok::<_, Infallible>(response.map(Body::new))
        }
    })
}
