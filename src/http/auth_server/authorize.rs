//! `GET|POST /authorize`: the authorization endpoint (OAuth 2.1 section 4.1.1, AZ-1..AZ-6).
//!
//! Errors that must never redirect (unknown or missing client, redirect URI that does not match a
//! registered one, or missing when the client has several) get an HTML error page, 400. Every
//! other error goes back to the client's redirect URI at once only when the browser's signed-in
//! user has approved that client with that exact redirect URI; otherwise it is an error page,
//! 400, with a link the user may follow to return the error to the application. Anyone can
//! register a client or publish a metadata document, so without that rule this endpoint would
//! send a signed-in browser anywhere (AZ-5, RFC 9700 section 4.11.2). A valid request is parked
//! in the browser session (with a new flow id) and the user is sent to the login page, or on to
//! consent. Each source is rate limited (`AUTH_SERVER_RATE_AUTHORIZE_PER_MINUTE`)
//! before anything else happens: 429 with `Retry-After`.

use super::client_lookup::{NotFound, find_client};
use super::flow::{
    busy, client_url, consent_covers, current_session, error_redirect, found, issue_code,
};
use super::pages::{BackLink, cap, error_page, error_page_with_return, too_many_requests_page};
use super::rate_limit::{SourceAddress, admit};
use super::state::AuthState;
use crate::actors::client_metadata::DocumentError;
use crate::actors::consents::ApprovedRedirect;
use crate::actors::sessions::{AuthorizationRequest, Open, Park};
use crate::actors::throttle::Endpoint;
use crate::actors::{AskError, ask};
use crate::oauth::ErrorCode;
use crate::oauth::authorization_request::{self, MAX_STATE_LEN};
use crate::oauth::client::Client;
use crate::oauth::params::Params;
use crate::oauth::scope::ScopeSet;
use crate::trace::FlowId;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

pub async fn handle_get(
    State(state): State<AuthState>,
    source: SourceAddress,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let flow = start_flow();
    if let Err(limited) = admit(&state, Endpoint::Authorize, source).await {
        return too_many_requests_page(limited, TOO_MANY);
    }
    let raw = query.unwrap_or_default();
    authorize(&state, &headers, raw.as_bytes(), flow, source).await
}

/// A flow starts with its authorization request: every line of this request, and of the flow's
/// later ones, carries its id.
fn start_flow() -> FlowId {
    let flow = FlowId::mint();
    crate::trace::record_flow(&flow);
    flow
}

pub async fn handle_post(
    State(state): State<AuthState>,
    source: SourceAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let flow = start_flow();
    if let Err(limited) = admit(&state, Endpoint::Authorize, source).await {
        return too_many_requests_page(limited, TOO_MANY);
    }
    if !crate::http::content_type_is(&headers, crate::http::FORM) {
        return error_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Invalid request",
            "Authorization requests sent with POST must be form-encoded.",
        );
    }
    authorize(&state, &headers, &body, flow, source).await
}

/// What a rate-limited source is told: each authorization request opens or reads a browser
/// session, so a flood from one source is cut off before it costs anything.
const TOO_MANY: &str = "Too many authorization requests from your network.";

fn bad_request(message: &str) -> Response {
    error_page(StatusCode::BAD_REQUEST, "Invalid request", message)
}

/// The part of the request that decides where errors may go: the client and its redirect URI.
async fn client_and_redirect(
    state: &AuthState,
    params: &Params,
    source: SourceAddress,
) -> Result<(std::sync::Arc<Client>, String), Response> {
    let client_id =
        authorization_request::client_id(params).map_err(|err| bad_request(err.message()))?;
    let client = match find_client(state, client_id, source).await {
        Ok(client) => client,
        Err(NotFound::Unknown) => {
            return Err(bad_request(
                "The application is not registered with this server (unknown client_id).",
            ));
        }
        // Too many documents being fetched at once: busy, as any shed request.
        Err(NotFound::Document(DocumentError::Busy)) => {
            return Err(busy(AskError::<()>::Busy("ClientMetadataDocuments")));
        }
        // The document's redirect URIs cannot be trusted: the reason goes on a page (CL-3), as
        // far as it reveals nothing about what the server can reach; the trace has all of it.
        Err(NotFound::Document(err)) => {
            tracing::info!(client_id, reason = %err, "client metadata document refused");
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "Application not recognised",
                &format!(
                    "The application identifies itself with a metadata document URL, which cannot be used: {}.",
                    err.shown()
                ),
            ));
        }
        Err(NotFound::Busy(err)) => return Err(busy(err)),
    };
    let redirect_uri = authorization_request::redirect_uri(params, &client.redirect_uris[..])
        .map_err(|err| bad_request(err.message()))?
        .to_string();
    Ok((client, redirect_uri))
}

