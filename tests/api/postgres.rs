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

/// Two servers on the database, one after the other, with `extra` settings.
async fn two_servers(database: &ScratchDatabase, extra: &[&str]) -> (TestApp, TestApp) {
    let settings = [&on(database)[..], extra].concat();
    (
        spawn_app_with(&settings).await,
        spawn_app_with(&settings).await,
    )
}

/// Whether `check` holds within five seconds, asked every 100 ms.
async fn eventually(check: impl AsyncFn() -> bool) -> bool {
    for _ in 0..50 {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
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
    assert_eq!(jwks_kids(&a).await, jwks_kids(&b).await);
    a.stop().await;
    b.stop().await;
}

/// Two servers starting together on an empty database make one signing key between them, and
/// publish the same key set.
#[tokio::test]
async fn servers_starting_together_on_an_empty_database_make_one_key() {
    let database = ScratchDatabase::create().await;
    let settings = on(&database);
    let (a, b) = tokio::join!(spawn_app_with(&settings), spawn_app_with(&settings));
    let a_keys = jwks_kids(&a).await;
    assert_eq!(a_keys.len(), 1, "{a_keys:?}");
    assert_eq!(a_keys, jwks_kids(&b).await);
    // A token from one is signed by the key the other publishes.
    let client_id = register(&a).await;
    let token = access_token_as(&a, &client_id, "alice", "password123").await;
    assert_eq!(vec![kid_of(&token)], jwks_kids(&b).await);
    a.stop().await;
    b.stop().await;
}

/// With rotation due, each server tries to make the next key; one does, and the other publishes
/// that one: the two key sets stay the same, and no key is made twice.
#[tokio::test]
async fn servers_on_one_database_rotate_to_one_next_key() {
    let database = ScratchDatabase::create().await;
    let rotation = [
        "--key-rotation-interval",
        "3",
        "--key-publication-delay",
        "2",
    ];
    let (a, b) = two_servers(&database, &rotation).await;
    // The next key is made a second after the first one signs; wait until both publish two.
    let mut sets = (Vec::new(), Vec::new());
    for _ in 0..100 {
        sets = (jwks_kids(&a).await, jwks_kids(&b).await);
        if sets.0.len() >= 2 && sets.1.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        sets.0.len(),
        2,
        "one next key, not one per server: {sets:?}"
    );
    assert_eq!(sets.0, sets.1);
    a.stop().await;
    b.stop().await;
}

/// A refresh-token family made at one server is refreshed at the other, then again at the first
/// (whose copy is stale by then), and a retired token presented at either ends the family for
/// both: each server judges a token as the database has its family.
#[tokio::test]
async fn refresh_tokens_are_judged_as_the_database_has_them_at_every_server() {
    let database = ScratchDatabase::create().await;
    let (a, b) = two_servers(&database, &[]).await;
    let client_id = register(&a).await;
    let first = field(&tokens_for_client(&a, &client_id).await, "refresh_token");
    let refreshed = async |app: &TestApp, token: String| {
        let response = refresh(app, &client_id, &token, &[]).await;
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap())
    };
    let (status, body) = refreshed(&b, first.clone()).await;
    assert_eq!(status, 200, "made at A, refreshed at B: {body}");
    let second = field(&body, "refresh_token");
    let (status, body) = refreshed(&a, second.clone()).await;
    assert_eq!(status, 200, "rotated at B, refreshed at A: {body}");
    let third = field(&body, "refresh_token");
    // Both at once at the two servers: one rotates, the other answers the same successor.
    let (one, two) = tokio::join!(refreshed(&a, third.clone()), refreshed(&b, third.clone()));
    assert_eq!((one.0, two.0), (200, 200), "{one:?} {two:?}");
    assert_eq!(
        field(&one.1, "refresh_token"),
        field(&two.1, "refresh_token")
    );
    let fourth = field(&one.1, "refresh_token");
    // A retired token at B ends the family; its newest token is then refused at A.
    let (status, _) = refreshed(&b, first).await;
    assert_eq!(status, 400, "reuse");
    let (status, _) = refreshed(&a, fourth).await;
    assert_eq!(status, 400, "the family ended for every server");

    // A family made at A, revoked at B (RFC 7009), is refused at A.
    let token = field(&tokens_for_client(&a, &client_id).await, "refresh_token");
    let revoke = b
        .post("/revoke")
        .form(&[("token", token.as_str()), ("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
    let (status, _) = refreshed(&a, token).await;
    assert_eq!(status, 400, "revoked at the other server");
    a.stop().await;
    b.stop().await;
}

/// A user revoking a client on the account page of one server ends the grant at every server:
/// the other server's copy of the consent and the refresh-token family it made.
#[tokio::test]
async fn a_grant_revoked_at_one_server_ends_at_the_other() {
    let database = ScratchDatabase::create().await;
    let (a, b) = two_servers(&database, &[]).await;
    let client_id = register(&a).await;
    let tokens = tokens_for_client(&a, &client_id).await;
    let refresh_token = field(&tokens, "refresh_token");

    // alice signs in at B, whose account page lists what she approved at A, and revokes it.
    let browser = Browser::new();
    assert_eq!(
        browser.redirect_from(&b.url("/account")).await,
        b.url("/login")
    );
    let signed_in = login(&browser, &b.url("/login"), "alice", "password123").await;
    assert_eq!(location(&signed_in).unwrap(), b.url("/account"));
    let html = browser.text(&b.url("/account")).await;
    assert_eq!(hidden_field(&html, "client_id"), client_id, "{html}");
    let revoked = browser
        .post_form(
            &form_action(&html),
            &[
                ("csrf_token", hidden_field(&html, "csrf_token").as_str()),
                ("client_id", client_id.as_str()),
            ],
        )
        .await;
    assert_eq!(revoked.status(), 303);

    // The family A made is gone from the database: refused at both.
    for app in [&a, &b] {
        let response = refresh(app, &client_id, &refresh_token, &[]).await;
        assert_eq!(response.status(), 400);
    }
    // A forgets its copy of the consent within a second or so: alice is asked again there.
    let asked = eventually(async || {
        let browser = Browser::new();
        let start = browser
            .get(&authorize_url(&a, &client_id, &Pkce::new(), &[]))
            .await;
        let after = login(&browser, &location(&start).unwrap(), "alice", "password123").await;
        location(&after).unwrap().contains("/consent?request=")
    })
    .await;
    assert!(asked, "the consent page again at A");
    a.stop().await;
    b.stop().await;
}

/// A code issued by one server is redeemed at the other; two servers redeeming one code at once
/// give one token; and a replay at the other server revokes what the first redemption produced.
#[tokio::test]
async fn codes_are_redeemed_once_at_any_server() {
    let database = ScratchDatabase::create().await;
    let (a, b) = two_servers(&database, &[]).await;
    let client_id = register(&a).await;

    // Each test server has URLs of its own (replicas share theirs): every redemption names A's
    // resource, wherever it is sent.
    let redeem_at = async |app: &TestApp, code: &str, verifier: &str| {
        redemption(&a, &client_id, code, verifier).send(app).await
    };
    // Issued at A, redeemed at B.
    let (code, pkce) = code_for(&a, &client_id).await;
    let tokens = ok_json(redeem_at(&b, &code, &pkce.verifier).await, "at B").await;
    let refresh_token = field(&tokens, "refresh_token");
    // Replayed at A by its client: refused, and the refresh-token family B started ends.
    let replay = redeem_at(&a, &code, &pkce.verifier).await;
    assert_eq!(replay.status(), 400);
    assert_eq!(
        refresh(&b, &client_id, &refresh_token, &[]).await.status(),
        400
    );

    // Both servers at once, ten times: one token each time.
    for round in 0..10 {
        let (code, pkce) = code_for(&a, &client_id).await;
        let (one, two) = tokio::join!(
            redeem_at(&a, &code, &pkce.verifier),
            redeem_at(&b, &code, &pkce.verifier)
        );
        let statuses = [one.status().as_u16(), two.status().as_u16()];
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
    }
    a.stop().await;
    b.stop().await;
}

/// An access token revoked at one server is listed in the other's revocation feed within a
/// second or so, so the resource servers following either refuse it.
#[tokio::test]
async fn a_revocation_at_one_server_reaches_the_others_feed() {
    let database = ScratchDatabase::create().await;
    let (a, b) = two_servers(&database, &[]).await;
    let client_id = register(&a).await;
    let token = access_token_as(&a, &client_id, "alice", "password123").await;
    let jti = field(&claims_of(&token), "jti");
    let revoke = a
        .post("/revoke")
        .form(&[("token", token.as_str()), ("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
    let listed = |feed: &Value| {
        feed["revoked"]
            .as_array()
            .is_some_and(|r| r.iter().any(|t| t["jti"] == jti.as_str()))
    };
    let seen = eventually(async || listed(&b.get_json(&b.url("/oauth/revocations")).await)).await;
    assert!(seen, "B's feed lists the token A revoked");
    a.stop().await;
    b.stop().await;
}

/// An account's failed logins count at every server: three failures spread over two servers lock
/// the account at both, even with the right password.
#[tokio::test]
async fn a_lockout_holds_at_every_server() {
    let database = ScratchDatabase::create().await;
    let (a, b) = two_servers(&database, &["--login-failures-per-account", "3"]).await;
    let client_id = register(&a).await;
    let attempt = async |app: &TestApp, password: &str| {
        let browser = Browser::new();
        let login_url = browser.start_authorization(app, &client_id).await;
        login(&browser, &login_url, "alice", password)
            .await
            .status()
            .as_u16()
    };
    assert_eq!(attempt(&a, "wrong").await, 401);
    assert_eq!(attempt(&b, "wrong").await, 401);
    assert_eq!(attempt(&a, "wrong").await, 401);
    assert_eq!(attempt(&b, "password123").await, 429, "locked at B too");
    assert_eq!(attempt(&a, "password123").await, 429, "and at A");
    a.stop().await;
    b.stop().await;
}

/// On PostgreSQL a change's number is taken at insert and rows commit in any order: a change that
/// becomes visible below the cursor, after a later one was applied, is applied all the same.
#[tokio::test]
async fn a_change_committed_late_below_the_cursor_is_applied() {
    use sqlx::Connection;
    let database = ScratchDatabase::create().await;
    let app = spawn_app_with(&on(&database)).await;
    let mut db = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600) as i64;
    let revoked_elsewhere = async |db: &mut sqlx::PgConnection, id: i64, jti: &str| {
        sqlx::query("INSERT INTO revocations (jti, expires_at) VALUES ($1, $2)")
            .bind(jti)
            .bind(until)
            .execute(&mut *db)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO changes (id, kind, subject, at) VALUES ($1, 'access_token_revoked', $2, 0)",
        )
        .bind(id)
        .bind(jti)
        .execute(&mut *db)
        .await
        .unwrap();
    };
    let listed = async |jti: &str| {
        eventually(async || {
            let feed = app.get_json(&app.url("/oauth/revocations")).await;
            feed["revoked"]
                .as_array()
                .is_some_and(|r| r.iter().any(|t| t["jti"] == jti))
        })
        .await
    };
    revoked_elsewhere(&mut db, 2_000, "the-later-one").await;
    assert!(listed("the-later-one").await);
    revoked_elsewhere(&mut db, 1_990, "committed-late").await;
    assert!(
        listed("committed-late").await,
        "applied though below the cursor"
    );
    app.stop().await;
}

/// A server's copy of a family has the deadline it saw; the family's use at another server
/// pushes the stored deadline back. The first server's timer must not end the family then.
#[tokio::test]
async fn a_family_kept_alive_at_one_server_outlives_the_others_timer() {
    let database = ScratchDatabase::create().await;
    let (a, b) = two_servers(&database, &["--refresh-idle-ttl-seconds", "3"]).await;
    let client_id = register(&a).await;
    let mut token = field(&tokens_for_client(&a, &client_id).await, "refresh_token");
    // Refreshed at B every 1.5 s, past A's copy's deadline (3 s).
    for step in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
        let response = refresh(&b, &client_id, &token, &[]).await;
        assert_eq!(response.status(), 200, "step {step}");
        token = field(&response.json().await.unwrap(), "refresh_token");
    }
    a.stop().await;
    b.stop().await;
}

/// A server that minted access tokens from a family remembers them when it reads the family
/// again after a rotation elsewhere, and revokes them when the family ends for reuse.
#[tokio::test]
async fn a_family_read_again_keeps_the_access_tokens_this_server_minted() {
    let database = ScratchDatabase::create().await;
    let (a, b) = two_servers(&database, &[]).await;
    let client_id = register(&a).await;
    let issued = tokens_for_client(&a, &client_id).await;
    let (first_access, t0) = (
        field(&issued, "access_token"),
        field(&issued, "refresh_token"),
    );
    assert_eq!(mcp_status(&a, &first_access).await, 200);
    let t1 = field(
        &refresh(&b, &client_id, &t0, &[])
            .await
            .json()
            .await
            .unwrap(),
        "refresh_token",
    );
    // A reads the family again (rotated at B), then sees the retired token: reuse.
    assert_eq!(refresh(&a, &client_id, &t1, &[]).await.status(), 200);
    assert_eq!(refresh(&a, &client_id, &t0, &[]).await.status(), 400);
    // The access token A minted first is revoked, and A's resource server refuses it.
    let refused = eventually(async || mcp_status(&a, &first_access).await == 401).await;
    assert!(refused, "the first access token is revoked");
    a.stop().await;
    b.stop().await;
}

/// While the database cannot be reached, what needs it is refused with 503 and `Retry-After`,
/// and readiness says so; when it is back, the server recovers by itself.
#[tokio::test]
async fn a_database_outage_gives_503_then_recovers_without_a_restart() {
    let database = ScratchDatabase::create().await;
    let fault = Fault::start(&database.url).await;
    let app = spawn_app_with(&[
        "--database-url",
        &fault.url,
        "--key-encryption-secret",
        SECRET,
        "--database-timeout",
        "1",
    ])
    .await;
    let body =
        serde_json::json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"});
    assert_eq!(post_register(&app, &body).await.status(), 201);

    fault.cut();
    let refused = post_register(&app, &body).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );

    fault.restore();
    let recovered = eventually(async || post_register(&app, &body).await.status() == 201).await;
    assert!(recovered, "registrations succeed again");
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

/// `url` as the other server would be asked it: its path and query on `app`'s origin (what a
/// balancer in front of the two does).
fn at(app: &TestApp, url: &str) -> String {
    let parsed = url::Url::parse(url).unwrap();
    let query = parsed.query().map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}{}{query}", app.issuer, parsed.path())
}

/// A browser's sign-in goes on at whichever server each page request reaches: `/authorize` at A,
/// the login page and the sign-in at B, consent at A, the code redeemed at B.
#[tokio::test]
async fn a_sign_in_crosses_servers_page_by_page() {
    let database = ScratchDatabase::create().await;
    let (a, b) = two_servers(&database, &[]).await;
    let client_id = register(&a).await;
    let (browser, pkce) = (Browser::new(), Pkce::new());
    let login_url = browser
        .redirect_from(&authorize_url(&a, &client_id, &pkce, &[]))
        .await;
    let signed_in = login(&browser, &at(&b, &login_url), "alice", "password123").await;
    assert_eq!(
        signed_in.status(),
        302,
        "B knows A's session and its request"
    );
    let consent_url = location(&signed_in).unwrap();
    assert!(consent_url.contains("/consent?request="), "{consent_url}");
    let approved = decide(&browser, &at(&a, &consent_url), "approve").await;
    let callback = location(&approved).unwrap();
    let code = query_param(&callback, "code").expect("a code");
    let tokens = redemption(&a, &client_id, &code, &pkce.verifier)
        .send(&b)
        .await;
    assert_eq!(tokens.status(), 200);
    // The request was taken out once: the same consent again, at B, finds nothing.
    let again = browser.get(&at(&b, &consent_url)).await;
    assert_eq!(again.status(), 400);
    // Signed in at both: a new authorization at B skips the login page and the consent page.
    let next = browser
        .redirect_from(&at(&b, &authorize_url(&a, &client_id, &Pkce::new(), &[])))
        .await;
    assert!(next.starts_with(REDIRECT), "{next}");
    a.stop().await;
    b.stop().await;
}

/// One browser's step held up in the database does not hold up another browser: the sessions and
/// the codes wait for the database in tasks of their own, not in their actors' mailboxes.
#[tokio::test]
async fn a_browser_held_up_in_the_database_does_not_hold_up_another() {
    use sqlx::Connection;
    let database = ScratchDatabase::create().await;
    let app = spawn_app_with(&on(&database)).await;
    let client_id = register(&app).await;
    // Browser A signs in and reaches the consent page: its request is parked in the database.
    let (a, pkce) = (Browser::new(), Pkce::new());
    let login_url = a
        .redirect_from(&authorize_url(&app, &client_id, &pkce, &[]))
        .await;
    let signed_in = login(&a, &at(&app, &login_url), "alice", "password123").await;
    let consent_url = at(&app, &location(&signed_in).unwrap());
    let request_id = query_param(&consent_url, "request").expect("a parked request");
    // The database holds that row: taking the request out waits for this transaction.
    let mut holder = sqlx::PgConnection::connect(&database.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT 1 FROM parked_requests WHERE request_id = $1 FOR UPDATE")
        .bind(&request_id)
        .execute(&mut holder)
        .await
        .unwrap();
    let approving = tokio::spawn(async move { decide(&a, &consent_url, "approve").await.status() });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Meanwhile browser B is sent to the login page at once.
    let b = Browser::new();
    let to_login = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        b.redirect_from(&authorize_url(&app, &client_id, &Pkce::new(), &[])),
    )
    .await
    .expect("B is answered while A waits for the database");
    assert!(to_login.contains("/login"), "{to_login}");
    assert!(!approving.is_finished(), "A still waits for the database");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    assert_eq!(
        approving.await.unwrap(),
        302,
        "A goes on once the row is free"
    );
    app.stop().await;
}
