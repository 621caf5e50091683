//! The whole MCP authorization flow over HTTP, as a client and a browser do it: 401 challenge ->
//! resource metadata -> AS metadata -> registration -> /authorize -> login -> consent -> code ->
//! /token -> MCP initialize, tools/list, tools/call greet and whoami. As alice and as bob.

mod common;

use common::*;
use serde_json::{Value, json};

async fn discover_and_run(user: &str, password: &str) {
    let app = spawn_app().await;

    // RS-1: no token -> 401 with the resource metadata URL and the scopes.
    let challenge = mcp_post(&app, None, None, initialize_body()).await;
    assert_eq!(challenge.status(), 401);
    let www = challenge.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let prm_url = format!("{}/.well-known/oauth-protected-resource/mcp", app.rs);
    assert_eq!(
        www,
        format!(r#"Bearer resource_metadata="{prm_url}", scope="mcp.read mcp.write""#)
    );

    // PRM-1: the resource metadata names this endpoint and the issuer exactly.
    let prm: Value = app
        .http
        .get(&prm_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "registration_endpoint",
        "jwks_uri",
    ] {
        assert!(
            md[endpoint].as_str().unwrap().starts_with(&app.issuer),
            "{endpoint}"
        );
    }

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

    let token_response = redeem(&app, client_id, &code, &pkce.verifier).await;
    assert_eq!(token_response.status(), 200);
    assert_eq!(token_response.headers()["cache-control"], "no-store");
    let body: Value = token_response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "mcp.read mcp.write");
    let token = body["access_token"].as_str().unwrap();

    // TK-4: an RFC 9068 JWT, kid = the JWKS key.
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwks: Value = app
        .http
        .get(md["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    let tools = rpc_result(
        mcp_post(
            &app,
            Some(token),
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await,
    )
    .await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"greet") && names.contains(&"whoami"),
        "{names:?}"
    );

    let greet = rpc_result(
        mcp_post(
            &app,
            Some(token),
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "greet", "arguments": {"name": "World"}}}),
        )
        .await,
    )
    .await;
    assert_eq!(greet["result"]["content"][0]["text"], "Hello, World!");

    let whoami = rpc_result(
        mcp_post(
            &app,
            Some(token),
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}),
        )
        .await,
    )
    .await;
    let who: Value =
        serde_json::from_str(whoami["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
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
    let start = browser
        .get(&authorize_url(&app, &client_id, &Pkce::new(), &[]))
        .await;
    let after_login = login(&browser, &location(&start).unwrap(), "bob", "hunter2").await;
    let denied = decide(&browser, &location(&after_login).unwrap(), "deny").await;
    assert_eq!(denied.status(), 302);
    let callback = location(&denied).unwrap();
    assert!(callback.starts_with(REDIRECT));
    assert_eq!(
        query_param(&callback, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(
        query_param(&callback, "state").as_deref(),
        Some("xyz-state")
    );
    assert_eq!(
        query_param(&callback, "iss").as_deref(),
        Some(app.issuer.as_str())
    );
    assert!(query_param(&callback, "code").is_none());
}

#[tokio::test]
async fn root_endpoint_and_its_metadata() {
    let app = spawn_app().await;
    let challenge = app
        .http
        .post(format!("{}/", app.rs))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    let www = challenge.headers()["www-authenticate"].to_str().unwrap();
    let prm_url = format!("{}/.well-known/oauth-protected-resource", app.rs);
    assert!(
        www.contains(&format!(r#"resource_metadata="{prm_url}""#)),
        "{www}"
    );
    let prm: Value = app
        .http
        .get(&prm_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], app.rs, "no trailing slash added");

    // A token for the root resource (sent with the slash an SDK's URL parser adds) works at `/`.
    let client_id = register(&app).await;
    let pkce = Pkce::new();
    let browser = Browser::new();
    let url = authorize_url(&app, &client_id, &pkce, &[]).replace(
        &format!("resource={}", urlencode(&app.mcp_url())),
        &format!("resource={}", urlencode(&format!("{}/", app.rs))),
    );
    let start = browser.get(&url).await;
    let after_login = login(&browser, &location(&start).unwrap(), "alice", "password123").await;
    let approved = decide(&browser, &location(&after_login).unwrap(), "approve").await;
    let code = query_param(&location(&approved).unwrap(), "code").unwrap();
    let token: Value = app
        .http
        .post(format!("{}/token", app.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", &client_id),
            ("code_verifier", &pkce.verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let init = app
        .http
        .post(format!("{}/", app.rs))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
