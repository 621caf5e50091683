//! This server's own MCP service: two rmcp streamable HTTP services over [`McpTools`], one for
//! MCP sessions (the 2025 revisions) and one for requests outside any session (2026-07-28, or a
//! 2025 client that sends `tools/call` without `initialize`, answered with plain JSON), and the
//! handler that gives each request to the one the scope gate chose ([`Route`]).

use super::jsonrpc::Route;
use super::tools;
use crate::actors::notes::Notes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any};
use kameo::actor::ActorRef;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tower::ServiceExt;

type Service<M> = StreamableHttpService<tools::McpTools, M>;

/// The two rmcp services behind the layers.
#[derive(Clone)]
struct Services {
    stateful: Service<LocalSessionManager>,
    stateless: Service<NeverSessionManager>,
}

/// Hands the request to the service the scope gate chose ([`Route`]).
async fn dispatch(State(services): State<Services>, request: Request) -> Response {
    let route = request
        .extensions()
        .get::<Route>()
        .copied()
        .unwrap_or(Route::Stateful);
    let response = match route {
        Route::Stateful => services.stateful.oneshot(request).await,
        Route::Stateless => services.stateless.oneshot(request).await,
    };
    match response {
        Ok(response) => response.map(axum::body::Body::new).into_response(),
        Err(never) => match never {},
    }
}

/// The service behind the layers, its tools keeping notes in `notes`.
pub fn mcp_service(notes: ActorRef<Notes>) -> MethodRouter {
    // Host and Origin are checked by our own layer (one rule, one place), so rmcp's
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
    any(dispatch).with_state(Services {
        stateful,
        stateless,
    })
}
