//! [`MemoryStore`]: the store of `--in-memory`, tables in the process's memory and nothing on
//! disk. It keeps the same rules as the SQLite store (each operation atomic under one lock held
//! only for the operation, never across an await), so an actor restarted by its supervisor reloads
//! what it had, and a restart of the process starts empty, as before there was a store.

use super::{
    ClientMap, ClientRecord, ClientStore, ConsentRecord, ConsentStore, KeyRecord, KeyStore,
    RevocationStore, Store, StoreError, UserRecord, UserStore, merge_consent,
};
use crate::actors::refresh_tokens::{self, FamilyRecord, RefreshTokenStore, Rotation};
use crate::oauth::scope::ScopeSet;
use async_trait::async_trait;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Default)]
struct Tables {
    clients: ClientMap,
    consents: HashMap<(String, String), ConsentRecord>,
    revocations: HashMap<String, u64>,
    users: BTreeMap<String, UserRecord>,
    keys: BTreeMap<String, KeyRecord>,
    refresh_families: HashMap<String, FamilyRecord>,
}

#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    closed: AtomicBool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` on the tables, atomically.
    fn with<T>(&self, f: impl FnOnce(&mut Tables) -> T) -> Result<T, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError("the store is closed".into()));
        }
        let mut tables = self
            .tables
            .lock()
            .map_err(|_| StoreError("the store's lock is poisoned".into()))?;
        Ok(f(&mut tables))
    }
}

#[async_trait]
impl ClientStore for MemoryStore {
    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.with(|t| t.clients.iter().cloned().collect())
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        self.with(|t| t.clients.get(client_id).cloned())
    }

    async fn insert_client(&self, record: &ClientRecord) -> Result<(), StoreError> {
        self.with(|t| {
            if t.clients.get(&record.client.client_id).is_some() {
                return Err(StoreError("the client id exists".into()));
            }
            t.clients.insert(record.clone());
            Ok(())
        })?
    }

    async fn mark_client_used(&self, client_id: &str) -> Result<(), StoreError> {
        self.with(|t| {
            if let Some(c) = t.clients.get_mut(client_id) {
                c.used = true;
            }
        })
    }

    async fn delete_unused_client(&self, client_id: &str) -> Result<bool, StoreError> {
        self.with(|t| {
            if t.clients.get(client_id).is_some_and(|c| !c.used) {
                t.clients.remove(client_id);
                true
            } else {
                false
            }
        })
    }
}

#[async_trait]
impl ConsentStore for MemoryStore {
    async fn consents(&self, now: u64) -> Result<Vec<ConsentRecord>, StoreError> {
        self.with(|t| {
            t.consents
                .values()
                .filter(|c| c.expires_at > now)
                .cloned()
                .collect()
        })
    }

    async fn consent(
        &self,
        subject: &str,
        client_id: &str,
        now: u64,
    ) -> Result<Option<ConsentRecord>, StoreError> {
        self.with(|t| {
            t.consents
                .get(&(subject.to_string(), client_id.to_string()))
                .filter(|c| c.expires_at > now)
                .cloned()
        })
    }

    async fn grant_consent(
        &self,
        subject: &str,
        client_id: &str,
        scope: &ScopeSet,
        resource: &str,
        now: u64,
        expires_at: u64,
    ) -> Result<ConsentRecord, StoreError> {
        self.with(|t| {
            let key = (subject.to_string(), client_id.to_string());
            let existing = t.consents.remove(&key);
            let merged = merge_consent(
                existing, subject, client_id, scope, resource, now, expires_at,
            );
            t.consents.insert(key, merged.clone());
            merged
        })
    }

    async fn delete_consent(&self, subject: &str, client_id: &str) -> Result<bool, StoreError> {
        self.with(|t| {
            t.consents
                .remove(&(subject.to_string(), client_id.to_string()))
                .is_some()
        })
    }

    async fn delete_expired_consents(&self, now: u64) -> Result<u64, StoreError> {
        self.with(|t| {
            let before = t.consents.len();
            t.consents.retain(|_, c| c.expires_at > now);
            (before - t.consents.len()) as u64
        })
    }
}

