//! Revocation reaches the resource server (RFC 7009 section 2; OAuth 2.1 section 4.1.3 on
//! replayed codes): the authorization server publishes revoked token ids on its feed and the
//! resource server follows it, so a revoked token, the token of a replayed code and the tokens
//! of a reused refresh token are refused within a second, in the default configuration, with no
//! introspection. While the feed is silent for longer than the allowed lag the resource server
//! vouches for no token (503), and it catches up when the feed is back.

use crate::helpers::*;
use serde_json::Value;
use std::time::Duration;

/// The binaries as deployed, each on its own: the authorization server with its SQLite store,
/// the resource server with only its defaults (no introspection) and a short allowed lag.
#[tokio::test]
async fn revocations_reach_the_resource_server_binary_within_a_second() {
    let data = tempfile::tempdir().unwrap();
    let Deployment {
        auth,
        rs: _rs,
        issuer,
        mcp,
        as_args,
    } = deploy(data.path(), &[], &["--revocation-feed-max-lag", "2"]).await;
    let http = issuer.http.clone();

    // A token revoked at /revoke.
    let tokens = issuer.tokens(&mcp).await;
    let revoked = field(&tokens, "access_token");
    assert_eq!(mcp_status_at(&http, &mcp, &revoked).await, 200);
    let response = issuer
        .post(
            "/revoke",
            &[("token", &revoked), ("client_id", &issuer.client_id)],
        )
        .await;
    assert_eq!(response.status(), 200);
    let took = until_status(&http, &mcp, &revoked, 401).await;
    assert!(
        took < Duration::from_secs(1),
        "/revoke reached the RS in {took:?}"
    );

    // The token of a code that is then replayed.
    let (code, verifier) = issuer.code(&mcp).await;
    let first = issuer.redeem(&code, &verifier).await;
    let replayed_token = field(&first.json::<Value>().await.unwrap(), "access_token");
    assert_eq!(mcp_status_at(&http, &mcp, &replayed_token).await, 200);
    assert_eq!(issuer.redeem(&code, &verifier).await.status(), 400);
    let took = until_status(&http, &mcp, &replayed_token, 401).await;
    assert!(
        took < Duration::from_secs(1),
        "a code replay reached the RS in {took:?}"
    );

    // The tokens of a refresh-token family whose retired token is presented again.
    let tokens = issuer.tokens(&mcp).await;
    let (first_access, first_refresh) = (
        field(&tokens, "access_token"),
        field(&tokens, "refresh_token"),
    );
    let refresh = |token: String| {
        let issuer = &issuer;
        async move {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
                ("client_id", issuer.client_id.as_str()),
            ];
            issuer.post("/token", &form).await
        }
    };
    let rotated: Value = refresh(first_refresh.clone()).await.json().await.unwrap();
    let second_access = field(&rotated, "access_token");
    let rotated: Value = refresh(field(&rotated, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    let third_access = field(&rotated, "access_token");
    assert_eq!(mcp_status_at(&http, &mcp, &third_access).await, 200);
    // A token retired before the last rotation is outside the grace window: reuse.
    assert_eq!(refresh(first_refresh).await.status(), 400);
    for token in [&first_access, &second_access, &third_access] {
        let took = until_status(&http, &mcp, token, 401).await;
        assert!(
            took < Duration::from_secs(1),
            "reuse reached the RS in {took:?}"
        );
    }

    // The authorization server goes away: once the feed has been silent for longer than the
    // allowed lag, no token is vouched for.
    let valid = field(&issuer.tokens(&mcp).await, "access_token");
    assert_eq!(mcp_status_at(&http, &mcp, &valid).await, 200);
    auth.kill();
    until_status(&http, &mcp, &valid, 503).await;

    // It comes back (a new run, the same store): the resource server catches up from a
    // snapshot; what was revoked stays refused, what was not is accepted again, and a new
    // revocation arrives as before.
    let as_args: Vec<&str> = as_args.iter().map(String::as_str).collect();
    let _auth = Server::start(env!("CARGO_BIN_EXE_auth-server"), &as_args);
    until_status(&http, &mcp, &valid, 200).await;
    for token in [&revoked, &replayed_token, &first_access, &third_access] {
        assert_eq!(mcp_status_at(&http, &mcp, token).await, 401);
    }
    let response = issuer
        .post(
            "/revoke",
            &[("token", &valid), ("client_id", &issuer.client_id)],
        )
        .await;
    assert_eq!(response.status(), 200);
    let took = until_status(&http, &mcp, &valid, 401).await;
    assert!(took < Duration::from_secs(1), "after a restart: {took:?}");
}
