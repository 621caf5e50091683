//! `GET /account` and `POST /account/revoke`: the signed-in user's connected applications.
//!
//! The page lists every client the user has a remembered consent for or a live refresh-token
//! family with, and offers one "Revoke access" button per client. Revoking forgets the consent
//! (the next authorization shows the consent page again), ends every refresh-token family of the
//! user for that client, and revokes the access tokens minted from those families. It uses the
//! browser session of the login page: the form carries the session's CSRF token, a foreign
//! `Origin` is refused, and the page has the headers of every page (PG-1, PG-2). Without a
//! signed-in session `GET /account` sends the browser to sign in (`/login`), which comes back
//! here.

use super::flow::{busy, csrf_matches, current_session, forbidden_form, found, origin_allowed};
use super::pages::{AccountClient, AccountPage, cap, error_page, render, with_page_headers};
use super::state::AuthState;
use crate::actors::ask;
use crate::actors::clients::LookupClient;
use crate::actors::codes::WithdrawCodes;
use crate::actors::consents::{ListConsents, RevokeConsent};
use crate::actors::refresh_tokens::{CountFamiliesByClient, RevokeClientFamilies};
use crate::actors::sessions::SignedIn;
use crate::oauth::params::{MAX_CLIENT_ID_LEN, Params};
use crate::trace::Secret;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

fn sign_in_first() -> Response {
    error_page(
        StatusCode::UNAUTHORIZED,
        "Sign in required",
        "Sign in first, then open this page again.",
    )
}

/// The signed-in user of the request's session, with the session's CSRF token; `None` when the
/// browser is not signed in.
async fn signed_in(
    state: &AuthState,
    headers: &HeaderMap,
) -> Result<Option<(SignedIn, Secret)>, Response> {
    Ok(current_session(state, headers)
        .await?
        .and_then(|(_, view)| view.user.map(|user| (user, view.csrf))))
}

async fn clients_of(state: &AuthState, subject: &str) -> Result<Vec<AccountClient>, Response> {
    let consents = ask(
        &state.consents,
        ListConsents {
            subject: subject.to_string(),
        },
    )
    .await
    .map_err(busy)?;
    let families = ask(
        &state.refresh_tokens,
        CountFamiliesByClient {
            subject: subject.to_string(),
        },
    )
    .await
    .map_err(busy)?;
    let mut by_client: BTreeMap<String, AccountClient> = BTreeMap::new();
    for consent in consents {
        by_client.insert(
            consent.client_id.clone(),
            AccountClient {
                client_id: consent.client_id.clone(),
                name: consent.client_id,
                scope: consent.scope.to_string(),
                resources: consent.resources.join(", "),
                redirect_uris: cap(&consent.redirect_uris.join(", "), 400),
                refresh_families: 0,
            },
        );
    }
    for (client_id, count) in families {
        by_client
            .entry(client_id.clone())
            .or_insert_with(|| AccountClient {
                client_id: client_id.clone(),
                name: client_id,
                scope: String::new(),
                resources: String::new(),
                redirect_uris: String::new(),
                refresh_families: 0,
            })
            .refresh_families = count;
    }
    let mut clients: Vec<AccountClient> = by_client.into_values().collect();
    for client in &mut clients {
        let lookup = LookupClient {
            client_id: client.client_id.to_string(),
        };
        if let Ok(Some(registered)) = ask(&state.clients, lookup).await {
            client.name = cap(registered.display_name(), 80);
        } else {
            client.name = cap(&client.name, 80);
        }
    }
    Ok(clients)
}

pub async fn show(
    State(state): State<AuthState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let (user, csrf) = match signed_in(&state, &headers).await {
        Ok(Some(user)) => user,
        // Sign in first; the sign-in comes back here.
        Ok(None) => return found(&state.config.endpoint("/login")),
        Err(page) => return page,
    };
    let clients = match clients_of(&state, &user.subject).await {
        Ok(clients) => clients,
        Err(page) => return page,
    };
    let params = Params::parse_lenient(query.unwrap_or_default().as_bytes());
    let notice = (params.get("revoked") == Some("1")).then_some("Access revoked.");
    let action = state.config.endpoint("/account/revoke");
    render(
        StatusCode::OK,
        &AccountPage {
            action: &action,
            user_name: &user.display_name,
            clients,
            csrf_token: csrf.expose(),
            notice,
        },
    )
}

pub async fn revoke(State(state): State<AuthState>, headers: HeaderMap, body: Bytes) -> Response {
    if !origin_allowed(&state, &headers) {
        return forbidden_form();
    }
    let Ok(form) = Params::parse(&body) else {
        return forbidden_form();
    };
    let (user, csrf) = match signed_in(&state, &headers).await {
        Ok(Some(user)) => user,
        Ok(None) => return sign_in_first(),
        Err(page) => return page,
    };
    if !csrf_matches(&csrf, form.get("csrf_token")) {
        return forbidden_form();
    }
    let Some(client_id) = form
        .get("client_id")
        .filter(|c| c.len() <= MAX_CLIENT_ID_LEN)
    else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "Choose an application to revoke.",
        );
    };
    let forget = RevokeConsent {
        subject: user.subject.clone(),
        client_id: client_id.to_string(),
    };
    if let Err(err) = ask(&state.consents, forget).await {
        return busy(err);
    }
    // Codes issued for it but not redeemed yet would become tokens after the revocation.
    let withdraw = WithdrawCodes {
        subject: Some(user.subject.clone()),
        client_id: Some(client_id.to_string()),
    };
    if let Err(err) = ask(&state.codes, withdraw).await {
        return busy(err);
    }
    let end = RevokeClientFamilies {
        subject: Some(user.subject.clone()),
        client_id: Some(client_id.to_string()),
    };
    // `RefreshTokens` revokes the families' access tokens before it answers.
    let ended = match ask(&state.refresh_tokens, end).await {
        Ok(ended) => ended,
        Err(err) => return busy(err),
    };
    tracing::info!(
        sub = %user.subject,
        client_id = %client_id,
        refresh_families = ended.families,
        access_tokens = ended.access_tokens.len(),
        "consent revoked by the user"
    );
    // Post/redirect/get: back to the list.
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) =
        HeaderValue::from_str(&format!("{}?revoked=1", state.config.endpoint("/account")))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    with_page_headers(response)
}
