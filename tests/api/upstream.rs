//! Sign-in through upstream identity providers (`--identity-providers`), against a provider
//! served over HTTP by the test (`helpers/upstream.rs`): the login page offers "Sign in with …";
//! the browser goes to the provider with PKCE S256, `state` and `nonce`; the callback is
//! answered once, in the browser that started it; the ID token's signature, issuer and nonce are
//! checked; the user is `<provider>:<sub>`, our consent page follows, and the token is ours (the
//! provider's never reaches the MCP client). A GitHub-style provider signs in through its user
//! endpoint. Allow-lists, provider errors and password sign-in turned off.

use crate::helpers::*;
use serde_json::Value;

/// A provider and both servers using it (the OpenID provider with `op_extra` lines, the
/// GitHub-style one with `gh_extra`), with `extra` settings.
async fn spawn_with_providers(
    op_extra: &str,
    gh_extra: &str,
    extra: &[&str],
) -> (UpstreamProvider, TestApp, tempfile::TempDir) {
    let provider = UpstreamProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = provider.providers_file(dir.path(), op_extra, gh_extra);
    let mut args = vec!["--identity-providers", file.as_str()];
    args.extend_from_slice(extra);
    let app = spawn_app_with(&args).await;
    (provider, app, dir)
}

/// Presses the "Sign in with …" button of provider `id` on the login page `page`: its form, with
/// the page's CSRF token and request id.
async fn press(browser: &Browser, app: &TestApp, page: &str, id: &str) -> reqwest::Response {
    let (csrf, request) = (
        hidden_field(page, "csrf_token"),
        hidden_field(page, "request"),
    );
    let fields = [("csrf_token", csrf.as_str()), ("request", request.as_str())];
    browser
        .post_form(&app.url(&format!("/login/{id}")), &fields)
        .await
}

/// An authorization for `client_id` in `browser`, signed in at provider `id`: the login page's
/// button, the provider, and the answer of our callback.
async fn sign_in_upstream(
    app: &TestApp,
    browser: &Browser,
    client_id: &str,
    pkce: &Pkce,
    id: &str,
) -> reqwest::Response {
    let login_url = browser
        .redirect_from(&authorize_url(app, client_id, pkce, &[]))
        .await;
    let page = browser.text(&login_url).await;
    assert!(page.contains("Sign in with Mock OP"), "{page}");
    let started = press(browser, app, &page, id).await;
    assert_eq!(
        started.status(),
        302,
        "the button sends the browser upstream"
    );
    let at_provider = location(&started).unwrap();
    let back = browser.get(&at_provider).await;
    assert_eq!(back.status(), 303, "the provider sends the browser back");
    let callback = location(&back).unwrap();
    assert!(
        callback.starts_with(&app.url(&format!("/login/{id}/callback?"))),
        "{callback}"
    );
    browser.get(&callback).await
}

/// Our consent page approved after an upstream sign-in; the code redeemed. The token response.
async fn approve_and_redeem(
    app: &TestApp,
    browser: &Browser,
    client_id: &str,
    pkce: &Pkce,
    after_callback: reqwest::Response,
) -> Value {
    assert_eq!(after_callback.status(), 302, "the callback goes on");
    let consent_url = location(&after_callback).unwrap();
    assert!(consent_url.contains("/consent?request="), "{consent_url}");
    let approved = decide(browser, &consent_url, "approve").await;
    let back_to_client = location(&approved).unwrap();
    let code = query_param(&back_to_client, "code").expect("a code");
    let response = redeem(app, client_id, &code, &pkce.verifier).await;
    ok_json(response, "the code of an upstream sign-in").await
}

/// The session cookie a response sets, if it sets one.
fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("session"))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
}

