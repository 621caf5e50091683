//! Starts both servers in one process: the authorization server and the MCP resource server.
//! `mcp-oauth hash-password` reads a password from standard input and prints its argon2id PHC
//! string, for the users file. What it does is `mcp_oauth::cli`, compiled once in the library.

mcp_oauth::use_mimalloc!();

fn main() -> std::process::ExitCode {
    mcp_oauth::cli::mcp_oauth()
}
