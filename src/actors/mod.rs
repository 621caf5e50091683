//! The actors that own all mutable state of both servers, and the one helper through which the
//! HTTP handlers talk to them.
//!
//! Authorization server: [`ClientRegistry`], [`ClientMetadataDocuments`], [`AuthorizationCodes`],
//! [`Consents`], [`Sessions`], [`SigningKeys`] (with its [`TokenSigner`] pool), [`RefreshTokens`],
//! [`Revocations`], [`Throttle`], [`Users`], and [`StoreChanges`], which applies the changes
//! `mcp-oauth admin` makes to the store. Resource server: [`JwksCache`], [`McpSessions`],
//! [`RevocationFeed`], [`IntrospectionCache`], [`notes::Notes`] (the tools' notes).
//!
//! Every actor runs under a [`Supervisor`] that restarts it if it panics, with a bounded mailbox.
//! Handlers use [`ask()`]: it never waits for mailbox room (a full mailbox is [`AskError::Busy`],
//! which the HTTP layer answers with 503 and `Retry-After`), bounds the wait for the reply, and
//! writes the flow-trace line for the message: actor, message (secrets as fingerprints), outcome
//! and duration.
//!
//! `ClientRegistry`, `Consents`, `Revocations` and `SigningKeys` write through to the store
//! (`crate::store`): they load what they own in `on_start` (so a restart by the supervisor loses
//! nothing) and answer a change only once the store has committed it. [`Flush`] is the barrier
//! shutdown sends them before closing the store.

pub mod ask;
pub mod client_assertions;
pub mod client_metadata;
pub mod clients;
pub mod codes;
pub mod consents;
pub mod expiry;
pub mod identity_providers;
pub mod introspection_cache;
pub mod jwks_cache;
pub mod mcp_sessions;
pub mod notes;
pub mod refresh_tokens;
pub mod reply;
pub mod revocation_feed;
pub mod revocations;
pub mod sessions;
pub mod signing_keys;
pub mod store_changes;
pub mod throttle;
pub mod token_signer;
pub mod transaction;
pub mod upstream_exchange;
pub mod users;

pub use client_metadata::ClientMetadataDocuments;
pub use clients::ClientRegistry;
pub use codes::AuthorizationCodes;
pub use consents::Consents;
pub use identity_providers::IdentityProviders;
pub use introspection_cache::IntrospectionCache;
pub use jwks_cache::JwksCache;
pub use mcp_sessions::McpSessions;
pub use refresh_tokens::RefreshTokens;
pub use revocation_feed::RevocationFeed;
pub use revocations::Revocations;
pub use sessions::Sessions;
pub use signing_keys::SigningKeys;
pub use store_changes::StoreChanges;
pub use throttle::Throttle;
pub use token_signer::{SignerPool, TokenSigner};
pub use users::Users;

pub use ask::{AskError, Deferred, REPLY_TIMEOUT, ask, ask_deferred, tell};

use kameo::actor::{Actor, ActorRef, Spawn};
use kameo::error::Infallible;
use kameo::mailbox;
use kameo::message::Message;
use kameo::supervision::RestartPolicy;
use std::time::Duration;

/// Mailbox capacity of every actor: room for bursts, small enough that a flood is shed (503)
/// instead of queued without bound.
pub const MAILBOX_CAPACITY: usize = 1024;

/// A barrier: answered once the actor has handled every message sent before it. Shutdown sends
/// it to the actors that write to the store before closing the store.
#[derive(Debug, Clone, Copy)]
pub struct Flush;

macro_rules! flushable {
    ($($actor:ty),*) => {$(
        impl Message<Flush> for $actor {
            type Reply = ();
            async fn handle(&mut self, _: Flush, _: &mut kameo::message::Context<Self, ()>) {}
        }
    )*};
}

flushable!(
    ClientRegistry,
    Consents,
    RefreshTokens,
    Revocations,
    SigningKeys
);

/// The parent of a server's actors: restarts a child that panics (up to five times in ten
/// seconds) with the arguments it was first given.
pub struct Supervisor;

impl Actor for Supervisor {
    type Args = ();
    type Error = Infallible;

