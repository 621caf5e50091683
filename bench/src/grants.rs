//! Refresh-token rotations and token introspection, each in a closed loop: the two token
//! endpoints a deployed authorization server answers most after minting.
//!
//! Rotations: each worker holds a refresh-token chain of its own (one code redeemed per worker
//! first) and presents its current token; every answer carries the next one. A rotation signs
//! one access token, so its rate is compared with the RS256 signing limit, as minting is.
//! Introspection: the resource server's credential asks about a few valid access tokens in turn.

use crate::flows::{redeem, returning_code};
use crate::load::{Measured, closed_loop};
use crate::servers::ServersView;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The introspection credential the bench's servers are given.
pub const INTROSPECTION_SECRET: &str = "bench-introspection-secret-0123456789";

/// `count` tokens of the kind `name` (`access_token`, `refresh_token`), one fresh code redeemed
/// for each.
async fn fresh_tokens(
    browser: &reqwest::Client,
    servers: &ServersView,
    client_id: &str,
    count: usize,
    name: &str,
) -> anyhow::Result<Vec<String>> {
    let mut tokens = Vec::with_capacity(count);
    for _ in 0..count {
        let (code, verifier) = returning_code(browser, servers, client_id).await?;
        let response = redeem(browser, servers, client_id, &code, &verifier).await?;
        anyhow::ensure!(response.status() == 200, "redeem: {}", response.status());
        tokens.push(field(&response.json().await?, name)?);
    }
    Ok(tokens)
}

fn field(body: &Value, name: &str) -> anyhow::Result<String> {
    body[name]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no {name} in {body}"))
}

/// Refresh rotations in a closed loop, one chain per worker.
pub async fn refresh_rotations(
    browser: &reqwest::Client,
    servers: &ServersView,
    client_id: &str,
    seconds: Duration,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let firsts = fresh_tokens(browser, servers, client_id, concurrency, "refresh_token").await?;
    let chains: Arc<Vec<_>> = Arc::new(firsts.into_iter().map(tokio::sync::Mutex::new).collect());
    let (http, url, cid) = (
        browser.clone(),
        format!("{}/token", servers.issuer),
        client_id.to_string(),
    );
    Ok(closed_loop(seconds, concurrency, 200, move |call| {
        let (http, url, cid, chains) = (http.clone(), url.clone(), cid.clone(), chains.clone());
        async move {
            // `closed_loop` passes the worker in the top bits.
            let mut current = chains[(call >> 40) as usize % chains.len()].lock().await;
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", current.as_str()),
                ("client_id", cid.as_str()),
            ];
            let response = http.post(&url).form(&form).send().await?;
            let status = response.status().as_u16();
            if status == 200 {
                *current = field(&response.json().await?, "refresh_token")?;
            } else {
                response.bytes().await?;
            }
            Ok(status)
        }
    })
    .await)
}

/// Introspections of valid access tokens by the resource server, in a closed loop.
pub async fn introspections(
    browser: &reqwest::Client,
    servers: &ServersView,
    client_id: &str,
    seconds: Duration,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let access = Arc::new(fresh_tokens(browser, servers, client_id, 8, "access_token").await?);
    let (http, url) = (browser.clone(), format!("{}/introspect", servers.issuer));
    Ok(closed_loop(seconds, concurrency, 200, move |call| {
        let (http, url, access) = (http.clone(), url.clone(), access.clone());
        async move {
            let token = &access[call as usize % access.len()];
            let response = http
                .post(&url)
                .bearer_auth(INTROSPECTION_SECRET)
                .form(&[("token", token.as_str())])
                .send()
                .await?;
            let status = response.status().as_u16();
            let body: Value = response.json().await?;
            // An inactive answer would measure the wrong path.
            Ok(if body["active"] == true { status } else { 299 })
        }
    })
    .await)
}