/// A page that signs no one in: its status and text.
async fn refusal(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_user_signs_in_at_an_openid_provider_and_calls_tools_as_its_namespaced_subject() {
    let (provider, app, _dir) = spawn_with_providers("", "", &[]).await;
    let client_id = register(&app).await;
    let (browser, pkce) = (Browser::new(), Pkce::new());
    let first_visit = browser
        .get(&authorize_url(&app, &client_id, &Pkce::new(), &[]))
        .await;
    let page = browser.text(&location(&first_visit).unwrap()).await;
    assert!(page.contains("Sign in with Mock GitHub"), "{page}");
    assert!(
        page.contains("name=\"password\""),
        "the password form stays"
    );

    let callback = sign_in_upstream(&app, &browser, &client_id, &pkce, "op").await;
    // Signed in: a new session id, as after a password (no session fixation).
    let renewed = session_cookie(&callback).expect("the callback sets the session cookie");
    assert_ne!(Some(renewed), session_cookie(&first_visit));
    // What went upstream: the code flow with PKCE S256, a state, a nonce, and our callback.
    let asked = provider.last_request();
    assert_eq!(asked["response_type"], "code");
    assert_eq!(asked["client_id"], UPSTREAM_CLIENT_ID);
    assert_eq!(asked["code_challenge_method"], "S256");
    assert!(asked["code_challenge"].len() >= 43, "{asked:?}");
    assert!(
        asked["state"].len() >= 32 && asked["nonce"].len() >= 32,
        "{asked:?}"
    );
    assert_eq!(asked["redirect_uri"], app.url("/login/op/callback"));
    let scopes: Vec<&str> = asked["scope"].split(' ').collect();
    for scope in ["openid", "email", "profile"] {
        assert!(scopes.contains(&scope), "{asked:?}");
    }

    let tokens = approve_and_redeem(&app, &browser, &client_id, &pkce, callback).await;
    let access_token = tokens["access_token"].as_str().unwrap();
    let who = whoami(&app, access_token).await;
    assert_eq!(who["sub"], "op:carol", "{who}");
    assert_eq!(who["client_id"], client_id.as_str());
    // No token passthrough: nothing the provider issued is in what the client got.
    let issued = provider.access_tokens();
    assert_eq!(issued.len(), 1);
    assert!(!tokens.to_string().contains(&issued[0]), "{tokens}");

    // The browser is signed in: the next authorization skips the login page (and the consent
    // page, approved already).
    let again = Pkce::new();
    let next = browser
        .redirect_from(&authorize_url(&app, &client_id, &again, &[]))
        .await;
    assert!(next.starts_with(REDIRECT), "{next}");
}

#[tokio::test]
async fn id_tokens_that_prove_nothing_are_refused_with_a_clear_page() {
    let (provider, app, _dir) = spawn_with_providers("", "", &[]).await;
    let client_id = register(&app).await;
    let cases = [
        (Misbehaviour::ForeignKey, "ignature"),
        (Misbehaviour::WrongNonce, "nonce"),
        (Misbehaviour::WrongIssuer, "ssuer"),
        // RFC 9207: the callback itself names another issuer (a mix-up).
        (
            Misbehaviour::ForeignIss,
            "names the issuer https://impostor.example",
        ),
    ];
    for (misbehaviour, reason) in cases {
        provider.misbehave(misbehaviour);
        let (browser, pkce) = (Browser::new(), Pkce::new());
        let callback = sign_in_upstream(&app, &browser, &client_id, &pkce, "op").await;
        let callback_url = callback.url().to_string();
        let (status, page) = refusal(callback).await;
        assert_eq!(status, 502, "{misbehaviour:?}: {page}");
        assert!(
            page.contains("could not be verified"),
            "{misbehaviour:?}: {page}"
        );
        assert!(
            page.contains("Mock OP") && page.contains(reason),
            "{misbehaviour:?}: {page}"
        );
        // The state was used up, though no one signed in: the same callback again is unknown.
        let (status, page) = refusal(browser.get(&callback_url).await).await;
        assert_eq!(status, 400, "{misbehaviour:?}: a replayed callback: {page}");
        // No one is signed in: the authorization still stops at the login page.
        let next = browser
            .redirect_from(&authorize_url(&app, &client_id, &Pkce::new(), &[]))
            .await;
        assert!(next.contains("/login?request="), "{misbehaviour:?}: {next}");
    }
    // The provider behaving again, the same server signs the user in.
    provider.misbehave(Misbehaviour::None);
    let (browser, pkce) = (Browser::new(), Pkce::new());
    let callback = sign_in_upstream(&app, &browser, &client_id, &pkce, "op").await;
    approve_and_redeem(&app, &browser, &client_id, &pkce, callback).await;
}

/// A provider that rotates its signing key after our discovery: the first ID token under the new
/// key sends us for the key set once more, and the key set fetched then serves the next sign-ins.
#[tokio::test]
async fn a_key_rotated_at_the_provider_is_fetched_once_and_kept() {
    let (provider, app, _dir) = spawn_with_providers("", "", &[]).await;
    let client_id = register(&app).await;
    // Each time another user, so that each time our consent page follows.
    let sign_in = async |sub: &str| {
        provider.sign_in_next(sub, &format!("{sub}@example.com"), true);
        let (browser, pkce) = (Browser::new(), Pkce::new());
        let callback = sign_in_upstream(&app, &browser, &client_id, &pkce, "op").await;
        approve_and_redeem(&app, &browser, &client_id, &pkce, callback).await;
    };
    sign_in("carol").await;
    assert_eq!(provider.jwks_fetches(), 1, "discovery fetched the key set");
    provider.rotate_key("upstream-2");
    sign_in("dave").await;
    assert_eq!(provider.jwks_fetches(), 2, "fetched again for the new key");
    sign_in("erin").await;
    assert_eq!(provider.jwks_fetches(), 2, "and kept");
}

#[tokio::test]
async fn an_upstream_error_is_a_page_naming_the_provider_and_the_error() {
    let (provider, app, _dir) = spawn_with_providers("", "", &[]).await;
    let client_id = register(&app).await;
    provider.misbehave(Misbehaviour::Deny);
    let (browser, pkce) = (Browser::new(), Pkce::new());
    let callback = sign_in_upstream(&app, &browser, &client_id, &pkce, "op").await;
    let (status, page) = refusal(callback).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("Sign-in refused"), "{page}");
    assert!(
        page.contains("Mock OP refused the sign-in: access_denied (The user said no)"),
        "{page}"
    );
}

