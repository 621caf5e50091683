//! Starts the authorization server alone. What it does is `mcp_oauth::cli`, compiled once in the
//! library.

mcp_oauth::use_mimalloc!();

fn main() -> std::process::ExitCode {
    mcp_oauth::cli::auth_server()
}
