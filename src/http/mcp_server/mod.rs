//! The MCP resource server: rmcp's streamable HTTP service at `/mcp` and at `/`, behind one gate
//! of checks (Host and Origin, the access token, the scope gate, the MCP session's owner; the
//! order is in `gate.rs`, each rule in a file of its own), with RFC 9728 metadata (`metadata.rs`) and the tools (`tools.rs`). Its
//! state (`state.rs`) is immutable configuration and its actors: `JwksCache` (the AS's keys),
//! `McpSessions` (which user owns which MCP session), `RevocationFeed` (the AS's revoked tokens,
//! unless `--no-revocation-feed`) and, with `--introspect`, `IntrospectionCache` (recent
//! introspection answers, `introspection.rs`). `protection.rs` ([`ProtectedResource`], the
//! library's half) starts the actors and builds the state; this file adds this server's own
//! tools (`service.rs`) and runs the server.

mod bearer;
mod caller;
mod gate;
mod health;
pub mod introspection;
mod jsonrpc;
mod metadata;
mod origin;
mod origin_check;
mod protection;
mod refusal;
mod router;
mod scope_gate;
mod service;
mod session_owner;
mod state;
mod tool_scopes;
pub mod tools;

pub use bearer::LEEWAY_SECONDS;
pub use caller::Caller;
pub use protection::{BuildError, ProtectedResource};
pub use state::McpState;
pub use tool_scopes::ToolScopes;

use crate::actors::notes::Notes;
use crate::actors::spawn_supervised;
use crate::config::McpSettings;
use axum::Router;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// The MCP resource server, bound to its port and ready to run.
#[warn(missing_docs)]
pub struct McpServer {
    listener: TcpListener,
    router: Router,
    state: McpState,
}

#[warn(missing_docs)]
impl McpServer {
    /// Binds the configured address and builds the server.
    pub async fn build(settings: McpSettings) -> Result<Self, BuildError> {
        let addr = settings.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BuildError::Bind { addr, source })?;
        Self::build_on(listener, settings).await
    }

    /// Builds the server on a listener already bound (port 0 in tests).
    pub async fn build_on(
        listener: TcpListener,
        settings: McpSettings,
    ) -> Result<Self, BuildError> {
        let local = listener.local_addr()?;
        let (router, state) = Self::build_router(settings, local.ip().is_loopback()).await?;
        Ok(McpServer {
            listener,
            router,
            state,
        })
    }

    /// Builds the server's routes and actors without a listener of its own, for an app that
    /// serves them on its listener (`listening_on_loopback` says whether that listener is on
    /// loopback, which widens the default hosts and origins). The server is a user of the
    /// library's [`ProtectedResource`], with its own tools behind it.
    pub async fn build_router(
        settings: McpSettings,
        listening_on_loopback: bool,
    ) -> Result<(Router, McpState), BuildError> {
        let protected =
            ProtectedResource::start(settings, tools::tool_scopes(), listening_on_loopback).await?;
        let notes = spawn_supervised::<Notes>(&protected.state().supervisor, ()).await;
        let router = protected.router(service::mcp_service(notes));
        Ok((router, protected.into_state()))
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The state the layers share: settings and actor references.
    pub fn state(&self) -> &McpState {
        &self.state
    }

    /// Serves until `shutdown` resolves; then stops accepting and lets in-flight requests finish
    /// (bounded by [`crate::http::DRAIN_TIMEOUT`]).
    pub fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        self.run(Box::pin(shutdown))
    }

    /// [`Self::run_until`] without its type parameter: the serving code is compiled here once.
    async fn run(self, shutdown: crate::http::Shutdown) -> std::io::Result<()> {
        tracing::info!(
            server = "mcp",
            resource = %self.state.config.root_resource(),
            authorization_server = %self.state.config.authorization_server,
            introspect = self.state.introspection.is_some(),
            revocation_feed = self.state.config.revocation_feed.as_ref().map(|f| f.url.as_str()),
            listen = %self.listener.local_addr()?,
            "MCP server listening"
        );
        let read_timeout = self.state.config.read_timeout;
        crate::http::serve(self.listener, self.router, read_timeout, shutdown).await
    }
}
