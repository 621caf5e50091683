//! The benchmark and flood tool. It starts the release servers as child processes on loopback,
//! drives them over HTTP, and reports rates, status counts and each server's resident memory.
//!
//! `mcp-oauth-bench flood`: 10,000 registrations and 10,000 failed logins, as fast as 32
//! concurrent connections allow, once with the default limits (the flood is shed with 429) and
//! once with the registration limit off (what each stored client costs). Every loop is bounded in
//! count and time and targets only the servers it started.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Benchmarks and floods for mcp-oauth (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// The request a profile repeats.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProfilePath {
    ToolsCall,
    Token,
}

#[derive(Subcommand)]
enum Cmd {
    /// Throughput and latency of every hot path, RSS, trace cost and the RS256 signing limit.
    Run {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Concurrency levels for the tools/call sweep (throughput and p99 per level), and the
        /// SVG plot of it.
        #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
        sweep: Vec<usize>,
        /// Where to write the plot.
        #[arg(long, default_value = "docs/bench-tools-call.svg")]
        plot: PathBuf,
    },
    /// A fixed number of `tools/call greet` requests, for a profiler wrapping the server
    /// (`MCP_OAUTH_BENCH_WRAP="valgrind --tool=callgrind"`): instruction counts per request,
    /// with the flow trace at `--log` level, independent of what else the machine is doing.
    Profile {
        /// Requests to send.
        #[arg(long, default_value_t = 5_000)]
        requests: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// The servers' `RUST_LOG`.
        #[arg(long, default_value = "warn")]
        log: String,
        /// What to profile: `tools/call greet`, or `/token` code redemptions (codes made first).
        #[arg(long, value_enum, default_value_t = ProfilePath::ToolsCall)]
        path: ProfilePath,
    },
    /// Memory alone (also part of `run`): each server's idle RSS, and RSS per registered client.
    Memory {
        /// Clients to register.
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Registration and failed-login floods; reports status counts and RSS before and after.
    Flood {
        /// Requests per flood.
        #[arg(long, default_value_t = 10_000)]
        requests: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Give up on a flood after this many seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

/// Both servers, started from the binary next to this one.
struct Servers {
    child: Child,
    issuer: String,
    rs: String,
    /// Their stdout and stderr: the flow trace, and the count of trace lines dropped if any.
    log_file: PathBuf,
}

impl Servers {
    fn start(extra: &[&str]) -> anyhow::Result<Servers> {
        Self::start_with_log(extra, "warn")
    }

    fn start_with_log(extra: &[&str], log: &str) -> anyhow::Result<Servers> {
        // Trace lines go to a file, as an operator would keep them, not to a pipe nobody reads.
        let log_file =
            std::env::temp_dir().join(format!("mcp-oauth-bench-{}.log", std::process::id()));
        let exe = std::env::current_exe()?;
        let bin: PathBuf = exe.with_file_name("mcp-oauth");
        if !bin.exists() {
            bail!(
                "{} not found: build it with `cargo build --release`",
                bin.display()
            );
        }
        let as_port = free_port()?;
        let rs_port = free_port()?;
        let issuer = format!("http://127.0.0.1:{as_port}");
        let rs = format!("http://127.0.0.1:{rs_port}");
        // A profiler may wrap the server: MCP_OAUTH_BENCH_WRAP="valgrind --tool=callgrind".
        let wrap = std::env::var("MCP_OAUTH_BENCH_WRAP").unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let mut command = match wrap.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(wrap).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let output = std::fs::File::create(&log_file)?;
        let child = command
            .args([
                // Measure the servers, not the disk: nothing is written to a data directory.
                "--in-memory",
                "--issuer",
                &issuer,
                "--resource",
                &rs,
                "--authorization-server",
                &issuer,
                "--resource-server",
                &rs,
            ])
            .args(extra)
            .env("RUST_LOG", log)
            .stderr(output.try_clone()?)
            .stdout(output)
            .spawn()
            .context("starting mcp-oauth")?;
        Ok(Servers {
            child,
            issuer,
            rs,
            log_file,
        })
    }

    async fn wait_ready(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        // Under a profiler, start-up (key generation, hashing the demo users) is far slower.
        let patience = if std::env::var_os("MCP_OAUTH_BENCH_WRAP").is_some() {
            600
        } else {
            30
        };
        let deadline = Instant::now() + Duration::from_secs(patience);
        while Instant::now() < deadline {
            if http
                .get(format!("{}/oauth/jwks", self.issuer))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the servers did not start")
    }

    /// Resident set size of the server process, in KiB.
    fn rss_kib(&self) -> u64 {
        rss_of(self.child.id())
    }

    /// CPU time the servers have used so far (user and system).
    fn cpu(&self) -> Duration {
        cpu_of(&self.child.id().to_string())
    }

    /// Samples the server's RSS every 50 ms until the returned sampler is stopped; the sampler
    /// then gives the peak.
    fn sample_rss(&self) -> RssSampler {
        let pid = self.child.id();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_of(pid));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        });
        RssSampler { stop, task }
    }
}

/// A running RSS sampler (see [`Servers::sample_rss`]).
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    /// Stops sampling; the peak RSS seen, in KiB.
    async fn peak(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap_or(0)
    }
}