#[tokio::test]
async fn a_callback_is_answered_once_and_only_in_the_browser_that_started_it() {
    let (_provider, app, _dir) = spawn_with_providers("", "", &[]).await;
    let client_id = register(&app).await;
    let (victim, attacker, pkce) = (Browser::new(), Browser::new(), Pkce::new());
    // The attacker's own sign-in, its callback URL handed to another browser (login CSRF).
    let login_url = attacker
        .redirect_from(&authorize_url(&app, &client_id, &pkce, &[]))
        .await;
    let login_page = attacker.text(&login_url).await;
    let started = press(&attacker, &app, &login_page, "op").await;
    let back = attacker.get(&location(&started).unwrap()).await;
    let callback = location(&back).unwrap();
    victim
        .redirect_from(&authorize_url(&app, &client_id, &Pkce::new(), &[]))
        .await;
    let (status, page) = refusal(victim.get(&callback).await).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("started in another browser"), "{page}");
    // Without any session at all, the same.
    let (status, _) = refusal(Browser::new().get(&callback).await).await;
    assert_eq!(status, 400);

    // In the browser that started it, a callback works once.
    let callback = sign_in_upstream(&app, &victim, &client_id, &Pkce::new(), "op").await;
    assert_eq!(callback.status(), 302);
    let url = callback.url().to_string();
    let (status, _) = refusal(victim.get(&url).await).await;
    assert_eq!(status, 400, "a replayed callback");

    // A state that was never issued, and a provider that does not exist.
    let forged = with_params(&url, &[("state", "forged")]);
    assert_eq!(victim.get(&forged).await.status(), 400);
    let nowhere = app.url("/login/nowhere/callback?state=x&code=y");
    let (status, page) = refusal(victim.get(&nowhere).await).await;
    assert_eq!(status, 404, "{page}");
    assert!(
        !page.contains("nowhere"),
        "the visitor's text is not shown: {page}"
    );
    let unknown = press(&victim, &app, &login_page, "nowhere").await;
    assert!(unknown.status().is_client_error(), "{}", unknown.status());
}

