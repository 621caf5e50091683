//! `GET|POST /login`: signing in to the authorization server (PG-1, PG-3).
//! The form carries the session's CSRF token and the parked request's id; a successful login
//! replaces the session id and goes on with the request. Without a request (`/login` alone, where
//! `/account` sends a browser that is not signed in) the sign-in leads to the account page; a
//! browser without a session gets an anonymous one first, under `/authorize`'s per-source rate
//! limit.

use super::flow::{busy, current_session, enter_request_flow, found, proceed, request_gone};
use super::pages::{LoginPage, render};
use super::rate_limit::{SourceAddress, admit};
use super::sign_in_form::{SignInForm, throttled};
use super::state::AuthState;
use crate::actors::sessions::{Login, Open, SignedIn};
use crate::actors::throttle::{Endpoint, LoginAllowed, LoginSucceeded};
use crate::actors::users::{FindUser, UsersAreDemo};
use crate::actors::{AskError, ask};
use crate::oauth::params::Params;
use crate::trace::{TypedUserName, keyed_fingerprint};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

/// What the login page says the user signs in to when there is no authorization request.
const ACCOUNT: &str = "your account";

pub async fn show(
    State(state): State<AuthState>,
    source: SourceAddress,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse_lenient(query.unwrap_or_default().as_bytes());
    let Some(request_id) = params.get("request") else {
        return account_sign_in(&state, source, &headers).await;
    };
    let parked = match enter_request_flow(&state, &headers, Some(request_id)).await {
        Ok(parked) => parked,
        Err(page) => return page,
    };
    let (sid, view) = match current_session(&state, &headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return request_gone(),
        Err(page) => return page,
    };
    if let Some(user) = &view.user {
        return proceed(&state, &sid, user, request_id).await;
    }
    let Some(request) = parked else {
        return request_gone();
    };
    login_page(
        &state,
        &request.client_name,
        view.csrf.expose(),
        request_id,
        "",
        None,
        StatusCode::OK,
    )
    .await
}

/// The sign-in page for the account page: a session to hold the form's CSRF token (a new
/// anonymous one if need be), or the account page itself when already signed in.
async fn account_sign_in(
    state: &AuthState,
    source: SourceAddress,
    headers: &HeaderMap,
) -> Response {
    let csrf = match current_session(state, headers).await {
        Ok(Some((_, view))) if view.user.is_some() => {
            return found(&state.config.endpoint("/account"));
        }
        Ok(Some((_, view))) => view.csrf,
        Ok(None) => {
            if let Err(limited) = admit(state, Endpoint::Authorize, source).await {
                return throttled(limited);
            }
            let opened = match ask(&state.sessions, Open).await {
                Ok(opened) => opened,
                Err(err) => return busy(err),
            };
            let sessions = &state.config.sessions;
            let ttl = sessions.pending_request_ttl.min(sessions.ttl);
            let mut page = login_page(
                state,
                ACCOUNT,
                opened.csrf.expose(),
                "",
                "",
                None,
                StatusCode::OK,
            )
            .await;
            page.headers_mut().append(
                header::SET_COOKIE,
                state.cookie.set(&opened.sid, ttl.as_secs()),
            );
            return page;
        }
        Err(page) => return page,
    };
    login_page(state, ACCOUNT, csrf.expose(), "", "", None, StatusCode::OK).await
}

async fn login_page(
    state: &AuthState,
    client_name: &str,
    csrf: &str,
    request_id: &str,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let action = state.config.endpoint("/login");
    // The demo users' passwords are named only while they are the users (an unanswered ask:
    // not named).
    let password_sign_in = state.sign_in.password_sign_in;
    let show_demo_hint = password_sign_in && ask(&state.users, UsersAreDemo).await.unwrap_or(false);
    let providers = state
        .sign_in
        .providers
        .iter()
        .map(|p| {
            (
                state.config.endpoint(&format!("/login/{}", p.id)),
                p.name.as_str(),
            )
        })
        .collect();
    render(
        status,
        &LoginPage {
            action: &action,
            client_name,
            csrf_token: csrf,
            request_id,
            username,
            error,
            show_demo_hint,
            password_sign_in,
            providers,
        },
    )
}

