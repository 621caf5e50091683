//! OAuth errors as HTTP answers: JSON bodies for the token and registration endpoints, HTML pages
//! for the browser-facing endpoints, and 503 with `Retry-After` when an actor sheds load.

use crate::actors::AskError;
use crate::oauth::ErrorCode;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::borrow::Cow;

/// An error answered as an OAuth JSON body (RFC 6749 section 5.2, RFC 7591 section 3.2.2).
/// `description` is always fixed text: it never echoes input.
#[derive(Debug)]
pub struct JsonError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    /// Set when the client authenticated with HTTP Basic: a 401 then carries
    /// `WWW-Authenticate: Basic` (RFC 6749 section 5.2).
    pub basic_challenge: bool,
}

impl JsonError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        JsonError {
            code,
            description: description.into(),
            basic_challenge: false,
        }
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache`, for every answer that carries or concerns
/// credentials.
pub fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let mut response = (
            status,
            Json(json!({"error": self.code.as_str(), "error_description": self.description})),
        )
            .into_response();
        no_store(&mut response);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.basic_challenge && status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"token\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

impl<E> From<AskError<E>> for JsonError {
    fn from(err: AskError<E>) -> Self {
        match err {
            AskError::Busy(_) | AskError::Unavailable(_) | AskError::Rejected(_) => JsonError::new(
                ErrorCode::TemporarilyUnavailable,
                "the server is busy; retry shortly",
            ),
        }
    }
}

/// 429 with `Retry-After`, as an OAuth JSON error (`temporarily_unavailable`: try again later).
pub fn too_many_requests(limited: crate::actors::throttle::Limited) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({
            "error": ErrorCode::TemporarilyUnavailable.as_str(),
            "error_description": "too many requests from this address; retry later",
        })),
    )
        .into_response();
    no_store(&mut response);
    if let Ok(value) = HeaderValue::from_str(&limited.seconds().to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}
