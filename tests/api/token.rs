//! `/token` answers (TK-1, TK-2, CL-2): every error as OAuth 2.1 section 3.2.4 prescribes, JSON
//! with `Cache-Control: no-store`, descriptions that never echo input; code redemption atomic.

use crate::helpers::*;
use serde_json::{Value, json};

#[tokio::test]
async fn code_redemption_errors() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let other_client = register(&app).await;
    let (code, pkce) = code_for(&app, &client_id).await;
    let valid = redemption(&app, &client_id, &code, &pkce.verifier);

    // None of these consumes the code. (case, field changed or left out (""), status, error)
    #[rustfmt::skip]
    let cases = [
        ("TK-2 other client", "client_id", other_client.as_str(), 400, "invalid_grant"),
        ("TK-1 malformed verifier", "code_verifier", "short", 400, "invalid_request"),
        ("TK-1 no verifier", "code_verifier", "", 400, "invalid_request"),
        ("TK-1 no code", "code", "", 400, "invalid_request"),
        ("TK-1 no grant type", "grant_type", "", 400, "invalid_request"),
        ("TK-1 password grant", "grant_type", "password", 400, "unsupported_grant_type"),
        ("AZ-4 relative resource", "resource", "/relative", 400, "invalid_target"),
        ("CL-2 unknown client", "client_id", "nobody", 401, "invalid_client"),
        ("TK-1 no client", "client_id", "", 400, "invalid_request"),
    ];
    for (case, name, value, status, error) in cases {
        let response = valid.clone().set_or_remove(name, value).send(&app).await;
        let body = assert_oauth_error(response, status, error, case).await;
        let description = field(&body, "error_description");
        assert!(!description.contains(&code), "{case}: {description}");
    }
    // Still redeemable after all of the above (none consumed it).
    let ok = valid.send(&app).await;
    assert_eq!(ok.status(), 200);
    // Replay: invalid_grant.
    assert_oauth_error(valid.send(&app).await, 400, "invalid_grant", "replay").await;

    // Each of these consumes the code.
    let (code, pkce) = code_for(&app, &client_id).await;
    let valid = redemption(&app, &client_id, &code, &pkce.verifier);
    let wrong_verifier = valid.clone().set("code_verifier", &"W".repeat(43));
    let response = wrong_verifier.send(&app).await;
    assert_oauth_error(response, 400, "invalid_grant", "wrong verifier").await;
    let response = valid.send(&app).await;
    assert_oauth_error(response, 400, "invalid_grant", "burnt by wrong verifier").await;
    #[rustfmt::skip]
    let cases = [
        ("TK-2 other redirect", "redirect_uri", "http://127.0.0.1:53682/other", "invalid_grant"),
        ("TK-2 no redirect_uri, the request named one", "redirect_uri", "", "invalid_request"),
        ("TK-2 other resource", "resource", "http://other.example/mcp", "invalid_target"),
    ];
    for (case, name, value, error) in cases {
        let (code, pkce) = code_for(&app, &client_id).await;
        let request =
            redemption(&app, &client_id, &code, &pkce.verifier).set_or_remove(name, value);
        assert_oauth_error(request.send(&app).await, 400, error, case).await;
        let again = redemption(&app, &client_id, &code, &pkce.verifier);
        assert_oauth_error(again.send(&app).await, 400, "invalid_grant", case).await;
    }
    // Without `resource` the code's own resource is used.
    let (code, pkce) = code_for(&app, &client_id).await;
    let request = redemption(&app, &client_id, &code, &pkce.verifier).remove("resource");
    assert_eq!(request.send(&app).await.status(), 200);
}

/// RFC 6749 section 4.1.3: `redirect_uri` is required at `/token` exactly when the authorization
/// request named it. A client with one registered redirect URI may leave it out of both.
#[tokio::test]
async fn redirect_uri_is_required_only_when_the_request_named_it() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let pkce = Pkce::new();
    let mut url = url::Url::parse(&authorize_url(&app, &client_id, &pkce, &[])).unwrap();
    let unnamed: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .filter(|(name, _)| name != "redirect_uri")
        .collect();
    url.query_pairs_mut().clear().extend_pairs(unnamed);
    let callback = Browser::new()
        .authorize(url.as_str(), "alice", "password123")
        .await;
    let code = query_param(&callback, "code").unwrap();
    let request = redemption(&app, &client_id, &code, &pkce.verifier).remove("redirect_uri");
    assert_eq!(request.send(&app).await.status(), 200, "unnamed in both");
}

