//! The whole MCP authorization flow driven by rmcp's own client code, so that discovery, dynamic
//! client registration, PKCE, the token exchange and the MCP transport are all done independently
//! of this crate: an unauthorised connect -> 401 challenge -> `OAuthState::start_authorization`
//! (protected resource metadata, AS metadata, registration, authorization URL) -> browser (login,
//! consent) -> `handle_callback_url` (state, `iss`, code exchange) -> `AuthClient` + streamable
//! HTTP transport -> tools/list, tools/call greet and whoami. As alice and as bob.

use crate::helpers::*;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{AuthClient, AuthorizationRequest, OAuthState};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

/// The text of the single text block of a tool result.
fn text_of(result: &CallToolResult) -> &str {
    assert_ne!(result.is_error, Some(true), "tool failed: {result:?}");
    result
        .content
        .first()
        .and_then(|block| block.as_text())
        .map(|text| text.text.as_str())
        .unwrap_or_else(|| panic!("no text content in {result:?}"))
}

/// Plays the user in a browser: the authorization URL -> login -> consent (approve). Returns the
/// redirect back to the client (with `code`, `state`, `iss`).
async fn approve_in_browser(auth_url: &str, user: &str, password: &str) -> String {
    let browser = Browser::new();
    let start = browser.get(auth_url).await;
    assert_eq!(
        start.status(),
        302,
        "authorization request refused: {auth_url}"
    );
    let login_url = location(&start).expect("authorize redirects to the login page");
    assert!(login_url.contains("/login?request="), "{login_url}");

    let after_login = login(&browser, &login_url, user, password).await;
    assert_eq!(after_login.status(), 302, "login should redirect");
    let consent_url = location(&after_login).expect("login redirects to the consent page");
    assert!(consent_url.contains("/consent?request="), "{consent_url}");

    let approved = decide(&browser, &consent_url, "approve").await;
    assert_eq!(approved.status(), 302, "consent should redirect");
    location(&approved).expect("consent redirects to the client")
}

async fn rmcp_client_flow(user: &str, password: &str) {
    let app = spawn_app().await;
    rmcp_client_flow_at(&app.issuer, &app.mcp_url(), user, password).await;
}

/// The whole flow, driven by rmcp, against the MCP endpoint `mcp_url` of the authorization
/// server `issuer`.
pub async fn rmcp_client_flow_at(issuer: &str, mcp_url: &str, user: &str, password: &str) {
    let mcp_url = mcp_url.to_string();

    // An unauthorised connect: rmcp's transport meets the 401 and hands back the challenge.
    let transport = StreamableHttpClientTransport::from_uri(mcp_url.clone());
    let Err(refused) = ().serve(transport).await else {
        panic!("connecting without a token must fail");
    };
    assert!(
        refused.is_authorization_required(),
        "expected an authorization failure, got {refused}"
    );
    let challenge = refused
        .auth_challenge()
        .unwrap_or_else(|| panic!("no WWW-Authenticate challenge in {refused:?}"))
        .to_string();

    // Discovery from the challenge, registration and the authorization URL, all by rmcp.
    let mut oauth = OAuthState::new(mcp_url.as_str(), None)
        .await
        .expect("rmcp OAuth state");
    oauth
        .start_authorization(
            AuthorizationRequest::new(REDIRECT)
                .with_client_name("rmcp test client")
                .with_challenge(challenge),
        )
        .await
        .expect("rmcp discovery, registration and authorization URL");
    let auth_url = oauth
        .get_authorization_url()
        .await
        .expect("authorization URL");
    assert!(
        auth_url.starts_with(&format!("{issuer}/authorize?")),
        "{auth_url}"
    );
    assert_eq!(
        query_param(&auth_url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query_param(&auth_url, "resource").as_deref(),
        Some(mcp_url.as_str())
    );
    assert_eq!(
        query_param(&auth_url, "redirect_uri").as_deref(),
        Some(REDIRECT)
    );

    // The user signs in and approves; rmcp checks `state` and `iss` and redeems the code.
    let callback = approve_in_browser(&auth_url, user, password).await;
    assert!(callback.starts_with(REDIRECT), "{callback}");
    assert_eq!(query_param(&callback, "iss").as_deref(), Some(issuer));
    oauth
        .handle_callback_url(&callback)
        .await
        .expect("rmcp code exchange");
    let (client_id, token) = oauth.get_credentials().await.expect("credentials");
    assert!(token.is_some(), "no token stored after the exchange");

    // The authorised transport: rmcp adds the bearer token to every request.
    let manager = oauth
        .into_authorization_manager()
        .expect("authorized state after the callback");
    let transport = StreamableHttpClientTransport::with_client(
        AuthClient::new(reqwest::Client::new(), manager),
        StreamableHttpClientTransportConfig::with_uri(mcp_url.clone()),
    );
    let client = ().serve(transport).await.expect("MCP initialize with the token");

    let tools = client.list_tools(None).await.expect("tools/list");
    let names: Vec<&str> = tools.tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(
        names.contains(&"greet") && names.contains(&"whoami"),
        "{names:?}"
    );
    // Each tool says what it does to the world, as the SDK reads it: greet and whoami only
    // read, save_note writes without destroying anything; none reaches outside this server.
    for tool in &tools.tools {
        let hints = tool.annotations.as_ref().expect("annotations");
        let reads_only = tool.name != "save_note";
        assert_eq!(hints.read_only_hint, Some(reads_only), "{}", tool.name);
        assert_eq!(hints.destructive_hint, Some(false), "{}", tool.name);
        assert_eq!(hints.idempotent_hint, Some(reads_only), "{}", tool.name);
        assert_eq!(hints.open_world_hint, Some(false), "{}", tool.name);
    }

    let greet = client
        .call_tool(
            CallToolRequestParams::new("greet").with_arguments(
                json!({"name": "World"})
                    .as_object()
                    .expect("an object")
                    .clone(),
            ),
        )
        .await
        .expect("tools/call greet");
    assert_eq!(text_of(&greet), "Hello, World!");

    let whoami = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .expect("tools/call whoami");
    let who: Value = serde_json::from_str(text_of(&whoami)).expect("whoami answers JSON");
    assert_eq!(who["sub"], user);
    assert_eq!(who["client_id"], client_id.as_str());
    // rmcp asked for the scopes the challenge named, and got them.
    assert_eq!(who["scopes"], json!(["mcp.read", "mcp.write"]));

    client.cancel().await.expect("client shuts down");
}

#[tokio::test]
async fn rmcp_client_flow_as_alice() {
    rmcp_client_flow("alice", "password123").await;
}

#[tokio::test]
async fn rmcp_client_flow_as_bob() {
    rmcp_client_flow("bob", "hunter2").await;
}