#[tokio::test]
async fn allow_lists_admit_listed_domains_and_subjects_only() {
    let op = "allowed_email_domains = [\"example.com\"]\nallowed_subjects = [\"ops-robot\"]";
    let (provider, app, _dir) = spawn_with_providers(op, "", &[]).await;
    let client_id = register(&app).await;
    let cases = [
        ("carol", "carol@example.com", true, true),
        ("dave", "dave@EXAMPLE.COM", true, true),
        // An unverified address proves nothing.
        ("erin", "erin@example.com", false, false),
        ("mallory", "mallory@example.com.evil", true, false),
        ("ops-robot", "robot@elsewhere.test", false, true),
    ];
    for (sub, email, verified, admitted) in cases {
        provider.sign_in_next(sub, email, verified);
        let (browser, pkce) = (Browser::new(), Pkce::new());
        let callback = sign_in_upstream(&app, &browser, &client_id, &pkce, "op").await;
        if admitted {
            let tokens = approve_and_redeem(&app, &browser, &client_id, &pkce, callback).await;
            let who = whoami(&app, tokens["access_token"].as_str().unwrap()).await;
            assert_eq!(who["sub"], format!("op:{sub}"));
        } else {
            let (status, page) = refusal(callback).await;
            assert_eq!(status, 403, "{sub}: {page}");
            assert!(page.contains("may not sign in here"), "{sub}: {page}");
        }
    }
}

#[tokio::test]
async fn a_github_style_provider_signs_in_through_its_user_endpoint() {
    let (provider, app, dir) = spawn_with_providers("", "", &[]).await;
    let client_id = register(&app).await;
    provider.sign_in_next("583231", "octo@github.test", true);
    let (browser, pkce) = (Browser::new(), Pkce::new());
    let callback = sign_in_upstream(&app, &browser, &client_id, &pkce, "gh").await;
    let asked = provider.last_request();
    assert_eq!(asked["scope"], "read:user");
    assert_eq!(asked["code_challenge_method"], "S256");
    assert!(!asked.contains_key("nonce"), "{asked:?}");
    let tokens = approve_and_redeem(&app, &browser, &client_id, &pkce, callback).await;
    let who = whoami(&app, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(who["sub"], "gh:583231", "the numeric id, not the login");
    drop(dir);
}

#[tokio::test]
async fn with_password_sign_in_off_only_the_providers_sign_in() {
    let provider = UpstreamProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = provider.providers_file(dir.path(), "", "");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("password_sign_in = false\n{text}")).unwrap();
    let app = spawn_app_with(&["--identity-providers", &file]).await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    let login_url = browser.start_authorization(&app, &client_id).await;
    let page = browser.text(&login_url).await;
    assert!(!page.contains("name=\"password\""), "{page}");
    assert!(!page.contains("password123"), "no demo hint either");
    assert!(page.contains("Sign in with Mock OP"), "{page}");
    let form = browser.login_form(&login_url).await;
    let refused = form.post(&browser, &app, "alice", "password123").await;
    assert_eq!(refused.status(), 403);
    let page = refused.text().await.unwrap();
    assert!(page.contains("Password sign-in is off"), "{page}");
}

