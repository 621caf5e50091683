//! Refresh tokens (OAuth 2.1 section 4.3, TK-3) over HTTP: issued only to clients that registered
//! the grant, rotated on every use, reuse detection that ends the family, the grace window for
//! concurrent refreshes, binding to client and resource, scope narrowing, expiry, consent
//! revocation on the account page, and a replayed code ending its family.

use crate::helpers::*;
use serde_json::{Value, json};

/// Registers a public client with the default grant types (which include `refresh_token`).
async fn register_default(app: &TestApp) -> String {
    let body = register_with(
        app,
        json!({"client_name": "Refreshing Client", "redirect_uris": [REDIRECT]}),
    )
    .await;
    field(&body, "client_id")
}

/// A client registered with the default grants, and the refresh token of a first flow.
async fn refreshing_client(app: &TestApp) -> (String, String) {
    let client = register_default(app).await;
    let tokens = tokens_for_client(app, &client).await;
    (client, field(&tokens, "refresh_token"))
}

async fn mcp_accepts(app: &TestApp, access_token: &str) -> bool {
    mcp_status(app, access_token).await == 200
}

#[tokio::test]
async fn refresh_tokens_only_for_clients_that_registered_the_grant() {
    let app = spawn_app().await;
    let metadata: Value = as_metadata(&app).await;
    assert_eq!(
        metadata["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );

    // Registered without the grant: no refresh token, and the grant is refused.
    let body = register_with(
        &app,
        json!({"redirect_uris": [REDIRECT], "grant_types": ["authorization_code"]}),
    )
    .await;
    let code_only = field(&body, "client_id");
    let tokens = tokens_for_client(&app, &code_only).await;
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    let refused = refresh(&app, &code_only, "anything", &[]).await;
    assert_oauth_error(refused, 400, "unauthorized_client", "grant not registered").await;

    // Registered with the defaults: a refresh token, opaque and high-entropy.
    let client = register_default(&app).await;
    let tokens = tokens_for_client(&app, &client).await;
    let refresh_token = field(&tokens, "refresh_token");
    assert_eq!(refresh_token.len(), 43, "256 bits, base64url");
    assert!(
        refresh_token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(tokens["token_type"], "Bearer");
}

#[tokio::test]
async fn every_refresh_rotates_the_token() {
    let app = spawn_app().await;
    let client = register_default(&app).await;
    let tokens = tokens_for_client(&app, &client).await;
    let t0 = field(&tokens, "refresh_token");
    let first = ok_json(refresh(&app, &client, &t0, &[]).await, "first refresh").await;
    let t1 = field(&first, "refresh_token");
    assert_ne!(t1, t0);
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["scope"], "mcp.read mcp.write");
    assert!(first["expires_in"].as_u64().unwrap() > 0);
    let access = field(&first, "access_token");
    assert_ne!(access, field(&tokens, "access_token"));
    assert!(mcp_accepts(&app, &access).await, "refreshed token works");
    let second = ok_json(refresh(&app, &client, &t1, &[]).await, "second refresh").await;
    assert_ne!(field(&second, "refresh_token"), t1);
    // Garbage is invalid_grant.
    let garbage = refresh(&app, &client, "not-a-refresh-token", &[]).await;
    assert_oauth_error(garbage, 400, "invalid_grant", "unknown token").await;
    let missing = TokenRequest::refresh(&client, "").remove("refresh_token");
    let missing = missing.send(&app).await;
    assert_oauth_error(missing, 400, "invalid_request", "no refresh_token").await;
}

/// TK-3: a rotated token presented again ends the family, the newest token included, and the
/// access tokens minted from it.
#[tokio::test]
async fn reuse_of_a_rotated_token_revokes_the_whole_family() {
    let mut flags = vec!["--refresh-grace-seconds", "0"];
    flags.extend_from_slice(INTROSPECT_FLAGS);
    let app = spawn_app_with(&flags).await;
    let (client, t0) = refreshing_client(&app).await;
    let first = ok_json(refresh(&app, &client, &t0, &[]).await, "t0").await;
    let t1 = field(&first, "refresh_token");
    let second = ok_json(refresh(&app, &client, &t1, &[]).await, "t1").await;
    let t2 = field(&second, "refresh_token");
    let newest_access = field(&second, "access_token");
    assert!(mcp_accepts(&app, &newest_access).await);

    let reused = refresh(&app, &client, &t1, &[]).await;
    assert_oauth_error(reused, 400, "invalid_grant", "reuse of t1").await;
    let newest = refresh(&app, &client, &t2, &[]).await;
    assert_oauth_error(newest, 400, "invalid_grant", "t2 died with its family").await;
    assert_inactive(&app, &t2).await;
    assert_inactive(&app, &newest_access).await;
    assert!(
        !mcp_accepts(&app, &newest_access).await,
        "the RS introspects and refuses it"
    );
}

/// The interop trap of parallel refreshes: two concurrent refreshes of one token both succeed,
/// with the same new refresh token, which keeps working.
#[tokio::test]
async fn concurrent_refreshes_within_the_grace_window_both_succeed() {
    let app = spawn_app_with(&["--refresh-grace-seconds", "60"]).await;
    let (client, t0) = refreshing_client(&app).await;
    let (a, b) = tokio::join!(
        refresh(&app, &client, &t0, &[]),
        refresh(&app, &client, &t0, &[])
    );
    let a = ok_json(a, "first of two").await;
    let b = ok_json(b, "second of two").await;
    assert_eq!(field(&a, "refresh_token"), field(&b, "refresh_token"));
    assert_ne!(field(&a, "access_token"), field(&b, "access_token"));
    assert!(mcp_accepts(&app, &field(&a, "access_token")).await);
    assert!(mcp_accepts(&app, &field(&b, "access_token")).await);
    // The shared successor rotates normally.
    let t1 = field(&a, "refresh_token");
    let next = ok_json(refresh(&app, &client, &t1, &[]).await, "successor").await;
    // Now t0 is two rotations old: reuse, even inside the window.
    let old = refresh(&app, &client, &t0, &[]).await;
    assert_oauth_error(old, 400, "invalid_grant", "two generations back").await;
    let after = refresh(&app, &client, &field(&next, "refresh_token"), &[]).await;
    assert_oauth_error(after, 400, "invalid_grant", "family ended").await;
}

#[tokio::test]
async fn reuse_after_the_grace_window_kills_the_family() {
    let app = spawn_app_with(&["--refresh-grace-seconds", "1"]).await;
    let (client, t0) = refreshing_client(&app).await;
    let t1 = field(
        &ok_json(refresh(&app, &client, &t0, &[]).await, "t0").await,
        "refresh_token",
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let late = refresh(&app, &client, &t0, &[]).await;
    assert_oauth_error(late, 400, "invalid_grant", "reuse after the window").await;
    let newest = refresh(&app, &client, &t1, &[]).await;
    assert_oauth_error(newest, 400, "invalid_grant", "family ended").await;
}

#[tokio::test]
async fn refresh_tokens_are_bound_to_their_client_and_resource() {
    let app = spawn_app().await;
    let (client, t0) = refreshing_client(&app).await;
    let other = register_default(&app).await;

    let stolen = refresh(&app, &other, &t0, &[]).await;
    assert_oauth_error(stolen, 400, "invalid_grant", "another client").await;
    for (case, resource) in [
        ("another resource", app.rs.as_str()),
        ("unknown resource", "https://evil.example/mcp"),
        ("fragment", "http://x/#f"),
    ] {
        let response = refresh(&app, &client, &t0, &[("resource", resource)]).await;
        assert_oauth_error(response, 400, "invalid_target", case).await;
    }

    // None of that consumed the token; the matching resource is accepted.
    let ok = ok_json(
        refresh(&app, &client, &t0, &[("resource", &app.mcp_url())]).await,
        "same resource",
    )
    .await;
    let access = field(&ok, "access_token");
    assert!(mcp_accepts(&app, &access).await);
}

#[tokio::test]
async fn scope_can_only_narrow() {
    let app = spawn_app().await;
    let (client, t0) = refreshing_client(&app).await;

    for (case, scope) in [
        ("wider scope", "mcp.read mcp.write mcp.admin"),
        ("malformed scope", "mcp.read \"x"),
    ] {
        let response = refresh(&app, &client, &t0, &[("scope", scope)]).await;
        assert_oauth_error(response, 400, "invalid_scope", case).await;
    }

    let narrow = ok_json(
        refresh(&app, &client, &t0, &[("scope", "mcp.read")]).await,
        "narrower scope",
    )
    .await;
    assert_eq!(narrow["scope"], "mcp.read");
    // The access token carries the narrower scope: the RS refuses it a tool that needs
    // `mcp.write`.
    let save = tool_call(1, "save_note", json!({"text": "x"}));
    let response = mcp_post(&app, Some(&field(&narrow, "access_token")), None, save).await;
    assert_eq!(response.status(), 403);
    // The refresh token keeps the scope originally granted.
    let full = ok_json(
        refresh(&app, &client, &field(&narrow, "refresh_token"), &[]).await,
        "full scope again",
    )
    .await;
    assert_eq!(full["scope"], "mcp.read mcp.write");
}

#[tokio::test]
async fn an_idle_family_expires() {
    let app = spawn_app_with(&["--refresh-idle-ttl-seconds", "1"]).await;
    let (client, t0) = refreshing_client(&app).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let expired = refresh(&app, &client, &t0, &[]).await;
    assert_oauth_error(expired, 400, "invalid_grant", "idle expiry").await;
}

#[tokio::test]
async fn a_family_expires_at_its_absolute_deadline() {
    let app = spawn_app_with(&[
        "--refresh-idle-ttl-seconds",
        "1",
        "--refresh-absolute-ttl-seconds",
        "1",
    ])
    .await;
    let (client, t0) = refreshing_client(&app).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let expired = refresh(&app, &client, &t0, &[]).await;
    assert_oauth_error(expired, 400, "invalid_grant", "absolute expiry").await;
    // An idle lifetime longer than the absolute one is a configuration error (see `cli`).
}

/// AZ-6: a replayed code revokes the access token and the refresh-token family it produced.
#[tokio::test]
async fn a_replayed_code_kills_its_refresh_token() {
    let app = spawn_app_with(INTROSPECT_FLAGS).await;
    let client = register_default(&app).await;
    let (code, pkce) = code_for(&app, &client).await;
    let tokens = ok_json(redeem(&app, &client, &code, &pkce.verifier).await, "redeem").await;
    let t0 = field(&tokens, "refresh_token");
    // The client refreshed once before the replay: the family's newest tokens die too.
    let refreshed = ok_json(refresh(&app, &client, &t0, &[]).await, "refresh").await;
    let replay = redeem(&app, &client, &code, &pkce.verifier).await;
    assert_oauth_error(replay, 400, "invalid_grant", "replay").await;
    let dead = refresh(&app, &client, &field(&refreshed, "refresh_token"), &[]).await;
    assert_oauth_error(dead, 400, "invalid_grant", "family of a replayed code").await;
    assert_inactive(&app, &field(&refreshed, "access_token")).await;
}

/// Revoking a client on the account page forgets the consent and ends the user's refresh
/// tokens for that client.
#[tokio::test]
async fn revoking_consent_on_the_account_page_kills_refresh_tokens() {
    let app = spawn_app().await;
    let client = register_default(&app).await;
    let pkce = Pkce::new();
    let browser = Browser::new();
    let callback = authorize_as(&app, &browser, &client, &pkce, "alice", "password123").await;
    let code = query_param(&callback, "code").unwrap();
    let tokens = ok_json(redeem(&app, &client, &code, &pkce.verifier).await, "redeem").await;
    let t0 = field(&tokens, "refresh_token");
    let account = app.url("/account");

    // Not signed in: sent to sign in (the account page is reachable directly).
    let anonymous = Browser::new().get(&account).await;
    assert_eq!(anonymous.status(), 302);
    assert_eq!(location(&anonymous).unwrap(), app.url("/login"));

    let page = browser.get(&account).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains("Refreshing Client"), "{html}");
    assert!(html.contains("mcp.read mcp.write"), "{html}");
    let csrf = hidden_field(&html, "csrf_token");
    assert_eq!(hidden_field(&html, "client_id"), client);
    let action = form_action(&html);

    // Without the CSRF token, or from a foreign origin: refused, nothing revoked.
    let forged = browser
        .post_form(&action, &[("csrf_token", "wrong"), ("client_id", &client)])
        .await;
    assert_eq!(forged.status(), 403);
    let foreign = browser
        .http
        .post(&action)
        .header("origin", "https://evil.example")
        .form(&[("csrf_token", csrf.as_str()), ("client_id", &client)])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let still = ok_json(refresh(&app, &client, &t0, &[]).await, "still valid").await;
    let t1 = field(&still, "refresh_token");

    let revoked = browser
        .post_form(&action, &[("csrf_token", &csrf), ("client_id", &client)])
        .await;
    assert_eq!(revoked.status(), 303);
    assert!(location(&revoked).unwrap().contains("/account"));
    let dead = refresh(&app, &client, &t1, &[]).await;
    assert_oauth_error(dead, 400, "invalid_grant", "consent revoked").await;
    let html = browser.text(&account).await;
    assert!(!html.contains("Refreshing Client"), "{html}");

    // The consent is forgotten: the next authorization asks again.
    let again = browser
        .get(&authorize_url(&app, &client, &Pkce::new(), &[]))
        .await;
    assert_eq!(again.status(), 302);
    let next = location(&again).unwrap();
    assert!(next.contains("/consent?request="), "{next}");
}

/// The account page is reachable directly: `/account` sends a browser that is not signed in to
/// `/login`, whose sign-in (with no authorization request) leads back to the account page, which
/// lists what the user approved from any browser.
#[tokio::test]
async fn the_account_page_is_reachable_directly() {
    let app = spawn_app().await;
    let client = register_default(&app).await;
    authorize_as(
        &app,
        &Browser::new(),
        &client,
        &Pkce::new(),
        "alice",
        "password123",
    )
    .await;

    let browser = Browser::new();
    let to_login = browser.get(&app.url("/account")).await;
    assert_eq!(location(&to_login).unwrap(), app.url("/login"));
    let page = browser.get(&app.url("/login")).await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=900")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("your account"), "{html}");
    assert_eq!(hidden_field(&html, "request"), "");
    let csrf = hidden_field(&html, "csrf_token");
    let post = |password: &'static str, csrf: String| {
        let browser = &browser;
        let action = form_action(&html);
        async move {
            let form = [
                ("csrf_token", csrf.as_str()),
                ("request", ""),
                ("username", "alice"),
                ("password", password),
            ];
            browser.post_form(&action, &form).await
        }
    };
    assert_eq!(post("password123", "forged".into()).await.status(), 403);
    let wrong = post("wrong", csrf.clone()).await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("incorrect"));
    let signed_in = post("password123", csrf).await;
    assert_eq!(signed_in.status(), 302);
    assert_eq!(location(&signed_in).unwrap(), app.url("/account"));
    assert!(
        signed_in.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=28800")
    );
    let account = browser.text(&app.url("/account")).await;
    assert!(account.contains("Refreshing Client"), "{account}");
    // Signed in, /login goes straight to the account page.
    assert_eq!(
        browser.redirect_from(&app.url("/login")).await,
        app.url("/account")
    );
}
