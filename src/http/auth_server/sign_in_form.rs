//! The opening every sign-in form's post shares (`POST /login` with a password, `POST
//! /login/{provider}` for an identity provider): the origin check, the form, the parked request it
//! names (its flow entered on the request's span), the login rate limit, the browser session and
//! the CSRF token. A form that fails any of them is answered here, with the page it gets.

use super::flow::{
    csrf_matches, current_session, enter_request_flow, forbidden_form, origin_allowed, request_gone,
};
use super::rate_limit::{SourceAddress, admit};
use super::state::AuthState;
use crate::actors::sessions::{AuthorizationRequest, SessionView};
use crate::actors::throttle::Endpoint;
use crate::oauth::params::Params;
use crate::trace::Secret;
use axum::http::HeaderMap;
use axum::response::Response;

/// A sign-in form that passed the checks.
pub struct SignInForm {
    /// The fields not taken yet.
    pub form: Params,
    /// The request the form goes on with; `None` for a sign-in for the account page.
    pub request: Option<AuthorizationRequest>,
    /// The request's id (empty for the account page).
    pub request_id: String,
    pub sid: Secret,
    pub view: SessionView,
}

/// Checks a sign-in form's post; the page to answer when a check fails.
pub async fn open(
    state: &AuthState,
    source: SourceAddress,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<SignInForm, Response> {
    if !origin_allowed(state, headers) {
        return Err(forbidden_form());
    }
    let Ok(mut form) = Params::parse(body) else {
        return Err(forbidden_form());
    };
    let parked = enter_request_flow(state, headers, form.get("request")).await?;
    if let Err(limited) = admit(state, Endpoint::Login, source).await {
        return Err(throttled(limited));
    }
    let (sid, view) = current_session(state, headers)
        .await?
        .ok_or_else(request_gone)?;
    if !csrf_matches(&view.csrf, form.get("csrf_token")) {
        return Err(forbidden_form());
    }
    let request_id = form.take("request").unwrap_or_default();
    // A named request must still be parked in this session.
    let request = match (request_id.is_empty(), parked) {
        (true, _) => None,
        (false, Some(request)) => Some(request),
        (false, None) => return Err(request_gone()),
    };
    Ok(SignInForm {
        form,
        request,
        request_id,
        sid,
        view,
    })
}

/// 429 for a throttled sign-in, with `Retry-After`.
pub fn throttled(limited: crate::actors::throttle::Limited) -> Response {
    super::pages::too_many_requests_page(limited, "Too many sign-in attempts.")
}
