//! The OAuth client's side of the protocol: PKCE pairs computed independently of the server's
//! code, registration, `/token` requests, introspection and revocation, and the checks every
//! OAuth answer gets (an error's status, code and headers; a JSON field).

use super::app::TestApp;
use super::browser::{Browser, authorize_as, query_param};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The redirect URI every test client registers (nothing listens there).
pub const REDIRECT: &str = "http://127.0.0.1:53682/callback";

/// A PKCE pair computed independently of the server's code (shared with the bench).
pub use mcp_oauth_testkit::Pkce;

/// The S256 challenge of a verifier (RFC 7636 section 4.2).
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A string field of a JSON answer; its absence fails the test, naming the answer.
pub fn field(body: &Value, name: &str) -> String {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .to_string()
}

/// An OAuth error answer in JSON (RFC 6749 section 5.2): the status, `Cache-Control: no-store`,
/// a JSON body whose `error` is `error`, and no redirect. Returns the body.
pub async fn assert_oauth_error(
    response: reqwest::Response,
    status: u16,
    error: &str,
    context: &str,
) -> Value {
    assert_eq!(response.status(), status, "{context}");
    assert_eq!(response.headers()["cache-control"], "no-store", "{context}");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{context}"
    );
    assert!(response.headers().get("location").is_none(), "{context}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{context}: {body}");
    body
}

/// The `Retry-After` of a response, in seconds.
pub fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A successful token answer: 200, `Cache-Control: no-store`; returns the body.
pub async fn ok_json(response: reqwest::Response, context: &str) -> Value {
    assert_eq!(response.status(), 200, "{context}");
    assert_eq!(response.headers()["cache-control"], "no-store", "{context}");
    response.json().await.unwrap()
}

/// `POST /register` with `body`, whatever the answer.
pub async fn post_register(app: &TestApp, body: &Value) -> reqwest::Response {
    app.post("/register").json(body).send().await.unwrap()
}

/// Registers a client with `body`; the registration must succeed. Returns the answer.
pub async fn register_with(app: &TestApp, body: Value) -> Value {
    let response = post_register(app, &body).await;
    assert_eq!(response.status(), 201, "registration refused");
    response.json().await.unwrap()
}

/// Registers a public client with one loopback redirect URI; returns its id.
pub async fn register(app: &TestApp) -> String {
    let body = json!({"client_name": "Test Client", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"});
    field(&register_with(app, body).await, "client_id")
}

/// Registers a confidential client that authenticates with `method`; returns its id and secret.
pub async fn register_confidential(app: &TestApp, method: &str) -> (String, String) {
    let body = json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": method});
    let registered = register_with(app, body).await;
    (
        field(&registered, "client_id"),
        field(&registered, "client_secret"),
    )
}

/// A `/token` request being built: form fields in order, and how the client authenticates.
#[derive(Clone)]
pub struct TokenRequest {
    form: Vec<(String, String)>,
    authorization: Option<reqwest::header::HeaderValue>,
}

impl TokenRequest {
    /// `grant_type=authorization_code` for `code` with its verifier and [`REDIRECT`]; no client
    /// yet.
    pub fn code(code: &str, verifier: &str) -> Self {
        TokenRequest {
            form: Vec::new(),
            authorization: None,
        }
        .set("grant_type", "authorization_code")
        .set("code", code)
        .set("redirect_uri", REDIRECT)
        .set("code_verifier", verifier)
    }

    /// `grant_type=refresh_token` for a public client.
    pub fn refresh(client_id: &str, refresh_token: &str) -> Self {
        TokenRequest {
            form: Vec::new(),
            authorization: None,
        }
        .set("grant_type", "refresh_token")
        .set("refresh_token", refresh_token)
        .set("client_id", client_id)
    }

    /// Sets a form field: its value replaced where it stands, or the field added at the end.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        match self.form.iter_mut().find(|(n, _)| n == name) {
            Some(field) => field.1 = value.to_string(),
            None => self.form.push((name.to_string(), value.to_string())),
        }
        self
    }

    /// Sets a form field, or leaves it out when `value` is empty.
    pub fn set_or_remove(self, name: &str, value: &str) -> Self {
        if value.is_empty() {
            self.remove(name)
        } else {
            self.set(name, value)
        }
    }

    /// Leaves a form field out.
    pub fn remove(mut self, name: &str) -> Self {
        self.form.retain(|(n, _)| n != name);
        self
    }

    /// Authenticates with HTTP Basic (`client_secret_basic`).
    pub fn basic(self, client_id: &str, secret: &str) -> Self {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
        self.authorization(format!("Basic {credentials}").as_bytes())
    }

    /// Sends these bytes as the `Authorization` header.
    pub fn authorization(mut self, value: &[u8]) -> Self {
        self.authorization = Some(reqwest::header::HeaderValue::from_bytes(value).unwrap());
        self
    }

    pub async fn send(&self, app: &TestApp) -> reqwest::Response {
        let mut request = app.post("/token").form(&self.form);
        if let Some(value) = &self.authorization {
            request = request.header("authorization", value.clone());
        }
        request.send().await.unwrap()
    }
}

