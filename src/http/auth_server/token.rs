//! `POST /token`: the token endpoint (OAuth 2.1 section 3.2, TK-1, TK-2, TK-4).
//!
//! Form-encoded POST only. The client authenticates with exactly one method: `none` (public
//! clients, `client_id` in the form), `client_secret_basic` or `client_secret_post`. The
//! `authorization_code` grant asks `AuthorizationCodes` to redeem the code (verifier, client,
//! redirect URI and resource checked and the code consumed in one step), then the signer pool to
//! sign an RFC 9068 access token; a client registered for `refresh_token` also gets the first
//! token of a new refresh-token family. The `refresh_token` grant asks `RefreshTokens` to rotate
//! the presented token (client, resource and scope checked first, reuse detected, the grace window
//! applied: see `actors/refresh_tokens.rs`), then signs a new access token. A replayed code
//! revokes the access token and the refresh-token family it produced. Every answer is JSON with
//! `Cache-Control: no-store`, and error descriptions are fixed text that never echoes input.

use super::AuthState;
use super::client_lookup::{NotFound, find_client};
use crate::actors::clients::{Client, MarkUsed, unix_now};
use crate::actors::codes::{Redeem, RedeemError};
use crate::actors::refresh_tokens::{
    EndedFamilies, FamilyGrant, Issue, Refresh, RefreshError, RevokeIssuedWith,
};
use crate::actors::revocations::Revoke;
use crate::actors::throttle::Endpoint;
use crate::actors::{AskError, ask};
use crate::http::error::{JsonError, no_store, too_many_requests};
use crate::oauth::ErrorCode;
use crate::oauth::params::Params;
use crate::oauth::pkce;
use crate::oauth::resource;
use crate::oauth::scope::ScopeSet;
use crate::oauth::token::AccessTokenClaims;
use crate::trace::Secret;
use axum::Json;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

fn invalid_request(description: &'static str) -> JsonError {
    JsonError::new(ErrorCode::InvalidRequest, description)
}

/// Client credentials from an `Authorization: Basic` header (RFC 6749 section 2.3.1: both parts
/// form-urlencoded before base64).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, JsonError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || JsonError {
        basic_challenge: true,
        ..JsonError::new(ErrorCode::InvalidClient, "malformed client credentials")
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let decode = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((decode(id), decode(secret))))
}

/// Authenticates the client with exactly one method.
pub async fn authenticate_client(
    state: &AuthState,
    headers: &HeaderMap,
    form: &Params,
) -> Result<Arc<Client>, JsonError> {
    let basic = basic_credentials(headers)?;
    let post_secret = form.get("client_secret");
    if basic.is_some() && post_secret.is_some() {
        return Err(invalid_request(
            "use exactly one client authentication method",
        ));
    }
    let (client_id, secret, used_basic) = match &basic {
        Some((id, secret)) => {
            if form.get("client_id").is_some_and(|f| f != id) {
                return Err(invalid_request(
                    "client_id does not match the client credentials",
                ));
            }
            (id.as_str(), Some(secret.as_str()), true)
        }
        None => match form.get("client_id") {
            Some(id) => (id, post_secret, false),
            None => {
                return Err(invalid_request("client_id is required"));
            }
        },
    };
    let invalid_client = || JsonError {
        basic_challenge: used_basic,
        ..JsonError::new(ErrorCode::InvalidClient, "client authentication failed")
    };
    if client_id.len() > 512 {
        return Err(invalid_client());
    }
    let client = match find_client(state, client_id).await {
        Ok(client) => client,
        Err(NotFound::Busy(err)) => return Err(err.into()),
        Err(NotFound::Unknown | NotFound::Document(_)) => return Err(invalid_client()),
    };
    let authenticated = match secret {
        None => client.is_public(),
        Some(_) if client.is_public() => false,
        // A configured client's argon2 hash: verified on a blocking thread, sharing the
        // password checks' one-per-core limit.
        Some(secret) if client.secret_is_argon2() => {
            let (client, secret) = (Arc::clone(&client), secret.to_string());
            state
                .users
                .check_limited(move || client.secret_matches(&secret))
                .await
                .map_err(|_| {
                    JsonError::new(
                        ErrorCode::TemporarilyUnavailable,
                        "the server is busy; try again",
                    )
                })?
        }
        Some(secret) => client.secret_matches(secret),
    };
    if !authenticated {
        return Err(invalid_client());
    }
    Ok(client)
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
        return Err(invalid_request(
            "the request body must be application/x-www-form-urlencoded",
        ));
    }
    let form = Params::parse(&body).map_err(|_| invalid_request("a parameter is repeated"))?;
    let client = authenticate_client(&state, &headers, &form).await?;
    match form.get("grant_type") {
        None => Err(invalid_request("grant_type is required")),
        Some("authorization_code") => authorization_code(&state, &client, &form).await,
        Some("refresh_token") => refresh_token(&state, &client, &form).await,
        Some(_) => Err(JsonError::new(
            ErrorCode::UnsupportedGrantType,
            "this grant type is not supported",
        )),
    }
}

