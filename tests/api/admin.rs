//! `mcp-oauth admin` against running binaries: each command changes the store, and the running
//! authorization server applies the change within a second, so the resource server refuses a
//! revoked grant's token, a disabled user cannot sign in, a deleted client is gone, a rotated
//! key is published and signs, and revoked sessions are signed out.

use crate::helpers::*;
use mcp_oauth_testkit as kit;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Runs `mcp-oauth admin --data-dir DIR ARGS`, with `stdin` as standard input; (exit code,
/// standard output, standard error).
fn admin(data_dir: &std::path::Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut all: Vec<&std::ffi::OsStr> = vec![
        "admin".as_ref(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
    ];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    let out = run_mcp_oauth(&all, stdin);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An admin command that must succeed; its JSON output.
fn admin_json(data_dir: &std::path::Path, args: &[&str], stdin: &str) -> Value {
    let mut with_json = vec!["--json"];
    with_json.extend_from_slice(args);
    let (code, out, err) = admin(data_dir, &with_json, stdin);
    assert_eq!(code, 0, "admin {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("admin {args:?}: {e}: {out}"))
}

/// Does a sign-in as `user` with `password`, in a new browser, get through to the redirect back
/// to the client?
async fn signs_in(issuer: &Issuer, mcp: &str, user: &str, password: &str) -> bool {
    signs_in_with(&kit::browser().unwrap(), issuer, mcp, user, password).await
}

/// The same in `browser`, which keeps the session.
async fn signs_in_with(
    browser: &reqwest::Client,
    issuer: &Issuer,
    mcp: &str,
    user: &str,
    password: &str,
) -> bool {
    let pkce = kit::Pkce::new();
    let url = kit::authorize_url(
        &issuer.url,
        &issuer.client_id,
        &pkce.challenge,
        &[
            ("redirect_uri", REDIRECT_URI),
            ("scope", "mcp.read"),
            ("resource", mcp),
            ("state", "s"),
        ],
    )
    .unwrap();
    kit::authorize(browser, &url, user, password)
        .await
        .is_ok_and(|back| back.contains("code="))
}

/// Polls `check` until it holds; how long that took. Panics after 5 s.
async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    check: impl Fn() -> F,
) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: not after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// The rows of a JSON table whose `key` is `value`.
fn rows_with<'a>(table: &'a Value, key: &str, value: &str) -> Vec<&'a Value> {
    table
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row[key] == value)
        .collect()
}

#[tokio::test]
async fn a_grant_revoked_by_admin_is_refused_by_the_running_servers() {
    let data = tempfile::tempdir().unwrap();
    let d = deploy(data.path(), &[], &[]).await;
    let http = d.issuer.http.clone();
    let tokens = d.issuer.tokens(&d.mcp).await;
    let (access, refresh) = (
        field(&tokens, "access_token"),
        field(&tokens, "refresh_token"),
    );
    assert_eq!(mcp_status_at(&http, &d.mcp, &access).await, 200);

    let grants = admin_json(data.path(), &["grants", "list", "--user", "alice"], "");
    let rows = rows_with(&grants, "client_id", &d.issuer.client_id);
    assert_eq!(rows.len(), 1, "{grants}");
    assert_eq!(rows[0]["refresh_families"], "1");
    assert_eq!(rows[0]["redirect_uris"], REDIRECT_URI);
    // The table for people names the same grant.
    let (code, table, _) = admin(data.path(), &["grants", "list"], "");
    assert_eq!(code, 0);
    assert!(
        table.starts_with("user") && table.contains(&d.issuer.client_id),
        "{table}"
    );

    // A code issued before the revocation and not redeemed yet.
    let (pending_code, pending_verifier) = d.issuer.code(&d.mcp).await;

    // Revoking needs to say whose grants.
    let (code, _, err) = admin(data.path(), &["grants", "revoke"], "");
    assert_eq!(code, 1);
    assert!(err.contains("--user"), "{err}");

    let revoked = admin_json(
        data.path(),
        &[
            "grants",
            "revoke",
            "--user",
            "alice",
            "--client",
            &d.issuer.client_id,
        ],
        "",
    );
    assert_eq!(revoked["consents"], 1);
    assert_eq!(revoked["refresh_families"], 1);
    let took = until_status(&http, &d.mcp, &access, 401).await;
    assert!(
        took < Duration::from_secs(1),
        "the revocation reached the RS in {took:?}"
    );
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", d.issuer.client_id.as_str()),
    ];
    let refused = d.issuer.post("/token", &form).await;
    assert_eq!(refused.status(), 400);
    let withdrawn = d.issuer.redeem(&pending_code, &pending_verifier).await;
    assert_eq!(withdrawn.status(), 400, "a code of the revoked grant");
    let grants = admin_json(data.path(), &["grants", "list", "--user", "alice"], "");
    assert_eq!(grants, serde_json::json!([]));
    // A new authorization asks for consent again (the consent is gone): still works.
    let again = d.issuer.tokens(&d.mcp).await;
    assert_eq!(
        mcp_status_at(&http, &d.mcp, &field(&again, "access_token")).await,
        200
    );
}

