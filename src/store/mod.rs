//! The durable store behind the actors: the record of every registered client, remembered
//! consent, revoked access token, user and signing key. Actors keep their in-memory maps as the
//! fast path and write through: an actor answers only after the store has committed the change,
//! and at start each actor loads what it owns.
//!
//! The store is a set of traits, one per table ([`ClientStore`], [`ConsentStore`],
//! [`RevocationStore`], [`UserStore`], [`KeyStore`]), gathered in [`Store`]. Two implementations:
//! [`SqliteStore`] (embedded, one file in the data directory; the default) and [`MemoryStore`]
//! (`--in-memory`: nothing survives the process). The traits are written so that a store shared by
//! several replicas (PostgreSQL) can follow: every read an actor makes on a miss of its map goes
//! through them, and every operation that must happen at most once is one atomic statement or
//! transaction in the store (a conditional delete, an upsert, a merge in a transaction), never a
//! read in the actor followed by a write.
//!
//! Adding a table: one migration file in `migrations/` (`NNNN_what.sql`), a trait here with its
//! record type, and its implementation in `sqlite.rs` and `memory.rs`; add the trait to [`Store`].
//! Timestamps are Unix seconds.

pub mod cipher;
pub mod memory;
pub mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use crate::actors::clients::Client;
use crate::actors::refresh_tokens::RefreshTokenStore;
use crate::oauth::scope::ScopeSet;
use async_trait::async_trait;
use std::sync::Arc;

/// The store could not do what was asked: the change is not committed, and the request that
/// needed it is answered "temporarily unavailable" (503), never acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the store failed: {0}")]
pub struct StoreError(pub String);

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError(err.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError(err.to_string())
    }
}

/// A registered client and whether it has completed a flow (used clients are never reaped). The
/// client is shared with the registry: the in-memory store keeps no copy of its own.
#[derive(Debug, Clone)]
pub struct ClientRecord {
    pub client: Arc<Client>,
    pub used: bool,
}

/// Clients by id, each held once. The id is read from the client itself, so unlike a `HashMap`
/// no key is kept beside the record: a slot is the `Arc` and the `used` flag, 16 bytes. The
/// registry and the in-memory store each keep one; both may hold `--max-clients` records.
#[derive(Default)]
pub struct ClientMap {
    table: hashbrown::HashTable<ClientRecord>,
    hasher: std::hash::RandomState,
}

impl ClientMap {
    fn hash(&self, client_id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(client_id)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn get(&self, client_id: &str) -> Option<&ClientRecord> {
        self.table
            .find(self.hash(client_id), |r| &*r.client.client_id == client_id)
    }

    pub fn get_mut(&mut self, client_id: &str) -> Option<&mut ClientRecord> {
        let hash = self.hash(client_id);
        self.table
            .find_mut(hash, |r| &*r.client.client_id == client_id)
    }

    /// Inserts the record, replacing one with the same client id.
    pub fn insert(&mut self, record: ClientRecord) {
        use std::hash::BuildHasher;
        let hash = self.hash(&record.client.client_id);
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |r| r.client.client_id == record.client.client_id,
            |r| hasher.hash_one(&*r.client.client_id),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut slot) => *slot.get_mut() = record,
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(record);
            }
        }
    }

    pub fn remove(&mut self, client_id: &str) -> Option<ClientRecord> {
        let hash = self.hash(client_id);
        self.table
            .find_entry(hash, |r| &*r.client.client_id == client_id)
            .ok()
            .map(|slot| slot.remove().0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ClientRecord> {
        self.table.iter()
    }
}

/// A user's remembered approval for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub subject: String,
    pub client_id: String,
    pub scope: ScopeSet,
    pub resources: Vec<String>,
    pub expires_at: u64,
}

/// Someone who can sign in; the password only as an argon2 PHC string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
}

/// A signing key: its private half encrypted (see `actors::signing_keys`), and its lifecycle.
/// Published from `created_at`; signs from `activates_at` until `retired_at`; removed from the
/// JWKS (and the store) at `removes_at`, when every token it signed has expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub kid: String,
    pub encrypted_key: Vec<u8>,
    pub created_at: u64,
    pub activates_at: u64,
    pub retired_at: Option<u64>,
    pub removes_at: Option<u64>,
}

/// Registered clients (`ClientRegistry`).
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Every client, for the registry's start.
    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError>;
    /// One client, for a lookup that missed the registry's map.
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
    async fn insert_client(&self, record: &ClientRecord) -> Result<(), StoreError>;
    async fn mark_client_used(&self, client_id: &str) -> Result<(), StoreError>;
    /// Deletes the client only if it was never used, in one statement; true if it was deleted.
    async fn delete_unused_client(&self, client_id: &str) -> Result<bool, StoreError>;
}

