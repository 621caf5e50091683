//! Floods and hostile clients: per-source rate limits, failed-login throttling (also against
//! parallel guesses), slow clients cut off, CSRF/Origin on the forms, double submissions, CORS
//! scope, and a JWKS refetch storm that does not happen.

use crate::helpers::*;
use axum::routing::get;
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
    let body = json!({"redirect_uris": [REDIRECT]});
    let response = post_register(&app, &body).await;
    let retry = retry_after(&response);
    assert!((1..=60).contains(&retry), "{retry}");
    assert_oauth_error(response, 429, "temporarily_unavailable", "the sixth").await;
    // Count again precisely with a fresh app: exactly the burst passes.
    let app = spawn_app_with(&["--rate-register", "5"]).await;
    let mut created = 0;
    let mut limited = 0;
    for _ in 0..8 {
        match post_register(&app, &body).await.status().as_u16() {
            201 => created += 1,
            429 => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((created, limited), (5, 3));
}

/// Behind a trusted proxy (`--trusted-proxies`) a source is the forwarded client address, the
/// rightmost `X-Forwarded-For` hop that is not a trusted proxy; from any other peer the header is
/// ignored, so a client cannot pick its own bucket by sending one.
#[tokio::test]
async fn per_source_limits_trust_x_forwarded_for_only_from_trusted_proxies() {
    let body = json!({"redirect_uris": [REDIRECT]});
    let (a, b) = ("203.0.113.7", "198.51.100.9");
    let spoofed = format!("{b}, {a}");
    // (case, trusted proxies, X-Forwarded-For of successive registrations, their statuses)
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [u16]);
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("trusted: one bucket per client", &["--trusted-proxies", "127.0.0.1"], &[a, a, b], &[201, 429, 201]),
        ("trusted: a client-written prefix does not pick the bucket", &["--trusted-proxies", "127.0.0.0/8"], &[a, &spoofed], &[201, 429]),
        ("not trusted: the header is ignored", &[], &[a, b], &[201, 429]),
        ("another proxy trusted: the header is ignored", &["--trusted-proxies", "10.0.0.0/8"], &[a, b], &[201, 429]),
    ];
    for (case, trusted, forwarded, statuses) in cases {
        let mut settings = vec!["--rate-register", "1"];
        settings.extend_from_slice(trusted);
        let app = spawn_app_with(&settings).await;
        for (hop, status) in forwarded.iter().zip(*statuses) {
            let response = app
                .post("/register")
                .header("x-forwarded-for", *hop)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), *status, "{case}: {hop}");
        }
    }
}

#[tokio::test]
async fn token_requests_are_rate_limited_per_source() {
    let app = spawn_app_with(&["--rate-token", "3"]).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = app
            .post("/token")
            .form(&[("grant_type", "authorization_code"), ("client_id", "x")])
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 401, 429, 429]);
}

/// Every `/authorize` request, GET or POST, takes from its source's bucket before anything else:
/// a flood from one source opens no sessions and starts no document fetches, and gets 429 pages
/// with `Retry-After`.
#[tokio::test]
async fn authorization_requests_are_rate_limited_per_source() {
    let app = spawn_app_with(&["--rate-authorize", "3"]).await;
    let client_id = register(&app).await;
    let url = authorize_url(&app, &client_id, &Pkce::new(), &[]);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = app.http.get(&url).send().await.unwrap();
        statuses.push(response.status().as_u16());
    }
    let limited = app.http.get(&url).send().await.unwrap();
    statuses.push(limited.status().as_u16());
    let post = app
        .post("/authorize")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(url.split_once('?').unwrap().1.to_string())
        .send()
        .await
        .unwrap();
    statuses.push(post.status().as_u16());
    assert_eq!(statuses, vec![302, 302, 302, 429, 429]);
    assert!(limited.headers().contains_key("retry-after"));
    assert!(limited.headers().get("set-cookie").is_none(), "no session");
    let page = limited.text().await.unwrap();
    assert!(page.contains("Too many authorization requests"), "{page}");
}

