//! `Revocations`: access tokens revoked before they expire, by `jti`. A replayed authorization
//! code revokes the token its first redemption produced (AZ-6, RFC 9700 section 4.5). Entries are
//! kept until the token would have expired anyway, then dropped by the actor's one timer; the set
//! is bounded (a full set keeps refusing nothing new, and says so in the log).
//!
//! Durability: revocations are in the store ([`crate::store::RevocationStore`]), loaded at start
//! and acknowledged only once committed. A `jti` missing from the map is not revoked, unless the
//! store is shared by replicas, in which case the store is asked.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::store::{SharedStore, StoreError, instant_of, unix_now};
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Revokes the token with this id until `ttl` from now (its remaining lifetime).
#[derive(Debug)]
pub struct Revoke {
    pub jti: String,
    pub ttl: Duration,
}

/// Is the token with this id revoked?
#[derive(Debug)]
pub struct IsRevoked {
    pub jti: String,
}

#[derive(Debug, Clone)]
pub struct RevocationsArgs {
    pub max_entries: usize,
    pub store: SharedStore,
}

pub struct Revocations {
    revoked: HashMap<String, Instant>,
    expiry: ExpiryQueue<String>,
    args: RevocationsArgs,
}

impl Actor for Revocations {
    type Args = RevocationsArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "Revocations"
    }

    async fn on_start(args: Self::Args, actor: ActorRef<Self>) -> Result<Self, Self::Error> {
        let mut revocations = Revocations {
            revoked: HashMap::new(),
            expiry: ExpiryQueue::default(),
            args,
        };
        match revocations.args.store.revocations(unix_now()).await {
            Ok(stored) => {
                for (jti, until) in stored {
                    let until = instant_of(until);
                    revocations.revoked.insert(jti.clone(), until);
                    revocations.expiry.schedule(until, jti, &actor);
                }
                tracing::info!(
                    actor = "Revocations",
                    loaded = revocations.revoked.len(),
                    "revocations loaded"
                );
            }
            Err(err) => {
                tracing::error!(actor = "Revocations", error = %err, "revocations not loaded")
            }
        }
        Ok(revocations)
    }
}

impl Message<Revoke> for Revocations {
    type Reply = Result<(), StoreError>;

    async fn handle(&mut self, msg: Revoke, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.revoked.len() >= self.args.max_entries {
            tracing::warn!(actor = "Revocations", jti = %msg.jti, "revocation list full; not recorded");
            return Ok(());
        }
        self.args
            .store
            .revoke(&msg.jti, unix_now().saturating_add(msg.ttl.as_secs()))
            .await?;
        let until = Instant::now() + msg.ttl;
        self.revoked.insert(msg.jti.clone(), until);
        self.expiry.schedule(until, msg.jti, ctx.actor_ref());
        Ok(())
    }
}

impl Message<IsRevoked> for Revocations {
    type Reply = Result<bool, StoreError>;

    async fn handle(&mut self, msg: IsRevoked, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if let Some(until) = self.revoked.get(&msg.jti) {
            return Ok(*until > Instant::now());
        }
        if self.args.store.is_shared() {
            return self.args.store.is_revoked(&msg.jti, unix_now()).await;
        }
        Ok(false)
    }
}

impl Message<Sweep> for Revocations {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, ()>) {
        let now = Instant::now();
        let mut expired = 0usize;
        for jti in self.expiry.pop_due(now, ctx.actor_ref()) {
            if self.revoked.get(&jti).is_some_and(|until| *until <= now) {
                self.revoked.remove(&jti);
                expired += 1;
            }
        }
        if expired > 0
            && let Err(err) = self.args.store.delete_expired_revocations(unix_now()).await
        {
            tracing::warn!(actor = "Revocations", error = %err, "expired revocations stay stored until the next sweep");
        }
    }
}
