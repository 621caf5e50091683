//! The flow trace: one flow id ties the authorization together across both servers' output, every
//! actor message shows, and no secret ever appears (passwords, codes, tokens, verifiers, cookies).

use crate::helpers::*;
use serde_json::json;
use std::io::Write;

// The capture sees only what this thread runs: the test on a current-thread runtime, and with it
// every task both servers spawn (password hashing and key generation run on blocking threads and
// log nothing). Tests running beside it in the process are not captured.
#[tokio::test(flavor = "current_thread")]
async fn one_flow_id_across_both_servers_and_no_secrets() {
    // The binaries' own line format, over a captured writer.
    let (captured, _capturing) = capture_trace();

    let app = spawn_app().await;
    let client_id = register(&app).await;
    let pkce = Pkce::new();
    let browser = Browser::new();
    let start = browser
        .get(&authorize_url(&app, &client_id, &pkce, &[]))
        .await;
    let cookie = start.headers()["set-cookie"].to_str().unwrap().to_string();
    let cookie_value = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let login_url = location(&start).unwrap();
    let approved = login_and_decide(&browser, &login_url, "alice", "password123", "approve").await;
    let code = query_param(&location(&approved).unwrap(), "code").unwrap();
    let response = redeem(&app, &client_id, &code, &pkce.verifier).await;
    let token = field(&response.json().await.unwrap(), "access_token");
    let session = open_session(&app, &token).await;
    let call = tool_call(3, "greet", json!({"name": "Trace"}));
    let result = rpc_result(mcp_post(&app, Some(&token), Some(&session), call).await).await;
    assert_eq!(text_of(&result), "Hello, Trace!");
    // Give the non-blocking parts a moment.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    let log = captured.text();
    for (name, secret) in [
        ("password", "password123"),
        ("code", code.as_str()),
        ("access token", token.as_str()),
        ("token signature", token.rsplit('.').next().unwrap()),
        ("verifier", pkce.verifier.as_str()),
        ("session cookie", cookie_value.as_str()),
        ("session id", cookie_value.split('.').next().unwrap()),
        ("mcp session", session.as_str()),
    ] {
        assert!(!log.contains(secret), "the {name} appears in the trace");
    }
    // The flow id minted at /authorize shows on the AS and on the RS.
    let flow = log
        .lines()
        .find(|l| l.contains("authorization request"))
        .and_then(|l| l.split("flow=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the authorization request is traced with its flow id")
        .to_string();
    let with_flow: Vec<&str> = log.lines().filter(|l| l.contains(&flow)).collect();
    for step in [
        "authorization request",
        "login succeeded",
        "code issued",
        "access token issued",
    ] {
        assert!(
            with_flow.iter().any(|l| l.contains(step)),
            "AS step {step} carries flow {flow}"
        );
    }
    assert!(
        with_flow
            .iter()
            .any(|l| l.contains("response out") && l.contains("mcp_method=tools/call greet")),
        "the RS traces the tool call with the flow id"
    );
    // Actor messages are traced with their outcome and duration.
    for actor in [
        "ClientRegistry <- Register",
        "Sessions <- Park",
        "AuthorizationCodes <- RedeemCode",
        "TokenSigner <- SignAccessToken",
        "JwksCache <- LookupJwk",
        "McpSessions <- Bind",
    ] {
        assert!(log.contains(actor), "{actor} is traced");
    }
    assert!(log.contains("outcome=\"ok\""));
    // Secrets show as fingerprints.
    assert!(log.contains(&format!("code={}", fingerprint(&code))));
}

/// A user name typed at login may be a password typed into the wrong field, and names are few
/// enough to guess: the trace shows a fingerprint keyed per process, never the name nor its
/// plain SHA-256 fingerprint, in the login lines and in the throttle's messages alike.
#[tokio::test(flavor = "current_thread")]
async fn typed_user_names_show_only_as_keyed_fingerprints() {
    let (captured, _capturing) = capture_trace();
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    let login_url = browser.start_authorization(&app, &client_id).await;
    let typed = "Correct-Horse-Battery-9";
    let failed = login(&browser, &login_url, typed, "wrong").await;
    assert_eq!(failed.status(), 401);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    let log = captured.text();
    assert!(log.contains("login failed"), "{log}");
    assert!(log.contains("Throttle <- LoginAllowed"), "{log}");
    assert!(!log.contains(typed), "the typed name appears in the trace");
    assert!(
        !log.contains(&fingerprint(typed)),
        "the typed name's plain SHA-256 fingerprint appears in the trace"
    );
}

/// With three flows at once, every line of every request a flow makes carries its id, on both
/// servers: the pages, the token requests (a refresh too), the MCP requests, and the actor
/// messages of each. Filtering the log for one id yields that flow whole, in order.
#[tokio::test(flavor = "current_thread")]
async fn every_line_of_a_flow_carries_its_id_with_three_flows_at_once() {
    let (captured, _capturing) = capture_trace();
    let app = spawn_app().await;
    // Three approvals, none remembered from another: alice and bob with one client, alice with
    // another.
    let (first, second) = (register(&app).await, register(&app).await);
    let flow = |user: &'static str, password: &'static str, client_id: &str| {
        let (app, client_id) = (&app, client_id.to_string());
        async move {
            let client_id = client_id.as_str();
            let pkce = Pkce::new();
            let back = authorize_as(app, &Browser::new(), client_id, &pkce, user, password).await;
            let code = query_param(&back, "code").unwrap();
            let tokens = ok_json(
                redeem(app, client_id, &code, &pkce.verifier).await,
                "redeem",
            )
            .await;
            let token = field(&tokens, "access_token");
            let session = open_session(app, &token).await;
            let call = tool_call(3, "greet", json!({"name": user}));
            rpc_result(mcp_post(app, Some(&token), Some(&session), call).await).await;
            let refreshed = refresh(app, client_id, &field(&tokens, "refresh_token"), &[]).await;
            assert_eq!(refreshed.status(), 200);
        }
    };
    futures::join!(
        flow("alice", "password123", &first),
        flow("bob", "hunter2", &first),
        flow("alice", "password123", &second)
    );
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let log = captured.text();

    let flow_of = |line: &str| {
        line.split(" flow=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
    };
    // Every line written while serving a request of a flow names its flow, and only one.
    let flow_paths = [
        "path=/authorize",
        "path=/login",
        "path=/consent",
        "path=/token",
        "path=/mcp",
    ];
    let mut missing = Vec::new();
    for line in log
        .lines()
        .filter(|l| flow_paths.iter().any(|p| l.contains(p)))
    {
        match flow_of(line) {
            Some(id) => assert_eq!(line.matches(&format!("flow={id}")).count(), 1, "{line}"),
            None => missing.push(line),
        }
    }
    assert!(
        missing.is_empty(),
        "lines without their flow:\n{}",
        missing.join("\n")
    );
    let ids: std::collections::BTreeSet<String> = log
        .lines()
        .filter(|l| l.contains("authorization request"))
        .filter_map(flow_of)
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    for id in &ids {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| flow_of(l).as_deref() == Some(id.as_str()))
            .collect();
        // The flow whole, in order.
        let mut at = 0;
        for step in [
            "authorization request",
            "Sessions <- Park",
            "Sessions <- Peek",
            "Throttle <- LoginAllowed",
            "login succeeded",
            "Consents <- GrantConsent",
            "code issued",
            "AuthorizationCodes <- FlowOfCode",
            "ClientRegistry <- LookupClient",
            "AuthorizationCodes <- RedeemCode",
            "TokenSigner <- SignAccessToken",
            "access token issued",
            "JwksCache <- LookupJwk",
            "RevocationFeed <- CheckRevoked",
            "McpSessions <- Bind",
            "mcp_method=tools/call greet",
            "RefreshTokens <- FlowOfRefreshToken",
            "RefreshTokens <- RotateRefreshToken",
            "access token refreshed",
            "response out",
        ] {
            let found = lines[at..].iter().position(|l| l.contains(step));
            let Some(offset) = found else {
                panic!(
                    "flow {id}: no {step:?} after line {at}:\n{}",
                    lines.join("\n")
                );
            };
            at += offset;
        }
    }
}

/// `mcp-oauth trace` on a recorded flow: the list names it with its user, client and outcome,
/// and each format draws the same participants and messages in the flow's order.
#[tokio::test(flavor = "current_thread")]
async fn the_trace_command_lists_and_draws_a_recorded_flow() {
    let (captured, _capturing) = capture_trace();
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let token = access_token_as(&app, &client_id, "alice", "password123").await;
    let session = open_session(&app, &token).await;
    let call = tool_call(3, "greet", json!({"name": "Trace"}));
    rpc_result(mcp_post(&app, Some(&token), Some(&session), call).await).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trace.log");
    std::fs::write(&log, captured.text()).unwrap();

    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
            .arg("trace")
            .arg(&log)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let list = run(&[]);
    let row = list
        .lines()
        .find(|l| l.contains(&client_id))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("alice") && row.contains("token"), "{row}");
    let id = row.split_whitespace().next().unwrap();

    let participants = [
        "Browser",
        "AS /authorize",
        "Sessions",
        "AS /login",
        "AS /consent",
        "Consents",
        "AS /token",
        "AuthorizationCodes",
        "TokenSigner",
        "MCP client",
        "MCP server",
        "JwksCache",
        "McpSessions",
        "Tool",
    ];
    let order = [
        "GET /authorize",
        "Park",
        "POST /login",
        "POST /consent",
        "IssueCode",
        "POST /token",
        "RedeemCode",
        "SignAccessToken",
        "POST /mcp",
        "LookupJwk",
        "tools/call greet",
    ];
    let in_order = |text: &str, what: &str| {
        let mut at = 0;
        for step in order {
            let found = text[at..]
                .find(step)
                .unwrap_or_else(|| panic!("{what}: no {step} after {at}:\n{text}"));
            at += found;
        }
        for p in participants {
            assert!(text.contains(p), "{what}: participant {p}:\n{text}");
        }
    };
    in_order(&run(&["--flow", id]), "text");
    let mermaid = run(&["--flow", id, "--format", "mermaid"]);
    assert!(mermaid.starts_with("sequenceDiagram\n"), "{mermaid}");
    in_order(&mermaid, "mermaid");
    let svg = run(&["--flow", id, "--format", "svg"]);
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    in_order(&svg, "svg");

    // --follow: messages appended to the log are drawn as they arrive.
    let text = captured.text();
    let cut = text.find("JwksCache <- LookupJwk").unwrap();
    let cut = text[..cut].rfind('\n').unwrap() + 1;
    let growing = dir.path().join("growing.log");
    std::fs::write(&growing, &text[..cut]).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .arg("trace")
        .arg(&growing)
        .args(["--flow", id, "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = sender.send(line);
        }
    });
    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => {}
                Err(_) => panic!("--follow never printed {needle:?}"),
            }
        }
    };
    wait_for("SignAccessToken");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&growing)
        .unwrap()
        .write_all(&text.as_bytes()[cut..])
        .unwrap();
    wait_for("tools/call greet");
    child.kill().unwrap();
    child.wait().unwrap();

    // An unknown flow is an error, not an empty drawing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(["trace", log.to_str().unwrap(), "--flow", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

