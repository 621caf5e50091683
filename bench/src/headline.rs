//! The headline of `mcp-oauth-bench run`: the servers as a user runs them. The durable SQLite store
//! (nothing acknowledged before it is on disk), the flow trace on and written to a file, metrics
//! on, login lockouts and the client limit as shipped. Lifted, and said so: the per-source rate
//! limits of `/authorize`, `/register`, `/token` and the login, since the whole load comes from one
//! address, which those limits exist to slow down. The in-memory figures of `run` come after it.

use crate::durable::registrations;
use crate::flows::{challenges, returning_flows, returning_user, tools_call, tools_call_at};
use crate::grants::{INTROSPECTION_SECRET, introspections, refresh_rotations};
use crate::load::{Measured, load_client};
use crate::report::print_row;
use crate::servers::{BareRmcp, Binaries, SERVERS_DEFAULT_FILTER, Servers};
use std::time::Duration;

/// One point of the `tools/call` sweep: concurrency, rate, p99 in ms.
pub type SweepPoint = (usize, f64, f64);

/// `met` or `not met`, for a figure against its floor.
pub fn judged(figure: f64, floor: f64) -> &'static str {
    if figure >= floor { "met" } else { "not met" }
}

/// A row with a rate target, judged.
fn judged_row(name: &str, m: &Measured, floor: f64, target: &str) {
    print_row(name, m, &format!("{target} ({})", judged(m.rate(), floor)));
}

/// Measures the default configuration: every hot path, the resource server against bare rmcp,
/// and the `tools/call` sweep for the plot, which it returns. `signing_limit` is the machine's
/// raw RS256 signing rate, measured by the caller.
pub async fn headline(
    binaries: &Binaries,
    seconds: Duration,
    concurrency: usize,
    sweep: &[usize],
    signing_limit: f64,
) -> anyhow::Result<Vec<SweepPoint>> {
    let data = std::env::temp_dir().join(format!("mcp-oauth-bench-default-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    let mut settings = mcp_oauth_testkit::NO_RATE_LIMITS.to_vec();
    settings.extend(["--introspection-secret", INTROSPECTION_SECRET]);
    let servers = Servers::start_durable(binaries, &settings, &data, SERVERS_DEFAULT_FILTER)?;
    let measured = measure(
        &servers,
        binaries,
        seconds,
        concurrency,
        sweep,
        signing_limit,
    )
    .await;
    drop(servers);
    let _ = std::fs::remove_dir_all(&data);
    measured
}

async fn measure(
    servers: &Servers,
    binaries: &Binaries,
    seconds: Duration,
    concurrency: usize,
    sweep: &[usize],
    signing_limit: f64,
) -> anyhow::Result<Vec<SweepPoint>> {
    let http = load_client(concurrency)?;
    servers.wait_ready(&http).await?;
    let view = servers.urls();
    println!(
        "### The default configuration\n\nThe durable SQLite store (`synchronous=FULL`), the flow trace on (written to a file), metrics on, login lockouts and `--max-clients` as shipped. Lifted: the per-source rate limits (`--rate-authorize`, `--rate-register`, `--rate-token`, `--rate-login` 0), since the whole load comes from one address.\n"
    );
    println!("| measurement | rate | p50 | p99 | other answers | target |");
    println!("| --- | --- | --- | --- | --- | --- |");

    let m = challenges(&view, http.clone(), seconds, concurrency).await;
    judged_row("401 challenge (no token)", &m, 40_000.0, ">= 40,000/s");
    let ours = tools_call(&view, seconds, concurrency, 1).await?;
    judged_row(
        "tools/call greet, one session",
        &ours,
        12_000.0,
        ">= 12,000/s",
    );
    let bare = BareRmcp::start(binaries).await?;
    let bare_view = Servers::view(&servers.issuer, &bare.url);
    let baseline = tools_call_at(&view, &bare_view, seconds, concurrency, 1).await?;
    drop(bare);
    print_row(
        "tools/call greet, bare rmcp (no auth layer)",
        &baseline,
        "-",
    );
    let ratio = ours.rate() / baseline.rate().max(1.0);
    println!(
        "| tools/call greet with a token / bare rmcp | {ratio:.2} | | | | >= 0.90 ({}) |",
        judged(ratio, 0.90)
    );

    let (browser, client_id) = returning_user(&view).await?;
    let flows = returning_flows(&browser, &view, &client_id, seconds, concurrency).await;
    judged_row(
        "complete flow, returning user (authorize + token)",
        &flows,
        1_500.0,
        ">= 1,500/s",
    );
    let rotations = refresh_rotations(&browser, &view, &client_id, seconds, concurrency).await?;
    print_row(
        "refresh rotations (one chain per connection)",
        &rotations,
        &format!(
            ">= 75% of signing limit ({:.0}%: {})",
            100.0 * rotations.rate() / signing_limit.max(1.0),
            judged(rotations.rate(), 0.75 * signing_limit)
        ),
    );
    let introspected = introspections(&browser, &view, &client_id, seconds, concurrency).await?;
    judged_row(
        "introspection of a valid token (resource-server credential)",
        &introspected,
        20_000.0,
        ">= 20,000/s",
    );
    let registered = registrations(&view, seconds, concurrency).await?;
    print_row("dynamic client registrations", &registered, "-");

    println!("\n| concurrency | tools/call rate | p99 |\n| --- | --- | --- |");
    let mut points = Vec::new();
    for &c in sweep {
        let m = tools_call(&view, seconds, c.max(1), 1).await?;
        println!("| {c} | {:.0}/s | {:.2} ms |", m.rate(), m.percentile(0.99));
        points.push((c, m.rate(), m.percentile(0.99)));
    }
    println!("\n### In memory, the trace off\n");
    Ok(points)
}
