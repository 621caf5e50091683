//! Reading back an access token this server signed, for `/introspect` and `/revoke`: signed with
//! a key it still publishes (current or retired), by this issuer, not expired. Revocation is the
//! caller's to check.

use super::state::AuthState;
use crate::actors::ask;
use crate::actors::signing_keys::VerifyingKey;
use crate::http::error::JsonError;
use crate::oauth::token::AccessTokenClaims;
use jsonwebtoken::{Algorithm, Validation, decode};

/// Longest token read; anything longer is not one of ours.
const MAX_TOKEN_LEN: usize = 8192;

/// The claims of an access token this server signed (with any key it still publishes, current or
/// retired) and that has not expired, or `None`. Revocation is not checked here.
pub async fn verify_access_token(
    state: &AuthState,
    token: &str,
) -> Result<Option<AccessTokenClaims>, JsonError> {
    if token.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    let kid = jsonwebtoken::decode_header(token)
        .ok()
        .and_then(|header| header.kid)
        .filter(|kid| kid.len() <= 256);
    let Some(kid) = kid else {
        return Ok(None);
    };
    let Some(key) = ask(&state.keys, VerifyingKey { kid }).await? else {
        return Ok(None);
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[state.config.issuer.as_str()]);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "jti"]);
    validation.leeway = 0;
    Ok(decode::<AccessTokenClaims>(token, &key, &validation)
        .ok()
        .map(|data| data.claims))
}
