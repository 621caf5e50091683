//! `POST /revoke`: token revocation (RFC 7009).
//!
//! The client authenticates as at `/token` (public clients by `client_id`). A refresh token ends
//! its whole family, with the access tokens minted from it; an access token is revoked by its
//! `jti` until it expires (the `Revocations` actor), which `/introspect` reports and a resource
//! server that introspects honours. `token_type_hint` only chooses which kind is tried first.
//! The answer is 200 with an empty body whether the token was revoked, unknown, malformed or
//! already dead, and also when it belongs to another client, which revokes nothing (RFC 7009
//! section 2.1 and 2.2): the endpoint tells a caller nothing about tokens it does not own.

use super::AuthState;
use super::introspect::verify_access_token;
use super::token::{authenticate_client, revoke_access_tokens};
use crate::actors::ask;
use crate::actors::clients::unix_now;
use crate::actors::refresh_tokens::{RevokeToken, TokenRevocation};
use crate::actors::revocations::Revoke;
use crate::actors::throttle::Endpoint;
use crate::http::error::{JsonError, no_store, too_many_requests};
use crate::oauth::ErrorCode;
use crate::oauth::params::Params;
use crate::trace::Secret;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
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
    if token.len() > 512 {
        return Ok(Outcome::NotFound);
    }
    let msg = RevokeToken {
        token: Secret::new(token),
        client_id: client_id.to_string(),
    };
    match ask(&state.refresh_tokens, msg).await? {
        TokenRevocation::Unknown => Ok(Outcome::NotFound),
        TokenRevocation::OtherClient => Ok(Outcome::OtherClient),
        TokenRevocation::Revoked(ended) => {
            revoke_access_tokens(state, &ended).await?;
            Ok(Outcome::Revoked)
        }
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
    if claims["client_id"].as_str() != Some(client_id) {
        return Ok(Outcome::OtherClient);
    }
    let remaining = claims["exp"]
        .as_u64()
        .unwrap_or_default()
        .saturating_sub(unix_now());
    let revoke = Revoke {
        jti: claims["jti"].as_str().unwrap_or_default().to_string(),
        // Past `exp`, plus the leeway a resource server may grant.
        ttl: Duration::from_secs(remaining + 60),
    };
    ask(&state.revocations, revoke).await?;
    Ok(Outcome::Revoked)
}

pub async fn handler(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, JsonError> {
    if let Err(limited) = super::admit(&state, Endpoint::Token, peer).await {
        return Ok(too_many_requests(limited));
    }
    if !crate::http::content_type_is(&headers, crate::http::FORM) {
        return Err(JsonError::new(
            ErrorCode::InvalidRequest,
            "the request body must be application/x-www-form-urlencoded",
        ));
    }
    let form = Params::parse(&body)
        .map_err(|_| JsonError::new(ErrorCode::InvalidRequest, "a parameter is repeated"))?;
    let client = authenticate_client(&state, &headers, &form).await?;
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
