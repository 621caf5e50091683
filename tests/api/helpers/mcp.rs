//! The MCP client's side: JSON-RPC posts to the resource server with the transport's headers,
//! sessions, results, the `WWW-Authenticate` challenge, and access tokens minted with the
//! authorization server's key so that a test controls every claim.

use super::app::TestApp;
use serde_json::{Value, json};

pub fn initialize_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1.0"}}})
}

/// A `tools/call` of `tool` with `arguments`.
pub fn tool_call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}

/// A `tools/list`.
pub fn tools_list(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})
}

/// A POST of `body` to `url` with the streamable HTTP transport's `Accept` and `Content-Type`.
pub fn mcp_request(app: &TestApp, url: &str, body: &Value) -> reqwest::RequestBuilder {
    app.http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .json(body)
}

/// Posts a JSON-RPC message to the MCP endpoint with a token (and a session, if given).
pub async fn mcp_post(
    app: &TestApp,
    token: Option<&str>,
    session: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = mcp_request(app, &app.mcp_url(), &body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.send().await.unwrap()
}

/// Posts `body` to the MCP endpoint with a token and extra headers (no session unless given in
/// `headers`).
pub async fn mcp_post_with(
    app: &TestApp,
    token: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> reqwest::Response {
    let mut request = mcp_request(app, &app.mcp_url(), &body).bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// An MCP `initialize` with this `Authorization` header value.
pub async fn initialize_with_authorization(app: &TestApp, value: &str) -> reqwest::Response {
    mcp_request(app, &app.mcp_url(), &initialize_body())
        .header("authorization", value)
        .send()
        .await
        .unwrap()
}

/// The status of an MCP `initialize` with this token (the answer read to its end).
pub async fn mcp_status(app: &TestApp, token: &str) -> u16 {
    let response = mcp_post(app, Some(token), None, initialize_body()).await;
    let status = response.status().as_u16();
    let _ = response.text().await;
    status
}

/// Opens an MCP session with a token; returns the session id.
pub async fn open_session(app: &TestApp, token: &str) -> String {
    let response = mcp_post(app, Some(token), None, initialize_body()).await;
    assert_eq!(response.status(), 200);
    let session = response
        .headers()
        .get("mcp-session-id")
        .expect("session id")
        .to_str()
        .unwrap()
        .to_string();
    let _ = response.text().await;
    let initialized = mcp_post(
        app,
        Some(token),
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(initialized.status(), 202);
    session
}

/// The JSON-RPC result in a response body (JSON or one SSE `data:` line).
pub async fn rpc_result(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    let json_text = if text.trim_start().starts_with('{') {
        text
    } else {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON-RPC message in {text}"))
            .to_string()
    };
    serde_json::from_str(&json_text).unwrap()
}

/// The text of the first content block of a tool result (empty without one).
pub fn text_of(result: &Value) -> String {
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The names of the tools in a `tools/list` result.
pub fn tool_names(listed: &Value) -> Vec<String> {
    listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// The `WWW-Authenticate` challenge of a response, which must have one.
pub fn www(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("no WWW-Authenticate in a {} answer", response.status()))
        .to_str()
        .unwrap()
        .to_string()
}

/// A refusal by the resource server (RFC 6750 section 3): `status` with a Bearer challenge that
/// names the resource metadata, and carries `error` (or, for a request without a token, no
/// error at all). Returns the challenge.
pub fn assert_bearer_refusal(
    response: &reqwest::Response,
    status: u16,
    error: Option<&str>,
    context: &str,
) -> String {
    assert_eq!(response.status(), status, "{context}");
    let challenge = www(response);
    assert!(challenge.starts_with("Bearer "), "{context}: {challenge}");
    match error {
        Some(error) => assert!(
            challenge.contains(&format!(r#"error="{error}""#)),
            "{context}: {challenge}"
        ),
        None => assert!(!challenge.contains("error="), "{context}: {challenge}"),
    }
    assert!(
        challenge.contains("resource_metadata=\""),
        "{context}: {challenge}"
    );
    challenge
}

/// Now, in seconds since the epoch.
pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// The JWS header the authorization server signs access tokens with.
pub fn jws_header(app: &TestApp) -> Value {
    json!({"alg": "RS256", "typ": "at+jwt", "kid": app.key.kid})
}

/// Valid access-token claims of alice for `app`'s /mcp endpoint, both scopes; tests change one
/// thing at a time.
pub fn access_claims(app: &TestApp) -> Value {
    json!({
        "iss": app.issuer, "sub": "alice", "aud": app.mcp_url(),
        "exp": now() + 300, "iat": now(), "jti": "test-jti",
        "client_id": "test-client", "scope": "mcp.read mcp.write",
    })
}

/// A token signed with the authorization server's key, with this header and these claims.
pub fn mint(app: &TestApp, header: &Value, claims: &Value) -> String {
    app.key.sign_with_header(header, claims).unwrap()
}

/// A valid access token of `sub` with exactly `scope`, minted with the server's key.
pub fn mint_token(app: &TestApp, sub: &str, scope: &str) -> String {
    let mut claims = access_claims(app);
    claims["sub"] = json!(sub);
    claims["scope"] = json!(scope);
    mint(app, &jws_header(app), &claims)
}

/// The `whoami` answer of a `tools/call` made with `token`, in a session of its own.
pub async fn whoami(app: &TestApp, token: &str) -> Value {
    let session = open_session(app, token).await;
    let answer = mcp_post(
        app,
        Some(token),
        Some(&session),
        tool_call(2, "whoami", json!({})),
    )
    .await;
    serde_json::from_str(&text_of(&rpc_result(answer).await)).unwrap()
}
