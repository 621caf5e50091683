//! The one expiry queue every actor uses, after tokio-rs/mini-redis `src/db.rs`: entries are
//! ordered by `(deadline, sequence)`, and one timer task per actor sleeps until the earliest
//! deadline, then tells the actor [`Sweep`]. Scheduling an earlier deadline re-arms the timer;
//! there is never a task per entry.
//!
//! The queue only says which keys are due. Entries removed early (a redeemed code, a logged-out
//! session) stay in the queue until their deadline, and the actor ignores keys it no longer has or
//! whose entry now expires later; actors also check `expires_at` on every read, so an entry is
//! never served past its deadline even before the sweep removes it.
//!
//! The entries are a binary heap in one array rather than mini-redis's `BTreeMap`: the queue is
//! only ever asked for its earliest deadline, and a registry holds one entry per registered
//! client, so the bytes per entry count (a B-tree's leaves, filled in deadline order, stay about
//! half full).

use kameo::actor::{Actor, ActorRef};
use kameo::message::Message;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Tells an actor that some of its entries are due.
#[derive(Debug, Clone, Copy)]
pub struct Sweep;

/// One entry: ordered by its deadline, then by when it was scheduled, whatever its key.
struct Deadline<K> {
    at: Instant,
    seq: u64,
    key: K,
}

impl<K> PartialEq for Deadline<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<K> Eq for Deadline<K> {}

impl<K> PartialOrd for Deadline<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Deadline<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Deadlines of one actor's entries, and the actor's one timer.
pub struct ExpiryQueue<K> {
    /// The earliest deadline on top.
    due: BinaryHeap<Reverse<Deadline<K>>>,
    seq: u64,
    armed: Option<(Instant, AbortHandle)>,
}

impl<K> Default for ExpiryQueue<K> {
    fn default() -> Self {
        ExpiryQueue {
            due: BinaryHeap::new(),
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
        self.due.push(Reverse(Deadline {
            at,
            seq: self.seq,
            key,
        }));
        self.arm(actor);
    }

    /// Removes and returns every key due at or before `now`, earliest first, and re-arms the timer
    /// for the next deadline. Call this from the actor's `Sweep` handler.
    pub fn pop_due<A>(&mut self, now: Instant, actor: &ActorRef<A>) -> Vec<K>
    where
        A: Actor + Message<Sweep>,
    {
        let mut keys = Vec::new();
        while self.due.peek().is_some_and(|Reverse(next)| next.at <= now) {
            if let Some(Reverse(due)) = self.due.pop() {
                keys.push(due.key);
            }
        }
        // A queue that was once much longer gives its room back.
        if self.due.capacity() > 4 * self.due.len().max(256) {
            self.due.shrink_to(2 * self.due.len());
        }
        if let Some((_, handle)) = self.armed.take() {
            handle.abort();
        }
        self.arm(actor);
        keys
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
        let Some(Reverse(Deadline { at: next, .. })) = self.due.peek() else {
            return;
        };
        let next = *next;
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

#[cfg(test)]
mod tests {
    use super::*;
    use kameo::actor::Spawn;
    use kameo::error::Infallible;
    use kameo::message::Context;
    use std::time::Duration;

    /// An actor that owns a queue and records, at each sweep, the keys that came due.
    struct Owner {
        queue: ExpiryQueue<u32>,
        swept: Vec<Vec<u32>>,
    }

    impl Actor for Owner {
        type Args = ();
        type Error = Infallible;

        async fn on_start(_: (), _: ActorRef<Self>) -> Result<Self, Infallible> {
            Ok(Owner {
                queue: ExpiryQueue::default(),
                swept: Vec::new(),
            })
        }
    }

    impl Message<Sweep> for Owner {
        type Reply = ();

        async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, ()>) {
            let due = self.queue.pop_due(Instant::now(), ctx.actor_ref());
            self.swept.push(due);
        }
    }

    /// Schedules `key` in `after` from now.
    struct Schedule(Duration, u32);

    impl Message<Schedule> for Owner {
        type Reply = ();

        async fn handle(&mut self, msg: Schedule, ctx: &mut Context<Self, ()>) {
            let at = Instant::now() + msg.0;
            self.queue.schedule(at, msg.1, ctx.actor_ref());
        }
    }

    /// What was swept so far, and how many deadlines are queued.
    struct Report;

    impl Message<Report> for Owner {
        type Reply = (Vec<Vec<u32>>, usize);

        async fn handle(&mut self, _: Report, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
            (self.swept.clone(), self.queue.len())
        }
    }

    /// Keys come due by deadline, those of one deadline in the order they were scheduled; one
    /// sweep takes everything due by then; an earlier deadline scheduled later re-arms the timer.
    #[tokio::test(start_paused = true)]
    async fn keys_come_due_in_deadline_order_and_an_earlier_one_rearms_the_timer() {
        let owner = Owner::spawn(());
        let s = Duration::from_secs;
        for (after, key) in [(s(30), 3), (s(10), 1), (s(10), 2), (s(60), 6), (s(20), 4)] {
            owner.ask(Schedule(after, key)).await.unwrap();
        }
        tokio::time::sleep(s(11)).await;
        assert_eq!(owner.ask(Report).await.unwrap(), (vec![vec![1, 2]], 3));
        // Earlier than the armed 20 s.
        owner.ask(Schedule(s(2), 9)).await.unwrap();
        tokio::time::sleep(s(3)).await;
        let (swept, left) = owner.ask(Report).await.unwrap();
        assert_eq!((swept.last(), left), (Some(&vec![9]), 3));
        tokio::time::sleep(s(17)).await;
        let (swept, left) = owner.ask(Report).await.unwrap();
        assert_eq!((&swept[2..], left), (&[vec![4], vec![3]][..], 1));
        tokio::time::sleep(s(40)).await;
        let (swept, left) = owner.ask(Report).await.unwrap();
        assert_eq!((swept.last(), left), (Some(&vec![6]), 0));
    }

    /// A queue that held many deadlines gives its room back once they are due.
    #[tokio::test(start_paused = true)]
    async fn a_drained_queue_gives_its_room_back() {
        let owner = Owner::spawn(());
        for key in 0..10_000 {
            owner
                .ask(Schedule(Duration::from_secs(1), key))
                .await
                .unwrap();
        }
        owner
            .ask(Schedule(Duration::from_secs(100), 1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (swept, left) = owner.ask(Report).await.unwrap();
        assert_eq!((swept.concat().len(), left), (10_000, 1));
        let capacity = owner.ask(Capacity).await.unwrap();
        assert!(capacity <= 1024, "{capacity} slots kept for one deadline");
    }

    struct Capacity;

    impl Message<Capacity> for Owner {
        type Reply = usize;

        async fn handle(&mut self, _: Capacity, _: &mut Context<Self, usize>) -> usize {
            self.queue.due.capacity()
        }
    }
}
