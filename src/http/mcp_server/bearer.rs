//! The bearer middleware in front of the MCP endpoints (RS-1..RS-5). In order:
//! 1. `Host` and `Origin` (DNS rebinding): 403 when foreign.
//! 2. The token, from the `Authorization` header only (scheme case-insensitive); a token in the
//!    query is ignored, and one in both places is a 400. No token: 401 with
//!    `WWW-Authenticate: Bearer resource_metadata=..., scope=...` and no `error`.
//! 3. Validation: RS256 only, `typ` `at+jwt`, no `crit`, the key from `JwksCache` by `kid`,
//!    `iss` exact, `aud` one of this server's endpoint URLs, `exp`/`nbf`/`iat` with a small
//!    leeway. Any failure: 401 `invalid_token`.
//! 4. With `--introspect`: the AS's introspection endpoint (through a short cache) must still
//!    call the token active; a revoked one gets 401 `invalid_token`, and when the AS cannot be
//!    asked the answer is 503 (fail closed).
//! 5. Scopes (RS-2, step-up): every request needs the baseline scopes (`--required-scopes`,
//!    `mcp.read` by default); a `tools/call` needs the scope its tool declares
//!    (`tools::TOOL_SCOPES`). A token without them gets 403 `insufficient_scope` whose `scope`
//!    names what the token already has plus what is missing, so a client that replaces its
//!    scopes with the challenge's (2025-11-25) and one that adds them (2026-07-28) both ask for
//!    enough. `tools/list` lists every tool.
//! 6. The MCP session belongs to the subject that opened it: another subject gets 403.
//! 7. Routing: a request with an `Mcp-Session-Id`, an `initialize`, or a GET/DELETE goes to the
//!    stateful service (sessions of the 2025 revisions); any other POST is served statelessly
//!    (2026-07-28 requests, and clients that never open a session), see [`Route`].
//!
//! Then the request goes to rmcp with the [`Caller`] attached, and the JSON-RPC method is traced
//! with the token's flow id.

use super::McpState;
use super::tools::Caller;
use crate::actors::jwks_cache::{JwksError, Lookup};
use crate::actors::mcp_sessions::{Bind, Forget, Owner};
use crate::actors::{AskError, ask};
use crate::oauth::scope::ScopeSet;
use crate::oauth::token::ACCESS_TOKEN_TYP;
use crate::trace::{Secret, fingerprint};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, decode, decode_header};
use serde::Deserialize;
use serde_json::json;

const SESSION_HEADER: &str = "mcp-session-id";
const MAX_TOKEN_LEN: usize = 8192;
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Claims the resource server reads from a validated token.
#[derive(Debug, Deserialize)]
struct TokenClaims {
    sub: String,
    /// A string, never an array (the validator alone would accept an array containing ours).
    #[serde(rename = "iss")]
    _iss: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    flow: Option<String>,
}

