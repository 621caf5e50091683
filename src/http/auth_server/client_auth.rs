//! Client authentication at the machine endpoints (OAuth 2.1 section 2.4.1): the client presents
//! exactly one method (`none`: a public client names itself; `client_secret_basic`;
//! `client_secret_post`; the rules are `oauth/client_credentials.rs`), names a client the registry
//! or a metadata document knows, and proves its secret when it has one. Any failure to
//! authenticate is 401 `invalid_client` (with a `Basic` challenge when Basic was used).
//!
//! [`AuthenticatedClient`] is the extractor `/token` and `/revoke` take: the rate-limited form
//! (`form.rs`) and the client it authenticated. `/introspect` admits the resource server's own
//! credential first, so it reads the form itself and calls [`authenticate`].

use super::client_lookup::{NotFound, find_client};
use super::form::{FormRequest, RateLimitedForm};
use super::rate_limit::SourceAddress;
use super::state::AuthState;
use crate::http::error::JsonError;
use crate::oauth::ErrorCode;
use crate::oauth::client::Client;
use crate::oauth::client_credentials::{self, BasicCredentials};
use crate::oauth::params::{MAX_CLIENT_ID_LEN, Params};
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
