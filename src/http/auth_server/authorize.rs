//! `GET|POST /authorize`: the authorization endpoint (OAuth 2.1 section 4.1.1, AZ-1..AZ-6).
//!
//! Errors that must never redirect (unknown or missing client, redirect URI that does not match a
//! registered one, or missing when the client has several) get an HTML error page, 400. Every
//! other error goes back to the client's redirect URI, but only once the user has signed in:
//! until then nothing is sent to a redirect URI that no person has vouched for (AZ-5). A valid
//! request is parked in the browser session (with a new flow id) and the user is sent to the
//! login page, or on to consent.

use super::AuthState;
use super::client_lookup::{NotFound, find_client};
use super::flow::{busy, found, proceed};
use super::pages::{cap, error_page};
use crate::actors::ask;
use crate::actors::clients::Client;
use crate::actors::sessions::{AuthorizationRequest, Open, Park};
use crate::oauth::ErrorCode;
use crate::oauth::params::Params;
use crate::oauth::redirect_uri;
use crate::oauth::resource::{self, ResourceError};
use crate::oauth::scope::ScopeSet;
use crate::oauth::{pkce, scope};
use crate::trace::FlowId;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

const MAX_STATE_LEN: usize = 2048;

pub async fn handle_get(
    State(state): State<AuthState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(&state, &headers, query.unwrap_or_default().as_bytes()).await
}

pub async fn handle_post(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !crate::http::content_type_is(&headers, crate::http::FORM) {
        return error_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Invalid request",
            "Authorization requests sent with POST must be form-encoded.",
        );
    }
    authorize(&state, &headers, &body).await
}

fn bad_request(message: &str) -> Response {
    error_page(StatusCode::BAD_REQUEST, "Invalid request", message)
}

/// The part of the request that decides where errors may go: the client and its redirect URI.
async fn client_and_redirect(
    state: &AuthState,
    params: &Params,
) -> Result<(std::sync::Arc<Client>, String), Response> {
    if params.is_repeated("client_id") || params.is_repeated("redirect_uri") {
        return Err(bad_request(
            "The client_id or redirect_uri parameter is repeated.",
        ));
    }
    let Some(client_id) = params.get("client_id") else {
        return Err(bad_request("The request has no client_id."));
    };
    if client_id.len() > 512 {
        return Err(bad_request("The client_id is not valid."));
    }
    let client = match find_client(state, client_id).await {
        Ok(client) => client,
        Err(NotFound::Unknown) => {
            return Err(bad_request(
                "The application is not registered with this server (unknown client_id).",
            ));
        }
        // The document's redirect URIs cannot be trusted: the reason goes on a page (CL-3).
        Err(NotFound::Document(err)) => {
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "Application not recognised",
                &format!(
                    "The application identifies itself with a metadata document URL, which cannot be used: {err}."
                ),
            ));
        }
        Err(NotFound::Busy(err)) => return Err(busy(err)),
    };
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) => {
            if !client
                .redirect_uris
                .iter()
                .any(|registered| redirect_uri::matches(registered, uri))
            {
                return Err(bad_request(
                    "The redirect_uri does not match any redirect URI registered for this application.",
                ));
            }
            uri.to_string()
        }
        None => match &*client.redirect_uris {
            [only] => only.to_string(),
            _ => {
                return Err(bad_request(
                    "The request has no redirect_uri and the application registered several.",
                ));
            }
        },
    };
    Ok((client, redirect_uri))
}

/// Validated parts of a request, or the error to send back to the client.
struct Validated {
    code_challenge: String,
    scope: ScopeSet,
    resource: String,
}

