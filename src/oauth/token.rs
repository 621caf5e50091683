//! Access tokens: the claims of an RFC 9068 JWT as this server issues them and the resource
//! server reads them.

use serde::{Deserialize, Serialize};

/// The JOSE `typ` of an access token (RFC 9068 section 2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Claims of an access token. `flow` is this project's own claim: the id of the authorization
/// flow that produced the token, so that the flow trace can follow it across both servers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
}
