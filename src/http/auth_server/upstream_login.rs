//! `POST /login/{provider}` and `GET /login/{provider}/callback`: signing in through an upstream
//! identity provider instead of a password.
//!
//! The login page's "Sign in with …" button posts its form here (the session's CSRF token and the
//! parked request's id, like the password form), and the browser is sent to the provider. The
//! provider sends it back to the callback, which finishes the sign-in for the same browser
//! session (`state` is bound to it, so a callback URL handed to another browser signs no one in),
//! renews the session id as a password login does, and goes on with the request: our own consent
//! page, then our own code. The provider's tokens never leave the `IdentityProviders` actor.
//!
//! Anything that keeps a user from being signed in is a page that says which provider and why
//! ([`refused`]); nothing is redirected to the MCP client, which may retry with another method.

use super::flow::{busy, found, proceed};
use super::pages::error_page;
use super::rate_limit::SourceAddress;
use super::state::AuthState;
use crate::actors::identity_providers::{BeginSignIn, Callback, FinishSignIn};
use crate::actors::sessions::{Login, SignedIn};
use crate::actors::upstream_exchange::UpstreamError;
use crate::actors::{AskError, ask};
use crate::oauth::params::Params;
use crate::trace::Secret;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

pub async fn begin(
    State(state): State<AuthState>,
    Path(provider): Path<String>,
    source: SourceAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let opened = match super::sign_in_form::open(&state, source, &headers, &body).await {
        Ok(opened) => opened,
        Err(page) => return page,
    };
    let Some(name) = provider_name(&state, &provider) else {
        return unknown_provider();
    };
    let begin = BeginSignIn {
        provider,
        sid: opened.sid,
        request_id: opened.request_id,
    };
    let pending = match ask(&state.identity_providers, begin).await {
        Ok(pending) => pending,
        Err(AskError::Rejected(err)) => return refused(&name, err),
        Err(err) => return busy(err),
    };
    match pending.outcome().await {
        Ok(url) => {
            tracing::info!(provider = %name, "upstream sign-in started");
            found(&url)
        }
        Err(err) => refused(&name, err),
    }
}

pub async fn callback(
    State(state): State<AuthState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let mut params = Params::parse_lenient(query.unwrap_or_default().as_bytes());
    let Some(name) = provider_name(&state, &provider) else {
        return unknown_provider();
    };
    let Some(sid) = state.cookie.read(&headers) else {
        return refused(&name, UpstreamError::SignInUnknown);
    };
    let callback = Callback {
        state: params.take("state").map(Secret::new),
        code: params.take("code").map(Secret::new),
        error: params.take("error"),
        error_description: params.take("error_description"),
        iss: params.take("iss"),
    };
    let finish = FinishSignIn {
        provider: provider.clone(),
        sid: sid.clone(),
        callback,
    };
    let outcome = match ask(&state.identity_providers, finish).await {
        Ok(pending) => pending.outcome().await,
        Err(AskError::Rejected(err)) => Err(err),
        Err(err) => return busy(err),
    };
    let signed_in = match outcome {
        Ok(signed_in) => signed_in,
        Err(err) => {
            metrics::counter!("mcp_oauth_upstream_sign_ins_total", "provider" => provider, "outcome" => "refused").increment(1);
            return refused(&name, err);
        }
    };
    let user = SignedIn {
        subject: signed_in.subject,
        display_name: signed_in.display_name,
    };
    let login = Login {
        sid: Some(sid),
        user: user.clone(),
    };
    let opened = match ask(&state.sessions, login).await {
        Ok(opened) => opened,
        Err(err) => return busy(err),
    };
    metrics::counter!("mcp_oauth_upstream_sign_ins_total", "provider" => provider, "outcome" => "succeeded").increment(1);
    tracing::info!(sub = %user.subject, "upstream sign-in succeeded, session renewed");
    let mut response = if signed_in.request_id.is_empty() {
        found(&state.config.endpoint("/account"))
    } else {
        proceed(&state, &opened.sid, &user, &signed_in.request_id).await
    };
    response.headers_mut().append(
        header::SET_COOKIE,
        state
            .cookie
            .set(&opened.sid, state.config.sessions.ttl.as_secs()),
    );
    response
}

/// The name of the configured provider `id`, for the pages; `None` for an id no provider has.
fn provider_name(state: &AuthState, id: &str) -> Option<String> {
    state.sign_in.find(id).map(|p| p.name.clone())
}

/// The page for a provider id that is not configured; the id is not shown (it is the visitor's
/// text, not ours).
fn unknown_provider() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Unknown sign-in method",
        "This server offers no such sign-in method. Start again from the application.",
    )
}

/// The page for a sign-in that signs no one in, naming the provider and the reason.
fn refused(name: &str, err: UpstreamError) -> Response {
    tracing::info!(provider = %name, reason = %err, "upstream sign-in refused");
    let again = "Start again from the application, or choose another way to sign in.";
    match err {
        UpstreamError::UnknownProvider => unknown_provider(),
        UpstreamError::SignInUnknown => error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            &format!(
                "This sign-in with {name} is no longer valid: it expired, was already completed, or was started in another browser. {again}"
            ),
        ),
        UpstreamError::Full | UpstreamError::Unavailable => {
            busy(AskError::<()>::Busy("IdentityProviders"))
        }
        UpstreamError::Refused { error, description } => {
            let detail = description.map_or_else(String::new, |d| format!(" ({d})"));
            error_page(
                StatusCode::FORBIDDEN,
                "Sign-in refused",
                &format!("{name} refused the sign-in: {error}{detail}. {again}"),
            )
        }
        UpstreamError::NotAllowed => error_page(
            StatusCode::FORBIDDEN,
            "Sign-in refused",
            &format!("This {name} account may not sign in here. {again}"),
        ),
        UpstreamError::Unreachable(reason) => error_page(
            StatusCode::BAD_GATEWAY,
            "Sign-in failed",
            &format!(
                "{name} could not be reached, or its answer could not be used: {reason}. {again}"
            ),
        ),
        UpstreamError::Unverified(reason) => error_page(
            StatusCode::BAD_GATEWAY,
            "Sign-in could not be verified",
            &format!(
                "The answer from {name} could not be verified, so no one is signed in: {reason}. {again}"
            ),
        ),
    }
}
