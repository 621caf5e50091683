//! The two servers: HTTP in, actor messages, HTTP out. Handlers hold immutable configuration and
//! actor references only.

pub mod auth_server;
pub mod error;
pub mod health;
pub mod mcp_server;
pub mod metrics;
pub mod request_trace;
pub mod single_origin;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::add_extension::AddExtensionLayer;

/// Largest request head (request line and headers) accepted; larger ones get 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long in-flight requests may finish after shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What stops a server: a future that resolves when it should stop. It is boxed so that the
/// serving code is compiled once, in this library, and not again in every binary and test that
/// passes its own kind of future.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish (at most [`DRAIN_TIMEOUT`]); the servers' `run_until` then flush
/// their actors and close the store. Every accepted socket gets `TCP_NODELAY` (without it, small
/// responses wait for the peer's delayed ACK, ~40 ms each), a header read timeout and a header
/// size limit (slow or bloated clients are cut off), and the peer address as `ConnectInfo`. The
/// routers add the same timeout on reading request bodies.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    read_timeout: Duration,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .max_headers(100)
        .max_buf_size(MAX_HEADER_BYTES.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors or a connection reset before accept: back off a
                    // little instead of spinning, and keep serving.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = tower::ServiceBuilder::new()
            .layer(AddExtensionLayer::new(ConnectInfo(peer)))
            .service(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the drain timeout");
    }
    Ok(())
}

/// The form content type of OAuth requests.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// True when the request's `Content-Type` is `mime` (parameters such as `charset` ignored).
pub fn content_type_is(headers: &axum::http::HeaderMap, mime: &str) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(mime))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("stop signal received: draining in-flight requests");
}
