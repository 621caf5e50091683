//! Clients the authorization server knows without `/register`, and registration's
//! `application_type`: Client ID Metadata Documents (CL-3; 2025-11-25, 2026-07-28) served by a
//! local HTTP server (the tests allow private addresses and http with `--cimd-allow-private`),
//! pre-registered clients from `--clients-file`, and `--no-dynamic-registration`.

use crate::helpers::*;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A server of client metadata documents that counts how often each is fetched.
#[derive(Clone)]
struct DocServer {
    base: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl DocServer {
    async fn start() -> DocServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let server = DocServer {
            base,
            hits: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/{name}", axum::routing::get(serve))
            .with_state(server.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        server
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    fn hits(&self, name: &str) -> usize {
        self.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

fn document(url: &str, extra: Value) -> Value {
    let mut doc = json!({
        "client_id": url,
        "client_name": "Doc Client",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    doc
}

async fn serve(State(server): State<DocServer>, Path(name): Path<String>) -> Response {
    *server.hits.lock().unwrap().entry(name.clone()).or_default() += 1;
    let url = server.url(&name);
    let json = |doc: Value, cache: &'static str| {
        ([(header::CACHE_CONTROL, cache)], axum::Json(doc)).into_response()
    };
    match name.as_str() {
        "good.json" | "good2.json" | "good3.json" => json(document(&url, json!({})), "max-age=300"),
        "web.json" => json(
            document(
                &url,
                json!({"redirect_uris": ["https://app.example.com/callback"], "client_name": "Web App"}),
            ),
            "max-age=300",
        ),
        "nostore.json" => json(document(&url, json!({})), "no-store"),
        "slow.json" => {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            json(document(&url, json!({})), "max-age=300")
        }
        n if n.starts_with("hang-") => {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            json(document(&url, json!({})), "max-age=300")
        }
        "hang.json" => {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            json(document(&url, json!({})), "max-age=300")
        }
        "mismatch.json" => json(
            document(&server.url("other.json"), json!({})),
            "max-age=300",
        ),
        "secret.json" => json(
            document(
                &url,
                json!({"token_endpoint_auth_method": "client_secret_basic"}),
            ),
            "max-age=300",
        ),
        "pkjwt.json" => json(
            document(
                &url,
                json!({"token_endpoint_auth_method": "private_key_jwt"}),
            ),
            "max-age=300",
        ),
        "withsecret.json" => json(
            document(&url, json!({"client_secret": "s3cret"})),
            "max-age=300",
        ),
        "badredirect.json" => json(
            document(&url, json!({"redirect_uris": ["http://evil.example/cb"]})),
            "max-age=300",
        ),
        "big.json" => json(
            document(
                &url,
                json!({"client_uri": format!("https://a.example/{}", "x".repeat(1900)), "logo_uri": "x".repeat(6000)}),
            ),
            "max-age=300",
        ),
        "notjson.json" => "<html>hello</html>".into_response(),
        "redirect.json" => (StatusCode::FOUND, [(header::LOCATION, "/good.json")]).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn cimd_app(extra: &[&str]) -> TestApp {
    let mut flags = vec!["--cimd-allow-private"];
    flags.extend_from_slice(extra);
    spawn_app_with(&flags).await
}

#[tokio::test]
async fn cl3_a_metadata_document_client_completes_the_flow() {
    let docs = DocServer::start().await;
    let app = cimd_app(&[]).await;
    assert_eq!(
        as_metadata(&app).await["client_id_metadata_document_supported"],
        true
    );
    let client_id = docs.url("good.json");
    let pkce = Pkce::new();
    let browser = Browser::new();
    let start = browser
        .get(&authorize_url(&app, &client_id, &pkce, &[]))
        .await;
    assert_eq!(start.status(), 302);
    let login_url = location(&start).unwrap();
    let login_page = browser.text(&login_url).await;
    assert!(login_page.contains("Doc Client"), "{login_page}");
    let after_login = login(&browser, &login_url, "alice", "password123").await;
    let consent_url = location(&after_login).unwrap();
    let page = browser.text(&consent_url).await;
    // The client's name, where it is identified, the redirect host, the localhost warning.
    assert!(page.contains("Authorize Doc Client"), "{page}");
    assert!(page.contains("metadata document on 127.0.0.1"), "{page}");
    assert!(
        page.contains("<dt>Redirects to</dt><dd><strong>127.0.0.1</strong>"),
        "{page}"
    );
    assert!(page.contains("cannot verify"), "{page}");
    let approved = decide(&browser, &consent_url, "approve").await;
    let callback = location(&approved).unwrap();
    assert!(callback.starts_with(REDIRECT), "{callback}");
    let code = query_param(&callback, "code").unwrap();
    let response = redeem(&app, &client_id, &code, &pkce.verifier).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["access_token"].is_string());
    // Cached per its Cache-Control: /authorize and /token used one fetch.
    assert_eq!(docs.hits("good.json"), 1);
}

#[tokio::test]
async fn cl3_no_localhost_warning_for_an_https_redirect() {
    let docs = DocServer::start().await;
    let app = cimd_app(&[]).await;
    let client_id = docs.url("web.json");
    let browser = Browser::new();
    let redirect = [("redirect_uri", "https://app.example.com/callback")];
    let start = browser
        .get(&authorize_url(&app, &client_id, &Pkce::new(), &redirect))
        .await;
    let after_login = login(&browser, &location(&start).unwrap(), "bob", "hunter2").await;
    let page = browser.text(&location(&after_login).unwrap()).await;
    assert!(page.contains("Authorize Web App"), "{page}");
    assert!(
        page.contains(
            "<dd><strong>app.example.com</strong><div class=\"uri\">https://app.example.com/callback</div></dd>"
        ),
        "{page}"
    );
    assert!(page.contains("metadata document on 127.0.0.1"), "{page}");
    assert!(!page.contains("class=\"warn\""), "{page}");
}

#[tokio::test]
async fn cl3_refused_documents_get_an_error_page_never_a_redirect() {
    let docs = DocServer::start().await;
    let app = cimd_app(&[]).await;
    let cases = [
        ("mismatch.json", "not the URL it was fetched from"),
        // Where the fetch itself failed, the page does not say how (a port and name oracle).
        ("redirect.json", "could not be fetched"),
        ("missing.json", "could not be fetched"),
        ("big.json", "larger than 5 kB"),
        ("secret.json", "token_endpoint_auth_method none"),
        ("pkjwt.json", "must use token_endpoint_auth_method none"),
        ("withsecret.json", "must not contain a client secret"),
        (
            "badredirect.json",
            "http redirect URIs are only allowed for loopback hosts",
        ),
        ("notjson.json", "not a JSON object"),
    ];
    let pkce = Pkce::new();
    for (name, reason) in cases {
        let response = app
            .http
            .get(authorize_url(&app, &docs.url(name), &pkce, &[]))
            .send()
            .await
            .unwrap();
        let page = assert_error_page(response, name).await;
        assert!(page.contains(reason), "{name}: {page}");
        assert!(
            !page.contains("404") && !page.contains("not followed"),
            "{name}: {page}"
        );
        // The token endpoint refuses the same client as invalid_client.
        let token = redeem(&app, &docs.url(name), "code", &pkce.verifier).await;
        assert_eq!(token.status(), 401, "{name}");
    }
    // A redirect URI the document does not list.
    let redirect = [("redirect_uri", "http://127.0.0.1:1/other")];
    let url = authorize_url(&app, &docs.url("good.json"), &pkce, &redirect);
    let response = app.http.get(url).send().await.unwrap();
    assert_error_page(response, "unlisted redirect URI").await;
}

#[tokio::test]
async fn cl3_without_the_development_setting_only_public_https_documents_are_fetched() {
    let docs = DocServer::start().await;
    let app = spawn_app().await;
    let pkce = Pkce::new();
    let port = docs.base.rsplit(':').next().unwrap().to_string();
    let cases = [
        (docs.url("good.json"), "must use https"),
        // A name is resolved by the server: whether it resolved, and to what, is not told.
        (
            format!("https://localhost:{port}/good.json"),
            "could not be fetched",
        ),
        (
            format!("https://127.0.0.1:{port}/good.json"),
            "private, loopback or link-local",
        ),
        (
            format!("https://[::1]:{port}/good.json"),
            "private, loopback or link-local",
        ),
        (
            "https://169.254.169.254/latest.json".to_string(),
            "private, loopback or link-local",
        ),
        (
            format!("https://10.0.0.1:{port}/good.json"),
            "private, loopback or link-local",
        ),
        ("https://a.example".to_string(), "must have a path"),
    ];
    for (client_id, reason) in cases {
        let response = app
            .http
            .get(authorize_url(&app, &client_id, &pkce, &[]))
            .send()
            .await
            .unwrap();
        let page = assert_error_page(response, &client_id).await;
        assert!(page.contains(reason), "{client_id}: {page}");
    }
    assert_eq!(docs.hits("good.json"), 0, "nothing private was fetched");
}

#[tokio::test]
async fn cl3_concurrent_requests_share_one_fetch_and_no_store_is_not_cached() {
    let docs = DocServer::start().await;
    let app = cimd_app(&[]).await;
    let pkce = Pkce::new();
    let slow = docs.url("slow.json");
    let requests = (0..6).map(|_| {
        let url = authorize_url(&app, &slow, &pkce, &[]);
        let http = app.http.clone();
        async move { http.get(url).send().await.unwrap().status() }
    });
    for status in futures::future::join_all(requests).await {
        assert_eq!(status, 302);
    }
    assert_eq!(docs.hits("slow.json"), 1, "single flight");
    // (document, fetches for two requests, why)
    #[rustfmt::skip]
    let cases = [
        ("nostore.json", 2, "no-store is fetched every time"),
        ("good2.json", 1, "max-age is honoured"),
    ];
    for (name, fetches, why) in cases {
        for _ in 0..2 {
            let url = authorize_url(&app, &docs.url(name), &pkce, &[]);
            let response = app.http.get(url).send().await.unwrap();
            assert_eq!(response.status(), 302, "{name}");
        }
        assert_eq!(docs.hits(name), fetches, "{why}");
    }
}

#[tokio::test]
async fn cl3_a_document_that_never_arrives_times_out() {
    let docs = DocServer::start().await;
    let app = cimd_app(&["--cimd-timeout", "1"]).await;
    let pkce = Pkce::new();
    let response = app
        .http
        .get(authorize_url(&app, &docs.url("hang.json"), &pkce, &[]))
        .send()
        .await
        .unwrap();
    let page = assert_error_page(response, "hang.json").await;
    assert!(page.contains("could not be fetched"), "{page}");
}

#[tokio::test]
async fn cl3_documents_can_be_turned_off() {
    let docs = DocServer::start().await;
    let app = cimd_app(&["--no-client-metadata-documents"]).await;
    assert_eq!(
        as_metadata(&app).await["client_id_metadata_document_supported"],
        false
    );
    let response = app
        .http
        .get(authorize_url(
            &app,
            &docs.url("good3.json"),
            &Pkce::new(),
            &[],
        ))
        .send()
        .await
        .unwrap();
    let page = assert_error_page(response, "good3.json").await;
    assert!(page.contains("unknown client_id"), "{page}");
    assert_eq!(docs.hits("good3.json"), 0);
}

async fn register_status(app: &TestApp, body: Value) -> (u16, Value) {
    let response = post_register(app, &body).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn cl1_registration_applies_application_type_rules() {
    let app = spawn_app().await;
    // (redirect URI, application_type sent, status, application_type answered or error)
    let cases = [
        (REDIRECT, None, 201, "native"),
        ("https://vscode.dev/redirect", None, 201, "web"),
        ("https://vscode.dev/redirect", Some("web"), 201, "web"),
        (REDIRECT, Some("native"), 201, "native"),
        ("com.example.app:/cb", Some("native"), 201, "native"),
        (
            "https://claude.ai/api/mcp/auth_callback",
            Some("native"),
            201,
            "native",
        ),
        (REDIRECT, Some("web"), 400, "invalid_redirect_uri"),
        (
            "https://localhost/cb",
            Some("web"),
            400,
            "invalid_redirect_uri",
        ),
        (
            "com.example.app:/cb",
            Some("web"),
            400,
            "invalid_redirect_uri",
        ),
        (REDIRECT, Some("desktop"), 400, "invalid_client_metadata"),
    ];
    for (uri, app_type, status, expected) in cases {
        let mut body = json!({"redirect_uris": [uri], "client_name": "t"});
        if let Some(t) = app_type {
            body["application_type"] = json!(t);
        }
        let (got, answer) = register_status(&app, body).await;
        assert_eq!(got, status, "{uri} {app_type:?}: {answer}");
        if status == 201 {
            assert_eq!(answer["application_type"], expected, "{uri}");
        } else {
            assert_eq!(answer["error"], expected, "{uri}");
        }
    }
}

fn argon2_hash(secret: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"a-fixed-test-salt").unwrap();
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// A clients file with `text`, removed when dropped.
fn clients_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new()
        .prefix("mcp-oauth-clients-")
        .suffix(".toml")
        .tempfile()
        .unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[tokio::test]
async fn preregistered_public_and_confidential_clients_complete_the_flow() {
    let file = clients_file(&format!(
        r#"
[[client]]
client_id = "cli-public"
client_name = "Public CLI"
redirect_uris = ["{REDIRECT}"]
token_endpoint_auth_method = "none"

[[client]]
client_id = "ops-console"
client_name = "Ops console"
redirect_uris = ["{REDIRECT}"]
client_secret_hash = "{}"
scope = "mcp.read"
"#,
        argon2_hash("correct horse")
    ));
    let path = file.path().to_str().unwrap().to_string();
    let app = spawn_app_with(&["--clients-file", &path, "--no-dynamic-registration"]).await;
    // Read at start: the file is not needed after.
    drop(file);

    // Dynamic registration is off: /register refuses (RFC 7591 section 3.2.2) and neither
    // metadata document names it.
    let (status, answer) = register_status(&app, json!({"redirect_uris": [REDIRECT]})).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"], "invalid_client_metadata");
    let md = as_metadata(&app).await;
    assert!(md.get("registration_endpoint").is_none(), "{md}");
    let openid = app
        .get_json(&app.url("/.well-known/openid-configuration"))
        .await;
    assert_eq!(md, openid);

    // The public client.
    let pkce = Pkce::new();
    let callback = authorize_as(
        &app,
        &Browser::new(),
        "cli-public",
        &pkce,
        "alice",
        "password123",
    )
    .await;
    let code = query_param(&callback, "code").unwrap();
    let response = redeem(&app, "cli-public", &code, &pkce.verifier).await;
    assert_eq!(response.status(), 200);

    // The confidential client: its registered scope, its secret with HTTP Basic.
    let pkce = Pkce::new();
    let browser = Browser::new();
    let params = [
        ("response_type", "code"),
        ("client_id", "ops-console"),
        ("redirect_uri", REDIRECT),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
        ("state", "s"),
    ];
    let url = url::Url::parse_with_params(&app.url("/authorize"), &params).unwrap();
    let login_url = browser.redirect_from(url.as_str()).await;
    let approved = login_and_decide(&browser, &login_url, "bob", "hunter2", "approve").await;
    let code = query_param(&location(&approved).unwrap(), "code").unwrap();
    let redemption = TokenRequest::code(&code, &pkce.verifier);
    let token = |secret: &str| redemption.clone().basic("ops-console", secret);
    let wrong = token("wrong").send(&app).await;
    assert_eq!(wrong.status(), 401);
    let right = token("correct horse").send(&app).await;
    assert_eq!(right.status(), 200);
    let body: Value = right.json().await.unwrap();
    assert_eq!(body["scope"], "mcp.read");
    // Without its secret, the confidential client is refused.
    let public_attempt = redeem(&app, "ops-console", "any", &pkce.verifier).await;
    assert_eq!(public_attempt.status(), 401);
}

#[tokio::test]
async fn a_bad_clients_file_is_a_bad_setting() {
    let file = clients_file(
        "[[client]]\nclient_id = \"x\"\nredirect_uris = [\"http://example.com/cb\"]\n",
    );
    // Read when the server is built: the settings themselves are valid.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let path = file.path().to_str().unwrap();
    let Err(err) = build_auth_server(listener, &["--clients-file", path]).await else {
        panic!("a bad clients file was accepted");
    };
    let message = err.to_string();
    assert!(
        message.starts_with("AUTH_SERVER_CLIENTS_FILE: "),
        "{message}"
    );
    assert!(message.contains("\"x\""), "{message}");
    assert!(message.contains("loopback"), "{message}");
}

/// Documents of many URLs at once: at most 4 fetches run together for one source and 32 in all;
/// the requests beyond get the 503 busy page at once (not a fetch, not an error page about the
/// document). Sources are told apart through a trusted proxy's `X-Forwarded-For`.
#[tokio::test]
async fn concurrent_document_fetches_are_capped_per_source_and_in_all() {
    let docs = DocServer::start().await;
    let mut settings = vec![
        "--cimd-allow-private",
        "--cimd-timeout",
        "10",
        "--trusted-proxies",
        "127.0.0.1",
    ];
    settings.extend(mcp_oauth_testkit::NO_RATE_LIMITS);
    let app = spawn_app_with(&settings).await;
    // (case, sources, requests per source, served, busy)
    let cases: &[(&str, usize, usize, usize, usize)] = &[
        ("one source", 1, 8, 4, 4),
        ("sixteen sources", 16, 3, 32, 16),
    ];
    for (round, (case, sources, each, served, busy)) in cases.iter().enumerate() {
        let requests = (0..sources * each).map(|i| {
            let name = format!("hang-{round}-{i}.json");
            let url = authorize_url(&app, &docs.url(&name), &Pkce::new(), &[]);
            let request = app
                .http
                .get(url)
                .header("x-forwarded-for", format!("198.51.100.{}", i % sources));
            async move { request.send().await.unwrap().status().as_u16() }
        });
        let statuses = futures::future::join_all(requests).await;
        let count = |status| statuses.iter().filter(|s| **s == status).count();
        assert_eq!(
            (count(302), count(503)),
            (*served, *busy),
            "{case}: {statuses:?}"
        );
        let fetched: usize = (0..sources * each)
            .map(|i| docs.hits(&format!("hang-{round}-{i}.json")))
            .sum();
        assert_eq!(fetched, *served, "{case}");
    }
    // Once they are done there is room again.
    let url = authorize_url(&app, &docs.url("good.json"), &Pkce::new(), &[]);
    assert_eq!(app.http.get(url).send().await.unwrap().status(), 302);
}
