//! The load generators: a closed loop (a fixed number of workers, each sending its next request
//! when the last was answered, for a fixed time) with latency percentiles; a bounded flood (a
//! fixed count of requests, so many at a time, for at most a fixed time) with status counts; the
//! reqwest client they use; and lean HTTP/1.1 connections through hyper's own client API.

use anyhow::Context;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Results of one closed-loop measurement.
pub struct Measured {
    pub ok: usize,
    pub other: BTreeMap<u16, usize>,
    pub errors: usize,
    pub elapsed: Duration,
    pub latencies_us: Vec<u32>,
    /// Latencies of the answers that were not the expected status (shed or refused requests).
    pub other_latencies_us: Vec<u32>,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(0.001)
    }

    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }

    /// The `p` percentile of the latencies of refused answers, in ms.
    pub fn refused_percentile(&self, p: f64) -> f64 {
        if self.other_latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.other_latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.other_latencies_us[i]) / 1000.0
    }

    pub fn refused(&self) -> String {
        let mut parts: Vec<String> = self.other.iter().map(|(s, n)| format!("{n}x{s}")).collect();
        if self.errors > 0 {
            parts.push(format!("{} errors", self.errors));
        }
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(", ")
        }
    }
}

/// `concurrency` workers, each sending `make(i)` in a loop for `duration`; a request counts as ok
/// when its status is `expect`. `i` carries the worker in its top bits (`i >> 40`).
pub async fn closed_loop<F, Fut>(
    duration: Duration,
    concurrency: usize,
    expect: u16,
    make: F,
) -> Measured
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<u16, anyhow::Error>> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let make = make.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            let mut other_latencies = Vec::new();
            let mut other = BTreeMap::new();
            let (mut ok, mut errors, mut i) = (0usize, 0usize, 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                match make((w as u64) << 40 | i).await {
                    Ok(status) if status == expect => {
                        ok += 1;
                        latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                    Ok(status) => {
                        *other.entry(status).or_insert(0) += 1;
                        other_latencies
                            .push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            (ok, other, errors, latencies, other_latencies)
        }));
    }
    let mut m = Measured {
        ok: 0,
        other: BTreeMap::new(),
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
        other_latencies_us: Vec::new(),
    };
    for w in workers {
        if let Ok((ok, other, errors, lat, other_lat)) = w.await {
            m.other_latencies_us.extend(other_lat);
            m.ok += ok;
            m.errors += errors;
            for (k, v) in other {
                *m.other.entry(k).or_insert(0) += v;
            }
            m.latencies_us.extend(lat);
        }
    }
    m.elapsed = started.elapsed();
    m.latencies_us.sort_unstable();
    m.other_latencies_us.sort_unstable();
    m
}

/// Status counts and elapsed time of one flood.
pub struct Outcome {
    pub statuses: BTreeMap<u16, usize>,
    pub errors: usize,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{n}x{s}"))
            .collect();
        if self.errors > 0 {
            parts.push(format!("{}x connection error", self.errors));
        }
        parts.join(", ")
    }
}

/// Sends `count` requests made by `make`, `concurrency` at a time, for at most `limit`.
pub async fn flood<F, Fut>(count: usize, concurrency: usize, limit: Duration, make: F) -> Outcome
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<u16, reqwest::Error>>,
{
    let started = Instant::now();
    let deadline = started + limit;
    let results: Vec<Result<u16, reqwest::Error>> = futures::stream::iter(0..count)
        .take_while(|_| std::future::ready(Instant::now() < deadline))
        .map(make)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut statuses = BTreeMap::new();
    let mut errors = 0;
    for r in results {
        match r {
            Ok(status) => *statuses.entry(status).or_insert(0) += 1,
            Err(_) => errors += 1,
        }
    }
    Outcome {
        statuses,
        errors,
        elapsed: started.elapsed(),
    }
}

/// The load generator's client: keep-alive connections enough for `concurrency` workers, no
/// redirects followed.
pub fn load_client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// A keep-alive HTTP/1.1 connection through hyper's own client API: no connection pool, no URL
/// parsing, no middleware. Token minting uses these, one per concurrent worker, so that the load
/// generator takes as little as it can of the cores it shares with the servers (the figure is a
/// fraction of the machine's signing limit).
pub type LeanConnection =
    hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

pub async fn lean_connection(base_url: &str) -> anyhow::Result<LeanConnection> {
    let address = base_url
        .strip_prefix("http://")
        .context("an http:// URL")?
        .trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Redeems a code over a lean connection; the answer's status, its body read to the end.
pub async fn lean_redeem(
    connection: &tokio::sync::Mutex<LeanConnection>,
    host: &str,
    form: String,
) -> anyhow::Result<u16> {
    use http_body_util::BodyExt;
    let request = http::Request::post("/token")
        .header(http::header::HOST, host)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(form)))?;
    let mut connection = connection.lock().await;
    connection.ready().await?;
    let response = connection.send_request(request).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}
