//! The families as the store has them. A token whose family is not cached is judged by the
//! family read from the store. When other servers write the same store too (several
//! authorization servers on one PostgreSQL database), every token's family is read again before
//! it is judged, so that a family made, rotated or ended at another server is judged as the store
//! has it, and a stale copy never makes the current token look reused. The store stays the judge
//! of single use: its compare-and-swap decides a race, and the loser reads the family again and is
//! answered as a retry within the grace window would be.

use super::{Family, RefreshTokens};
use crate::oauth::scope::ScopeSet;
use crate::oauth::time::instant_of_ms;
use crate::store::{FamilyRecord, StoreError, TokenHash};
use std::time::Duration;
use tokio::time::Instant;

impl Family {
    /// A stored family on the actor's clock (`now` is `now_ms`); `None` once past a deadline.
    pub(super) fn from_record(record: FamilyRecord, now: Instant, now_ms: u64) -> Option<Family> {
        let expires_ms = record.idle_expires_at_ms.min(record.absolute_expires_at_ms);
        if expires_ms <= now_ms {
            return None;
        }
        Some(Family {
            scope: ScopeSet::parse(&record.scope).unwrap_or_default(),
            expires_at: instant_of_ms(expires_ms, now, now_ms),
            absolute_at: instant_of_ms(record.absolute_expires_at_ms, now, now_ms),
            // A rotation too long ago for this clock to express is outside any grace window.
            rotated_at: record
                .rotated_at_ms
                .and_then(|at| now.checked_sub(Duration::from_millis(now_ms.saturating_sub(at)))),
            record,
        })
    }
}

impl RefreshTokens {
    /// Replaces the cached copy of the family of `hash` with the store's, or forgets it when the
    /// store has none. The access tokens this server minted from it stay remembered.
    pub(super) async fn sync_family(&mut self, hash: &TokenHash) -> Result<(), StoreError> {
        let stored = self.args.store.family_by_token(hash).await?;
        let now = Instant::now();
        let now_ms = crate::oauth::time::unix_now_ms();
        // The copy is found by the family's id (the presented token may be one this copy has
        // not seen yet), or by the token when the store no longer has the family.
        let cached = match &stored {
            Some(record) => Some(record.family_id.clone()),
            None => self.tokens.get(hash).cloned(),
        };
        if let Some(id) = &cached
            && self.families.contains_key(id)
        {
            self.uncache(id);
            // Ended at another server: the access tokens this server minted from it end too.
            if stored.is_none() {
                let live = self.forget(id, now);
                if let Err(err) = self.revoke_access_tokens(&live).await {
                    tracing::warn!(actor = "RefreshTokens", error = %err, "the access tokens of a family ended elsewhere are not all revoked");
                }
            }
        }
        if let Some(family) = stored.and_then(|r| Family::from_record(r, now, now_ms)) {
            self.insert(family);
        }
        Ok(())
    }
}
