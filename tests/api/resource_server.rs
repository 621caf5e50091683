//! The resource server's answers to every kind of token and request (RS-1..RS-5): each case
//! asserts the status, the `WWW-Authenticate` error, and that the MCP endpoint was not reached.

use crate::helpers::*;
use serde_json::{Value, json};

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn a_valid_minted_token_is_accepted() {
    // The control case: the claims and header the other cases change are accepted as they are.
    let app = spawn_app().await;
    let token = mint_token(&app, "alice", "mcp.read mcp.write");
    let response = initialize_with_authorization(&app, &format!("Bearer {token}")).await;
    assert_eq!(response.status(), 200);
    // RS-4: the scheme is case-insensitive.
    let response = initialize_with_authorization(&app, &format!("bEaReR {token}")).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn invalid_tokens_get_401_invalid_token() {
    let app = spawn_app().await;
    let c = access_claims(&app);
    let h = jws_header(&app);
    let with = |mut v: Value, key: &str, value: Value| {
        v[key] = value;
        v
    };
    let without = |mut v: Value, key: &str| {
        v.as_object_mut().unwrap().remove(key);
        v
    };
    let claim = |key: &str, value: Value| mint(&app, &h, &with(c.clone(), key, value));
    let no_claim = |key: &str| mint(&app, &h, &without(c.clone(), key));
    let header = |key: &str, value: Value| mint(&app, &with(h.clone(), key, value), &c);
    let no_header = |key: &str| mint(&app, &without(h.clone(), key), &c);
    // Signed with no key at all: the header and claims as they are, and this signature.
    let unsigned = |alg: &str, signature: &str| {
        let header = b64(&with(h.clone(), "alg", json!(alg)));
        format!("{header}.{}.{signature}", b64(&c))
    };
    let other_key = ActiveKey::generate().await.unwrap();
    let valid = mint(&app, &h, &c);
    let mut tampered = valid.clone();
    tampered.pop();
    tampered.push(if valid.ends_with('A') { 'B' } else { 'A' });
    #[rustfmt::skip]
    let cases: Vec<(&str, String)> = vec![
        ("RS-3 expired", claim("exp", json!(now() - 120))),
        ("RS-3 not yet valid", claim("nbf", json!(now() + 600))),
        ("RS-3 issued in the future", claim("iat", json!(now() + 600))),
        ("RS-3 other issuer", claim("iss", json!("http://evil.example"))),
        ("RS-3 issuer with slash", claim("iss", json!(format!("{}/", app.issuer)))),
        ("RS-3 other audience", claim("aud", json!("http://other.example/mcp"))),
        ("RS-3 no audience", no_claim("aud")),
        ("RS-3 no exp", no_claim("exp")),
        ("RS-3 no sub", no_claim("sub")),
        ("RS-3 typ JWT", header("typ", json!("JWT"))),
        ("RS-3 no typ", no_header("typ")),
        ("RS-3 crit header", header("crit", json!(["exp"]))),
        ("RS-3 unknown kid", header("kid", json!("no-such-key"))),
        ("RS-3 no kid", no_header("kid")),
        ("RS-3 signed by another key", other_key.sign_with_header(&h, &c).unwrap()),
        ("RS-3 tampered signature", tampered),
        ("RS-3 alg none", unsigned("none", "")),
        ("RS-3 alg HS256", unsigned("HS256", "c2lnbmF0dXJl")),
        ("RS-4 garbage", "not-a-jwt".into()),
        ("RS-4 two parts", "a.b".into()),
    ];
    for (name, token) in cases {
        let response = initialize_with_authorization(&app, &format!("Bearer {token}")).await;
        assert_bearer_refusal(&response, 401, Some("invalid_token"), name);
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
        initialize_with_authorization(&app, &format!("Bearer {forged}"))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn missing_token_challenge_has_no_error_attribute() {
    let app = spawn_app().await;
    let response = mcp_post(&app, None, None, initialize_body()).await;
    let challenge = assert_bearer_refusal(&response, 401, None, "no token");
    assert!(challenge.contains(r#"scope="mcp.read mcp.write""#));
    // RS-4: a token in the query is ignored (still 401 without error), and header + query is 400.
    let token = mint_token(&app, "alice", "mcp.read mcp.write");
    let with_query = format!("{}?access_token={token}", app.mcp_url());
    let query_only = mcp_request(&app, &with_query, &initialize_body())
        .send()
        .await
        .unwrap();
    assert_bearer_refusal(&query_only, 401, None, "a token in the query only");
    let both = mcp_request(&app, &with_query, &initialize_body())
        .bearer_auth(&token)
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
        let response = initialize_with_authorization(&app, value).await;
        let status = response.status().as_u16();
        assert!(status == 400 || status == 401, "{value:?} -> {status}");
    }
    let long = format!("Bearer {}", "a".repeat(20_000));
    let status = initialize_with_authorization(&app, &long)
        .await
        .status()
        .as_u16();
    assert!(
        status == 400 || status == 401 || status == 431,
        "long -> {status}"
    );
    // Two Authorization headers.
    let response = mcp_request(&app, &app.mcp_url(), &initialize_body())
        .header("authorization", "Bearer a.b.c")
        .header("authorization", "Bearer d.e.f")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn a_token_without_a_required_scope_gets_403_insufficient_scope() {
    let app = spawn_app().await;
    let token = mint_token(&app, "alice", "mcp.write");
    let response = initialize_with_authorization(&app, &format!("Bearer {token}")).await;
    let challenge = assert_bearer_refusal(&response, 403, Some("insufficient_scope"), "RS-2");
    assert!(
        challenge.contains(r#"scope="mcp.read mcp.write""#),
        "{challenge}"
    );
}

#[tokio::test]
async fn dns_rebinding_protection() {
    let app = spawn_app().await;
    let token = mint_token(&app, "alice", "mcp.read mcp.write");
    // (Origin, Host, status): foreign ones refused, loopback ones (the browser-based MCP
    // Inspector runs on a loopback origin) served.
    let cases = [
        (Some("http://evil.example"), None, 403),
        (Some("null"), None, 403),
        (None, Some("evil.example"), 403),
        (None, Some("evil.example:8990"), 403),
        (Some("http://localhost:6274"), None, 200),
        (None, Some("localhost:8990"), 200),
    ];
    for (origin, host, status) in cases {
        let mut request = mcp_request(&app, &app.mcp_url(), &initialize_body()).bearer_auth(&token);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(host) = host {
            request = request.header("host", host);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{origin:?} {host:?}");
    }
}

#[tokio::test]
async fn sessions_belong_to_their_user() {
    let app = spawn_app().await;
    let alice = mint_token(&app, "alice", "mcp.read mcp.write");
    let bob = mint_token(&app, "bob", "mcp.read mcp.write");
    let session = open_session(&app, &alice).await;
    let list = tools_list(2);
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

/// RS-5 with the owner remembered: once a token was found to own a session (it opened it, or
/// `McpSessions` said so), its next requests there skip that ask, and nothing else does: another
/// user's token, remembered too, is still refused on it; the owner's remembered token on another
/// user's session is refused; a closed session is 404.
#[tokio::test(flavor = "current_thread")]
async fn a_remembered_owner_is_asked_once_and_only_for_its_own_session() {
    let (captured, _capturing) = capture_trace();
    let app = spawn_app().await;
    let alice = mint_token(&app, "alice", "mcp.read mcp.write");
    // The same user, another token (the scopes in another order).
    let alice_again = mint_token(&app, "alice", "mcp.write mcp.read");
    let bob = mint_token(&app, "bob", "mcp.read mcp.write");
    let alices = open_session(&app, &alice).await;
    let bobs = open_session(&app, &bob).await;
    let list = tools_list(2);
    let owner_asks = || captured.text().matches("McpSessions <- Owner").count();
    let asked = owner_asks();
    for _ in 0..3 {
        let own = mcp_post(&app, Some(&alice), Some(&alices), list.clone()).await;
        assert_eq!(own.status(), 200);
        let own = mcp_post(&app, Some(&bob), Some(&bobs), list.clone()).await;
        assert_eq!(own.status(), 200);
    }
    assert_eq!(owner_asks(), asked, "each token opened its session");
    // Each remembered token, on the other's session: refused every time.
    for _ in 0..2 {
        let stolen = mcp_post(&app, Some(&bob), Some(&alices), list.clone()).await;
        assert_eq!(stolen.status(), 403);
        let stolen = mcp_post(&app, Some(&alice), Some(&bobs), list.clone()).await;
        assert_eq!(stolen.status(), 403);
    }
    assert_eq!(owner_asks(), asked + 4);
    // Another token of the owner: asked once, then remembered.
    for _ in 0..3 {
        let own = mcp_post(&app, Some(&alice_again), Some(&alices), list.clone()).await;
        assert_eq!(own.status(), 200);
    }
    assert_eq!(owner_asks(), asked + 5);
    // Closed: the remembered owner gets 404, as a client that must initialize again expects.
    let closed = app
        .http
        .delete(app.mcp_url())
        .bearer_auth(&alice)
        .header("mcp-session-id", &alices)
        .send()
        .await
        .unwrap();
    assert!(closed.status().is_success(), "{}", closed.status());
    for token in [&alice, &alice_again] {
        let gone = mcp_post(&app, Some(token), Some(&alices), list.clone()).await;
        assert_eq!(gone.status(), 404);
    }
    let theirs = mcp_post(&app, Some(&bob), Some(&bobs), list).await;
    assert_eq!(theirs.status(), 200);
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
