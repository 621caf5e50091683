//! The library: an rmcp service of the test's own, with a tool map of its own, behind
//! `ProtectedResource` on a listener of its own, trusting the test's authorization server. The
//! challenge and the metadata name the map's scopes, a token without a tool's scope gets 403 for
//! that tool only, and the tool reads the caller from the request.

use crate::helpers::*;
use mcp_oauth::{Caller, McpSettings, ProtectedResource, ToolScopes};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};

#[derive(Clone)]
struct Echo {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Echo {
    #[tool(description = "Who is calling.")]
    fn caller(&self, Extension(parts): Extension<http::request::Parts>) -> String {
        parts.extensions.get::<Caller>().map_or_else(
            || "nobody".into(),
            |c| format!("{} via {}", c.subject, c.client_id),
        )
    }

    #[tool(description = "A write.")]
    fn stamp(&self) -> String {
        "stamped".into()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// A token for a machine client registered with `scope`, for `resource`.
async fn machine_token(app: &TestApp, scope: &str, resource: &str) -> (String, String) {
    let registered = register_with(
        app,
        json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post",
               "scope": scope}),
    )
    .await;
    let client_id = field(&registered, "client_id");
    let answer = app
        .post("/token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &field(&registered, "client_secret")),
            ("resource", resource),
        ])
        .send()
        .await
        .unwrap();
    let tokens = ok_json(answer, "client credentials").await;
    (field(&tokens, "access_token"), client_id)
}

async fn post(
    app: &TestApp,
    url: &str,
    token: &str,
    session: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = mcp_request(app, url, &body).bearer_auth(token);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.send().await.unwrap()
}

/// Opens an MCP session at `endpoint` with `token`: `initialize`, then `initialized`.
async fn open_session_at(app: &TestApp, endpoint: &str, token: &str) -> String {
    let opened = post(app, endpoint, token, None, initialize_body()).await;
    assert_eq!(opened.status(), 200);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = opened.text().await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let answer = post(app, endpoint, token, Some(&session), initialized).await;
    assert_eq!(answer.status(), 202);
    session
}

#[tokio::test]
async fn an_rmcp_service_of_its_own_behind_protected_resource() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let endpoint = format!("{base}/mcp");
    let app = spawn_app_with(&["--known-resources", &endpoint, "--dynamic-machine-clients"]).await;

    let settings = McpSettings::new(&app.issuer, &base).unwrap();
    let scopes = ToolScopes::new().tool("stamp", "mcp.write");
    let protected = ProtectedResource::start(settings, scopes, true)
        .await
        .unwrap();
    let service = StreamableHttpService::new(
        || {
            Ok(Echo {
                tool_router: Echo::tool_router(),
            })
        },
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins(),
    );
    let router = protected.router(service);
    tokio::spawn(mcp_oauth::http::serve(
        listener,
        router,
        std::time::Duration::from_secs(10),
        Box::pin(std::future::pending()),
    ));

    // No token: the RFC 9728 challenge, naming the baseline and the map's scopes.
    let refused = mcp_request(&app, &endpoint, &initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let challenge = www(&refused);
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\""
        )) && challenge.contains("scope=\"mcp.read mcp.write\""),
        "{challenge}"
    );
    let metadata = app
        .get_json(&format!("{base}/.well-known/oauth-protected-resource/mcp"))
        .await;
    assert_eq!(metadata["resource"], endpoint);
    assert_eq!(metadata["authorization_servers"], json!([app.issuer]));
    assert_eq!(
        metadata["scopes_supported"],
        json!(["mcp.read", "mcp.write"])
    );

    // A read-only token: the tool outside the map runs and sees the caller; the mapped one is 403.
    let (token, client_id) = machine_token(&app, "mcp.read", &endpoint).await;
    let session = open_session_at(&app, &endpoint, &token).await;
    let call = tool_call(2, "caller", json!({}));
    let answer = post(&app, &endpoint, &token, Some(&session), call).await;
    assert_eq!(
        text_of(&rpc_result(answer).await),
        format!("client:{client_id} via {client_id}")
    );
    let stamp = post(
        &app,
        &endpoint,
        &token,
        Some(&session),
        tool_call(3, "stamp", json!({})),
    )
    .await;
    assert_eq!(stamp.status(), 403);
    assert!(
        www(&stamp).contains("insufficient_scope"),
        "{}",
        www(&stamp)
    );

    // With the write scope too, the mapped tool runs.
    let (token, _) = machine_token(&app, "mcp.read mcp.write", &endpoint).await;
    let session = open_session_at(&app, &endpoint, &token).await;
    let stamp = post(
        &app,
        &endpoint,
        &token,
        Some(&session),
        tool_call(4, "stamp", json!({})),
    )
    .await;
    assert_eq!(text_of(&rpc_result(stamp).await), "stamped");
}

/// The authorization server as a router with its actors, served by the app's own loop: its
/// metadata and registration answer, and it shuts down when the app stops.
#[tokio::test]
async fn the_authorization_server_embeds_as_a_router() {
    global_subscriber();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let mut settings = mcp_oauth::AuthSettings::new(&issuer, "http://127.0.0.1:1").unwrap();
    settings.store = mcp_oauth::config::StoreSettings::InMemory;
    let embedded = mcp_oauth::AuthServer::build_embedded(settings)
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(mcp_oauth::http::serve(
        listener,
        embedded.router(),
        std::time::Duration::from_secs(10),
        Box::pin(async move {
            let _ = stopped.await;
        }),
    ));
    let http = reqwest::Client::new();
    let metadata: Value = http
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], issuer);
    let registered = http
        .post(format!("{issuer}/register"))
        .json(&json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let _ = stop.send(());
    served.await.unwrap().unwrap();
    embedded.shutdown().await;
}
