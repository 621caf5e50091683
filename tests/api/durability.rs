//! Durability: what the authorization server acknowledged survives a restart (graceful, or a
//! crash of the process), signing keys rotate without a failed validation, users come from a
//! users file, and a stop signal drains in-flight requests before the process exits 0.
//! Real servers over HTTP; restarts reuse the data directory and the ports (so the issuer).

use crate::helpers::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn a_restart_keeps_clients_consents_and_access_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), &[]).await;
    let client_id = register(&app).await;
    let before = access_token_as(&app, &client_id, "alice", "password123").await;
    assert_eq!(mcp_status(&app, &before).await, 200);

    let app = app.restart().await;

    // The access token issued before the restart still validates at the (restarted) RS.
    assert_eq!(mcp_status(&app, &before).await, 200);
    // The client is still registered, and alice's consent is remembered: after login the
    // browser goes straight back to the client.
    let pkce = Pkce::new();
    let browser = Browser::new();
    let start = browser
        .get(&authorize_url(&app, &client_id, &pkce, &[]))
        .await;
    assert_eq!(start.status(), 302, "the client is known after the restart");
    let after_login = login(&browser, &location(&start).unwrap(), "alice", "password123").await;
    let callback = location(&after_login).unwrap();
    assert!(
        callback.starts_with(REDIRECT),
        "no consent page the second time: {callback}"
    );
    let code = query_param(&callback, "code").unwrap();
    let response = redeem(&app, &client_id, &code, &pkce.verifier).await;
    assert_eq!(response.status(), 200);
    let after = field(&response.json().await.unwrap(), "access_token");
    assert_eq!(mcp_status(&app, &after).await, 200);
    // The same signing key: it was stored, not made anew.
    assert_eq!(kid_of(&after), kid_of(&before));
    app.stop().await;
}

/// TK-3 across a restart: a refresh token issued before it still refreshes after it, rotation
/// goes on where it stopped, and reuse of a token rotated before the restart is still detected.
#[tokio::test]
async fn a_restart_keeps_refresh_token_families() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), &[]).await;
    let client_id = register(&app).await;
    let issued = tokens_for_client(&app, &client_id).await;
    let first = field(&issued, "refresh_token");
    let rotated: Value = refresh(&app, &client_id, &first, &[])
        .await
        .json()
        .await
        .unwrap();
    let second = field(&rotated, "refresh_token");
    assert_ne!(first, second);

    let app = app.restart().await;

    let response = refresh(&app, &client_id, &second, &[]).await;
    assert_eq!(
        response.status(),
        200,
        "the current token refreshes after a restart"
    );
    let body: Value = response.json().await.unwrap();
    let third = field(&body, "refresh_token");
    assert_eq!(mcp_status(&app, &field(&body, "access_token")).await, 200);
    // The token retired before the restart is recognised as reuse: the family ends, and its
    // newest token with it.
    let reuse = refresh(&app, &client_id, &first, &[]).await;
    assert_eq!(reuse.status(), 400);
    let after_reuse = refresh(&app, &client_id, &third, &[]).await;
    assert_eq!(after_reuse.status(), 400, "reuse ended the whole family");

    // And the family's end is stored too.
    let app = app.restart().await;
    assert_eq!(refresh(&app, &client_id, &third, &[]).await.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn the_data_directory_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let app = spawn_app_in(&data, &[]).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("mcp-oauth.db")), 0o600);
        assert_eq!(mode(&data.join("key-encryption.secret")), 0o600);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_key_encryption_secret_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(
        dir.path(),
        &["--key-encryption-secret", "the first secret, long enough"],
    )
    .await;
    app.stop().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let settings = [
        "--issuer",
        &format!("http://127.0.0.1:{port}"),
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--key-encryption-secret",
        "another secret, also long enough",
    ];
    let Err(err) = build_auth_server(listener, &settings).await else {
        panic!("a key sealed with another secret is refused");
    };
    assert!(err.to_string().contains("decrypted"), "{err}");
}

/// Whether the AS's introspection endpoint calls `token` active, asked with the resource
/// server's credential (which may introspect any token).
async fn active(app: &TestApp, token: &str) -> bool {
    introspect_as_rs(app, token).await["active"]
        .as_bool()
        .unwrap()
}

#[tokio::test]
async fn revocations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(
        dir.path(),
        &["--introspection-secret", INTROSPECTION_SECRET],
    )
    .await;
    let client_id = register(&app).await;
    let (code, pkce) = code_for(&app, &client_id).await;
    let first = redeem(&app, &client_id, &code, &pkce.verifier).await;
    let token = field(&first.json().await.unwrap(), "access_token");
    let kept = access_token_as(&app, &client_id, "alice", "password123").await;
    assert!(active(&app, &token).await);
    // A replayed code revokes the token its first redemption produced (AZ-6).
    let replay = redeem(&app, &client_id, &code, &pkce.verifier).await;
    assert_eq!(replay.status(), 400);
    assert!(!active(&app, &token).await);

    let app = app.restart().await;
    assert!(!active(&app, &token).await, "still revoked after restart");
    assert!(active(&app, &kept).await, "others stay active");
    app.stop().await;
}

