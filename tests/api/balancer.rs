//! Replicas behind a real load balancer: two authorization servers on one PostgreSQL database and
//! two resource servers, each pair behind haproxy with round robin per request, so every flow
//! crosses replicas page by page and call by call. MCP sessions stick to the resource server
//! that opened them (haproxy's stick table on `Mcp-Session-Id`, `docs/SCALING.md`); stateless
//! calls go anywhere. SIGKILL of a replica in the middle of a burst loses no acknowledged write,
//! and the flows go on at the other (`replica_faults.rs`: races between the replicas are decided
//! once; a database outage gives 503s and then recovery). haproxy comes from Debian's package (`.ci/run` installs
//! it); without it these tests fail and say so.

use crate::helpers::*;
use mcp_oauth_testkit::postgres::ScratchDatabase;
use serde_json::{Value, json};
use std::time::Duration;

const KEY_SECRET: &str = "the replicas' shared key-encryption secret";
const SESSION_SECRET: &str = "the replicas' shared session secret";

/// haproxy, from the path or where Debian puts it.
fn haproxy_binary() -> String {
    for candidate in ["haproxy", "/usr/sbin/haproxy"] {
        if std::process::Command::new(candidate)
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return candidate.to_string();
        }
    }
    panic!("haproxy is not installed: `apt-get install haproxy` (.ci/run does)");
}

/// `tests/haproxy.cfg`, the configuration `docs/SCALING.md` shows, with these ports.
fn haproxy_config(front: [u16; 2], auth: [u16; 2], rs: [u16; 2]) -> String {
    let ports = [
        ("@AUTH_FRONT@", front[0]),
        ("@AUTH_1@", auth[0]),
        ("@AUTH_2@", auth[1]),
        ("@MCP_FRONT@", front[1]),
        ("@MCP_1@", rs[0]),
        ("@MCP_2@", rs[1]),
    ];
    ports.iter().fold(
        include_str!("../haproxy.cfg").to_string(),
        |text, (name, port)| text.replace(name, &port.to_string()),
    )
}

/// Two replicas of each server behind haproxy.
pub(crate) struct Balanced {
    pub(crate) issuer: Issuer,
    /// The resource servers' public URL (the balancer).
    pub(crate) resource: String,
    pub(crate) mcp: String,
    auth: Vec<Option<Server>>,
    /// Each authorization server's own URL, past the balancer.
    auth_direct: Vec<String>,
    /// Each resource server's own MCP endpoint, past the balancer.
    rs_direct: Vec<String>,
    rs: Vec<Option<Server>>,
    _haproxy: Server,
    _config: tempfile::TempDir,
    _database: ScratchDatabase,
}

pub(crate) async fn balanced() -> Balanced {
    balanced_with(&[], &[]).await
}

/// [`balanced`], the authorization servers with `auth_extra` settings too, the resource servers
/// with `rs_extra`.
async fn balanced_with(auth_extra: &[&str], rs_extra: &[&str]) -> Balanced {
    let database = ScratchDatabase::create().await;
    let url = database.url.clone();
    balanced_on(database, &url, auth_extra, rs_extra).await
}

