//! `/authorize` error answers (AZ-1..AZ-6): errors that must never redirect get a 400 page with no
//! `Location`; every other error goes back to the client's redirect URI, but only after the user
//! has signed in (AZ-5), with `error`, `state` and `iss`.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn errors_that_never_redirect() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let two = register_with(
        &app,
        json!({"redirect_uris": [REDIRECT, "https://app.example/cb"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let two_id = two["client_id"].as_str().unwrap();
    let pkce = Pkce::new();
    let base = |client: &str, redirect: Option<&str>| {
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", client),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
            ("state", "s"),
        ];
        params.extend(redirect.map(|r| ("redirect_uri", r)));
        url::Url::parse_with_params(&app.url("/authorize"), &params)
            .unwrap()
            .to_string()
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, String)> = vec![
        ("AZ-2 no client_id", format!("{}/authorize?response_type=code&redirect_uri={REDIRECT}", app.issuer)),
        ("AZ-2 unknown client", base("no-such-client", Some(REDIRECT))),
        ("AZ-2 unregistered redirect", base(&client_id, Some("https://evil.example/callback"))),
        ("AZ-2 redirect with other path", base(&client_id, Some("http://127.0.0.1:53682/other"))),
        ("AZ-2 redirect with fragment", base(&client_id, Some("http://127.0.0.1:53682/callback#x"))),
        ("AZ-2 redirect other loopback host", base(&client_id, Some("http://localhost:53682/callback"))),
        ("AZ-2 missing redirect, ambiguous", base(two_id, None)),
        ("AZ-3 repeated client_id", format!("{}&client_id={client_id}", base(&client_id, Some(REDIRECT)))),
        ("AZ-3 repeated redirect_uri", format!("{}&redirect_uri=https%3A%2F%2Fevil.example%2F", base(&client_id, Some(REDIRECT)))),
    ];
    for (name, url) in cases {
        assert_error_page(app.http.get(&url).send().await.unwrap(), name).await;
    }
    // The loopback port may differ from the registered one (RFC 8252 section 7.3).
    let response = app
        .http
        .get(base(&client_id, Some("http://127.0.0.1:9999/callback")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert!(location(&response).unwrap().contains("/login?request="));
    // A client with one registered redirect URI may omit it.
    let response = app.http.get(base(&client_id, None)).send().await.unwrap();
    assert_eq!(response.status(), 302);
}

#[tokio::test]
async fn errors_redirect_to_a_client_the_signed_in_user_approved() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    // First a signed-in browser that approved the client (one complete flow): only to its
    // redirect URI do errors go without a page (consent_binding.rs has the other cases).
    let browser = Browser::signed_in(&app, &client_id).await;
    let pkce = Pkce::new();
    // (case, parameters changed, error)
    #[rustfmt::skip]
    let cases: &[(&str, Pairs, &str)] = &[
        ("AZ-1 token response type", &[("response_type", "token")], "unsupported_response_type"),
        ("AZ-1 no response type", &[("response_type", "")], "invalid_request"),
        ("AZ-1 no challenge", &[("code_challenge", "")], "invalid_request"),
        ("AZ-1 plain method", &[("code_challenge_method", "plain")], "invalid_request"),
        ("AZ-1 no method", &[("code_challenge_method", "")], "invalid_request"),
        ("AZ-1 short challenge", &[("code_challenge", "abc")], "invalid_request"),
        ("AZ-1 challenge bad chars", &[("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM")], "invalid_request"),
        ("AZ-3 unknown scope", &[("scope", "mcp.read admin")], "invalid_scope"),
        ("AZ-3 malformed scope", &[("scope", "mcp.read \"x\"")], "invalid_scope"),
        ("AZ-4 unknown resource", &[("resource", "http://other.example/mcp")], "invalid_target"),
        ("AZ-4 relative resource", &[("resource", "/mcp")], "invalid_target"),
        ("AZ-4 resource with fragment", &[("resource", "http://127.0.0.1:1/mcp#f")], "invalid_target"),
    ];
    for (name, changed, expected) in cases {
        let response = browser
            .get(&authorize_url(&app, &client_id, &pkce, changed))
            .await;
        assert_error_redirect(&app, &response, expected, name);
    }
    // A repeated parameter other than client_id/redirect_uri; several resources (RFC 8707
    // section 2) are `invalid_target`; a repeated `state`, however it is spelled, is refused
    // and neither copy is echoed (RFC 6749 section 3.1).
    let resource = format!("&resource={}", urlencoding(&app.mcp_url()));
    for (repeat, expected, state) in [
        ("&scope=mcp.read", "invalid_request", Some("xyz-state")),
        (resource.as_str(), "invalid_target", Some("xyz-state")),
        ("&state=evil", "invalid_request", None),
        ("&st%61te=evil", "invalid_request", None),
        ("&state=", "invalid_request", None),
    ] {
        let repeated = format!("{}{repeat}", authorize_url(&app, &client_id, &pkce, &[]));
        let response = browser.get(&repeated).await;
        let to = location(&response).unwrap();
        assert_eq!(query_param(&to, "error").as_deref(), Some(expected), "{to}");
        assert_eq!(query_param(&to, "state").as_deref(), state, "{to}");
        assert!(!to.contains("evil"), "{to}");
    }

    // Unknown parameters are ignored.
    let response = browser
        .get(&authorize_url(&app, &client_id, &pkce, &[("foo", "bar")]))
        .await;
    let to = location(&response).unwrap();
    assert!(query_param(&to, "code").is_some(), "{to}");
}

/// Before sign-in nothing goes to the client: an invalid request is a page, with no login first
/// and no session opened.
#[tokio::test]
async fn an_error_before_sign_in_is_a_page() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    let url = authorize_url(
        &app,
        &client_id,
        &Pkce::new(),
        &[("resource", "http://other.example/"), ("x", "y")],
    );
    let response = browser.get(&url).await;
    assert!(response.headers().get("set-cookie").is_none());
    let html = assert_error_page(response, "invalid_target before sign-in").await;
    assert!(html.contains("invalid_target"), "{html}");
}

#[tokio::test]
async fn state_round_trips_and_cannot_inject_headers() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::signed_in(&app, &client_id).await;
    let weird = "a b&c=d\r\nSet-Cookie: x=1;é+%20/?#";
    let url = authorize_url(&app, &client_id, &Pkce::new(), &[("state", weird)]);
    let response = browser.get(&url).await;
    assert_eq!(response.status(), 302);
    assert!(
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("x=1"))
    );
    let to = location(&response).unwrap();
    assert_eq!(query_param(&to, "state").as_deref(), Some(weird));
}