/// The redemption of a code by a public client, naming the MCP endpoint as the resource.
pub fn redemption(app: &TestApp, client_id: &str, code: &str, verifier: &str) -> TokenRequest {
    TokenRequest::code(code, verifier)
        .set("client_id", client_id)
        .set("resource", &app.mcp_url())
}

/// Redeems a code for a public client, naming the MCP endpoint as the resource.
pub async fn redeem(
    app: &TestApp,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    redemption(app, client_id, code, verifier).send(app).await
}

/// `grant_type=refresh_token` for a public client, with extra form fields.
pub async fn refresh(
    app: &TestApp,
    client_id: &str,
    refresh_token: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let request = TokenRequest::refresh(client_id, refresh_token);
    let request = extra.iter().fold(request, |r, (k, v)| r.set(k, v));
    request.send(app).await
}

/// A fresh code for `client_id` (signed in as `user` in a new browser, approved) and its PKCE
/// pair.
pub async fn code_as(app: &TestApp, client_id: &str, user: &str, password: &str) -> (String, Pkce) {
    let pkce = Pkce::new();
    let callback = authorize_as(app, &Browser::new(), client_id, &pkce, user, password).await;
    (query_param(&callback, "code").unwrap(), pkce)
}

/// A fresh code for `client_id`, approved by alice, and its PKCE pair.
pub async fn code_for(app: &TestApp, client_id: &str) -> (String, Pkce) {
    code_as(app, client_id, "alice", "password123").await
}

/// A full flow for `client_id` as `user`, the code redeemed; returns the token response.
pub async fn tokens_as(app: &TestApp, client_id: &str, user: &str, password: &str) -> Value {
    let (code, pkce) = code_as(app, client_id, user, password).await;
    let response = redeem(app, client_id, &code, &pkce.verifier).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A full flow for `client_id` as alice; returns the token response.
pub async fn tokens_for_client(app: &TestApp, client_id: &str) -> Value {
    tokens_as(app, client_id, "alice", "password123").await
}

/// A full flow for an existing client as `user`; returns the access token.
pub async fn access_token_as(app: &TestApp, client_id: &str, user: &str, password: &str) -> String {
    let tokens = tokens_as(app, client_id, user, password).await;
    field(&tokens, "access_token")
}

/// A full flow as `user`: registration, authorization, token. Returns the access token.
pub async fn token_for(app: &TestApp, user: &str, password: &str) -> String {
    let client_id = register(app).await;
    access_token_as(app, &client_id, user, password).await
}

/// The authorization server's RFC 8414 metadata.
pub async fn as_metadata(app: &TestApp) -> Value {
    app.get_json(&app.url("/.well-known/oauth-authorization-server"))
        .await
}

/// MD-1: every endpoint the metadata `md` names starts with `prefix` (the issuer).
pub fn assert_endpoints_under(md: &Value, prefix: &str) {
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "registration_endpoint",
        "jwks_uri",
    ] {
        let url = md[endpoint].as_str().unwrap_or_default();
        assert!(url.starts_with(prefix), "{endpoint}: {md}");
    }
}

/// The resource-server introspection credential the token-lifecycle tests configure.
pub const INTROSPECTION_SECRET: &str = "rs-introspection-secret-for-tests";

/// Settings that turn introspection on at both servers with [`INTROSPECTION_SECRET`], without
/// the RS's answer cache (so that a refusal follows a revocation at once).
pub const INTROSPECT_FLAGS: &[&str] = &[
    "--introspection-secret",
    INTROSPECTION_SECRET,
    "--introspect",
    "--rs-introspection-secret",
    INTROSPECTION_SECRET,
    "--introspection-cache-seconds",
    "0",
];

/// Introspects `token` as a confidential client (HTTP Basic); the answer must be 200, not cached.
pub async fn introspect_as_client(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    token: &str,
) -> Value {
    let response = app
        .post("/introspect")
        .basic_auth(client_id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

/// Introspects `token` with the resource server's credential; the answer must be 200.
pub async fn introspect_as_rs(app: &TestApp, token: &str) -> Value {
    let response = app
        .post("/introspect")
        .bearer_auth(INTROSPECTION_SECRET)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `token` is inactive, asked with the resource server's credential: the answer is
/// `{"active": false}` and nothing else (RFC 7662 section 2.2).
pub async fn assert_inactive(app: &TestApp, token: &str) {
    assert_eq!(introspect_as_rs(app, token).await, json!({"active": false}));
}

/// Revokes a token as a public client (RFC 7009); returns the response.
pub async fn revoke_token(
    app: &TestApp,
    client_id: &str,
    token: &str,
    hint: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![("token", token), ("client_id", client_id)];
    if let Some(hint) = hint {
        form.push(("token_type_hint", hint));
    }
    app.post("/revoke").form(&form).send().await.unwrap()
}

/// The `kid` of a token's header.
pub fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// The key ids an authorization server publishes in its JWKS, sorted.
pub async fn jwks_kids(app: &TestApp) -> Vec<String> {
    let jwks = app.get_json(&app.url("/oauth/jwks")).await;
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| field(k, "kid"))
        .collect();
    kids.sort();
    kids
}

/// A fresh P-256 key pair: the signing key and its public JWK under `kid`.
pub fn p256_key_pair(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let b64 = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    (jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

/// The claims of a JWT, read without checking its signature.
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}
