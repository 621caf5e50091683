//! `/healthz` and `/readyz` on both servers: liveness always, readiness with named checks (the
//! AS's store and signing key; the RS's keys and revocation feed), 503 when one fails.

use crate::helpers::*;
use serde_json::Value;
use std::time::{Duration, Instant};

async fn get(app: &TestApp, url: &str) -> (u16, Value) {
    let response = app.http.get(url).send().await.unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store", "{url}");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Asks `url` until it answers `status` (within 5 s); the last body.
async fn until(app: &TestApp, url: &str, status: u16) -> Value {
    let started = Instant::now();
    loop {
        let (got, body) = get(app, url).await;
        if got == status {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{url}: {got} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn both_servers_answer_health_and_readiness() {
    let app = spawn_app_at("/tenant", &[]).await;
    let as_root = app.issuer.trim_end_matches("/tenant").to_string();
    for url in [format!("{as_root}/healthz"), format!("{}/healthz", app.rs)] {
        assert_eq!(
            get(&app, &url).await,
            (200, serde_json::json!({"status": "ok"}))
        );
    }
    // The AS: its store answers and a key is published.
    let (status, body) = get(&app, &format!("{as_root}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["store"]["ok"], true);
    assert_eq!(body["checks"]["signing_key"]["ok"], true);
    // The RS: ready once it has the keys (a probe fetches them) and a page of the feed.
    let body = until(&app, &format!("{}/readyz", app.rs), 200).await;
    assert_eq!(body["checks"]["jwks"]["ok"], true, "{body}");
    assert_eq!(body["checks"]["revocation_feed"]["ok"], true, "{body}");
    // A store that cannot be read makes the AS not ready.
    app.store.close().await;
    let (status, body) = get(&app, &format!("{as_root}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["checks"]["store"]["ok"], false);
}

/// (case, RS settings, readiness, the feed's check)
#[tokio::test]
async fn the_resource_server_is_ready_only_with_a_current_feed() {
    #[rustfmt::skip]
    let cases: &[(&str, &[&str], u16, Option<bool>)] = &[
        ("feed followed", &[], 200, Some(true)),
        ("feed turned off", &["--no-revocation-feed"], 200, None),
        ("feed unreachable", &["--revocation-feed-endpoint", "http://127.0.0.1:9/feed"], 503, Some(false)),
    ];
    for (case, settings, status, feed) in cases {
        let app = spawn_app_with(settings).await;
        // Keys fetched first (the first probe starts the fetch), then the verdict.
        let url = format!("{}/readyz", app.rs);
        let started = Instant::now();
        let body = loop {
            let (got, body) = get(&app, &url).await;
            if body["checks"]["jwks"]["ok"] == true
                && (got == *status || started.elapsed() > Duration::from_secs(3))
            {
                assert_eq!(got, *status, "{case}: {body}");
                break body;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{case}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            body["checks"]["revocation_feed"]["ok"].as_bool(),
            *feed,
            "{case}: {body}"
        );
    }
}
