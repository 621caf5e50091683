//! Machine clients (the MCP client-credentials extension, OAuth 2.1 section 4.2): a confidential
//! client registered for `client_credentials` gets a token for itself with `client_secret_basic`,
//! `client_secret_post` or `private_key_jwt` (RFC 7523), and calls tools as itself. Refused: a
//! wrong secret, a client not registered for the grant, a wider scope, an unknown resource, and
//! assertions that are replayed, for another audience, expired, or signed by an unknown key.

use crate::helpers::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A client assertion from `client_id`, signed by `key` under `kid`, with `changes` to the
/// usual claims (audience: the token endpoint; five minutes; a fresh `jti`).
fn assertion(
    app: &TestApp,
    client_id: &str,
    key: &EncodingKey,
    kid: &str,
    changes: Value,
) -> String {
    let mut claims = json!({"iss": client_id, "sub": client_id, "aud": app.url("/token"),
        "iat": now(), "exp": now() + 300, "jti": uuid::Uuid::new_v4().to_string()});
    for (name, value) in changes.as_object().unwrap() {
        claims[name] = value.clone();
    }
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

async fn token_with_assertion(
    app: &TestApp,
    assertion: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ];
    form.extend_from_slice(extra);
    app.post("/token").form(&form).send().await.unwrap()
}

/// `grant_type=client_credentials` with Basic credentials and `extra` form fields.
async fn basic_grant(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(extra);
    app.post("/token")
        .basic_auth(client_id, Some(secret))
        .form(&form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_machine_client_with_a_secret_calls_tools_as_itself() {
    let app = spawn_app_with(&["--dynamic-machine-clients"]).await;
    let metadata = app
        .get_json(&app.url("/.well-known/oauth-authorization-server"))
        .await;
    for (field, value) in [
        ("grant_types_supported", "client_credentials"),
        ("token_endpoint_auth_methods_supported", "private_key_jwt"),
        ("token_endpoint_auth_signing_alg_values_supported", "ES256"),
    ] {
        assert!(
            metadata[field].as_array().unwrap().contains(&json!(value)),
            "{field}: {metadata}"
        );
    }
    // No redirect URIs: a machine client has no browser.
    let registered = register_with(
        &app,
        json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic",
               "scope": "mcp.read", "client_name": "nightly job"}),
    )
    .await;
    assert_eq!(registered["grant_types"], json!(["client_credentials"]));
    assert_eq!(registered["response_types"], json!([]));
    let (client_id, secret) = (
        field(&registered, "client_id"),
        field(&registered, "client_secret"),
    );

    let answer = basic_grant(&app, &client_id, &secret, &[]).await;
    let tokens = ok_json(answer, "client_secret_basic").await;
    assert_eq!(tokens["scope"], "mcp.read");
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    let who = whoami(&app, tokens["access_token"].as_str().unwrap()).await;
    // The client acts for itself, in a namespace no user name can enter.
    assert_eq!(who["sub"], format!("client:{client_id}"));
    assert_eq!(who["client_id"], client_id.as_str());

    // Asking for more than it registered gets what it registered (the answer says so); asking
    // only for what it did not register, or for an unknown scope, is refused.
    let wider = basic_grant(
        &app,
        &client_id,
        &secret,
        &[("scope", "mcp.read mcp.write")],
    )
    .await;
    assert_eq!(ok_json(wider, "a wider scope").await["scope"], "mcp.read");
    for outside in ["mcp.write", "admin"] {
        let refused = basic_grant(&app, &client_id, &secret, &[("scope", outside)]).await;
        assert_oauth_error(refused, 400, "invalid_scope", outside).await;
    }
    // Nor may it ask for a resource the server does not know.
    let elsewhere = basic_grant(
        &app,
        &client_id,
        &secret,
        &[("resource", "https://elsewhere.example/mcp")],
    )
    .await;
    assert_oauth_error(elsewhere, 400, "invalid_target", "an unknown resource").await;
    let wrong = basic_grant(&app, &client_id, "not the secret", &[]).await;
    assert_oauth_error(wrong, 401, "invalid_client", "a wrong secret").await;

    // client_secret_post, for the resource's /mcp endpoint by name.
    let registered = register_with(
        &app,
        json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    let resource = app.mcp_url();
    let answer = app
        .post("/token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &field(&registered, "client_id")),
            ("client_secret", &field(&registered, "client_secret")),
            ("resource", &resource),
        ])
        .send()
        .await
        .unwrap();
    let tokens = ok_json(answer, "client_secret_post").await;
    // No registered scope: every supported one.
    assert_eq!(tokens["scope"], "mcp.read mcp.write");
}

