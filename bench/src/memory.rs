//! `mcp-oauth-bench memory` (also the end of `run`): each server's idle RSS, started alone, and
//! the RSS that registered clients add, on fresh servers.

use crate::flood::registrations;
use crate::load::load_client;
use crate::report::mib;
use crate::servers::{Binaries, Servers, free_port, idle_rss_alone, no_limits, settled_rss};
use std::time::Duration;

/// Each server's idle RSS alone, then the RSS `clients` registrations add.
pub async fn run_memory(
    binaries: &Binaries,
    clients: usize,
    concurrency: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let http = load_client(concurrency)?;
    // Each server alone, idle.
    let (as_port, rs_port) = (free_port()?, free_port()?);
    let (issuer, rs) = (
        format!("http://127.0.0.1:{as_port}"),
        format!("http://127.0.0.1:{rs_port}"),
    );
    let auth_alone = idle_rss_alone(
        binaries,
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
        binaries,
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
    let servers = Servers::start(binaries, &no_limits())?;
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
