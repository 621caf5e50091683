//! [`ask`]: the one way handlers and actors send a request to an actor. It never waits for
//! mailbox room (a full mailbox is [`AskError::Busy`], which the HTTP layer answers with 503 and
//! `Retry-After`), bounds the wait for the reply ([`REPLY_TIMEOUT`]), and writes the flow-trace
//! line for the message: actor, message (secrets as fingerprints), outcome and duration. It has a
//! file of its own so that an actor can use it without importing `actors/mod.rs`, which gathers
//! the actors (that would be an import circle).
//!
//! [`ask_deferred`] holds the line back ([`Deferred`]) until the caller drops it: a request learns
//! which flow it belongs to only from an answer (the parked request, the code's grant, the
//! token's claims), and the lines of the messages that led there are written once the flow is
//! recorded on the request's span, so they carry it too.

use kameo::Reply;
use kameo::actor::{Actor, ActorRef};
use kameo::error::SendError;
use kameo::message::Message;
use std::cell::RefCell;
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
    ask_deferred(actor, msg).await.0
}

/// A trace line held back: written when this is dropped.
#[must_use = "the line is written when this is dropped"]
pub struct Deferred(Option<Line>);

struct Line {
    actor: &'static str,
    /// The message's `Debug`, formatted before it was sent.
    message: String,
    outcome: std::borrow::Cow<'static, str>,
    micros: Option<u64>,
    warn: bool,
}

impl Deferred {
    /// Writes the line now.
    pub fn write(self) {}
}

impl Drop for Deferred {
    fn drop(&mut self) {
        let Some(line) = self.0.take() else { return };
        let Line {
            actor,
            message,
            outcome,
            micros,
            warn,
        } = line;
        let outcome = outcome.as_ref();
        match (warn, micros) {
            (false, Some(us)) => tracing::info!(outcome, us, "{actor} <- {message}"),
            (false, None) => tracing::info!(outcome, "{actor} <- {message}"),
            (true, _) => tracing::warn!(outcome, "{actor} <- {message}"),
        }
    }
}

/// [`ask`], with the trace line held back until the returned [`Deferred`] is dropped.
pub async fn ask_deferred<A, M>(
    actor: &ActorRef<A>,
    msg: M,
) -> (Result<ReplyOk<A, M>, AskError<ReplyErr<A, M>>>, Deferred)
where
    A: Actor + Message<M>,
    M: Send + Debug + 'static,
    ReplyErr<A, M>: Debug,
{
    let name = <A as Actor>::name();
    let described = tracing::enabled!(tracing::Level::INFO).then(|| format!("{msg:?}"));
    let started = std::time::Instant::now();
    let result = actor.ask(msg).reply_timeout(REPLY_TIMEOUT).try_send().await;
    let elapsed = started.elapsed();
    let micros = elapsed.as_micros() as u64;
    let outcome = match &result {
        Ok(_) => Outcome::Ok,
        Err(SendError::HandlerError(_)) => Outcome::Rejected,
        Err(SendError::MailboxFull(_)) => Outcome::Busy,
        Err(_) => Outcome::Unavailable,
    };
    // The reply may resume on another worker thread: the handles are that thread's.
    with_metrics(name, |m| {
        m.messages[outcome as usize].increment(1);
        m.duration.record(elapsed.as_secs_f64());
    });
    // An info line only when info is on; a warning always.
    let line = |outcome: std::borrow::Cow<'static, str>, micros: Option<u64>, warn: bool| {
        Deferred((warn || described.is_some()).then(|| Line {
            actor: name,
            message: described.unwrap_or_default(),
            outcome,
            micros,
            warn,
        }))
    };
    match result {
        Ok(reply) => (Ok(reply), line("ok".into(), Some(micros), false)),
        Err(SendError::HandlerError(err)) => {
            let deferred = line(format!("{err:?}").into(), Some(micros), false);
            (Err(AskError::Rejected(err)), deferred)
        }
        Err(SendError::MailboxFull(_)) => (
            Err(AskError::Busy(name)),
            line("mailbox full".into(), None, true),
        ),
        Err(err) => (
            Err(AskError::Unavailable(name)),
            line(err_kind(&err).into(), None, true),
        ),
    }
}

/// How an ask ended, as the `outcome` label says it.
#[derive(Clone, Copy)]
enum Outcome {
    Ok,
    Rejected,
    Busy,
    Unavailable,
}

const OUTCOMES: [&str; 4] = ["ok", "rejected", "busy", "unavailable"];

/// One actor's metric handles.
struct ActorMetrics {
    messages: [metrics::Counter; 4],
    duration: metrics::Histogram,
}

thread_local! {
    /// Each worker thread's handles, by actor: resolved once per thread and actor, then recorded
    /// into directly (atomic adds) instead of finding each series by its labels on every
    /// message. Per thread, so nothing is shared or locked.
    /// A list, not a map: there are a couple of dozen actors, and a name is nearly always found
    /// by comparing pointers (each actor's name is one static string), cheaper than hashing it.
    static ACTOR_METRICS: RefCell<Vec<(&'static str, ActorMetrics)>> = const { RefCell::new(Vec::new()) };
}

fn with_metrics(name: &'static str, record: impl FnOnce(&ActorMetrics)) {
    ACTOR_METRICS.with_borrow_mut(|actors| {
        let found = actors
            .iter()
            .position(|(n, _)| std::ptr::eq(*n, name) || *n == name);
        let index = found.unwrap_or_else(|| {
            actors.push((
                name,
                ActorMetrics {
                    messages: OUTCOMES.map(|outcome| {
                        metrics::counter!("mcp_oauth_actor_messages_total", "actor" => name, "outcome" => outcome)
                    }),
                    duration: metrics::histogram!("mcp_oauth_actor_message_duration_seconds", "actor" => name),
                },
            ));
            actors.len() - 1
        });
        record(&actors[index].1);
    });
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

/// Sends `msg` to `actor` without waiting for it to be handled, for a message whose loss costs
/// only work done again (a hint that saves a later ask): a full mailbox or a stopped actor drops
/// it, with a warning. Traced like [`ask`], with the outcome `sent`.
pub fn tell<A, M>(actor: &ActorRef<A>, msg: M)
where
    A: Actor + Message<M>,
    M: Send + Debug + 'static,
{
    let name = <A as Actor>::name();
    let described = tracing::enabled!(tracing::Level::INFO).then(|| format!("{msg:?}"));
    let sent = actor.tell(msg).try_send();
    let outcome = match &sent {
        Ok(()) => Outcome::Ok,
        Err(SendError::MailboxFull(_)) => Outcome::Busy,
        Err(_) => Outcome::Unavailable,
    };
    with_metrics(name, |m| m.messages[outcome as usize].increment(1));
    match (sent, described) {
        (Ok(()), Some(message)) => tracing::info!(outcome = "sent", "{name} <- {message}"),
        (Ok(()), None) => {}
        (Err(err), _) => {
            let message = std::any::type_name::<M>()
                .rsplit("::")
                .next()
                .unwrap_or("?");
            tracing::warn!(outcome = err_kind(&err), "{name} <- {message} dropped");
        }
    }
}
