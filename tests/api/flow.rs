//! The whole MCP authorization flow over HTTP, as a client and a browser do it: 401 challenge ->
//! resource metadata -> AS metadata -> registration -> /authorize -> login -> consent -> code ->
//! /token -> MCP initialize, tools/list, tools/call greet and whoami. As alice and as bob.

use crate::helpers::*;
use serde_json::{Value, json};

async fn discover_and_run(user: &str, password: &str) {
    let app = spawn_app().await;

    // RS-1: no token -> 401 with the resource metadata URL and the scopes.
    let challenge = mcp_post(&app, None, None, initialize_body()).await;
    assert_eq!(challenge.status(), 401);
    let prm_url = format!("{}/.well-known/oauth-protected-resource/mcp", app.rs);
    assert_eq!(
        www(&challenge),
        format!(r#"Bearer resource_metadata="{prm_url}", scope="mcp.read mcp.write""#)
    );

    // PRM-1: the resource metadata names this endpoint and the issuer exactly.
    let prm = app.get_json(&prm_url).await;
    assert_eq!(prm["resource"], app.mcp_url());
    assert_eq!(prm["authorization_servers"], json!([app.issuer]));
    assert_eq!(prm["bearer_methods_supported"], json!(["header"]));

    // MD-1: the AS metadata.
    let md: Value = as_metadata(&app).await;
    assert_eq!(md["issuer"], app.issuer);
    assert_eq!(md["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(md["response_types_supported"], json!(["code"]));
    assert!(
        md["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("none"))
    );
    assert_eq!(md["scopes_supported"], json!(["mcp.read", "mcp.write"]));
    assert_endpoints_under(&md, &app.issuer);

    // Registration, authorization, token.
    let client = register_with(
        &app,
        json!({"client_name": "Flow Client", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
    )
    .await;
    assert!(
        client.get("client_secret").is_none(),
        "a public client gets no secret"
    );
    let client_id = client["client_id"].as_str().unwrap();
    let pkce = Pkce::new();
    let browser = Browser::new();
    let callback = authorize_as(&app, &browser, client_id, &pkce, user, password).await;
    assert!(callback.starts_with(REDIRECT), "{callback}");
    assert_eq!(
        query_param(&callback, "state").as_deref(),
        Some("xyz-state")
    );
    assert_eq!(
        query_param(&callback, "iss").as_deref(),
        Some(app.issuer.as_str())
    );
    let code = query_param(&callback, "code").unwrap();

    let response = redeem(&app, client_id, &code, &pkce.verifier).await;
    let body = ok_json(response, "the token response").await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "mcp.read mcp.write");
    let token = body["access_token"].as_str().unwrap();

    // TK-4: an RFC 9068 JWT, kid = the JWKS key.
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwks = app.get_json(md["jwks_uri"].as_str().unwrap()).await;
    assert_eq!(jwks["keys"][0]["kid"].as_str(), header.kid.as_deref());
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[app.mcp_url()]);
    validation.set_issuer(&[app.issuer.as_str()]);
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], user);
    assert_eq!(claims["client_id"], client_id);
    assert_eq!(claims["scope"], "mcp.read mcp.write");
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
    ] {
        assert!(claims.get(claim).is_some(), "claim {claim}");
    }

    // MCP: initialize, tools/list, tools/call greet and whoami.
    let session = open_session(&app, token).await;
    let call = |body: Value| mcp_post(&app, Some(token), Some(&session), body);
    let names = tool_names(&rpc_result(call(tools_list(2)).await).await);
    for tool in ["greet", "whoami"] {
        assert!(names.iter().any(|n| n == tool), "{names:?}");
    }

    let greet = rpc_result(call(tool_call(3, "greet", json!({"name": "World"}))).await).await;
    assert_eq!(text_of(&greet), "Hello, World!");

    let whoami = rpc_result(call(tool_call(4, "whoami", json!({}))).await).await;
    let who: Value = serde_json::from_str(&text_of(&whoami)).unwrap();
    assert_eq!(who["sub"], user);
    assert_eq!(who["client_id"], client_id);
    assert_eq!(who["scopes"], json!(["mcp.read", "mcp.write"]));
}

#[tokio::test]
async fn complete_flow_as_alice() {
    discover_and_run("alice", "password123").await;
}

#[tokio::test]
async fn complete_flow_as_bob() {
    discover_and_run("bob", "hunter2").await;
}

#[tokio::test]
async fn remembered_consent_skips_the_page() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    let first = authorize_as(
        &app,
        &browser,
        &client_id,
        &Pkce::new(),
        "alice",
        "password123",
    )
    .await;
    assert!(query_param(&first, "code").is_some());
    // Same browser, same client: signed in and consent remembered -> straight back with a code.
    let pkce = Pkce::new();
    let again = browser
        .get(&authorize_url(&app, &client_id, &pkce, &[]))
        .await;
    assert_eq!(again.status(), 302);
    let callback = location(&again).unwrap();
    assert!(callback.starts_with(REDIRECT), "{callback}");
    let code = query_param(&callback, "code").unwrap();
    assert_eq!(
        redeem(&app, &client_id, &code, &pkce.verifier)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn deny_answers_access_denied() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    let login_url = browser.start_authorization(&app, &client_id).await;
    let denied = login_and_decide(&browser, &login_url, "bob", "hunter2", "deny").await;
    assert_error_redirect(&app, &denied, "access_denied", "denied");
}

#[tokio::test]
async fn root_endpoint_and_its_metadata() {
    let app = spawn_app().await;
    let root = format!("{}/", app.rs);
    let challenge = mcp_request(&app, &root, &initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    let www = www(&challenge);
    let prm_url = format!("{}/.well-known/oauth-protected-resource", app.rs);
    assert!(
        www.contains(&format!(r#"resource_metadata="{prm_url}""#)),
        "{www}"
    );
    let prm = app.get_json(&prm_url).await;
    assert_eq!(prm["resource"], app.rs, "no trailing slash added");

    // A token for the root resource (sent with the slash an SDK's URL parser adds) works at `/`.
    let client_id = register(&app).await;
    let pkce = Pkce::new();
    let browser = Browser::new();
    let url = authorize_url(&app, &client_id, &pkce, &[("resource", &root)]);
    let start = browser.get(&url).await;
    let approved = login_and_decide(
        &browser,
        &location(&start).unwrap(),
        "alice",
        "password123",
        "approve",
    )
    .await;
    let code = query_param(&location(&approved).unwrap(), "code").unwrap();
    let token: Value = TokenRequest::code(&code, &pkce.verifier)
        .set("client_id", &client_id)
        .send(&app)
        .await
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let init = mcp_request(&app, &root, &initialize_body())
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
}
