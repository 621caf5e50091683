//! Per-source rate limits of the authorization server's endpoints, kept by the `Throttle` actor:
//! `/authorize`, `/register`, `/token` with `/revoke` and `/introspect` (one bucket), and the
//! login form.

use super::state::AuthState;
use crate::actors::throttle::{Endpoint, Limited};
use std::net::SocketAddr;

/// Takes a token from the source's bucket for `endpoint`. A throttle that cannot answer admits
/// the request: rate limiting must never take the server down with it.
pub async fn admit(state: &AuthState, endpoint: Endpoint, peer: SocketAddr) -> Result<(), Limited> {
    let msg = crate::actors::throttle::Admit {
        endpoint,
        source: peer.ip(),
    };
    match crate::actors::ask(&state.throttle, msg).await {
        Err(crate::actors::AskError::Rejected(limited)) => {
            tracing::info!(?endpoint, source = %peer.ip(), retry_after = limited.seconds(), "rate limited");
            Err(limited)
        }
        _ => Ok(()),
    }
}
