//! The messages that only read the families: [`InspectRefreshToken`] (introspection),
//! [`CountFamiliesByClient`] (the account page), [`CountFamilies`] and [`CountCachedFamilies`]
//! (tests, the benchmark) and [`FlowOfRefreshToken`] (the flow trace). Handled here so that the actor's file keeps what
//! changes families.

use super::{
    CountCachedFamilies, CountFamilies, CountFamiliesByClient, FlowOfRefreshToken,
    InspectRefreshToken, Inspected, RefreshTokens,
};
use crate::oauth::time::unix_now_ms;
use crate::store::StoreError;
use crate::trace::FlowId;
use kameo::message::{Context, Message};
use tokio::time::Instant;

impl Message<InspectRefreshToken> for RefreshTokens {
    type Reply = Result<Option<Inspected>, StoreError>;

    async fn handle(
        &mut self,
        msg: InspectRefreshToken,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let hash = msg.token.sha256();
        // As the store has it when not cached or when other servers write it too (unreadable:
        // 503, not "inactive").
        self.load_family(&hash).await?;
        let Some(family) = self.family_of(&hash, Instant::now()) else {
            return Ok(None);
        };
        if family.record.current != hash {
            return Ok(None);
        }
        let inspected = Inspected {
            grant: family.grant(),
            issued_at: family
                .record
                .rotated_at_ms
                .unwrap_or(family.record.created_at_ms)
                / 1000,
            expires_at: family
                .record
                .idle_expires_at_ms
                .min(family.record.absolute_expires_at_ms)
                / 1000,
        };
        // Used: the last to be evicted.
        self.families.get(&inspected.grant.family_id);
        Ok(Some(inspected))
    }
}

impl Message<CountFamiliesByClient> for RefreshTokens {
    type Reply = Result<Vec<(String, usize)>, StoreError>;

    async fn handle(
        &mut self,
        msg: CountFamiliesByClient,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let counts = self
            .args
            .store
            .family_clients_of(&msg.subject, unix_now_ms())
            .await?;
        Ok(counts
            .into_iter()
            .map(|(client_id, n)| (client_id, usize::try_from(n).unwrap_or(usize::MAX)))
            .collect())
    }
}

impl Message<CountFamilies> for RefreshTokens {
    type Reply = u64;

    async fn handle(&mut self, _: CountFamilies, _: &mut Context<Self, u64>) -> u64 {
        self.stored
    }
}

impl Message<CountCachedFamilies> for RefreshTokens {
    type Reply = usize;

    async fn handle(&mut self, _: CountCachedFamilies, _: &mut Context<Self, usize>) -> usize {
        self.families.len()
    }
}

impl Message<FlowOfRefreshToken> for RefreshTokens {
    type Reply = Option<FlowId>;

    async fn handle(
        &mut self,
        msg: FlowOfRefreshToken,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let hash = msg.token.sha256();
        // A family not cached is read now, which the refresh that follows then finds; a store
        // that cannot answer leaves the flow unknown, and the refresh answers the error.
        if !self.tokens.contains_key(&hash)
            && let Err(err) = self.sync_family(&hash).await
        {
            tracing::debug!(actor = "RefreshTokens", error = %err, "flow of a refresh token unknown");
        }
        self.family_of(&hash, Instant::now())
            .map(|family| FlowId::from_claim(&family.record.flow))
    }
}
