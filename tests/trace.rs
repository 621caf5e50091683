//! The flow trace: one flow id ties the authorization together across both servers' output, every
//! actor message shows, and no secret ever appears (passwords, codes, tokens, verifiers, cookies).

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn one_flow_id_across_both_servers_and_no_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    // The binaries' own line format, over a captured writer.
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            mcp_oauth::trace::DEFAULT_FILTER,
        ))
        .with(mcp_oauth::trace::layer(move || writer.clone(), false))
        .init();

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
    let after_login = login(&browser, &location(&start).unwrap(), "alice", "password123").await;
    let approved = decide(&browser, &location(&after_login).unwrap(), "approve").await;
    let code = query_param(&location(&approved).unwrap(), "code").unwrap();
    let body: Value = redeem(&app, &client_id, &code, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();
    let token = body["access_token"].as_str().unwrap().to_string();
    let session = open_session(&app, &token).await;
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "greet", "arguments": {"name": "Trace"}}});
    let result = rpc_result(mcp_post(&app, Some(&token), Some(&session), call).await).await;
    assert_eq!(result["result"]["content"][0]["text"], "Hello, Trace!");
    // Give the non-blocking parts a moment.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
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
            .any(|l| l.contains("mcp request") && l.contains("tools/call greet")),
        "the RS traces the tool call with the flow id"
    );
    // Actor messages are traced with their outcome and duration.
    for actor in [
        "ClientRegistry <- Register",
        "Sessions <- Park",
        "AuthorizationCodes <- Redeem",
        "TokenSigner <- Sign",
        "JwksCache <- Lookup",
        "McpSessions <- Bind",
    ] {
        assert!(log.contains(actor), "{actor} is traced");
    }
    assert!(log.contains("outcome=\"ok\""));
    // Secrets show as fingerprints.
    assert!(log.contains(&format!("code={}", mcp_oauth::trace::fingerprint(&code))));
}
