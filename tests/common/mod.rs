//! Test harness: both servers started in-process on port 0, and a client that plays the browser
//! and the OAuth client over real HTTP. No handler is called directly and no actor is mocked.
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser;
use mcp_oauth::config::{AuthServerConfig, McpServerConfig};
use mcp_oauth::{AuthServer, McpServer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

#[derive(Parser)]
struct TestCli {
    #[command(flatten)]
    auth: AuthServerConfig,
    #[command(flatten)]
    mcp: McpServerConfig,
}

/// Both servers, running.
pub struct TestApp {
    /// The issuer, e.g. `http://127.0.0.1:PORT`.
    pub issuer: String,
    /// The resource server's base URL.
    pub rs: String,
    /// A plain client: no cookies, no redirects followed.
    pub http: reqwest::Client,
    /// The authorization server's signing key, to mint tokens it would never issue.
    pub key: std::sync::Arc<mcp_oauth::actors::signing_keys::ActiveKey>,
    /// The authorization server's store (to make it fail in tests).
    pub store: mcp_oauth::store::SharedStore,
    /// Tells both servers to shut down.
    stop: tokio::sync::watch::Sender<bool>,
    /// The two servers' serve loops (each ends after its shutdown completes).
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The settings both servers were started with, for a restart.
    extra: Vec<String>,
}

impl TestApp {
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.rs)
    }

    /// Shuts both servers down gracefully (drain, flush, store closed) and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for server in self.servers {
            server.await.unwrap().unwrap();
        }
    }

    /// Shuts both servers down and starts them again on the same ports with the same settings
    /// (so the same issuer and data directory).
    pub async fn restart(self) -> TestApp {
        let as_port = port_of(&self.issuer);
        let rs_port = port_of(&self.rs);
        let extra = self.extra.clone();
        self.stop().await;
        let as_listener = TcpListener::bind(("127.0.0.1", as_port)).await.unwrap();
        let rs_listener = TcpListener::bind(("127.0.0.1", rs_port)).await.unwrap();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        start("http", "", as_listener, rs_listener, &extra).await
    }
}

fn port_of(url: &str) -> u16 {
    url::Url::parse(url).unwrap().port().unwrap()
}

/// Starts both servers, in memory (nothing shared between tests).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts both servers; `extra` are command-line settings added to the defaults. Unless `extra`
/// names a `--data-dir`, the store is in memory.
pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    spawn_app_at("", extra).await
}

/// Starts both servers with their store in `data_dir` (restart tests).
pub async fn spawn_app_in(data_dir: &std::path::Path, extra: &[&str]) -> TestApp {
    let dir = data_dir.to_str().unwrap().to_string();
    let mut args: Vec<&str> = vec!["--data-dir", &dir];
    args.extend_from_slice(extra);
    spawn_app_with(&args).await
}

/// Starts both servers with an issuer that has a path (`/auth`, say).
pub async fn spawn_app_at(issuer_path: &str, extra: &[&str]) -> TestApp {
    spawn_app_full("http", issuer_path, extra).await
}

/// Starts both servers; the issuer has `scheme` (an `https` issuer behind which the servers
/// still listen on plain http, as behind a TLS-terminating proxy) and `issuer_path`.
pub async fn spawn_app_full(scheme: &str, issuer_path: &str, extra: &[&str]) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(mcp_oauth::trace::DEFAULT_FILTER)
            .try_init();
    }
    let as_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rs_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start(scheme, issuer_path, as_listener, rs_listener, extra).await
}

