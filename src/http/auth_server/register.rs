//! `POST /register`: dynamic client registration (RFC 7591, CL-1, CL-2). JSON in and out; the
//! server makes the client id (and the secret of a confidential client); a client that asks for
//! `none` is public and gets no secret. Redirect URIs follow `oauth::redirect_uri`. Client-supplied
//! ids, secrets and timestamps are ignored. A refused request leaves nothing behind: the registry
//! is only asked once the whole request is valid.

use super::AuthState;
use crate::actors::clients::{NewClient, Register, RegisterError, TokenEndpointAuthMethod};
use crate::actors::throttle::Endpoint;
use crate::actors::{AskError, ask};
use crate::http::error::{JsonError, no_store, too_many_requests};
use crate::oauth::ErrorCode;
use crate::oauth::redirect_uri;
use crate::oauth::scope::ScopeSet;
use axum::Json;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::net::SocketAddr;

const MAX_REDIRECT_URIS: usize = 20;
const MAX_NAME_CHARS: usize = 200;

fn metadata_error(description: &'static str) -> JsonError {
    JsonError::new(ErrorCode::InvalidClientMetadata, description)
}

fn string_list(
    body: &Map<String, Value>,
    field: &str,
    default: &[&str],
) -> Result<Vec<String>, JsonError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(default.iter().map(|s| s.to_string()).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| metadata_error("list fields must contain strings"))
            })
            .collect(),
        Some(_) => Err(metadata_error("list fields must be JSON arrays")),
    }
}

fn optional_string(body: &Map<String, Value>, field: &str) -> Result<Option<String>, JsonError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(metadata_error("string fields must be JSON strings")),
    }
}

/// Validates the registration request into the metadata the registry stores.
pub fn validate(body: &Value, extra_schemes: &[String]) -> Result<NewClient, JsonError> {
    let Some(body) = body.as_object() else {
        return Err(metadata_error("the request body must be a JSON object"));
    };
    let redirect_uris = string_list(body, "redirect_uris", &[])?;
    if redirect_uris.is_empty() {
        return Err(JsonError::new(
            ErrorCode::InvalidRedirectUri,
            "at least one redirect URI is required",
        ));
    }
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(JsonError::new(
            ErrorCode::InvalidRedirectUri,
            "too many redirect URIs",
        ));
    }
    for uri in &redirect_uris {
        if let Err(err) = redirect_uri::validate_for_registration(uri, extra_schemes) {
            return Err(JsonError::new(
                ErrorCode::InvalidRedirectUri,
                err.to_string(),
            ));
        }
    }
    let method = match optional_string(body, "token_endpoint_auth_method")? {
        None => TokenEndpointAuthMethod::None,
        Some(m) => TokenEndpointAuthMethod::parse(&m)
            .ok_or_else(|| metadata_error("unsupported token_endpoint_auth_method"))?,
    };
    // Refresh tokens by default: MCP clients stay connected for days (OAuth 2.1 section 4.3).
    let grant_types = string_list(
        body,
        "grant_types",
        &["authorization_code", "refresh_token"],
    )?;
    if grant_types.is_empty()
        || grant_types
            .iter()
            .any(|g| g != "authorization_code" && g != "refresh_token")
    {
        return Err(metadata_error(
            "grant_types may contain only authorization_code and refresh_token",
        ));
    }
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(metadata_error(
            "grant_types must include authorization_code",
        ));
    }
    let response_types = string_list(body, "response_types", &["code"])?;
    if response_types != ["code"] {
        return Err(metadata_error("response_types must be [\"code\"]"));
    }
    let scope = match optional_string(body, "scope")? {
        None => None,
        Some(s) => {
            let set = ScopeSet::parse_supported(&s)
                .map_err(|_| metadata_error("scope contains an unsupported scope"))?;
            (!set.is_empty()).then(|| set.to_string())
        }
    };
    let client_name = match optional_string(body, "client_name")? {
        Some(name) if name.chars().count() > MAX_NAME_CHARS => {
            return Err(metadata_error("client_name is too long"));
        }
        Some(name) if name.chars().any(char::is_control) => {
            return Err(metadata_error("client_name contains control characters"));
        }
        Some(name) if name.trim().is_empty() => None,
        other => other,
    };
    let client_uri = match optional_string(body, "client_uri")? {
        Some(uri) => {
            let ok = url::Url::parse(&uri)
                .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && uri.len() <= 2000);
            if !ok {
                return Err(metadata_error("client_uri must be an http(s) URL"));
            }
            Some(uri)
        }
        None => None,
    };
    Ok(NewClient {
        client_name,
        redirect_uris,
        grant_types,
        response_types,
        token_endpoint_auth_method: method,
        scope,
        client_uri,
    })
}

pub async fn handler(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, JsonError> {
    if let Err(limited) = super::admit(&state, Endpoint::Register, peer).await {
        return Ok(too_many_requests(limited));
    }
    if !crate::http::content_type_is(&headers, "application/json") {
        return Err(metadata_error("the request body must be application/json"));
    }
    let body: Value = serde_json::from_slice(&body)
        .map_err(|_| metadata_error("the request body is not valid JSON"))?;
    let new_client = validate(&body, &state.config.extra_redirect_schemes)?;
    let registered = match ask(&state.clients, Register(new_client)).await {
        Ok(r) => r,
        Err(AskError::Rejected(RegisterError::Full)) => {
            return Err(JsonError::new(
                ErrorCode::TemporarilyUnavailable,
                "the client registry is full; try again later",
            ));
        }
        Err(other) => return Err(other.into()),
    };
    let client = &registered.client;
    let mut answer = json!({
        "client_id": client.client_id,
        "client_id_issued_at": client.issued_at,
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grant_types,
        "response_types": client.response_types,
        "token_endpoint_auth_method": client.token_endpoint_auth_method.as_str(),
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
    if let Some(secret) = &registered.secret {
        answer["client_secret"] = json!(secret.expose());
        answer["client_secret_expires_at"] = json!(0);
    }
    let mut response = (StatusCode::CREATED, Json(answer)).into_response();
    no_store(&mut response);
    Ok(response)
}