/// [`balanced_with`] on `database`, which the authorization servers reach at `database_url`.
pub(crate) async fn balanced_on(
    database: ScratchDatabase,
    database_url: &str,
    auth_extra: &[&str],
    rs_extra: &[&str],
) -> Balanced {
    let haproxy = haproxy_binary();
    let front = [free_port(), free_port()];
    let (auth_ports, rs_ports) = ([free_port(), free_port()], [free_port(), free_port()]);
    let issuer = format!("http://127.0.0.1:{}", front[0]);
    let resource = format!("http://127.0.0.1:{}", front[1]);
    // The balancer first: it binds its ports at once, and takes each server in once its
    // health check passes.
    let config = tempfile::tempdir().unwrap();
    let file = config.path().join("haproxy.cfg");
    std::fs::write(&file, haproxy_config(front, auth_ports, rs_ports)).unwrap();
    let checked = std::process::Command::new(&haproxy)
        .args(["-c", "-q", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "haproxy refuses the configuration: {checked:?}"
    );
    let haproxy = Server::start(&haproxy, &["-db", "-f", file.to_str().unwrap()]);
    let mut auth = Vec::new();
    for port in auth_ports {
        let listen = format!("127.0.0.1:{port}");
        let args = [
            "--issuer",
            &issuer,
            "--resource",
            &resource,
            "--auth-listen",
            &listen,
            "--database-url",
            database_url,
            "--key-encryption-secret",
            KEY_SECRET,
            "--session-secret",
            SESSION_SECRET,
        ];
        // Every request comes from the balancer's address: the per-source limits are lifted.
        let args = [
            &args[..],
            &mcp_oauth_testkit::NO_RATE_LIMITS[..],
            auth_extra,
        ]
        .concat();
        auth.push(Some(Server::start(
            env!("CARGO_BIN_EXE_auth-server"),
            &args,
        )));
    }
    let mut rs = Vec::new();
    for port in rs_ports {
        let listen = format!("127.0.0.1:{port}");
        let args = [
            "--authorization-server",
            &issuer,
            "--resource-server",
            &resource,
            "--mcp-listen",
            &listen,
        ];
        let args = [&args[..], rs_extra].concat();
        rs.push(Some(Server::start(env!("CARGO_BIN_EXE_mcp-server"), &args)));
    }
    let http = reqwest::Client::new();
    for port in auth_ports.iter().chain(&rs_ports) {
        wait_ready(&http, &format!("http://127.0.0.1:{port}/readyz")).await;
    }
    let issuer = Issuer::when_ready(issuer, &resource).await;
    Balanced {
        mcp: format!("{resource}/mcp"),
        resource,
        issuer,
        auth,
        auth_direct: auth_ports
            .iter()
            .map(|port| format!("http://127.0.0.1:{port}"))
            .collect(),
        rs_direct: rs_ports
            .iter()
            .map(|port| format!("http://127.0.0.1:{port}/mcp"))
            .collect(),
        rs,
        _haproxy: haproxy,
        _config: config,
        _database: database,
    }
}

/// A new user's whole flow through the balancer: bob signs in, consents, and his token calls
/// `whoami`.
pub(crate) async fn bobs_whole_flow_runs(lb: &Balanced, http: &reqwest::Client) {
    let tokens = lb.issuer.tokens_as(&lb.resource, "bob", "hunter2").await;
    let (status, who) = whoami_at(http, &lb.mcp, &field(&tokens, "access_token")).await;
    assert_eq!((status, who["sub"].as_str()), (200, Some("bob")));
}

/// A stateless `tools/call` of `whoami` (no session), and its answer's status and text; status 0
/// when no answer came (its server was killed with the request in flight).
pub(crate) async fn whoami_at(http: &reqwest::Client, mcp: &str, token: &str) -> (u16, Value) {
    let sent = http
        .post(mcp)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&tool_call(1, "whoami", json!({})))
        .send()
        .await;
    let Ok(response) = sent else {
        return (0, Value::Null);
    };
    let status = response.status().as_u16();
    if status != 200 {
        return (status, Value::Null);
    }
    let result = rpc_result(response).await;
    (status, serde_json::from_str(&text_of(&result)).unwrap())
}

#[tokio::test]
async fn the_whole_flow_crosses_replicas_as_alice_and_as_bob() {
    let lb = balanced().await;
    let http = reqwest::Client::new();
    for (user, password) in [("alice", "password123"), ("bob", "hunter2")] {
        // rmcp's own client: discovery, registration, sign-in, consent, the code exchange and
        // the MCP session, each request at the next server in turn.
        crate::mcp_client::rmcp_client_flow_at(&lb.issuer.url, &lb.mcp, user, password).await;
        // Every page of the sign-in and every token request goes to the next server in turn.
        let tokens = lb.issuer.tokens_as(&lb.resource, user, password).await;
        let access = field(&tokens, "access_token");
        for _ in 0..4 {
            let (status, who) = whoami_at(&http, &lb.mcp, &access).await;
            assert_eq!(status, 200, "{user}");
            assert_eq!(who["sub"], user);
        }
        // A session sticks to the resource server that opened it.
        let session = mcp_oauth_testkit::open_session(&http, &lb.mcp, &access, user)
            .await
            .unwrap();
        for id in 2..6 {
            let answer = http
                .post(&lb.mcp)
                .bearer_auth(&access)
                .header("mcp-session-id", &session)
                .header("accept", "application/json, text/event-stream")
                .json(&tool_call(id, "whoami", json!({})))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200, "call {id} in the session");
        }
        // Refreshed at one server, then the next.
        let mut refresh_token = field(&tokens, "refresh_token");
        for _ in 0..3 {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.as_str()),
                ("client_id", lb.issuer.client_id.as_str()),
            ];
            let refreshed = lb.issuer.post("/token", &form).await;
            let refreshed = ok_json(refreshed, "a refresh through the balancer").await;
            refresh_token = field(&refreshed, "refresh_token");
        }
        // Revoked through the balancer: refused at each resource server, past the balancer.
        let form = [
            ("token", access.as_str()),
            ("client_id", lb.issuer.client_id.as_str()),
        ];
        assert_eq!(lb.issuer.post("/revoke", &form).await.status(), 200);
        for direct in &lb.rs_direct {
            until_status(&http, direct, &access, 401).await;
        }
    }
}

