//! Protect a fresh rmcp server with mcp-oauth, in one process: the authorization server embedded
//! on one listener, and an rmcp tools service of its own (`add` needs `mcp.read`, `reset` needs
//! `mcp.write`) behind `ProtectedResource` on another. The tools learn who calls them from the
//! request (`Caller`).
//!
//! ```sh
//! cargo run --example protect_rmcp                 # serves until Ctrl-C; prints the URLs
//! cargo run --example protect_rmcp -- --self-test  # a machine client calls the tools, then stops
//! ```
//!
//! Any MCP client can then connect to the printed MCP URL: it discovers the authorization server,
//! registers, signs in (alice / password123) and calls `add`. The self-test uses a machine client
//! (`client_credentials`) instead, since it has no browser.

use mcp_oauth::config::StoreSettings;
use mcp_oauth::{AuthServer, AuthSettings, Caller, McpSettings, ProtectedResource, ToolScopes};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::net::TcpListener;

/// The tools: a running total that callers add to.
#[derive(Clone)]
struct Calculator {
    tool_router: ToolRouter<Self>,
    total: Arc<AtomicI64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AddRequest {
    /// The number to add to the total.
    value: i64,
}

#[tool_router]
impl Calculator {
    fn new(total: Arc<AtomicI64>) -> Self {
        Calculator {
            tool_router: Self::tool_router(),
            total,
        }
    }

    #[tool(description = "Add a number to the running total; answers who added it and the total.")]
    fn add(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        Parameters(AddRequest { value }): Parameters<AddRequest>,
    ) -> String {
        let who = parts
            .extensions
            .get::<Caller>()
            .map_or_else(|| "nobody".to_string(), |caller| caller.subject.to_string());
        let total = self.total.fetch_add(value, Ordering::SeqCst) + value;
        format!("{who} added {value}: the total is {total}")
    }

    #[tool(description = "Set the running total back to zero (needs mcp.write).")]
    fn reset(&self) -> String {
        self.total.store(0, Ordering::SeqCst);
        "the total is 0".to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Calculator {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let self_test = std::env::args().any(|arg| arg == "--self-test");
    let port = |fixed: u16| if self_test { 0 } else { fixed };
    let as_listener = TcpListener::bind(("127.0.0.1", port(9999))).await?;
    let mcp_listener = TcpListener::bind(("127.0.0.1", port(9998))).await?;
    let issuer = format!("http://127.0.0.1:{}", as_listener.local_addr()?.port());
    let resource = format!("http://127.0.0.1:{}", mcp_listener.local_addr()?.port());

    // The authorization server, embedded: its actors run in this process.
    let mut auth_settings = AuthSettings::new(&issuer, &resource)?;
    auth_settings.store = StoreSettings::InMemory;
    // The self-test registers its machine client; a deployment configures them instead.
    auth_settings.registration.machine_clients = self_test;
    let auth = AuthServer::build_on(as_listener, auth_settings).await?;
    tokio::spawn(auth.run_until(std::future::pending()));

    // The tools, behind the resource-server layers: each tool's scope, then one router.
    let settings = McpSettings::new(&issuer, &resource)?;
    let scopes = ToolScopes::new()
        .tool("add", "mcp.read")
        .tool("reset", "mcp.write");
    let protected = ProtectedResource::start(settings, scopes, true).await?;
    let total = Arc::new(AtomicI64::new(0));
    let tools = StreamableHttpService::new(
        move || Ok(Calculator::new(Arc::clone(&total))),
        LocalSessionManager::default().into(),
        // The layers check Host and Origin; rmcp's own loopback-only check is turned off.
        StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins(),
    );
    let app = protected.router(tools);
    // The crate's own serve loop (TCP_NODELAY, header timeouts, the peer address for the
    // layers); `axum::serve` with `into_make_service_with_connect_info` works too.
    let read_timeout = std::time::Duration::from_secs(10);
    let server = tokio::spawn(mcp_oauth::http::serve(
        mcp_listener,
        app,
        read_timeout,
        Box::pin(std::future::pending()),
    ));
    println!("authorization server: {issuer}");
    println!("MCP endpoint:         {resource}/mcp");
    if self_test {
        self_test_as_a_machine_client(&issuer, &resource).await?;
        println!("self-test passed");
        return Ok(());
    }
    server.await??;
    Ok(())
}

/// Registers a machine client, gets a token by `client_credentials`, and calls the tools with
/// rmcp's client: `add` works, and the token is the client's own.
async fn self_test_as_a_machine_client(
    issuer: &str,
    resource: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let http = reqwest::Client::new();
    let client: serde_json::Value = http
        .post(format!("{issuer}/register"))
        .json(&serde_json::json!({
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": "mcp.read",
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let (id, secret) = (
        client["client_id"].as_str(),
        client["client_secret"].as_str(),
    );
    let (Some(id), Some(secret)) = (id, secret) else {
        return Err(format!("registration answered {client}").into());
    };
    let tokens: serde_json::Value = http
        .post(format!("{issuer}/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", &format!("{resource}/mcp")),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let Some(token) = tokens["access_token"].as_str() else {
        return Err(format!("the token endpoint answered {tokens}").into());
    };
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{resource}/mcp")).auth_header(token),
    );
    let mcp = ().serve(transport).await?;
    let arguments = serde_json::json!({"value": 2});
    let added = mcp
        .call_tool(
            CallToolRequestParams::new("add")
                .with_arguments(arguments.as_object().cloned().unwrap_or_default()),
        )
        .await?;
    let text = format!("{:?}", added.content);
    if !text.contains(&format!("client:{id} added 2: the total is 2")) {
        return Err(format!("add answered {text}").into());
    }
    // `reset` needs mcp.write, which this client did not register: refused before it runs.
    let reset = mcp.call_tool(CallToolRequestParams::new("reset")).await;
    if reset.is_ok() {
        return Err("reset ran without mcp.write".into());
    }
    let _ = mcp.cancel().await;
    Ok(())
}
