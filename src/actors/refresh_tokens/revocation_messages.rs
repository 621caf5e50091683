//! The messages that end refresh-token families early, and what they answer: [`EndedFamilies`],
//! [`EndError`]. The actor handles them in `revocation.rs`; they have a file of their own so that
//! the actor's file can name them without importing the file that handles them, which imports
//! the actor.

use crate::store::StoreError;
use crate::trace::Secret;
use std::time::Duration;

/// Families that ended, with the access tokens minted from them that were still unexpired (now
/// revoked).
#[derive(Debug, Clone, Default)]
pub struct EndedFamilies {
    pub families: usize,
    /// Each token's `jti` and remaining lifetime.
    pub access_tokens: Vec<(String, Duration)>,
}

/// Why families could not be ended with their access tokens: the request is answered "try again
/// later" and acknowledges nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EndError {
    /// The store did not remove the families: they are as they were.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The families' access tokens could not all be revoked (those of a reused family: it ended
    /// all the same; otherwise: the families are as they were).
    #[error("the families' access tokens could not all be revoked")]
    AccessTokensNotRevoked,
}

/// Revokes the family of a refresh token presented at the revocation endpoint (RFC 7009): only
/// when the token belongs to `client_id`.
#[derive(Debug)]
pub struct RevokeRefreshToken {
    pub token: Secret,
    pub client_id: String,
}

/// The outcome of [`RevokeRefreshToken`].
#[derive(Debug)]
pub enum TokenRevocation {
    /// No family has this token (unknown, or already ended).
    Unknown,
    /// The token belongs to another client: nothing revoked (RFC 7009 section 2.1).
    OtherClient,
    /// The family ended and its access tokens are revoked.
    Revoked(EndedFamilies),
}

/// Revokes every family of a user for a client (the user revoked the client's consent on the
/// account page), or of every user or client where one is `None` (`mcp-oauth admin`: a user's
/// grants, a client's grants, a deleted client, a disabled user).
#[derive(Debug)]
pub struct RevokeClientFamilies {
    pub subject: Option<String>,
    pub client_id: Option<String>,
}

/// A family ended before its time at another server on the same database (a recorded change):
/// the access tokens this server minted from it are revoked.
#[derive(Debug)]
pub struct FamilyEndedElsewhere {
    pub family_id: String,
}

/// Revokes the family whose first token was issued with the access token `jti` (its code was
/// replayed).
#[derive(Debug)]
pub struct RevokeCodeFamily {
    pub jti: String,
}
