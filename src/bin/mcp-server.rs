//! Starts the MCP resource server alone. What it does is `mcp_oauth::cli`, compiled once in the
//! library.

mcp_oauth::use_mimalloc!();

fn main() -> std::process::ExitCode {
    mcp_oauth::cli::mcp_server()
}