/// Why a request is refused.
enum Refusal {
    Forbidden(&'static str),
    NoToken,
    BadRequest(&'static str),
    InvalidToken(&'static str),
    InsufficientScope(ScopeSet),
    SessionNotFound,
    Unavailable,
    /// The AS's introspection endpoint could not be asked.
    IntrospectionUnavailable,
}

fn prm_url(state: &McpState, path: &str) -> String {
    let base = state.config.root_resource();
    if path == "/" || path.is_empty() {
        format!("{base}/.well-known/oauth-protected-resource")
    } else {
        format!("{base}/.well-known/oauth-protected-resource/mcp")
    }
}

fn refuse(state: &McpState, path: &str, refusal: Refusal) -> Response {
    let prm = prm_url(state, path);
    let scope = state.challenge_scope.to_string();
    let (status, challenge, error, description) = match refusal {
        Refusal::Forbidden(why) => (StatusCode::FORBIDDEN, None, "forbidden", why),
        Refusal::NoToken => (
            StatusCode::UNAUTHORIZED,
            Some(format!(
                r#"Bearer resource_metadata="{prm}", scope="{scope}""#
            )),
            "invalid_token",
            "an access token is required",
        ),
        Refusal::BadRequest(why) => (
            StatusCode::BAD_REQUEST,
            Some(format!(
                r#"Bearer error="invalid_request", resource_metadata="{prm}""#
            )),
            "invalid_request",
            why,
        ),
        Refusal::InvalidToken(why) => (
            StatusCode::UNAUTHORIZED,
            Some(format!(
                r#"Bearer error="invalid_token", error_description="{why}", resource_metadata="{prm}", scope="{scope}""#
            )),
            "invalid_token",
            why,
        ),
        Refusal::InsufficientScope(needed) => (
            StatusCode::FORBIDDEN,
            Some(format!(
                r#"Bearer error="insufficient_scope", scope="{needed}", resource_metadata="{prm}", error_description="the token lacks a required scope""#
            )),
            "insufficient_scope",
            "the token lacks a required scope",
        ),
        Refusal::SessionNotFound => (
            StatusCode::NOT_FOUND,
            None,
            "session_not_found",
            "the MCP session is unknown or expired; initialize a new one",
        ),
        Refusal::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "temporarily_unavailable",
            "the server is busy; retry shortly",
        ),
        Refusal::IntrospectionUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "temporarily_unavailable",
            "the authorization server could not confirm that the token is still valid; retry shortly",
        ),
    };
    let mut response = (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    if let Some(challenge) = challenge
        && let Ok(value) = HeaderValue::from_str(&challenge)
    {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The bearer token from the `Authorization` header: `Ok(None)` when there is none.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, Refusal> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::BadRequest("more than one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| Refusal::BadRequest("malformed Authorization header"))?;
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another authentication scheme: as if no token was sent (RFC 6750 section 3.1: no
        // error code for an unsupported method).
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Refusal::BadRequest("the Bearer credentials are missing"));
    }
    if token.len() > MAX_TOKEN_LEN
        || !token.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
        })
    {
        return Err(Refusal::InvalidToken("malformed bearer token"));
    }
    Ok(Some(token))
}

fn query_has_token(request: &Request) -> bool {
    request.uri().query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(name, _)| name == "access_token")
    })
}

/// Validates a token: header rules, key, signature and claims.
async fn validate(state: &McpState, token: &str) -> Result<TokenClaims, Refusal> {
    let header = decode_header(token).map_err(|_| Refusal::InvalidToken("malformed token"))?;
    if header.alg != Algorithm::RS256 {
        return Err(Refusal::InvalidToken("the token algorithm is not accepted"));
    }
    if header.crit.is_some() {
        return Err(Refusal::InvalidToken(
            "the token has critical header parameters",
        ));
    }
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(Refusal::InvalidToken(
            "the token is not an access token (typ)",
        ));
    }
    let Some(kid) = header.kid else {
        return Err(Refusal::InvalidToken("the token names no key"));
    };
    if kid.len() > 256 {
        return Err(Refusal::InvalidToken("the token names an unknown key"));
    }
    let key = match ask(&state.jwks, Lookup { kid }).await {
        Ok(key) => key,
        Err(AskError::Rejected(JwksError::UnknownKid)) => {
            return Err(Refusal::InvalidToken("the token names an unknown key"));
        }
        Err(AskError::Rejected(JwksError::Fetch(_))) | Err(_) => return Err(Refusal::Unavailable),
    };
    let data = decode::<TokenClaims>(token, &key, &state.validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        Refusal::InvalidToken(match e.kind() {
            ErrorKind::ExpiredSignature => "the token has expired",
            ErrorKind::ImmatureSignature => "the token is not valid yet",
            ErrorKind::InvalidIssuer => "the token was issued by another server",
            ErrorKind::InvalidAudience => "the token is for another resource",
            ErrorKind::InvalidSignature => "the token signature is invalid",
            ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
            _ => "the token is invalid",
        })
    })?;
    let now = jsonwebtoken::get_current_timestamp();
    if data
        .claims
        .iat
        .is_some_and(|iat| iat > now + super::LEEWAY_SECONDS)
    {
        return Err(Refusal::InvalidToken("the token was issued in the future"));
    }
    Ok(data.claims)
}

