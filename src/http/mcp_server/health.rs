//! The resource server's readiness (`GET /readyz`): the authorization server's keys are fetched
//! and fresh, and the revocation feed is current (unless it is turned off). Liveness is the
//! shared `/healthz`.

use super::state::McpState;
use crate::actors::ask;
use crate::actors::jwks_cache::KeysStatus;
use crate::actors::revocation_feed::FeedStatus;
use crate::http::health::{Check, readiness};
use axum::extract::State;
use axum::response::Response;

pub async fn readyz(State(state): State<McpState>) -> Response {
    let keys = match ask(&state.jwks, KeysStatus).await {
        Ok(report) => Check::new(
            "jwks",
            report.fresh && report.keys > 0,
            match report.age {
                Some(age) => format!("{} keys, fetched {} s ago", report.keys, age.as_secs()),
                None => "not fetched yet".into(),
            },
        ),
        Err(err) => Check::new("jwks", false, err.to_string()),
    };
    let mut checks = vec![keys];
    if let Some(feed) = &state.revocation_feed {
        checks.push(match ask(feed, FeedStatus).await {
            Ok(report) => Check::new(
                "revocation_feed",
                report.current,
                match report.lag {
                    Some(lag) => format!(
                        "{} revoked, last page {} ms ago",
                        report.revoked,
                        lag.as_millis()
                    ),
                    None => "no page yet".into(),
                },
            ),
            Err(err) => Check::new("revocation_feed", false, err.to_string()),
        });
    }
    readiness(checks)
}