fn validate(
    state: &AuthState,
    client: &Client,
    params: &Params,
) -> Result<Validated, (ErrorCode, &'static str)> {
    if params.repeated().is_some() {
        return Err((ErrorCode::InvalidRequest, "a parameter is repeated"));
    }
    match params.get("response_type") {
        None => return Err((ErrorCode::InvalidRequest, "response_type is required")),
        Some("code") => {}
        Some(_) => {
            return Err((
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
    }
    if params.get("state").is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return Err((ErrorCode::InvalidRequest, "state is too long"));
    }
    let Some(challenge) = params.get("code_challenge") else {
        return Err((
            ErrorCode::InvalidRequest,
            "code_challenge is required (PKCE with S256)",
        ));
    };
    match params.get("code_challenge_method") {
        Some(pkce::S256) => {}
        None => {
            return Err((
                ErrorCode::InvalidRequest,
                "code_challenge_method=S256 is required",
            ));
        }
        Some(_) => {
            return Err((
                ErrorCode::InvalidRequest,
                "only the S256 code_challenge_method is supported",
            ));
        }
    }
    if !pkce::is_valid_s256_challenge(challenge) {
        return Err((
            ErrorCode::InvalidRequest,
            "code_challenge is not a valid S256 challenge",
        ));
    }
    let allowed = match &client.scope {
        Some(registered) => ScopeSet::parse(registered).unwrap_or_default(),
        None => ScopeSet::all_supported(),
    };
    let scope = match params.get("scope") {
        None => allowed.clone(),
        Some(requested) => match ScopeSet::parse_supported(requested) {
            Ok(set) if set.is_empty() => allowed.clone(),
            Ok(set) => set,
            Err(_) => {
                return Err((
                    ErrorCode::InvalidScope,
                    "a requested scope is not supported",
                ));
            }
        },
    };
    if !scope.is_subset(&allowed) {
        return Err((
            ErrorCode::InvalidScope,
            "a requested scope is not allowed for this client",
        ));
    }
    let config = &state.config;
    let resource = resource::resolve(
        params.get("resource"),
        &config.known_resources,
        &config.resource,
    )
    .map_err(|err| {
        (
            ErrorCode::InvalidTarget,
            match err {
                ResourceError::NotAbsolute => "resource must be an absolute URI",
                ResourceError::Fragment => "resource must not contain a fragment",
                ResourceError::Unknown => "resource is not served by this authorization server",
            },
        )
    })?;
    Ok(Validated {
        code_challenge: challenge.to_string(),
        scope,
        resource: resource.to_string(),
    })
}

async fn authorize(state: &AuthState, headers: &HeaderMap, raw: &[u8]) -> Response {
    let params = Params::parse_lenient(raw);
    let (client, redirect_uri) = match client_and_redirect(state, &params).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let flow = FlowId::mint();
    let validated = validate(state, &client, &params);
    let (code_challenge, scope, resource, error) = match validated {
        Ok(v) => (v.code_challenge, v.scope, v.resource, None),
        Err(err) => (String::new(), ScopeSet::default(), String::new(), Some(err)),
    };
    tracing::info!(
        flow = %flow,
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
        state: params
            .get("state")
            .filter(|s| s.len() <= MAX_STATE_LEN)
            .map(str::to_string),
        code_challenge,
        scope,
        resource,
        flow,
        error,
    };

    // The browser session: the existing one, or a new anonymous one.
    let existing = match super::flow::current_session(state, headers).await {
        Ok(existing) => existing,
        Err(page) => return page,
    };
    let (sid, user, set_cookie) = match existing {
        Some((sid, view)) => (sid, view.user, None),
        None => match ask(&state.sessions, Open).await {
            Ok(opened) => {
                let cookie = state
                    .cookie
                    .set(&opened.sid, state.config.session_ttl_seconds);
                (opened.sid, None, Some(cookie))
            }
            Err(err) => return busy(err),
        },
    };
    let park = Park {
        sid: sid.clone(),
        request,
    };
    let request_id = match ask(&state.sessions, park).await {
        Ok(id) => id,
        Err(err) => return busy(err),
    };
    let mut response = match user {
        Some(user) => proceed(state, &sid, &user, &request_id).await,
        None => found(&format!(
            "{}?request={request_id}",
            state.config.endpoint("/login")
        )),
    };
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Scope descriptions for the consent page.
pub fn describe_scopes(set: &ScopeSet) -> Vec<(&str, &'static str)> {
    set.iter().map(|s| (s, scope::describe(s))).collect()
}
