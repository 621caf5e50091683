//! `/token` answers (TK-1, TK-2, CL-2): every error as OAuth 2.1 section 3.2.4 prescribes, JSON
//! with `Cache-Control: no-store`, descriptions that never echo input; code redemption atomic.

mod common;

use common::*;
use serde_json::{Value, json};

/// A fresh code for `client_id` (alice, approved, in a new browser) and its PKCE pair.
async fn fresh_code(app: &TestApp, _: &Browser, client_id: &str) -> (String, Pkce) {
    let pkce = Pkce::new();
    let browser = Browser::new();
    let callback = authorize_as(app, &browser, client_id, &pkce, "alice", "password123").await;
    (query_param(&callback, "code").unwrap(), pkce)
}

async fn post_token(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    app.http
        .post(format!("{}/token", app.issuer))
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn assert_error(
    response: reqwest::Response,
    status: u16,
    error: &str,
    context: &str,
) -> Value {
    assert_eq!(response.status(), status, "{context}");
    assert_eq!(response.headers()["cache-control"], "no-store", "{context}");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{context}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{context}: {body}");
    body
}

#[tokio::test]
async fn code_redemption_errors() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let other_client = register(&app).await;
    let browser = Browser::new();
    let mcp = app.mcp_url();

    let (code, pkce) = fresh_code(&app, &browser, &client_id).await;
    let wrong_verifier = "W".repeat(43);
    let base = |code: &str, verifier: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", REDIRECT.to_string()),
            ("client_id", client_id.clone()),
            ("code_verifier", verifier.to_string()),
            ("resource", mcp.clone()),
        ]
    };
    let send = |form: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_token(app, &pairs).await
        }
    };
    let with = |mut form: Vec<(&'static str, String)>, key: &'static str, value: &str| {
        form.retain(|(k, _)| *k != key);
        if !value.is_empty() {
            form.push((key, value.to_string()));
        }
        form
    };

    // A code of another client: invalid_grant, and the code is not burnt.
    let body = assert_error(
        send(with(
            base(&code, &pkce.verifier),
            "client_id",
            &other_client,
        ))
        .await,
        400,
        "invalid_grant",
        "other client",
    )
    .await;
    assert!(!body["error_description"].as_str().unwrap().contains(&code));
    assert_error(
        send(with(base(&code, &pkce.verifier), "code_verifier", "short")).await,
        400,
        "invalid_request",
        "malformed verifier",
    )
    .await;
    assert_error(
        send(with(base(&code, &pkce.verifier), "code_verifier", "")).await,
        400,
        "invalid_request",
        "no verifier",
    )
    .await;
    assert_error(
        send(with(base(&code, &pkce.verifier), "code", "")).await,
        400,
        "invalid_request",
        "no code",
    )
    .await;
    assert_error(
        send(with(base(&code, &pkce.verifier), "grant_type", "")).await,
        400,
        "invalid_request",
        "no grant type",
    )
    .await;
    assert_error(
        send(with(base(&code, &pkce.verifier), "grant_type", "password")).await,
        400,
        "unsupported_grant_type",
        "password grant",
    )
    .await;
    assert_error(
        send(with(base(&code, &pkce.verifier), "resource", "/relative")).await,
        400,
        "invalid_target",
        "relative resource",
    )
    .await;
    assert_error(
        send(with(base(&code, &pkce.verifier), "client_id", "nobody")).await,
        401,
        "invalid_client",
        "unknown client",
    )
    .await;
    assert_error(
        send(with(base(&code, &pkce.verifier), "client_id", "")).await,
        400,
        "invalid_request",
        "no client",
    )
    .await;
    // Still redeemable after all of the above (none consumed it).
    let ok = send(base(&code, &pkce.verifier)).await;
    assert_eq!(ok.status(), 200);
    // Replay: invalid_grant.
    assert_error(
        send(base(&code, &pkce.verifier)).await,
        400,
        "invalid_grant",
        "replay",
    )
    .await;

    // Each of these consumes the code.
    let (code, pkce) = fresh_code(&app, &browser, &client_id).await;
    assert_error(
        send(base(&code, &wrong_verifier)).await,
        400,
        "invalid_grant",
        "wrong verifier",
    )
    .await;
    assert_error(
        send(base(&code, &pkce.verifier)).await,
        400,
        "invalid_grant",
        "burnt by wrong verifier",
    )
    .await;
    let (code, pkce) = fresh_code(&app, &browser, &client_id).await;
    assert_error(
        send(with(
            base(&code, &pkce.verifier),
            "redirect_uri",
            "http://127.0.0.1:53682/other",
        ))
        .await,
        400,
        "invalid_grant",
        "other redirect",
    )
    .await;
    let (code, pkce) = fresh_code(&app, &browser, &client_id).await;
    assert_error(
        send(with(
            base(&code, &pkce.verifier),
            "resource",
            "http://other.example/mcp",
        ))
        .await,
        400,
        "invalid_target",
        "other resource",
    )
    .await;
    // Without `resource` the code's own resource is used.
    let (code, pkce) = fresh_code(&app, &browser, &client_id).await;
    assert_eq!(
        send(with(base(&code, &pkce.verifier), "resource", ""))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn request_shape_errors() {
    let app = spawn_app().await;
    let get = app
        .http
        .get(format!("{}/token", app.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let json_body = app
        .http
        .post(format!("{}/token", app.issuer))
        .json(&json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap();
    assert_error(json_body, 400, "invalid_request", "json body").await;
    let repeated = app
        .http
        .post(format!("{}/token", app.issuer))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=authorization_code&grant_type=authorization_code&client_id=x")
        .send()
        .await
        .unwrap();
    assert_error(repeated, 400, "invalid_request", "repeated").await;
}

#[tokio::test]
async fn concurrent_redemptions_exactly_one_wins() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    let (code, pkce) = fresh_code(&app, &browser, &client_id).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (app_http, issuer) = (app.http.clone(), app.issuer.clone());
        let form = vec![
            ("grant_type".to_string(), "authorization_code".to_string()),
            ("code".to_string(), code.clone()),
            ("redirect_uri".to_string(), REDIRECT.to_string()),
            ("client_id".to_string(), client_id.clone()),
            ("code_verifier".to_string(), pkce.verifier.clone()),
        ];
        tasks.push(tokio::spawn(async move {
            app_http
                .post(format!("{issuer}/token"))
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
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
    let client_id = registered["client_id"].as_str().unwrap().to_string();
    let secret = registered["client_secret"]
        .as_str()
        .expect("a secret")
        .to_string();
    assert_eq!(registered["client_secret_expires_at"], 0);
    let browser = Browser::new();

    let form = |code: &str, verifier: &str| {
        vec![
            ("grant_type".to_string(), "authorization_code".to_string()),
            ("code".to_string(), code.to_string()),
            ("redirect_uri".to_string(), REDIRECT.to_string()),
            ("code_verifier".to_string(), verifier.to_string()),
        ]
    };
    let token_url = format!("{}/token", app.issuer);

    // client_secret_basic.
    let (code, pkce) = fresh_code(&app, &browser, &client_id).await;
    let ok = app
        .http
        .post(&token_url)
        .basic_auth(&client_id, Some(&secret))
        .form(&form(&code, &pkce.verifier))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // client_secret_post.
    let (code, pkce) = fresh_code(&app, &browser, &client_id).await;
    let mut post = form(&code, &pkce.verifier);
    post.push(("client_id".into(), client_id.clone()));
    post.push(("client_secret".into(), secret.clone()));
    assert_eq!(
        app.http
            .post(&token_url)
            .form(&post)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let (code, pkce) = fresh_code(&app, &browser, &client_id).await;
    // Both methods at once.
    let mut both = form(&code, &pkce.verifier);
    both.push(("client_secret".into(), secret.clone()));
    let response = app
        .http
        .post(&token_url)
        .basic_auth(&client_id, Some(&secret))
        .form(&both)
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "invalid_request", "two methods").await;
    // Wrong secret with Basic: 401 and a Basic challenge.
    let response = app
        .http
        .post(&token_url)
        .basic_auth(&client_id, Some("wrong"))
        .form(&form(&code, &pkce.verifier))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_error(response, 401, "invalid_client", "wrong secret").await;
    // No secret at all.
    let mut none = form(&code, &pkce.verifier);
    none.push(("client_id".into(), client_id.clone()));
    let response = app.http.post(&token_url).form(&none).send().await.unwrap();
    assert_error(response, 401, "invalid_client", "missing secret").await;
    // Malformed Basic values: 400/401, never 500.
    for value in [
        &b"Basic"[..],
        b"Basic !!!",
        b"Basic bm9jb2xvbg==",
        b"Basic \xff\xfe",
        b"Digest abc",
        b"Basic //8=",
    ] {
        let response = app
            .http
            .post(&token_url)
            .header(
                "authorization",
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            )
            .form(&form(&code, &pkce.verifier))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(status == 400 || status == 401, "{value:?} -> {status}");
    }
    // The code survived all of that.
    let ok = app
        .http
        .post(&token_url)
        .basic_auth(&client_id, Some(&secret))
        .form(&form(&code, &pkce.verifier))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // A public client presenting a secret is refused.
    let public_id = register(&app).await;
    let (code, pkce) = fresh_code(&app, &browser, &public_id).await;
    let response = app
        .http
        .post(&token_url)
        .basic_auth(&public_id, Some("anything"))
        .form(&form(&code, &pkce.verifier))
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        401,
        "invalid_client",
        "public client with a secret",
    )
    .await;
}

#[tokio::test]
async fn a_replayed_code_revokes_its_token_but_a_stranger_revokes_nothing() {
    let app = spawn_app().await;
    let registered = register_with(
        &app,
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    let client_id = registered["client_id"].as_str().unwrap().to_string();
    let secret = registered["client_secret"].as_str().unwrap().to_string();
    let other_client = register(&app).await;
    let browser = Browser::new();
    let redeem_as = |client: String, secret: Option<String>, code: String, verifier: String| {
        let app = &app;
        async move {
            let mut form = vec![
                ("grant_type", "authorization_code".to_string()),
                ("code", code),
                ("redirect_uri", REDIRECT.to_string()),
                ("client_id", client),
                ("code_verifier", verifier),
            ];
            if let Some(secret) = secret {
                form.push(("client_secret", secret));
            }
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_token(app, &pairs).await
        }
    };

    let (code, pkce) = fresh_code(&app, &browser, &client_id).await;
    let first: Value = redeem_as(
        client_id.clone(),
        Some(secret.clone()),
        code.clone(),
        pkce.verifier.clone(),
    )
    .await
    .json()
    .await
    .unwrap();
    let token = first["access_token"].as_str().unwrap().to_string();
    let active = introspect_as_client(&app, &client_id, &secret, &token).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["sub"], "alice");
    assert_eq!(active["client_id"], client_id);

    // A replay with a wrong verifier, or by another client, revokes nothing.
    let wrong = redeem_as(
        client_id.clone(),
        Some(secret.clone()),
        code.clone(),
        "W".repeat(43),
    )
    .await;
    assert_error(wrong, 400, "invalid_grant", "replay, wrong verifier").await;
    let stranger = redeem_as(
        other_client.clone(),
        None,
        code.clone(),
        pkce.verifier.clone(),
    )
    .await;
    assert_error(stranger, 400, "invalid_grant", "replay, other client").await;
    assert_eq!(
        introspect_as_client(&app, &client_id, &secret, &token).await["active"],
        true
    );

    // The client's own replay (the code leaked): invalid_grant, and the token is revoked.
    let replay = redeem_as(client_id.clone(), Some(secret.clone()), code, pkce.verifier).await;
    assert_error(replay, 400, "invalid_grant", "replay").await;
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
        .http
        .post(format!("{}/introspect", app.issuer))
        .form(&[
            ("token", token.as_str()),
            ("client_id", other_client.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_error(public, 401, "invalid_client", "public client introspecting").await;
}
