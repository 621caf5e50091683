//! `GET /oauth/revocations`: the feed of revoked access tokens that resource servers follow, so a
//! token revoked here (`/revoke`, a replayed code, a reused refresh token, the account page) is
//! refused by every resource server within moments, with no call here per request.
//!
//! Query: `epoch` and `after`, the position the reader reached (none at first), and `wait`, how
//! many seconds (at most [`MAX_WAIT_SECONDS`]) to hold the request while there is nothing new:
//! a long poll, so a revocation is sent the moment it is recorded. The answer is JSON:
//! `{"epoch", "cursor", "snapshot", "revoked": [{"jti", "exp"}]}` (see `actors/revocations.rs`).
//! When the resource-server credential (`AUTH_SERVER_INTROSPECTION_SECRET`) is set, the feed
//! requires it as a bearer token; without it the feed is public like the JWKS (it lists token ids,
//! which grant nothing, and their expiry), and each source's requests are rate limited
//! (`REVOCATION_FEED_PER_MINUTE`), since a snapshot of a long list is costly to build.

use super::introspect::resource_server_credential;
use super::rate_limit::{SourceAddress, admit};
use super::state::AuthState;
use crate::actors::ask;
use crate::actors::revocations::{FeedPage, ReadFeed};
use crate::actors::throttle::Endpoint;
use crate::http::error::{JsonError, no_store, too_many_requests};
use crate::oauth::ErrorCode;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tokio::time::Instant;

/// Longest a request is held while there is nothing new.
pub const MAX_WAIT_SECONDS: u64 = 30;

#[derive(Debug, serde::Deserialize)]
pub struct FeedQuery {
    epoch: Option<String>,
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait: u64,
}

pub async fn handler(
    State(state): State<AuthState>,
    source: SourceAddress,
    headers: HeaderMap,
    query: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, JsonError> {
    let Ok(Query(query)) = query else {
        return Err(JsonError::new(
            ErrorCode::InvalidRequest,
            "epoch, after and wait are malformed",
        ));
    };
    if state.config.introspection_secret.is_some() {
        if resource_server_credential(&state, &headers) != Some(true) {
            return Err(JsonError::new(
                ErrorCode::InvalidClient,
                "the revocation feed requires the resource-server credential",
            ));
        }
    } else if let Err(limited) = admit(&state, Endpoint::RevocationFeed, source).await {
        return Ok(too_many_requests(limited));
    }
    let deadline = Instant::now() + Duration::from_secs(query.wait.min(MAX_WAIT_SECONDS));
    let read = || ReadFeed {
        epoch: query.epoch.clone(),
        after: query.after,
    };
    let mut page: FeedPage = ask(&state.revocations, read()).await?;
    while !page.snapshot && page.revoked.is_empty() {
        let mut changed = page.changed.clone();
        match tokio::time::timeout_at(deadline, changed.changed()).await {
            // Something was revoked: read it.
            Ok(Ok(())) => page = ask(&state.revocations, read()).await?,
            // The wait is over, or the actor restarted (its readers start again from a new epoch).
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let mut response = Json(page).into_response();
    no_store(&mut response);
    Ok(response)
}