/// A signed-in user whose consent covers the request gets the code at once: the request is not
/// parked in the session for a page that will not come (one round trip to the sessions, and on a
/// shared store to the database, instead of four).
#[tokio::test(flavor = "current_thread")]
async fn a_returning_users_authorization_parks_nothing() {
    let (captured, _capturing) = capture_trace();
    let app = spawn_app().await;
    let client_id = register(&app).await;
    let browser = Browser::new();
    authorize_as(
        &app,
        &browser,
        &client_id,
        &Pkce::new(),
        "alice",
        "password123",
    )
    .await;
    let parked = |log: &str| log.matches("Sessions <- Park").count();
    let before = parked(&captured.text());
    assert_eq!(
        before, 1,
        "the first authorization waited for login and consent"
    );
    let pkce = Pkce::new();
    let callback = browser
        .redirect_from(&authorize_url(&app, &client_id, &pkce, &[]))
        .await;
    assert!(callback.starts_with(REDIRECT), "{callback}");
    let code = query_param(&callback, "code").expect("a code at once");
    assert_eq!(
        redeem(&app, &client_id, &code, &pkce.verifier)
            .await
            .status(),
        200
    );
    let log = captured.text();
    assert_eq!(parked(&log), before, "nothing parked the second time");
    assert!(
        log.contains("Consents <- CheckConsent"),
        "the consent was asked"
    );
}