/// A store that cannot commit: nothing is acknowledged, the client is told to retry (503), and
/// what is already in memory keeps being served.
#[tokio::test]
async fn a_failing_store_is_temporarily_unavailable_never_a_lost_acknowledgement() {
    let app = spawn_app().await;
    let known = register(&app).await;
    app.store.close().await;
    let body = json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"});
    let response = post_register(&app, &body).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_oauth_error(response, 503, "temporarily_unavailable", "a closed store").await;
    // A known client is served from memory; the remembered consent cannot be read, so the
    // browser gets the "busy, retry" page rather than a wrong answer.
    let pkce = Pkce::new();
    let browser = Browser::new();
    let start = browser.get(&authorize_url(&app, &known, &pkce, &[])).await;
    assert_eq!(start.status(), 302, "a known client is served from memory");
    let after_login = login(&browser, &location(&start).unwrap(), "alice", "password123").await;
    assert_eq!(after_login.status(), 503);
    assert!(after_login.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn in_memory_mode_forgets_everything_at_restart() {
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let app = app.restart().await;
    let pkce = Pkce::new();
    let start = app
        .http
        .get(authorize_url(&app, &client_id, &pkce, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 400, "an in-memory registration is gone");
    app.stop().await;
}

/// Key rotation in real time with short intervals: a key signs for 4 s, is published 2 s
/// before, and a retired key stays published for the token lifetime (10 s) plus a margin.
#[tokio::test]
async fn signing_keys_rotate_without_a_failed_validation() {
    let app = spawn_app_with(&[
        "--introspection-secret",
        INTROSPECTION_SECRET,
        "--rs-introspection-secret",
        INTROSPECTION_SECRET,
        "--key-rotation-interval",
        "4",
        "--key-publication-delay",
        "2",
        "--access-token-ttl",
        "10",
        "--jwks-cooldown",
        "0",
    ])
    .await;
    let client_id = register(&app).await;
    let old = access_token_as(&app, &client_id, "alice", "password123").await;
    let old_kid = kid_of(&old);
    assert_eq!(mcp_status(&app, &old).await, 200);
    // A new key is published before it signs: the JWKS holds two keys while the old one signs.
    let mut published_early = false;
    let new = loop {
        let kids = jwks_kids(&app).await;
        let token = access_token_as(&app, &client_id, "alice", "password123").await;
        if kid_of(&token) != old_kid {
            assert!(kids.contains(&kid_of(&token)) || published_early);
            break token;
        }
        if kids.len() > 1 {
            published_early = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        published_early,
        "the next key was in the JWKS before it signed"
    );
    // New tokens use the new key; the RS fetches it on the unknown kid. The old token still
    // validates.
    assert_eq!(mcp_status(&app, &new).await, 200);
    assert_eq!(mcp_status(&app, &old).await, 200);
    // Introspection knows both keys too.
    assert!(active(&app, &old).await);
    assert!(active(&app, &new).await);
    assert!(jwks_kids(&app).await.contains(&old_kid));
    // The retired key leaves the JWKS, but only once every token it signed has expired.
    let old_exp = {
        let claims = claims_of(&old);
        claims["exp"].as_u64().unwrap()
    };
    while jwks_kids(&app).await.contains(&old_kid) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(now() > old_exp);
    // Keys retired later are still there while their tokens live.
    assert!(jwks_kids(&app).await.contains(&kid_of(&new)));
}

/// The real `auth-server` binary as a child process, on a port of its own with its store in a
/// temporary directory, so that it can be killed and started again on both.
struct AuthServerProcess {
    port: u16,
    base: String,
    dir: tempfile::TempDir,
    child: Child,
    /// A plain client: no redirects followed.
    http: reqwest::Client,
}

impl AuthServerProcess {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Self::spawn(port, dir.path());
        let mut server = AuthServerProcess {
            port,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            child,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        server.wait_ready().await;
        server
    }

    fn spawn(port: u16, dir: &Path) -> Child {
        Command::new(env!("CARGO_BIN_EXE_auth-server"))
            .args([
                "--issuer",
                &format!("http://127.0.0.1:{port}"),
                "--data-dir",
                dir.to_str().unwrap(),
                "--rate-register",
                "0",
                "--log-format",
                "json",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Waits until the server answers its metadata.
    async fn wait_ready(&mut self) {
        let metadata = format!("{}/.well-known/oauth-authorization-server", self.base);
        loop {
            if let Ok(r) = self.http.get(&metadata).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "the server exited"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the server again (the previous process has ended) on the same port and store.
    async fn restart(&mut self) {
        self.child = Self::spawn(self.port, self.dir.path());
        self.wait_ready().await;
    }

    /// How an authorization request for `client_id` is answered: a known client is sent to the
    /// login page (302), an unknown one gets an error page.
    async fn authorize(&self, client_id: &str) -> (u16, String) {
        let pkce = Pkce::new();
        let url = url::Url::parse_with_params(
            &format!("{}/authorize", self.base),
            &[
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", REDIRECT),
                ("code_challenge", &pkce.challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .unwrap();
        let response = self.http.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// SIGKILL: no shutdown, no flush.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

#[tokio::test]
async fn every_acknowledged_registration_survives_a_crash() {
    let mut server = AuthServerProcess::start().await;
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut burst = Vec::new();
    for _ in 0..16 {
        let http = server.http.clone();
        let register = format!("{}/register", server.base);
        let acked = acked_tx.clone();
        burst.push(tokio::spawn(async move {
            loop {
                let response = http
                    .post(&register)
                    .json(
                        &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
                    )
                    .send()
                    .await;
                let Ok(response) = response else { return };
                if response.status() != 201 {
                    continue;
                }
                let Ok(body) = response.json::<Value>().await else {
                    return;
                };
                let _ = acked.send(field(&body, "client_id"));
            }
        }));
    }
    drop(acked_tx);
    // Crash in the middle of the burst, after a good number of acknowledgements.
    let mut acked = HashSet::new();
    while acked.len() < 40 {
        acked.insert(acked_rx.recv().await.unwrap());
    }
    server.kill();
    for task in burst {
        task.await.unwrap();
    }
    while let Ok(id) = acked_rx.try_recv() {
        acked.insert(id);
    }

    server.restart().await;
    for client_id in &acked {
        let (status, body) = server.authorize(client_id).await;
        assert!(
            status == 302 && !body.contains("unknown client"),
            "client {client_id} acknowledged before the crash is unknown after it: {status} {body}"
        );
    }
    server.kill();
}

#[tokio::test]
async fn a_stop_signal_finishes_in_flight_requests_then_exits_0() {
    let mut server = AuthServerProcess::start().await;
    let port = server.port;

    // A registration whose body arrives in two parts, the second after the signal.
    let body =
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}).to_string();
    let (first, second) = body.split_at(10);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /register HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{first}",
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
    // Let the server read the head, so the request is in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(second.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    // The registration it acknowledged while stopping was committed.
    let client_id = answer
        .split("\"client_id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    server.restart().await;
    assert_eq!(server.authorize(&client_id).await.0, 302);
    server.kill();
}

/// `mcp-oauth hash-password` reads stdin and prints an argon2id PHC string.
fn hash_password(password: &str) -> String {
    let output = run_mcp_oauth(&["hash-password".as_ref()], &format!("{password}\n"));
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    hash
}

#[tokio::test]
async fn a_users_file_replaces_the_demo_users_and_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let hash = hash_password("correct horse battery");
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[[users]]\nusername = \"carol\"\npassword_hash = \"{hash}\"\ndisplay_name = \"Carol\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let app = spawn_app_in(&data, &["--users-file", users.to_str().unwrap()]).await;
    let token = token_for(&app, "carol", "correct horse battery").await;
    assert_eq!(mcp_status(&app, &token).await, 200);
    // alice (a demo user) cannot sign in.
    let client_id = register(&app).await;
    let browser = Browser::new();
    let login_url = browser.start_authorization(&app, &client_id).await;
    let page = browser.text(&login_url).await;
    assert!(
        !page.contains("password123"),
        "the demo users' hint only while they are the users"
    );
    let refused = login(&browser, &login_url, "alice", "password123").await;
    assert_eq!(
        refused.status(),
        401,
        "the login page again, not a redirect"
    );
    app.stop().await;
    // Without the file, the users stored from it are used.
    let app = spawn_app_in(&data, &[]).await;
    let token = token_for(&app, "carol", "correct horse battery").await;
    assert_eq!(mcp_status(&app, &token).await, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_users_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        "[[users]]\nusername = \"dave\"\npassword_hash = \"plain-text\"\n",
    )
    .unwrap();
    let stderr = refused_start_with_users(&users);
    assert!(stderr.contains("not a PHC string"), "{stderr}");

    // A username in the machine clients' subject namespace could be impersonated by a client.
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$bW9ja2hhc2htb2NraGFzaG1vY2toYXNobW9ja2hhc2g";
    std::fs::write(
        &users,
        format!("[[users]]\nusername = \"client:ops\"\npassword_hash = \"{hash}\"\n"),
    )
    .unwrap();
    let stderr = refused_start_with_users(&users);
    assert!(stderr.contains("starts with client:"), "{stderr}");
}

/// Starts the authorization server with a users file it must refuse; its standard error.
fn refused_start_with_users(users: &std::path::Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_auth-server"))
        .args([
            "--issuer",
            &format!("http://127.0.0.1:{}", free_port()),
            "--in-memory",
            "--users-file",
            users.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}