/// Resident set size of a process, in KiB (0 when it cannot be read).
fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Idle RSS of one server binary started alone (`auth-server` or `mcp-server`), once it answers
/// `probe` and has settled.
async fn idle_rss_alone(binary: &str, args: &[String], probe: &str) -> anyhow::Result<u64> {
    let bin = std::env::current_exe()?.with_file_name(binary);
    let mut child = Command::new(&bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = false;
    while Instant::now() < deadline && !ready {
        ready = http.get(probe).send().await.is_ok();
        if !ready {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_of(child.id());
    let _ = child.kill();
    let _ = child.wait();
    if !ready {
        bail!("{binary} did not start");
    }
    Ok(rss)
}

impl Drop for Servers {
    /// Stops the servers as an operator would (SIGTERM, then they drain and exit), so that a
    /// wrapping profiler writes its output; SIGKILL only if they do not exit in time.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let patience = if std::env::var_os("MCP_OAUTH_BENCH_WRAP").is_some() {
            120
        } else {
            15
        };
        let deadline = Instant::now() + Duration::from_secs(patience);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Status counts and elapsed time of one flood.
struct Outcome {
    statuses: BTreeMap<u16, usize>,
    errors: usize,
    elapsed: Duration,
}

impl Outcome {
    fn summary(&self) -> String {
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
async fn flood<F, Fut>(count: usize, concurrency: usize, limit: Duration, make: F) -> Outcome
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

async fn registrations(
    servers: &Servers,
    http: &reqwest::Client,
    n: usize,
    c: usize,
    limit: Duration,
) -> Outcome {
    let url = format!("{}/register", servers.issuer);
    flood(n, c, limit, |i| {
        let request = http.post(&url).json(&json!({
            "client_name": format!("flood {i}"),
            "redirect_uris": [format!("http://127.0.0.1:{}/callback", 1024 + i % 60000)],
            "token_endpoint_auth_method": "none",
        }));
        async move { request.send().await.map(|r| r.status().as_u16()) }
    })
    .await
}

/// Failed logins on one parked authorization request (a browser with a session and CSRF token).
async fn failed_logins(
    servers: &Servers,
    n: usize,
    c: usize,
    limit: Duration,
) -> anyhow::Result<Outcome> {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let client: Value = browser
        .post(format!("{}/register", servers.issuer))
        .json(&json!({"redirect_uris": ["http://127.0.0.1:9/cb"]}))
        .send()
        .await?
        .json()
        .await?;
    let client_id = client["client_id"].as_str().context("client_id")?;
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let start = browser
        .get(format!(
            "{}/authorize?response_type=code&client_id={client_id}&code_challenge={challenge}&code_challenge_method=S256",
            servers.issuer
        ))
        .send()
        .await?;
    let login_url = start
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("login redirect")?
        .to_string();
    let page = browser.get(&login_url).send().await?.text().await?;
    let field = |name: &str| -> anyhow::Result<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = page.find(&marker).context("form field")? + marker.len();
        let end = page[start..].find('"').context("form field end")? + start;
        Ok(page[start..end].to_string())
    };
    let (csrf, request) = (field("csrf_token")?, field("request")?);
    let url = format!("{}/login", servers.issuer);
    Ok(flood(n, c, limit, |i| {
        let user = format!("user{}", i % 500);
        let request = browser.post(&url).form(&[
            ("csrf_token", csrf.as_str()),
            ("request", request.as_str()),
            ("username", user.as_str()),
            ("password", "wrong-password"),
        ]);
        async move { request.send().await.map(|r| r.status().as_u16()) }
    })
    .await)
}

/// RSS after the allocator has had a moment to return freed memory.
async fn settled_rss(servers: &Servers) -> u64 {
    tokio::time::sleep(Duration::from_secs(2)).await;
    servers.rss_kib()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

async fn run_flood(requests: usize, concurrency: usize, seconds: u64) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let limit = Duration::from_secs(seconds);
    println!(
        "## Flood: {requests} requests per flood, {concurrency} concurrent, at most {seconds} s each\n"
    );
    println!("| scenario | answers | time | rate | RSS before | RSS after | RSS growth |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");

    // Default limits: the floods are shed.
    let servers = Servers::start(&[])?;
    servers.wait_ready(&http).await?;
    // Failed logins first: the login flood needs one registration of its own.
    let before = settled_rss(&servers).await;
    let out = failed_logins(&servers, requests, concurrency, limit).await?;
    let after = settled_rss(&servers).await;
    row("failed logins, default limits", &out, before, after);
    let before = after;
    let out = registrations(&servers, &http, requests, concurrency, limit).await;
    let after = settled_rss(&servers).await;
    row("registrations, default limits", &out, before, after);
    drop(servers);

    // No registration limit: every client is stored; what does one cost?
    let servers = Servers::start(&["--rate-register", "0"])?;
    servers.wait_ready(&http).await?;
    let before = settled_rss(&servers).await;
    let out = registrations(&servers, &http, requests, concurrency, limit).await;
    let after = settled_rss(&servers).await;
    row("registrations, no rate limit", &out, before, after);
    let stored = out.statuses.get(&201).copied().unwrap_or(0);
    if stored > 0 {
        println!(
            "\nStored clients: {stored}; RSS growth per stored client: {:.2} KiB (includes allocator slack).",
            after.saturating_sub(before) as f64 / stored as f64
        );
    }
    Ok(())
}

fn row(name: &str, out: &Outcome, before: u64, after: u64) {
    let total: usize = out.statuses.values().sum::<usize>() + out.errors;
    println!(
        "| {name} | {} | {:.1} s | {:.0}/s | {} | {} | {} |",
        out.summary(),
        out.elapsed.as_secs_f64(),
        total as f64 / out.elapsed.as_secs_f64().max(0.001),
        mib(before),
        mib(after),
        mib(after.saturating_sub(before)),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Flood {
            requests,
            concurrency,
            seconds,
        } => run_flood(requests, concurrency.max(1), seconds).await,
        Cmd::Profile {
            requests,
            concurrency,
            log,
            path,
        } => run_profile(requests, concurrency.max(1), &log, path).await,
        Cmd::Memory {
            clients,
            concurrency,
        } => run_memory(clients, concurrency.max(1), Duration::from_secs(60)).await,
        Cmd::Run {
            seconds,
            concurrency,
            sweep,
            plot,
        } => {
            run_bench(
                Duration::from_secs(seconds),
                concurrency.max(1),
                &sweep,
                &plot,
            )
            .await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `run`: throughput and latency.

/// Results of one closed-loop measurement.
struct Measured {
    ok: usize,
    other: BTreeMap<u16, usize>,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    /// Latencies of the answers that were not the expected status (shed or refused requests).
    other_latencies_us: Vec<u32>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(0.001)
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }

    /// The `p` percentile of the latencies of refused answers, in ms.
    fn refused_percentile(&self, p: f64) -> f64 {
        if self.other_latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.other_latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.other_latencies_us[i]) / 1000.0
    }

    fn refused(&self) -> String {
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
/// when its status is `expect`.
async fn closed_loop<F, Fut>(
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

fn load_client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

const REDIRECT: &str = "http://127.0.0.1:9/cb";

/// A keep-alive HTTP/1.1 connection through hyper's own client API: no connection pool, no URL
/// parsing, no middleware. Token minting uses these, one per concurrent worker, so that the load
/// generator takes as little as it can of the cores it shares with the servers (the figure is a
/// fraction of the machine's signing limit).
type LeanConnection = hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

async fn lean_connection(base_url: &str) -> anyhow::Result<LeanConnection> {
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
async fn lean_redeem(
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

fn pkce_pair() -> (String, String) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sha2::Digest;
    let verifier = mcp_oauth::trace::random_token(32);
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// A browser signed in as alice who approved `client_id` once: later authorizations of that
/// client come straight back with a code.
async fn returning_user(servers: &ServersView) -> anyhow::Result<(reqwest::Client, String)> {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .build()?;
    let client: Value = browser
        .post(format!("{}/register", servers.issuer))
        .json(&json!({"redirect_uris": [REDIRECT], "client_name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let client_id = client["client_id"]
        .as_str()
        .context("client_id")?
        .to_string();
    let code = full_flow(&browser, servers, &client_id).await?;
    anyhow::ensure!(!code.is_empty(), "no code");
    Ok((browser, client_id))
}

fn field(page: &str, name: &str) -> anyhow::Result<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).context("form field")? + marker.len();
    let end = page[start..].find('"').context("form field end")? + start;
    Ok(page[start..end].to_string())
}

fn location(r: &reqwest::Response) -> anyhow::Result<String> {
    Ok(r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("no redirect")?
        .to_string())
}

fn code_of(url: &str) -> anyhow::Result<String> {
    url::Url::parse(url)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .context("no code")
}

fn authorize_url(servers: &ServersView, client_id: &str, challenge: &str) -> String {
    format!(
        "{}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&scope=mcp.read%20mcp.write&resource={}",
        servers.issuer,
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(format!("{}/mcp", servers.rs).as_bytes())
            .collect::<String>(),
    )
}

/// /authorize -> (login) -> (consent) -> code, in `browser`; returns the code.
async fn full_flow(
    browser: &reqwest::Client,
    servers: &ServersView,
    client_id: &str,
) -> anyhow::Result<String> {
    let (_, challenge) = pkce_pair();
    let mut next = location(
        &browser
            .get(authorize_url(servers, client_id, &challenge))
            .send()
            .await?,
    )?;
    if next.contains("/login?") {
        let page = browser.get(&next).send().await?.text().await?;
        let r = browser
            .post(format!("{}/login", servers.issuer))
            .form(&[
                ("csrf_token", field(&page, "csrf_token")?),
                ("request", field(&page, "request")?),
                ("username", "alice".into()),
                ("password", "password123".into()),
            ])
            .send()
            .await?;
        next = location(&r)?;
    }
    if next.contains("/consent?") {
        let page = browser.get(&next).send().await?.text().await?;
        let r = browser
            .post(format!("{}/consent", servers.issuer))
            .form(&[
                ("csrf_token", field(&page, "csrf_token")?),
                ("request", field(&page, "request")?),
                ("decision", "approve".into()),
            ])
            .send()
            .await?;
        next = location(&r)?;
    }
    code_of(&next)
}

/// `profile`: a fixed count of tools/call requests against servers that a profiler may wrap.
async fn run_profile(
    requests: usize,
    concurrency: usize,
    log: &str,
    path: ProfilePath,
) -> anyhow::Result<()> {
    let servers = Servers::start_with_log(&NO_LIMITS, log)?;
    let http = load_client(concurrency)?;
    servers.wait_ready(&http).await?;
    let view = servers.urls();
    // Set-up: an MCP session, or the codes to redeem (a signed-in user with a remembered consent).
    let (token, session) = token_and_session(&view, &http).await?;
    let mut codes = Vec::new();
    let mut client_id = String::new();
    if path == ProfilePath::Token {
        let (browser, id) = returning_user(&view).await?;
        for _ in 0..requests {
            let (verifier, challenge) = pkce_pair();
            let r = browser
                .get(authorize_url(&view, &id, &challenge))
                .send()
                .await?;
            codes.push((code_of(&location(&r)?)?, verifier));
        }
        client_id = id;
    }
    let codes = std::sync::Arc::new(codes);
    let url = format!("{}/mcp", view.rs);
    // Under callgrind, count only the requests: zero the counters once the servers are set up.
    if std::env::var("MCP_OAUTH_BENCH_WRAP").is_ok_and(|w| w.contains("callgrind")) {
        let _ = Command::new("callgrind_control")
            .args(["-z", &servers.child.id().to_string()])
            .stdout(Stdio::null())
            .status();
    }
    let started = Instant::now();
    let out = flood(requests, concurrency, Duration::from_secs(3600), |i| {
        let request = match path {
            ProfilePath::ToolsCall => http
                .post(&url)
                .bearer_auth(&token)
                .header("mcp-session-id", &session)
                .header("accept", "application/json, text/event-stream")
                .json(&json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "greet", "arguments": {"name": "bench"}}})),
            ProfilePath::Token => {
                let (code, verifier) = &codes[i];
                http.post(format!("{}/token", view.issuer)).form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("client_id", client_id.as_str()),
                    ("code_verifier", verifier.as_str()),
                ])
            }
        };
        async move {
            let r = request.send().await?;
            let status = r.status().as_u16();
            r.bytes().await?;
            Ok(status)
        }
    })
    .await;
    let what = match path {
        ProfilePath::ToolsCall => "tools/call",
        ProfilePath::Token => "/token redemptions",
    };
    println!(
        "{requests} {what} with RUST_LOG={log}: {} in {:.1} s",
        out.summary(),
        started.elapsed().as_secs_f64()
    );
    // Dropping the servers stops them with SIGTERM, so that a wrapping profiler writes its output.
    drop(servers);
    Ok(())
}

/// A complete flow with a fresh login, in a new browser; 200 when it ends with a code, otherwise
/// the status of the answer that stopped it (a shed sign-in is 503, a throttled one 429).
async fn fresh_login_flow(servers: &ServersView, client_id: &str) -> anyhow::Result<u16> {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let (_, challenge) = pkce_pair();
    let r = browser
        .get(authorize_url(servers, client_id, &challenge))
        .send()
        .await?;
    if !r.status().is_redirection() {
        return Ok(r.status().as_u16());
    }
    let login = location(&r)?;
    let page = browser.get(&login).send().await?;
    if !page.status().is_success() {
        return Ok(page.status().as_u16());
    }
    let page = page.text().await?;
    let r = browser
        .post(format!("{}/login", servers.issuer))
        .form(&[
            ("csrf_token", field(&page, "csrf_token")?),
            ("request", field(&page, "request")?),
            ("username", "alice".into()),
            ("password", "password123".into()),
        ])
        .send()
        .await?;
    if !r.status().is_redirection() {
        return Ok(r.status().as_u16());
    }
    let mut next = location(&r)?;
    if next.contains("/consent?") {
        let page = browser.get(&next).send().await?.text().await?;
        let r = browser
            .post(format!("{}/consent", servers.issuer))
            .form(&[
                ("csrf_token", field(&page, "csrf_token")?),
                ("request", field(&page, "request")?),
                ("decision", "approve".into()),
            ])
            .send()
            .await?;
        next = location(&r)?;
    }
    code_of(&next)?;
    Ok(200)
}

/// Fresh-login flows in a closed loop.
async fn fresh_login_flows(
    servers: &ServersView,
    client_id: &str,
    seconds: Duration,
    concurrency: usize,
) -> Measured {
    let (issuer, rs, cid) = (
        servers.issuer.clone(),
        servers.rs.clone(),
        client_id.to_string(),
    );
    closed_loop(seconds, concurrency, 200, move |_| {
        let (issuer, rs, cid) = (issuer.clone(), rs.clone(), cid.clone());
        async move { fresh_login_flow(&Servers::view(&issuer, &rs), &cid).await }
    })
    .await
}

fn print_overload_row(
    name: &str,
    concurrency: usize,
    m: &Measured,
    before: u64,
    peak: u64,
    after: u64,
) {
    println!(
        "| {name} | {concurrency} | {:.0}/s | {:.2} ms | {:.2} ms | {} | {} | {} | {} | {} |",
        m.rate(),
        m.percentile(0.50),
        m.percentile(0.99),
        m.refused(),
        if m.other_latencies_us.is_empty() {
            "-".to_string()
        } else {
            format!("{:.2} ms", m.refused_percentile(0.99))
        },
        mib(before),
        mib(peak),
        mib(after),
    );
}

async fn redeem(
    http: &reqwest::Client,
    servers: &ServersView,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> anyhow::Result<reqwest::Response> {
    Ok(http
        .post(format!("{}/token", servers.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", client_id),
            ("code_verifier", verifier),
        ])
        .send()
        .await?)
}

/// An access token for alice, and an MCP session opened with it.
async fn token_and_session(
    servers: &ServersView,
    http: &reqwest::Client,
) -> anyhow::Result<(String, String)> {
    let (browser, client_id) = returning_user(servers).await?;
    let (verifier, challenge) = pkce_pair();
    let code = code_of(&location(
        &browser
            .get(authorize_url(servers, &client_id, &challenge))
            .send()
            .await?,
    )?)?;
    let token: Value = redeem(http, servers, &client_id, &code, &verifier)
        .await?
        .json()
        .await?;
    let token = token["access_token"].as_str().context("token")?.to_string();
    let session = open_session(servers, http, &token).await?;
    Ok((token, session))
}

async fn open_session(
    servers: &ServersView,
    http: &reqwest::Client,
    token: &str,
) -> anyhow::Result<String> {
    let init = http
        .post(format!("{}/mcp", servers.rs))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}))
        .send()
        .await?;
    let session = init
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .context("session")?
        .to_string();
    let _ = init.bytes().await?;
    http.post(format!("{}/mcp", servers.rs))
        .bearer_auth(token)
        .header("mcp-session-id", &session)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await?;
    Ok(session)
}

async fn tools_call(
    servers: &ServersView,
    seconds: Duration,
    concurrency: usize,
    sessions: usize,
) -> anyhow::Result<Measured> {
    let http = load_client(concurrency)?;
    let (token, first) = token_and_session(servers, &http).await?;
    let mut ids = vec![first];
    while ids.len() < sessions {
        ids.push(open_session(servers, &http, &token).await?);
    }
    let url = format!("{}/mcp", servers.rs);
    let ids = std::sync::Arc::new(ids);
    Ok(closed_loop(seconds, concurrency, 200, move |i| {
        let (http, url, token, ids) = (http.clone(), url.clone(), token.clone(), ids.clone());
        async move {
            let session = &ids[(i as usize) % ids.len()];
            let r = http
                .post(&url)
                .bearer_auth(&token)
                .header("mcp-session-id", session)
                .header("accept", "application/json, text/event-stream")
                .json(&json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "greet", "arguments": {"name": "bench"}}}))
                .send()
                .await?;
            let status = r.status().as_u16();
            let body = r.bytes().await?;
            if status == 200 && !body.windows(12).any(|w| w == b"Hello, bench") {
                return Ok(599);
            }
            Ok(status)
        }
    })
    .await)
}

/// CPU time (user and system) a process has used, from `/proc/<pid>/stat`; zero if unreadable.
fn cpu_of(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and
    // 13th, in clock ticks (100 per second on Linux).
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The raw RS256 signing rate of the crypto backend, key parsed once, on every core.
fn raw_signing_rate(seconds: Duration) -> f64 {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let Ok(private) = rsa::PrivateKey::new(&mut rand::rngs::SysRng, 2048) else {
        return 0.0;
    };
    let Ok(der) = private.to_pkcs1_der() else {
        return 0.0;
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let message = vec![b'x'; 400];
    let started = Instant::now();
    let handles: Vec<_> = (0..cores)
        .map(|_| {
            let der = der.as_bytes().to_vec();
            let message = message.clone();
            std::thread::spawn(move || {
                let Ok(key) = RsaKeyPair::from_der(&der) else {
                    return 0u64;
                };
                let rng = SystemRandom::new();
                let mut sig = vec![0u8; key.public_modulus_len()];
                let mut n = 0u64;
                while started.elapsed() < seconds {
                    if key
                        .sign(&RSA_PKCS1_SHA256, &rng, &message, &mut sig)
                        .is_ok()
                    {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    total as f64 / started.elapsed().as_secs_f64()
}

fn print_row(name: &str, m: &Measured, target: &str) {
    println!(
        "| {name} | {:.0}/s | {:.2} ms | {:.2} ms | {} | {target} |",
        m.rate(),
        m.percentile(0.50),
        m.percentile(0.99),
        m.refused()
    );
}

/// The servers' flags that lift every per-source and per-account limit: the bench measures the
/// servers' capacity, not their throttles.
const NO_LIMITS: [&str; 10] = [
    "--rate-register",
    "0",
    "--rate-token",
    "0",
    "--rate-login",
    "0",
    "--login-failures-per-source",
    "0",
    "--login-failures-per-account",
    "0",
];

async fn run_bench(
    seconds: Duration,
    concurrency: usize,
    sweep: &[usize],
    plot: &std::path::Path,
) -> anyhow::Result<()> {
    let no_limits = NO_LIMITS;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "## mcp-oauth-bench run: {} s per measurement, concurrency {concurrency}, {cores} cores, load generator on the same machine\n",
        seconds.as_secs()
    );

    // A first measure of the signing limit sizes the codes prepared for the minting measurement;
    // the limit the minting rate is compared with is measured again just before and just after
    // it, so that a machine whose speed drifts during the run (a shared host) does not skew it.
    let first_signing = raw_signing_rate(seconds);

    let servers = Servers::start(&no_limits)?;
    let http = load_client(concurrency)?;
    servers.wait_ready(&http).await?;
    let idle = settled_rss(&servers).await;

    println!("| measurement | rate | p50 | p99 | other answers | target |");
    println!("| --- | --- | --- | --- | --- | --- |");

    // 401 challenges.
    let url = format!("{}/mcp", servers.rs);
    let h = http.clone();
    let m = closed_loop(seconds, concurrency, 401, move |_| {
        let (h, url) = (h.clone(), url.clone());
        async move {
            Ok(h.post(&url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await?
                .status()
                .as_u16())
        }
    })
    .await;
    print_row("401 challenge (no token)", &m, ">= 40,000/s");

    // JWKS and metadata.
    for (name, path, base) in [
        ("JWKS", "/oauth/jwks", &servers.issuer),
        (
            "AS metadata",
            "/.well-known/oauth-authorization-server",
            &servers.issuer,
        ),
        (
            "resource metadata",
            "/.well-known/oauth-protected-resource/mcp",
            &servers.rs,
        ),
    ] {
        let (h, url) = (http.clone(), format!("{base}{path}"));
        let m = closed_loop(seconds, concurrency, 200, move |_| {
            let (h, url) = (h.clone(), url.clone());
            async move {
                let r = h.get(&url).send().await?;
                let s = r.status().as_u16();
                r.bytes().await?;
                Ok(s)
            }
        })
        .await;
        print_row(name, &m, "-");
    }

    // tools/call greet, one session and many.
    let one = tools_call(&servers.urls(), seconds, concurrency, 1).await?;
    print_row("tools/call greet, one session", &one, ">= 12,000/s");
    let loaded = servers.rss_kib();
    let many = tools_call(&servers.urls(), seconds, concurrency, concurrency).await?;
    print_row(
        &format!("tools/call greet, {concurrency} sessions"),
        &many,
        ">= 12,000/s",
    );

    // Returning user: authorize (signed in, consent remembered) -> code -> token.
    let (browser, client_id) = returning_user(&servers.urls()).await?;
    let (b, s_issuer, s_rs, cid) = (
        browser.clone(),
        servers.issuer.clone(),
        servers.rs.clone(),
        client_id.clone(),
    );
    let flows = closed_loop(seconds, concurrency, 200, move |_| {
        let (b, cid) = (b.clone(), cid.clone());
        let servers_view = (s_issuer.clone(), s_rs.clone());
        async move {
            let view = Servers::view(&servers_view.0, &servers_view.1);
            let (verifier, challenge) = pkce_pair();
            let r = b.get(authorize_url(&view, &cid, &challenge)).send().await?;
            let code = code_of(&location(&r)?)?;
            Ok(redeem(&b, &view, &cid, &code, &verifier)
                .await?
                .status()
                .as_u16())
        }
    })
    .await;
    print_row(
        "complete flow, returning user (authorize + token)",
        &flows,
        ">= 1,500/s",
    );

    // Token minting: redeem codes made beforehand, enough for the whole measurement.
    let wanted = (first_signing * seconds.as_secs_f64() * 1.2) as usize + 1000;
    let prepare_deadline = Instant::now() + seconds * 4;
    let mut makers = Vec::new();
    for _ in 0..concurrency {
        let (b, view, cid) = (browser.clone(), servers.urls(), client_id.clone());
        let share = wanted / concurrency + 1;
        makers.push(tokio::spawn(async move {
            let mut made = Vec::with_capacity(share);
            while made.len() < share && Instant::now() < prepare_deadline {
                let (verifier, challenge) = pkce_pair();
                let Ok(r) = b.get(authorize_url(&view, &cid, &challenge)).send().await else {
                    break;
                };
                match location(&r).and_then(|l| code_of(&l)) {
                    Ok(code) => made.push((code, verifier)),
                    Err(_) => break,
                }
            }
            made
        }));
    }
    let mut codes = Vec::new();
    for m in makers {
        codes.extend(m.await.unwrap_or_default());
    }
    let codes = std::sync::Arc::new(codes);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // One lean connection per worker (`closed_loop` passes the worker in the top bits).
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(tokio::sync::Mutex::new(
            lean_connection(&servers.issuer).await?,
        ));
    }
    let connections = std::sync::Arc::new(connections);
    let host = servers.issuer.trim_start_matches("http://").to_string();
    let (cid, codes2) = (client_id.clone(), codes.clone());
    let signing_before = raw_signing_rate(seconds);
    let (server_cpu, generator_cpu) = (servers.cpu(), cpu_of("self"));
    let minting = closed_loop(seconds, concurrency, 200, move |call| {
        let (connections, host) = (connections.clone(), host.clone());
        let (cid, codes, next) = (cid.clone(), codes2.clone(), next.clone());
        async move {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((code, verifier)) = codes.get(i) else {
                tokio::time::sleep(Duration::from_millis(1)).await;
                return Ok(0);
            };
            let form = form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", REDIRECT)
                .append_pair("client_id", &cid)
                .append_pair("code_verifier", verifier)
                .finish();
            let worker = (call >> 40) as usize % connections.len();
            lean_redeem(&connections[worker], &host, form).await
        }
    })
    .await;
    if minting.other.contains_key(&0) {
        println!(
            "(the {} prepared codes ran out before the end of the minting measurement)",
            codes.len()
        );
    }
    let (server_cpu, generator_cpu) = (
        servers.cpu().saturating_sub(server_cpu),
        cpu_of("self").saturating_sub(generator_cpu),
    );
    let minting_cpu = (minting.elapsed, server_cpu, generator_cpu);
    let signing_after = raw_signing_rate(seconds);
    let signing_limit = (signing_before + signing_after) / 2.0;
    let minting_rate = minting.ok as f64 / minting.elapsed.as_secs_f64();
    print_row(
        &format!("token minting (/token redemptions, {} codes)", codes.len()),
        &minting,
        ">= 75% of signing limit",
    );

    // Fresh login every time: the argon2 cost.
    let fresh = fresh_login_flows(&servers.urls(), &client_id, seconds, concurrency).await;
    print_row(
        "flow with a fresh login (argon2id 19 MiB, t=2, p=1)",
        &fresh,
        "report",
    );

    // Overload: four times the sustainable concurrency of each path. tools/call and 401s
    // saturate at the run's concurrency; password checks at one per core.
    println!(
        "\n### Overload: four times the sustainable concurrency\n\n| path | concurrency | admitted | admitted p50 | admitted p99 | shed or refused | their p99 | RSS before | RSS peak | RSS after |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    let over = concurrency * 4;
    let before = settled_rss(&servers).await;
    let sampler = servers.sample_rss();
    let m = tools_call(&servers.urls(), seconds, over, 1).await?;
    let peak = sampler.peak().await;
    let after_over = settled_rss(&servers).await;
    print_overload_row("tools/call greet", over, &m, before, peak, after_over);

    let url = format!("{}/mcp", servers.rs);
    let h = load_client(over)?;
    let before = after_over;
    let sampler = servers.sample_rss();
    let m = closed_loop(seconds, over, 401, move |_| {
        let (h, url) = (h.clone(), url.clone());
        async move {
            Ok(h.post(&url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await?
                .status()
                .as_u16())
        }
    })
    .await;
    let peak = sampler.peak().await;
    let after_over = settled_rss(&servers).await;
    print_overload_row("401 challenge", over, &m, before, peak, after_over);

    let over_logins = cores * 4;
    let before = after_over;
    let sampler = servers.sample_rss();
    let m = fresh_login_flows(&servers.urls(), &client_id, seconds, over_logins).await;
    let peak = sampler.peak().await;
    let after_over = settled_rss(&servers).await;
    print_overload_row(
        "flow with a fresh login",
        over_logins,
        &m,
        before,
        peak,
        after_over,
    );
    println!();

    let after = settled_rss(&servers).await;
    drop(servers);

    println!();
    println!(
        "Raw RS256 signing limit (aws-lc-rs, key parsed once, {cores} threads, the servers idle): {signing_limit:.0}/s, the mean of {signing_before:.0}/s just before the minting measurement and {signing_after:.0}/s just after ({first_signing:.0}/s at the start of the run); token minting reached {minting_rate:.0}/s = {:.0}% of it.",
        100.0 * minting_rate / signing_limit.max(1.0)
    );
    let (wall, server_cpu, generator_cpu) = minting_cpu;
    let available = wall.as_secs_f64() * cores as f64;
    println!(
        "CPU during token minting: the servers {:.0}%, the load generator {:.0}% of the {cores} cores ({:.1} s of {available:.1} s), the rest the kernel's other work and idle time.",
        100.0 * server_cpu.as_secs_f64() / available,
        100.0 * generator_cpu.as_secs_f64() / available,
        (server_cpu + generator_cpu).as_secs_f64(),
    );
    println!(
        "RSS of both servers (one process): idle {}, after tools/call load {}, after the run {}.",
        mib(idle),
        mib(loaded),
        mib(after)
    );

    // Trace on versus off, on the hottest path: fresh servers for each run, off and on
    // alternating three times, medians (one pair of runs moves by ~10% on a shared machine).
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let (mut lines, mut dropped) = (0, 0);
    for _ in 0..3 {
        for traced in [false, true] {
            let servers = if traced {
                Servers::start_with_log(&no_limits, mcp_oauth::trace::DEFAULT_FILTER)?
            } else {
                Servers::start(&no_limits)?
            };
            servers.wait_ready(&http).await?;
            let rate = tools_call(&servers.urls(), seconds, concurrency, 1)
                .await?
                .rate();
            if traced { &mut on } else { &mut off }.push(rate);
            // Stop the servers (they flush the trace), then count what the trace wrote, and
            // what it dropped because the writer fell behind (which would flatter the figure).
            let log_file = servers.log_file.clone();
            drop(servers);
            if traced {
                let log = std::fs::read_to_string(&log_file).unwrap_or_default();
                lines += log.lines().count();
                dropped += log
                    .lines()
                    .filter_map(|l| l.strip_prefix("flow trace: "))
                    .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                    .sum::<u64>();
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (on_rate, off_rate) = (median(&mut on), median(&mut off));
    println!(
        "Flow trace on (the default filter, written to a file): tools/call {on_rate:.0}/s versus {off_rate:.0}/s with it off ({:+.1}%; medians of three alternating runs, on {:?}, off {:?}).",
        100.0 * (on_rate - off_rate) / off_rate.max(1.0),
        on.iter().map(|r| r.round()).collect::<Vec<_>>(),
        off.iter().map(|r| r.round()).collect::<Vec<_>>(),
    );
    println!("The traced runs wrote {lines} lines and dropped {dropped}.");

    // Sweep of concurrency for the plot.
    let servers = Servers::start(&no_limits)?;
    servers.wait_ready(&http).await?;
    let mut points = Vec::new();
    println!("\n| concurrency | tools/call rate | p99 |\n| --- | --- | --- |");
    for &c in sweep {
        let m = tools_call(&servers.urls(), seconds, c.max(1), 1).await?;
        println!("| {c} | {:.0}/s | {:.2} ms |", m.rate(), m.percentile(0.99));
        points.push((c, m.rate(), m.percentile(0.99)));
    }
    drop(servers);
    write_plot(plot, &points)?;
    println!("\nPlot: {}", plot.display());

    run_memory(10_000, concurrency, seconds * 12).await
}

/// Each server's idle RSS alone, then the RSS `clients` registrations add.
async fn run_memory(clients: usize, concurrency: usize, limit: Duration) -> anyhow::Result<()> {
    let http = load_client(concurrency)?;
    // Each server alone, idle.
    let (as_port, rs_port) = (free_port()?, free_port()?);
    let (issuer, rs) = (
        format!("http://127.0.0.1:{as_port}"),
        format!("http://127.0.0.1:{rs_port}"),
    );
    let auth_alone = idle_rss_alone(
        "auth-server",
        &[
            "--in-memory".into(),
            "--issuer".into(),
            issuer.clone(),
            "--resource".into(),
            rs.clone(),
        ],
        &format!("{issuer}/oauth/jwks"),
    )
    .await?;
    let mcp_alone = idle_rss_alone(
        "mcp-server",
        &[
            "--resource-server".into(),
            rs.clone(),
            "--authorization-server".into(),
            issuer.clone(),
        ],
        &format!("{rs}/.well-known/oauth-protected-resource"),
    )
    .await?;
    println!(
        "\nIdle RSS, each server alone: auth-server {}, mcp-server {} (target <= 15 MiB each).",
        mib(auth_alone),
        mib(mcp_alone)
    );

    // What each registered client costs.
    let servers = Servers::start(&NO_LIMITS)?;
    servers.wait_ready(&http).await?;
    let before = settled_rss(&servers).await;
    let out = registrations(&servers, &http, clients, concurrency, limit).await;
    let after = settled_rss(&servers).await;
    let stored = out.statuses.get(&201).copied().unwrap_or(0);
    println!(
        "RSS per registered client: {stored} clients took {} ({:.2} KiB each; target <= 0.5 KiB).",
        mib(after.saturating_sub(before)),
        after.saturating_sub(before) as f64 / stored.max(1) as f64
    );
    Ok(())
}

impl Servers {
    /// A view of running servers by their URLs (for closures that cannot borrow them).
    fn view(issuer: &str, rs: &str) -> ServersView {
        ServersView {
            issuer: issuer.to_string(),
            rs: rs.to_string(),
        }
    }

    fn urls(&self) -> ServersView {
        Self::view(&self.issuer, &self.rs)
    }
}

/// The URLs of running servers.
struct ServersView {
    issuer: String,
    rs: String,
}

fn write_plot(path: &std::path::Path, points: &[(usize, f64, f64)]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, (800, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(400);
    let max_c = points.iter().map(|p| p.0).max().unwrap_or(1) as f64;
    let max_rate = points.iter().map(|p| p.1).fold(1.0, f64::max);
    let max_p99 = points.iter().map(|p| p.2).fold(0.1, f64::max);
    let rates: Vec<(f64, f64)> = points.iter().map(|p| (p.0 as f64, p.1)).collect();
    let p99s: Vec<(f64, f64)> = points.iter().map(|p| (p.0 as f64, p.2)).collect();
    draw_panel(
        &left,
        "tools/call greet: throughput",
        "requests/s",
        max_c,
        max_rate,
        &rates,
        &BLUE,
    )?;
    draw_panel(
        &right,
        "tools/call greet: p99 latency",
        "p99 (ms)",
        max_c,
        max_p99,
        &p99s,
        &RED,
    )?;
    root.present()?;
    Ok(())
}

/// One panel of the plot: `series` against concurrency (log scale), as a line with dots.
fn draw_panel<DB: plotters::prelude::DrawingBackend>(
    area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    max_x: f64,
    max_y: f64,
    series: &[(f64, f64)],
    color: &plotters::style::RGBColor,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    use plotters::prelude::*;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..max_x * 1.1).log_scale(), 0f64..max_y * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("concurrency")
        .y_desc(y_desc)
        .draw()?;
    chart.draw_series(LineSeries::new(series.iter().copied(), color))?;
    chart.draw_series(
        series
            .iter()
            .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
    )?;
    Ok(())
}
