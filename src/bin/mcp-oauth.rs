//! Starts both servers in one process: the authorization server and the MCP resource server.
//! `mcp-oauth hash-password` reads a password from standard input and prints its argon2id PHC
//! string, for the users file.

mcp_oauth::use_mimalloc!();

use clap::{Parser, Subcommand};
use mcp_oauth::config::{AuthServerConfig, McpServerConfig};
use mcp_oauth::http::auth_server::BuildError;
use mcp_oauth::trace::LogFormat;
use mcp_oauth::{AuthServer, McpServer};
use std::io::Read;

/// mcp-oauth: an OAuth 2.1 authorization server and an MCP resource server, with a flow trace.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    auth: AuthServerConfig,
    #[command(flatten)]
    mcp: McpServerConfig,
    /// Log format: human-readable lines or JSON objects.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Read a password from standard input (one line) and print its argon2id hash (a PHC string)
    /// for the `password_hash` of a users file.
    HashPassword,
}

fn hash_password() -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin().take(4096).read_to_string(&mut input)?;
    let password = input.strip_suffix('\n').unwrap_or(&input);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        eprintln!("error: no password on standard input");
        std::process::exit(2);
    }
    println!("{}", mcp_oauth::users::hash_password(password)?);
    Ok(())
}

/// A bad setting: one line naming it, and exit code 2.
fn bad_setting(error: &mcp_oauth::config::ConfigError) -> ! {
    eprintln!("error: {error}");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mcp_oauth::memory::configure_allocator();
    let _ = dotenvy::dotenv();
    let mut cli = Cli::parse();
    if let Some(Command::HashPassword) = cli.command {
        return hash_password();
    }
    // One switch turns on introspection in the combined binary: the resource server uses the
    // authorization server's credential, or both share one made for this run.
    if cli.mcp.introspect && cli.mcp.rs_introspection_secret.is_none() {
        let secret = cli
            .auth
            .introspection_secret
            .clone()
            .unwrap_or_else(|| mcp_oauth::trace::random_token(32));
        cli.auth.introspection_secret = Some(secret.clone());
        cli.mcp.rs_introspection_secret = Some(secret);
    }
    let (auth, mcp) = match (cli.auth.validate(), cli.mcp.validate()) {
        (Ok(auth), Ok(mcp)) => (auth, mcp),
        (Err(e), _) | (_, Err(e)) => bad_setting(&e),
    };
    let _guard = mcp_oauth::trace::init(cli.log_format);
    let auth = match AuthServer::build(auth).await {
        Err(BuildError::Setting(e)) => bad_setting(&e),
        built => built?,
    };
    let mcp = McpServer::build(mcp).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        mcp_oauth::http::shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    tokio::spawn(signal);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let (a, m) = tokio::join!(
        auth.run_until(stopped(stop_rx.clone())),
        mcp.run_until(stopped(stop_rx))
    );
    a?;
    m?;
    Ok(())
}