async fn authorization_code(
    state: &AuthState,
    client: &Client,
    form: &Params,
) -> Result<Response, JsonError> {
    let code = form
        .get("code")
        .ok_or_else(|| invalid_request("code is required"))?;
    let verifier = form
        .get("code_verifier")
        .ok_or_else(|| invalid_request("code_verifier is required"))?;
    if !pkce::is_valid_verifier(verifier) {
        return Err(invalid_request("code_verifier is malformed"));
    }
    if let Some(requested) = form.get("resource")
        && resource::validate_shape(requested).is_err()
    {
        return Err(JsonError::new(
            ErrorCode::InvalidTarget,
            "resource must be an absolute URI without a fragment",
        ));
    }
    // The resource as the code recorded it (a trailing-slash variant of an origin is the same).
    let resource = form.get("resource").map(|r| {
        state
            .config
            .known_resources
            .iter()
            .find(|k| resource::same_resource(k, r))
            .cloned()
            .unwrap_or_else(|| r.to_string())
    });
    let jti = uuid::Uuid::new_v4().to_string();
    let redeem = Redeem {
        code: Secret::new(code),
        client_id: client.client_id.to_string(),
        redirect_uri: form.get("redirect_uri").map(str::to_string),
        verifier: Secret::new(verifier),
        resource,
        jti: jti.clone(),
    };
    let grant = match ask(&state.codes, redeem).await {
        Ok(grant) => grant,
        Err(AskError::Rejected(RedeemError::Replayed { jti, flow })) => {
            // The code leaked: whoever redeemed it first may not be its client. Revoke the
            // token it produced (RFC 9700 section 4.5).
            tracing::warn!(flow = %flow, jti = %jti, "authorization code replayed; revoking the token it produced");
            let revoke = Revoke {
                jti: jti.clone(),
                ttl: std::time::Duration::from_secs(state.config.access_token_ttl_seconds + 60),
            };
            ask(&state.revocations, revoke).await?;
            // And the refresh-token family it started, with any access token refreshed from it.
            let family = ask(&state.refresh_tokens, RevokeIssuedWith { jti }).await?;
            revoke_access_tokens(state, &family).await?;
            return Err(JsonError::new(
                ErrorCode::InvalidGrant,
                "the code was already used",
            ));
        }
        Err(AskError::Rejected(err)) => return Err(redeem_error(err)),
        Err(other) => return Err(other.into()),
    };
    let token = sign_access_token(
        state,
        &grant.subject,
        &grant.client_id,
        &grant.resource,
        &grant.scope,
        &grant.flow,
        jti.clone(),
    )
    .await?;
    // The client completed a flow: it is kept, not reaped as an abandoned registration.
    let mark = MarkUsed {
        client_id: grant.client_id.clone(),
    };
    ask(&state.clients, mark).await?;
    let refresh = if client.grant_types.refresh_token() {
        let issue = Issue {
            client_id: grant.client_id.clone(),
            subject: grant.subject.clone(),
            scope: grant.scope.clone(),
            resource: grant.resource.clone(),
            flow: grant.flow.clone(),
            access_jti: jti,
            access_ttl: access_ttl(state),
        };
        match ask(&state.refresh_tokens, issue).await {
            Ok(token) => Some(token),
            // The code is spent: the client still gets its access token, and signs in again
            // when it expires.
            Err(err) => {
                tracing::warn!(flow = %grant.flow, error = ?err, "no refresh token issued");
                None
            }
        }
    } else {
        None
    };
    tracing::info!(
        flow = %grant.flow,
        client_id = %grant.client_id,
        sub = %grant.subject,
        aud = %grant.resource,
        scope = %grant.scope,
        token = %Secret::new(token.clone()),
        refresh_token = ?refresh,
        "access token issued"
    );
    Ok(token_response(
        state,
        &token,
        &grant.scope,
        refresh.as_ref(),
    ))
}

