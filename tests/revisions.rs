//! The resource server for every MCP revision at once: scope step-up (RS-1, RS-2; 2025-11-25),
//! stateless requests without a session (2026-07-28) beside stateful sessions (2025-06-18,
//! 2025-11-25), and the `MCP-Protocol-Version` header. Tokens are minted with the authorization
//! server's key so that each case controls its scopes exactly; one case runs the real flow.

mod common;

use common::*;
use serde_json::{Value, json};

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A token of `sub` for `app`'s /mcp endpoint with exactly `scope`.
fn token_with(app: &TestApp, sub: &str, scope: &str) -> String {
    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": app.key.kid});
    let claims = json!({
        "iss": app.issuer, "sub": sub, "aud": app.mcp_url(),
        "exp": now() + 300, "iat": now(), "jti": "revisions-jti",
        "client_id": "test-client", "scope": scope,
    });
    app.key.sign_with_header(&header, &claims).unwrap()
}

fn www(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}

/// A POST to /mcp with extra headers (no session unless given in `headers`).
async fn post_with(
    app: &TestApp,
    token: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.mcp_url())
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn text_of(result: &Value) -> String {
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn rs1_the_401_challenge_names_the_scopes_and_the_metadata() {
    let app = spawn_app().await;
    let response = mcp_post(&app, None, None, initialize_body()).await;
    assert_eq!(response.status(), 401);
    let challenge = www(&response);
    assert!(
        challenge.contains(r#"scope="mcp.read mcp.write""#),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!(
            r#"resource_metadata="{}/.well-known/oauth-protected-resource/mcp""#,
            app.rs
        )),
        "{challenge}"
    );
    assert!(!challenge.contains("error="), "{challenge}");
}

