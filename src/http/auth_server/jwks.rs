//! `GET /oauth/jwks`: the published signing keys (RFC 7517), from `SigningKeys`.

use super::state::AuthState;
use crate::actors::ask;
use crate::actors::signing_keys::Jwks;
use crate::http::error::JsonError;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

pub async fn handler(State(state): State<AuthState>) -> Result<Response, JsonError> {
    let jwks = ask(&state.keys, Jwks).await?;
    let mut response = Json(jwks.as_ref().clone()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}
