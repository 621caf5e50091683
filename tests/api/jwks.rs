//! The resource server's copy of the signing keys: a JWKS fetch never holds up tokens whose key is
//! already known (stale while revalidate), and a key the authorization server stops publishing
//! stops being trusted within the refresh interval (`JWKS_REFRESH_SECONDS`).

use crate::helpers::*;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A JWKS endpoint under the test's control: the document it serves, how long it takes to
/// answer, and how many fetches it has had.
struct FakeJwks {
    url: String,
    serve: watch::Sender<(Value, Duration)>,
    hits: Arc<AtomicUsize>,
}

impl FakeJwks {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let (serve, current) = watch::channel((json!({"keys": []}), Duration::ZERO));
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let router = axum::Router::new().route(
            "/jwks",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let (document, delay) = current.borrow().clone();
                async move {
                    tokio::time::sleep(delay).await;
                    axum::Json(document)
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        FakeJwks { url, serve, hits }
    }

    fn set(&self, document: Value, delay: Duration) {
        self.serve.send_replace((document, delay));
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A fetch that takes seconds (here caused by an unknown key id) goes on beside the actor: a
/// token whose key is known is answered meanwhile, not after it.
#[tokio::test]
async fn a_slow_jwks_fetch_does_not_hold_up_tokens_with_known_keys() {
    let jwks = FakeJwks::start().await;
    let app = spawn_app_with(&[
        "--jwks-endpoint",
        &jwks.url,
        "--jwks-cooldown",
        "0",
        "--jwks-refresh",
        "3600",
    ])
    .await;
    jwks.set(app.get_json(&app.url("/oauth/jwks")).await, Duration::ZERO);
    let valid = token_for(&app, "alice", "password123").await;
    assert_eq!(mcp_status(&app, &valid).await, 200);
    let fetched = jwks.hits();

    jwks.set(
        app.get_json(&app.url("/oauth/jwks")).await,
        Duration::from_secs(3),
    );
    let mut header = jws_header(&app);
    header["kid"] = json!("not-published");
    let unknown = mint(&app, &header, &access_claims(&app));
    let slow = tokio::spawn({
        let request = mcp_request(&app, &app.mcp_url(), &initialize_body()).bearer_auth(unknown);
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while jwks.hits() == fetched {
        assert!(
            Instant::now() < deadline,
            "the unknown key id started no fetch"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mcp_status(&app, &valid).await, 200);
    assert!(
        !slow.is_finished(),
        "the known key was answered while the fetch was still running"
    );
    assert_eq!(slow.await.unwrap(), 401);
}

/// The keys are fetched again every refresh interval: a key removed from the published set is
/// refused (401 `invalid_token`) within it, and trusted again once it is back.
#[tokio::test]
async fn a_key_removed_from_the_jwks_stops_being_trusted_within_the_refresh_interval() {
    let jwks = FakeJwks::start().await;
    let app = spawn_app_with(&[
        "--jwks-endpoint",
        &jwks.url,
        "--jwks-cooldown",
        "3600",
        "--jwks-refresh",
        "1",
    ])
    .await;
    let published = app.get_json(&app.url("/oauth/jwks")).await;
    jwks.set(published.clone(), Duration::ZERO);
    let token = token_for(&app, "alice", "password123").await;
    assert_eq!(mcp_status(&app, &token).await, 200);

    jwks.set(json!({"keys": []}), Duration::ZERO);
    let removed = Instant::now();
    while mcp_status(&app, &token).await == 200 {
        assert!(
            removed.elapsed() < Duration::from_secs(5),
            "the removed key is still trusted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = mcp_post(&app, Some(&token), None, initialize_body()).await;
    assert_bearer_refusal(&response, 401, Some("invalid_token"), "a removed key");

    jwks.set(published, Duration::ZERO);
    let restored = Instant::now();
    while mcp_status(&app, &token).await != 200 {
        assert!(
            restored.elapsed() < Duration::from_secs(5),
            "the key is not trusted again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