/// What one worker of the burst saw acknowledged.
#[derive(Default)]
struct Acknowledged {
    clients: Vec<String>,
    /// The last refresh token answered for the worker's family.
    refresh_token: String,
    calls: usize,
    refused: usize,
}

/// One client of the burst, for `run_for`: registers a client, refreshes its family and calls a
/// tool, over and over, remembering what was acknowledged.
async fn burst_worker(
    issuer: String,
    client_id: String,
    mcp: String,
    tokens: Value,
    run_for: Duration,
) -> Acknowledged {
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    let mut seen = Acknowledged {
        refresh_token: field(&tokens, "refresh_token"),
        ..Acknowledged::default()
    };
    let mut access = field(&tokens, "access_token");
    let registration =
        json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"});
    while started.elapsed() < run_for {
        match mcp_oauth_testkit::register(&http, &issuer, &registration).await {
            Ok(registered) => seen
                .clients
                .push(mcp_oauth_testkit::client_id(&registered).unwrap()),
            Err(_) => seen.refused += 1,
        }
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", seen.refresh_token.as_str()),
            ("client_id", client_id.as_str()),
        ];
        let refreshed = http
            .post(format!("{issuer}/token"))
            .form(&form)
            .send()
            .await;
        match refreshed {
            Ok(answer) if answer.status() == 200 => {
                let body: Value = answer.json().await.unwrap();
                seen.refresh_token = field(&body, "refresh_token");
                access = field(&body, "access_token");
            }
            // Not acknowledged: the client keeps its token and tries again (a rotation
            // committed without its answer is answered again within the grace window).
            _ => seen.refused += 1,
        }
        match whoami_at(&http, &mcp, &access).await {
            (200, _) => seen.calls += 1,
            _ => seen.refused += 1,
        }
    }
    seen
}

