//! Protect an rmcp server with the library against an authorization server that is not this
//! project's: any issuer of RFC 9068 access tokens (`typ` `at+jwt`, RS256) that publishes its keys
//! as a JWKS. Here a stand-in issuer runs in the same process (one RSA key, served at `/jwks`,
//! and tokens it signs); in a deployment the settings name the real issuer and its JWKS URL.
//!
//! ```sh
//! cargo run --example protect_with_any_as                 # prints the URLs and a token; serves
//! cargo run --example protect_with_any_as -- --self-test  # calls the tool, then stops
//! ```
//!
//! What differs from `protect_rmcp.rs`: `jwks.url` points at the other issuer's JWKS, and there
//! is no revocation feed to follow (`revocation_feed = None`); revoked tokens are then accepted
//! until they expire unless introspection is on (`introspection`, RFC 7662).

use mcp_oauth::oauth::jws::{ActiveKey, jwks_document};
use mcp_oauth::{Caller, McpSettings, ProtectedResource, ToolScopes};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

/// The issuer the stand-in authorization server signs as.
const ISSUER: &str = "https://login.example.com";

#[derive(Clone)]
struct Profile {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Profile {
    #[tool(
        description = "The caller's subject and client, as the other issuer's token names them."
    )]
    fn profile(&self, Extension(parts): Extension<http::request::Parts>) -> String {
        match parts.extensions.get::<Caller>() {
            Some(caller) => format!("{} (client {})", caller.subject, caller.client_id),
            None => "no caller".into(),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Profile {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// An RFC 9068 access token from the stand-in issuer.
fn token(
    key: &ActiveKey,
    kid: &str,
    resource: &str,
    sub: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": kid});
    let claims = json!({"iss": ISSUER, "sub": sub, "aud": resource, "client_id": "reporting-app",
        "scope": "profile.read", "iat": now, "exp": now + 300, "jti": format!("{sub}-{now}")});
    Ok(key.sign_with_header(&header, &claims)?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let self_test = std::env::args().any(|arg| arg == "--self-test");
    let port = |fixed: u16| if self_test { 0 } else { fixed };

    // The stand-in authorization server: one key, published as a JWKS.
    let key: Arc<ActiveKey> = ActiveKey::generate().await?;
    let jwks = jwks_document([key.as_ref()]);
    let kid = jwks["keys"][0]["kid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let issuer_listener = TcpListener::bind(("127.0.0.1", port(9997))).await?;
    let jwks_url = format!(
        "http://127.0.0.1:{}/jwks",
        issuer_listener.local_addr()?.port()
    );
    let issuer_app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    tokio::spawn(async move { axum::serve(issuer_listener, issuer_app).await });

    // The MCP server: the other issuer's keys, no revocation feed, its own scope names.
    let mcp_listener = TcpListener::bind(("127.0.0.1", port(9996))).await?;
    let resource = format!("http://127.0.0.1:{}", mcp_listener.local_addr()?.port());
    let mut settings = McpSettings::new(ISSUER, &resource)?;
    settings.jwks.url = jwks_url;
    settings.revocation_feed = None;
    settings.required_scopes = vec!["profile.read".into()];
    let protected = ProtectedResource::start(settings, ToolScopes::new(), true).await?;
    let service = StreamableHttpService::new(
        || {
            Ok(Profile {
                tool_router: Profile::tool_router(),
            })
        },
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins(),
    );
    let app = protected.router(service);
    let server = tokio::spawn(mcp_oauth::http::serve(
        mcp_listener,
        app,
        Duration::from_secs(10),
        Box::pin(std::future::pending()),
    ));
    let endpoint = format!("{resource}/mcp");
    println!("MCP endpoint: {endpoint}");
    println!(
        "a token of {ISSUER} for it: {}",
        token(&key, &kid, &endpoint, "user-42")?
    );
    if self_test {
        self_test_with_tokens(&key, &kid, &endpoint).await?;
        println!("self-test passed");
        return Ok(());
    }
    server.await??;
    Ok(())
}

/// The other issuer's token reaches the tool as its caller; a token signed by another key does
/// not get through.
async fn self_test_with_tokens(
    key: &ActiveKey,
    kid: &str,
    endpoint: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let connect = |token: String| {
        StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(endpoint.to_string()).auth_header(token),
        )
    };
    let mcp = ().serve(connect(token(key, kid, endpoint, "user-42")?)).await?;
    let answer = mcp.call_tool(CallToolRequestParams::new("profile")).await?;
    let text = format!("{:?}", answer.content);
    if !text.contains("user-42 (client reporting-app)") {
        return Err(format!("profile answered {text}").into());
    }
    let _ = mcp.cancel().await;
    let stranger = ActiveKey::generate().await?;
    let forged = token(&stranger, kid, endpoint, "user-42")?;
    if ().serve(connect(forged)).await.is_ok() {
        return Err("a token signed by another key was accepted".into());
    }
    Ok(())
}