#[tokio::test]
async fn rs2_step_up_a_read_token_calls_greet_and_gets_403_on_save_note() {
    let app = spawn_app().await;
    let read_only = token_with(&app, "alice", "mcp.read");
    // In a session (2025-06-18 clients) ...
    let session = open_session(&app, &read_only).await;
    let listed = rpc_result(
        mcp_post(
            &app,
            Some(&read_only),
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await,
    )
    .await;
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // tools/list lists every tool, also those the token cannot call yet.
    for tool in ["greet", "whoami", "save_note"] {
        assert!(names.contains(&tool), "{names:?}");
    }
    let greeted = mcp_post(
        &app,
        Some(&read_only),
        Some(&session),
        call(3, "greet", json!({"name": "Ada"})),
    )
    .await;
    assert_eq!(greeted.status(), 200);
    assert_eq!(text_of(&rpc_result(greeted).await), "Hello, Ada!");
    let refused = mcp_post(
        &app,
        Some(&read_only),
        Some(&session),
        call(4, "save_note", json!({"text": "hi"})),
    )
    .await;
    assert_eq!(refused.status(), 403);
    let challenge = www(&refused);
    assert!(
        challenge.starts_with(r#"Bearer error="insufficient_scope""#),
        "{challenge}"
    );
    // What the token has plus what is missing: a 2025-11-25 client that requests exactly these
    // keeps mcp.read.
    assert!(
        challenge.contains(r#"scope="mcp.read mcp.write""#),
        "{challenge}"
    );
    assert!(challenge.contains("resource_metadata=\""), "{challenge}");

    // ... and without one (2026-07-28 style).
    let refused = post_with(
        &app,
        &read_only,
        &[("mcp-protocol-version", "2025-11-25")],
        call(5, "save_note", json!({"text": "hi"})),
    )
    .await;
    assert_eq!(refused.status(), 403);
    assert!(www(&refused).contains(r#"scope="mcp.read mcp.write""#));
    // A batch with one call that needs more is refused as a whole.
    let batch = json!([
        call(6, "greet", json!({"name": "x"})),
        call(7, "save_note", json!({"text": "y"}))
    ]);
    let refused = mcp_post(&app, Some(&read_only), Some(&session), batch).await;
    assert_eq!(refused.status(), 403);
    // A body that reads one way to the scope check and maybe another to the MCP library
    // (a repeated key) needs every tool's scope.
    let ambiguous = r#"{"jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": {"name": "greet", "name": "save_note", "arguments": {"name": "x", "text": "y"}}}"#;
    let refused = app
        .http
        .post(app.mcp_url())
        .bearer_auth(&read_only)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", &session)
        .body(ambiguous)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(www(&refused).contains(r#"scope="mcp.read mcp.write""#));
}

#[tokio::test]
async fn rs2_a_token_with_both_scopes_saves_a_note() {
    let app = spawn_app().await;
    let token = token_with(&app, "bob", "mcp.read mcp.write");
    let session = open_session(&app, &token).await;
    let saved = mcp_post(
        &app,
        Some(&token),
        Some(&session),
        call(2, "save_note", json!({"text": "buy milk"})),
    )
    .await;
    assert_eq!(saved.status(), 200);
    let text = text_of(&rpc_result(saved).await);
    assert!(text.contains("bob") && text.contains("buy milk"), "{text}");
}

#[tokio::test]
async fn rs2_a_write_only_token_is_asked_for_the_baseline_scope() {
    let app = spawn_app().await;
    let token = token_with(&app, "alice", "mcp.write");
    let response = mcp_post(&app, Some(&token), None, initialize_body()).await;
    assert_eq!(response.status(), 403);
    let challenge = www(&response);
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(
        challenge.contains(r#"scope="mcp.read mcp.write""#),
        "{challenge}"
    );
    // Scopes this server does not know are not echoed back.
    let token = token_with(&app, "alice", "other");
    let response = mcp_post(&app, Some(&token), None, initialize_body()).await;
    assert_eq!(response.status(), 403);
    assert!(www(&response).contains(r#"scope="mcp.read""#));
}

#[tokio::test]
async fn rs2_step_up_through_the_real_flow() {
    // A client first authorizes mcp.read only, is refused save_note, re-authorizes with the
    // challenge's scopes and succeeds.
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    let mut token = String::new();
    for scope in ["mcp.read", "mcp.read mcp.write"] {
        let pkce = Pkce::new();
        let mut url = url::Url::parse(&format!("{}/authorize", app.issuer)).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("scope", scope)
            .append_pair("resource", &app.mcp_url());
        let start = browser.get(url.as_str()).await;
        let mut next = location(&start).unwrap();
        if next.contains("/login?") {
            next = location(&login(&browser, &next, "alice", "password123").await).unwrap();
        }
        if next.contains("/consent?") {
            next = location(&decide(&browser, &next, "approve").await).unwrap();
        }
        let code = query_param(&next, "code").expect("a code");
        let response = redeem(&app, &client_id, &code, &pkce.verifier).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["scope"], scope);
        token = body["access_token"].as_str().unwrap().to_string();
        let attempt = post_with(
            &app,
            &token,
            &[],
            call(1, "save_note", json!({"text": "n"})),
        )
        .await;
        if scope == "mcp.read" {
            assert_eq!(attempt.status(), 403);
        } else {
            assert_eq!(attempt.status(), 200);
        }
    }
    assert!(!token.is_empty());
}

#[tokio::test]
async fn stateless_requests_without_a_session_are_served() {
    let app = spawn_app().await;
    let token = token_with(&app, "alice", "mcp.read mcp.write");
    // A 2025 client that never initializes: no header (taken as 2025-03-26) or a 2025 one.
    for headers in [vec![], vec![("mcp-protocol-version", "2025-06-18")]] {
        let response = post_with(
            &app,
            &token,
            &headers,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("mcp-session-id").is_none());
        let listed = rpc_result(response).await;
        assert_eq!(listed["result"]["tools"].as_array().unwrap().len(), 3);
    }
    // A 2026-07-28 request: protocol metadata in `_meta`, the version and the standard headers.
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1.0"},
    });
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "whoami", "arguments": {}, "_meta": meta}});
    let response = post_with(
        &app,
        &token,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "whoami"),
        ],
        body,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("mcp-session-id").is_none());
    let result = rpc_result(response).await;
    let who: Value = serde_json::from_str(&text_of(&result)).unwrap();
    assert_eq!(who["sub"], "alice");
}

#[tokio::test]
async fn the_protocol_version_header_is_checked() {
    let app = spawn_app().await;
    let token = token_with(&app, "alice", "mcp.read");
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    // An unknown version: 400, without and within a session.
    let response = post_with(
        &app,
        &token,
        &[("mcp-protocol-version", "1999-01-01")],
        list.clone(),
    )
    .await;
    assert_eq!(response.status(), 400);
    let session = open_session(&app, &token).await;
    let response = post_with(
        &app,
        &token,
        &[
            ("mcp-protocol-version", "1999-01-01"),
            ("mcp-session-id", &session),
        ],
        list.clone(),
    )
    .await;
    assert_eq!(response.status(), 400);
    // 2026-07-28 named in the header but no per-request metadata in the body: refused.
    let response = post_with(
        &app,
        &token,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
        list.clone(),
    )
    .await;
    assert_eq!(response.status(), 400);
    // The session's own version is accepted.
    let response = post_with(
        &app,
        &token,
        &[
            ("mcp-protocol-version", "2025-06-18"),
            ("mcp-session-id", &session),
        ],
        list,
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn stateful_sessions_stay_bound_to_their_user() {
    let app = spawn_app().await;
    let alice = token_with(&app, "alice", "mcp.read mcp.write");
    let bob = token_with(&app, "bob", "mcp.read mcp.write");
    let session = open_session(&app, &alice).await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let response = mcp_post(&app, Some(&alice), Some(&session), list.clone()).await;
    assert_eq!(response.status(), 200);
    let response = mcp_post(&app, Some(&bob), Some(&session), list.clone()).await;
    assert_eq!(response.status(), 403);
    // A stateless request of bob is served as bob's, beside alice's session.
    let response = post_with(&app, &bob, &[], call(3, "whoami", json!({}))).await;
    assert_eq!(response.status(), 200);
    let who: Value = serde_json::from_str(&text_of(&rpc_result(response).await)).unwrap();
    assert_eq!(who["sub"], "bob");
}

#[tokio::test]
async fn md1_path_inserted_metadata_and_openid_configuration_always_agree() {
    // An issuer with a path: RFC 8414 inserts the well-known part before the path, OpenID
    // Discovery appends it; clients of different revisions probe different forms (2025-11-25:
    // path-inserted OAuth, path-inserted OpenID, then OpenID appended).
    let app = spawn_app_at("/auth", &[]).await;
    let origin = app.issuer.trim_end_matches("/auth").to_string();
    let urls = [
        format!("{origin}/.well-known/oauth-authorization-server/auth"),
        format!("{origin}/.well-known/openid-configuration/auth"),
        format!("{origin}/auth/.well-known/openid-configuration"),
        format!("{origin}/auth/.well-known/oauth-authorization-server"),
    ];
    let mut documents = Vec::new();
    for url in &urls {
        let response = app.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        documents.push(response.json::<Value>().await.unwrap());
    }
    for (url, document) in urls.iter().zip(&documents) {
        assert_eq!(document, &documents[0], "{url}");
    }
    let md = &documents[0];
    assert_eq!(md["issuer"], app.issuer);
    assert_eq!(md["authorization_response_iss_parameter_supported"], true);
    assert_eq!(md["client_id_metadata_document_supported"], true);
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "registration_endpoint",
        "jwks_uri",
    ] {
        assert!(
            md[endpoint]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}/", app.issuer)),
            "{endpoint}: {md}"
        );
    }
    // The root forms belong to another issuer: not served.
    let root = app
        .http
        .get(format!("{origin}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 404);
}

#[tokio::test]
async fn az3_iss_on_every_authorization_response_under_an_issuer_path() {
    // RFC 9207 with an issuer that has a path: success and error carry `iss` exactly.
    let app = spawn_app_at("/auth", &[]).await;
    let client_id = register(&app).await;
    let pkce = Pkce::new();
    let browser = Browser::new();
    let callback = authorize_as(&app, &browser, &client_id, &pkce, "alice", "password123").await;
    assert_eq!(
        query_param(&callback, "iss").as_deref(),
        Some(app.issuer.as_str())
    );
    assert!(query_param(&callback, "code").is_some());
    let refused = browser
        .get(
            &authorize_url(&app, &client_id, &pkce, &[])
                .replace("response_type=code", "response_type=token"),
        )
        .await;
    let to = location(&refused).unwrap();
    assert_eq!(
        query_param(&to, "error").as_deref(),
        Some("unsupported_response_type")
    );
    assert_eq!(
        query_param(&to, "iss").as_deref(),
        Some(app.issuer.as_str())
    );
}

#[tokio::test]
async fn az2_a_loopback_port_may_change_between_registration_and_authorization() {
    // VS Code, Claude Code and Copilot CLI register one port and listen on another (RFC 8252
    // section 7.3); the code is bound to the URI actually used.
    let app = spawn_app().await;
    let client_id = register(&app).await; // registered with port 53682
    let moved = "http://127.0.0.1:40123/callback";
    let pkce = Pkce::new();
    let browser = Browser::new();
    let url = authorize_url(&app, &client_id, &pkce, &[]).replace(
        &url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
        &url::form_urlencoded::byte_serialize(moved.as_bytes()).collect::<String>(),
    );
    let start = browser.get(&url).await;
    assert_eq!(start.status(), 302);
    let after_login = login(&browser, &location(&start).unwrap(), "alice", "password123").await;
    let approved = decide(&browser, &location(&after_login).unwrap(), "approve").await;
    assert_eq!(approved.status(), 302, "302, never 307");
    let callback = location(&approved).unwrap();
    assert!(callback.starts_with(moved), "{callback}");
    let code = query_param(&callback, "code").unwrap();
    let token = |redirect: &'static str| {
        let http = app.http.clone();
        let url = format!("{}/token", app.issuer);
        let (code, verifier, client_id) = (code.clone(), pkce.verifier.clone(), client_id.clone());
        async move {
            http.post(url)
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", redirect),
                    ("client_id", client_id.as_str()),
                    ("code_verifier", verifier.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(token(moved).await.status(), 200);
}

#[tokio::test]
async fn pg2_pages_use_the_servers_own_stylesheet() {
    for path in ["", "/auth"] {
        let app = spawn_app_at(path, &[]).await;
        let css = app
            .http
            .get(format!("{}/assets/style.css", app.issuer))
            .send()
            .await
            .unwrap();
        assert_eq!(css.status(), 200, "{path}");
        assert!(
            css.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/css")
        );
        assert!(
            css.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("max-age")
        );
        assert!(css.text().await.unwrap().contains(".card"));
        let client_id = register(&app).await;
        let browser = Browser::new();
        let start = browser
            .get(&authorize_url(&app, &client_id, &Pkce::new(), &[]))
            .await;
        let page = browser.get(&location(&start).unwrap()).await;
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("style-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        let html = page.text().await.unwrap();
        // Linked relatively: it resolves under the issuer's path.
        assert!(
            html.contains(r#"<link rel="stylesheet" href="assets/style.css">"#),
            "{html}"
        );
        assert!(!html.contains("<style"), "no inline styles");
    }
}