pub async fn submit(
    State(state): State<AuthState>,
    source: SourceAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.sign_in.password_sign_in {
        return super::pages::error_page(
            StatusCode::FORBIDDEN,
            "Password sign-in is off",
            "This server signs users in through an identity provider only. Start again from the application.",
        );
    }
    let opened = match super::sign_in_form::open(&state, source, &headers, &body).await {
        Ok(opened) => opened,
        Err(page) => return page,
    };
    let SignInForm {
        mut form,
        request,
        request_id,
        sid,
        view,
    } = opened;
    let username = form.take("username").unwrap_or_default();
    let password = form.take("password").unwrap_or_default();
    let client_name = request.as_ref().map_or(ACCOUNT, |r| r.client_name.as_str());
    let username = crate::http::auth_server::pages::cap(&username, 128);
    // Throttled accounts and sources are refused before any password is checked (PG-3).
    let allowed = LoginAllowed {
        username: TypedUserName::new(username.as_str()),
        source: source.0,
    };
    if let Err(AskError::Rejected(limited)) = ask(&state.throttle, allowed).await {
        metrics::counter!("mcp_oauth_logins_total", "outcome" => "locked").increment(1);
        tracing::info!(user = %keyed_fingerprint(&username), source = %source.0, "login throttled");
        return throttled(limited);
    }
    // A name in an identity provider's namespace (`<id>:…`) is that provider's user: never a
    // password user's, whatever the users file holds.
    let stored = if state.sign_in.owns_subject(&username) {
        None
    } else {
        let find = FindUser {
            username: TypedUserName::new(username.as_str()),
        };
        match ask(&state.users, find).await {
            Ok(found) => found,
            Err(err) => return busy(err),
        }
    };
    let checked = match state.passwords.authenticate(stored, &password).await {
        Ok(checked) => checked,
        Err(_) => return busy(AskError::<()>::Busy("PasswordChecks")),
    };
    // The check took a while: a user disabled meanwhile (`mcp-oauth admin`) gets no session.
    let checked = match checked {
        Some(user) => {
            let again = FindUser {
                username: TypedUserName::new(user.username.as_str()),
            };
            match ask(&state.users, again).await {
                Ok(current) => current.filter(|u| !u.disabled),
                Err(err) => return busy(err),
            }
        }
        None => None,
    };
    let Some(user) = checked else {
        metrics::counter!("mcp_oauth_logins_total", "outcome" => "failed").increment(1);
        tracing::info!(user = %keyed_fingerprint(&username), "login failed");
        return login_page(
            &state,
            client_name,
            view.csrf.expose(),
            &request_id,
            &username,
            Some("The username or password is incorrect."),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    };
    let succeeded = LoginSucceeded {
        username: TypedUserName::new(user.username.as_str()),
        source: source.0,
    };
    let _ = ask(&state.throttle, succeeded).await;
    let signed_in = SignedIn {
        subject: user.username.clone(),
        display_name: user.display_name.clone(),
    };
    let login = Login {
        sid: Some(sid),
        user: signed_in.clone(),
    };
    let opened = match ask(&state.sessions, login).await {
        Ok(opened) => opened,
        Err(err) => return busy(err),
    };
    metrics::counter!("mcp_oauth_logins_total", "outcome" => "succeeded").increment(1);
    tracing::info!(sub = %signed_in.subject, "login succeeded, session renewed");
    let mut response = match request {
        Some(_) => proceed(&state, &opened.sid, &signed_in, &request_id).await,
        None => found(&state.config.endpoint("/account")),
    };
    response.headers_mut().append(
        header::SET_COOKIE,
        state
            .cookie
            .set(&opened.sid, state.config.sessions.ttl.as_secs()),
    );
    response
}
