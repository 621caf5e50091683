//! The binaries as deployed: the authorization server and the resource server, each its own
//! process on free ports, and what a client knows of them. For the tests that need real
//! processes (a kill, a restart, another process changing the store).

use super::app::free_port;
use mcp_oauth_testkit as kit;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `mcp-oauth ARGS` to its end with `stdin` as standard input (a command, not a server).
pub fn run_mcp_oauth(args: &[&std::ffi::OsStr], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(args)
        .env_remove("AUTH_SERVER_KEY_ENCRYPTION_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// One of the binaries, killed when dropped. Its output is discarded, or kept in a file of its own
/// under `$MCP_OAUTH_TEST_SERVER_LOGS` when that names a directory (to read after a failure).
pub struct Server(Child);

impl Server {
    pub fn start(binary: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new(binary);
        cmd.args(args).current_dir(std::env::temp_dir());
        for var in [
            "AUTH_SERVER_ISSUER",
            "AUTH_SERVER_SESSION_SECRET",
            "AUTH_SERVER_INTROSPECTION_SECRET",
            "MCP_INTROSPECTION_SECRET",
            "AUTHORIZATION_SERVER_URL",
            "RESOURCE_SERVER_URL",
            "PUBLIC_URL",
            "LISTEN_ADDRESS",
        ] {
            cmd.env_remove(var);
        }
        match std::env::var_os("MCP_OAUTH_TEST_SERVER_LOGS") {
            Some(dir) => {
                let name = std::path::Path::new(binary)
                    .file_name()
                    .map_or_else(|| "server".into(), |n| n.to_string_lossy().into_owned());
                let file = tempfile::Builder::new()
                    .prefix(&format!("{name}-"))
                    .suffix(".log")
                    .disable_cleanup(true)
                    .tempfile_in(dir)
                    .unwrap()
                    .into_file();
                cmd.stdout(file.try_clone().unwrap()).stderr(file);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        Server(cmd.spawn().unwrap())
    }

    pub fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `url` answers 200.
pub async fn wait_ready(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = http.get(url).send().await
            && response.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of an MCP `initialize` with `token`.
pub async fn mcp_status_at(http: &reqwest::Client, mcp: &str, token: &str) -> u16 {
    http.post(mcp)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&kit::initialize_request("revocation test"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Asks with `token` until the answer is `status`; how long that took. Panics after 5 s.
pub async fn until_status(http: &reqwest::Client, mcp: &str, token: &str, status: u16) -> Duration {
    let started = Instant::now();
    loop {
        if mcp_status_at(http, mcp, token).await == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still not {status} after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The authorization server binary and what a client knows of it.
pub struct Issuer {
    pub url: String,
    pub http: reqwest::Client,
    pub client_id: String,
}

pub const REDIRECT_URI: &str = "http://127.0.0.1:53682/callback";

impl Issuer {
    /// Waits until the authorization server at `url` and the resource server at `resource` are
    /// ready, then registers a public client there.
    pub async fn when_ready(url: String, resource: &str) -> Issuer {
        let http = reqwest::Client::new();
        wait_ready(&http, &format!("{url}/readyz")).await;
        wait_ready(&http, &format!("{resource}/readyz")).await;
        let registration =
            json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"});
        let client_id =
            kit::client_id(&kit::register(&http, &url, &registration).await.unwrap()).unwrap();
        Issuer {
            url,
            http,
            client_id,
        }
    }

    /// A code for alice (signed in and approved in a new browser) and its verifier.
    pub async fn code(&self, resource: &str) -> (String, String) {
        self.code_as(resource, "alice", "password123").await
    }

    /// A code for `user` (signed in and approved in a new browser) and its verifier.
    pub async fn code_as(&self, resource: &str, user: &str, password: &str) -> (String, String) {
        let pkce = kit::Pkce::new();
        let url = kit::authorize_url(
            &self.url,
            &self.client_id,
            &pkce.challenge,
            &[
                ("redirect_uri", REDIRECT_URI),
                ("scope", "mcp.read mcp.write"),
                ("resource", resource),
                ("state", "s"),
            ],
        )
        .unwrap();
        let browser = kit::browser().unwrap();
        let back = kit::authorize(&browser, &url, user, password)
            .await
            .unwrap();
        (kit::code_of(&back).unwrap(), pkce.verifier)
    }

    pub async fn redeem(&self, code: &str, verifier: &str) -> reqwest::Response {
        kit::redeem(
            &self.http,
            &self.url,
            &self.client_id,
            REDIRECT_URI,
            code,
            verifier,
            &[],
        )
        .await
        .unwrap()
    }

    /// Tokens for alice: the token endpoint's answer.
    pub async fn tokens(&self, resource: &str) -> Value {
        self.tokens_as(resource, "alice", "password123").await
    }

    /// Tokens for `user`: the token endpoint's answer.
    pub async fn tokens_as(&self, resource: &str, user: &str, password: &str) -> Value {
        let (code, verifier) = self.code_as(resource, user, password).await;
        let response = self.redeem(&code, &verifier).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let url = format!("{}{path}", self.url);
        self.http.post(url).form(form).send().await.unwrap()
    }
}

/// Both binaries: the authorization server on its SQLite store in `data_dir` with `as_extra`,
/// the resource server with its defaults and `rs_extra`; ready, with a registered public client.
pub struct Deployment {
    pub auth: Server,
    pub rs: Server,
    pub issuer: Issuer,
    /// The MCP endpoint.
    pub mcp: String,
    /// The authorization server's arguments, to start it again.
    pub as_args: Vec<String>,
}

pub async fn deploy(
    data_dir: &std::path::Path,
    as_extra: &[&str],
    rs_extra: &[&str],
) -> Deployment {
    let (as_port, rs_port) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{as_port}");
    let resource = format!("http://127.0.0.1:{rs_port}");
    let as_args: Vec<String> = [
        "--issuer",
        &issuer,
        "--resource",
        &resource,
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]
    .iter()
    .chain(as_extra)
    .map(|s| s.to_string())
    .collect();
    let as_refs: Vec<&str> = as_args.iter().map(String::as_str).collect();
    let auth = Server::start(env!("CARGO_BIN_EXE_auth-server"), &as_refs);
    let mut rs_args = vec![
        "--authorization-server",
        &issuer,
        "--resource-server",
        &resource,
    ];
    rs_args.extend_from_slice(rs_extra);
    let rs = Server::start(env!("CARGO_BIN_EXE_mcp-server"), &rs_args);
    let issuer = Issuer::when_ready(issuer, &resource).await;
    Deployment {
        auth,
        rs,
        issuer,
        mcp: format!("{resource}/mcp"),
        as_args,
    }
}
