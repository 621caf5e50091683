//! The servers under test: both started in-process on port 0 through the binaries' own settings
//! parser, stopped and restarted on the same ports; and the process's one tracing subscriber.
//! The crate's own types that tests need are imported here only.

use clap::Parser;
use mcp_oauth::config::{AuthServerConfig, McpServerConfig};
use mcp_oauth::{AuthServer, McpServer};
use serde_json::Value;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use mcp_oauth::oauth::jws::ActiveKey;

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
    pub key: Arc<ActiveKey>,
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

    /// The URL of `path` at the authorization server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// A GET of `path` at the authorization server, from the plain client.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    /// A POST to `path` at the authorization server, from the plain client.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path))
    }

    /// The JSON document at `url` (any server), fetched by the plain client.
    pub async fn get_json(&self, url: &str) -> Value {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
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
        let extra = self.extra.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        self.restart_with(&extra).await
    }

    /// Shuts both servers down and starts them again on the same ports (so the same issuer)
    /// with other settings: another store, for one.
    pub async fn restart_with(self, extra: &[&str]) -> TestApp {
        let as_port = port_of(&self.issuer);
        let rs_port = port_of(&self.rs);
        self.stop().await;
        let as_listener = TcpListener::bind(("127.0.0.1", as_port)).await.unwrap();
        let rs_listener = TcpListener::bind(("127.0.0.1", rs_port)).await.unwrap();
        start("http", "", as_listener, rs_listener, extra).await
    }
}

/// A free loopback port (bound, then released for a server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn port_of(url: &str) -> u16 {
    url::Url::parse(url).unwrap().port().unwrap()
}

/// Starts both servers, in memory (nothing shared between tests).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts both servers; `extra` are command-line settings added to the defaults. Unless `extra`
/// names a `--data-dir` or a `--database-url`, the store is in memory.
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
    global_subscriber();
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
    if !extra.contains(&"--data-dir") && !extra.contains(&"--database-url") {
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

/// Builds the authorization server alone on `listener` from command-line `settings` (without
/// the program name), which must be valid settings; a refusal to start is its message.
pub async fn build_auth_server(listener: TcpListener, settings: &[&str]) -> Result<(), String> {
    #[derive(Parser)]
    struct AuthCli {
        #[command(flatten)]
        auth: AuthServerConfig,
    }
    let words = std::iter::once("test").chain(settings.iter().copied());
    let cli = AuthCli::try_parse_from(words).expect("the settings parse");
    let config = cli.auth.validate().expect("the settings are valid");
    AuthServer::build_on(listener, config)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Installs the process's one global tracing subscriber, once: with `TEST_LOG` set, the
/// binaries' filter printed to the test output; otherwise one that records nothing. A global
/// subscriber must exist beside the trace test's thread-scoped one: with no other subscriber
/// registered, `tracing` decides whether a call site is enabled by asking the subscriber of
/// whichever thread reaches it first, so a call site first reached by another test's thread
/// would stay disabled for the trace test too.
pub fn global_subscriber() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(mcp_oauth::trace::DEFAULT_FILTER)
                .try_init();
        } else {
            use tracing_subscriber::prelude::*;
            let off =
                tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::OFF);
            let _ = tracing::subscriber::set_global_default(off);
        }
    });
}

/// Captures the binaries' trace lines (their own format and filter) for the calling thread while
/// the guard lives. Only what this thread runs is captured: a test that uses it runs on a
/// current-thread runtime, where its servers' tasks run too.
pub fn capture_trace() -> (TraceCapture, tracing::subscriber::DefaultGuard) {
    use tracing_subscriber::prelude::*;
    global_subscriber();
    let captured = TraceCapture::default();
    let writer = captured.clone();
    let guard = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            mcp_oauth::trace::DEFAULT_FILTER,
        ))
        .with(mcp_oauth::trace::layer(move || writer.clone(), false))
        .set_default();
    (captured, guard)
}

/// The trace lines written so far.
#[derive(Clone, Default)]
pub struct TraceCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl TraceCapture {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for TraceCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The fingerprint under which the trace shows a secret.
pub fn fingerprint(secret: &str) -> String {
    mcp_oauth::trace::fingerprint(secret)
}