#[tokio::test]
async fn other_methods_and_post_form() {
    let app = spawn_app().await;
    let response = app.http.put(app.url("/authorize")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let response = app.http.delete(app.url("/authorize")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    // POST with a form works like GET.
    let client_id = register(&app).await;
    let pkce = Pkce::new();
    let url = url::Url::parse(&authorize_url(&app, &client_id, &pkce, &[])).unwrap();
    let form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let response = app.post("/authorize").form(&form).send().await.unwrap();
    assert_eq!(response.status(), 302);
    assert!(location(&response).unwrap().contains("/login?request="));
    // POST with JSON is refused, without a redirect.
    let response = app
        .post("/authorize")
        .json(&json!({"client_id": client_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn login_and_consent_pages() {
    let app = spawn_app().await;
    let client_id = register_with(
        &app,
        json!({"client_name": "<script>alert(1)</script>", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
    )
    .await["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let browser = Browser::new();
    let start = browser
        .get(&authorize_url(&app, &client_id, &Pkce::new(), &[]))
        .await;
    let cookie = start.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "no Secure cookie on an http issuer: {cookie}"
    );
    let login_url = location(&start).unwrap();
    let page = browser.get(&login_url).await;
    assert_page_headers(&page);
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("<script>alert(1)"),
        "client name must be escaped"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)") || html.contains("&#60;script&#62;alert(1)"),
        "client name shown escaped"
    );

    // A wrong password: the form again, 401, no session change.
    let form = LoginForm {
        csrf: hidden_field(&html, "csrf_token"),
        request: hidden_field(&html, "request"),
    };
    let wrong = form.post(&browser, &app, "alice", "nope").await;
    assert_eq!(wrong.status(), 401);
    let unknown = form.post(&browser, &app, "mallory", "nope").await;
    assert_eq!(unknown.status(), 401);
    // A missing or wrong CSRF token, or a foreign Origin: 403.
    let no_csrf = browser
        .post_form(
            &app.url("/login"),
            &form.filled("alice", "password123")[1..],
        )
        .await;
    assert_eq!(no_csrf.status(), 403);
    let evil = "http://evil.example";
    let foreign = form.post_from(evil, &browser, &app, "alice", "password123");
    let foreign = foreign.await;
    assert_eq!(foreign.status(), 403);

    // Login renews the session id.
    let ok = login(&browser, &login_url, "alice", "password123").await;
    assert_eq!(ok.status(), 302);
    let renewed = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert_ne!(cookie.split(';').next(), renewed.split(';').next());

    // The consent page names the client (escaped), the scopes with descriptions, the resource and
    // the redirect host.
    let consent_url = location(&ok).unwrap();
    let page = browser.get(&consent_url).await;
    assert_page_headers(&page);
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>alert(1)"));
    assert!(html.contains("mcp.read") && html.contains("Read data"));
    assert!(html.contains("mcp.write") && html.contains("change things"));
    assert!(html.contains(&app.mcp_url()));
    assert!(html.contains("127.0.0.1"));

    // Another browser cannot use this request id, even signed in.
    let other = Browser::new();
    authorize_as(&app, &other, &client_id, &Pkce::new(), "bob", "hunter2").await;
    let stolen = other.get(&consent_url).await;
    assert_eq!(stolen.status(), 400);

    // The decision is used once.
    let approved = decide(&browser, &consent_url, "approve").await;
    assert_eq!(approved.status(), 302);
    let again = browser.get(&consent_url).await;
    assert_eq!(again.status(), 400);
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::signed_in(&app, &client_id).await;
    // Signed in: the next authorization goes straight back to the client.
    let again = browser.start_authorization(&app, &client_id).await;
    assert!(again.starts_with(REDIRECT));
    // Logout needs the session's CSRF token, which every page of the session carries: the
    // consent page for another client, say.
    let refused = browser
        .post_form(&app.url("/logout"), &[("csrf_token", "wrong")])
        .await;
    assert_eq!(refused.status(), 403);
    let other = register(&app).await;
    let consent_url = browser.start_authorization(&app, &other).await;
    assert!(consent_url.contains("/consent?request="), "{consent_url}");
    let html = browser.text(&consent_url).await;
    let csrf = hidden_field(&html, "csrf_token");
    let out = browser
        .post_form(&app.url("/logout"), &[("csrf_token", &csrf)])
        .await;
    assert_eq!(out.status(), 200);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    // Signed out: /authorize sends the browser to the login page again.
    let after = browser.start_authorization(&app, &client_id).await;
    assert!(after.contains("/login?request="));
}

/// One query value, percent-encoded.
fn urlencoding(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The consent page shows the whole redirect URI beside its host (MCP authorization, consent),
/// and no client-chosen string on it keeps the invisible characters that change how text reads:
/// bidirectional overrides and isolates, zero-width characters, the byte-order mark.
#[tokio::test]
async fn consent_shows_the_whole_redirect_uri_without_invisible_characters() {
    let app = spawn_app().await;
    let redirect = "http://127.0.0.1:53682/callback/\u{202E}fdp.exe?tenant=acme";
    let client_id = register_with(
        &app,
        json!({
            "client_name": "Good\u{202E}\u{2066}App\u{200B}\u{FEFF}",
            "redirect_uris": [redirect],
            "token_endpoint_auth_method": "none",
        }),
    )
    .await["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let browser = Browser::new();
    let pkce = Pkce::new();
    let url = authorize_url(&app, &client_id, &pkce, &[("redirect_uri", redirect)]);
    let login_url = location(&browser.get(&url).await).unwrap();
    let signed_in = login(&browser, &login_url, "alice", "password123").await;
    let consent_url = location(&signed_in).unwrap();
    let html = browser.text(&consent_url).await;
    assert!(html.contains("Authorize GoodApp"), "{html}");
    assert!(
        html.contains("http://127.0.0.1:53682/callback/fdp.exe?tenant=acme"),
        "{html}"
    );
    for invisible in ['\u{202E}', '\u{2066}', '\u{200B}', '\u{FEFF}'] {
        assert!(
            !html.contains(invisible),
            "U+{:04X} on the page",
            invisible as u32
        );
    }
}
