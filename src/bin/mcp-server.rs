//! Starts the MCP resource server alone.

mcp_oauth::use_mimalloc!();

use clap::Parser;
use mcp_oauth::McpServer;
use mcp_oauth::config::McpServerConfig;
use mcp_oauth::trace::LogFormat;

/// The MCP resource server of mcp-oauth.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    mcp: McpServerConfig,
    /// Log format: human-readable lines or JSON objects.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mcp_oauth::memory::configure_allocator();
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let config = match cli.mcp.validate() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    let _guard = mcp_oauth::trace::init(cli.log_format);
    let server = McpServer::build(config).await?;
    server.run_until(mcp_oauth::http::shutdown_signal()).await?;
    Ok(())
}
