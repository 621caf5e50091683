//! The steps of an authorization shared by `/authorize`, `/login` and `/consent`: reading the
//! browser session, going on once the user is known (remembered consent, or the consent page),
//! issuing the code, and the 302 back to the client with `code`/`error`, `state` and `iss`
//! (RFC 9207).

use super::pages::{error_page, with_page_headers};
use super::state::AuthState;
use crate::actors::codes::{Grant, IssueCode};
use crate::actors::consents::CheckConsent;
use crate::actors::sessions::{
    AuthorizationRequest, Peek, ResolveSession, SessionView, SignedIn, Take,
};
use crate::actors::{AskError, ask, ask_deferred};
use crate::oauth::ErrorCode;
use crate::trace::Secret;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The 503 page for an actor that shed the request.
pub fn busy<E>(_: AskError<E>) -> Response {
    let mut response = error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Server busy",
        "The server is busy. Please try again in a moment.",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The page for a request id that is unknown, expired, used, or from another browser session.
pub fn request_gone() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Request expired",
        "This sign-in request is no longer valid: it expired, was already completed, or was started in another browser. Start again from the application.",
    )
}

/// A 302 to `location` with the page headers.
pub fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert(header::LOCATION, value);
            with_page_headers(response)
        }
        Err(_) => error_page(
            StatusCode::BAD_REQUEST,
            "Invalid redirect",
            "The redirect address cannot be used.",
        ),
    }
}

/// The redirect back to the client: `redirect_uri` with `params`, `state` and `iss` appended to
/// its query (URL-encoded, so no parameter can inject a header or another parameter).
pub fn redirect_to_client(
    state: &AuthState,
    redirect_uri: &str,
    client_state: Option<&str>,
    params: &[(&str, &str)],
) -> Response {
    match client_url(state, redirect_uri, client_state, params) {
        Some(url) => found(&url),
        None => error_page(
            StatusCode::BAD_REQUEST,
            "Invalid redirect",
            "The redirect address cannot be used.",
        ),
    }
}

/// The address of [`redirect_to_client`]; `None` when the redirect URI does not parse.
pub fn client_url(
    state: &AuthState,
    redirect_uri: &str,
    client_state: Option<&str>,
    params: &[(&str, &str)],
) -> Option<String> {
    let mut url = url::Url::parse(redirect_uri).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
        if let Some(s) = client_state {
            query.append_pair("state", s);
        }
        query.append_pair("iss", &state.config.issuer);
    }
    Some(url.into())
}

/// The error redirect of OAuth 2.1 section 4.1.2.1.
pub fn error_redirect(
    state: &AuthState,
    request: &AuthorizationRequest,
    code: ErrorCode,
    description: &str,
) -> Response {
    tracing::info!(client_id = %request.client_id, error = code.as_str(), "authorization refused");
    redirect_to_client(
        state,
        &request.redirect_uri,
        request.state.as_deref(),
        &[("error", code.as_str()), ("error_description", description)],
    )
}

/// Reads the request `request_id` parked in this browser's session and records its flow on the
/// request's span, before anything else is asked, so every line of the page request carries it.
/// `None` for a request of another session, an expired one, or none; the busy page when the
/// sessions cannot answer.
pub async fn enter_request_flow(
    state: &AuthState,
    headers: &HeaderMap,
    request_id: Option<&str>,
) -> Result<Option<AuthorizationRequest>, Response> {
    let (Some(sid), Some(request_id)) = (state.cookie.read(headers), request_id) else {
        return Ok(None);
    };
    let peek = Peek {
        sid,
        request_id: request_id.to_string(),
    };
    let (peeked, line) = ask_deferred(&state.sessions, peek).await;
    if let Ok(Some(request)) = &peeked {
        crate::trace::record_flow(&request.flow);
    }
    drop(line);
    peeked.map_err(busy)
}

/// The session the request's cookie names, if it is live.
pub async fn current_session(
    state: &AuthState,
    headers: &HeaderMap,
) -> Result<Option<(Secret, SessionView)>, Response> {
    let Some(sid) = state.cookie.read(headers) else {
        return Ok(None);
    };
    let view = ask(&state.sessions, ResolveSession { sid: sid.clone() })
        .await
        .map_err(busy)?;
    Ok(view.map(|v| (sid, v)))
}

