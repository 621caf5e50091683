//! Token introspection (RFC 7662) over HTTP: who may ask, what each caller may see, refresh
//! tokens, inactive tokens answered with `{"active": false}` only, and the resource server's
//! use of it (`--introspect`), failing closed when the authorization server cannot be asked.

use crate::helpers::*;
use serde_json::{Value, json};

#[tokio::test]
async fn introspection_requires_authentication() {
    let app = spawn_app_with(&["--introspection-secret", INTROSPECTION_SECRET]).await;
    let public = register(&app).await;
    let token = field(&tokens_for_client(&app, &public).await, "access_token");
    let token = token.as_str();
    let introspect = |form: &[(&str, &str)]| app.post("/introspect").form(form);

    let anonymous = introspect(&[("token", token)]).send().await.unwrap();
    assert_eq!(anonymous.status(), 400, "no credentials at all");
    let as_public = introspect(&[("token", token), ("client_id", &public)])
        .send()
        .await
        .unwrap();
    assert_eq!(as_public.status(), 401, "a public client");
    let wrong_secret = introspect(&[("token", token)])
        .bearer_auth("not-the-introspection-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_secret.status(), 401, "a wrong credential");
    let body: Value = wrong_secret.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    let active = introspect_as_rs(&app, token).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["sub"], "alice");
    assert_eq!(active["client_id"], public);
    assert_eq!(active["token_type"], "Bearer");
}

#[tokio::test]
async fn without_a_configured_secret_no_bearer_credential_is_accepted() {
    let app = spawn_app().await;
    let public = register(&app).await;
    let token = field(&tokens_for_client(&app, &public).await, "access_token");
    let response = app
        .post("/introspect")
        .bearer_auth(INTROSPECTION_SECRET)
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_confidential_client_sees_only_its_own_tokens() {
    let app = spawn_app().await;
    let (confidential, secret) = register_confidential(&app, "client_secret_basic").await;
    let public = register(&app).await;
    let others = field(&tokens_for_client(&app, &public).await, "access_token");
    assert_eq!(
        introspect_as_client(&app, &confidential, &secret, &others).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn refresh_tokens_are_introspectable_and_rotated_ones_are_inactive() {
    let app = spawn_app_with(&["--introspection-secret", INTROSPECTION_SECRET]).await;
    let client = register(&app).await;
    let tokens = tokens_for_client(&app, &client).await;
    let t0 = field(&tokens, "refresh_token");
    let active = introspect_as_rs(&app, &t0).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["token_type"], "refresh_token");
    assert_eq!(active["client_id"], client);
    assert_eq!(active["sub"], "alice");
    assert_eq!(active["scope"], "mcp.read mcp.write");
    assert_eq!(active["aud"], app.mcp_url());
    assert!(active["exp"].as_u64().unwrap() > active["iat"].as_u64().unwrap());

    // Introspection does not rotate: the token still refreshes.
    let refreshed: Value = refresh(&app, &client, &t0, &[]).await.json().await.unwrap();
    let t1 = field(&refreshed, "refresh_token");
    assert_inactive(&app, &t0).await;
    assert_eq!(introspect_as_rs(&app, &t1).await["active"], true);
    // A hint naming the other kind changes nothing.
    let hinted: Value = app
        .post("/introspect")
        .bearer_auth(INTROSPECTION_SECRET)
        .form(&[("token", t1.as_str()), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hinted["active"], true);
    // Inspecting a rotated token is not a reuse: t1 still works.
    assert_eq!(refresh(&app, &client, &t1, &[]).await.status(), 200);
}

#[tokio::test]
async fn an_unreachable_authorization_server_fails_closed() {
    // The RS introspects at a port where nothing listens.
    let app = spawn_app_with(&[
        "--introspect",
        "--rs-introspection-secret",
        INTROSPECTION_SECRET,
        "--introspection-endpoint",
        "http://127.0.0.1:9/introspect",
    ])
    .await;
    let token = token_for(&app, "alice", "password123").await;
    let response = mcp_post(&app, Some(&token), None, initialize_body()).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("authorization server"),
        "{body}"
    );
}

#[tokio::test]
async fn an_introspecting_resource_server_accepts_active_tokens() {
    let app = spawn_app_with(INTROSPECT_FLAGS).await;
    let token = token_for(&app, "alice", "password123").await;
    let session = open_session(&app, &token).await;
    let whoami = tool_call(2, "whoami", json!({}));
    let call = mcp_post(&app, Some(&token), Some(&session), whoami).await;
    assert_eq!(call.status(), 200);
}
