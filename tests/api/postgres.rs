//! The authorization server on PostgreSQL (`--database-url postgres://…`), in a scratch database
//! of its own on the machine's server: the whole flow, a restart that keeps clients, consents,
//! refresh-token families, revocations and the signing key, a second server on the same database
//! that knows the first one's clients. (The settings that go with it are table tests in
//! `src/config/auth.rs`.)

use crate::helpers::*;
use mcp_oauth_testkit::postgres::ScratchDatabase;
use serde_json::Value;

const SECRET: &str = "the replicas' shared key-encryption secret";

fn on(database: &ScratchDatabase) -> [&str; 4] {
    [
        "--database-url",
        &database.url,
        "--key-encryption-secret",
        SECRET,
    ]
}

#[tokio::test]
async fn the_whole_flow_on_postgres_survives_a_restart() {
    let database = ScratchDatabase::create().await;
    let app = spawn_app_with(&on(&database)).await;
    let client_id = register(&app).await;
    let issued = tokens_for_client(&app, &client_id).await;
    let access = field(&issued, "access_token");
    assert_eq!(mcp_status(&app, &access).await, 200);
    let first = field(&issued, "refresh_token");
    let rotated: Value = refresh(&app, &client_id, &first, &[])
        .await
        .json()
        .await
        .unwrap();
    let second = field(&rotated, "refresh_token");
    let revoked = field(&rotated, "access_token");
    let revoke = app
        .post("/revoke")
        .form(&[
            ("token", revoked.as_str()),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);

    let app = app.restart().await;

    // The signing key was stored: a token from before validates.
    assert_eq!(mcp_status(&app, &access).await, 200);
    // The revocation was stored.
    assert_eq!(mcp_status(&app, &revoked).await, 401, "still revoked");
    // The family rotates on from where it was; the retired token is reuse.
    let after = refresh(&app, &client_id, &second, &[]).await;
    assert_eq!(after.status(), 200, "the current token refreshes");
    assert_eq!(refresh(&app, &client_id, &first, &[]).await.status(), 400);
    // The client and alice's consent are remembered: no consent page.
    let pkce = Pkce::new();
    let browser = Browser::new();
    let start = browser
        .get(&authorize_url(&app, &client_id, &pkce, &[]))
        .await;
    let after_login = login(&browser, &location(&start).unwrap(), "alice", "password123").await;
    let callback = location(&after_login).unwrap();
    assert!(callback.starts_with(REDIRECT), "{callback}");
    app.stop().await;
}

#[tokio::test]
async fn a_second_server_on_the_same_database_knows_the_first_ones_clients() {
    let database = ScratchDatabase::create().await;
    let a = spawn_app_with(&on(&database)).await;
    let b = spawn_app_with(&on(&database)).await;
    let client_id = register(&a).await;
    // Registered at A, authorized and redeemed at B.
    let token = access_token_as(&b, &client_id, "bob", "hunter2").await;
    assert_eq!(mcp_status(&b, &token).await, 200);
    // Both publish the one stored signing key.
    let kids = |app: &TestApp| {
        let url = app.url("/oauth/jwks");
        let http = app.http.clone();
        async move {
            let jwks: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            let mut kids: Vec<String> = jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| field(k, "kid"))
                .collect();
            kids.sort();
            kids
        }
    };
    assert_eq!(kids(&a).await, kids(&b).await);
    a.stop().await;
    b.stop().await;
}