    fn name() -> &'static str {
        "Supervisor"
    }

    async fn on_start(_: (), _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Supervisor)
    }
}

impl Supervisor {
    pub fn start() -> ActorRef<Supervisor> {
        Supervisor::spawn(())
    }
}

/// Spawns `A` under `supervisor` with a bounded mailbox, restarted when it panics.
pub async fn spawn_supervised<A>(supervisor: &ActorRef<Supervisor>, args: A::Args) -> ActorRef<A>
where
    A: Actor,
    A::Args: Clone + Sync,
{
    let actor = A::supervise(supervisor, args)
        .restart_policy(RestartPolicy::Permanent)
        .restart_limit(5, Duration::from_secs(10))
        .spawn_with_mailbox(mailbox::bounded(MAILBOX_CAPACITY))
        .await;
    tokio::spawn(sample_mailbox_depth(actor.downgrade()));
    actor
}

/// How often each actor's mailbox depth is sampled for `/metrics`.
const MAILBOX_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Sets `mcp_oauth_actor_mailbox_depth{actor}` to the messages waiting in the actor's mailbox,
/// every second while the actor lives: a sample costs nothing per message.
async fn sample_mailbox_depth<A: Actor>(actor: kameo::actor::WeakActorRef<A>) {
    let depth = metrics::gauge!("mcp_oauth_actor_mailbox_depth", "actor" => A::name());
    let mut every = tokio::time::interval(MAILBOX_SAMPLE_INTERVAL);
    loop {
        every.tick().await;
        let Some(actor) = actor.upgrade() else {
            return;
        };
        let mailbox = actor.mailbox_sender();
        if let (Some(room), Some(size)) = (mailbox.capacity(), mailbox.max_capacity()) {
            depth.set(size.saturating_sub(room) as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kameo::message::Context;

    /// A test actor: counts pings, can block its handler, and can panic.
    struct Probe {
        pings: u32,
    }

    impl Actor for Probe {
        type Args = ();
        type Error = Infallible;
        async fn on_start(_: (), _: ActorRef<Self>) -> Result<Self, Self::Error> {
            Ok(Probe { pings: 0 })
        }
    }

    #[derive(Debug)]
    struct Ping;
    #[derive(Debug)]
    struct Block(Duration);
    #[derive(Debug)]
    struct Explode;

    impl Message<Ping> for Probe {
        type Reply = u32;
        async fn handle(&mut self, _: Ping, _: &mut Context<Self, u32>) -> u32 {
            self.pings += 1;
            self.pings
        }
    }

    impl Message<Block> for Probe {
        type Reply = ();
        async fn handle(&mut self, msg: Block, _: &mut Context<Self, ()>) {
            tokio::time::sleep(msg.0).await;
        }
    }

    impl Message<Explode> for Probe {
        type Reply = ();
        async fn handle(&mut self, _: Explode, _: &mut Context<Self, ()>) {
            panic!("boom");
        }
    }

    #[tokio::test]
    async fn a_full_mailbox_is_busy_not_a_wait() {
        let probe = Probe::spawn_with_mailbox((), mailbox::bounded(1));
        // One message in the handler, one waiting: the mailbox is full.
        probe.tell(Block(Duration::from_secs(3600))).await.unwrap();
        tokio::task::yield_now().await;
        probe.tell(Block(Duration::from_secs(3600))).await.unwrap();
        let started = std::time::Instant::now();
        let answer = ask(&probe, Ping).await;
        assert!(matches!(answer, Err(AskError::Busy(_))), "{answer:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_panicking_actor_is_unavailable_then_restarted() {
        let supervisor = Supervisor::start();
        let probe = spawn_supervised::<Probe>(&supervisor, ()).await;
        assert_eq!(ask(&probe, Ping).await.unwrap(), 1);
        assert!(matches!(
            ask(&probe, Explode).await,
            Err(AskError::Unavailable(_))
        ));
        // The supervisor restarts it with fresh state; the same reference works again.
        let mut answer = ask(&probe, Ping).await;
        for _ in 0..50 {
            if answer.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            answer = ask(&probe, Ping).await;
        }
        assert_eq!(answer.unwrap(), 1);
    }
}
