//! `mcp-oauth-bench profile`: a fixed count of `tools/call greet` requests or `/token` code
//! redemptions against servers that a profiler may wrap (`MCP_OAUTH_BENCH_WRAP="valgrind
//! --tool=callgrind"`), so that instruction counts per request do not depend on what else the
//! machine is doing. Under callgrind the counters are zeroed once the set-up is done.

use crate::flows::{REDIRECT, greet_call, returning_code, returning_user, token_and_session};
use crate::load::{flood, load_client};
use crate::servers::{Binaries, Servers, no_limits};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The request a profile repeats.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfilePath {
    ToolsCall,
    Token,
}

/// A fixed count of tools/call requests (or code redemptions) against servers that a profiler may
/// wrap.
pub async fn run_profile(
    binaries: &Binaries,
    requests: usize,
    concurrency: usize,
    log: &str,
    path: ProfilePath,
) -> anyhow::Result<()> {
    let servers = Servers::start_with_log(binaries, &no_limits(), log)?;
    let http = load_client(concurrency)?;
    servers.wait_ready(&http).await?;
    let view = servers.urls();
    // Set-up: an MCP session, or the codes to redeem (a signed-in user with a remembered consent).
    let (token, session) = token_and_session(&view, &http).await?;
    let mut codes = Vec::new();
    let mut client_id = String::new();
    if path == ProfilePath::Token {
        let (browser, id) = returning_user(&view).await?;
        for _ in 0..requests {
            codes.push(returning_code(&browser, &view, &id).await?);
        }
        client_id = id;
    }
    let codes = std::sync::Arc::new(codes);
    let url = view.mcp_url();
    // Under callgrind, count only the requests: zero the counters once the servers are set up.
    if std::env::var("MCP_OAUTH_BENCH_WRAP").is_ok_and(|w| w.contains("callgrind")) {
        let _ = Command::new("callgrind_control")
            .args(["-z", &servers.pid().to_string()])
            .stdout(Stdio::null())
            .status();
    }
    let started = Instant::now();
    let out = flood(requests, concurrency, Duration::from_secs(3600), |i| {
        let request = match path {
            ProfilePath::ToolsCall => http
                .post(&url)
                .bearer_auth(&token)
                .header("mcp-session-id", &session)
                .header("accept", "application/json, text/event-stream")
                .json(&greet_call(i as u64)),
            ProfilePath::Token => {
                let (code, verifier) = &codes[i];
                http.post(format!("{}/token", view.issuer)).form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("client_id", client_id.as_str()),
                    ("code_verifier", verifier.as_str()),
                ])
            }
        };
        async move {
            let r = request.send().await?;
            let status = r.status().as_u16();
            r.bytes().await?;
            Ok(status)
        }
    })
    .await;
    let what = match path {
        ProfilePath::ToolsCall => "tools/call",
        ProfilePath::Token => "/token redemptions",
    };
    println!(
        "{requests} {what} with RUST_LOG={log}: {} in {:.1} s",
        out.summary(),
        started.elapsed().as_secs_f64()
    );
    // Dropping the servers stops them with SIGTERM, so that a wrapping profiler writes its output.
    drop(servers);
    Ok(())
}
