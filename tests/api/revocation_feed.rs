//! Revocation reaches the resource server (RFC 7009 section 2; OAuth 2.1 section 4.1.3 on
//! replayed codes): the authorization server publishes revoked token ids on its feed and the
//! resource server follows it, so a revoked token, the token of a replayed code and the tokens
//! of a reused refresh token are refused within a second, in the default configuration, with no
//! introspection. While the feed is silent for longer than the allowed lag the resource server
//! vouches for no token (503), and it catches up when the feed is back.

use crate::helpers::*;
use mcp_oauth_testkit as kit;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One of the binaries, its output discarded; killed when dropped.
struct Server(Child);

impl Server {
    fn start(binary: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new(binary);
        cmd.args(args).current_dir(std::env::temp_dir());
        for var in [
            "AUTH_SERVER_ISSUER",
            "AUTH_SERVER_SESSION_SECRET",
            "AUTH_SERVER_INTROSPECTION_SECRET",
            "MCP_INTROSPECTION_SECRET",
            "AUTHORIZATION_SERVER_URL",
            "RESOURCE_SERVER_URL",
        ] {
            cmd.env_remove(var);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        Server(cmd.spawn().unwrap())
    }

    fn kill(mut self) {
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
async fn wait_ready(http: &reqwest::Client, url: &str) {
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
async fn mcp_status_at(http: &reqwest::Client, mcp: &str, token: &str) -> u16 {
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
async fn until_status(http: &reqwest::Client, mcp: &str, token: &str, status: u16) -> Duration {
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
struct Issuer {
    url: String,
    http: reqwest::Client,
    client_id: String,
}

const REDIRECT_URI: &str = "http://127.0.0.1:53682/callback";

impl Issuer {
    /// A code for alice (signed in and approved in a new browser) and its verifier.
    async fn code(&self, resource: &str) -> (String, String) {
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
        let back = kit::authorize(&browser, &url, "alice", "password123")
            .await
            .unwrap();
        (kit::code_of(&back).unwrap(), pkce.verifier)
    }

    async fn redeem(&self, code: &str, verifier: &str) -> reqwest::Response {
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
    async fn tokens(&self, resource: &str) -> Value {
        let (code, verifier) = self.code(resource).await;
        let response = self.redeem(&code, &verifier).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let url = format!("{}{path}", self.url);
        self.http.post(url).form(form).send().await.unwrap()
    }
}

/// The binaries as deployed, each on its own: the authorization server with its SQLite store,
/// the resource server with only its defaults (no introspection) and a short allowed lag.
#[tokio::test]
async fn revocations_reach_the_resource_server_binary_within_a_second() {
    let data = tempfile::tempdir().unwrap();
    let (as_port, rs_port) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{as_port}");
    let resource = format!("http://127.0.0.1:{rs_port}");
    let mcp = format!("{resource}/mcp");
    let data_dir = data.path().to_str().unwrap().to_string();
    let as_args = [
        "--issuer",
        &issuer,
        "--resource",
        &resource,
        "--data-dir",
        &data_dir,
    ];
    let auth = Server::start(env!("CARGO_BIN_EXE_auth-server"), &as_args);
    let _rs = Server::start(
        env!("CARGO_BIN_EXE_mcp-server"),
        &[
            "--authorization-server",
            &issuer,
            "--resource-server",
            &resource,
            "--revocation-feed-max-lag",
            "2",
        ],
    );
    let http = reqwest::Client::new();
    wait_ready(
        &http,
        &format!("{issuer}/.well-known/oauth-authorization-server"),
    )
    .await;
    wait_ready(
        &http,
        &format!("{resource}/.well-known/oauth-protected-resource"),
    )
    .await;
    let registration =
        json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"});
    let client_id =
        kit::client_id(&kit::register(&http, &issuer, &registration).await.unwrap()).unwrap();
    let issuer = Issuer {
        url: issuer.clone(),
        http: http.clone(),
        client_id,
    };

    // A token revoked at /revoke.
    let tokens = issuer.tokens(&mcp).await;
    let revoked = field(&tokens, "access_token");
    assert_eq!(mcp_status_at(&http, &mcp, &revoked).await, 200);
    let response = issuer
        .post(
            "/revoke",
            &[("token", &revoked), ("client_id", &issuer.client_id)],
        )
        .await;
    assert_eq!(response.status(), 200);
    let took = until_status(&http, &mcp, &revoked, 401).await;
    assert!(
        took < Duration::from_secs(1),
        "/revoke reached the RS in {took:?}"
    );

    // The token of a code that is then replayed.
    let (code, verifier) = issuer.code(&mcp).await;
    let first = issuer.redeem(&code, &verifier).await;
    let replayed_token = field(&first.json::<Value>().await.unwrap(), "access_token");
    assert_eq!(mcp_status_at(&http, &mcp, &replayed_token).await, 200);
    assert_eq!(issuer.redeem(&code, &verifier).await.status(), 400);
    let took = until_status(&http, &mcp, &replayed_token, 401).await;
    assert!(
        took < Duration::from_secs(1),
        "a code replay reached the RS in {took:?}"
    );

    // The tokens of a refresh-token family whose retired token is presented again.
    let tokens = issuer.tokens(&mcp).await;
    let (first_access, first_refresh) = (
        field(&tokens, "access_token"),
        field(&tokens, "refresh_token"),
    );
    let refresh = |token: String| {
        let issuer = &issuer;
        async move {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
                ("client_id", issuer.client_id.as_str()),
            ];
            issuer.post("/token", &form).await
        }
    };
    let rotated: Value = refresh(first_refresh.clone()).await.json().await.unwrap();
    let second_access = field(&rotated, "access_token");
    let rotated: Value = refresh(field(&rotated, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    let third_access = field(&rotated, "access_token");
    assert_eq!(mcp_status_at(&http, &mcp, &third_access).await, 200);
    // A token retired before the last rotation is outside the grace window: reuse.
    assert_eq!(refresh(first_refresh).await.status(), 400);
    for token in [&first_access, &second_access, &third_access] {
        let took = until_status(&http, &mcp, token, 401).await;
        assert!(
            took < Duration::from_secs(1),
            "reuse reached the RS in {took:?}"
        );
    }

    // The authorization server goes away: once the feed has been silent for longer than the
    // allowed lag, no token is vouched for.
    let valid = field(&issuer.tokens(&mcp).await, "access_token");
    assert_eq!(mcp_status_at(&http, &mcp, &valid).await, 200);
    auth.kill();
    until_status(&http, &mcp, &valid, 503).await;

    // It comes back (a new run, the same store): the resource server catches up from a
    // snapshot; what was revoked stays refused, what was not is accepted again, and a new
    // revocation arrives as before.
    let _auth = Server::start(env!("CARGO_BIN_EXE_auth-server"), &as_args);
    until_status(&http, &mcp, &valid, 200).await;
    for token in [&revoked, &replayed_token, &first_access, &third_access] {
        assert_eq!(mcp_status_at(&http, &mcp, token).await, 401);
    }
    let response = issuer
        .post(
            "/revoke",
            &[("token", &valid), ("client_id", &issuer.client_id)],
        )
        .await;
    assert_eq!(response.status(), 200);
    let took = until_status(&http, &mcp, &valid, 401).await;
    assert!(took < Duration::from_secs(1), "after a restart: {took:?}");
}