#[tokio::test]
async fn request_shape_errors() {
    let app = spawn_app().await;
    let get = app.get("/token").send().await.unwrap();
    assert_eq!(get.status(), 405);
    let json_body = app
        .post("/token")
        .json(&json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(json_body, 400, "invalid_request", "json body").await;
    let repeated = app
        .post("/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=authorization_code&grant_type=authorization_code&client_id=x")
        .send()
        .await
        .unwrap();
    assert_oauth_error(repeated, 400, "invalid_request", "repeated").await;
    // One resource per token (RFC 8707 section 2): several are `invalid_target`.
    let two_resources = app
        .post("/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=authorization_code&code=c&resource=http%3A%2F%2Fa.example&resource=http%3A%2F%2Fb.example")
        .send()
        .await
        .unwrap();
    assert_oauth_error(two_resources, 400, "invalid_target", "two resources").await;
}

#[tokio::test]
async fn concurrent_redemptions_exactly_one_wins() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let (code, pkce) = code_for(&app, &client_id).await;
    let request = TokenRequest::code(&code, &pkce.verifier).set("client_id", &client_id);
    let responses = futures::future::join_all((0..8).map(|_| request.send(&app))).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        7,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn confidential_clients() {
    let app = spawn_app().await;
    let registered = register_with(
        &app,
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_basic"}),
    )
    .await;
    let client_id = field(&registered, "client_id");
    let secret = field(&registered, "client_secret");
    assert_eq!(registered["client_secret_expires_at"], 0);

    // client_secret_basic.
    let (code, pkce) = code_for(&app, &client_id).await;
    let ok = TokenRequest::code(&code, &pkce.verifier)
        .basic(&client_id, &secret)
        .send(&app)
        .await;
    assert_eq!(ok.status(), 200);

    // client_secret_post.
    let (code, pkce) = code_for(&app, &client_id).await;
    let post = TokenRequest::code(&code, &pkce.verifier)
        .set("client_id", &client_id)
        .set("client_secret", &secret);
    assert_eq!(post.send(&app).await.status(), 200);

    let (code, pkce) = code_for(&app, &client_id).await;
    let form = TokenRequest::code(&code, &pkce.verifier);
    // Both methods at once.
    let both = form.clone().set("client_secret", &secret);
    let response = both.basic(&client_id, &secret).send(&app).await;
    assert_oauth_error(response, 400, "invalid_request", "two methods").await;
    // Wrong secret with Basic: 401 and a Basic challenge.
    let response = form.clone().basic(&client_id, "wrong").send(&app).await;
    assert!(www(&response).starts_with("Basic"));
    assert_oauth_error(response, 401, "invalid_client", "wrong secret").await;
    // No secret at all.
    let response = form.clone().set("client_id", &client_id).send(&app).await;
    assert_oauth_error(response, 401, "invalid_client", "missing secret").await;
    // Malformed Basic values: 400/401, never 500.
    for value in [
        &b"Basic"[..],
        b"Basic !!!",
        b"Basic bm9jb2xvbg==",
        b"Basic \xff\xfe",
        b"Digest abc",
        b"Basic //8=",
    ] {
        let response = form.clone().authorization(value).send(&app).await;
        let status = response.status().as_u16();
        assert!(status == 400 || status == 401, "{value:?} -> {status}");
    }
    // The code survived all of that.
    let ok = form.basic(&client_id, &secret).send(&app).await;
    assert_eq!(ok.status(), 200);

    // A public client presenting a secret is refused.
    let public_id = register(&app).await;
    let (code, pkce) = code_for(&app, &public_id).await;
    let response = TokenRequest::code(&code, &pkce.verifier)
        .basic(&public_id, "anything")
        .send(&app)
        .await;
    let context = "public client with a secret";
    assert_oauth_error(response, 401, "invalid_client", context).await;
}

#[tokio::test]
async fn a_replayed_code_revokes_its_token_but_a_stranger_revokes_nothing() {
    let app = spawn_app().await;
    let (client_id, secret) = register_confidential(&app, "client_secret_post").await;
    let other_client = register(&app).await;
    let as_client = |client: &str, secret: Option<&str>, code: &str, verifier: &str| {
        let request = TokenRequest::code(code, verifier).set("client_id", client);
        request.set_or_remove("client_secret", secret.unwrap_or_default())
    };

    let (code, pkce) = code_for(&app, &client_id).await;
    let first: Value = as_client(&client_id, Some(&secret), &code, &pkce.verifier)
        .send(&app)
        .await
        .json()
        .await
        .unwrap();
    let token = field(&first, "access_token");
    let active = introspect_as_client(&app, &client_id, &secret, &token).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["sub"], "alice");
    assert_eq!(active["client_id"], client_id);

    // A replay with a wrong verifier, or by another client, revokes nothing.
    let wrong = as_client(&client_id, Some(&secret), &code, &"W".repeat(43));
    let response = wrong.send(&app).await;
    assert_oauth_error(response, 400, "invalid_grant", "replay, wrong verifier").await;
    let stranger = as_client(&other_client, None, &code, &pkce.verifier);
    let response = stranger.send(&app).await;
    assert_oauth_error(response, 400, "invalid_grant", "replay, other client").await;
    assert_eq!(
        introspect_as_client(&app, &client_id, &secret, &token).await["active"],
        true
    );

    // The client's own replay (the code leaked): invalid_grant, and the token is revoked.
    let replay = as_client(&client_id, Some(&secret), &code, &pkce.verifier);
    assert_oauth_error(replay.send(&app).await, 400, "invalid_grant", "replay").await;
    assert_eq!(
        introspect_as_client(&app, &client_id, &secret, &token).await["active"],
        false
    );

    // Garbage and public clients.
    assert_eq!(
        introspect_as_client(&app, &client_id, &secret, "not-a-token").await["active"],
        false
    );
    let public = app
        .post("/introspect")
        .form(&[
            ("token", token.as_str()),
            ("client_id", other_client.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(public, 401, "invalid_client", "public client introspecting").await;
}

/// `--max-codes` bounds the codes waiting to be redeemed. A redeemed code is still remembered
/// until its deadline (to catch a replay), but it no longer counts: were it to, a server busy
/// for one code lifetime would refuse every authorization.
async fn redeemed_codes_leave_the_bound(settings: &[&str]) {
    let settings = [settings, &["--max-codes", "2"]].concat();
    let app = spawn_app_with(&settings).await;
    let client_id = register(&app).await;
    for round in 0..4 {
        let (code, pkce) = code_for(&app, &client_id).await;
        let response = redeem(&app, &client_id, &code, &pkce.verifier).await;
        assert_eq!(response.status(), 200, "round {round}");
    }
    // Two codes not redeemed fill it; the third authorization is told to try later.
    let _outstanding = [
        code_for(&app, &client_id).await,
        code_for(&app, &client_id).await,
    ];
    let browser = Browser::new();
    let callback = authorize_as(
        &app,
        &browser,
        &client_id,
        &Pkce::new(),
        "alice",
        "password123",
    )
    .await;
    assert_eq!(
        query_param(&callback, "error").as_deref(),
        Some("temporarily_unavailable"),
        "{callback}"
    );
}

#[tokio::test]
async fn redeemed_codes_do_not_count_toward_the_bound_on_outstanding_codes() {
    redeemed_codes_leave_the_bound(&[]).await;
}

/// The same on a store other servers share, where a code is redeemed in the database.
#[tokio::test]
async fn redeemed_codes_do_not_count_toward_the_bound_on_postgres_either() {
    let database = mcp_oauth_testkit::postgres::ScratchDatabase::create().await;
    let secret = "the key-encryption secret of the codes' bound";
    redeemed_codes_leave_the_bound(&[
        "--database-url",
        &database.url,
        "--key-encryption-secret",
        secret,
    ])
    .await;
}