#[tokio::test]
async fn killed_replicas_lose_no_acknowledged_write() {
    let mut lb = balanced().await;
    let http = reqwest::Client::new();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let tokens = lb.issuer.tokens(&lb.resource).await;
        workers.push(tokio::spawn(burst_worker(
            lb.issuer.url.clone(),
            lb.issuer.client_id.clone(),
            lb.mcp.clone(),
            tokens,
            Duration::from_secs(4),
        )));
    }
    // SIGKILL in the middle of the burst, requests in flight: no drain, no goodbye. An
    // authorization server first, then a resource server.
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Some(server) = lb.auth[0].take() {
        server.kill();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Some(server) = lb.rs[0].take() {
        server.kill();
    }
    let mut seen = Vec::new();
    for worker in workers {
        seen.push(worker.await.unwrap());
    }
    let clients: Vec<&String> = seen.iter().flat_map(|s| &s.clients).collect();
    let calls: usize = seen.iter().map(|s| s.calls).sum();
    assert!(clients.len() > 20, "the burst went on: {}", clients.len());
    assert!(calls > 20, "tool calls went on: {calls}");
    // Every acknowledged client is known at the survivor: a wrong code is invalid_grant for a
    // known client, invalid_client for an unknown one.
    let verifier = "v".repeat(43);
    for client_id in clients {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", "not-a-code"),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", client_id.as_str()),
            ("code_verifier", verifier.as_str()),
        ];
        let answer = lb.issuer.post("/token", &form).await;
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"], "invalid_grant", "client {client_id}: {body}");
    }
    // Every family's last acknowledged token still refreshes.
    for worker in &seen {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", worker.refresh_token.as_str()),
            ("client_id", lb.issuer.client_id.as_str()),
        ];
        let refreshed = lb.issuer.post("/token", &form).await;
        ok_json(refreshed, "the last acknowledged refresh token").await;
    }
    // alice's consent, acknowledged before the kill, is remembered: signed in again, she is not
    // asked again.
    let pkce = mcp_oauth_testkit::Pkce::new();
    let url = mcp_oauth_testkit::authorize_url(
        &lb.issuer.url,
        &lb.issuer.client_id,
        &pkce.challenge,
        &[
            ("redirect_uri", REDIRECT_URI),
            ("scope", "mcp.read mcp.write"),
            ("resource", lb.resource.as_str()),
            ("state", "s"),
        ],
    )
    .unwrap();
    let browser = mcp_oauth_testkit::browser().unwrap();
    let start = browser.get(&url).send().await.unwrap();
    let login_url = mcp_oauth_testkit::location(&start).unwrap();
    let signed_in = mcp_oauth_testkit::sign_in(&browser, &login_url, "alice", "password123")
        .await
        .unwrap();
    let back = mcp_oauth_testkit::location(&signed_in).unwrap();
    assert!(back.starts_with(REDIRECT_URI), "no consent page: {back}");
    // And a new user's whole flow runs on the survivor.
    bobs_whole_flow_runs(&lb, &http).await;
}

/// A family revoked at one authorization server takes with it the access tokens another one
/// minted from it: the end is announced, and that server revokes its own.
#[tokio::test]
async fn a_family_revoked_at_one_server_ends_the_access_tokens_another_minted() {
    let lb = balanced().await;
    let http = reqwest::Client::new();
    let tokens = lb.issuer.tokens(&lb.resource).await;
    let client_id = lb.issuer.client_id.as_str();
    let (first, second) = (&lb.auth_direct[0], &lb.auth_direct[1]);
    // Refreshed at the first server, which mints the access token.
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ("client_id", client_id),
    ];
    let refreshed = http
        .post(format!("{first}/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let refreshed = ok_json(refreshed, "a refresh at the first server").await;
    let access = field(&refreshed, "access_token");
    let (status, _) = whoami_at(&http, &lb.mcp, &access).await;
    assert_eq!(status, 200);
    // Revoked at the second.
    let form = [
        ("token", refreshed["refresh_token"].as_str().unwrap()),
        ("client_id", client_id),
    ];
    let revoked = http
        .post(format!("{second}/revoke"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    for direct in &lb.rs_direct {
        until_status(&http, direct, &access, 401).await;
    }
}

/// Keys rotating every four seconds at replicas behind the balancer: one replica makes each
/// next key, every replica publishes it before any signs with it, and no token fails to validate
/// at either resource server, whichever authorization server minted it.
#[tokio::test]
async fn keys_rotating_at_the_replicas_fail_no_validation() {
    let rotation = [
        "--key-rotation-interval",
        "4",
        "--key-publication-delay",
        "3",
    ];
    // As in production, the resource servers read the key set more often than a next key waits
    // before it signs (there: every minute, against an hour).
    let lb = balanced_with(&rotation, &["--jwks-refresh", "1"]).await;
    let http = reqwest::Client::new();
    let tokens = lb.issuer.tokens(&lb.resource).await;
    let mut refresh_token = field(&tokens, "refresh_token");
    let mut kids = std::collections::BTreeSet::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            ("client_id", lb.issuer.client_id.as_str()),
        ];
        let refreshed = lb.issuer.post("/token", &form).await;
        let refreshed = ok_json(refreshed, "a refresh while keys rotate").await;
        refresh_token = field(&refreshed, "refresh_token");
        let access = field(&refreshed, "access_token");
        kids.insert(kid_of(&access));
        for direct in &lb.rs_direct {
            let (status, _) = whoami_at(&http, direct, &access).await;
            assert_eq!(
                status,
                200,
                "a token signed by {} at {direct}",
                kid_of(&access)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(kids.len() >= 2, "the keys rotated: {kids:?}");
}