/// `/introspect` takes from the source's `/token` bucket before it checks a credential, whether
/// a client's secret or a resource-server credential that turns out wrong; the right
/// resource-server credential, an introspecting resource server's every request, is not limited.
#[tokio::test]
async fn introspection_is_rate_limited_except_for_the_resource_server() {
    let app = spawn_app_with(&[
        "--rate-token",
        "3",
        "--introspection-secret",
        INTROSPECTION_SECRET,
    ])
    .await;
    let introspect = |credential: &str| {
        app.post("/introspect")
            .bearer_auth(credential)
            .form(&[("token", "not-a-token")])
            .send()
    };
    for request in 0..10 {
        let response = introspect(INTROSPECTION_SECRET).await.unwrap();
        assert_eq!(response.status(), 200, "resource server request {request}");
    }
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = introspect("a-wrong-introspection-credential")
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    let client = app
        .post("/introspect")
        .basic_auth("some-client", Some("some-secret"))
        .form(&[("token", "not-a-token")])
        .send()
        .await
        .unwrap();
    statuses.push(client.status().as_u16());
    assert_eq!(statuses, vec![401, 401, 401, 429, 429]);
    assert!(client.headers().contains_key("retry-after"));
    let still = introspect(INTROSPECTION_SECRET).await.unwrap();
    assert_eq!(still.status(), 200, "the resource server is still answered");
}

/// Posts a login with the page's CSRF token; returns the status.
async fn try_login(
    app: &TestApp,
    browser: &Browser,
    login_url: &str,
    user: &str,
    password: &str,
) -> u16 {
    let form = browser.login_form(login_url).await;
    let response = form.post(browser, app, user, password).await;
    response.status().as_u16()
}