#[tokio::test]
async fn admin_manages_users_keys_sessions_and_clients_of_running_servers() {
    let data = tempfile::tempdir().unwrap();
    // Sign-ins are polled until a change takes effect: no lockout from the failed ones, and no
    // per-source limit on sign-ins and authorization requests (30 a minute by default: a loaded
    // machine's slower polls reached it, 429).
    let d = deploy(
        data.path(),
        &[
            "--login-failures-per-account",
            "1000",
            "--login-failures-per-source",
            "1000",
            "--rate-login",
            "0",
            "--rate-authorize",
            "0",
        ],
        &[],
    )
    .await;
    let (issuer, mcp, http) = (&d.issuer, d.mcp.as_str(), d.issuer.http.clone());
    let dir = data.path();

    // Users: the first user added replaces the demo users, as at a start.
    assert!(signs_in(issuer, mcp, "alice", "password123").await);
    let added = admin_json(
        dir,
        &["users", "add", "carol", "--display-name", "Carol"],
        "first-pass\n",
    );
    assert_eq!(added["username"], "carol");
    until("carol signs in", || {
        signs_in(issuer, mcp, "carol", "first-pass")
    })
    .await;
    assert!(!signs_in(issuer, mcp, "alice", "password123").await);
    let (code, _, err) = admin(dir, &["users", "add", "carol"], "again\n");
    assert_eq!(code, 1, "a user is added once");
    assert!(err.contains("exists"), "{err}");
    let (code, _, err) = admin(dir, &["users", "add", "dave"], "");
    assert_eq!(code, 1, "no password, no user");
    assert!(err.contains("password"), "{err}");
    for unsignable in [" dave", "da\u{200b}ve", &"d".repeat(129)] {
        let (code, _, err) = admin(dir, &["users", "add", unsignable], "a-password\n");
        assert_eq!(code, 1, "{unsignable:?} could never sign in");
        assert!(err.contains("visible characters"), "{err}");
    }

    admin_json(dir, &["users", "set-password", "carol"], "second-pass\n");
    until("the new password works", || {
        signs_in(issuer, mcp, "carol", "second-pass")
    })
    .await;
    assert!(!signs_in(issuer, mcp, "carol", "first-pass").await);

    // Disabling: no sign-in, and the user's tokens are refused.
    let (code, challenge) = issuer.code_as(mcp, "carol", "second-pass").await;
    let response = issuer.redeem(&code, &challenge).await;
    let carol_token = field(&response.json::<Value>().await.unwrap(), "access_token");
    assert_eq!(mcp_status_at(&http, mcp, &carol_token).await, 200);
    admin_json(dir, &["users", "disable", "carol"], "");
    let took = until_status(&http, mcp, &carol_token, 401).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(!signs_in(issuer, mcp, "carol", "second-pass").await);
    let users = admin_json(dir, &["users", "list"], "");
    assert_eq!(
        rows_with(&users, "username", "carol")[0]["status"],
        "disabled"
    );
    admin_json(dir, &["users", "enable", "carol"], "");
    until("carol signs in again", || {
        signs_in(issuer, mcp, "carol", "second-pass")
    })
    .await;

    // Sessions: a signed-in browser is signed out.
    let browser = kit::browser().unwrap();
    assert!(signs_in_with(&browser, issuer, mcp, "carol", "second-pass").await);
    let account = format!("{}/account", issuer.url);
    let status = || async {
        browser
            .get(&account)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status().await, 200, "signed in");
    admin_json(dir, &["sessions", "revoke", "carol"], "");
    until("the session ends", || async { status().await != 200 }).await;

    // Keys: a rotation is published at once and signs after its delay; tokens of both keys
    // pass at the resource server.
    let keys = admin_json(dir, &["keys", "list"], "");
    assert_eq!(rows_with(&keys, "status", "signing").len(), 1, "{keys}");
    let carol_tokens = || issuer.tokens_as(mcp, "carol", "second-pass");
    let old_token = field(&carol_tokens().await, "access_token");
    let rotated = admin_json(dir, &["keys", "rotate", "--activate-in", "1"], "");
    let kid = rotated["kid"].as_str().unwrap().to_string();
    let jwks_url = format!("{}/oauth/jwks", issuer.url);
    until("the new key is published", || async {
        let jwks: Value = http
            .get(&jwks_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid.as_str())
    })
    .await;
    let started = Instant::now();
    let new_token = loop {
        let token = field(&carol_tokens().await, "access_token");
        if kid_of(&token) == kid {
            break token;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the new key never signed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(mcp_status_at(&http, mcp, &new_token).await, 200);
    assert_eq!(mcp_status_at(&http, mcp, &old_token).await, 200);
    let keys = admin_json(dir, &["keys", "list"], "");
    assert_eq!(rows_with(&keys, "kid", &kid)[0]["status"], "signing");

    // Clients: listed, shown, deleted; a deleted client's tokens are refused and it is unknown.
    let clients = admin_json(dir, &["clients", "list"], "");
    assert_eq!(rows_with(&clients, "client_id", &issuer.client_id).len(), 1);
    let shown = admin_json(dir, &["clients", "show", &issuer.client_id], "");
    assert_eq!(shown["redirect_uris"], REDIRECT_URI);
    let deleted = admin_json(dir, &["clients", "delete", &issuer.client_id], "");
    assert_eq!(deleted["deleted"], issuer.client_id.as_str());
    let took = until_status(&http, mcp, &new_token, 401).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    until("the client is unknown", || async {
        !signs_in(issuer, mcp, "carol", "second-pass").await
    })
    .await;
    let (code, _, err) = admin(dir, &["clients", "show", &issuer.client_id], "");
    assert_eq!(code, 1);
    assert!(err.contains("no client"), "{err}");
    // Deleting again (a command that failed halfway, run again) says so, and tells the servers.
    let (code, _, err) = admin(dir, &["clients", "delete", &issuer.client_id], "");
    assert_eq!(code, 1);
    assert!(err.contains("told to forget it"), "{err}");
}

#[test]
fn admin_refuses_a_directory_without_a_store() {
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = admin(empty.path(), &["clients", "list"], "");
    assert_eq!(code, 1);
    assert!(err.contains("no store"), "{err}");
    assert!(
        std::fs::read_dir(empty.path()).unwrap().next().is_none(),
        "nothing is created"
    );
}
