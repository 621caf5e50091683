//! `/register` (RFC 7591, CL-1, CL-2): what may be registered, what is refused and how.

use crate::helpers::*;
use serde_json::{Value, json};

#[tokio::test]
async fn accepted_registrations() {
    let app = spawn_app().await;
    let body = register_with(
        &app,
        json!({
            "client_name": "Inspector",
            "redirect_uris": ["http://localhost:6274/oauth/callback", "https://claude.ai/api/mcp/auth_callback", "com.example.app:/cb", "cursor://anysphere.cursor-mcp/oauth/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": "mcp.read",
            "client_id": "chosen-by-client",
            "client_secret": "chosen-by-client",
            "client_id_issued_at": 1,
        }),
    )
    .await;
    let id = body["client_id"].as_str().unwrap();
    assert_ne!(id, "chosen-by-client");
    assert!(id.len() >= 22, "at least 128 bits");
    assert!(body.get("client_secret").is_none());
    assert_ne!(body["client_id_issued_at"], 1);
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert_eq!(body["scope"], "mcp.read");
    assert_eq!(body["client_name"], "Inspector");
    // Defaults: a public client for the code grant, with refresh tokens.
    let body = register_with(&app, json!({"redirect_uris": ["http://127.0.0.1/cb"]})).await;
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert_eq!(
        body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(body["response_types"], json!(["code"]));
    // Two registrations never share an id, and a later one sorts after (the store's index of
    // client ids grows at one end): a millisecond apart at least.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let again = register_with(&app, json!({"redirect_uris": ["http://127.0.0.1/cb"]})).await;
    let (first, second) = (body["client_id"].as_str(), again["client_id"].as_str());
    assert!(first < second, "{first:?} then {second:?}");
    let url_safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    assert!(second.is_some_and(|id| id.chars().all(url_safe)));
    // A confidential client gets a secret.
    let body = register_with(&app, json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_post"})).await;
    assert!(body["client_secret"].as_str().unwrap().len() >= 43);
}

#[tokio::test]
async fn refused_registrations() {
    let app = spawn_app().await;
    let uri_cases = [
        "http://example.com/cb",
        "https://a.example/cb#frag",
        "https://user:pw@a.example/cb",
        "https://*.example.com/cb",
        "/relative",
        "javascript:alert(1)",
        "data:text/html,x",
        "file:///etc/passwd",
        "vbscript:x",
        "blob:https://a.example/x",
        "about:blank",
        "myapp:/cb",
        "",
    ];
    for uri in uri_cases {
        let response = post_register(&app, &json!({"redirect_uris": [uri]})).await;
        let body = assert_oauth_error(response, 400, "invalid_redirect_uri", uri).await;
        if !uri.is_empty() {
            assert!(
                !body["error_description"].as_str().unwrap().contains(uri),
                "no echo"
            );
        }
    }
    let metadata_cases = [
        json!({"redirect_uris": "http://127.0.0.1/cb"}),
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}),
        json!({"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]}),
        json!({"redirect_uris": [REDIRECT], "grant_types": ["refresh_token"]}),
        json!({"redirect_uris": [REDIRECT], "response_types": ["token"]}),
        json!({"redirect_uris": [REDIRECT], "scope": "admin"}),
        json!({"redirect_uris": [REDIRECT], "client_name": "x".repeat(500)}),
        json!({"redirect_uris": [REDIRECT], "client_name": 5}),
        json!({"redirect_uris": [REDIRECT], "client_uri": "javascript:x"}),
        json!(["not", "an", "object"]),
    ];
    for body in metadata_cases {
        let response = post_register(&app, &body).await;
        let context = body.to_string();
        assert_oauth_error(response, 400, "invalid_client_metadata", &context).await;
    }
    let missing = post_register(&app, &json!({"client_name": "x"})).await;
    assert_eq!(missing.status(), 400);
    // Not JSON.
    let form = app
        .post("/register")
        .form(&[("redirect_uris", REDIRECT)])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 400);
    let broken = app
        .post("/register")
        .header("content-type", "application/json")
        .body("{\"redirect_uris\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    // A repeated key, at the top or deeper, or spelled with an escape: which copy would count is
    // ambiguous, so neither does.
    let redirect = serde_json::to_string(REDIRECT).unwrap();
    for repeated in [
        format!(
            r#"{{"redirect_uris": [{redirect}], "redirect_uris": ["https://evil.example/cb"]}}"#
        ),
        format!(
            r#"{{"redirect_uris": [{redirect}], "token_endpoint_auth_method": "none", "token_endpoint_auth_method": "none"}}"#
        ),
        format!(
            r#"{{"redirect_uris": [{redirect}], "client_name": "a", "client_n\u0061me": "b"}}"#
        ),
        format!(r#"{{"redirect_uris": [{redirect}], "jwks": {{"keys": [], "keys": []}}}}"#),
    ] {
        let response = app
            .post("/register")
            .header("content-type", "application/json")
            .body(repeated.clone())
            .send()
            .await
            .unwrap();
        let body = assert_oauth_error(response, 400, "invalid_client_metadata", &repeated).await;
        assert!(
            !field(&body, "error_description").contains("evil"),
            "{repeated}"
        );
    }
    // Too large.
    let huge = json!({"redirect_uris": [REDIRECT], "padding": "x".repeat(200_000)});
    let response = post_register(&app, &huge).await;
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn cors_on_machine_endpoints_only() {
    let app = spawn_app().await;
    for path in [
        "/register",
        "/token",
        "/.well-known/oauth-authorization-server",
        "/oauth/jwks",
    ] {
        let preflight = app
            .http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "http://localhost:6274")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(preflight.status().is_success(), "{path}");
        assert_eq!(
            preflight.headers()["access-control-allow-origin"],
            "*",
            "{path}"
        );
        assert!(
            preflight
                .headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
    }
    let page = app
        .get("/authorize")
        .header("origin", "http://localhost:6274")
        .send()
        .await
        .unwrap();
    assert!(page.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn openid_configuration_equals_rfc8414_metadata() {
    let app = spawn_app().await;
    let a: Value = as_metadata(&app).await;
    let b = app
        .get_json(&app.url("/.well-known/openid-configuration"))
        .await;
    assert_eq!(a, b);
    assert_eq!(a["authorization_response_iss_parameter_supported"], true);
}

#[tokio::test]
async fn a_refused_registration_leaves_nothing_behind() {
    // With room for one client, refused requests must not take that room.
    let app = spawn_app_with(&["--max-clients", "1"]).await;
    for body in [
        json!({"redirect_uris": ["http://example.com/cb"]}),
        json!({"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]}),
        json!({"redirect_uris": [REDIRECT], "scope": "admin"}),
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "tls_client_auth"}),
    ] {
        assert_eq!(post_register(&app, &body).await.status(), 400);
    }
    let valid = json!({"redirect_uris": [REDIRECT]});
    assert_eq!(post_register(&app, &valid).await.status(), 201);
    // The registry is now full: the next valid registration is refused with a retryable error.
    let full = post_register(&app, &valid).await;
    assert_eq!(full.status(), 503);
    assert!(full.headers().get("retry-after").is_some());
}