#[tokio::test]
async fn failed_logins_lock_the_account_even_with_the_right_password() {
    let app = spawn_app_with(&["--login-failures-per-account", "3"]).await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    let login_url = browser.start_authorization(&app, &client_id).await;
    for _ in 0..3 {
        assert_eq!(
            try_login(&app, &browser, &login_url, "alice", "wrong").await,
            401
        );
    }
    let form = browser.login_form(&login_url).await;
    let locked = form.post(&browser, &app, "alice", "password123").await;
    assert_eq!(locked.status(), 429);
    let retry = retry_after(&locked);
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
    let browser = Browser::new();
    let login_url = browser.start_authorization(&app, &client_id).await;
    let form = browser.login_form(&login_url).await;
    let guesses = (0..20).map(|i| {
        let (app, browser, form) = (&app, &browser, &form);
        async move {
            let guess = format!("guess-{i}");
            let response = form.post(browser, app, "alice", &guess).await;
            response.status().as_u16()
        }
    });
    let mut checked = 0;
    let mut refused = 0;
    for status in futures::future::join_all(guesses).await {
        match status {
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
    let form = browser.login_form(&location(&start).unwrap()).await;
    let response = form.post_from("null", &browser, &app, "alice", "password123");
    let response = response.await;
    assert_eq!(response.status(), 302);
    // The pages' CSP has no form-action, which browsers would apply to the redirect to the client.
    let csp = start.headers()["content-security-policy"].to_str().unwrap();
    assert!(!csp.contains("form-action"), "{csp}");
}

#[tokio::test]
async fn a_double_clicked_sign_in_lands_on_the_same_consent() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    let login_url = browser.start_authorization(&app, &client_id).await;
    let form = browser.login_form(&login_url).await;
    let post = || {
        let request = browser.http.post(app.url("/login"));
        request.form(&form.filled("alice", "password123")).send()
    };
    let (a, b) = tokio::join!(post(), post());
    let (a, b) = (a.unwrap(), b.unwrap());
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
        .get("/.well-known/oauth-authorization-server")
        .header("x-padding", "a".repeat(64 * 1024))
        .send()
        .await;
    // An error means the connection was closed: also refused.
    if let Ok(r) = response {
        assert!(r.status() == 431 || r.status() == 400, "{}", r.status());
    }
    // The server is still fine.
    let ok = app.get("/oauth/jwks").send().await.unwrap();
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
    assert_eq!(md["authorization_endpoint"], app.url("/authorize"));
    for path in ["/authorize", "/login", "/consent"] {
        let response = app
            .get(path)
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
        .request(reqwest::Method::OPTIONS, app.url("/token"))
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
    let real = app.get_json(&app.url("/oauth/jwks")).await;
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

    let claims = access_claims(&app);
    let attempts = (0..100).map(|i| {
        let mut header = jws_header(&app);
        header["kid"] = json!(format!("random-{i}"));
        let token = mint(&app, &header, &claims);
        let request = mcp_request(&app, &app.mcp_url(), &initialize_body()).bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    });
    for status in futures::future::join_all(attempts).await {
        assert_eq!(status, 401);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "one fetch for a hundred unknown key ids"
    );
    // Within the cooldown even the real key id is not refetched: tokens with it are refused
    // until the cooldown ends. (The first fetch already had it, so this one passes.)
    let token = mint(&app, &jws_header(&app), &claims);
    let ok = mcp_post(&app, Some(&token), None, initialize_body()).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn other_authorization_schemes_get_the_plain_challenge() {
    let app = spawn_app().await;
    for value in ["Basic dXNlcjpwdw==", "DPoP abc", "Token"] {
        let response = initialize_with_authorization(&app, value).await;
        assert_bearer_refusal(&response, 401, None, value);
    }
}

#[tokio::test]
async fn repeated_client_id_is_a_page_even_after_another_repetition() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::signed_in(&app, &client_id).await;
    let url = format!(
        "{}&state=again&client_id=other",
        authorize_url(&app, &client_id, &Pkce::new(), &[])
    );
    assert_error_page(browser.get(&url).await, "repeated client_id").await;
}

#[tokio::test]
async fn https_issuers_get_host_prefixed_secure_cookies() {
    let app = spawn_app_full(
        "https",
        "",
        &[
            "--session-secret",
            "a-long-random-secret-for-tests-only",
            "--allow-demo-users",
        ],
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

/// The `Max-Age` of the session cookie a response sets.
fn cookie_max_age(response: &reqwest::Response) -> u64 {
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    let age = cookie.split("Max-Age=").nth(1).unwrap();
    age.split(';').next().unwrap().parse().unwrap()
}

/// Anonymous sessions are short-lived and give way: with the sessions and pending requests at
/// their bounds after a flood of cookieless requests (from one source, the rate limit lifted),
/// a new browser still signs in and completes its flow, and a browser signed in before the
/// flood is still signed in. The anonymous cookie lives as long as a pending request; the
/// signed-in one the full session lifetime.
#[tokio::test]
async fn a_flood_of_cookieless_requests_locks_out_no_other_browser() {
    let mut settings = vec!["--max-sessions", "20", "--max-pending-requests", "20"];
    settings.extend(mcp_oauth_testkit::NO_RATE_LIMITS);
    let app = spawn_app_with(&settings).await;
    let client_id = register(&app).await;
    let before = Browser::signed_in(&app, &client_id).await;
    let url = authorize_url(&app, &client_id, &Pkce::new(), &[]);
    for _ in 0..100 {
        let response = app.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 302, "the flood is not refused either");
        assert_eq!(cookie_max_age(&response), 900, "an anonymous session");
    }
    let newcomer = Browser::new();
    let login_url = newcomer.start_authorization(&app, &client_id).await;
    assert!(login_url.contains("/login?request="), "{login_url}");
    let signed_in = login(&newcomer, &login_url, "bob", "hunter2").await;
    assert_eq!(cookie_max_age(&signed_in), 28_800, "a signed-in session");
    let consent = location(&signed_in).unwrap();
    let approved = decide(&newcomer, &consent, "approve").await;
    assert!(location(&approved).unwrap().starts_with(REDIRECT));
    let back = before
        .redirect_from(&authorize_url(&app, &client_id, &Pkce::new(), &[]))
        .await;
    assert!(
        query_param(&back, "code").is_some(),
        "still signed in: {back}"
    );
}

/// The demo users' passwords are public: an https issuer (a deployment) does not start with them
/// as its users unless told to; an http issuer (a developer's machine) does, and names them on
/// the login page.
#[tokio::test]
async fn demo_users_are_refused_on_an_https_issuer_unless_allowed() {
    for (allow, starts) in [(None, false), (Some("--allow-demo-users"), true)] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let mut settings = vec![
            "--issuer",
            &issuer,
            "--session-secret",
            "a-long-random-secret-for-tests-only",
            "--in-memory",
        ];
        settings.extend(allow);
        let built = build_auth_server(listener, &settings).await;
        assert_eq!(built.is_ok(), starts, "{allow:?}: {built:?}");
        if let Err(refusal) = built {
            assert!(
                refusal.contains("AUTH_SERVER_ALLOW_DEMO_USERS"),
                "{refusal}"
            );
            assert!(refusal.contains("AUTH_SERVER_USERS_FILE"), "{refusal}");
        }
    }
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    let login_url = browser.start_authorization(&app, &client_id).await;
    let page = browser.text(&login_url).await;
    assert!(page.contains("alice / password123"), "{page}");
}
