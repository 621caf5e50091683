//! Delegated replies: [`send_reply`] sends one, if the asker still waits for it;
//! [`StoreTasks::answer`] sends it from a task of its own, for work that needs none of the actor's
//! state while it waits. On a store that several servers share, the sessions and codes live in
//! the database, whose conditional writes decide races (between servers, and so between one
//! server's requests too); an actor that waited there for each round trip would hold its mailbox
//! for it, and one browser's request would queue behind another's.
//!
//! Each actor bounds its tasks ([`MAX_STORE_TASKS`]): a database that stalls (a network path that
//! accepts and never answers) holds up that many tasks, and every request beyond them is answered
//! at once that the store is unavailable, instead of a task waiting for each one for as long as the
//! stall lasts.

use kameo::Reply;
use kameo::reply::ReplySender;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Most tasks one actor answers from at once.
pub const MAX_STORE_TASKS: usize = 1024;

/// The tasks an actor answers from: at most a set number at once.
pub struct StoreTasks {
    permits: Arc<Semaphore>,
}

impl StoreTasks {
    /// At most `limit` tasks at once.
    pub fn new(limit: usize) -> Self {
        StoreTasks {
            permits: Arc::new(Semaphore::new(limit)),
        }
    }

    /// Answers `reply` with what `work` comes to, from a task of its own; the actor goes on with
    /// its next message meanwhile. With every task taken, `reply` is answered `busy` at once and
    /// `work` is dropped unstarted: `false`.
    pub fn answer<R, F>(&self, reply: Option<ReplySender<R>>, work: F, busy: R) -> bool
    where
        R: Reply,
        F: Future<Output = R> + Send + 'static,
    {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    send_reply(reply, work.await);
                    drop(permit);
                });
                true
            }
            Err(_) => {
                send_reply(reply, busy);
                false
            }
        }
    }
}

/// Sends `value` to the asker of a delegated reply (none when the message was told, not asked).
pub fn send_reply<R: Reply>(reply: Option<ReplySender<R>>, value: R) {
    if let Some(reply) = reply {
        reply.send(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kameo::actor::{Actor, ActorRef, Spawn};
    use kameo::error::Infallible;
    use kameo::message::{Context, Message};
    use kameo::reply::DelegatedReply;
    use std::time::Duration;
    use tokio::sync::Notify;

    /// Answers each [`Wait`] from a task that waits for the gate to open: `true`; `false` when
    /// every task was taken.
    struct Gated {
        tasks: StoreTasks,
        gate: Arc<Notify>,
    }

    impl Actor for Gated {
        type Args = (usize, Arc<Notify>);
        type Error = Infallible;

        async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Infallible> {
            Ok(Gated {
                tasks: StoreTasks::new(args.0),
                gate: args.1,
            })
        }
    }

    struct Wait;

    impl Message<Wait> for Gated {
        type Reply = DelegatedReply<bool>;

        async fn handle(&mut self, _: Wait, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
            let (delegated, reply) = ctx.reply_sender();
            let gate = Arc::clone(&self.gate);
            let wait = async move {
                gate.notified().await;
                true
            };
            self.tasks.answer(reply, wait, false);
            delegated
        }
    }

    #[tokio::test]
    async fn beyond_its_tasks_an_actor_answers_busy_at_once_and_takes_tasks_again_once_freed() {
        let gate = Arc::new(Notify::new());
        let actor = Gated::spawn((2, Arc::clone(&gate)));
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let actor = actor.clone();
                tokio::spawn(async move { actor.ask(Wait).await.unwrap() })
            })
            .collect();
        // Both tasks are taken (each waits at the gate) before the third asks.
        let taken = tokio::time::timeout(Duration::from_secs(5), async {
            while actor_tasks(&actor).await.available_permits() > 0 {
                tokio::task::yield_now().await;
            }
        });
        assert!(taken.await.is_ok());
        let third = tokio::time::timeout(Duration::from_secs(5), actor.ask(Wait)).await;
        assert!(matches!(third, Ok(Ok(false))), "answered busy at once");
        gate.notify_waiters();
        for answer in waiting {
            assert!(answer.await.unwrap());
        }
        // The tasks are free again.
        let again = tokio::spawn({
            let actor = actor.clone();
            async move { actor.ask(Wait).await.unwrap() }
        });
        let opened = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                gate.notify_waiters();
                if again.is_finished() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        });
        assert!(opened.await.is_ok());
        assert!(again.await.unwrap());
    }

    /// The semaphore of the actor's tasks.
    struct Permits;

    impl Message<Permits> for Gated {
        type Reply = Arc<Semaphore>;

        async fn handle(&mut self, _: Permits, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
            Arc::clone(&self.tasks.permits)
        }
    }

    async fn actor_tasks(actor: &ActorRef<Gated>) -> Arc<Semaphore> {
        actor.ask(Permits).await.unwrap()
    }
}
