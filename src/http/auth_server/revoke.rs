//! `POST /revoke`: token revocation (RFC 7009).
//!
//! The client authenticates as at `/token` (public clients by `client_id`). A refresh token ends
//! its whole family, with the access tokens minted from it (`RefreshTokens` revokes those itself
//! before it answers); an access token is revoked by its `jti` until it expires (the
//! `Revocations` actor), which `/introspect` reports and a resource server that introspects
//! honours. `token_type_hint` only chooses which kind is tried first. The answer is 200 with an
//! empty body whether the token was revoked, unknown, malformed or already dead, and also when it
//! belongs to another client, which revokes nothing (RFC 7009 section 2.1 and 2.2): the endpoint
//! tells a caller nothing about tokens it does not own. A revocation that cannot be recorded (the
//! list is full) is 503 `temporarily_unavailable`, never 200.

use super::access_token::verify_access_token;
use super::client_auth::AuthenticatedClient;
use super::state::AuthState;
use crate::actors::ask;
use crate::actors::refresh_tokens::{RevokeRefreshToken, TokenRevocation};
use crate::actors::revocations::RevokeAccessToken;
use crate::http::error::{JsonError, no_store};
use crate::oauth::ErrorCode;
use crate::oauth::params::MAX_REFRESH_TOKEN_LEN;
use crate::oauth::time::unix_now;
use crate::oauth::token::CLOCK_LEEWAY;
use crate::trace::Secret;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// What became of the token.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Revoked,
    OtherClient,
    NotFound,
}

async fn revoke_refresh_token(
    state: &AuthState,
    client_id: &str,
    token: &str,
) -> Result<Outcome, JsonError> {
    if token.len() > MAX_REFRESH_TOKEN_LEN {
        return Ok(Outcome::NotFound);
    }
    let msg = RevokeRefreshToken {
        token: Secret::new(token),
        client_id: client_id.to_string(),
    };
    match ask(&state.refresh_tokens, msg).await? {
        TokenRevocation::Unknown => Ok(Outcome::NotFound),
        TokenRevocation::OtherClient => Ok(Outcome::OtherClient),
        TokenRevocation::Revoked(_) => Ok(Outcome::Revoked),
    }
}

async fn revoke_access_token(
    state: &AuthState,
    client_id: &str,
    token: &str,
) -> Result<Outcome, JsonError> {
    let Some(claims) = verify_access_token(state, token).await? else {
        return Ok(Outcome::NotFound);
    };
    if claims.client_id != client_id {
        return Ok(Outcome::OtherClient);
    }
    let remaining = claims.exp.saturating_sub(unix_now());
    let revoke = RevokeAccessToken {
        jti: claims.jti,
        // Past `exp`, plus the leeway a resource server may grant.
        ttl: Duration::from_secs(remaining) + CLOCK_LEEWAY,
    };
    ask(&state.revocations, revoke).await?;
    Ok(Outcome::Revoked)
}

pub async fn handler(
    State(state): State<AuthState>,
    AuthenticatedClient {
        client,
        params: form,
    }: AuthenticatedClient,
) -> Result<Response, JsonError> {
    let token = form
        .get("token")
        .ok_or_else(|| JsonError::new(ErrorCode::InvalidRequest, "token is required"))?;
    let access_first = form.get("token_type_hint") == Some("access_token");
    let id: &str = &client.client_id;
    let outcome = if access_first {
        match revoke_access_token(&state, id, token).await? {
            Outcome::NotFound => revoke_refresh_token(&state, id, token).await?,
            found => found,
        }
    } else {
        match revoke_refresh_token(&state, id, token).await? {
            Outcome::NotFound => revoke_access_token(&state, id, token).await?,
            found => found,
        }
    };
    tracing::info!(client_id = %id, token = %Secret::new(token), outcome = ?outcome, "revocation request");
    let mut response = StatusCode::OK.into_response();
    no_store(&mut response);
    Ok(response)
}