/// Remembered consents (`Consents`).
#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// Every consent still valid at `now`, for the actor's start.
    async fn consents(&self, now: u64) -> Result<Vec<ConsentRecord>, StoreError>;
    /// One consent still valid at `now`, for a check that missed the actor's map.
    async fn consent(
        &self,
        subject: &str,
        client_id: &str,
        now: u64,
    ) -> Result<Option<ConsentRecord>, StoreError>;
    /// Merges an approval into the stored consent (an expired one starts afresh) atomically, and
    /// returns the merged record.
    async fn grant_consent(
        &self,
        subject: &str,
        client_id: &str,
        scope: &ScopeSet,
        resource: &str,
        now: u64,
        expires_at: u64,
    ) -> Result<ConsentRecord, StoreError>;
    /// Forgets a consent; true if there was one.
    async fn delete_consent(&self, subject: &str, client_id: &str) -> Result<bool, StoreError>;
    async fn delete_expired_consents(&self, now: u64) -> Result<u64, StoreError>;
}

/// Access tokens revoked before their expiry, by `jti` (`Revocations`).
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Every revocation still in force at `now` (jti, until).
    async fn revocations(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError>;
    async fn is_revoked(&self, jti: &str, now: u64) -> Result<bool, StoreError>;
    /// Records a revocation (an upsert keeping the later expiry).
    async fn revoke(&self, jti: &str, until: u64) -> Result<(), StoreError>;
    async fn delete_expired_revocations(&self, now: u64) -> Result<u64, StoreError>;
}

/// The users who can sign in.
#[async_trait]
pub trait UserStore: Send + Sync {
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Replaces every user with `users` in one transaction.
    async fn replace_users(&self, users: &[UserRecord]) -> Result<(), StoreError>;
}

/// Signing keys (`SigningKeys`).
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Adds a key; fails if one with its id exists.
    async fn insert_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError>;
    /// Records a key's lifecycle times (activation, retirement, removal).
    async fn update_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError>;
    async fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError>;
}

/// Everything the authorization server keeps.
#[async_trait]
pub trait Store:
    ClientStore + ConsentStore + RevocationStore + UserStore + KeyStore + RefreshTokenStore
{
    /// What backs the store, for the log (`sqlite:<path>`, `memory`).
    fn describe(&self) -> String;
    /// True when the store survives the process (the data directory), false for `--in-memory`.
    fn is_durable(&self) -> bool;
    /// True when other processes write to the same store (replicas sharing PostgreSQL): then a
    /// negative answer from an actor's map (a `jti` not in `Revocations`) is confirmed with the
    /// store. An embedded store has one writer, this process, so the maps loaded at start and
    /// written through are complete and a miss is an answer.
    fn is_shared(&self) -> bool {
        false
    }
    /// Waits for pending writes and closes the store; later calls fail.
    async fn close(&self);
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.describe())
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The timer instant of a stored Unix time (now, if it is past).
pub fn instant_of(unix: u64) -> tokio::time::Instant {
    let now = unix_now();
    tokio::time::Instant::now() + std::time::Duration::from_secs(unix.saturating_sub(now))
}

/// The store as the actors hold it.
pub type SharedStore = Arc<dyn Store>;

/// Serialises a list of strings for a text column.
pub(crate) fn to_json_list<S: AsRef<str> + serde::Serialize>(items: &[S]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// Reads a list of strings from a text column.
pub(crate) fn from_json_list(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError(format!("a stored list is corrupt: {e}")))
}

/// Merges an approval into an existing consent (the rule both implementations share).
pub(crate) fn merge_consent(
    existing: Option<ConsentRecord>,
    subject: &str,
    client_id: &str,
    scope: &ScopeSet,
    resource: &str,
    now: u64,
    expires_at: u64,
) -> ConsentRecord {
    let (old_scope, mut resources) = match existing {
        Some(c) if c.expires_at > now => (c.scope, c.resources),
        _ => (ScopeSet::default(), Vec::new()),
    };
    if !resources.iter().any(|r| r == resource) {
        resources.push(resource.to_string());
    }
    resources.sort();
    ConsentRecord {
        subject: subject.to_string(),
        client_id: client_id.to_string(),
        scope: old_scope.union(scope),
        resources,
        expires_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::clients::{ClientKind, NewClient};

    fn client(id: &str) -> Arc<Client> {
        Arc::new(Client::from_metadata(
            id,
            NewClient::public_loopback(),
            ClientKind::Registered,
        ))
    }

    #[test]
    fn client_map_keys_records_by_their_own_id() {
        let mut map = ClientMap::default();
        for i in 0..1000 {
            map.insert(ClientRecord {
                client: client(&format!("c{i}")),
                used: false,
            });
        }
        assert_eq!(map.len(), 1000);
        // Same id: replaced, not added.
        map.insert(ClientRecord {
            client: client("c7"),
            used: true,
        });
        assert_eq!(map.len(), 1000);
        assert!(map.get("c7").is_some_and(|r| r.used));
        assert!(map.get("c8").is_some_and(|r| !r.used));
        assert!(map.get("c1000").is_none());
        if let Some(r) = map.get_mut("c8") {
            r.used = true;
        }
        assert_eq!(map.iter().filter(|r| r.used).count(), 2);
        assert_eq!(
            map.remove("c8").map(|r| r.client.client_id.clone()),
            Some("c8".into())
        );
        assert!(map.remove("c8").is_none());
        assert!(map.get("c8").is_none());
        assert_eq!(map.len(), 999);
    }
}
