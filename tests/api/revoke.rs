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
        json!([
            "none",
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt"
        ])
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

/// Without introspection the resource server learns of revocations from the authorization
/// server's feed: the feed requires the resource-server credential when the authorization server
/// has one, a resource server without it vouches for no token (503), and one that does not
/// follow the feed accepts a revoked token until it expires (docs/SECURITY.md).
#[tokio::test]
async fn without_introspection_the_revocation_feed_tells_the_resource_server() {
    let secret = ["--introspection-secret", INTROSPECTION_SECRET];
    let credential = ["--rs-introspection-secret", INTROSPECTION_SECRET];
    // (case, settings, status before the revocation, status after)
    #[rustfmt::skip]
    let cases: &[(&str, Vec<&str>, u16, u16)] = &[
        ("public feed", vec![], 200, 401),
        ("feed with the credential", [secret, credential].concat(), 200, 401),
        ("feed without the credential", secret.to_vec(), 503, 503),
        ("no feed", [&secret[..], &["--no-revocation-feed"]].concat(), 200, 200),
    ];
    for (case, settings, before, after) in cases {
        let app = spawn_app_with(settings).await;
        let client = register(&app).await;
        let access = field(&tokens_for_client(&app, &client).await, "access_token");
        assert_eq!(mcp_status(&app, &access).await, *before, "{case}");
        assert_revoked_ok(revoke_token(&app, &client, &access, None).await, "access").await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let mut status = mcp_status(&app, &access).await;
        while status != *after && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            status = mcp_status(&app, &access).await;
        }
        assert_eq!(status, *after, "{case}");
        if *after == 503 {
            let response = mcp_post(&app, Some(&access), None, initialize_body()).await;
            assert_eq!(response.status(), 503, "{case}");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"], "temporarily_unavailable", "{case}");
        }
    }
}

/// The feed itself: JSON, never cached, the credential required when one is set, malformed
/// positions refused, and a long poll answered the moment a token is revoked.
#[tokio::test]
async fn the_revocation_feed_endpoint() {
    let app = spawn_app_with(&[
        "--introspection-secret",
        INTROSPECTION_SECRET,
        "--rs-introspection-secret",
        INTROSPECTION_SECRET,
    ])
    .await;
    let feed = app.url("/oauth/revocations");
    for (case, auth, query, status) in [
        ("no credential", None, "", 401),
        ("a wrong credential", Some("wrong-credential-0123"), "", 401),
        ("the credential", Some(INTROSPECTION_SECRET), "", 200),
        (
            "a malformed cursor",
            Some(INTROSPECTION_SECRET),
            "?after=x",
            400,
        ),
        (
            "a negative wait",
            Some(INTROSPECTION_SECRET),
            "?wait=-1",
            400,
        ),
    ] {
        let mut request = app.http.get(format!("{feed}{query}"));
        if let Some(auth) = auth {
            request = request.bearer_auth(auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{case}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{case}");
    }
    let first: serde_json::Value = app
        .http
        .get(&feed)
        .bearer_auth(INTROSPECTION_SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["snapshot"], true);
    let epoch = first["epoch"].as_str().unwrap().to_string();
    let cursor = first["cursor"].as_u64().unwrap();
    // A long poll from that position waits for the next revocation and returns with it.
    let client = register(&app).await;
    let access = field(&tokens_for_client(&app, &client).await, "access_token");
    let poll = app
        .http
        .get(format!("{feed}?epoch={epoch}&after={cursor}&wait=30"))
        .bearer_auth(INTROSPECTION_SECRET)
        .send();
    let revoke = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        revoke_token(&app, &client, &access, None).await
    };
    let started = std::time::Instant::now();
    let (page, revoked) = tokio::join!(poll, revoke);
    assert_eq!(revoked.status(), 200);
    let page: serde_json::Value = page.unwrap().json().await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "answered at the revocation, not at the end of the wait"
    );
    assert_eq!(page["snapshot"], false);
    assert_eq!(page["cursor"].as_u64(), Some(cursor + 1));
    let claims = claims_of(&access);
    let jti = claims["jti"].clone();
    assert_eq!(page["revoked"][0]["jti"], jti);

    // Without a credential the feed is public, and each source has a bucket of its own (600
    // a minute; the resource server here does not follow the feed, so it is the test's alone).
    let app = spawn_app_with(&["--no-revocation-feed"]).await;
    let feed = app.url("/oauth/revocations");
    let polls = (0..700).map(|_| app.http.get(&feed).send());
    let statuses: Vec<u16> = futures::future::join_all(polls)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    // A burst of 600 passes, then roughly 10 a second: some of the rest are limited, however
    // long the burst took.
    assert!((1..=100).contains(&limited), "{limited} of 700 limited");
    // Its own bucket: the token endpoint's is untouched.
    let client = register(&app).await;
    assert_eq!(
        tokens_for_client(&app, &client).await["token_type"],
        "Bearer"
    );
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