#[tokio::test]
async fn clients_not_registered_for_the_grant_are_refused() {
    let app = spawn_app_with(&["--dynamic-machine-clients"]).await;
    // A public client authenticates as itself, but may not use the grant.
    let public = register(&app).await;
    let answer = app
        .post("/token")
        .form(&[("grant_type", "client_credentials"), ("client_id", &public)])
        .send()
        .await
        .unwrap();
    assert_oauth_error(answer, 400, "unauthorized_client", "a public client").await;
    // A confidential code client neither.
    let (client_id, secret) = register_confidential(&app, "client_secret_basic").await;
    let answer = basic_grant(&app, &client_id, &secret, &[]).await;
    assert_oauth_error(answer, 400, "unauthorized_client", "a code client").await;
    // And a public machine client cannot be registered.
    let closed = spawn_app().await;
    let body = json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"});
    let refused = post_register(&closed, &body).await;
    let answer = assert_oauth_error(
        refused,
        400,
        "invalid_client_metadata",
        "registration closed to machine clients",
    )
    .await;
    assert!(
        answer["error_description"]
            .as_str()
            .unwrap()
            .contains("AUTH_SERVER_CLIENTS_FILE"),
        "{answer}"
    );
    let refused = post_register(&app, &json!({"grant_types": ["client_credentials"]})).await;
    assert_oauth_error(
        refused,
        400,
        "invalid_client_metadata",
        "a public machine client",
    )
    .await;
}

#[tokio::test]
async fn private_key_jwt_assertions_are_verified_and_used_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), &["--dynamic-machine-clients"]).await;
    let (key, jwk) = p256_key_pair("k1");
    let registered = register_with(
        &app,
        json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
               "jwks": {"keys": [jwk]}}),
    )
    .await;
    assert!(registered.get("client_secret").is_none(), "{registered}");
    assert_eq!(registered["jwks"]["keys"][0]["kid"], "k1");
    let client_id = field(&registered, "client_id");

    let good = assertion(&app, &client_id, &key, "k1", json!({}));
    let tokens = ok_json(
        token_with_assertion(&app, &good, &[]).await,
        "a good assertion",
    )
    .await;
    let who = whoami(&app, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(who["sub"], format!("client:{client_id}"));

    // The issuer is an audience too, and client_id may be sent when it matches.
    let to_issuer = assertion(&app, &client_id, &key, "k1", json!({"aud": app.issuer}));
    let answer = token_with_assertion(&app, &to_issuer, &[("client_id", &client_id)]).await;
    ok_json(answer, "an assertion for the issuer").await;

    let (stranger, _) = p256_key_pair("k9");
    let refusals = [
        (good.clone(), "a replayed assertion"),
        (
            assertion(
                &app,
                &client_id,
                &key,
                "k1",
                json!({"aud": "https://elsewhere.example/token"}),
            ),
            "another audience",
        ),
        (
            assertion(
                &app,
                &client_id,
                &key,
                "k1",
                json!({"exp": now() - 120, "iat": now() - 400}),
            ),
            "an expired assertion",
        ),
        (
            assertion(&app, &client_id, &key, "k1", json!({"exp": now() + 3600})),
            "an assertion living too long",
        ),
        (
            assertion(&app, &client_id, &stranger, "k9", json!({})),
            "an unknown key",
        ),
        (
            assertion(&app, &client_id, &stranger, "k1", json!({})),
            "another key under a registered kid",
        ),
        (
            assertion(&app, &client_id, &key, "k1", json!({"sub": "someone-else"})),
            "sub is not iss",
        ),
        (
            assertion(&app, "no-such-client", &key, "k1", json!({})),
            "an unknown client",
        ),
    ];
    for (assertion, case) in refusals {
        let answer = token_with_assertion(&app, &assertion, &[]).await;
        assert_oauth_error(answer, 401, "invalid_client", case).await;
    }
    // Two methods at once, or a wrong assertion type, are malformed requests.
    let fresh = assertion(&app, &client_id, &key, "k1", json!({}));
    let both = basic_grant(
        &app,
        &client_id,
        "x",
        &[
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &fresh),
        ],
    )
    .await;
    assert_oauth_error(both, 400, "invalid_request", "two methods").await;
    let wrong_type = app
        .post("/token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:example:other"),
            ("client_assertion", &fresh),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(wrong_type, 400, "invalid_request", "another assertion type").await;

    // The registered keys are stored: after a restart the client still signs in.
    let app = app.restart().await;
    let after = assertion(&app, &client_id, &key, "k1", json!({}));
    ok_json(
        token_with_assertion(&app, &after, &[]).await,
        "after a restart",
    )
    .await;
}
