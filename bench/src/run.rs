//! `mcp-oauth-bench run`: first the default configuration (`headline.rs`), then, in memory with
//! the trace off: throughput and latency of every hot path against their targets, the
//! token minting rate against the machine's raw RS256 signing limit, overload at four times the
//! sustainable concurrency, the servers' resident memory, the cost of the flow trace, and a sweep
//! of `tools/call` over concurrency levels with its plot; then the memory figures.

use crate::flows::{
    REDIRECT, challenges, fresh_login_flows, returning_code, returning_flows, returning_user,
    tools_call, tools_call_at,
};
use crate::grants::{INTROSPECTION_SECRET, introspections, refresh_rotations};
use crate::load::{closed_loop, lean_connection, lean_redeem, load_client};
use crate::memory::run_memory;
use crate::report::{mib, print_overload_row, print_row, write_plot};
use crate::servers::{
    BareRmcp, Binaries, SERVERS_DEFAULT_FILTER, Servers, cpu_of, no_limits, settled_rss,
};
use std::time::{Duration, Instant};

/// `run`: every measurement in turn, on fresh servers where a measurement needs them.
pub async fn run_bench(
    binaries: &Binaries,
    seconds: Duration,
    concurrency: usize,
    sweep: &[usize],
    plot: &std::path::Path,
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "## mcp-oauth-bench run: {} s per measurement, concurrency {concurrency}, {cores} cores, load generator on the same machine, servers of the `{}` profile\n",
        seconds.as_secs(),
        binaries.profile.name()
    );

    // A first measure of the signing limit sizes the codes prepared for the minting measurement;
    // the limit the minting rate is compared with is measured again just before and just after
    // it, so that a machine whose speed drifts during the run (a shared host) does not skew it.
    let first_signing = raw_signing_rate(seconds);
    let default_sweep =
        crate::headline::headline(binaries, seconds, concurrency, sweep, first_signing).await?;

    let mut settings = no_limits();
    settings.extend(["--introspection-secret", INTROSPECTION_SECRET]);
    let servers = Servers::start(binaries, &settings)?;
    let http = load_client(concurrency)?;
    servers.wait_ready(&http).await?;
    let idle = settled_rss(&servers).await;

    println!("| measurement | rate | p50 | p99 | other answers | target |");
    println!("| --- | --- | --- | --- | --- | --- |");

    // 401 challenges.
    let m = challenges(&servers.urls(), http.clone(), seconds, concurrency).await;
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

    // The same tools on rmcp with nothing in front: the resource server's ceiling.
    let bare = BareRmcp::start(binaries).await?;
    let bare_view = Servers::view(&servers.issuer, &bare.url);
    let baseline = tools_call_at(&servers.urls(), &bare_view, seconds, concurrency, 1).await?;
    drop(bare);
    print_row(
        "tools/call greet, bare rmcp (no auth layer)",
        &baseline,
        "-",
    );
    let ratio = one.rate() / baseline.rate().max(1.0);
    // The servers here run with the trace off; `baseline` measures the defaults.
    println!(
        "| tools/call greet with a token (trace off) / bare rmcp | {ratio:.2} | | | | >= 0.90 ({}) |",
        if ratio >= 0.90 { "met" } else { "not met" }
    );

    // Returning user: authorize (signed in, consent remembered) -> code -> token.
    let (browser, client_id) = returning_user(&servers.urls()).await?;
    let flows = returning_flows(&browser, &servers.urls(), &client_id, seconds, concurrency).await;
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
                match returning_code(&b, &view, &cid).await {
                    Ok(code_and_verifier) => made.push(code_and_verifier),
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
    let urls = servers.urls();
    let rotations = refresh_rotations(&browser, &urls, &client_id, seconds, concurrency).await?;
    let rotation_rate = rotations.ok as f64 / rotations.elapsed.as_secs_f64();
    print_row(
        "refresh rotations (one chain per connection)",
        &rotations,
        ">= 75% of signing limit",
    );
    let introspected = introspections(&browser, &urls, &client_id, seconds, concurrency).await?;
    print_row(
        "introspection of a valid token (resource-server credential)",
        &introspected,
        ">= 20,000/s",
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

    let h = load_client(over)?;
    let before = after_over;
    let sampler = servers.sample_rss();
    let m = challenges(&servers.urls(), h, seconds, over).await;
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
    println!(
        "Refresh rotations reached {rotation_rate:.0}/s = {:.0}% of the signing limit (target 75%: {}).",
        100.0 * rotation_rate / signing_limit.max(1.0),
        if rotation_rate >= 0.75 * signing_limit {
            "met"
        } else {
            "not met"
        },
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

    trace_cost(binaries, &http, seconds, concurrency).await?;
    sweep_and_plot(binaries, &http, seconds, sweep, &default_sweep, plot).await?;

    run_memory(binaries, 10_000, concurrency, seconds * 12).await
}

/// `mcp-oauth-bench cost`: [`trace_cost`] alone.
pub async fn cost(
    binaries: &Binaries,
    seconds: Duration,
    concurrency: usize,
) -> anyhow::Result<()> {
    let http = load_client(concurrency)?;
    trace_cost(binaries, &http, seconds, concurrency).await
}

/// The cost of the flow trace and the metrics on the hottest path: tools/call with the servers'
/// defaults (the trace written to a file, metrics recorded) against the trace at `RUST_LOG=warn`
/// and the metrics off (`--no-metrics`), and with the metrics alone.
async fn trace_cost(
    binaries: &Binaries,
    http: &reqwest::Client,
    seconds: Duration,
    concurrency: usize,
) -> anyhow::Result<()> {
    // Fresh servers for each run. The three configurations run one after the other in each of
    // five rounds, and each change is the median of the rounds' changes: the machine's speed
    // drifts by several percent from one minute to the next, much less within a round.
    const ROUNDS: usize = 5;
    const BOTH_OFF: usize = 0;
    const METRICS_ONLY: usize = 1;
    const DEFAULT: usize = 2;
    let mut rates: [Vec<f64>; 3] = Default::default();
    let (mut lines, mut dropped) = (0, 0);
    for _ in 0..ROUNDS {
        for config in [BOTH_OFF, METRICS_ONLY, DEFAULT] {
            let mut extra = no_limits();
            if config == BOTH_OFF {
                extra.extend(["--no-metrics", "--mcp-no-metrics"]);
            }
            let servers = if config == DEFAULT {
                Servers::start_with_log(binaries, &extra, SERVERS_DEFAULT_FILTER)?
            } else {
                Servers::start(binaries, &extra)?
            };
            servers.wait_ready(http).await?;
            let rate = tools_call(&servers.urls(), seconds, concurrency, 1)
                .await?
                .rate();
            rates[config].push(rate);
            // Stop the servers (they flush the trace), then count what the trace wrote, and
            // what it dropped because the writer fell behind (which would flatter the figure).
            let log_file = servers.log_file.clone();
            drop(servers);
            if config == DEFAULT {
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
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let runs = |v: &[f64]| v.iter().map(|r| r.round()).collect::<Vec<_>>();
    // Each round's change against that round's run with both off, in percent.
    let changes = |config: usize| -> Vec<f64> {
        rates[config]
            .iter()
            .zip(&rates[BOTH_OFF])
            .map(|(rate, off)| 100.0 * (rate - off) / off.max(1.0))
            .collect()
    };
    let (metrics, both) = (changes(METRICS_ONLY), changes(DEFAULT));
    let rounded = |v: &[f64]| {
        v.iter()
            .map(|c| (c * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    };
    println!(
        "Metrics on, trace off: tools/call {:+.1}% against both off (median of {ROUNDS} rounds' changes {:?}; tools/call {:?}/s, both off {:?}/s).",
        median(&metrics),
        rounded(&metrics),
        runs(&rates[METRICS_ONLY]),
        runs(&rates[BOTH_OFF]),
    );
    let change = median(&both);
    println!(
        "Flow trace and metrics on (the defaults, the trace written to a file): tools/call {change:+.1}% against both off (target at most -10%: {}; median of {ROUNDS} rounds' changes {:?}; tools/call {:?}/s).",
        if change >= -10.0 { "met" } else { "not met" },
        rounded(&both),
        runs(&rates[DEFAULT]),
    );
    println!("The traced runs wrote {lines} lines and dropped {dropped}.");
    Ok(())
}

/// `tools/call greet` through the resource server (the defaults: trace and metrics on, the
/// trace written to a file) and through the bare rmcp baseline, in `rounds` alternating rounds.
pub async fn baseline(
    binaries: &Binaries,
    seconds: Duration,
    concurrency: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let servers = Servers::start_with_log(binaries, &no_limits(), SERVERS_DEFAULT_FILTER)?;
    servers.wait_ready(&load_client(concurrency)?).await?;
    let bare = BareRmcp::start(binaries).await?;
    let bare_view = Servers::view(&servers.issuer, &bare.url);
    let mut ratios = Vec::with_capacity(rounds);
    let (mut ours_rates, mut bare_rates) = (Vec::new(), Vec::new());
    let ours_view = servers.urls();
    for round in 0..rounds {
        // Which goes first alternates, so that a machine whose speed drifts skews neither.
        let measure_ours = || tools_call(&ours_view, seconds, concurrency, 1);
        let measure_bare = || tools_call_at(&ours_view, &bare_view, seconds, concurrency, 1);
        let (ours, plain) = if round % 2 == 0 {
            let ours = measure_ours().await?.rate();
            (ours, measure_bare().await?.rate())
        } else {
            let plain = measure_bare().await?.rate();
            (measure_ours().await?.rate(), plain)
        };
        ours_rates.push(ours.round());
        bare_rates.push(plain.round());
        ratios.push(ours / plain.max(1.0));
    }
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "tools/call greet with a token / bare rmcp: {median:.2} (target >= 0.90: {}; median of {rounds} rounds {:?}; with a token {:?}/s, bare {:?}/s; concurrency {concurrency}, one session).",
        if median >= 0.90 { "met" } else { "not met" },
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>(),
        ours_rates,
        bare_rates,
    );
    Ok(())
}

/// tools/call at each concurrency of `sweep`, in memory with the trace off, as a table, and as
/// the plot at `plot` beside `default_sweep` (the default configuration's).
async fn sweep_and_plot(
    binaries: &Binaries,
    http: &reqwest::Client,
    seconds: Duration,
    sweep: &[usize],
    default_sweep: &[crate::headline::SweepPoint],
    plot: &std::path::Path,
) -> anyhow::Result<()> {
    // Sweep of concurrency for the plot.
    let servers = Servers::start(binaries, &no_limits())?;
    servers.wait_ready(http).await?;
    let mut points = Vec::new();
    println!("\n| concurrency | tools/call rate | p99 |\n| --- | --- | --- |");
    for &c in sweep {
        let m = tools_call(&servers.urls(), seconds, c.max(1), 1).await?;
        println!("| {c} | {:.0}/s | {:.2} ms |", m.rate(), m.percentile(0.99));
        points.push((c, m.rate(), m.percentile(0.99)));
    }
    drop(servers);
    write_plot(
        plot,
        &[
            ("default configuration", default_sweep),
            ("in memory, trace off", &points),
        ],
    )?;
    println!("\nPlot: {}", plot.display());
    Ok(())
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