async fn authorize(
    state: &AuthState,
    headers: &HeaderMap,
    raw: &[u8],
    flow: FlowId,
    source: SourceAddress,
) -> Response {
    let params = Params::parse_lenient(raw);
    let (client, redirect_uri) = match client_and_redirect(state, &params, source).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let config = &state.config;
    let validated = authorization_request::validate(
        &params,
        client.scope.as_deref(),
        &config.known_resources,
        &config.resource,
    );
    let (code_challenge, scope, resource, error) = match validated {
        Ok(v) => (v.code_challenge, v.scope, v.resource, None),
        Err(err) => (
            String::new(),
            ScopeSet::default(),
            String::new(),
            Some((err.code, err.description)),
        ),
    };
    tracing::info!(
        client_id = %client.client_id,
        scope = %scope,
        resource = %resource,
        error = error.map(|(code, _)| code.as_str()),
        "authorization request"
    );
    let request = AuthorizationRequest {
        client_id: client.client_id.to_string(),
        client_name: cap(client.display_name(), 80),
        redirect_uri,
        redirect_uri_named: params.get("redirect_uri").is_some(),
        // A repeated `state` is refused (the request is `invalid_request`) and neither copy is
        // echoed: the client could not tell which one it sent (RFC 6749 section 3.1).
        state: params
            .get("state")
            .filter(|s| s.len() <= MAX_STATE_LEN && !params.is_repeated("state"))
            .map(str::to_string),
        code_challenge,
        scope,
        resource,
        prompt_consent: params
            .get("prompt")
            .is_some_and(|p| p.split(' ').any(|value| value == "consent")),
        flow,
    };
    if let Some((code, description)) = error {
        return refuse(state, headers, &request, code, description).await;
    }

    // The browser session: the existing one, or a new anonymous one.
    let existing = match current_session(state, headers).await {
        Ok(existing) => existing,
        Err(page) => return page,
    };
    let (sid, user, set_cookie) = match existing {
        Some((sid, view)) => (sid, view.user, None),
        None => match ask(&state.sessions, Open).await {
            Ok(opened) => {
                // An anonymous session lives as long as a pending request; sign-in opens one
                // of the full lifetime.
                let sessions = &state.config.sessions;
                let ttl = sessions.pending_request_ttl.min(sessions.ttl);
                let cookie = state.cookie.set(&opened.sid, ttl.as_secs());
                (opened.sid, None, Some(cookie))
            }
            Err(err) => return busy(err),
        },
    };
    metrics::counter!("mcp_oauth_flows_total", "event" => "started").increment(1);
    // A signed-in user whose remembered consent covers the request goes back to the client with
    // a code at once: no later page needs the request, so it is not parked.
    if let Some(user) = &user {
        match consent_covers(state, user, &request).await {
            Ok(true) => return issue_code(state, user, request).await,
            Ok(false) => {}
            Err(page) => return page,
        }
    }
    let park = Park { sid, request };
    let request_id = match ask(&state.sessions, park).await {
        Ok(id) => id,
        Err(err) => return busy(err),
    };
    // Signed in, the consent page (the consent did not cover the request); else the login page.
    let page = if user.is_some() { "/consent" } else { "/login" };
    let mut response = found(&format!(
        "{}?request={request_id}",
        state.config.endpoint(page)
    ));
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Answers an invalid request: a redirect with the error when the signed-in user approved this
/// client with this redirect URI, otherwise a page that leaves the choice to the user.
async fn refuse(
    state: &AuthState,
    headers: &HeaderMap,
    request: &AuthorizationRequest,
    code: ErrorCode,
    description: &str,
) -> Response {
    let user = match current_session(state, headers).await {
        Ok(session) => session.and_then(|(_, view)| view.user),
        Err(page) => return page,
    };
    if let Some(user) = user {
        let approved = ApprovedRedirect {
            subject: user.subject,
            client_id: request.client_id.clone(),
            redirect_uri: request.redirect_uri.clone(),
        };
        match ask(&state.consents, approved).await {
            Ok(true) => return error_redirect(state, request, code, description),
            Ok(false) => {}
            Err(err) => return busy(err),
        }
    }
    tracing::info!(client_id = %request.client_id, error = code.as_str(), "authorization refused on a page: redirect URI not approved by a signed-in user");
    let params = [("error", code.as_str()), ("error_description", description)];
    let message = format!(
        "{} sent a request that cannot be completed: {description} ({}).",
        request.client_name,
        code.as_str()
    );
    match client_url(
        state,
        &request.redirect_uri,
        request.state.as_deref(),
        &params,
    ) {
        Some(href) => error_page_with_return(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            &message,
            BackLink {
                href,
                shown: cap(&request.redirect_uri, 200),
            },
        ),
        None => bad_request(&message),
    }
}
