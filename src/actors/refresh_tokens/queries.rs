//! The messages that only read the families: [`InspectRefreshToken`] (introspection),
//! [`CountFamiliesByClient`] (the account page), [`CountFamilies`] (tests, the benchmark) and
//! [`FlowOfRefreshToken`] (the flow trace). Handled here so that the actor's file keeps what
//! changes families.

use super::{
    CountFamilies, CountFamiliesByClient, FlowOfRefreshToken, InspectRefreshToken, Inspected,
    RefreshTokens,
};
use crate::store::StoreError;
use crate::trace::FlowId;
use kameo::message::{Context, Message};
use std::collections::HashMap;
use tokio::time::Instant;

impl Message<InspectRefreshToken> for RefreshTokens {
    type Reply = Result<Option<Inspected>, StoreError>;

    async fn handle(
        &mut self,
        msg: InspectRefreshToken,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let hash = msg.token.sha256();
        // As the store has it when other servers write it too (unreadable: 503, not "inactive").
        if self.args.shared {
            self.sync_family(&hash, ctx.actor_ref()).await?;
        }
        let Some(family) = self.family_of(&hash, Instant::now()) else {
            return Ok(None);
        };
        if family.record.current != hash {
            return Ok(None);
        }
        Ok(Some(Inspected {
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
        }))
    }
}

impl Message<CountFamiliesByClient> for RefreshTokens {
    type Reply = Vec<(String, usize)>;

    async fn handle(
        &mut self,
        msg: CountFamiliesByClient,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let now = Instant::now();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for id in self.by_subject.get(&msg.subject).into_iter().flatten() {
            if let Some(family) = self.families.get(id).filter(|f| f.expires_at > now) {
                *counts.entry(family.record.client_id.clone()).or_default() += 1;
            }
        }
        let mut clients: Vec<(String, usize)> = counts.into_iter().collect();
        clients.sort();
        clients
    }
}

impl Message<CountFamilies> for RefreshTokens {
    type Reply = usize;

    async fn handle(&mut self, _: CountFamilies, _: &mut Context<Self, usize>) -> usize {
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
        self.family_of(&msg.token.sha256(), Instant::now())
            .map(|family| FlowId::from_claim(&family.record.flow))
    }
}
