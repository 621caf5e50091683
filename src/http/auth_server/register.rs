//! `POST /register`: dynamic client registration (RFC 7591, CL-1, CL-2). JSON in and out; the
//! server makes the client id (and the secret of a confidential client); a client that asks for
//! `none` is public and gets no secret. Redirect URIs follow `oauth::redirect_uri`. Client-supplied
//! ids, secrets and timestamps are ignored. A refused request leaves nothing behind: the registry
//! is only asked once the whole request is valid. The metadata rules (including
//! `application_type`, returned in the answer) are `oauth::client_metadata`'s. With
//! `--no-dynamic-registration` every request is refused; a `client_credentials` client is registered
//! only with `--dynamic-machine-clients` (otherwise it comes from the clients file).

use super::rate_limit::SourceAddress;
use super::state::AuthState;
use crate::actors::clients::{Register, RegisterError};
use crate::actors::throttle::Endpoint;
use crate::actors::{AskError, ask};
use crate::http::error::{JsonError, no_store, too_many_requests};
use crate::oauth::ErrorCode;
use crate::oauth::client::{NewClient, RESPONSE_TYPES};
use crate::oauth::client_metadata::{self, Source};
use crate::oauth::strict_json::{self, StrictJsonError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

fn metadata_error(description: &'static str) -> JsonError {
    JsonError::new(ErrorCode::InvalidClientMetadata, description)
}

/// Validates the registration request into the metadata the registry stores
/// (`oauth::client_metadata`, shared with Client ID Metadata Documents).
pub fn validate(body: &Value, extra_schemes: &[String]) -> Result<NewClient, JsonError> {
    client_metadata::validate(body, extra_schemes, Source::Registration)
        .map_err(|err| JsonError::new(err.code, err.description))
}

pub async fn handler(
    State(state): State<AuthState>,
    source: SourceAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, JsonError> {
    if let Err(limited) = super::rate_limit::admit(&state, Endpoint::Register, source).await {
        return Ok(too_many_requests(limited));
    }
    if !crate::http::content_type_is(&headers, "application/json") {
        return Err(metadata_error("the request body must be application/json"));
    }
    let body: Value = strict_json::parse(&body).map_err(|err| match err {
        StrictJsonError::Malformed => metadata_error("the request body is not valid JSON"),
        StrictJsonError::RepeatedKey => {
            metadata_error("an object in the request body repeats a key")
        }
    })?;
    if !state.config.registration.dynamic {
        // An RFC 7591 section 3.2.2 error (400): the server refuses every registration, and its
        // metadata names no registration endpoint; clients are configured instead.
        return Err(metadata_error(
            "dynamic client registration is turned off on this server; use a pre-registered client or a client ID metadata document",
        ));
    }
    let new_client = validate(&body, &state.config.registration.extra_redirect_schemes)?;
    if new_client.grant_types.client_credentials() && !state.config.registration.machine_clients {
        // A machine client gets tokens with no user signing in: open registration of them would
        // let anyone call the tools. The operator configures them, or opens this on purpose.
        return Err(metadata_error(
            "client_credentials clients are not registered dynamically on this server; the operator configures them (AUTH_SERVER_CLIENTS_FILE)",
        ));
    }
    let registered = match ask(&state.clients, Register(new_client)).await {
        Ok(r) => r,
        Err(AskError::Rejected(RegisterError::Full)) => {
            return Err(JsonError::new(
                ErrorCode::TemporarilyUnavailable,
                "the client registry is full; try again later",
            ));
        }
        Err(AskError::Rejected(RegisterError::Busy)) => {
            return Err(JsonError::new(
                ErrorCode::TemporarilyUnavailable,
                "too many registrations at once; try again later",
            ));
        }
        Err(other) => return Err(other.into()),
    };
    let client = &registered.client;
    let mut answer = json!({
        "client_id": &*client.client_id,
        "client_id_issued_at": client.issued_at,
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grant_types.names(),
        "response_types": if client.grant_types.authorization_code() { &RESPONSE_TYPES[..] } else { &[] },
        "token_endpoint_auth_method": client.token_endpoint_auth_method.as_str(),
        "application_type": client.application_type.as_str(),
    });
    if let Some(name) = &client.client_name {
        answer["client_name"] = json!(name);
    }
    if let Some(scope) = &client.scope {
        answer["scope"] = json!(scope);
    }
    if let Some(uri) = &client.client_uri {
        answer["client_uri"] = json!(uri);
    }
    if let Some(jwks) = client.public_keys() {
        answer["jwks"] = serde_json::from_str(jwks).unwrap_or_default();
    }
    if let Some(secret) = &registered.secret {
        answer["client_secret"] = json!(secret.expose());
        answer["client_secret_expires_at"] = json!(0);
    }
    let mut response = (StatusCode::CREATED, Json(answer)).into_response();
    no_store(&mut response);
    Ok(response)
}
