//! A deployment from few URLs (the combined binary): one public URL puts both servers on one
//! origin and one listener; the issuer and the resource server URL alone make the other two
//! URLs agree. The whole flow passes in both.

use crate::helpers::*;
use crate::mcp_client::rmcp_client_flow_at;
use mcp_oauth_testkit as kit;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-oauth");

#[tokio::test]
async fn one_public_url_serves_the_whole_flow_on_one_listener() {
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let _server = Server::start(
        BIN,
        &[
            "--public-url",
            &public,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--in-memory",
        ],
    );
    let http = reqwest::Client::new();
    wait_ready(&http, &format!("{public}/readyz")).await;

    // Each server's documents, from the one origin, agree with each other.
    let json_at = |path: &str| {
        let request = http.get(format!("{public}{path}"));
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let prm = json_at("/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!(prm["resource"], format!("{public}/mcp"));
    assert_eq!(prm["authorization_servers"], json!([public]));
    let metadata = json_at("/.well-known/oauth-authorization-server").await;
    assert_eq!(metadata["issuer"], public);
    assert_eq!(metadata["token_endpoint"], format!("{public}/token"));
    // The origin itself is the authorization server's, so no metadata calls it a resource.
    let root = http
        .get(format!("{public}/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 404);

    // The MCP endpoint is the resource server's: a challenge, not a page of the AS.
    let unauthorised = http
        .post(format!("{public}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&kit::initialize_request("public url test"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
    let challenge = unauthorised.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{public}/.well-known/oauth-protected-resource/mcp\""
        )),
        "{challenge}"
    );

    rmcp_client_flow_at(&public, &format!("{public}/mcp"), "alice", "password123").await;
}

#[tokio::test]
async fn the_issuer_and_the_resource_server_url_are_enough() {
    let (as_port, rs_port) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{as_port}");
    let resource = format!("http://127.0.0.1:{rs_port}");
    // Neither AUTHORIZATION_SERVER_URL nor AUTH_SERVER_RESOURCE: both are derived.
    let _server = Server::start(
        BIN,
        &[
            "--issuer",
            &issuer,
            "--resource-server",
            &resource,
            "--in-memory",
        ],
    );
    let issuer = Issuer::when_ready(issuer, &resource).await;
    let mcp = format!("{resource}/mcp");
    let tokens = issuer.tokens(&mcp).await;
    let token = tokens["access_token"].as_str().unwrap();
    assert_eq!(mcp_status_at(&issuer.http, &mcp, token).await, 200);
}
