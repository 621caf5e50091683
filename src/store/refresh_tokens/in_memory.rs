//! The refresh-token tables of the in-memory store (`--in-memory`): the families by id and every
//! token digest's family, with the same compare-and-swap rotation as the SQL stores.

use super::{FamilyRecord, RefreshTokenStore, Rotation, TokenHash};
use crate::store::error::StoreError;
use crate::store::memory::MemoryStore;
use futures::future::BoxFuture;
use std::collections::HashMap;

/// The refresh-token families of the in-memory store, by family id, each with its tokens, and
/// every token digest's family.
#[derive(Default)]
struct FamiliesTable {
    refresh_families: HashMap<String, FamilyRecord>,
    tokens: HashMap<TokenHash, String>,
}

impl FamiliesTable {
    fn insert(&mut self, family: &FamilyRecord) {
        let mut family = family.clone();
        family.idle_expires_at_ms = family.idle_expires_at_ms.min(family.absolute_expires_at_ms);
        if !family.tokens.contains(&family.current) {
            family.tokens.push(family.current);
        }
        for token in &family.tokens {
            self.tokens.insert(*token, family.family_id.clone());
        }
        self.refresh_families
            .insert(family.family_id.clone(), family);
    }

    fn rotate(&mut self, rotation: &Rotation) -> bool {
        match self.refresh_families.get_mut(&rotation.family_id) {
            Some(family) if family.current == rotation.presented => {
                family.previous = Some(family.current);
                family.current = rotation.next;
                family.tokens.push(rotation.next);
                family.salt = Some(rotation.salt);
                family.generation = rotation.generation;
                family.rotated_at_ms = Some(rotation.rotated_at_ms);
                family.idle_expires_at_ms = rotation
                    .idle_expires_at_ms
                    .min(family.absolute_expires_at_ms);
                self.tokens
                    .insert(rotation.next, rotation.family_id.clone());
                true
            }
            _ => false,
        }
    }

    fn remove(&mut self, family_id: &str) -> bool {
        let Some(family) = self.refresh_families.remove(family_id) else {
            return false;
        };
        for token in &family.tokens {
            self.tokens.remove(token);
        }
        true
    }

    fn remove_dead(&mut self, now_ms: u64) -> u64 {
        let dead: Vec<String> = self
            .refresh_families
            .values()
            .filter(|f| f.idle_expires_at_ms <= now_ms)
            .map(|f| f.family_id.clone())
            .collect();
        for id in &dead {
            self.remove(id);
        }
        dead.len() as u64
    }
}

/// Refresh-token families, with the same compare-and-swap rotation as the SQLite store.
impl RefreshTokenStore for MemoryStore {
    fn write_batch<'a>(
        &'a self,
        families: &'a [FamilyRecord],
        rotations: &'a [Rotation],
    ) -> BoxFuture<'a, Result<Vec<bool>, StoreError>> {
        let done = self.with(|t: &mut FamiliesTable| {
            // As the SQL stores' keys: a family or token that exists fails the whole batch.
            let exists = families.iter().any(|f| {
                t.refresh_families.contains_key(&f.family_id)
                    || f.tokens
                        .iter()
                        .chain([&f.current])
                        .any(|h| t.tokens.contains_key(h))
            });
            if exists {
                return Err(StoreError("a refresh-token family or token exists".into()));
            }
            for family in families {
                t.insert(family);
            }
            Ok(rotations.iter().map(|r| t.rotate(r)).collect())
        });
        Box::pin(async move { done? })
    }

    fn remove_families(&self, family_ids: &[String]) -> BoxFuture<'_, Result<u64, StoreError>> {
        let done = self.with(|t: &mut FamiliesTable| {
            family_ids.iter().filter(|id| t.remove(id)).count() as u64
        });
        Box::pin(async move { done })
    }

    fn remove_dead_families(&self, now_ms: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        let done = self.with(|t: &mut FamiliesTable| t.remove_dead(now_ms));
        Box::pin(async move { done })
    }

    fn load_live(&self, now_ms: u64) -> BoxFuture<'_, Result<Vec<FamilyRecord>, StoreError>> {
        let done = self.with(|t: &mut FamiliesTable| {
            t.remove_dead(now_ms);
            t.refresh_families.values().cloned().collect()
        });
        Box::pin(async move { done })
    }

    fn count_families(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        let done = self.with(|t: &mut FamiliesTable| t.refresh_families.len() as u64);
        Box::pin(async move { done })
    }

    fn family_clients_of(
        &self,
        subject: &str,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<Vec<(String, u64)>, StoreError>> {
        let done = self.with(|t: &mut FamiliesTable| {
            let mut counts = std::collections::BTreeMap::<String, u64>::new();
            for f in t.refresh_families.values().filter(|f| {
                f.subject == subject
                    && f.absolute_expires_at_ms > now_ms
                    && f.idle_expires_at_ms > now_ms
            }) {
                *counts.entry(f.client_id.clone()).or_default() += 1;
            }
            counts.into_iter().collect()
        });
        Box::pin(async move { done })
    }

    fn family_id_by_origin(
        &self,
        origin_jti: &str,
    ) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
        let done = self.with(|t: &mut FamiliesTable| {
            t.refresh_families
                .values()
                .find(|f| f.origin_jti == origin_jti)
                .map(|f| f.family_id.clone())
        });
        Box::pin(async move { done })
    }

    fn family_ids_of(
        &self,
        subject: Option<&str>,
        client_id: Option<&str>,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let done = self.with(|t: &mut FamiliesTable| {
            t.refresh_families
                .values()
                .filter(|f| subject.is_none_or(|s| f.subject == s))
                .filter(|f| client_id.is_none_or(|c| f.client_id == c))
                .map(|f| f.family_id.clone())
                .collect()
        });
        Box::pin(async move { done })
    }

    fn family_by_token(
        &self,
        hash: &TokenHash,
    ) -> BoxFuture<'_, Result<Option<FamilyRecord>, StoreError>> {
        let done = self.with(|t: &mut FamiliesTable| {
            t.tokens
                .get(hash)
                .and_then(|id| t.refresh_families.get(id))
                .cloned()
        });
        Box::pin(async move { done })
    }
}
