//! What a remembered consent lets through without a page (issue findings on RFC 8252 section
//! 8.6 and RFC 9700 section 4.11.2): a code only for the exact redirect URI the user approved,
//! and an error redirect only to such a redirect URI; everything else shows a page.

use crate::helpers::*;
use serde_json::json;

const OTHER_PORT: &str = "http://127.0.0.1:40000/callback";
const SECOND: &str = "http://127.0.0.1:53682/second";

/// Where `/authorize` sends a browser: `Code` (to the client, no page), `Consent` (the consent
/// page), `Login`, or `Page` (an HTML page of its own).
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Code,
    ErrorRedirect,
    Consent,
    Login,
    Page,
}

async fn answer(browser: &Browser, url: &str) -> Answer {
    let response = browser.get(url).await;
    match location(&response) {
        None => {
            assert_eq!(response.status(), 400, "{url}");
            Answer::Page
        }
        Some(to) if to.contains("/consent?request=") => Answer::Consent,
        Some(to) if to.contains("/login?request=") => Answer::Login,
        Some(to) if query_param(&to, "code").is_some() => Answer::Code,
        Some(to) if query_param(&to, "error").is_some() => Answer::ErrorRedirect,
        Some(to) => panic!("unexpected redirect {to}"),
    }
}

/// A public client (loopback, any port), and a confidential one with two redirect URIs.
async fn clients(app: &TestApp) -> (String, String) {
    let public = register(app).await;
    let body = json!({
        "redirect_uris": [REDIRECT, SECOND],
        "token_endpoint_auth_method": "client_secret_basic",
    });
    let confidential = field(&register_with(app, body).await, "client_id");
    (public, confidential)
}

/// A signed-in browser approves `client_id` with [`REDIRECT`] on the consent page.
async fn approve(app: &TestApp, browser: &Browser, client_id: &str) {
    let url = authorize_url(app, client_id, &Pkce::new(), &[]);
    let consent = browser.redirect_from(&url).await;
    assert!(consent.contains("/consent?request="), "{consent}");
    let approved = decide(browser, &consent, "approve").await;
    assert!(location(&approved).unwrap().starts_with(REDIRECT));
}

/// Finding 2: alice approved each client with [`REDIRECT`]; a request that differs only in its
/// redirect URI (another loopback port, the client's other registered URI) shows the consent page
/// again, and once that is approved too both are remembered.
#[tokio::test]
async fn a_remembered_consent_covers_only_the_redirect_uris_the_user_approved() {
    let app = spawn_app().await;
    let (public, confidential) = clients(&app).await;
    let browser = Browser::signed_in(&app, &public).await;
    approve(&app, &browser, &confidential).await;
    let pkce = Pkce::new();
    #[rustfmt::skip]
    let cases: &[(&str, &String, Pairs, Answer)] = &[
        ("public, the approved redirect URI", &public, &[], Answer::Code),
        ("public, redirect URI omitted (its only one)", &public, &[("redirect_uri", "")], Answer::Code),
        ("public, fewer scopes", &public, &[("scope", "mcp.read")], Answer::Code),
        ("public, prompt=consent", &public, &[("prompt", "consent")], Answer::Consent),
        ("public, prompt=login consent", &public, &[("prompt", "login consent")], Answer::Consent),
        ("public, another loopback port", &public, &[("redirect_uri", OTHER_PORT)], Answer::Consent),
        ("public, another loopback port, fewer scopes", &public, &[("redirect_uri", OTHER_PORT), ("scope", "mcp.read")], Answer::Consent),
        ("confidential, the approved redirect URI", &confidential, &[], Answer::Code),
        ("confidential, its other redirect URI", &confidential, &[("redirect_uri", SECOND)], Answer::Consent),
    ];
    for (case, client_id, set, expected) in cases {
        let url = authorize_url(&app, client_id, &pkce, set);
        let url = if set.iter().any(|(_, v)| v.is_empty()) {
            url.replace("&redirect_uri=", "&x=")
        } else {
            url
        };
        assert_eq!(&answer(&browser, &url).await, expected, "{case}");
    }

    // Approving the other port remembers it beside the first.
    let url = authorize_url(&app, &public, &pkce, &[("redirect_uri", OTHER_PORT)]);
    let consent = browser.redirect_from(&url).await;
    let approved = decide(&browser, &consent, "approve").await;
    assert!(location(&approved).unwrap().starts_with(OTHER_PORT));
    for redirect_uri in [REDIRECT, OTHER_PORT] {
        let url = authorize_url(&app, &public, &pkce, &[("redirect_uri", redirect_uri)]);
        assert_eq!(answer(&browser, &url).await, Answer::Code, "{redirect_uri}");
    }
    // The account page says where the consent lets codes go.
    let account = browser.text(&app.url("/account")).await;
    assert!(
        account.contains(&format!("{REDIRECT}, {OTHER_PORT}")),
        "{account}"
    );
    // Another user in another browser has approved nothing.
    let bob = Browser::new();
    let login_url = bob.start_authorization(&app, &public).await;
    let after = login(&bob, &login_url, "bob", "hunter2").await;
    assert!(location(&after).unwrap().contains("/consent?request="));
}

