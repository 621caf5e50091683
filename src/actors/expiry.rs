//! The one expiry queue every actor uses, after tokio-rs/mini-redis `src/db.rs`: entries are
//! ordered by `(deadline, sequence)` in a `BTreeMap`, and one timer task per actor sleeps until
//! the earliest deadline, then tells the actor [`Sweep`]. Scheduling an earlier deadline re-arms
//! the timer; there is never a task per entry.
//!
//! The queue only says which keys are due. Entries removed early (a redeemed code, a logged-out
//! session) stay in the queue until their deadline, and the actor ignores keys it no longer has or
//! whose entry now expires later; actors also check `expires_at` on every read, so an entry is
//! never served past its deadline even before the sweep removes it.

use kameo::actor::{Actor, ActorRef};
use kameo::message::Message;
use std::collections::BTreeMap;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Tells an actor that some of its entries are due.
#[derive(Debug, Clone, Copy)]
pub struct Sweep;

/// Deadlines of one actor's entries, and the actor's one timer.
pub struct ExpiryQueue<K> {
    due: BTreeMap<(Instant, u64), K>,
    seq: u64,
    armed: Option<(Instant, AbortHandle)>,
}

impl<K> Default for ExpiryQueue<K> {
    fn default() -> Self {
        ExpiryQueue {
            due: BTreeMap::new(),
            seq: 0,
            armed: None,
        }
    }
}

impl<K> ExpiryQueue<K> {
    /// Remembers that `key` is due at `at`, re-arming the timer when this is the earliest deadline.
    pub fn schedule<A>(&mut self, at: Instant, key: K, actor: &ActorRef<A>)
    where
        A: Actor + Message<Sweep>,
    {
        self.seq = self.seq.wrapping_add(1);
        self.due.insert((at, self.seq), key);
        self.arm(actor);
    }

    /// Removes and returns every key due at or before `now`, and re-arms the timer for the next
    /// deadline. Call this from the actor's `Sweep` handler.
    pub fn pop_due<A>(&mut self, now: Instant, actor: &ActorRef<A>) -> Vec<K>
    where
        A: Actor + Message<Sweep>,
    {
        let later = self.due.split_off(&(now, u64::MAX));
        let due = std::mem::replace(&mut self.due, later);
        if let Some((_, handle)) = self.armed.take() {
            handle.abort();
        }
        self.arm(actor);
        due.into_values().collect()
    }

    /// How many deadlines are queued (including those of entries removed early).
    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    fn arm<A>(&mut self, actor: &ActorRef<A>)
    where
        A: Actor + Message<Sweep>,
    {
        let Some(&(next, _)) = self.due.keys().next() else {
            return;
        };
        if let Some((armed_at, _)) = &self.armed
            && *armed_at <= next
        {
            return;
        }
        if let Some((_, handle)) = self.armed.take() {
            handle.abort();
        }
        let weak = actor.downgrade();
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(next).await;
            if let Some(actor) = weak.upgrade() {
                let _ = actor.tell(Sweep).send().await;
            }
        });
        self.armed = Some((next, task.abort_handle()));
    }
}

/// A task an actor owns beside its timer (a fetch loop, a ticker): aborted when the actor's state
/// is dropped, on stop or on a restart after a panic, so a restarted actor never has two.
pub struct OwnedTask(pub tokio::task::JoinHandle<()>);

impl Drop for OwnedTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<K> Drop for ExpiryQueue<K> {
    fn drop(&mut self) {
        if let Some((_, handle)) = self.armed.take() {
            handle.abort();
        }
    }
}