/// Whether the user's remembered consent covers the request (its scope, resource and exact
/// redirect URI) and the request did not ask for the consent page (`prompt=consent`, which shows
/// the page whatever is remembered: no need to ask); the busy page when consents cannot answer.
pub async fn consent_covers(
    state: &AuthState,
    user: &SignedIn,
    request: &AuthorizationRequest,
) -> Result<bool, Response> {
    if request.prompt_consent {
        return Ok(false);
    }
    let check = CheckConsent {
        subject: user.subject.clone(),
        client_id: request.client_id.clone(),
        scope: request.scope.clone(),
        resource: request.resource.clone(),
        redirect_uri: request.redirect_uri.clone(),
    };
    ask(&state.consents, check).await.map_err(busy)
}

/// Goes on with a parked request once the user is signed in: skips the consent page when a
/// remembered consent covers the request (its scope, resource and exact redirect URI) and the
/// request did not ask for the page (`prompt=consent`), or sends the user to it.
pub async fn proceed(
    state: &AuthState,
    sid: &Secret,
    user: &SignedIn,
    request_id: &str,
) -> Response {
    let peek = Peek {
        sid: sid.clone(),
        request_id: request_id.to_string(),
    };
    let request = match ask(&state.sessions, peek).await {
        Ok(Some(request)) => request,
        Ok(None) => return request_gone(),
        Err(err) => return busy(err),
    };
    let remembered = match consent_covers(state, user, &request).await {
        Ok(remembered) => remembered,
        Err(page) => return page,
    };
    if !remembered {
        return found(&format!(
            "{}?request={request_id}",
            state.config.endpoint("/consent")
        ));
    }
    // Take it out of the session: from here it is answered exactly once.
    let take = Take {
        sid: sid.clone(),
        request_id: request_id.to_string(),
    };
    let request = match ask(&state.sessions, take).await {
        Ok(Some(request)) => request,
        Ok(None) => return request_gone(),
        Err(err) => return busy(err),
    };
    issue_code(state, user, request).await
}

/// Issues the code for an approved request and redirects to the client with it.
pub async fn issue_code(
    state: &AuthState,
    user: &SignedIn,
    request: AuthorizationRequest,
) -> Response {
    let grant = Grant {
        subject: user.subject.clone(),
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        redirect_uri_named: request.redirect_uri_named,
        code_challenge: request.code_challenge.clone(),
        scope: request.scope.clone(),
        resource: request.resource.clone(),
        flow: request.flow.clone(),
    };
    match ask(&state.codes, IssueCode(grant)).await {
        Ok(code) => {
            tracing::info!(client_id = %request.client_id, sub = %user.subject, code = %code, "authorization approved, code issued");
            redirect_to_client(
                state,
                &request.redirect_uri,
                request.state.as_deref(),
                &[("code", code.expose())],
            )
        }
        // The request is already taken: the client must still get an answer (OAuth 2.1
        // section 4.1.2.1), not a page it never sees.
        Err(_) => error_redirect(
            state,
            &request,
            ErrorCode::TemporarilyUnavailable,
            "the server is busy; try again",
        ),
    }
}

/// The `Origin` check of the page forms (PG-1): a form post that names an origin must come from
/// the issuer's own origin. Our pages send `Referrer-Policy: no-referrer`, under which browsers
/// send `Origin: null` even for same-origin posts, so `null` counts as no origin; a post without
/// an origin still needs the session's CSRF token.
pub fn origin_allowed(state: &AuthState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if origin == "null" {
        return true;
    }
    let Ok(issuer) = url::Url::parse(&state.config.issuer) else {
        return false;
    };
    issuer.origin().ascii_serialization() == origin
}

/// Compares a submitted CSRF token with the session's in constant time.
pub fn csrf_matches(expected: &Secret, submitted: Option<&str>) -> bool {
    submitted.is_some_and(|s| {
        subtle::ConstantTimeEq::ct_eq(expected.expose().as_bytes(), s.as_bytes()).into()
    })
}

/// The page for a form post that fails the CSRF or origin check.
pub fn forbidden_form() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Request refused",
        "This form was not submitted from this server's own page, or the page expired. Start again from the application.",
    )
}
