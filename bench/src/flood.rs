//! `mcp-oauth-bench flood`: 10,000 registrations and 10,000 failed logins, as fast as 32
//! concurrent connections allow, once with the default limits (the flood is shed with 429) and
//! once with the registration limit off (what each stored client costs). Every loop is bounded in
//! count and time and targets only the servers it started.

use crate::load::{Outcome, flood};
use crate::report::mib;
use crate::servers::{Binaries, Servers, settled_rss};
use mcp_oauth_testkit as testkit;
use serde_json::json;
use std::time::Duration;

pub async fn run_flood(
    binaries: &Binaries,
    requests: usize,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let limit = Duration::from_secs(seconds);
    println!(
        "## Flood: {requests} requests per flood, {concurrency} concurrent, at most {seconds} s each\n"
    );
    println!("| scenario | answers | time | rate | RSS before | RSS after | RSS growth |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");

    // Default limits: the floods are shed.
    let servers = Servers::start(binaries, &[])?;
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
    let servers = Servers::start(binaries, &["--rate-register", "0"])?;
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

/// `n` registrations of distinct clients, `c` at a time, for at most `limit`.
pub async fn registrations(
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
    let browser = testkit::browser()?;
    let client = testkit::register(
        &browser,
        &servers.issuer,
        &json!({"redirect_uris": ["http://127.0.0.1:9/cb"]}),
    )
    .await?;
    let client_id = testkit::client_id(&client)?;
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let start = browser
        .get(testkit::authorize_url(
            &servers.issuer,
            &client_id,
            challenge,
            &[],
        )?)
        .send()
        .await?;
    let login_url = testkit::location(&start)?;
    let page = browser.get(&login_url).send().await?.text().await?;
    let (csrf, request) = (
        testkit::hidden_field(&page, "csrf_token")?,
        testkit::hidden_field(&page, "request")?,
    );
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
