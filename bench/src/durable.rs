//! `mcp-oauth-bench durable`: the writes of the authorization server with the durable SQLite
//! store (the default: nothing is acknowledged before it is on disk) against the same with
//! `--in-memory`, each measured on fresh servers: registrations, returning-user flows (a code
//! stored and redeemed, a refresh-token family created) and refresh rotations. The target is at
//! least 0.50 of the in-memory rate for each. With `--postgres`, the same on one server whose
//! store is a scratch database of the machine's PostgreSQL (`TEST_DATABASE_URL`), and on two
//! behind haproxy (`replicas.rs`).

use crate::flows::{REDIRECT, returning_flows, returning_user};
use crate::grants::refresh_rotations;
use crate::load::{Measured, closed_loop, load_client};
use crate::replicas::{Replicas, haproxy};
use crate::report::print_row;
use crate::servers::{Binaries, Servers, ServersView, no_limits};
use serde_json::json;
use std::time::Duration;

/// The three write paths, on servers started by `start`.
async fn writes(
    servers: &Servers,
    seconds: Duration,
    concurrency: usize,
) -> anyhow::Result<[Measured; 3]> {
    let http = load_client(concurrency)?;
    servers.wait_ready(&http).await?;
    writes_at(&servers.urls(), seconds, concurrency).await
}

/// The three write paths, at the servers `view` names (ready).
async fn writes_at(
    view: &ServersView,
    seconds: Duration,
    concurrency: usize,
) -> anyhow::Result<[Measured; 3]> {
    let registrations = registrations(view, seconds, concurrency).await?;
    let (browser, client_id) = returning_user(view).await?;
    let flows = returning_flows(&browser, view, &client_id, seconds, concurrency).await;
    let rotations = refresh_rotations(&browser, view, &client_id, seconds, concurrency).await?;
    Ok([registrations, flows, rotations])
}

/// Dynamic client registrations (public clients) in a closed loop.
pub async fn registrations(
    view: &ServersView,
    seconds: Duration,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let http = load_client(concurrency)?;
    let url = format!("{}/register", view.issuer);
    Ok(closed_loop(seconds, concurrency, 201, move |_| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body = json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"});
            let response = http.post(&url).json(&body).send().await?;
            let status = response.status().as_u16();
            response.bytes().await?;
            Ok(status)
        }
    })
    .await)
}

pub async fn run_durable(
    binaries: &Binaries,
    seconds: Duration,
    concurrency: usize,
    postgres: bool,
) -> anyhow::Result<()> {
    // Registrations in memory outrun the default client limit within a measurement.
    let mut settings = no_limits();
    settings.extend(["--max-clients", "10000000"]);
    let data = std::env::temp_dir().join(format!("mcp-oauth-bench-durable-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    let durable = {
        let servers = Servers::start_durable(binaries, &settings, &data, "warn")?;
        writes(&servers, seconds, concurrency).await?
    };
    let _ = std::fs::remove_dir_all(&data);
    let memory = {
        let servers = Servers::start(binaries, &settings)?;
        writes(&servers, seconds, concurrency).await?
    };
    // One server on a scratch database of the machine's PostgreSQL (`TEST_DATABASE_URL`), then
    // two behind haproxy on another.
    let on_postgres = match postgres {
        true => {
            let database = mcp_oauth_testkit::postgres::ScratchDatabase::create().await;
            let servers = Servers::start_on_database(binaries, &settings, &database.url, None)?;
            Some(writes(&servers, seconds, concurrency).await?)
        }
        false => None,
    };
    let on_two = match (postgres, haproxy()) {
        (true, Some(haproxy)) => {
            let database = mcp_oauth_testkit::postgres::ScratchDatabase::create().await;
            let replicas = Replicas::start(binaries, &haproxy, &settings, &database.url).await?;
            Some(writes_at(&replicas.view, seconds, concurrency).await?)
        }
        (true, None) => {
            println!("Two servers behind haproxy: not measured, haproxy is not installed.");
            None
        }
        (false, _) => None,
    };
    println!("| measurement | rate | p50 | p99 | other answers | target |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let names = [
        "registrations",
        "returning-user flows (code stored, redeemed, family created)",
        "refresh rotations",
    ];
    for (i, ((name, durable), memory)) in names.iter().zip(&durable).zip(&memory).enumerate() {
        print_row(&format!("{name}, durable store"), durable, "-");
        print_row(&format!("{name}, in memory"), memory, "-");
        let ratio = durable.rate() / memory.rate().max(1.0);
        println!(
            "| {name}: durable / in memory | {ratio:.2} | | | | >= 0.50 ({}) |",
            if ratio >= 0.50 { "met" } else { "not met" }
        );
        for (label, measured) in [("one server", &on_postgres), ("two servers", &on_two)] {
            let Some(measured) = measured else { continue };
            let measured = &measured[i];
            print_row(&format!("{name}, PostgreSQL ({label})"), measured, "-");
            let ratio = measured.rate() / memory.rate().max(1.0);
            println!(
                "| {name}: PostgreSQL ({label}) / in memory | {ratio:.2} | | | | >= 0.50 ({}) |",
                if ratio >= 0.50 { "met" } else { "not met" }
            );
        }
    }
    Ok(())
}
