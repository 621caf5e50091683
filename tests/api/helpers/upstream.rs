//! A small upstream identity provider for the sign-in tests, served over real HTTP on port 0:
//! an OpenID provider (discovery, JWKS with an ES256 key, an authorization endpoint that signs the
//! chosen user in at once, a token endpoint that checks the client's secret, the code, the
//! redirect URI and the PKCE verifier, and returns an ID token) and a GitHub-style OAuth 2.0
//! provider (token endpoint with the secret in the body, and a user endpoint). [`Misbehaviour`]
//! makes it answer as a broken or hostile provider would.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const UPSTREAM_CLIENT_ID: &str = "mcp-oauth";
pub const UPSTREAM_SECRET: &str = "upstream-secret-of-the-tests";

/// How the provider answers the next sign-ins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    None,
    /// The ID token is signed by a key the JWKS does not hold (under the published `kid`).
    ForeignKey,
    /// The ID token carries another nonce than the one asked for.
    WrongNonce,
    /// The ID token names another issuer.
    WrongIssuer,
    /// The user denies the sign-in: the callback gets `error=access_denied`.
    Deny,
    /// The callback names another issuer (RFC 9207 `iss`): a mix-up.
    ForeignIss,
}

/// The user the provider signs in next.
#[derive(Debug, Clone)]
pub struct UpstreamUser {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
}

struct Grant {
    nonce: Option<String>,
    challenge: String,
    redirect_uri: String,
    user: UpstreamUser,
}

/// The provider's signing key: its kid, the private half and the public JWK.
struct SigningKey {
    kid: String,
    key: EncodingKey,
    jwk: Value,
}

struct Inner {
    issuer: String,
    key: Mutex<Arc<SigningKey>>,
    foreign_key: EncodingKey,
    /// How many times the JWKS was fetched.
    jwks_fetches: Mutex<u32>,
    misbehaviour: Mutex<Misbehaviour>,
    user: Mutex<UpstreamUser>,
    grants: Mutex<HashMap<String, Grant>>,
    /// The query of every authorization request received.
    requests: Mutex<Vec<HashMap<String, String>>>,
    /// Every access token handed out (none may reach an MCP client).
    access_tokens: Mutex<Vec<String>>,
}

/// The running provider.
#[derive(Clone)]
pub struct UpstreamProvider(Arc<Inner>);

impl UpstreamProvider {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let (foreign_key, _) = es256_key("upstream-1");
        let provider = UpstreamProvider(Arc::new(Inner {
            issuer,
            key: Mutex::new(Arc::new(signing_key("upstream-1"))),
            foreign_key,
            jwks_fetches: Mutex::new(0),
            misbehaviour: Mutex::new(Misbehaviour::None),
            user: Mutex::new(UpstreamUser {
                sub: "carol".into(),
                email: "carol@example.com".into(),
                email_verified: true,
            }),
            grants: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            access_tokens: Mutex::new(Vec::new()),
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/gh/authorize", get(authorize))
            .route("/gh/token", post(github_token))
            .route("/gh/user", get(github_user))
            .with_state(provider.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        provider
    }

    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// Signs from now on with a new key under a new kid, the only one in the JWKS.
    pub fn rotate_key(&self, kid: &str) {
        *self.0.key.lock().unwrap() = Arc::new(signing_key(kid));
    }

    pub fn jwks_fetches(&self) -> u32 {
        *self.0.jwks_fetches.lock().unwrap()
    }

    pub fn misbehave(&self, how: Misbehaviour) {
        *self.0.misbehaviour.lock().unwrap() = how;
    }

    pub fn sign_in_next(&self, sub: &str, email: &str, email_verified: bool) {
        *self.0.user.lock().unwrap() = UpstreamUser {
            sub: sub.into(),
            email: email.into(),
            email_verified,
        };
    }

    /// The query of the last authorization request.
    pub fn last_request(&self) -> HashMap<String, String> {
        self.0.requests.lock().unwrap().last().cloned().unwrap()
    }

    pub fn access_tokens(&self) -> Vec<String> {
        self.0.access_tokens.lock().unwrap().clone()
    }

    /// An identity-providers file: the OpenID provider as `op` ("Mock OP") and the GitHub-style
    /// one as `gh`, each with `extra` lines; written into `dir`.
    pub fn providers_file(&self, dir: &std::path::Path, op_extra: &str, gh_extra: &str) -> String {
        let issuer = self.issuer();
        let text = format!(
            r#"
[[provider]]
id = "op"
name = "Mock OP"
kind = "oidc"
issuer = "{issuer}"
client_id = "{UPSTREAM_CLIENT_ID}"
client_secret = "{UPSTREAM_SECRET}"
{op_extra}

[[provider]]
id = "gh"
name = "Mock GitHub"
kind = "oauth2"
authorization_url = "{issuer}/gh/authorize"
token_url = "{issuer}/gh/token"
userinfo_url = "{issuer}/gh/user"
name_field = "login"
email_field = "email"
client_id = "{UPSTREAM_CLIENT_ID}"
client_secret = "{UPSTREAM_SECRET}"
token_endpoint_auth_method = "client_secret_post"
scopes = ["read:user"]
{gh_extra}
"#
        );
        let path = dir.join("identity-providers.toml");
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }
}

fn signing_key(kid: &str) -> SigningKey {
    let (key, jwk) = es256_key(kid);
    SigningKey {
        kid: kid.into(),
        key,
        jwk,
    }
}

/// A fresh P-256 key pair for ES256: the signing key and its public JWK under `kid`.
fn es256_key(kid: &str) -> (EncodingKey, Value) {
    let (key, mut jwk) = super::p256_key_pair(kid);
    jwk["alg"] = json!("ES256");
    (key, jwk)
}

async fn discovery(State(op): State<UpstreamProvider>) -> Json<Value> {
    let issuer = op.issuer();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
}

async fn jwks(State(op): State<UpstreamProvider>) -> Json<Value> {
    *op.0.jwks_fetches.lock().unwrap() += 1;
    let key = Arc::clone(&op.0.key.lock().unwrap());
    Json(json!({"keys": [key.jwk.clone()]}))
}

/// Signs the chosen user in at once (or denies), and redirects to the callback.
async fn authorize(
    State(op): State<UpstreamProvider>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    op.0.requests.lock().unwrap().push(query.clone());
    let redirect_uri = query.get("redirect_uri").cloned().unwrap_or_default();
    let state = query.get("state").cloned().unwrap_or_default();
    let mut back = url::Url::parse(&redirect_uri).unwrap();
    if *op.0.misbehaviour.lock().unwrap() == Misbehaviour::Deny {
        back.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "The user said no")
            .append_pair("state", &state);
        return Redirect::to(back.as_str()).into_response();
    }
    let code = uuid::Uuid::new_v4().to_string();
    let grant = Grant {
        nonce: query.get("nonce").cloned(),
        challenge: query.get("code_challenge").cloned().unwrap_or_default(),
        redirect_uri,
        user: op.0.user.lock().unwrap().clone(),
    };
    op.0.grants.lock().unwrap().insert(code.clone(), grant);
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &state);
    if *op.0.misbehaviour.lock().unwrap() == Misbehaviour::ForeignIss {
        back.query_pairs_mut()
            .append_pair("iss", "https://impostor.example");
    }
    Redirect::to(back.as_str()).into_response()
}

/// The grant of a code, if the form redeems it correctly (code, redirect URI, PKCE).
fn redeem(op: &UpstreamProvider, form: &HashMap<String, String>) -> Option<Grant> {
    let code = form.get("code")?;
    let grant = op.0.grants.lock().unwrap().remove(code)?;
    let verifier = form.get("code_verifier")?;
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
    };
    (challenge == grant.challenge && form.get("redirect_uri") == Some(&grant.redirect_uri))
        .then_some(grant)
}

