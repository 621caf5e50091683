//! The authorization server's readiness (`GET /readyz`): the store answers a read, and a signing
//! key is published. Liveness is the shared `/healthz`.

use super::state::AuthState;
use crate::actors::ask;
use crate::actors::clients::CheckStore;
use crate::actors::signing_keys::Jwks;
use crate::http::health::{Check, readiness};
use axum::extract::State;
use axum::response::Response;

pub async fn readyz(State(state): State<AuthState>) -> Response {
    let store = match ask(&state.clients, CheckStore).await {
        Ok(()) => Check::new("store", true, "answers"),
        Err(err) => Check::new("store", false, err.to_string()),
    };
    let keys = match ask(&state.keys, Jwks).await {
        Ok(jwks) => {
            let count = jwks["keys"].as_array().map_or(0, Vec::len);
            Check::new("signing_key", count > 0, format!("{count} published"))
        }
        Err(err) => Check::new("signing_key", false, err.to_string()),
    };
    readiness(vec![store, keys])
}