/// What was approved for one redirect URI does not widen another's: read approved for one
/// loopback port and write for another leave each port with its own scope.
#[tokio::test]
async fn each_redirect_uri_keeps_only_what_was_approved_for_it() {
    let app = spawn_app().await;
    let client = register(&app).await;
    let browser = Browser::signed_in(&app, &register(&app).await).await;
    for (redirect_uri, scope) in [(REDIRECT, "mcp.read"), (OTHER_PORT, "mcp.write")] {
        let set = [("redirect_uri", redirect_uri), ("scope", scope)];
        let consent = browser
            .redirect_from(&authorize_url(&app, &client, &Pkce::new(), &set))
            .await;
        let approved = decide(&browser, &consent, "approve").await;
        assert!(location(&approved).unwrap().starts_with(redirect_uri));
    }
    #[rustfmt::skip]
    let cases: &[(&str, &str, Answer)] = &[
        (REDIRECT, "mcp.read", Answer::Code),
        (REDIRECT, "mcp.read mcp.write", Answer::Consent),
        (REDIRECT, "mcp.write", Answer::Consent),
        (OTHER_PORT, "mcp.write", Answer::Code),
        (OTHER_PORT, "mcp.read", Answer::Consent),
    ];
    for (redirect_uri, scope, expected) in cases {
        let set = [("redirect_uri", *redirect_uri), ("scope", *scope)];
        let url = authorize_url(&app, &client, &Pkce::new(), &set);
        assert_eq!(
            &answer(&browser, &url).await,
            expected,
            "{redirect_uri} {scope}"
        );
    }
}

/// The return link of an error page: where it goes, decoded from the page's HTML.
fn return_link(html: &str) -> String {
    let start = html
        .find("class=\"return\" href=\"")
        .expect("a return link")
        + 21;
    let end = start + html[start..].find('"').unwrap();
    html[start..end].replace("&#38;", "&").replace("&amp;", "&")
}

/// Finding 3: an invalid request (here no `code_challenge`, or an unknown scope) is redirected to
/// the client only when the browser's signed-in user approved that client with that exact
/// redirect URI. Otherwise it is a page: the error, the redirect URI, and a link the user may
/// follow to return the error; no session is opened for it.
#[tokio::test]
async fn errors_go_without_a_page_only_to_a_redirect_uri_the_user_approved() {
    let app = spawn_app().await;
    let (public, confidential) = clients(&app).await;
    let never_approved = register(&app).await;
    let alice = Browser::signed_in(&app, &public).await;
    approve(&app, &alice, &confidential).await;
    let bob = Browser::new();
    authorize_as(&app, &bob, &never_approved, &Pkce::new(), "bob", "hunter2").await;
    let anonymous = Browser::new();
    let pkce = Pkce::new();
    for (bad, error) in [
        (("code_challenge", ""), "invalid_request"),
        (("scope", "mcp.read admin"), "invalid_scope"),
        (("response_type", "token"), "unsupported_response_type"),
    ] {
        #[rustfmt::skip]
        let cases: &[(&str, &Browser, &String, Option<&str>, Answer)] = &[
            ("alice, approved client and redirect URI", &alice, &public, None, Answer::ErrorRedirect),
            ("alice, approved confidential client", &alice, &confidential, None, Answer::ErrorRedirect),
            ("alice, approved client, another loopback port", &alice, &public, Some(OTHER_PORT), Answer::Page),
            ("alice, confidential client's other redirect URI", &alice, &confidential, Some(SECOND), Answer::Page),
            ("alice, a client she never approved", &alice, &never_approved, None, Answer::Page),
            ("bob, a client only alice approved", &bob, &public, None, Answer::Page),
            ("no session", &anonymous, &public, None, Answer::Page),
        ];
        for (case, browser, client_id, redirect_uri, expected) in cases {
            let mut set = vec![bad];
            if let Some(uri) = redirect_uri {
                set.push(("redirect_uri", uri));
            }
            let url = authorize_url(&app, client_id, &pkce, &set);
            let context = format!("{case}, {error}");
            if *expected == Answer::ErrorRedirect {
                let response = browser.get(&url).await;
                assert_error_redirect(&app, &response, error, &context);
                continue;
            }
            let response = browser.get(&url).await;
            assert!(
                response.headers().get("set-cookie").is_none(),
                "{context}: no session is opened"
            );
            let html = assert_error_page(response, &context).await;
            assert!(html.contains(error), "{context}: the page names the error");
            let back = return_link(&html);
            let target = redirect_uri.unwrap_or(REDIRECT);
            assert!(back.starts_with(target), "{context}: {back}");
            assert_eq!(
                query_param(&back, "error").as_deref(),
                Some(error),
                "{context}"
            );
            assert_eq!(
                query_param(&back, "state").as_deref(),
                Some("xyz-state"),
                "{context}"
            );
            assert_eq!(
                query_param(&back, "iss").as_deref(),
                Some(app.issuer.as_str()),
                "{context}"
            );
            assert!(
                html.contains(target),
                "{context}: the page shows where the link goes"
            );
        }
    }
}