/// A local user named in a provider's namespace would share that provider's user's subject
/// (consents, grants, tokens): such a users file stops the start, naming the user.
#[tokio::test]
async fn a_local_user_in_a_providers_namespace_stops_the_start() {
    let provider = UpstreamProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = provider.providers_file(dir.path(), "", "");
    let users = dir.path().join("users.toml");
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2l4dGVlbiBieXRlIHNhbHQ$0000000000000000000000000000000000000000000";
    std::fs::write(
        &users,
        format!("[[users]]\nusername = \"op:carol\"\npassword_hash = \"{hash}\"\n"),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let issuer = format!("http://127.0.0.1:{port}");
    let settings = [
        "--issuer",
        &issuer,
        "--in-memory",
        "--identity-providers",
        &file,
        "--users-file",
        users.to_str().unwrap(),
    ];
    let refusal = build_auth_server(listener, &settings)
        .await
        .expect_err("a user in the provider's namespace");
    assert!(
        refusal.contains("AUTH_SERVER_IDENTITY_PROVIDERS") && refusal.contains("op:carol"),
        "{refusal}"
    );
}

/// Users who sign in upstream are users enough: an https issuer starts without local ones (it
/// refuses to start on the demo users alone).
#[tokio::test]
async fn an_https_issuer_needs_no_local_users_when_users_sign_in_upstream() {
    let provider = UpstreamProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = provider.providers_file(dir.path(), "", "");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let settings = [
        "--issuer",
        &issuer,
        "--session-secret",
        "a-long-random-secret-for-tests-only",
        "--in-memory",
        "--identity-providers",
        &file,
    ];
    let built = build_auth_server(listener, &settings).await;
    assert!(built.is_ok(), "{built:?}");
}

/// A sign-in without an authorization request (from `/account`) goes through the provider too,
/// and comes back to the account page.
#[tokio::test]
async fn the_account_page_signs_in_through_a_provider_too() {
    let (_provider, app, _dir) = spawn_with_providers("", "", &[]).await;
    let browser = Browser::new();
    assert_eq!(
        browser.redirect_from(&app.url("/account")).await,
        app.url("/login")
    );
    let page = browser.text(&app.url("/login")).await;
    assert!(page.contains("Sign in with Mock OP"), "{page}");
    let started = press(&browser, &app, &page, "op").await;
    assert_eq!(started.status(), 302);
    let back = browser.get(&location(&started).unwrap()).await;
    let signed_in = browser.get(&location(&back).unwrap()).await;
    assert_eq!(location(&signed_in).unwrap(), app.url("/account"));
    let account = browser.get(&app.url("/account")).await;
    assert_eq!(account.status(), 200);
    let text = account.text().await.unwrap();
    assert!(
        text.contains("Carol Upstream"),
        "the provider's name for the user: {text}"
    );
}

/// One browser has a few sign-ins in progress at most: a fifth ends the first, so that no
/// session can fill the server's table of sign-ins in progress.
#[tokio::test]
async fn a_browser_has_four_sign_ins_in_progress_at_most() {
    let (_provider, app, _dir) = spawn_with_providers("", "", &[]).await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    let login_url = browser
        .redirect_from(&authorize_url(&app, &client_id, &Pkce::new(), &[]))
        .await;
    let page = browser.text(&login_url).await;
    let mut at_provider = Vec::new();
    for _ in 0..5 {
        let started = press(&browser, &app, &page, "op").await;
        at_provider.push(location(&started).unwrap());
    }
    let callback_of = async |url: &str| location(&browser.get(url).await).unwrap();
    let first = callback_of(&at_provider[0]).await;
    let last = callback_of(&at_provider[4]).await;
    assert_eq!(
        browser.get(&first).await.status(),
        400,
        "the first was ended"
    );
    assert_eq!(browser.get(&last).await.status(), 302, "the fifth goes on");
}

/// On a store several servers share, a sign-in in progress is kept there (the provider's redirect
/// back may reach any of them), taken out once by its callback.
#[tokio::test]
async fn a_sign_in_in_progress_is_kept_in_a_shared_store() {
    use sqlx::Connection;
    let database = mcp_oauth_testkit::postgres::ScratchDatabase::create().await;
    let shared = [
        "--database-url",
        database.url.as_str(),
        "--key-encryption-secret",
        "the replicas' shared key-encryption secret",
    ];
    let (_provider, app, _dir) = spawn_with_providers("", "", &shared).await;
    let mut db = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let count = async |db: &mut sqlx::PgConnection| -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM upstream_sign_ins")
            .fetch_one(db)
            .await
            .unwrap()
    };
    let client_id = register(&app).await;
    let (browser, pkce) = (Browser::new(), Pkce::new());
    let login_url = browser
        .redirect_from(&authorize_url(&app, &client_id, &pkce, &[]))
        .await;
    let page = browser.text(&login_url).await;
    let started = press(&browser, &app, &page, "op").await;
    assert_eq!(count(&mut db).await, 1, "kept in the database");
    let back = browser.get(&location(&started).unwrap()).await;
    let callback = location(&back).unwrap();
    let signed_in = browser.get(&callback).await;
    assert_eq!(count(&mut db).await, 0, "taken out");
    let tokens = approve_and_redeem(&app, &browser, &client_id, &pkce, signed_in).await;
    let who = whoami(&app, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(who["sub"], "op:carol");
    assert_eq!(browser.get(&callback).await.status(), 400, "once");
    app.stop().await;
}
