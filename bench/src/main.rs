//! `mcp-oauth-bench`, the benchmark and flood tool: its command line. It starts the servers built
//! in one Cargo profile (`target/dist/` unless `--profile release` says otherwise) as child
//! processes on loopback, drives them over HTTP, and reports rates, status counts and each
//! server's resident memory. It is a workspace member of its own, so that the servers' package
//! does not build its plotting and load-generating dependencies.
//!
//! - `run` (`run.rs`, `headline.rs`): the default configuration first, then throughput, latency, overload, trace cost, signing limit, then `memory`.
//! - `memory` (`memory.rs`): idle RSS of each server, RSS per registered client.
//! - `flood` (`flood.rs`): registration and failed-login floods.
//! - `store-fill` (`store_fill.rs`): a store of a million clients and families, and the start.
//! - `durable` (`durable.rs`): the writes with the durable store against in memory.
//! - `baseline` (`run.rs`): the resource server against rmcp with nothing in front.
//! - `profile` (`profile.rs`): a fixed request count for a profiler wrapping the server.

mod durable;
mod flood;
mod flows;
mod grants;
mod headline;
mod load;
mod memory;
mod profile;
mod replicas;
mod report;
mod run;
mod servers;
mod store_fill;

use clap::{Parser, Subcommand};
use profile::ProfilePath;
use servers::{Binaries, BuildProfile};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Benchmarks and floods for mcp-oauth (loopback only)")]
struct Cli {
    /// The Cargo profile whose servers to measure: `target/<profile>/mcp-oauth` (and
    /// `auth-server`, `mcp-server`), built with `cargo build --profile dist` or
    /// `cargo build --release`.
    #[arg(long, global = true, value_enum, default_value_t = BuildProfile::Dist)]
    profile: BuildProfile,
    #[command(subcommand)]
    command: Cmd,
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
    /// The cost of the flow trace and the metrics alone (also part of `run`): tools/call with
    /// both off, with the metrics alone, and with both (the defaults).
    Cost {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Fills a durable store with clients and refresh-token families, then measures the start,
    /// the idle RSS and a flow for a stored client.
    StoreFill {
        /// Clients to store.
        #[arg(long, default_value_t = 1_000_000)]
        clients: usize,
        /// Refresh-token families to store.
        #[arg(long, default_value_t = 1_000_000)]
        families: usize,
        /// The data directory to fill (kept); a temporary one, removed after, when absent.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The authorization server's writes with the durable SQLite store against `--in-memory`:
    /// registrations, returning-user flows and refresh rotations.
    Durable {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Also on PostgreSQL: a scratch database on the server at `TEST_DATABASE_URL` (default:
        /// the local server as `postgres`).
        #[arg(long)]
        postgres: bool,
    },
    /// `tools/call greet` with a token through the resource server against the same tools on
    /// rmcp with nothing in front (`examples/bare_rmcp.rs`), in alternating rounds; the median
    /// of the rounds' ratios (also part of `run`, once).
    Baseline {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Rounds of the two measurements.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let binaries = Binaries::locate(cli.profile)?;
    println!(
        "Servers: {} (Cargo profile `{}`).",
        binaries.path("mcp-oauth").display(),
        cli.profile.name()
    );
    if cfg!(debug_assertions) {
        println!(
            "This load generator is an unoptimised build, which takes cores from the servers: build it with `--profile dist` too."
        );
    }
    println!();
    match cli.command {
        Cmd::Cost {
            seconds,
            concurrency,
        } => run::cost(&binaries, Duration::from_secs(seconds), concurrency.max(1)).await,
        Cmd::StoreFill {
            clients,
            families,
            data_dir,
        } => store_fill::run_store_fill(&binaries, clients, families, data_dir.as_deref()).await,
        Cmd::Durable {
            seconds,
            concurrency,
            postgres,
        } => {
            let seconds = Duration::from_secs(seconds);
            durable::run_durable(&binaries, seconds, concurrency.max(1), postgres).await
        }
        Cmd::Baseline {
            seconds,
            concurrency,
            rounds,
        } => {
            let seconds = Duration::from_secs(seconds);
            run::baseline(&binaries, seconds, concurrency.max(1), rounds.max(1)).await
        }
        Cmd::Flood {
            requests,
            concurrency,
            seconds,
        } => flood::run_flood(&binaries, requests, concurrency.max(1), seconds).await,
        Cmd::Profile {
            requests,
            concurrency,
            log,
            path,
        } => profile::run_profile(&binaries, requests, concurrency.max(1), &log, path).await,
        Cmd::Memory {
            clients,
            concurrency,
        } => {
            memory::run_memory(
                &binaries,
                clients,
                concurrency.max(1),
                Duration::from_secs(60),
            )
            .await
        }
        Cmd::Run {
            seconds,
            concurrency,
            sweep,
            plot,
        } => {
            run::run_bench(
                &binaries,
                Duration::from_secs(seconds),
                concurrency.max(1),
                &sweep,
                &plot,
            )
            .await
        }
    }
}
