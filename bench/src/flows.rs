//! The OAuth and MCP flows the bench repeats, built from the shared protocol-client helpers
//! (`mcp-oauth-testkit`): a returning user (signed in, consent remembered) and the codes it gets,
//! a flow with a fresh sign-in, an access token with an MCP session, and `tools/call greet`.

use crate::load::{Measured, closed_loop, load_client};
use crate::servers::{Servers, ServersView};
use anyhow::Context;
use mcp_oauth_testkit::{self as testkit, Pkce};
use serde_json::{Value, json};
use std::time::Duration;

/// The bench client's one redirect URI (nothing listens there: the code is read from the
/// redirect itself).
pub const REDIRECT: &str = "http://127.0.0.1:9/cb";

/// The demo user the flows sign in as.
pub const USER: (&str, &str) = ("alice", "password123");

/// The authorization URL for the bench client, with the usual MCP parameters.
pub fn authorize_url(
    servers: &ServersView,
    client_id: &str,
    challenge: &str,
) -> anyhow::Result<String> {
    Ok(testkit::authorize_url(
        &servers.issuer,
        client_id,
        challenge,
        &[
            ("redirect_uri", REDIRECT),
            ("scope", "mcp.read mcp.write"),
            ("resource", &servers.mcp_url()),
        ],
    )?)
}

/// A browser signed in as alice who approved a newly registered client once: later
/// authorizations of that client come straight back with a code. The browser and the client id.
pub async fn returning_user(servers: &ServersView) -> anyhow::Result<(reqwest::Client, String)> {
    let browser = testkit::browser()?;
    let client = testkit::register(
        &browser,
        &servers.issuer,
        &json!({"redirect_uris": [REDIRECT], "client_name": "bench"}),
    )
    .await?;
    let client_id = testkit::client_id(&client)?;
    let pkce = Pkce::new();
    let url = authorize_url(servers, &client_id, &pkce.challenge)?;
    let callback = testkit::authorize(&browser, &url, USER.0, USER.1).await?;
    let code = testkit::code_of(&callback)?;
    anyhow::ensure!(!code.is_empty(), "no code");
    Ok((browser, client_id))
}

/// One authorization by a returning user (see [`returning_user`]): the code and its verifier.
pub async fn returning_code(
    browser: &reqwest::Client,
    servers: &ServersView,
    client_id: &str,
) -> anyhow::Result<(String, String)> {
    let pkce = Pkce::new();
    let url = authorize_url(servers, client_id, &pkce.challenge)?;
    let r = browser.get(url).send().await?;
    Ok((testkit::code_of(&testkit::location(&r)?)?, pkce.verifier))
}

/// Returning-user flows in a closed loop: authorize (signed in, consent remembered), then the
/// code redeemed, with `browser` and its `client_id` from [`returning_user`].
pub async fn returning_flows(
    browser: &reqwest::Client,
    servers: &ServersView,
    client_id: &str,
    seconds: Duration,
    concurrency: usize,
) -> Measured {
    let (browser, view, client_id) = (browser.clone(), servers.clone(), client_id.to_string());
    closed_loop(seconds, concurrency, 200, move |_| {
        let (b, view, cid) = (browser.clone(), view.clone(), client_id.clone());
        async move {
            let (code, verifier) = returning_code(&b, &view, &cid).await?;
            Ok(redeem(&b, &view, &cid, &code, &verifier)
                .await?
                .status()
                .as_u16())
        }
    })
    .await
}