async fn start(
    scheme: &str,
    issuer_path: &str,
    as_listener: TcpListener,
    rs_listener: TcpListener,
    extra: &[&str],
) -> TestApp {
    let issuer = format!(
        "{scheme}://127.0.0.1:{}{issuer_path}",
        as_listener.local_addr().unwrap().port()
    );
    let rs = format!(
        "http://127.0.0.1:{}",
        rs_listener.local_addr().unwrap().port()
    );
    let mut args = vec![
        "test".to_string(),
        "--issuer".into(),
        issuer.clone(),
        "--resource".into(),
        rs.clone(),
        "--authorization-server".into(),
        issuer.clone(),
        "--resource-server".into(),
        rs.clone(),
    ];
    if !extra.contains(&"--data-dir") {
        args.push("--in-memory".into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let cli = TestCli::try_parse_from(args).expect("test settings parse");
    let auth = AuthServer::build_on(as_listener, cli.auth.validate().unwrap())
        .await
        .unwrap();
    let mcp = McpServer::build_on(rs_listener, cli.mcp.validate().unwrap())
        .await
        .unwrap();
    let key = auth.signing_key();
    let store = auth.store();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Servers of a dropped TestApp keep running, as before there was a stop.
    let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        if rx.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let servers = vec![
        tokio::spawn(auth.run_until(until(stopped.clone()))),
        tokio::spawn(mcp.run_until(until(stopped))),
    ];
    TestApp {
        store,
        stop,
        servers,
        extra: extra.iter().map(|s| s.to_string()).collect(),
        issuer: issuer.replacen("https://", "http://", 1),
        rs,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        key,
    }
}

/// A PKCE pair computed independently of the server's code.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes[..]);
        let verifier = URL_SAFE_NO_PAD.encode(bytes);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

pub const REDIRECT: &str = "http://127.0.0.1:53682/callback";

/// Registers a public client with one loopback redirect URI; returns its id.
pub async fn register(app: &TestApp) -> String {
    register_with(app, json!({"client_name": "Test Client", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}))
        .await["client_id"]
        .as_str()
        .unwrap()
        .to_string()
}

pub async fn register_with(app: &TestApp, body: Value) -> Value {
    let response = app
        .http
        .post(format!("{}/register", app.issuer))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "registration refused");
    response.json().await.unwrap()
}

/// A browser: keeps cookies, follows no redirects (so every hop can be checked).
pub struct Browser {
    pub http: reqwest::Client,
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.unwrap()
    }

    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(url).form(form).send().await.unwrap()
    }
}

/// The `Location` of a redirect, resolved against `base`.
pub fn location(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get("location")?.to_str().ok()?;
    Some(
        url::Url::parse(response.url().as_str())
            .ok()?
            .join(value)
            .ok()?
            .to_string(),
    )
}

/// The value of a hidden form field in a page.
pub fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in page"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

/// The `action` of the (one) form in a page.
pub fn form_action(html: &str) -> String {
    let marker = "action=\"";
    let start = html.find(marker).expect("a form") + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end]
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The authorization URL for a client, with the usual MCP parameters.
pub fn authorize_url(
    app: &TestApp,
    client_id: &str,
    pkce: &Pkce,
    extra: &[(&str, &str)],
) -> String {
    let mut url = url::Url::parse(&format!("{}/authorize", app.issuer)).unwrap();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "xyz-state")
            .append_pair("scope", "mcp.read mcp.write")
            .append_pair("resource", &app.mcp_url());
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

/// Signs in on the login page the browser was sent to; returns the response to the login post.
pub async fn login(
    browser: &Browser,
    login_url: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let page = browser.get(login_url).await;
    assert_eq!(page.status(), 200, "login page");
    let html = page.text().await.unwrap();
    let csrf = hidden_field(&html, "csrf_token");
    let request = hidden_field(&html, "request");
    let action = form_action(&html);
    browser
        .post_form(
            &action,
            &[
                ("csrf_token", &csrf),
                ("request", &request),
                ("username", user),
                ("password", password),
            ],
        )
        .await
}

/// Posts the login form with the given CSRF token and request id.
pub async fn post_login(
    browser: &Browser,
    issuer: &str,
    csrf: &str,
    request: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    browser
        .post_form(
            &format!("{issuer}/login"),
            &[
                ("csrf_token", csrf),
                ("request", request),
                ("username", user),
                ("password", password),
            ],
        )
        .await
}

/// Approves or denies on the consent page; returns the response to the consent post.
pub async fn decide(browser: &Browser, consent_url: &str, decision: &str) -> reqwest::Response {
    let page = browser.get(consent_url).await;
    assert_eq!(page.status(), 200, "consent page");
    let html = page.text().await.unwrap();
    let csrf = hidden_field(&html, "csrf_token");
    let request = hidden_field(&html, "request");
    let action = form_action(&html);
    browser
        .post_form(
            &action,
            &[
                ("csrf_token", &csrf),
                ("request", &request),
                ("decision", decision),
            ],
        )
        .await
}

/// Runs /authorize -> login -> consent (approve) in a fresh browser; returns the final redirect
/// to the client (with `code`, `state`, `iss`).
pub async fn authorize_as(
    app: &TestApp,
    browser: &Browser,
    client_id: &str,
    pkce: &Pkce,
    user: &str,
    password: &str,
) -> String {
    let start = browser.get(&authorize_url(app, client_id, pkce, &[])).await;
    assert_eq!(start.status(), 302);
    let login_url = location(&start).unwrap();
    assert!(login_url.contains("/login?request="), "{login_url}");
    let after_login = login(browser, &login_url, user, password).await;
    assert_eq!(after_login.status(), 302, "login should redirect");
    let consent_url = location(&after_login).unwrap();
    if consent_url.starts_with(REDIRECT) {
        // The user approved this client before: the consent page is skipped.
        return consent_url;
    }
    assert!(consent_url.contains("/consent?request="), "{consent_url}");
    let approved = decide(browser, &consent_url, "approve").await;
    assert_eq!(approved.status(), 302);
    location(&approved).unwrap()
}

