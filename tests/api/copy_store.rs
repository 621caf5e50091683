//! `mcp-oauth admin copy-store`: one server on the embedded SQLite store becomes servers on
//! PostgreSQL. After the copy, on the same issuer, everything a user had carries on: the access
//! token issued before (same signing key, sealed again under the new secret), the refresh token
//! (rotation continues, reuse of a retired one is still detected), the client, the remembered
//! consent, and a revocation. A target that is not empty is refused.

use crate::helpers::*;
use mcp_oauth_testkit::postgres::ScratchDatabase;
use std::ffi::OsStr;

const TARGET_SECRET: &str = "the PostgreSQL servers' key-encryption secret";

fn copy_store(data_dir: &std::path::Path, to: &str) -> std::process::Output {
    let args: Vec<&OsStr> = vec![
        OsStr::new("admin"),
        OsStr::new("--data-dir"),
        data_dir.as_os_str(),
        OsStr::new("copy-store"),
        OsStr::new("--to"),
        OsStr::new(to),
        OsStr::new("--to-key-encryption-secret"),
        OsStr::new(TARGET_SECRET),
    ];
    run_mcp_oauth(&args, "")
}

#[tokio::test]
async fn a_sqlite_store_copied_into_postgres_carries_every_grant_on() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), INTROSPECT_FLAGS).await;
    let client_id = register(&app).await;
    let issued = tokens_for_client(&app, &client_id).await;
    let retired = field(&issued, "refresh_token");
    let rotated = ok_json(refresh(&app, &client_id, &retired, &[]).await, "refresh").await;
    let revoked = tokens_for_client(&app, &client_id).await;
    let revoke = revoke_token(&app, &client_id, &field(&revoked, "access_token"), None).await;
    assert_eq!(revoke.status(), 200);
    let before = field(&rotated, "access_token");

    // (Trust authentication ignores the password; the output must not show it.)
    let database = ScratchDatabase::create().await;
    let with_password = database
        .url
        .replacen("postgres@", "postgres:a-password-never-shown@", 1);
    let copied = copy_store(dir.path(), &with_password);
    assert!(copied.status.success(), "{copied:?}");
    let said = String::from_utf8_lossy(&copied.stdout);
    assert!(said.contains("1 clients"), "{said}");
    assert!(said.contains("2 refresh-token families"), "{said}");
    assert!(!said.contains("a-password-never-shown"), "{said}");
    let into_itself = copy_store(dir.path(), &format!("sqlite://{}", dir.path().display()));
    assert!(!into_itself.status.success());
    assert!(
        String::from_utf8_lossy(&into_itself.stderr).contains("the target is the source"),
        "{into_itself:?}"
    );
    let again = copy_store(dir.path(), &database.url);
    assert!(
        !again.status.success(),
        "a second copy into the same database"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{again:?}"
    );

    let on_postgres = [
        &[
            "--database-url",
            &database.url,
            "--key-encryption-secret",
            TARGET_SECRET,
        ][..],
        INTROSPECT_FLAGS,
    ]
    .concat();
    let app = app.restart_with(&on_postgres).await;
    assert_eq!(mcp_status(&app, &before).await, 200, "the same signing key");
    assert_eq!(kid_of(&before), jwks_kids(&app).await[0]);
    assert_eq!(
        mcp_status(&app, &field(&revoked, "access_token")).await,
        401,
        "the revocation was copied"
    );
    let next = refresh(&app, &client_id, &field(&rotated, "refresh_token"), &[]).await;
    let next = ok_json(next, "the family rotates on").await;
    assert_eq!(mcp_status(&app, &field(&next, "access_token")).await, 200);
    // The token retired before the copy is still reuse: the family ends.
    assert_eq!(refresh(&app, &client_id, &retired, &[]).await.status(), 400);
    assert_eq!(
        refresh(&app, &client_id, &field(&next, "refresh_token"), &[])
            .await
            .status(),
        400
    );
    // The client is known and alice's consent remembered: no consent page.
    let pkce = Pkce::new();
    let browser = Browser::new();
    let start = browser
        .get(&authorize_url(&app, &client_id, &pkce, &[]))
        .await;
    assert_eq!(start.status(), 302);
    let after = login(&browser, &location(&start).unwrap(), "alice", "password123").await;
    assert!(location(&after).unwrap().starts_with(REDIRECT));
    app.stop().await;
}
