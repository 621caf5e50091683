//! Client authentication at the machine endpoints (OAuth 2.1 section 2.4.1): the client presents
//! exactly one method (`none`: a public client names itself; `client_secret_basic`;
//! `client_secret_post`; the rules are `oauth/client_credentials.rs`; or `private_key_jwt`, a
//! signed client assertion: `oauth/client_assertion.rs`, each used once through the
//! `ClientAssertions` actor), names a client the registry or a metadata document knows, and
//! proves its secret or key when it has one. Any failure to
//! authenticate is 401 `invalid_client` (with a `Basic` challenge when Basic was used).
//!
//! [`AuthenticatedClient`] is the extractor `/token` and `/revoke` take: the rate-limited form
//! (`form.rs`) and the client it authenticated. `/introspect` admits the resource server's own
//! credential first, so it reads the form itself and calls [`authenticate`].

use super::client_lookup::{NotFound, find_client};
use super::form::{FormRequest, RateLimitedForm};
use super::rate_limit::SourceAddress;
use super::state::AuthState;
use crate::actors::client_assertions::{AssertionUseError, UseAssertion};
use crate::actors::{AskError, ask};
use crate::http::error::JsonError;
use crate::oauth::ErrorCode;
use crate::oauth::client::Client;
use crate::oauth::client_assertion;
use crate::oauth::client_credentials::{self, BasicCredentials};
use crate::oauth::params::{MAX_CLIENT_ID_LEN, Params};
use crate::oauth::time::unix_now;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// A form-encoded request from an authenticated client, under the token endpoint's rate limit.
pub struct AuthenticatedClient {
    pub client: Arc<Client>,
    pub params: Params,
}

impl FromRequest<AuthState> for AuthenticatedClient {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AuthState) -> Result<Self, Response> {
        let RateLimitedForm(FormRequest {
            headers,
            params,
            source,
        }) = RateLimitedForm::from_request(request, state).await?;
        let client = authenticate(state, &headers, &params, source)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(AuthenticatedClient { client, params })
    }
}

/// Client credentials from an `Authorization: Basic` header, if there is one.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<BasicCredentials>, JsonError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || JsonError {
        basic_challenge: true,
        ..JsonError::new(ErrorCode::InvalidClient, "malformed client credentials")
    };
    let value = value.to_str().map_err(|_| malformed())?;
    BasicCredentials::parse(value)
        .map(Some)
        .map_err(|_| malformed())
}

/// Authenticates the client with exactly one method.
pub async fn authenticate(
    state: &AuthState,
    headers: &HeaderMap,
    form: &Params,
    source: SourceAddress,
) -> Result<Arc<Client>, JsonError> {
    if form.get("client_assertion").is_some() || form.get("client_assertion_type").is_some() {
        return assertion_client(state, headers, form, source).await;
    }
    let basic = basic_credentials(headers)?;
    let presented = client_credentials::presented(
        basic.as_ref(),
        form.get("client_id"),
        form.get("client_secret"),
    )
    .map_err(|err| JsonError::new(ErrorCode::InvalidRequest, err.description()))?;
    let invalid_client = || JsonError {
        basic_challenge: presented.basic,
        ..JsonError::new(ErrorCode::InvalidClient, "client authentication failed")
    };
    if presented.client_id.len() > MAX_CLIENT_ID_LEN {
        return Err(invalid_client());
    }
    let client = match find_client(state, presented.client_id, source).await {
        Ok(client) => client,
        Err(NotFound::Busy(err)) => return Err(err.into()),
        Err(NotFound::Unknown | NotFound::Document(_)) => return Err(invalid_client()),
    };
    let authenticated = match presented.secret {
        None => client.is_public(),
        Some(_) if client.is_public() => false,
        // A configured client's argon2 hash: verified on a blocking thread, sharing the
        // password checks' one-per-core limit.
        Some(secret) if client.secret_is_argon2() => {
            let (client, secret) = (Arc::clone(&client), secret.to_string());
            state
                .passwords
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

/// `private_key_jwt`: the client is the one the assertion names, its assertion verifies with a
/// key it registered, and the assertion was not used before (RFC 7523 section 3).
async fn assertion_client(
    state: &AuthState,
    headers: &HeaderMap,
    form: &Params,
    source: SourceAddress,
) -> Result<Arc<Client>, JsonError> {
    let invalid_request =
        |description: &'static str| JsonError::new(ErrorCode::InvalidRequest, description);
    if headers.contains_key(header::AUTHORIZATION) || form.get("client_secret").is_some() {
        return Err(invalid_request(
            "use exactly one client authentication method",
        ));
    }
    if form.get("client_assertion_type") != Some(client_assertion::JWT_BEARER) {
        return Err(invalid_request(
            "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ));
    }
    let assertion = form
        .get("client_assertion")
        .ok_or_else(|| invalid_request("client_assertion is required"))?;
    let refused = |reason: &dyn std::fmt::Display| {
        tracing::info!(reason = %reason, "client assertion refused");
        JsonError::new(ErrorCode::InvalidClient, "client authentication failed")
    };
    let client_id = client_assertion::claimed_client(assertion).map_err(|e| refused(&e))?;
    if client_id.len() > MAX_CLIENT_ID_LEN
        || form.get("client_id").is_some_and(|id| id != client_id)
    {
        return Err(refused(&"client_id differs from the assertion's sub"));
    }
    let client = match find_client(state, &client_id, source).await {
        Ok(client) => client,
        Err(NotFound::Busy(err)) => return Err(err.into()),
        Err(NotFound::Unknown | NotFound::Document(_)) => {
            return Err(refused(&"unknown client"));
        }
    };
    let Some(jwks) = client.public_keys() else {
        return Err(refused(&"the client has no registered keys"));
    };
    // The issuer (also as a URL parser spells an origin: with a `/`) or the token endpoint.
    let issuer = &state.config.issuer;
    let audiences = [
        issuer.clone(),
        format!("{}/", issuer.trim_end_matches('/')),
        state.config.endpoint("/token"),
    ];
    let verified = client_assertion::verify(assertion, &client_id, jwks, &audiences, unix_now())
        .map_err(|e| refused(&e))?;
    let used = UseAssertion {
        client_id: client_id.clone(),
        jti: verified.jti,
        exp: verified.exp,
    };
    match ask(&state.assertions, used).await {
        Ok(()) => Ok(client),
        Err(AskError::Rejected(AssertionUseError::Replayed)) => {
            Err(refused(&AssertionUseError::Replayed))
        }
        Err(AskError::Rejected(AssertionUseError::Full)) => Err(JsonError::new(
            ErrorCode::TemporarilyUnavailable,
            "the server is busy; try again",
        )),
        Err(other) => Err(other.into()),
    }
}
