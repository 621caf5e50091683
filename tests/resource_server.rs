//! The resource server's answers to every kind of token and request (RS-1..RS-5): each case
//! asserts the status, the `WWW-Authenticate` error, and that the MCP endpoint was not reached.

mod common;

use common::*;
use serde_json::{Value, json};

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Valid claims for `app`'s /mcp endpoint; tests change one thing at a time.
fn claims(app: &TestApp) -> Value {
    json!({
        "iss": app.issuer, "sub": "alice", "aud": app.mcp_url(),
        "exp": now() + 300, "iat": now(), "jti": "test-jti",
        "client_id": "test-client", "scope": "mcp.read mcp.write",
    })
}

fn header(app: &TestApp) -> Value {
    json!({"alg": "RS256", "typ": "at+jwt", "kid": app.key.kid})
}

fn mint(app: &TestApp, header: &Value, claims: &Value) -> String {
    app.key.sign_with_header(header, claims).unwrap()
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn init_with_auth(app: &TestApp, authorization: &str) -> reqwest::Response {
    app.http
        .post(app.mcp_url())
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap()
}

fn www(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_valid_minted_token_is_accepted() {
    // The control case: the claims and header the other cases change are accepted as they are.
    let app = spawn_app().await;
    let token = mint(&app, &header(&app), &claims(&app));
    let response = init_with_auth(&app, &format!("Bearer {token}")).await;
    assert_eq!(response.status(), 200);
    // RS-4: the scheme is case-insensitive.
    let response = init_with_auth(&app, &format!("bEaReR {token}")).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn invalid_tokens_get_401_invalid_token() {
    let app = spawn_app().await;
    let c = claims(&app);
    let h = header(&app);
    let with = |mut v: Value, key: &str, value: Value| {
        v[key] = value;
        v
    };
    let without = |mut v: Value, key: &str| {
        v.as_object_mut().unwrap().remove(key);
        v
    };
    let other_key = mcp_oauth::actors::signing_keys::ActiveKey::generate()
        .await
        .unwrap();
    let valid = mint(&app, &h, &c);
    let mut tampered = valid.clone();
    tampered.pop();
    tampered.push(if valid.ends_with('A') { 'B' } else { 'A' });
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            mint(&app, &h, &with(c.clone(), "exp", json!(now() - 120))),
        ),
        (
            "not yet valid",
            mint(&app, &h, &with(c.clone(), "nbf", json!(now() + 600))),
        ),
        (
            "issued in the future",
            mint(&app, &h, &with(c.clone(), "iat", json!(now() + 600))),
        ),
        (
            "other issuer",
            mint(
                &app,
                &h,
                &with(c.clone(), "iss", json!("http://evil.example")),
            ),
        ),
        (
            "issuer with slash",
            mint(
                &app,
                &h,
                &with(c.clone(), "iss", json!(format!("{}/", app.issuer))),
            ),
        ),
        (
            "other audience",
            mint(
                &app,
                &h,
                &with(c.clone(), "aud", json!("http://other.example/mcp")),
            ),
        ),
        ("no audience", mint(&app, &h, &without(c.clone(), "aud"))),
        ("no exp", mint(&app, &h, &without(c.clone(), "exp"))),
        ("no sub", mint(&app, &h, &without(c.clone(), "sub"))),
        (
            "typ JWT",
            mint(&app, &with(h.clone(), "typ", json!("JWT")), &c),
        ),
        ("no typ", mint(&app, &without(h.clone(), "typ"), &c)),
        (
            "crit header",
            mint(&app, &with(h.clone(), "crit", json!(["exp"])), &c),
        ),
        (
            "unknown kid",
            mint(&app, &with(h.clone(), "kid", json!("no-such-key")), &c),
        ),
        ("no kid", mint(&app, &without(h.clone(), "kid"), &c)),
        (
            "signed by another key",
            other_key.sign_with_header(&h, &c).unwrap(),
        ),
        ("tampered signature", tampered),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "at+jwt", "kid": app.key.kid})),
                b64(&c)
            ),
        ),
        (
            "alg HS256",
            format!(
                "{}.{}.c2lnbmF0dXJl",
                b64(&json!({"alg": "HS256", "typ": "at+jwt", "kid": app.key.kid})),
                b64(&c)
            ),
        ),
        ("garbage", "not-a-jwt".into()),
        ("two parts", "a.b".into()),
    ];
    for (name, token) in cases {
        let response = init_with_auth(&app, &format!("Bearer {token}")).await;
        assert_eq!(response.status(), 401, "{name}");
        let challenge = www(&response);
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{name}: {challenge}"
        );
        assert!(
            challenge.contains("resource_metadata="),
            "{name}: {challenge}"
        );
        assert!(response.headers().get("mcp-session-id").is_none(), "{name}");
    }
    // A token that follows jku/x5u/jwk headers would be forged by whoever hosts them: they are
    // never followed, and a token signed by another key stays refused even when it names one.
    let forged = other_key
        .sign_with_header(
            &json!({"alg": "RS256", "typ": "at+jwt", "kid": app.key.kid, "jku": "http://127.0.0.1:1/jwks", "jwk": other_key.jwk}),
            &c,
        )
        .unwrap();
    assert_eq!(
        init_with_auth(&app, &format!("Bearer {forged}"))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn missing_token_challenge_has_no_error_attribute() {
    let app = spawn_app().await;
    let response = mcp_post(&app, None, None, initialize_body()).await;
    assert_eq!(response.status(), 401);
    let challenge = www(&response);
    assert!(!challenge.contains("error="), "{challenge}");
    assert!(challenge.contains(r#"scope="mcp.read mcp.write""#));
    // RS-4: a token in the query is ignored (still 401 without error), and header + query is 400.
    let token = mint(&app, &header(&app), &claims(&app));
    let query_only = app
        .http
        .post(format!("{}?access_token={token}", app.mcp_url()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(query_only.status(), 401);
    assert!(!www(&query_only).contains("error="));
    let both = app
        .http
        .post(format!("{}?access_token={token}", app.mcp_url()))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
}

#[tokio::test]
async fn malformed_authorization_headers_never_500() {
    let app = spawn_app().await;
    for value in [
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwdw==",
        "Bearer a b",
        "Bearer \"x\"",
        "Token abc",
        "Bearer ,,,",
        "B",
    ] {
        let response = init_with_auth(&app, value).await;
        let status = response.status().as_u16();
        assert!(status == 400 || status == 401, "{value:?} -> {status}");
    }
    let long = format!("Bearer {}", "a".repeat(20_000));
    let status = init_with_auth(&app, &long).await.status().as_u16();
    assert!(
        status == 400 || status == 401 || status == 431,
        "long -> {status}"
    );
    // Two Authorization headers.
    let response = app
        .http
        .post(app.mcp_url())
        .header("authorization", "Bearer a.b.c")
        .header("authorization", "Bearer d.e.f")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn a_token_without_a_required_scope_gets_403_insufficient_scope() {
    let app = spawn_app().await;
    let mut c = claims(&app);
    c["scope"] = json!("mcp.write");
    let token = mint(&app, &header(&app), &c);
    let response = init_with_auth(&app, &format!("Bearer {token}")).await;
    assert_eq!(response.status(), 403);
    let challenge = www(&response);
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(
        challenge.contains(r#"scope="mcp.read mcp.write""#),
        "{challenge}"
    );
    assert!(challenge.contains("resource_metadata="), "{challenge}");
}

#[tokio::test]
async fn dns_rebinding_protection() {
    let app = spawn_app().await;
    let token = mint(&app, &header(&app), &claims(&app));
    let send = |origin: Option<&'static str>, host: Option<&'static str>| {
        let mut request = app
            .http
            .post(app.mcp_url())
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&initialize_body());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send()
    };
    assert_eq!(
        send(Some("http://evil.example"), None)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(send(Some("null"), None).await.unwrap().status(), 403);
    assert_eq!(
        send(None, Some("evil.example")).await.unwrap().status(),
        403
    );
    assert_eq!(
        send(None, Some("evil.example:8990"))
            .await
            .unwrap()
            .status(),
        403
    );
    // The browser-based MCP Inspector runs on a loopback origin.
    assert_eq!(
        send(Some("http://localhost:6274"), None)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(None, Some("localhost:8990")).await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn sessions_belong_to_their_user() {
    let app = spawn_app().await;
    let alice = mint(&app, &header(&app), &claims(&app));
    let mut bob_claims = claims(&app);
    bob_claims["sub"] = json!("bob");
    let bob = mint(&app, &header(&app), &bob_claims);
    let session = open_session(&app, &alice).await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let stolen = mcp_post(&app, Some(&bob), Some(&session), list.clone()).await;
    assert_eq!(stolen.status(), 403);
    let own = mcp_post(&app, Some(&alice), Some(&session), list.clone()).await;
    assert_eq!(own.status(), 200);
    assert!(rpc_result(own).await["result"]["tools"].is_array());
    // A session id nobody opened: 404, so the client initializes again.
    let unknown = mcp_post(&app, Some(&alice), Some("not-a-session"), list.clone()).await;
    assert_eq!(unknown.status(), 404);
    // No session needed to be refused: a session never replaces authentication.
    let anonymous = mcp_post(&app, None, Some(&session), list).await;
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn cors_on_mcp_and_metadata() {
    let app = spawn_app().await;
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.mcp_url())
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, mcp-protocol-version",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let challenge = app
        .http
        .post(app.mcp_url())
        .header("origin", "http://localhost:6274")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    let exposed = challenge.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in ["www-authenticate", "mcp-session-id", "mcp-protocol-version"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    assert!(
        challenge
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
}
