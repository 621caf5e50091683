//! Memory that does not grow with the store: the client registry and the refresh-token actor
//! keep only what was used lately (`--cached-clients`, `--cached-refresh-families`) and read the
//! rest from the store. With room for one of each, flows of several clients interleave and every
//! rule holds as it does with everything in memory: rotation, reuse detection, revocation of the
//! access tokens minted from a family no longer cached, the account page, and a restart that
//! reads nothing at start.

use crate::helpers::*;
use serde_json::Value;

const ONE_OF_EACH: &[&str] = &[
    "--cached-clients",
    "1",
    "--cached-refresh-families",
    "1",
    "--refresh-grace-seconds",
    "1",
];

#[tokio::test]
async fn with_room_for_one_client_and_one_family_every_flow_and_rule_holds() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [ONE_OF_EACH, INTROSPECT_FLAGS].concat();
    let app = spawn_app_in(dir.path(), &settings).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let client_id = register(&app).await;
        let tokens = tokens_for_client(&app, &client_id).await;
        clients.push((client_id, tokens));
    }
    // Each client's family is read back from the store in turn, and rotates.
    let mut current = Vec::new();
    for (client_id, tokens) in &clients {
        let response = refresh(&app, client_id, &field(tokens, "refresh_token"), &[]).await;
        let body = ok_json(response, "a refresh of a family not cached").await;
        assert_eq!(mcp_status(&app, &field(&body, "access_token")).await, 200);
        current.push(body);
    }

    // Within the grace window, the retired token of a family not cached answers the same
    // successor (a concurrent retry); after it, it is reuse, which ends the family, its current
    // token with it.
    let (second, second_issued) = &clients[1];
    let retry = refresh(&app, second, &field(second_issued, "refresh_token"), &[]).await;
    let retry = ok_json(retry, "a retry within the grace window").await;
    assert_eq!(
        field(&retry, "refresh_token"),
        field(&current[1], "refresh_token")
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let reuse = refresh(&app, second, &field(second_issued, "refresh_token"), &[]).await;
    assert_oauth_error(reuse, 400, "invalid_grant", "reuse of an evicted family").await;
    let after = refresh(&app, second, &field(&current[1], "refresh_token"), &[]).await;
    assert_eq!(after.status(), 400, "reuse ended the whole family");
    // The access tokens minted from it were revoked, though the family was not cached.
    assert_eq!(mcp_status(&app, &field(&retry, "access_token")).await, 401);
    assert_eq!(
        mcp_status(&app, &field(second_issued, "access_token")).await,
        401
    );
    assert_eq!(
        mcp_status(&app, &field(&current[1], "access_token")).await,
        401
    );

    // Revoking the first client's refresh token (not cached since) revokes its access tokens.
    let (first, first_issued) = &clients[0];
    let first_refresh = field(&current[0], "refresh_token");
    let revoked = revoke_token(&app, first, &first_refresh, None).await;
    assert_eq!(revoked.status(), 200);
    assert_inactive(&app, &field(&current[0], "refresh_token")).await;
    assert_eq!(
        mcp_status(&app, &field(first_issued, "access_token")).await,
        401
    );
    assert_eq!(
        mcp_status(&app, &field(&current[0], "access_token")).await,
        401
    );

    // The third still refreshes; the account page counts alice's families from the store.
    let (third, _) = &clients[2];
    let response = refresh(&app, third, &field(&current[2], "refresh_token"), &[]).await;
    let third_tokens: Value = ok_json(response, "the third client's family").await;
    let browser = Browser::signed_in(&app, third).await;
    let account = browser.text(&app.url("/account")).await;
    assert_eq!(
        account
            .matches("Active sign-ins (refresh tokens): 1")
            .count(),
        1,
        "one live family, the third client's: {account}"
    );

    // A restart reads nothing at start, and serves the stored clients and families.
    let app = app.restart().await;
    let response = refresh(&app, third, &field(&third_tokens, "refresh_token"), &[]).await;
    ok_json(response, "a refresh after the restart").await;
    let (code, pkce) = code_for(&app, first).await;
    let redeemed = redeem(&app, first, &code, &pkce.verifier).await;
    ok_json(redeemed, "a stored client's flow after the restart").await;
    app.stop().await;
}