/// Which rmcp service serves a request: the stateful one (MCP sessions) or the stateless one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Stateful,
    Stateless,
}

/// What the middleware reads from a JSON-RPC body: each message's method and, for `tools/call`,
/// the tool's name.
struct Rpcs(Vec<(Option<String>, Option<String>)>);

impl Rpcs {
    fn parse(body: &[u8]) -> Option<Rpcs> {
        #[derive(Deserialize)]
        struct Params {
            name: Option<serde_json::Value>,
        }
        #[derive(Deserialize)]
        struct Rpc {
            method: Option<String>,
            params: Option<Params>,
        }
        fn one(rpc: Rpc) -> (Option<String>, Option<String>) {
            let name = rpc
                .params
                .and_then(|p| p.name)
                .and_then(|n| n.as_str().map(str::to_string));
            (rpc.method, name)
        }
        if let Ok(rpc) = serde_json::from_slice::<Rpc>(body) {
            return Some(Rpcs(vec![one(rpc)]));
        }
        serde_json::from_slice::<Vec<Rpc>>(body)
            .ok()
            .map(|batch| Rpcs(batch.into_iter().map(one).collect()))
    }

    fn has(&self, method: &str) -> bool {
        self.0.iter().any(|(m, _)| m.as_deref() == Some(method))
    }

    /// The scopes the tools called need; a tool this server lacks needs nothing here (rmcp
    /// answers it with a JSON-RPC error).
    fn tool_scopes(&self) -> ScopeSet {
        ScopeSet::from_names(
            self.0
                .iter()
                .filter(|(m, _)| m.as_deref() == Some("tools/call"))
                .filter_map(|(_, name)| name.as_deref().and_then(super::tools::required_scope)),
        )
    }

