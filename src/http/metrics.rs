//! `GET /metrics` on both servers, in the Prometheus text format, from the `metrics` facade:
//! the code records where things happen (`ask` for actor messages, handlers and actors for
//! tokens, flows, logins, keys and the revocation feed, the request trace for HTTP requests), and
//! `metrics-exporter-prometheus` renders. The recorder is installed once per process, the first
//! time a server is built; in a process that installed a recorder of its own, `/metrics` says so
//! (503). With a metrics token set, `/metrics` requires it as a bearer token. Like the health
//! checks, `/metrics` is outside the request trace and its own counts.
//!
//! The metrics (all prefixed `mcp_oauth_`): `http_requests_total` and
//! `http_request_duration_seconds` by server, route and status (every answer of a route, CORS
//! preflights included); `actor_messages_total` by actor
//! and outcome (`ok`, `rejected`, `busy`: shed, 503; `unavailable`),
//! `actor_message_duration_seconds` and `actor_mailbox_depth` (sampled every second) by actor; `tokens_total` by
//! kind (`minted`, `refreshed`, `revoked`); `flows_total` by event (`started`, `completed`);
//! `logins_total` by outcome (`succeeded`, `failed`, `locked`); `store_write_duration_seconds`
//! by table (the durable store's writes, until committed); on the resource server
//! `jwks_fetched_timestamp_seconds`, `jwks_keys`, `revocation_feed_page_timestamp_seconds` and
//! `revocation_feed_revoked` (lag is `time()` minus a timestamp).

use crate::trace::Secret;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Duration;

/// Histogram buckets, in seconds: from half a millisecond to ten seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often the recorded histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process's recorder if nothing did yet; the handle that renders it, if it is ours.
/// Called from within the runtime: it starts the recorder's upkeep, a task that folds the
/// histogram samples recorded since the last time into their buckets every few seconds. Without
/// it the samples pile up in memory until a scrape, and with no scraper, without bound.
pub fn install() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            let upkeep = handle.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let mut every = tokio::time::interval(UPKEEP_INTERVAL);
                    loop {
                        every.tick().await;
                        upkeep.run_upkeep();
                    }
                });
            }
            Some(handle)
        })
        .as_ref()
}

/// `GET /metrics`: everything recorded so far, for a scraper holding `token` when one is set.
pub fn render(token: Option<&Secret>, headers: &HeaderMap) -> Response {
    if let Some(token) = token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, value)| value.trim());
        let matches = presented.is_some_and(|p| {
            subtle::ConstantTimeEq::ct_eq(token.expose().as_bytes(), p.as_bytes()).into()
        });
        if !matches {
            let mut response =
                (StatusCode::UNAUTHORIZED, "metrics token required\n").into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    match RECORDER.get().and_then(Option::as_ref) {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "another metrics recorder is installed in this process\n",
        )
            .into_response(),
    }
}

/// The handles of one route and status on one server.
struct RouteMetrics {
    server: &'static str,
    status: u16,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

thread_local! {
    /// Each worker thread's handles, by route: resolved the first time a route answers with a
    /// status on this thread, then recorded into directly (an atomic add), instead of finding
    /// the series by its labels on every request. Per thread, so nothing is shared or locked.
    /// A list, not a map: a server has a couple of dozen routes, cheaper to compare than to hash.
    static ROUTES: RefCell<Vec<(Box<str>, Vec<RouteMetrics>)>> = const { RefCell::new(Vec::new()) };
}

/// Counts and times one HTTP request of a server (`auth` or `mcp`), by its route (the route's
/// pattern, not the path asked for, so the label set stays small) and status. Called by the
/// request trace (`crate::http::request_trace`) when the metrics are on.
pub fn record_request(server: &'static str, route: &str, status: u16, elapsed: Duration) {
    ROUTES.with_borrow_mut(|routes| {
        let at = match routes.iter().position(|(r, _)| **r == *route) {
            Some(at) => at,
            None => {
                routes.push((route.into(), Vec::new()));
                routes.len() - 1
            }
        };
        let per_route = &mut routes[at].1;
        let found = per_route
            .iter()
            .position(|m| m.status == status && m.server == server);
        let index = found.unwrap_or_else(|| {
            let labels = [
                ("server", server.to_string()),
                ("route", route.to_string()),
                ("status", status.to_string()),
            ];
            per_route.push(RouteMetrics {
                server,
                status,
                requests: metrics::counter!("mcp_oauth_http_requests_total", &labels),
                duration: metrics::histogram!(
                    "mcp_oauth_http_request_duration_seconds",
                    &labels[..2]
                ),
            });
            per_route.len() - 1
        });
        let m = &per_route[index];
        m.requests.increment(1);
        m.duration.record(elapsed.as_secs_f64());
    });
}
