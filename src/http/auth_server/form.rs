//! The opening shared by the form-encoded machine endpoints (`/token`, `/revoke`,
//! `/introspect`), as extractors. In order: the body is read (within the route's size limit), the
//! source's rate limit is taken where there is one ([`RateLimitedForm`]: `/token` and `/revoke`
//! share the token endpoint's bucket), the content type must be
//! `application/x-www-form-urlencoded`, and no parameter may appear twice (OAuth 2.1 section
//! 3.2). A refusal is the answer as it stands: 429 with `Retry-After`, or `invalid_request`.

use super::rate_limit::{SourceAddress, admit};
use super::state::AuthState;
use crate::actors::throttle::Endpoint;
use crate::http::error::{JsonError, too_many_requests};
use crate::oauth::ErrorCode;
use crate::oauth::params::Params;
use axum::RequestExt;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

/// A form-encoded request to a machine endpoint without a rate limit of its own: its headers (for
/// the credentials they carry) and its parameters.
pub struct FormRequest {
    pub headers: HeaderMap,
    pub params: Params,
}

/// A [`FormRequest`] under the token endpoint's per-source rate limit.
pub struct RateLimitedForm(pub FormRequest);

impl FormRequest {
    async fn read(
        mut request: Request,
        state: &AuthState,
        limit: Option<Endpoint>,
    ) -> Result<Self, Response> {
        let limit = match limit {
            Some(endpoint) => {
                let source = request
                    .extract_parts_with_state::<SourceAddress, _>(state)
                    .await
                    .map_err(IntoResponse::into_response)?;
                Some((endpoint, source))
            }
            None => None,
        };
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if let Some((endpoint, source)) = limit
            && let Err(limited) = admit(state, endpoint, source).await
        {
            return Err(too_many_requests(limited));
        }
        let invalid_request =
            |description| JsonError::new(ErrorCode::InvalidRequest, description).into_response();
        if !crate::http::content_type_is(&headers, crate::http::FORM) {
            return Err(invalid_request(
                "the request body must be application/x-www-form-urlencoded",
            ));
        }
        // One resource per token (RFC 8707 section 2): asking for several is `invalid_target`.
        let params = Params::parse(&body).map_err(|repeated| match repeated.0.as_str() {
            "resource" => JsonError::new(
                ErrorCode::InvalidTarget,
                "only one resource may be requested",
            )
            .into_response(),
            _ => invalid_request("a parameter is repeated"),
        })?;
        Ok(FormRequest { headers, params })
    }
}

impl FromRequest<AuthState> for FormRequest {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AuthState) -> Result<Self, Response> {
        FormRequest::read(request, state, None).await
    }
}

impl FromRequest<AuthState> for RateLimitedForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AuthState) -> Result<Self, Response> {
        FormRequest::read(request, state, Some(Endpoint::Token))
            .await
            .map(RateLimitedForm)
    }
}
