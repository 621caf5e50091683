//! The resource server for every MCP revision at once: scope step-up (RS-1, RS-2; 2025-11-25),
//! stateless requests without a session (2026-07-28) beside stateful sessions (2025-06-18,
//! 2025-11-25), and the `MCP-Protocol-Version` header. Tokens are minted with the authorization
//! server's key so that each case controls its scopes exactly; one case runs the real flow.

use crate::helpers::*;
use serde_json::{Value, json};

#[tokio::test]
async fn rs1_the_401_challenge_names_the_scopes_and_the_metadata() {
    let app = spawn_app().await;
    let response = mcp_post(&app, None, None, initialize_body()).await;
    let challenge = assert_bearer_refusal(&response, 401, None, "RS-1");
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
}

#[tokio::test]
async fn rs2_step_up_a_read_token_calls_greet_and_gets_403_on_save_note() {
    let app = spawn_app().await;
    let read_only = mint_token(&app, "alice", "mcp.read");
    // In a session (2025-06-18 clients) ...
    let session = open_session(&app, &read_only).await;
    let in_session = |body: Value| mcp_post(&app, Some(&read_only), Some(&session), body);
    let listed = rpc_result(in_session(tools_list(2)).await).await;
    let names = tool_names(&listed);
    // tools/list lists every tool, also those the token cannot call yet.
    for tool in ["greet", "whoami", "save_note", "list_notes"] {
        assert!(names.iter().any(|n| n == tool), "{names:?}");
    }
    let greeted = in_session(tool_call(3, "greet", json!({"name": "Ada"}))).await;
    assert_eq!(greeted.status(), 200);
    assert_eq!(text_of(&rpc_result(greeted).await), "Hello, Ada!");
    let refused = in_session(tool_call(4, "save_note", json!({"text": "hi"}))).await;
    let challenge =
        assert_bearer_refusal(&refused, 403, Some("insufficient_scope"), "in a session");
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

    // ... and without one (2026-07-28 style).
    let refused = mcp_post_with(
        &app,
        &read_only,
        &[("mcp-protocol-version", "2025-11-25")],
        tool_call(5, "save_note", json!({"text": "hi"})),
    )
    .await;
    assert_eq!(refused.status(), 403);
    assert!(www(&refused).contains(r#"scope="mcp.read mcp.write""#));
    // A batch with one call that needs more is refused as a whole.
    let batch = json!([
        tool_call(6, "greet", json!({"name": "x"})),
        tool_call(7, "save_note", json!({"text": "y"}))
    ]);
    let refused = in_session(batch).await;
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
    let token = mint_token(&app, "bob", "mcp.read mcp.write");
    let session = open_session(&app, &token).await;
    let saved = mcp_post(
        &app,
        Some(&token),
        Some(&session),
        tool_call(2, "save_note", json!({"text": "buy milk"})),
    )
    .await;
    assert_eq!(saved.status(), 200);
    let text = text_of(&rpc_result(saved).await);
    assert_eq!(text, "Saved. bob has 1 notes.");
    // The write is real: bob reads his note back, and alice does not see it.
    let listed = mcp_post(
        &app,
        Some(&token),
        Some(&session),
        tool_call(3, "list_notes", json!({})),
    )
    .await;
    let notes: Value = serde_json::from_str(&text_of(&rpc_result(listed).await)).unwrap();
    assert_eq!(notes["notes"][0]["text"], "buy milk", "{notes}");
    assert_eq!(notes["notes"].as_array().map(Vec::len), Some(1), "{notes}");
    let alice = mint_token(&app, "alice", "mcp.read");
    let hers = mcp_post_with(
        &app,
        &alice,
        &[("mcp-protocol-version", "2025-11-25")],
        tool_call(4, "list_notes", json!({})),
    )
    .await;
    let notes: Value = serde_json::from_str(&text_of(&rpc_result(hers).await)).unwrap();
    assert_eq!(notes["notes"], json!([]), "{notes}");
}

#[tokio::test]
async fn rs2_a_write_only_token_is_asked_for_the_baseline_scope() {
    let app = spawn_app().await;
    let token = mint_token(&app, "alice", "mcp.write");
    let response = mcp_post(&app, Some(&token), None, initialize_body()).await;
    let challenge = assert_bearer_refusal(&response, 403, Some("insufficient_scope"), "write only");
    assert!(
        challenge.contains(r#"scope="mcp.read mcp.write""#),
        "{challenge}"
    );
    // Scopes this server does not know are not echoed back.
    let token = mint_token(&app, "alice", "other");
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
        // No `state`: it is optional.
        let params = [
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
            ("scope", scope),
            ("resource", &app.mcp_url()),
        ];
        let url = url::Url::parse_with_params(&app.url("/authorize"), &params).unwrap();
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
        let attempt = mcp_post_with(
            &app,
            &token,
            &[],
            tool_call(1, "save_note", json!({"text": "n"})),
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
    let token = mint_token(&app, "alice", "mcp.read mcp.write");
    // A 2025 client that never initializes: no header (taken as 2025-03-26) or a 2025 one.
    for headers in [vec![], vec![("mcp-protocol-version", "2025-06-18")]] {
        let response = mcp_post_with(&app, &token, &headers, tools_list(1)).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("mcp-session-id").is_none());
        let listed = rpc_result(response).await;
        assert_eq!(listed["result"]["tools"].as_array().unwrap().len(), 4);
    }
    // A 2026-07-28 request: protocol metadata in `_meta`, the version and the standard headers.
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1.0"},
    });
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "whoami", "arguments": {}, "_meta": meta}});
    let response = mcp_post_with(
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
    let token = mint_token(&app, "alice", "mcp.read");
    let list = tools_list(1);
    // An unknown version: 400, without and within a session.
    let response = mcp_post_with(
        &app,
        &token,
        &[("mcp-protocol-version", "1999-01-01")],
        list.clone(),
    )
    .await;
    assert_eq!(response.status(), 400);
    let session = open_session(&app, &token).await;
    // (case, headers, status)
    #[rustfmt::skip]
    let cases: [(&str, Pairs, u16); 3] = [
        ("an unknown version in a session", &[("mcp-protocol-version", "1999-01-01"), ("mcp-session-id", &session)], 400),
        // 2026-07-28 named in the header but no per-request metadata in the body: refused.
        ("2026-07-28 without metadata", &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")], 400),
        ("the session's own version", &[("mcp-protocol-version", "2025-06-18"), ("mcp-session-id", &session)], 200),
    ];
    for (case, headers, status) in cases {
        let response = mcp_post_with(&app, &token, headers, list.clone()).await;
        assert_eq!(response.status(), status, "{case}");
    }
}

#[tokio::test]
async fn stateful_sessions_stay_bound_to_their_user() {
    let app = spawn_app().await;
    let alice = mint_token(&app, "alice", "mcp.read mcp.write");
    let bob = mint_token(&app, "bob", "mcp.read mcp.write");
    let session = open_session(&app, &alice).await;
    let list = tools_list(2);
    let response = mcp_post(&app, Some(&alice), Some(&session), list.clone()).await;
    assert_eq!(response.status(), 200);
    let response = mcp_post(&app, Some(&bob), Some(&session), list.clone()).await;
    assert_eq!(response.status(), 403);
    // A stateless request of bob is served as bob's, beside alice's session.
    let response = mcp_post_with(&app, &bob, &[], tool_call(3, "whoami", json!({}))).await;
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
    assert_endpoints_under(md, &app.url("/"));
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
    let token_type = [("response_type", "token")];
    let refused = browser
        .get(&authorize_url(&app, &client_id, &pkce, &token_type))
        .await;
    assert_error_redirect(&app, &refused, "unsupported_response_type", "error");
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
    let url = authorize_url(&app, &client_id, &pkce, &[("redirect_uri", moved)]);
    let start = browser.get(&url).await;
    assert_eq!(start.status(), 302);
    let login_url = location(&start).unwrap();
    let approved = login_and_decide(&browser, &login_url, "alice", "password123", "approve").await;
    assert_eq!(approved.status(), 302, "302, never 307");
    let callback = location(&approved).unwrap();
    assert!(callback.starts_with(moved), "{callback}");
    let code = query_param(&callback, "code").unwrap();
    let redemption = TokenRequest::code(&code, &pkce.verifier)
        .set("redirect_uri", moved)
        .set("client_id", &client_id);
    assert_eq!(redemption.send(&app).await.status(), 200);
}

#[tokio::test]
async fn pg2_pages_use_the_servers_own_stylesheet() {
    for path in ["", "/auth"] {
        let app = spawn_app_at(path, &[]).await;
        let css = app.get("/assets/style.css").send().await.unwrap();
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