fn access_ttl(state: &AuthState) -> std::time::Duration {
    std::time::Duration::from_secs(state.config.access_token_ttl_seconds)
}

/// Signs an access token for a grant.
async fn sign_access_token(
    state: &AuthState,
    subject: &str,
    client_id: &str,
    resource: &str,
    scope: &ScopeSet,
    flow: &crate::trace::FlowId,
    jti: String,
) -> Result<String, JsonError> {
    let now = unix_now();
    let claims = AccessTokenClaims {
        iss: state.config.issuer.clone(),
        sub: subject.to_string(),
        aud: resource.to_string(),
        exp: now + state.config.access_token_ttl_seconds,
        iat: now,
        nbf: None,
        jti,
        client_id: client_id.to_string(),
        scope: scope.to_string(),
        flow: Some(flow.to_string()),
    };
    Ok(state.signers.sign(claims).await?)
}

/// The successful token response (OAuth 2.1 section 3.2.3).
fn token_response(
    state: &AuthState,
    access_token: &str,
    scope: &ScopeSet,
    refresh_token: Option<&Secret>,
) -> Response {
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": state.config.access_token_ttl_seconds,
        "scope": scope.to_string(),
    });
    if let Some(refresh) = refresh_token {
        body["refresh_token"] = json!(refresh.expose());
    }
    let mut response = Json(body).into_response();
    no_store(&mut response);
    response
}

/// Revokes, by `jti` until they expire, the access tokens of families that ended.
pub async fn revoke_access_tokens(
    state: &AuthState,
    ended: &EndedFamilies,
) -> Result<(), JsonError> {
    for (jti, ttl) in &ended.access_tokens {
        let revoke = Revoke {
            jti: jti.clone(),
            ttl: *ttl + std::time::Duration::from_secs(60),
        };
        ask(&state.revocations, revoke).await?;
    }
    Ok(())
}