#[async_trait]
impl RevocationStore for MemoryStore {
    async fn revocations(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|t| {
            t.revocations
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(jti, until)| (jti.clone(), *until))
                .collect()
        })
    }

    async fn is_revoked(&self, jti: &str, now: u64) -> Result<bool, StoreError> {
        self.with(|t| t.revocations.get(jti).is_some_and(|until| *until > now))
    }

    async fn revoke(&self, jti: &str, until: u64) -> Result<(), StoreError> {
        self.with(|t| {
            let entry = t.revocations.entry(jti.to_string()).or_insert(until);
            *entry = (*entry).max(until);
        })
    }

    async fn delete_expired_revocations(&self, now: u64) -> Result<u64, StoreError> {
        self.with(|t| {
            let before = t.revocations.len();
            t.revocations.retain(|_, until| *until > now);
            (before - t.revocations.len()) as u64
        })
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.with(|t| t.users.values().cloned().collect())
    }

    async fn replace_users(&self, users: &[UserRecord]) -> Result<(), StoreError> {
        self.with(|t| {
            t.users = users
                .iter()
                .map(|u| (u.username.clone(), u.clone()))
                .collect();
        })
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.with(|t| {
            let mut keys: Vec<KeyRecord> = t.keys.values().cloned().collect();
            keys.sort_by_key(|k| (k.activates_at, k.created_at));
            keys
        })
    }

    async fn insert_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.with(|t| {
            if t.keys.contains_key(&key.kid) {
                return Err(StoreError("the key id exists".into()));
            }
            t.keys.insert(key.kid.clone(), key.clone());
            Ok(())
        })?
    }

    async fn update_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.with(|t| {
            if let Some(stored) = t.keys.get_mut(&key.kid) {
                stored.activates_at = key.activates_at;
                stored.retired_at = key.retired_at;
                stored.removes_at = key.removes_at;
            }
        })
    }

    async fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        self.with(|t| {
            t.keys.remove(kid);
        })
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn is_durable(&self) -> bool {
        false
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Refresh-token families, with the same compare-and-swap rotation as the SQLite store.
impl RefreshTokenStore for MemoryStore {
    fn insert_family(
        &self,
        family: &FamilyRecord,
    ) -> BoxFuture<'_, Result<(), refresh_tokens::StoreError>> {
        let mut family = family.clone();
        if !family.tokens.contains(&family.current) {
            family.tokens.push(family.current);
        }
        let done = self
            .with(|t| {
                t.refresh_families.insert(family.family_id.clone(), family);
            })
            .map_err(|e| refresh_tokens::StoreError(e.to_string()));
        Box::pin(async move { done })
    }

    fn rotate(
        &self,
        rotation: &Rotation,
    ) -> BoxFuture<'_, Result<bool, refresh_tokens::StoreError>> {
        let done = self
            .with(|t| match t.refresh_families.get_mut(&rotation.family_id) {
                Some(family) if family.current == rotation.presented => {
                    family.previous = Some(family.current);
                    family.current = rotation.next;
                    family.tokens.push(rotation.next);
                    family.salt = Some(rotation.salt);
                    family.generation = rotation.generation;
                    family.rotated_at_ms = Some(rotation.rotated_at_ms);
                    family.idle_expires_at_ms = rotation.idle_expires_at_ms;
                    true
                }
                _ => false,
            })
            .map_err(|e| refresh_tokens::StoreError(e.to_string()));
        Box::pin(async move { done })
    }

    fn remove_families(
        &self,
        family_ids: &[String],
    ) -> BoxFuture<'_, Result<(), refresh_tokens::StoreError>> {
        let done = self
            .with(|t| {
                for id in family_ids {
                    t.refresh_families.remove(id);
                }
            })
            .map_err(|e| refresh_tokens::StoreError(e.to_string()));
        Box::pin(async move { done })
    }

    fn load_live(
        &self,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<Vec<FamilyRecord>, refresh_tokens::StoreError>> {
        let done = self
            .with(|t| {
                t.refresh_families.retain(|_, f| {
                    f.absolute_expires_at_ms > now_ms && f.idle_expires_at_ms > now_ms
                });
                t.refresh_families.values().cloned().collect()
            })
            .map_err(|e| refresh_tokens::StoreError(e.to_string()));
        Box::pin(async move { done })
    }
}