/// Redeems a code for a public client.
pub async fn redeem(
    app: &TestApp,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    app.http
        .post(format!("{}/token", app.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", client_id),
            ("code_verifier", verifier),
            ("resource", &app.mcp_url()),
        ])
        .send()
        .await
        .unwrap()
}

/// A full flow as `user`: registration, authorization, token. Returns the access token.
pub async fn token_for(app: &TestApp, user: &str, password: &str) -> String {
    let client_id = register(app).await;
    let pkce = Pkce::new();
    let browser = Browser::new();
    let callback = authorize_as(app, &browser, &client_id, &pkce, user, password).await;
    let code = query_param(&callback, "code").unwrap();
    let response = redeem(app, &client_id, &code, &pkce.verifier).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

/// Posts a JSON-RPC message to the MCP endpoint with a token (and a session, if given).
pub async fn mcp_post(
    app: &TestApp,
    token: Option<&str>,
    session: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.mcp_url())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.send().await.unwrap()
}

pub fn initialize_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1.0"}}})
}

/// Opens an MCP session with a token; returns the session id.
pub async fn open_session(app: &TestApp, token: &str) -> String {
    let response = mcp_post(app, Some(token), None, initialize_body()).await;
    assert_eq!(response.status(), 200);
    let session = response
        .headers()
        .get("mcp-session-id")
        .expect("session id")
        .to_str()
        .unwrap()
        .to_string();
    let _ = response.text().await;
    let initialized = mcp_post(
        app,
        Some(token),
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(initialized.status(), 202);
    session
}

/// The JSON-RPC result in a response body (JSON or one SSE `data:` line).
pub async fn rpc_result(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    let json_text = if text.trim_start().starts_with('{') {
        text
    } else {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON-RPC message in {text}"))
            .to_string()
    };
    serde_json::from_str(&json_text).unwrap()
}

/// The resource-server introspection credential the token-lifecycle tests configure.
pub const INTROSPECTION_SECRET: &str = "rs-introspection-secret-for-tests";

/// Settings that turn introspection on at both servers with [`INTROSPECTION_SECRET`], without
/// the RS's answer cache (so that a refusal follows a revocation at once).
pub const INTROSPECT_FLAGS: &[&str] = &[
    "--introspection-secret",
    INTROSPECTION_SECRET,
    "--introspect",
    "--rs-introspection-secret",
    INTROSPECTION_SECRET,
    "--introspection-cache-seconds",
    "0",
];

/// Runs a full flow for `client_id` as alice and redeems the code; returns the token response.
pub async fn tokens_for_client(app: &TestApp, client_id: &str) -> Value {
    let pkce = Pkce::new();
    let browser = Browser::new();
    let callback = authorize_as(app, &browser, client_id, &pkce, "alice", "password123").await;
    let code = query_param(&callback, "code").unwrap();
    let response = redeem(app, client_id, &code, &pkce.verifier).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `grant_type=refresh_token` for a public client, with extra form fields.
pub async fn refresh(
    app: &TestApp,
    client_id: &str,
    refresh_token: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", client_id),
    ];
    form.extend_from_slice(extra);
    app.http
        .post(format!("{}/token", app.issuer))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// The authorization server's RFC 8414 metadata.
pub async fn as_metadata(app: &TestApp) -> Value {
    app.http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            app.issuer
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Introspects `token` as a confidential client (HTTP Basic); the answer must be 200, not cached.
pub async fn introspect_as_client(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    token: &str,
) -> Value {
    let response = app
        .http
        .post(format!("{}/introspect", app.issuer))
        .basic_auth(client_id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

pub async fn introspect_as_rs(app: &TestApp, token: &str) -> Value {
    let response = app
        .http
        .post(format!("{}/introspect", app.issuer))
        .bearer_auth(INTROSPECTION_SECRET)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Revokes a token as a public client (RFC 7009); returns the response.
pub async fn revoke_token(
    app: &TestApp,
    client_id: &str,
    token: &str,
    hint: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![("token", token), ("client_id", client_id)];
    if let Some(hint) = hint {
        form.push(("token_type_hint", hint));
    }
    app.http
        .post(format!("{}/revoke", app.issuer))
        .form(&form)
        .send()
        .await
        .unwrap()
}