fn invalid_grant() -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_grant"})),
    )
        .into_response()
}

fn new_access_token(op: &UpstreamProvider) -> String {
    let token = format!("upstream-at-{}", uuid::Uuid::new_v4());
    op.0.access_tokens.lock().unwrap().push(token.clone());
    token
}

/// The OpenID token endpoint: client_secret_basic, then the ID token.
async fn token(
    State(op): State<UpstreamProvider>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{UPSTREAM_CLIENT_ID}:{UPSTREAM_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let Some(grant) = redeem(&op, &form) else {
        return invalid_grant();
    };
    let misbehaviour = *op.0.misbehaviour.lock().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let issuer = match misbehaviour {
        Misbehaviour::WrongIssuer => "https://impostor.example".to_string(),
        _ => op.issuer().to_string(),
    };
    let nonce = match misbehaviour {
        Misbehaviour::WrongNonce => Some("a-nonce-from-another-sign-in".to_string()),
        _ => grant.nonce,
    };
    let claims = json!({"iss": issuer, "sub": grant.user.sub, "aud": UPSTREAM_CLIENT_ID,
        "iat": now, "exp": now + 300, "nonce": nonce, "email": grant.user.email,
        "email_verified": grant.user.email_verified, "name": "Carol Upstream"});
    let current = Arc::clone(&op.0.key.lock().unwrap());
    let key = match misbehaviour {
        Misbehaviour::ForeignKey => &op.0.foreign_key,
        _ => &current.key,
    };
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(current.kid.clone());
    let id_token = jsonwebtoken::encode(&header, &claims, key).unwrap();
    Json(
        json!({"access_token": new_access_token(&op), "token_type": "Bearer",
        "expires_in": 300, "id_token": id_token}),
    )
    .into_response()
}

/// GitHub's token endpoint: the secret in the body, an access token, no ID token.
async fn github_token(
    State(op): State<UpstreamProvider>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let secret_ok = form.get("client_id").map(String::as_str) == Some(UPSTREAM_CLIENT_ID)
        && form.get("client_secret").map(String::as_str) == Some(UPSTREAM_SECRET);
    if !secret_ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let Some(grant) = redeem(&op, &form) else {
        return invalid_grant();
    };
    let token = new_access_token(&op);
    op.0.grants.lock().unwrap().insert(
        token.clone(),
        Grant {
            nonce: None,
            challenge: String::new(),
            redirect_uri: String::new(),
            user: grant.user,
        },
    );
    Json(json!({"access_token": token, "token_type": "bearer", "scope": "read:user"}))
        .into_response()
}

/// GitHub's user endpoint: a numeric `id`, a `login` and the public email.
async fn github_user(State(op): State<UpstreamProvider>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let grants = op.0.grants.lock().unwrap();
    let Some(grant) = grants.get(token) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let id: u64 = grant.user.sub.parse().unwrap_or(1);
    Json(json!({"id": id, "login": "octocat", "email": grant.user.email})).into_response()
}
