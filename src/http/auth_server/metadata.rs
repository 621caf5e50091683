//! `GET /.well-known/oauth-authorization-server` (RFC 8414) and
//! `GET /.well-known/openid-configuration` (OpenID Connect Discovery): one document, served at
//! both, so the two always agree (MD-1). Built once at start from the configuration. Without
//! dynamic registration it names no `registration_endpoint`; `client_id_metadata_document_supported`
//! says whether URL client ids are fetched (CL-3).

use super::state::AuthState;
use crate::oauth::{client_assertion, scope};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub fn document(config: &crate::config::AuthSettings) -> Value {
    let scopes: Vec<&str> = scope::SUPPORTED.iter().map(|(s, _)| *s).collect();
    let mut document = json!({
        "issuer": config.issuer,
        "authorization_endpoint": config.endpoint("/authorize"),
        "token_endpoint": config.endpoint("/token"),
        "registration_endpoint": config.endpoint("/register"),
        "jwks_uri": config.endpoint("/oauth/jwks"),
        "introspection_endpoint": config.endpoint("/introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": client_assertion::SIGNING_ALGORITHMS,
        "revocation_endpoint": config.endpoint("/revoke"),
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_signing_alg_values_supported": client_assertion::SIGNING_ALGORITHMS,
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": client_assertion::SIGNING_ALGORITHMS,
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "resource_indicators_supported": true,
        "client_id_metadata_document_supported": config.cimd.enabled,
    });
    if !config.registration.dynamic
        && let Some(fields) = document.as_object_mut()
    {
        fields.remove("registration_endpoint");
    }
    document
}

pub async fn handler(State(state): State<AuthState>) -> Response {
    let mut response = Json(state.metadata.as_ref().clone()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
