//! Token revocation (RFC 7009) over HTTP: refresh tokens end their family, access tokens are
//! revoked by `jti`, another client's token and unknown tokens get 200 and revoke nothing, and a
//! revoked access token is refused by a resource server that introspects but still accepted by
//! one that validates locally only.

use crate::helpers::*;
use serde_json::{Value, json};

async fn assert_revoked_ok(response: reqwest::Response, context: &str) {
    assert_eq!(response.status(), 200, "{context}");
    assert_eq!(response.headers()["cache-control"], "no-store", "{context}");
    assert!(response.text().await.unwrap().is_empty(), "{context}");
}

#[tokio::test]
async fn metadata_lists_the_revocation_endpoint() {
    let app = spawn_app().await;
    let metadata: Value = as_metadata(&app).await;
    assert_eq!(metadata["revocation_endpoint"], app.url("/revoke"));
    assert_eq!(
        metadata["revocation_endpoint_auth_methods_supported"],
        json!(["none", "client_secret_basic", "client_secret_post"])
    );
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_family_and_access_tokens() {
    let app = spawn_app_with(INTROSPECT_FLAGS).await;
    let client = register(&app).await;
    let tokens = tokens_for_client(&app, &client).await;
    let t0 = field(&tokens, "refresh_token");
    let refreshed: Value = refresh(&app, &client, &t0, &[]).await.json().await.unwrap();
    let t1 = field(&refreshed, "refresh_token");
    let access = field(&refreshed, "access_token");
    assert_eq!(mcp_status(&app, &access).await, 200);

    // The hint says access token; the server looks further (the hint is not trusted).
    assert_revoked_ok(
        revoke_token(&app, &client, &t1, Some("access_token")).await,
        "refresh token",
    )
    .await;
    let dead = refresh(&app, &client, &t1, &[]).await;
    assert_eq!(dead.status(), 400);
    assert_inactive(&app, &t1).await;
    assert_inactive(&app, &access).await;
    assert_eq!(mcp_status(&app, &access).await, 401);
    // Revoking again is still 200.
    assert_revoked_ok(revoke_token(&app, &client, &t1, None).await, "again").await;
}

#[tokio::test]
async fn a_revoked_access_token_is_refused_by_an_introspecting_resource_server() {
    let app = spawn_app_with(INTROSPECT_FLAGS).await;
    let client = register(&app).await;
    let tokens = tokens_for_client(&app, &client).await;
    let access = field(&tokens, "access_token");
    let refresh_token = field(&tokens, "refresh_token");
    assert_eq!(mcp_status(&app, &access).await, 200);
    assert_revoked_ok(
        revoke_token(&app, &client, &access, Some("access_token")).await,
        "access token",
    )
    .await;
    assert_inactive(&app, &access).await;
    assert_eq!(
        mcp_status(&app, &access).await,
        401,
        "revoked token refused"
    );
    let response = mcp_post(&app, Some(&access), None, initialize_body()).await;
    assert_bearer_refusal(&response, 401, Some("invalid_token"), "a revoked token");
    // Revoking an access token leaves the refresh token alone.
    assert_eq!(
        refresh(&app, &client, &refresh_token, &[]).await.status(),
        200
    );
}

#[tokio::test]
async fn without_introspection_the_resource_server_validates_locally_only() {
    let app = spawn_app_with(&["--introspection-secret", INTROSPECTION_SECRET]).await;
    let client = register(&app).await;
    let access = field(&tokens_for_client(&app, &client).await, "access_token");
    assert_revoked_ok(revoke_token(&app, &client, &access, None).await, "access").await;
    assert_inactive(&app, &access).await;
    // A self-contained JWT: the RS accepts it until it expires (docs/SECURITY.md).
    assert_eq!(mcp_status(&app, &access).await, 200);
}

#[tokio::test]
async fn another_clients_token_and_unknown_tokens_get_200_and_revoke_nothing() {
    let app = spawn_app_with(&["--introspection-secret", INTROSPECTION_SECRET]).await;
    let owner = register(&app).await;
    let stranger = register(&app).await;
    let tokens = tokens_for_client(&app, &owner).await;
    let access = field(&tokens, "access_token");
    let refresh_token = field(&tokens, "refresh_token");

    assert_revoked_ok(
        revoke_token(&app, &stranger, &refresh_token, None).await,
        "other client's refresh token",
    )
    .await;
    assert_revoked_ok(
        revoke_token(&app, &stranger, &access, Some("access_token")).await,
        "other client's access token",
    )
    .await;
    assert_eq!(introspect_as_rs(&app, &access).await["active"], true);
    assert_eq!(introspect_as_rs(&app, &refresh_token).await["active"], true);
    assert_revoked_ok(
        revoke_token(&app, &owner, "no-such-token", None).await,
        "unknown token",
    )
    .await;
    assert_revoked_ok(
        revoke_token(&app, &owner, &"x".repeat(5000), Some("refresh_token")).await,
        "oversized token",
    )
    .await;

    // Client authentication as at /token, and a token is required.
    let anonymous = app
        .post("/revoke")
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 400);
    let unknown_client = revoke_token(&app, "no-such-client", &access, None).await;
    assert_oauth_error(unknown_client, 401, "invalid_client", "unknown client").await;
    let no_token = app
        .post("/revoke")
        .form(&[("client_id", owner.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 400);
    let json_body = app
        .post("/revoke")
        .json(&json!({"token": access, "client_id": owner}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 400);
    // Nothing above revoked the owner's tokens.
    assert_eq!(introspect_as_rs(&app, &access).await["active"], true);
    assert_eq!(
        refresh(&app, &owner, &refresh_token, &[]).await.status(),
        200
    );
}
