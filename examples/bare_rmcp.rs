//! The baseline `mcp-oauth-bench` compares the resource server with: this project's MCP tools
//! served by rmcp's streamable HTTP service at `/mcp` with nothing in front (no token, Host,
//! Origin or scope check, no trace, no metrics), on the crate's own serve loop (`TCP_NODELAY`,
//! header timeouts) and allocator. Not a server to deploy: anyone may call its tools.
//!
//! ```sh
//! cargo build --profile dist --example bare_rmcp
//! target/dist/examples/bare_rmcp 8991        # prints the address, serves until killed
//! ```

use mcp_oauth::actors::notes::Notes;
use mcp_oauth::http::mcp_server::tools::McpTools;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

mcp_oauth::use_mimalloc!();

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use kameo::actor::Spawn;
    let port: u16 = match std::env::args().nth(1) {
        Some(port) => port.parse()?,
        None => 0,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("{}", listener.local_addr()?);
    let notes = Notes::spawn(());
    let service = StreamableHttpService::new(
        move || Ok(McpTools::new(notes.clone())),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins(),
    );
    let router = axum::Router::new().route_service("/mcp", service);
    let read_timeout = std::time::Duration::from_secs(10);
    mcp_oauth::http::serve(
        listener,
        router,
        read_timeout,
        Box::pin(std::future::pending()),
    )
    .await?;
    Ok(())
}
