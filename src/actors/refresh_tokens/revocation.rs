//! Ending refresh-token families before their time, with the access tokens minted from them.
//!
//! A family ends early on reuse (a retired token presented to `RotateRefreshToken`), at the
//! revocation endpoint ([`RevokeRefreshToken`], RFC 7009), when the user revokes a client on the
//! account page ([`RevokeClientFamilies`]), and when the code it came from is replayed
//! ([`RevokeCodeFamily`], sent by `AuthorizationCodes`). Each time, the actor itself revokes the
//! family's unexpired access tokens by `jti` (the `Revocations` actor, each until it expires plus
//! [`CLOCK_LEEWAY`]) before it answers, so no handler drives the cascade. A family that merely
//! expires ends without it: its access tokens expire by themselves.
//!
//! Failing closed: if a revocation is refused (the list full, the actor busy, its store failing)
//! the answer is an error ([`EndError::AccessTokensNotRevoked`]) and the caller acknowledges
//! nothing. A revocation that was asked for (`/revoke`, the account page, a replayed code) revokes
//! the access tokens first and ends the families only then, so a refusal leaves the families as
//! they were and the request can simply be repeated. Reuse ends the family first, so that it
//! stops minting at once whatever happens next, then revokes its access tokens. Either way the
//! store commits before the answer. `Revocations` never asks this actor anything, so waiting for
//! it inside a handler cannot deadlock.

use super::revocation_messages::{
    EndError, EndedFamilies, FamilyEndedElsewhere, RevokeClientFamilies, RevokeCodeFamily,
    RevokeRefreshToken, TokenRevocation,
};
use super::{RefreshError, RefreshTokens};
use crate::actors::ask;
use crate::actors::revocations::RevokeAccessToken;
use crate::oauth::token::CLOCK_LEEWAY;
use kameo::message::{Context, Message};
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

impl From<EndError> for RefreshError {
    fn from(err: EndError) -> Self {
        match err {
            EndError::Store(err) => RefreshError::Store(err),
            EndError::AccessTokensNotRevoked => RefreshError::AccessTokensNotRevoked,
        }
    }
}

impl RefreshTokens {
    /// Revokes the unexpired access tokens of these families, then ends them (the store first,
    /// then memory). A refused revocation leaves the families as they were.
    pub(super) async fn revoke_then_end(
        &mut self,
        ids: Vec<String>,
    ) -> Result<EndedFamilies, EndError> {
        let now = Instant::now();
        let live: Vec<(String, Duration)> = ids
            .iter()
            .flat_map(|id| self.live_minted(id, now))
            .collect();
        self.revoke_access_tokens(&live).await?;
        Ok(self.end(ids).await?)
    }

    /// Ends these families (the store first, then memory), then revokes their unexpired access
    /// tokens: reuse, where the family must stop minting even if a revocation is refused.
    pub(super) async fn end_then_revoke(
        &mut self,
        ids: Vec<String>,
    ) -> Result<EndedFamilies, EndError> {
        let ended = self.end(ids).await?;
        self.revoke_access_tokens(&ended.access_tokens).await?;
        Ok(ended)
    }

    /// Revokes each access token (`jti`, remaining lifetime) until it expires.
    pub(super) async fn revoke_access_tokens(
        &self,
        tokens: &[(String, Duration)],
    ) -> Result<(), EndError> {
        for (jti, ttl) in tokens {
            let revoke = RevokeAccessToken {
                jti: jti.clone(),
                // Past `exp`, plus the leeway a resource server may grant.
                ttl: *ttl + CLOCK_LEEWAY,
            };
            if let Err(err) = ask(&self.args.revocations, revoke).await {
                tracing::warn!(actor = "RefreshTokens", jti = %jti, error = ?err, "an access token of a family is not revoked");
                return Err(EndError::AccessTokensNotRevoked);
            }
        }
        Ok(())
    }
}

impl Message<RevokeRefreshToken> for RefreshTokens {
    type Reply = Result<TokenRevocation, EndError>;

    async fn handle(
        &mut self,
        msg: RevokeRefreshToken,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let hash = msg.token.sha256();
        self.load_family(&hash).await?;
        let Some(family) = self.family_of(&hash, Instant::now()) else {
            return Ok(TokenRevocation::Unknown);
        };
        if family.record.client_id != msg.client_id {
            return Ok(TokenRevocation::OtherClient);
        }
        let id = family.record.family_id.clone();
        Ok(TokenRevocation::Revoked(
            self.revoke_then_end(vec![id]).await?,
        ))
    }
}

impl Message<RevokeClientFamilies> for RefreshTokens {
    type Reply = Result<EndedFamilies, EndError>;

    async fn handle(
        &mut self,
        msg: RevokeClientFamilies,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        // The store's families, cached or not (on a store other servers write too, those they
        // made as well), and the cached copies, which another server may have ended already.
        let stored = self
            .args
            .store
            .family_ids_of(msg.subject.as_deref(), msg.client_id.as_deref())
            .await?;
        let of_client = |id: &String| {
            msg.client_id.as_ref().is_none_or(|client_id| {
                self.families
                    .peek(id)
                    .is_some_and(|f| f.record.client_id == *client_id)
            })
        };
        let mut ids: HashSet<String> = match &msg.subject {
            Some(subject) => self
                .by_subject
                .get(subject)
                .into_iter()
                .flatten()
                .filter(|id| of_client(id))
                .cloned()
                .collect(),
            None => self
                .families
                .iter()
                .map(|(id, _)| id)
                .filter(|id| of_client(id))
                .cloned()
                .collect(),
        };
        ids.extend(stored);
        // Families neither cached nor stored any more (deleted by an operator's command, or by
        // another server, before this message) whose access tokens this server minted.
        ids.extend(
            self.minted
                .iter()
                .filter(|(_, m)| {
                    msg.subject.as_ref().is_none_or(|s| *s == m.subject)
                        && msg.client_id.as_ref().is_none_or(|c| *c == m.client_id)
                })
                .map(|(id, _)| id.clone()),
        );
        // And those on their way to the store (`commit.rs`).
        self.end_issuing(msg.subject.as_deref(), msg.client_id.as_deref());
        let ids: Vec<String> = ids.into_iter().collect();
        self.revoke_then_end(ids).await
    }
}

impl Message<RevokeCodeFamily> for RefreshTokens {
    type Reply = Result<EndedFamilies, EndError>;

    async fn handle(
        &mut self,
        msg: RevokeCodeFamily,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        // It may be on its way to the store, or committed and not yet cached (`commit.rs`).
        self.end_origin(&msg.jti);
        let mut ids: Vec<String> = self.by_origin.get(&msg.jti).cloned().into_iter().collect();
        // Not cached, or (on a store other servers write too) redeemed at another server.
        if ids.is_empty() {
            ids.extend(self.args.store.family_id_by_origin(&msg.jti).await?);
        }
        self.revoke_then_end(ids).await
    }
}

impl Message<FamilyEndedElsewhere> for RefreshTokens {
    type Reply = Result<(), EndError>;

    async fn handle(
        &mut self,
        msg: FamilyEndedElsewhere,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        // Already gone from the store; this server's copy and minted tokens go too.
        let live = self.forget(&msg.family_id, Instant::now());
        self.revoke_access_tokens(&live).await
    }
}
