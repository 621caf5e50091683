//! `POST /logout`: signing out of the authorization server (PG-1). The form carries the session's
//! CSRF token; the session ends and its cookie is cleared.

use super::flow::{busy, csrf_matches, current_session, forbidden_form, origin_allowed};
use super::state::AuthState;
use crate::actors::ask;
use crate::actors::sessions::Logout;
use crate::oauth::params::Params;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub async fn handler(State(state): State<AuthState>, headers: HeaderMap, body: Bytes) -> Response {
    if !origin_allowed(&state, &headers) {
        return forbidden_form();
    }
    let form = Params::parse_lenient(&body);
    if let Ok(Some((sid, view))) = current_session(&state, &headers).await {
        if !csrf_matches(&view.csrf, form.get("csrf_token")) {
            return forbidden_form();
        }
        if let Err(err) = ask(&state.sessions, Logout { sid }).await {
            return busy(err);
        }
    }
    let mut response = (StatusCode::OK, "Signed out.").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, state.cookie.clear());
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
