//! `/metrics` on both servers: the Prometheus text format, read back by a real parser
//! (`prometheus-parse`), with the requests, actor messages, tokens, flows, logins, store writes,
//! keys and revocation feed of a flow just run; and a metrics token when one is set. The recorder is one
//! per process, shared by every test here, so counts are checked as lower bounds.

use crate::helpers::*;
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

const TOKEN: &str = "metrics-token-0123456789";

async fn scrape(app: &TestApp, url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = app.http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn parse(text: &str) -> Vec<Sample> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    Scrape::parse(lines).expect("valid Prometheus text").samples
}

/// The value of the sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => 0.0,
        })
}

#[tokio::test]
async fn both_servers_expose_the_flow_in_prometheus_format() {
    // The durable store, so that its writes are timed too.
    let data = tempfile::tempdir().unwrap();
    let app = spawn_app_in(data.path(), &[]).await;
    let client_id = register(&app).await;
    let token = access_token_as(&app, &client_id, "alice", "password123").await;
    let session = open_session(&app, &token).await;
    let call = tool_call(3, "greet", json!({"name": "Metrics"}));
    rpc_result(mcp_post(&app, Some(&token), Some(&session), call).await).await;

    let (status, text) = scrape(&app, &app.url("/metrics"), None).await;
    assert_eq!(status, 200, "{text}");
    let auth = parse(&text);
    // (metric, labels, at least)
    #[rustfmt::skip]
    let expected: &[(&str, Pairs, f64)] = &[
        ("mcp_oauth_http_requests_total", &[("server", "auth"), ("route", "/token"), ("status", "200")], 1.0),
        ("mcp_oauth_http_requests_total", &[("server", "auth"), ("route", "/authorize"), ("status", "302")], 1.0),
        ("mcp_oauth_http_request_duration_seconds", &[("server", "auth"), ("route", "/token")], 1.0),
        ("mcp_oauth_actor_messages_total", &[("actor", "TokenSigner"), ("outcome", "ok")], 1.0),
        ("mcp_oauth_actor_message_duration_seconds", &[("actor", "AuthorizationCodes")], 1.0),
        ("mcp_oauth_tokens_total", &[("kind", "minted")], 1.0),
        ("mcp_oauth_flows_total", &[("event", "started")], 1.0),
        ("mcp_oauth_flows_total", &[("event", "completed")], 1.0),
        ("mcp_oauth_logins_total", &[("outcome", "succeeded")], 1.0),
        ("mcp_oauth_store_write_duration_seconds", &[("table", "clients")], 1.0),
        ("mcp_oauth_store_write_duration_seconds", &[("table", "consents")], 1.0),
        ("mcp_oauth_store_write_duration_seconds", &[("table", "refresh_families")], 1.0),
        ("mcp_oauth_http_requests_total", &[("server", "mcp"), ("route", "/mcp"), ("status", "200")], 1.0),
        ("mcp_oauth_actor_messages_total", &[("actor", "RevocationFeed"), ("outcome", "ok")], 1.0),
        ("mcp_oauth_jwks_keys", &[], 1.0),
        ("mcp_oauth_actor_mailbox_depth", &[("actor", "Sessions")], 0.0),
        ("mcp_oauth_actor_mailbox_depth", &[("actor", "RevocationFeed")], 0.0),
        ("mcp_oauth_revocation_feed_page_timestamp_seconds", &[], 1.0),
    ];
    let (status, text) = scrape(&app, &format!("{}/metrics", app.rs), None).await;
    assert_eq!(status, 200, "{text}");
    let mcp = parse(&text);
    for (name, labels, at_least) in expected {
        for (server, samples) in [("auth", &auth), ("mcp", &mcp)] {
            let found = value(samples, name, labels);
            assert!(
                found.is_some_and(|v| v >= *at_least),
                "{server}: {name} {labels:?}: {found:?}"
            );
        }
    }
}

/// With a metrics token, `/metrics` requires it (401 otherwise).
#[tokio::test]
async fn a_metrics_token_keeps_the_metrics_private() {
    let app = spawn_app_with(&["--metrics-token", TOKEN, "--mcp-metrics-token", TOKEN]).await;
    for url in [app.url("/metrics"), format!("{}/metrics", app.rs)] {
        for (token, status) in [
            (None, 401),
            (Some("wrong-token-0123456789"), 401),
            (Some(TOKEN), 200),
        ] {
            assert_eq!(scrape(&app, &url, token).await.0, status, "{url} {token:?}");
        }
    }
}

/// With the metrics off there is no `/metrics`, and the servers serve as before.
#[tokio::test]
async fn metrics_can_be_turned_off() {
    let app = spawn_app_with(&["--no-metrics", "--mcp-no-metrics"]).await;
    for url in [app.url("/metrics"), format!("{}/metrics", app.rs)] {
        assert_eq!(scrape(&app, &url, None).await.0, 404, "{url}");
    }
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
    let metadata = app
        .get_json(&app.url("/.well-known/oauth-authorization-server"))
        .await;
    assert!(metadata["issuer"].is_string());
}

/// Each single-server binary serves its own metrics: the authorization server alone installs
/// its recorder as the combined binary does.
#[tokio::test]
async fn the_single_server_binaries_serve_their_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = format!("http://127.0.0.1:{}", free_port());
    let _auth = Server::start(
        env!("CARGO_BIN_EXE_auth-server"),
        &[
            "--issuer",
            &issuer,
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
    );
    let http = reqwest::Client::new();
    wait_ready(&http, &format!("{issuer}/readyz")).await;
    let answer = http.get(format!("{issuer}/metrics")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = Scrape::parse(lines).unwrap();
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric.starts_with("mcp_oauth_")),
        "{text}"
    );
}