/// `grant_type=refresh_token` (OAuth 2.1 section 4.3).
async fn refresh_token(
    state: &AuthState,
    client: &Client,
    form: &Params,
) -> Result<Response, JsonError> {
    if !client.grant_types.refresh_token() {
        return Err(JsonError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the refresh_token grant",
        ));
    }
    let token = form
        .get("refresh_token")
        .ok_or_else(|| invalid_request("refresh_token is required"))?;
    if token.len() > 512 {
        return Err(JsonError::new(
            ErrorCode::InvalidGrant,
            "the refresh token is invalid, expired or revoked",
        ));
    }
    let scope = match form.get("scope") {
        None => None,
        Some(s) => Some(ScopeSet::parse(s).map_err(|_| {
            JsonError::new(ErrorCode::InvalidScope, "the scope parameter is malformed")
        })?),
    };
    let resource = match form.get("resource") {
        None => None,
        Some(requested) => {
            if resource::validate_shape(requested).is_err() {
                return Err(JsonError::new(
                    ErrorCode::InvalidTarget,
                    "resource must be an absolute URI without a fragment",
                ));
            }
            Some(
                state
                    .config
                    .known_resources
                    .iter()
                    .find(|k| resource::same_resource(k, requested))
                    .cloned()
                    .unwrap_or_else(|| requested.to_string()),
            )
        }
    };
    let jti = uuid::Uuid::new_v4().to_string();
    let refresh = Refresh {
        token: Secret::new(token),
        client_id: client.client_id.to_string(),
        resource,
        scope,
        access_jti: jti.clone(),
        access_ttl: access_ttl(state),
    };
    let refreshed = match ask(&state.refresh_tokens, refresh).await {
        Ok(refreshed) => refreshed,
        Err(AskError::Rejected(RefreshError::Reused(ended))) => {
            revoke_access_tokens(state, &ended).await?;
            return Err(JsonError::new(
                ErrorCode::InvalidGrant,
                "the refresh token is invalid, expired or revoked",
            ));
        }
        Err(AskError::Rejected(err)) => return Err(refresh_error(err)),
        Err(other) => return Err(other.into()),
    };
    let FamilyGrant {
        subject,
        client_id,
        resource,
        flow,
        ..
    } = &refreshed.grant;
    let token = sign_access_token(
        state,
        subject,
        client_id,
        resource,
        &refreshed.scope,
        flow,
        jti,
    )
    .await?;
    tracing::info!(
        flow = %flow,
        client_id = %client_id,
        sub = %subject,
        aud = %resource,
        scope = %refreshed.scope,
        token = %Secret::new(token.clone()),
        refresh_token = %refreshed.refresh_token,
        grace = refreshed.grace,
        "access token refreshed"
    );
    Ok(token_response(
        state,
        &token,
        &refreshed.scope,
        Some(&refreshed.refresh_token),
    ))
}

fn refresh_error(err: RefreshError) -> JsonError {
    match err {
        RefreshError::Unknown | RefreshError::Reused(_) => JsonError::new(
            ErrorCode::InvalidGrant,
            "the refresh token is invalid, expired or revoked",
        ),
        RefreshError::WrongClient => JsonError::new(
            ErrorCode::InvalidGrant,
            "the refresh token was not issued to this client",
        ),
        RefreshError::WrongResource => JsonError::new(
            ErrorCode::InvalidTarget,
            "resource does not match the refresh token",
        ),
        RefreshError::WiderScope => JsonError::new(
            ErrorCode::InvalidScope,
            "the requested scope exceeds the scope originally granted",
        ),
        RefreshError::Full | RefreshError::Store(_) => JsonError::new(
            ErrorCode::TemporarilyUnavailable,
            "the server is busy; retry shortly",
        ),
    }
}

fn redeem_error(err: RedeemError) -> JsonError {
    match err {
        RedeemError::Unknown => {
            JsonError::new(ErrorCode::InvalidGrant, "the code is invalid or expired")
        }
        RedeemError::WrongClient => JsonError::new(
            ErrorCode::InvalidGrant,
            "the code was not issued to this client",
        ),
        RedeemError::WrongRedirectUri => JsonError::new(
            ErrorCode::InvalidGrant,
            "redirect_uri does not match the authorization request",
        ),
        RedeemError::WrongVerifier => JsonError::new(
            ErrorCode::InvalidGrant,
            "code_verifier does not match the code challenge",
        ),
        RedeemError::WrongResource => JsonError::new(
            ErrorCode::InvalidTarget,
            "resource does not match the authorization request",
        ),
        RedeemError::Replayed { .. } => {
            JsonError::new(ErrorCode::InvalidGrant, "the code was already used")
        }
        RedeemError::Full => JsonError::new(
            ErrorCode::TemporarilyUnavailable,
            "the server is busy; retry shortly",
        ),
    }
}
