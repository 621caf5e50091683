//! The actor's memory: the cache of the families used lately, its indexes (token digest, user,
//! origin access token), the access tokens minted here from each family, and the store sweep.
//! Only what fits the cache is held; everything else is read from the store when asked for.

use super::{Due, EndedFamilies, Family, FamilyGrant, Minted, RefreshTokens};
use crate::oauth::time::{unix_now, unix_now_ms};
use crate::store::{Change, StoreError, TokenHash};
use kameo::actor::ActorRef;
use std::time::Duration;
use tokio::time::Instant;

impl RefreshTokens {
    /// Caches a family, evicting the least recently used beyond the cache's size.
    pub(super) fn insert(&mut self, family: Family) {
        let id = family.record.family_id.clone();
        self.uncache(&id);
        if self.families.len() >= self.families.capacity()
            && let Some((evicted, family)) = self.families.remove_lru()
        {
            self.unindex(&evicted, &family);
        }
        for token in &family.record.tokens {
            self.tokens.insert(*token, id.clone());
        }
        self.tokens.insert(family.record.current, id.clone());
        self.by_subject
            .entry(family.record.subject.clone())
            .or_default()
            .insert(id.clone());
        self.by_origin
            .insert(family.record.origin_jti.clone(), id.clone());
        self.families.insert(id, family);
    }

    pub(super) fn unindex(&mut self, id: &str, family: &Family) {
        for token in &family.record.tokens {
            self.tokens.remove(token);
        }
        self.tokens.remove(&family.record.current);
        if let Some(set) = self.by_subject.get_mut(&family.record.subject) {
            set.remove(id);
            if set.is_empty() {
                self.by_subject.remove(&family.record.subject);
            }
        }
        if self
            .by_origin
            .get(&family.record.origin_jti)
            .map(String::as_str)
            == Some(id)
        {
            self.by_origin.remove(&family.record.origin_jti);
        }
    }

    /// Drops a family from the cache; the access tokens minted from it stay remembered.
    pub(super) fn uncache(&mut self, id: &str) {
        if let Some(family) = self.families.remove(id) {
            self.unindex(id, &family);
        }
    }

    /// Remembers an access token minted from a family, until it expires.
    pub(super) fn remember_minted(
        &mut self,
        grant: &FamilyGrant,
        jti: String,
        ttl: Duration,
        actor: &ActorRef<Self>,
    ) {
        let now = Instant::now();
        let minted = self
            .minted
            .entry(grant.family_id.clone())
            .or_insert_with(|| Minted {
                subject: grant.subject.clone(),
                client_id: grant.client_id.clone(),
                tokens: Vec::new(),
            });
        minted.tokens.retain(|(_, until)| *until > now);
        minted.tokens.push((jti, now + ttl));
        self.expiry
            .schedule(now + ttl, Due::Minted(grant.family_id.clone()), actor);
    }

    /// The unexpired access tokens minted here from a family, with their remaining lifetimes.
    pub(super) fn live_minted(&self, id: &str, now: Instant) -> Vec<(String, Duration)> {
        self.minted
            .get(id)
            .into_iter()
            .flat_map(|minted| &minted.tokens)
            .filter(|(_, until)| *until > now)
            .map(|(jti, until)| (jti.clone(), *until - now))
            .collect()
    }

    /// Forgets a family (after the store has removed it); returns its live access tokens.
    pub(super) fn forget(&mut self, id: &str, now: Instant) -> Vec<(String, Duration)> {
        self.uncache(id);
        let live = self.live_minted(id, now);
        self.minted.remove(id);
        live
    }

    /// Ends these families: the store first, then memory. Their access tokens stay as they are
    /// (expiry); `refresh_tokens/revocation.rs` also revokes them when a family ends early.
    pub(super) async fn end(&mut self, ids: Vec<String>) -> Result<EndedFamilies, StoreError> {
        if ids.is_empty() {
            return Ok(EndedFamilies::default());
        }
        let removed = self.args.store.remove_families(&ids).await?;
        self.stored = self.stored.saturating_sub(removed);
        // The other servers revoke the access tokens they minted from these families.
        if let Some(announce) = &self.args.announce {
            for id in &ids {
                let change = Change::FamilyEnded {
                    family_id: id.clone(),
                };
                if let Err(err) = announce.record_change(&change, unix_now()).await {
                    tracing::warn!(actor = "RefreshTokens", error = %err, "a family's end is not announced; other servers' access tokens from it expire by themselves");
                }
            }
        }
        let now = Instant::now();
        let mut ended = EndedFamilies {
            families: usize::try_from(removed).unwrap_or(usize::MAX),
            ..EndedFamilies::default()
        };
        for id in &ids {
            ended.access_tokens.extend(self.forget(id, now));
        }
        Ok(ended)
    }

    /// The cached live family of a token digest (an expired one is treated as gone).
    pub(super) fn family_of(&self, hash: &TokenHash, now: Instant) -> Option<&Family> {
        let id = self.tokens.get(hash)?;
        self.families.peek(id).filter(|f| f.expires_at > now)
    }

    /// Reads the family of `hash` from the store when the cache does not hold it, or always when
    /// other servers write the store too.
    pub(super) async fn load_family(&mut self, hash: &TokenHash) -> Result<(), StoreError> {
        if self.args.shared || !self.tokens.contains_key(hash) {
            self.sync_family(hash).await?;
        }
        Ok(())
    }

    /// Before a refresh is judged: the family as [`Self::load_family`] reads it, except that on a
    /// shared store a token that is the current one of its cached family is judged by the cached
    /// copy (unless this presentation already lost a compare-and-swap). Such a token is rotated or
    /// answered an error that nothing another server does can change (the client, resource and
    /// scope of a family never change), and its rotation's compare-and-swap finds out whether
    /// another server rotated or ended the family first: the presentation then loses, and is
    /// judged again with the family read. A retired token is always judged as the store has it,
    /// since its successor there may be newer than the cached one.
    pub(super) async fn load_family_to_rotate(
        &mut self,
        hash: &TokenHash,
        lost: bool,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let current = self
            .family_of(hash, now)
            .is_some_and(|f| f.record.current == *hash);
        if current && !lost {
            return Ok(());
        }
        self.load_family(hash).await
    }

    /// Deletes the store's dead families and counts the others.
    pub(super) async fn sweep_store(&mut self) {
        match self.args.store.remove_dead_families(unix_now_ms()).await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(
                actor = "RefreshTokens",
                expired,
                "timer: dead families deleted"
            ),
            Err(err) => {
                tracing::warn!(actor = "RefreshTokens", error = %err, "expired families stay stored until the next sweep")
            }
        }
        match self.args.store.count_families().await {
            Ok(stored) => {
                self.stored = stored;
                // A transaction under way may be in this count: its families are not added again.
                self.recounts += 1;
            }
            Err(err) => {
                tracing::warn!(actor = "RefreshTokens", error = %err, "families not counted")
            }
        }
    }
}
