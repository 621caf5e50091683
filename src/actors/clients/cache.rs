//! [`ClientCache`]: the registry's bounded cache of clients, compact like the store's
//! `ClientMap`: the clients in one array of 16-byte slots (the shared record and two flags), and
//! an index from id to slot of 4 bytes a client; no key is kept beside a record and no links
//! between records. When it is full, an insertion takes the place of a client that was not looked
//! up since the clock's hand last passed it (CLOCK: every client looked up gets a second chance),
//! an approximation of least recently used that costs a bit per client instead of a node of its
//! own with two links (what a linked LRU map costs, about 0.1 KiB per client).

use crate::oauth::client::Client;
use crate::store::ClientRecord;
use std::hash::BuildHasher;
use std::sync::Arc;

/// A cached client.
pub struct Slot {
    pub client: Arc<Client>,
    /// It completed a flow (a used client is never reaped).
    pub used: bool,
    /// Looked up since the hand last passed it.
    referenced: bool,
}

/// Clients by id, at most `capacity` of them.
pub struct ClientCache {
    slots: Vec<Slot>,
    /// The position in `slots` of each client, found by the hash of its id.
    index: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
    capacity: usize,
    /// The clock's hand: the next slot an eviction looks at.
    hand: usize,
}

impl ClientCache {
    pub fn new(capacity: usize) -> Self {
        ClientCache {
            slots: Vec::new(),
            index: hashbrown::HashTable::new(),
            hasher: std::hash::RandomState::new(),
            capacity: capacity.clamp(1, u32::MAX as usize),
            hand: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    fn position(&self, client_id: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(client_id);
        let slots = &self.slots;
        (self.index)
            .find(hash, |&i| &*slots[i as usize].client.client_id == client_id)
            .map(|&i| i as usize)
    }

    /// The client, without counting this as a use of it.
    pub fn peek(&self, client_id: &str) -> Option<&Slot> {
        self.position(client_id).map(|i| &self.slots[i])
    }

    /// The client, which is then kept over those not looked up.
    pub fn get(&mut self, client_id: &str) -> Option<&Slot> {
        self.get_mut(client_id).map(|slot| &*slot)
    }

    /// [`Self::get`], to change it.
    pub fn get_mut(&mut self, client_id: &str) -> Option<&mut Slot> {
        let i = self.position(client_id)?;
        let slot = &mut self.slots[i];
        slot.referenced = true;
        Some(slot)
    }

    /// Inserts the record (replacing one with the same id). When the cache is full, the new
    /// client takes the place of the one the hand stops at, just behind the hand: it stays at
    /// least until the hand has gone round once.
    pub fn insert(&mut self, record: ClientRecord) {
        let ClientRecord { client, used } = record;
        if let Some(i) = self.position(&client.client_id) {
            self.slots[i] = Slot {
                client,
                used,
                referenced: true,
            };
            return;
        }
        let slot = Slot {
            client,
            used,
            referenced: false,
        };
        let i = if self.slots.len() >= self.capacity {
            let i = self.stop_hand();
            let old = Arc::clone(&self.slots[i].client);
            self.unindex(&old.client_id, i);
            self.slots[i] = slot;
            self.hand = (i + 1) % self.slots.len();
            i
        } else {
            self.slots.push(slot);
            self.slots.len() - 1
        };
        let hash = self.hasher.hash_one(&*self.slots[i].client.client_id);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, i as u32, |&j| {
            hasher.hash_one(&*slots[j as usize].client.client_id)
        });
    }

    pub fn remove(&mut self, client_id: &str) -> Option<Slot> {
        let i = self.position(client_id)?;
        self.unindex(client_id, i);
        let last = self.slots.len() - 1;
        let removed = self.slots.swap_remove(i);
        if i != last {
            // The last slot moved into the freed one: its index follows it.
            let hash = self.hasher.hash_one(&*self.slots[i].client.client_id);
            if let Some(moved) = self.index.find_mut(hash, |&j| j as usize == last) {
                *moved = i as u32;
            }
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
        Some(removed)
    }

    /// Removes the index entry of `client_id`, at position `i`.
    fn unindex(&mut self, client_id: &str, i: usize) {
        let hash = self.hasher.hash_one(client_id);
        if let Ok(entry) = self.index.find_entry(hash, |&j| j as usize == i) {
            entry.remove();
        }
    }

    /// Moves the hand to the first client not looked up since it last passed, taking their
    /// second chance from those it passes on the way (within one turn, at most two).
    fn stop_hand(&mut self) -> usize {
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let slot = &mut self.slots[self.hand];
            if !slot.referenced {
                return self.hand;
            }
            slot.referenced = false;
            self.hand += 1;
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

    /// Registrations only, nothing looked up: the newest clients are the ones kept (each takes
    /// the place behind the hand), and every id still finds its own record after the moves.
    #[test]
    fn without_lookups_the_newest_clients_stay() {
        let mut cache = ClientCache::new(50);
        for i in 0..1_000 {
            cache.insert(record(&format!("c{i}")));
            let newest = format!("c{i}");
            assert!(cache.peek(&newest).is_some(), "{newest} evicted at once");
        }
        let kept = (0..1_000)
            .filter(|i| cache.peek(&format!("c{i}")).is_some())
            .count();
        assert_eq!(kept, 50);
        assert!((950..1_000).all(|i| cache.peek(&format!("c{i}")).is_some()));
        // Removing from the middle moves the last slot: both still found, by their own ids.
        assert!(cache.remove("c960").is_some());
        for i in (950..1_000).filter(|&i| i != 960) {
            let id = format!("c{i}");
            assert_eq!(
                cache.peek(&id).map(|s| &*s.client.client_id),
                Some(id.as_str())
            );
        }
        assert_eq!(cache.len(), 49);
        cache.insert(record("new"));
        cache.insert(record("newer"));
        assert!(cache.peek("new").is_some() && cache.peek("newer").is_some());
        assert_eq!(cache.len(), 50);
    }
}
