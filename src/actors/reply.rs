//! Delegated replies: [`send_reply`] sends one, if the asker still waits for it;
//! [`answer_from_store`] sends it from a task of its own, for work that needs none of the actor's
//! state while it waits. On a store that several servers share, the
//! sessions and codes live in the database, whose conditional writes decide races (between
//! servers, and so between one server's requests too); an actor that waited there for each round
//! trip would hold its mailbox for it, and one browser's request would queue behind another's.

use kameo::Reply;
use kameo::reply::ReplySender;
use std::future::Future;

/// Answers `reply` with what `work` comes to, from a task of its own; the actor goes on with its
/// next message meanwhile. The store's own bounds (its pool and its timeouts) bound the tasks.
pub fn answer_from_store<R, F>(reply: Option<ReplySender<R>>, work: F)
where
    R: Reply,
    F: Future<Output = R> + Send + 'static,
{
    tokio::spawn(async move { send_reply(reply, work.await) });
}

/// Sends `value` to the asker of a delegated reply (none when the message was told, not asked).
pub fn send_reply<R: Reply>(reply: Option<ReplySender<R>>, value: R) {
    if let Some(reply) = reply {
        reply.send(value);
    }
}
