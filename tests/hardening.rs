//! Floods and hostile clients: per-source rate limits, failed-login throttling (also against
//! parallel guesses), slow clients cut off, CSRF/Origin on the forms, double submissions, CORS
//! scope, and a JWKS refetch storm that does not happen.

mod common;

use axum::routing::get;
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn registrations_are_rate_limited_per_source() {
    let app = spawn_app_with(&["--rate-register", "5"]).await;
    for _ in 0..5 {
        register(&app).await;
    }
    let response = app
        .http
        .post(format!("{}/register", app.issuer))
        .json(&json!({"redirect_uris": [REDIRECT]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    // Count again precisely with a fresh app: exactly the burst passes.
    let app = spawn_app_with(&["--rate-register", "5"]).await;
    let mut created = 0;
    let mut limited = 0;
    for _ in 0..8 {
        let status = app
            .http
            .post(format!("{}/register", app.issuer))
            .json(&json!({"redirect_uris": [REDIRECT]}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        match status {
            201 => created += 1,
            429 => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((created, limited), (5, 3));
}

#[tokio::test]
async fn token_requests_are_rate_limited_per_source() {
    let app = spawn_app_with(&["--rate-token", "3"]).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = app
            .http
            .post(format!("{}/token", app.issuer))
            .form(&[("grant_type", "authorization_code"), ("client_id", "x")])
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 401, 429, 429]);
}

/// Posts a login with the page's CSRF token; returns the status.
async fn try_login(
    app: &TestApp,
    browser: &Browser,
    login_url: &str,
    user: &str,
    password: &str,
) -> u16 {
    let html = browser.get(login_url).await.text().await.unwrap();
    let csrf = hidden_field(&html, "csrf_token");
    let request = hidden_field(&html, "request");
    post_login(browser, &app.issuer, &csrf, &request, user, password)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn failed_logins_lock_the_account_even_with_the_right_password() {
    let app = spawn_app_with(&["--login-failures-per-account", "3"]).await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    let start = browser
        .get(&authorize_url(&app, &client_id, &Pkce::new(), &[]))
        .await;
    let login_url = location(&start).unwrap();
    for _ in 0..3 {
        assert_eq!(
            try_login(&app, &browser, &login_url, "alice", "wrong").await,
            401
        );
    }
    let html = browser.get(&login_url).await.text().await.unwrap();
    let csrf = hidden_field(&html, "csrf_token");
    let request = hidden_field(&html, "request");
    let locked = post_login(
        &browser,
        &app.issuer,
        &csrf,
        &request,
        "alice",
        "password123",
    )
    .await;
    assert_eq!(locked.status(), 429);
    let retry: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 800 && retry <= 900, "{retry}");
    // Another account from the same place is not locked.
    assert_eq!(
        try_login(&app, &browser, &login_url, "bob", "hunter2").await,
        302
    );
}

#[tokio::test]
async fn parallel_guesses_cannot_outrun_the_lockout() {
    let app = spawn_app_with(&["--login-failures-per-account", "5", "--rate-login", "0"]).await;
    let client_id = register(&app).await;
    let browser = Arc::new(Browser::new());
    let start = browser
        .get(&authorize_url(&app, &client_id, &Pkce::new(), &[]))
        .await;
    let html = browser
        .get(&location(&start).unwrap())
        .await
        .text()
        .await
        .unwrap();
    let csrf = hidden_field(&html, "csrf_token");
    let request = hidden_field(&html, "request");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (browser, issuer, csrf, request) = (
            browser.clone(),
            app.issuer.clone(),
            csrf.clone(),
            request.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let guess = format!("guess-{i}");
            browser
                .post_form(
                    &format!("{issuer}/login"),
                    &[
                        ("csrf_token", csrf.as_str()),
                        ("request", &request),
                        ("username", "alice"),
                        ("password", &guess),
                    ],
                )
                .await
                .status()
                .as_u16()
        }));
    }
    let mut checked = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            401 => checked += 1,
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        checked, 5,
        "only the allowed number of passwords were checked"
    );
    assert_eq!(refused, 15);
}

#[tokio::test]
async fn origin_null_is_a_same_origin_form_post() {
    // Our pages send `Referrer-Policy: no-referrer`, so browsers send `Origin: null`.
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    let start = browser
        .get(&authorize_url(&app, &client_id, &Pkce::new(), &[]))
        .await;
    let html = browser
        .get(&location(&start).unwrap())
        .await
        .text()
        .await
        .unwrap();
    let response = browser
        .http
        .post(format!("{}/login", app.issuer))
        .header("origin", "null")
        .form(&[
            ("csrf_token", hidden_field(&html, "csrf_token").as_str()),
            ("request", &hidden_field(&html, "request")),
            ("username", "alice"),
            ("password", "password123"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    // The pages' CSP has no form-action, which browsers would apply to the redirect to the client.
    let csp = start.headers()["content-security-policy"].to_str().unwrap();
    assert!(!csp.contains("form-action"), "{csp}");
}

#[tokio::test]
async fn a_double_clicked_sign_in_lands_on_the_same_consent() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Arc::new(Browser::new());
    let start = browser
        .get(&authorize_url(&app, &client_id, &Pkce::new(), &[]))
        .await;
    let html = browser
        .get(&location(&start).unwrap())
        .await
        .text()
        .await
        .unwrap();
    let form = [
        ("csrf_token", hidden_field(&html, "csrf_token")),
        ("request", hidden_field(&html, "request")),
        ("username", "alice".to_string()),
        ("password", "password123".to_string()),
    ];
    let url = format!("{}/login", app.issuer);
    let post = |browser: Arc<Browser>| {
        let (url, form) = (url.clone(), form.clone());
        async move { browser.http.post(&url).form(&form).send().await.unwrap() }
    };
    let (a, b) = tokio::join!(post(browser.clone()), post(browser.clone()));
    assert_eq!(a.status(), 302);
    assert_eq!(b.status(), 302);
    let (la, lb) = (location(&a).unwrap(), location(&b).unwrap());
    assert!(
        la.contains("/consent?request=") && lb.contains("/consent?request="),
        "{la} {lb}"
    );
    // The cookie of the last answer works for the consent page.
    assert_eq!(browser.get(&lb).await.status(), 200);
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let app = spawn_app_with(&["--auth-read-timeout", "1"]).await;
    let addr = app.issuer.trim_start_matches("http://").to_string();
    // Headers that never finish.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /token HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server closes a connection whose headers never arrive"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // A body that never arrives.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf))
        .await
        .expect("an answer, not a hang")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    let status: u16 = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((400..500).contains(&status), "{answer}");
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            app.issuer
        ))
        .header("x-padding", "a".repeat(64 * 1024))
        .send()
        .await;
    // An error means the connection was closed: also refused.
    if let Ok(r) = response {
        assert!(r.status() == 431 || r.status() == 400, "{}", r.status());
    }
    // The server is still fine.
    let ok = app
        .http
        .get(format!("{}/oauth/jwks", app.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn cors_never_on_pages_even_under_an_issuer_path() {
    let app = spawn_app_at("/auth", &[]).await;
    let md_url = format!(
        "{}/.well-known/oauth-authorization-server/auth",
        app.issuer.trim_end_matches("/auth")
    );
    let response = app.http.get(&md_url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{md_url}");
    let md: Value = response.json().await.unwrap();
    assert_eq!(md["issuer"], app.issuer);
    assert_eq!(
        md["authorization_endpoint"],
        format!("{}/authorize", app.issuer)
    );
    for path in ["/authorize", "/login", "/consent"] {
        let response = app
            .http
            .get(format!("{}{path}", app.issuer))
            .header("origin", "http://localhost:6274")
            .send()
            .await
            .unwrap();
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{path}"
        );
    }
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/token", app.issuer))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    // And the flow works under the path.
    let token = token_for(&app, "alice", "password123").await;
    assert!(!open_session(&app, &token).await.is_empty());
}

#[tokio::test]
async fn random_key_ids_cause_no_jwks_fetch_storm() {
    // A JWKS endpoint that counts its fetches, serving the AS's real keys.
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let app = spawn_app_with(&["--jwks-endpoint", &jwks_url, "--jwks-cooldown", "60"]).await;
    let real: Value = app
        .http
        .get(format!("{}/oauth/jwks", app.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let counter = hits.clone();
    let router = axum::Router::new().route(
        "/jwks",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let real = real.clone();
            async move { axum::Json(real) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let claims = json!({"iss": app.issuer, "sub": "alice", "aud": app.mcp_url(), "exp": jsonwebtoken::get_current_timestamp() + 300, "iat": jsonwebtoken::get_current_timestamp(), "jti": "j", "client_id": "c", "scope": "mcp.read mcp.write"});
    let mut tasks = Vec::new();
    for i in 0..100 {
        let token = app
            .key
            .sign_with_header(
                &json!({"alg": "RS256", "typ": "at+jwt", "kid": format!("random-{i}")}),
                &claims,
            )
            .unwrap();
        let (http, url) = (app.http.clone(), app.mcp_url());
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .json(&initialize_body())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "one fetch for a hundred unknown key ids"
    );
    // Within the cooldown even the real key id is not refetched: tokens with it are refused
    // until the cooldown ends. (The first fetch already had it, so this one passes.)
    let token = app
        .key
        .sign_with_header(
            &json!({"alg": "RS256", "typ": "at+jwt", "kid": app.key.kid}),
            &claims,
        )
        .unwrap();
    let ok = mcp_post(&app, Some(&token), None, initialize_body()).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn other_authorization_schemes_get_the_plain_challenge() {
    let app = spawn_app().await;
    for value in ["Basic dXNlcjpwdw==", "DPoP abc", "Token"] {
        let response = app
            .http
            .post(app.mcp_url())
            .header("authorization", value)
            .json(&initialize_body())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{value}");
        let www = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(!www.contains("error="), "{value}: {www}");
    }
}

#[tokio::test]
async fn repeated_client_id_is_a_page_even_after_another_repetition() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    authorize_as(
        &app,
        &browser,
        &client_id,
        &Pkce::new(),
        "alice",
        "password123",
    )
    .await;
    let url = format!(
        "{}&state=again&client_id=other",
        authorize_url(&app, &client_id, &Pkce::new(), &[])
    );
    let response = browser.get(&url).await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn https_issuers_get_host_prefixed_secure_cookies() {
    let app = spawn_app_full(
        "https",
        "",
        &["--session-secret", "a-long-random-secret-for-tests-only"],
    )
    .await;
    // `app.issuer` is the plain-http address the servers listen on; the configured issuer is https.
    let client_id = register(&app).await;
    let response = app
        .http
        .get(authorize_url(&app, &client_id, &Pkce::new(), &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("__Host-mcp_oauth_session="), "{cookie}");
    assert!(
        cookie.contains("; Secure") && cookie.contains("Path=/") && !cookie.contains("Domain"),
        "{cookie}"
    );
    assert!(location(&response).unwrap().starts_with("https://"));
}

#[tokio::test]
async fn a_forged_session_cookie_is_ignored() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let forged = "mcp_oauth_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.bm90LWEtdGFn";
    let response = app
        .http
        .get(authorize_url(&app, &client_id, &Pkce::new(), &[]))
        .header("cookie", forged)
        .send()
        .await
        .unwrap();
    // Treated as no session: a fresh anonymous one is opened and the login page follows.
    assert_eq!(response.status(), 302);
    assert!(response.headers().get("set-cookie").is_some());
    assert!(location(&response).unwrap().contains("/login?request="));
}

#[tokio::test]
async fn a_browser_with_many_abandoned_requests_is_not_locked_out() {
    // A client that retries leaves requests parked at the login page; the browser keeps working
    // (its oldest parked requests make room) instead of getting "busy" for the requests' lifetime.
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    let mut last = None;
    for _ in 0..40 {
        let response = browser
            .get(&authorize_url(&app, &client_id, &Pkce::new(), &[]))
            .await;
        assert_eq!(response.status(), 302);
        last = location(&response);
    }
    // The newest one still completes.
    let after = login(&browser, &last.unwrap(), "alice", "password123").await;
    assert_eq!(after.status(), 302);
    assert!(location(&after).unwrap().contains("/consent?request="));
}
