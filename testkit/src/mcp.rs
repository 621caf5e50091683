//! What an MCP client does before its first tool call: `initialize` with a bearer token, then
//! `notifications/initialized` in the session the server opened.

use crate::{Error, Result, expect};
use serde_json::{Value, json};

/// An `initialize` request (id 0) from a client named `client_name`.
pub fn initialize_request(client_name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": client_name, "version": "1.0"}}})
}

/// Opens an MCP session at `mcp_url` with `token`; the session id. `initialize` must answer 200
/// with a session id, `notifications/initialized` 202.
pub async fn open_session(
    http: &reqwest::Client,
    mcp_url: &str,
    token: &str,
    client_name: &str,
) -> Result<String> {
    let initialized = http
        .post(mcp_url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_request(client_name))
        .send()
        .await?;
    let initialized = expect(initialized, "initialize", |s| s == 200)?;
    let session = initialized
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Missing("the mcp-session-id header".into()))?
        .to_string();
    initialized.bytes().await?;
    let notified = http
        .post(mcp_url)
        .bearer_auth(token)
        .header("mcp-session-id", &session)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await?;
    expect(notified, "notifications/initialized", |s| s == 202)?;
    Ok(session)
}
