//! `GET|POST /consent`: the consent page (AZ-5): the client's name, each scope with what it
//! allows, the resource and the redirect host, the host of a metadata-document client id, and a
//! warning when the result goes to this computer only (CL-3); Approve issues the code, Deny answers
//! `access_denied`. The parked request is taken out of the session once, so a decision cannot be
//! replayed or applied to another request.

use super::flow::{
    busy, csrf_matches, current_session, enter_request_flow, error_redirect, forbidden_form,
    issue_code, origin_allowed, request_gone,
};
use super::pages::{ConsentPage, cap, error_page, render};
use super::state::AuthState;
use crate::actors::ask;
use crate::actors::consents::GrantConsent;
use crate::actors::sessions::Take;
use crate::oauth::ErrorCode;
use crate::oauth::params::Params;
use crate::oauth::redirect_uri;
use crate::oauth::scope::{self, ScopeSet};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

fn sign_in_first() -> Response {
    error_page(
        StatusCode::UNAUTHORIZED,
        "Sign in required",
        "Sign in before approving access. Start again from the application.",
    )
}

pub async fn show(
    State(state): State<AuthState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse_lenient(query.unwrap_or_default().as_bytes());
    let Some(request_id) = params.get("request") else {
        return request_gone();
    };
    let parked = match enter_request_flow(&state, &headers, Some(request_id)).await {
        Ok(parked) => parked,
        Err(page) => return page,
    };
    let view = match current_session(&state, &headers).await {
        Ok(Some((_, view))) => view,
        Ok(None) => return request_gone(),
        Err(page) => return page,
    };
    let Some(user) = view.user else {
        return sign_in_first();
    };
    let Some(request) = parked else {
        return request_gone();
    };
    let redirect_host = redirect_uri::display_host(&request.redirect_uri);
    let loopback_only = url::Url::parse(&request.redirect_uri)
        .is_ok_and(|u| u.scheme() == "http" && redirect_uri::is_loopback_host(&u));
    let action = state.config.endpoint("/consent");
    let document_host = crate::oauth::client_id_url::is_url_client_id(&request.client_id)
        .then(|| redirect_uri::display_host(&request.client_id));
    let client_initial = request
        .client_name
        .chars()
        .find(|c| c.is_alphanumeric())
        .map_or_else(|| "?".to_string(), |c| c.to_uppercase().to_string());
    render(
        StatusCode::OK,
        &ConsentPage {
            action: &action,
            client_name: &request.client_name,
            user_name: &user.display_name,
            scopes: describe_scopes(&request.scope),
            resource: &request.resource,
            redirect_host: &redirect_host,
            redirect_uri: cap(&request.redirect_uri, redirect_uri::MAX_REDIRECT_URI_LEN),
            loopback_only,
            client_initial,
            document_host,
            csrf_token: view.csrf.expose(),
            request_id,
        },
    )
}

pub async fn submit(State(state): State<AuthState>, headers: HeaderMap, body: Bytes) -> Response {
    if !origin_allowed(&state, &headers) {
        return forbidden_form();
    }
    let Ok(form) = Params::parse(&body) else {
        return forbidden_form();
    };
    // Read only for its flow: the decision takes the request out below, once the form is proven.
    if let Err(page) = enter_request_flow(&state, &headers, form.get("request")).await {
        return page;
    }
    let (sid, view) = match current_session(&state, &headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return request_gone(),
        Err(page) => return page,
    };
    if !csrf_matches(&view.csrf, form.get("csrf_token")) {
        return forbidden_form();
    }
    let Some(user) = view.user else {
        return sign_in_first();
    };
    let approve = match form.get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "Choose Approve or Deny.",
            );
        }
    };
    let take = Take {
        sid,
        request_id: form.get("request").unwrap_or_default().to_string(),
    };
    let request = match ask(&state.sessions, take).await {
        Ok(Some(request)) => request,
        Ok(None) => return request_gone(),
        Err(err) => return busy(err),
    };
    if !approve {
        return error_redirect(
            &state,
            &request,
            ErrorCode::AccessDenied,
            "the user denied the request",
        );
    }
    let grant = GrantConsent {
        subject: user.subject.clone(),
        client_id: request.client_id.clone(),
        scope: request.scope.clone(),
        resource: request.resource.clone(),
        redirect_uri: request.redirect_uri.clone(),
    };
    if ask(&state.consents, grant).await.is_err() {
        return error_redirect(
            &state,
            &request,
            ErrorCode::TemporarilyUnavailable,
            "the server is busy; try again",
        );
    }
    issue_code(&state, &user, request).await
}

/// Scope descriptions for the consent page.
fn describe_scopes(set: &ScopeSet) -> Vec<(&str, &'static str)> {
    set.iter().map(|s| (s, scope::describe(s))).collect()
}
