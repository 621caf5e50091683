//! Starts the authorization server alone.

mcp_oauth::use_mimalloc!();

use clap::Parser;
use mcp_oauth::AuthServer;
use mcp_oauth::config::AuthServerConfig;
use mcp_oauth::http::auth_server::BuildError;
use mcp_oauth::trace::LogFormat;

/// The OAuth 2.1 authorization server of mcp-oauth.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    auth: AuthServerConfig,
    /// Log format: human-readable lines or JSON objects.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    log_format: LogFormat,
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
    let cli = Cli::parse();
    let config = match cli.auth.validate() {
        Ok(config) => config,
        Err(e) => bad_setting(&e),
    };
    let _guard = mcp_oauth::trace::init(cli.log_format);
    let server = match AuthServer::build(config).await {
        Err(BuildError::Setting(e)) => bad_setting(&e),
        built => built?,
    };
    server.run_until(mcp_oauth::http::shutdown_signal()).await?;
    Ok(())
}
