//! Faults and races at replicas behind haproxy (the topology of `balancer.rs`): two servers
//! redeeming one code or refreshing one token at the same moment decide it once, and a database
//! outage gives 503 with `Retry-After`, from the replicas and then from haproxy, and then recovery
//! without a restart.

use crate::balancer::{Balanced, balanced, balanced_on, bobs_whole_flow_runs, whoami_at};
use crate::helpers::*;
use mcp_oauth_testkit::postgres::ScratchDatabase;
use serde_json::json;
use std::time::Duration;

/// A refresh of `refresh_token` for the balancer's client.
pub(crate) async fn refresh_at(lb: &Balanced, refresh_token: &str) -> reqwest::Response {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", lb.issuer.client_id.as_str()),
    ];
    lb.issuer.post("/token", &form).await
}

/// A database restart behind the balancer: whatever needs the database is refused with 503 and
/// `Retry-After`, at first by the replicas and, once their health checks fail, by haproxy; the
/// resource servers, which need no database, go on; and when it is back the replicas recover by
/// themselves, with nothing lost.
#[tokio::test]
async fn a_database_restart_gives_503s_then_the_replicas_recover() {
    let database = ScratchDatabase::create().await;
    let fault = Fault::start(&database.url).await;
    let url = fault.url.clone();
    let lb = balanced_on(database, &url, &["--database-timeout", "1"], &[]).await;
    let http = reqwest::Client::new();
    let tokens = lb.issuer.tokens(&lb.resource).await;
    let (access, refresh_token) = (
        field(&tokens, "access_token"),
        field(&tokens, "refresh_token"),
    );
    let registration =
        json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"});
    let register = async || {
        http.post(format!("{}/register", lb.issuer.url))
            .json(&registration)
            .send()
            .await
            .unwrap()
    };

    fault.cut();
    // Past the health checks' three failures (1.5 s), haproxy answers for the replicas.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        for (what, answer) in [
            ("a registration", register().await),
            ("a refresh", refresh_at(&lb, &refresh_token).await),
        ] {
            assert_eq!(answer.status(), 503, "{what} while the database is down");
            assert_eq!(answer.headers()["retry-after"], "1", "{what}");
        }
        let (status, _) = whoami_at(&http, &lb.mcp, &access).await;
        assert_eq!(status, 200, "a tool call needs no database");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    fault.restore();
    let started = std::time::Instant::now();
    while register().await.status() != 201 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the replicas recover by themselves"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing refused was half done: the refresh token from before the outage still rotates,
    // once, and a whole flow runs again.
    let refreshed = refresh_at(&lb, &refresh_token).await;
    let refreshed = ok_json(refreshed, "the refresh token from before the outage").await;
    let (status, _) = whoami_at(&http, &lb.mcp, &field(&refreshed, "access_token")).await;
    assert_eq!(status, 200);
    bobs_whole_flow_runs(&lb, &http).await;
}

/// The races through the balancer, whose round robin sends two requests sent together to the two
/// servers: one code redeemed at both at once gives one token, and one refresh token refreshed at
/// both at once rotates once (both answers name the same successor, within the grace window).
#[tokio::test]
async fn races_across_replicas_are_decided_once() {
    let lb = balanced().await;
    for round in 0..10 {
        let (code, verifier) = lb
            .issuer
            .code_as(&lb.resource, "alice", "password123")
            .await;
        let (one, two) = tokio::join!(
            lb.issuer.redeem(&code, &verifier),
            lb.issuer.redeem(&code, &verifier)
        );
        let statuses = [one.status().as_u16(), two.status().as_u16()];
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
    }
    let tokens = lb.issuer.tokens(&lb.resource).await;
    let mut refresh_token = field(&tokens, "refresh_token");
    for round in 0..10 {
        let (one, two) = tokio::join!(
            refresh_at(&lb, &refresh_token),
            refresh_at(&lb, &refresh_token)
        );
        let one = ok_json(one, &format!("round {round}, the first")).await;
        let two = ok_json(two, &format!("round {round}, the second")).await;
        let successor = field(&one, "refresh_token");
        assert_eq!(successor, field(&two, "refresh_token"), "round {round}");
        refresh_token = successor;
    }
    // The chain is intact: its newest token refreshes.
    ok_json(refresh_at(&lb, &refresh_token).await, "the newest token").await;
}
