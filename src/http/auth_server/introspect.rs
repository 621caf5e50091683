//! `POST /introspect`: token introspection (RFC 7662) for resource servers and confidential
//! clients.
//!
//! Who may ask: a resource server presenting the configured introspection credential
//! (`Authorization: Bearer <AUTH_SERVER_INTROSPECTION_SECRET>`, RFC 7662 section 2.1) may
//! introspect any token; a confidential client (`client_secret_basic` or `client_secret_post`)
//! only the tokens issued to it (another client's token reads as inactive). Public clients and
//! unauthenticated callers get 401 `invalid_client`.
//!
//! An access token is active when this server signed it, it has not expired, and it has not been
//! revoked (RFC 7009, a replayed code, or its refresh-token family ending). A refresh token is
//! active when it is the current token of a live family; a rotated, revoked or expired one is not,
//! and introspecting never rotates or revokes anything. `token_type_hint` only chooses which
//! kind is tried first. Anything else is `{"active": false}`, with nothing more.
//!
//! Throttling: a request with the right resource-server credential (a constant-time comparison,
//! the hot path of an introspecting resource server) is never limited; every other request takes
//! a token from the source's `/token` bucket before any credential is checked, so wrong secrets
//! are as limited here as at `/token`.

use super::access_token::verify_access_token;
use super::client_auth;
use super::form::FormRequest;
use super::rate_limit::{SourceAddress, admit};
use super::state::AuthState;
use crate::actors::ask;
use crate::actors::refresh_tokens::InspectRefreshToken;
use crate::actors::revocations::IsRevoked;
use crate::actors::throttle::Endpoint;
use crate::http::error::{JsonError, no_store, too_many_requests};
use crate::oauth::ErrorCode;
use crate::oauth::params::{MAX_REFRESH_TOKEN_LEN, Params};
use crate::trace::Secret;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Who is asking.
enum Caller {
    /// The resource-server credential: may introspect any token.
    ResourceServer,
    /// A confidential client: only its own tokens.
    Client(String),
}

/// The resource-server credential, when configured and presented.
pub(super) fn resource_server_credential(state: &AuthState, headers: &HeaderMap) -> Option<bool> {
    let expected = state.config.introspection_secret.as_ref()?.expose();
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, presented) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), presented.trim().as_bytes()).into())
}

async fn authenticate(
    state: &AuthState,
    headers: &HeaderMap,
    form: &Params,
    source: SourceAddress,
) -> Result<Caller, JsonError> {
    let invalid = |description: &'static str| JsonError::new(ErrorCode::InvalidClient, description);
    match resource_server_credential(state, headers) {
        Some(true) => return Ok(Caller::ResourceServer),
        Some(false) => return Err(invalid("introspection credential refused")),
        None => {}
    }
    let is_bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    if is_bearer {
        return Err(invalid("introspection credential refused"));
    }
    let client = client_auth::authenticate(state, headers, form, source).await?;
    if client.is_public() {
        return Err(invalid("introspection requires client authentication"));
    }
    Ok(Caller::Client(client.client_id.to_string()))
}

fn may_see(caller: &Caller, client_id: &str) -> bool {
    match caller {
        Caller::ResourceServer => true,
        Caller::Client(own) => own == client_id,
    }
}

async fn access_token(
    state: &AuthState,
    caller: &Caller,
    token: &str,
) -> Result<Option<Value>, JsonError> {
    let Some(c) = verify_access_token(state, token).await? else {
        return Ok(None);
    };
    if !may_see(caller, &c.client_id) {
        return Ok(None);
    }
    let jti = c.jti.clone();
    if ask(&state.revocations, IsRevoked { jti }).await? {
        return Ok(None);
    }
    Ok(Some(json!({
        "active": true,
        "token_type": "Bearer",
        "scope": c.scope,
        "client_id": c.client_id,
        "sub": c.sub,
        "aud": c.aud,
        "iss": c.iss,
        "exp": c.exp,
        "iat": c.iat,
        "jti": c.jti,
    })))
}

async fn refresh_token(
    state: &AuthState,
    caller: &Caller,
    token: &str,
) -> Result<Option<Value>, JsonError> {
    if token.len() > MAX_REFRESH_TOKEN_LEN {
        return Ok(None);
    }
    let inspect = InspectRefreshToken {
        token: Secret::new(token),
    };
    let Some(found) = ask(&state.refresh_tokens, inspect).await? else {
        return Ok(None);
    };
    if !may_see(caller, &found.grant.client_id) {
        return Ok(None);
    }
    Ok(Some(json!({
        "active": true,
        "token_type": "refresh_token",
        "scope": found.grant.scope.to_string(),
        "client_id": found.grant.client_id,
        "sub": found.grant.subject,
        "aud": found.grant.resource,
        "iss": state.config.issuer,
        "exp": found.expires_at,
        "iat": found.issued_at,
    })))
}

pub async fn handler(
    State(state): State<AuthState>,
    source: SourceAddress,
    FormRequest {
        headers,
        params: form,
        ..
    }: FormRequest,
) -> Result<Response, JsonError> {
    if resource_server_credential(&state, &headers) != Some(true)
        && let Err(limited) = admit(&state, Endpoint::Token, source).await
    {
        return Ok(too_many_requests(limited));
    }
    let caller = authenticate(&state, &headers, &form, source).await?;
    let token = form
        .get("token")
        .ok_or_else(|| JsonError::new(ErrorCode::InvalidRequest, "token is required"))?;
    let refresh_first = form.get("token_type_hint") == Some("refresh_token");
    let answer = if refresh_first {
        match refresh_token(&state, &caller, token).await? {
            Some(found) => Some(found),
            None => access_token(&state, &caller, token).await?,
        }
    } else {
        match access_token(&state, &caller, token).await? {
            Some(found) => Some(found),
            None => refresh_token(&state, &caller, token).await?,
        }
    };
    let mut response = Json(answer.unwrap_or_else(|| json!({"active": false}))).into_response();
    no_store(&mut response);
    Ok(response)
}
