//! [`ask`]: the one way handlers and actors send a request to an actor. It never waits for
//! mailbox room (a full mailbox is [`AskError::Busy`], which the HTTP layer answers with 503 and
//! `Retry-After`), bounds the wait for the reply ([`REPLY_TIMEOUT`]), and writes the flow-trace
//! line for the message: actor, message (secrets as fingerprints), outcome and duration. It has a
//! file of its own so that an actor can use it without importing `actors/mod.rs`, which gathers
//! the actors (that would be an import circle).

use kameo::Reply;
use kameo::actor::{Actor, ActorRef};
use kameo::error::SendError;
use kameo::message::Message;
use std::fmt::Debug;
use std::time::Duration;

/// How long a handler waits for an actor's reply before answering 503.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an actor did not answer a request.
#[derive(Debug, thiserror::Error)]
pub enum AskError<E> {
    /// The actor's mailbox is full: shed the request (503, Retry-After).
    #[error("the {0} actor is busy")]
    Busy(&'static str),
    /// The actor is stopped or restarting, or did not reply in time.
    #[error("the {0} actor is unavailable")]
    Unavailable(&'static str),
    /// The actor answered with an error of its own.
    #[error("rejected")]
    Rejected(E),
}

type ReplyOk<A, M> = <<A as Message<M>>::Reply as Reply>::Ok;
type ReplyErr<A, M> = <<A as Message<M>>::Reply as Reply>::Error;

/// Sends `msg` to `actor` and waits for the reply, tracing the exchange.
pub async fn ask<A, M>(
    actor: &ActorRef<A>,
    msg: M,
) -> Result<ReplyOk<A, M>, AskError<ReplyErr<A, M>>>
where
    A: Actor + Message<M>,
    M: Send + Debug + 'static,
    ReplyErr<A, M>: Debug,
{
    let name = <A as Actor>::name();
    let described = tracing::enabled!(tracing::Level::INFO).then(|| format!("{msg:?}"));
    let started = std::time::Instant::now();
    let result = actor.ask(msg).reply_timeout(REPLY_TIMEOUT).try_send().await;
    let micros = started.elapsed().as_micros() as u64;
    let described = described.unwrap_or_default();
    match result {
        Ok(reply) => {
            tracing::info!(outcome = "ok", us = micros, "{name} <- {described}");
            Ok(reply)
        }
        Err(SendError::HandlerError(err)) => {
            tracing::info!(outcome = ?err, us = micros, "{name} <- {described}");
            Err(AskError::Rejected(err))
        }
        Err(SendError::MailboxFull(_)) => {
            tracing::warn!(
                actor = name,
                outcome = "mailbox full",
                "{name} <- {described}"
            );
            Err(AskError::Busy(name))
        }
        Err(err) => {
            tracing::warn!(actor = name, outcome = %err_kind(&err), "{name} <- {described}");
            Err(AskError::Unavailable(name))
        }
    }
}

fn err_kind<M, E>(err: &SendError<M, E>) -> &'static str {
    match err {
        SendError::ActorNotRunning(_) => "not running",
        SendError::ActorStopped => "stopped",
        SendError::ActorRestarting(_) => "restarting",
        SendError::MailboxFull(_) => "mailbox full",
        SendError::HandlerError(_) => "handler error",
        SendError::Timeout(_) => "timed out",
    }
}