    /// For the trace: `initialize`, `tools/call greet`, ...
    fn describe(&self) -> String {
        self.0
            .iter()
            .map(|(method, name)| match (method, name) {
                (Some(method), Some(name)) if method == "tools/call" => {
                    format!("{method} {}", name.chars().take(64).collect::<String>())
                }
                (Some(method), _) => method.chars().take(64).collect(),
                (None, _) => "(response)".into(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// 403 `insufficient_scope` when `granted` lacks part of `needed`. The challenge names the
/// token's own (supported) scopes plus the missing ones: a client that requests exactly the
/// challenge's scopes keeps what it had.
fn scope_refusal(claims: &TokenClaims, granted: &ScopeSet, needed: &ScopeSet) -> Option<Refusal> {
    if needed.is_subset(granted) {
        return None;
    }
    tracing::info!(
        flow = claims.flow.as_deref().unwrap_or("-"),
        sub = %claims.sub,
        missing = %granted.missing(needed),
        "insufficient scope"
    );
    let kept = ScopeSet::from_names(
        granted
            .iter()
            .filter(|s| crate::oauth::scope::is_supported(s))
            .map(str::to_string),
    );
    Some(Refusal::InsufficientScope(kept.union(needed)))
}

pub async fn middleware(State(state): State<McpState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let headers = request.headers();
    let host_ok = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .is_some_and(|h| state.origins.host_allowed(h));
    if !host_ok {
        return refuse(
            &state,
            &path,
            Refusal::Forbidden("the Host header names another server"),
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN)
        && !origin
            .to_str()
            .is_ok_and(|o| state.origins.origin_allowed(o))
    {
        return refuse(
            &state,
            &path,
            Refusal::Forbidden("the Origin is not allowed"),
        );
    }
    let token = match bearer_token(headers) {
        Ok(token) => token,
        Err(refusal) => return refuse(&state, &path, refusal),
    };
    let Some(token) = token else {
        return refuse(&state, &path, Refusal::NoToken);
    };
    if query_has_token(&request) {
        return refuse(
            &state,
            &path,
            Refusal::BadRequest("the token must be sent in one place only"),
        );
    }
    let claims = match validate(&state, token).await {
        Ok(claims) => claims,
        Err(refusal) => {
            tracing::info!(server = "mcp", token = %fingerprint(token), "token refused");
            return refuse(&state, &path, refusal);
        }
    };
    if let Some(introspector) = &state.introspection {
        match introspector.is_active(token).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(server = "mcp", token = %fingerprint(token), "token refused: no longer active");
                return refuse(
                    &state,
                    &path,
                    Refusal::InvalidToken("the token has been revoked"),
                );
            }
            Err(_) => return refuse(&state, &path, Refusal::IntrospectionUnavailable),
        }
    }
    let granted = ScopeSet::parse(&claims.scope).unwrap_or_default();
    if let Some(refusal) = scope_refusal(&claims, &granted, &state.required) {
        return refuse(&state, &path, refusal);
    }
    let session = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(session_id) = &session {
        match ask(
            &state.sessions,
            Owner {
                session_id: Secret::new(session_id.as_str()),
            },
        )
        .await
        {
            Ok(Some(owner)) if owner == claims.sub => {}
            Ok(Some(_)) => {
                tracing::warn!(sub = %claims.sub, session = %fingerprint(session_id), "MCP session of another user refused");
                return refuse(
                    &state,
                    &path,
                    Refusal::Forbidden("the MCP session belongs to another user"),
                );
            }
            Ok(None) => return refuse(&state, &path, Refusal::SessionNotFound),
            Err(_) => return refuse(&state, &path, Refusal::Unavailable),
        }
    }

    let flow = claims
        .flow
        .clone()
        .or_else(|| claims.jti.clone())
        .unwrap_or_else(|| "-".into());
    let caller = Caller {
        subject: claims.sub.clone(),
        client_id: claims.client_id.clone(),
        scopes: granted.iter().map(str::to_string).collect(),
        flow: flow.clone(),
    };
    let method = request.method().clone();
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(caller);
    let request = if method == Method::POST {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
            return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
        }
        let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(bytes) => bytes,
            // Too large while streaming, or too slow (the body read timeout).
            Err(_) => {
                return (
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read in time or is too large",
                )
                    .into_response();
            }
        };
        let rpcs = Rpcs::parse(&bytes);
        tracing::info!(
            flow = %flow,
            sub = %claims.sub,
            client_id = %claims.client_id,
            mcp_method = %rpcs.as_ref().map_or_else(|| "(unparsed)".into(), Rpcs::describe),
            "mcp request"
        );
        // A body this parser cannot read (duplicate keys, say) might still read as a tool call
        // to rmcp: it needs every tool's scope, so no reading of it gets past the check.
        let needed = match &rpcs {
            Some(rpcs) => rpcs.tool_scopes().union(&state.required),
            None => state.challenge_scope.as_ref().clone(),
        };
        if let Some(refusal) = scope_refusal(&claims, &granted, &needed) {
            return refuse(&state, &path, refusal);
        }
        let opens_session = rpcs.as_ref().is_some_and(|r| r.has("initialize"));
        parts
            .extensions
            .insert(if session.is_some() || opens_session {
                Route::Stateful
            } else {
                Route::Stateless
            });
        Request::from_parts(parts, Body::from(bytes))
    } else {
        tracing::info!(flow = %flow, sub = %claims.sub, http_method = %method, "mcp request");
        parts.extensions.insert(Route::Stateful);
        Request::from_parts(parts, body)
    };

    let response = next.run(request).await;

    if session.is_none()
        && let Some(new_session) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
    {
        let bind = Bind {
            session_id: Secret::new(new_session),
            subject: claims.sub.clone(),
        };
        if ask(&state.sessions, bind).await.is_err() {
            return refuse(&state, &path, Refusal::Unavailable);
        }
    }
    if method == Method::DELETE
        && response.status().is_success()
        && let Some(session_id) = session
    {
        let forget = Forget {
            session_id: Secret::new(session_id),
        };
        let _ = ask(&state.sessions, forget).await;
    }
    response
}
