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

#[derive(Subcommand)]
enum Cmd {
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
}

impl Servers {
    fn start(extra: &[&str]) -> anyhow::Result<Servers> {
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
        let child = Command::new(bin)
            .args([
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
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mcp-oauth")?;
        Ok(Servers { child, issuer })
    }

    async fn wait_ready(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
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
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
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
    }
}
