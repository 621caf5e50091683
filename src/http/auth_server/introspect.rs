//! `POST /introspect`: token introspection (RFC 7662) for confidential clients, such as a
//! resource server that prefers asking to validating. A token is active when this server signed
//! it, it has not expired, and it has not been revoked (a replayed code revokes its token).
//! Anything else, including tokens this server cannot read, is `{"active": false}`.

use super::AuthState;
use super::token::authenticate_client;
use crate::actors::ask;
use crate::actors::revocations::IsRevoked;
use crate::actors::signing_keys::VerifyingKey;
use crate::http::error::{JsonError, no_store};
use crate::oauth::ErrorCode;
use crate::oauth::params::Params;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, Validation, decode};
use serde_json::{Value, json};

pub async fn handler(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, JsonError> {
    if !crate::http::content_type_is(&headers, crate::http::FORM) {
        return Err(JsonError::new(
            ErrorCode::InvalidRequest,
            "the request body must be application/x-www-form-urlencoded",
        ));
    }
    let form = Params::parse(&body)
        .map_err(|_| JsonError::new(ErrorCode::InvalidRequest, "a parameter is repeated"))?;
    let client = authenticate_client(&state, &headers, &form).await?;
    if client.is_public() {
        return Err(JsonError::new(
            ErrorCode::InvalidClient,
            "introspection requires a confidential client",
        ));
    }
    let token = form
        .get("token")
        .ok_or_else(|| JsonError::new(ErrorCode::InvalidRequest, "token is required"))?;
    let mut answer = json!({"active": false});
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[state.config.issuer.as_str()]);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "jti"]);
    validation.leeway = 0;
    // The key by the token's `kid`: any published key, current or retired.
    let kid = (token.len() <= 8192)
        .then(|| jsonwebtoken::decode_header(token).ok())
        .flatten()
        .and_then(|header| header.kid)
        .filter(|kid| kid.len() <= 256);
    let key = match kid {
        Some(kid) => ask(&state.keys, VerifyingKey { kid }).await?,
        None => None,
    };
    if let Some(key) = key
        && let Ok(data) = decode::<Value>(token, &key, &validation)
    {
        let jti = data.claims["jti"].as_str().unwrap_or_default().to_string();
        let revoked = ask(&state.revocations, IsRevoked { jti }).await?;
        if !revoked {
            let c = &data.claims;
            answer = json!({
                "active": true,
                "token_type": "Bearer",
                "scope": c["scope"],
                "client_id": c["client_id"],
                "sub": c["sub"],
                "aud": c["aud"],
                "iss": c["iss"],
                "exp": c["exp"],
                "iat": c["iat"],
                "jti": c["jti"],
            });
        }
    }
    let mut response = Json(answer).into_response();
    no_store(&mut response);
    Ok(response)
}