/// Redeems a code for the bench client; the token endpoint's answer.
pub async fn redeem(
    http: &reqwest::Client,
    servers: &ServersView,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> anyhow::Result<reqwest::Response> {
    Ok(testkit::redeem(
        http,
        &servers.issuer,
        client_id,
        REDIRECT,
        code,
        verifier,
        &[],
    )
    .await?)
}

/// A complete flow with a fresh login, in a new browser; 200 when it ends with a code, otherwise
/// the status of the answer that stopped it (a shed sign-in is 503, a throttled one 429).
async fn fresh_login_flow(servers: &ServersView, client_id: &str) -> anyhow::Result<u16> {
    let browser = testkit::browser()?;
    let pkce = Pkce::new();
    let r = browser
        .get(authorize_url(servers, client_id, &pkce.challenge)?)
        .send()
        .await?;
    if !r.status().is_redirection() {
        return Ok(r.status().as_u16());
    }
    let login = testkit::location(&r)?;
    // The sign-in page itself may be refused: its status is the answer.
    let r = match testkit::sign_in(&browser, &login, USER.0, USER.1).await {
        Err(testkit::Error::Status { status, .. }) => return Ok(status),
        r => r?,
    };
    if !r.status().is_redirection() {
        return Ok(r.status().as_u16());
    }
    let mut next = testkit::location(&r)?;
    if next.contains("/consent?") {
        next = testkit::location(&testkit::decide(&browser, &next, "approve").await?)?;
    }
    testkit::code_of(&next)?;
    Ok(200)
}

/// Fresh-login flows in a closed loop.
pub async fn fresh_login_flows(
    servers: &ServersView,
    client_id: &str,
    seconds: Duration,
    concurrency: usize,
) -> Measured {
    let (issuer, rs, cid) = (
        servers.issuer.clone(),
        servers.rs.clone(),
        client_id.to_string(),
    );
    closed_loop(seconds, concurrency, 200, move |_| {
        let (issuer, rs, cid) = (issuer.clone(), rs.clone(), cid.clone());
        async move { fresh_login_flow(&Servers::view(&issuer, &rs), &cid).await }
    })
    .await
}

/// An access token for alice, and an MCP session opened with it.
pub async fn token_and_session(
    servers: &ServersView,
    http: &reqwest::Client,
) -> anyhow::Result<(String, String)> {
    let (browser, client_id) = returning_user(servers).await?;
    let (code, verifier) = returning_code(&browser, servers, &client_id).await?;
    let token: Value = redeem(http, servers, &client_id, &code, &verifier)
        .await?
        .json()
        .await?;
    let token = token["access_token"].as_str().context("token")?.to_string();
    let session = open_session(servers, http, &token).await?;
    Ok((token, session))
}

/// Opens an MCP session with `token`; its id.
pub async fn open_session(
    servers: &ServersView,
    http: &reqwest::Client,
    token: &str,
) -> anyhow::Result<String> {
    Ok(testkit::open_session(http, &servers.mcp_url(), token, "bench").await?)
}

/// MCP requests without a token in a closed loop, through `http`; each counts when it is
/// answered with the 401 challenge.
pub async fn challenges(
    servers: &ServersView,
    http: reqwest::Client,
    seconds: Duration,
    concurrency: usize,
) -> Measured {
    let url = servers.mcp_url();
    closed_loop(seconds, concurrency, 401, move |_| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            Ok(http
                .post(&url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await?
                .status()
                .as_u16())
        }
    })
    .await
}

/// The JSON-RPC request the bench repeats: `tools/call greet` with the name `bench`.
pub fn greet_call(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "greet", "arguments": {"name": "bench"}}})
}

/// `tools/call greet` in a closed loop, spread over `sessions` MCP sessions of one token; a call
/// counts when it answers 200 with the greeting (599 when the greeting is missing).
pub async fn tools_call(
    servers: &ServersView,
    seconds: Duration,
    concurrency: usize,
    sessions: usize,
) -> anyhow::Result<Measured> {
    tools_call_at(servers, servers, seconds, concurrency, sessions).await
}

/// [`tools_call`] with a token for `servers`, sent to the MCP endpoint of `mcp` (the bare
/// baseline, which ignores it, or the servers themselves).
pub async fn tools_call_at(
    servers: &ServersView,
    mcp: &ServersView,
    seconds: Duration,
    concurrency: usize,
    sessions: usize,
) -> anyhow::Result<Measured> {
    let http = load_client(concurrency)?;
    let (token, _) = token_and_session(servers, &http).await?;
    let mut ids = Vec::with_capacity(sessions);
    while ids.len() < sessions {
        ids.push(open_session(mcp, &http, &token).await?);
    }
    let url = mcp.mcp_url();
    let ids = std::sync::Arc::new(ids);
    Ok(closed_loop(seconds, concurrency, 200, move |i| {
        let (http, url, token, ids) = (http.clone(), url.clone(), token.clone(), ids.clone());
        async move {
            let session = &ids[(i as usize) % ids.len()];
            let r = http
                .post(&url)
                .bearer_auth(&token)
                .header("mcp-session-id", session)
                .header("accept", "application/json, text/event-stream")
                .json(&greet_call(i))
                .send()
                .await?;
            let status = r.status().as_u16();
            let body = r.bytes().await?;
            if status == 200 && !body.windows(12).any(|w| w == b"Hello, bench") {
                return Ok(599);
            }
            Ok(status)
        }
    })
    .await)
}
