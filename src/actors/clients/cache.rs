//! [`ClientCache`]: the registry's bounded cache of clients, as compact as the store's
//! `ClientMap`: one 16-byte slot per client (the shared record and two flags), no key kept beside
//! it and no links between entries. When it is full, an insertion evicts a client that was not
//! looked up since the last eviction's sweep passed it (CLOCK: a second chance for every client
//! looked up), an approximation of least recently used that costs a bit per client instead of a
//! node of its own with two links (what a linked LRU map costs, about 0.13 KiB per client here).

use crate::oauth::client::Client;
use crate::store::ClientRecord;
use std::hash::BuildHasher;
use std::sync::Arc;

/// A cached client.
pub struct Slot {
    pub client: Arc<Client>,
    /// It completed a flow (a used client is never reaped).
    pub used: bool,
    /// Looked up since the last sweep passed it.
    referenced: bool,
}

/// Clients by id, at most `capacity` of them.
pub struct ClientCache {
    table: hashbrown::HashTable<Slot>,
    hasher: std::hash::RandomState,
    capacity: usize,
}

impl ClientCache {
    pub fn new(capacity: usize) -> Self {
        ClientCache {
            table: hashbrown::HashTable::new(),
            hasher: std::hash::RandomState::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// The client, without counting this as a use of it.
    pub fn peek(&self, client_id: &str) -> Option<&Slot> {
        let hash = self.hasher.hash_one(client_id);
        self.table.find(hash, |s| &*s.client.client_id == client_id)
    }

    /// The client, which is then kept over those not looked up.
    pub fn get(&mut self, client_id: &str) -> Option<&Slot> {
        self.get_mut(client_id).map(|slot| &*slot)
    }

    /// [`Self::get`], to change it.
    pub fn get_mut(&mut self, client_id: &str) -> Option<&mut Slot> {
        let hash = self.hasher.hash_one(client_id);
        let slot = self
            .table
            .find_mut(hash, |s| &*s.client.client_id == client_id)?;
        slot.referenced = true;
        Some(slot)
    }

    /// Inserts the record (replacing one with the same id), evicting another client when full.
    pub fn insert(&mut self, record: ClientRecord) {
        let ClientRecord { client, used } = record;
        let hash = self.hasher.hash_one(&*client.client_id);
        if let Some(slot) = self
            .table
            .find_mut(hash, |s| s.client.client_id == client.client_id)
        {
            *slot = Slot {
                client,
                used,
                referenced: true,
            };
            return;
        }
        if self.table.len() >= self.capacity {
            self.evict_one();
        }
        let hasher = &self.hasher;
        self.table.insert_unique(
            hash,
            Slot {
                client,
                used,
                referenced: false,
            },
            |s| hasher.hash_one(&*s.client.client_id),
        );
    }

    pub fn remove(&mut self, client_id: &str) -> Option<Slot> {
        let hash = self.hasher.hash_one(client_id);
        self.table
            .find_entry(hash, |s| &*s.client.client_id == client_id)
            .ok()
            .map(|entry| entry.remove().0)
    }

    /// The sweep: the first client not looked up since the sweep last passed it leaves; every
    /// one passed on the way loses its second chance. When all had one, the first leaves.
    fn evict_one(&mut self) {
        let mut victim = None;
        for slot in self.table.iter_mut() {
            if !slot.referenced {
                victim = Some(Arc::clone(&slot.client));
                break;
            }
            slot.referenced = false;
        }
        let victim = victim.or_else(|| self.table.iter().next().map(|s| Arc::clone(&s.client)));
        if let Some(client) = victim {
            self.remove(&client.client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::client::{ClientKind, NewClient};

    fn record(id: &str) -> ClientRecord {
        let meta = NewClient::public_loopback();
        ClientRecord {
            client: Arc::new(Client::from_metadata(id, meta, ClientKind::Registered)),
            used: false,
        }
    }

    #[test]
    fn a_slot_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
    }

    #[test]
    fn it_stays_within_its_capacity_and_keeps_the_clients_looked_up() {
        let mut cache = ClientCache::new(100);
        for i in 0..100 {
            cache.insert(record(&format!("c{i}")));
        }
        assert_eq!(cache.len(), 100);
        // Ten hot clients, looked up between every insertion of a new one.
        let hot: Vec<String> = (0..10).map(|i| format!("c{}", i * 7)).collect();
        for i in 100..1_000 {
            for id in &hot {
                assert!(cache.get(id).is_some(), "{id} evicted at {i}");
            }
            cache.insert(record(&format!("c{i}")));
            assert_eq!(cache.len(), 100);
        }
        // Peeking is not a use; replacing keeps the count; removing frees a place.
        assert!(cache.peek("c999").is_some());
        cache.insert(record("c999"));
        assert_eq!(cache.len(), 100);
        assert!(cache.remove("c999").is_some());
        assert!(cache.remove("c999").is_none());
        assert_eq!(cache.len(), 99);
        if let Some(slot) = cache.get_mut(&hot[0]) {
            slot.used = true;
        }
        assert!(cache.peek(&hot[0]).is_some_and(|s| s.used));
    }
}
