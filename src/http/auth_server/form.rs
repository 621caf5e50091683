//! The opening shared by the form-encoded machine endpoints (`/token`, `/revoke`,
//! `/introspect`), as extractors. In order: the body is read (within the route's size limit), the
//! source's rate limit is taken where there is one ([`RateLimitedForm`]: `/token` and `/revoke`
//! share the token endpoint's bucket), the content type must be
//! `application/x-www-form-urlencoded`, and no parameter may appear twice (OAuth 2.1 section
//! 3.2). A refusal is the answer as it stands: 429 with `Retry-After`, or `invalid_request`.
//!
//! A code or refresh token in the form names the flow the request belongs to: it is recorded on
//! the request's span before the client is authenticated, so every line of the request carries
//! it (the rate limit's line is written after, for the same reason).

use super::rate_limit::{SourceAddress, admit_deferred};
use super::state::AuthState;
use crate::actors::codes::FlowOfCode;
use crate::actors::refresh_tokens::FlowOfRefreshToken;
use crate::actors::throttle::Endpoint;
use crate::actors::{Deferred, ask_deferred};
use crate::http::error::{JsonError, too_many_requests};
use crate::oauth::ErrorCode;
use crate::oauth::params::Params;
use crate::trace::Secret;
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
    /// Where the request comes from (for per-source limits).
    pub source: SourceAddress,
}

/// A [`FormRequest`] under the token endpoint's per-source rate limit.
pub struct RateLimitedForm(pub FormRequest);

impl FormRequest {
    async fn read(
        mut request: Request,
        state: &AuthState,
        limit: Option<Endpoint>,
    ) -> Result<Self, Response> {
        let source = request
            .extract_parts_with_state::<SourceAddress, _>(state)
            .await
            .map_err(IntoResponse::into_response)?;
        let limit = limit.map(|endpoint| (endpoint, source));
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let admitted = match limit {
            Some((endpoint, source)) => match admit_deferred(state, endpoint, source).await {
                Ok(line) => Some(line),
                Err(limited) => return Err(too_many_requests(limited)),
            },
            None => None,
        };
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
        let found = enter_flow(state, &params).await;
        drop(admitted);
        drop(found);
        Ok(FormRequest {
            headers,
            params,
            source,
        })
    }
}

/// Records the flow of the form's code, or of its refresh token (as `refresh_token`, or as the
/// `token` of a revocation or an introspection), on the request's span. The lookup's own line is
/// held back until then.
async fn enter_flow(state: &AuthState, params: &Params) -> Option<Deferred> {
    let (flow, line) = if let Some(code) = params.get("code") {
        let msg = FlowOfCode {
            code: Secret::new(code),
        };
        ask_deferred(&state.codes, msg).await
    } else {
        // An access token (a JWT) has no family; its flow is in its claims.
        let token = params
            .get("refresh_token")
            .or_else(|| params.get("token").filter(|t| !t.contains('.')))?;
        let msg = FlowOfRefreshToken {
            token: Secret::new(token),
        };
        ask_deferred(&state.refresh_tokens, msg).await
    };
    if let Ok(Some(flow)) = flow {
        crate::trace::record_flow(&flow);
    }
    Some(line)
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
