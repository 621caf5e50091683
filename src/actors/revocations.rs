//! `Revocations`: access tokens revoked before they expire, by `jti`. A replayed authorization
//! code revokes the token its first redemption produced (AZ-6, RFC 9700 section 4.5). Entries are
//! kept until the token would have expired anyway, then dropped by the actor's one timer; the set
//! is bounded (a full set keeps refusing nothing new, and says so in the log).

use crate::actors::expiry::{ExpiryQueue, Sweep};
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

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Revocations {
            revoked: HashMap::new(),
            expiry: ExpiryQueue::default(),
            args,
        })
    }
}

impl Message<Revoke> for Revocations {
    type Reply = ();

    async fn handle(&mut self, msg: Revoke, ctx: &mut Context<Self, ()>) {
        if self.revoked.len() >= self.args.max_entries {
            tracing::warn!(actor = "Revocations", jti = %msg.jti, "revocation list full; not recorded");
            return;
        }
        let until = Instant::now() + msg.ttl;
        self.revoked.insert(msg.jti.clone(), until);
        self.expiry.schedule(until, msg.jti, ctx.actor_ref());
    }
}

impl Message<IsRevoked> for Revocations {
    type Reply = bool;

    async fn handle(&mut self, msg: IsRevoked, _: &mut Context<Self, bool>) -> bool {
        self.revoked
            .get(&msg.jti)
            .is_some_and(|until| *until > Instant::now())
    }
}

impl Message<Sweep> for Revocations {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, ()>) {
        let now = Instant::now();
        for jti in self.expiry.pop_due(now, ctx.actor_ref()) {
            if self.revoked.get(&jti).is_some_and(|until| *until <= now) {
                self.revoked.remove(&jti);
            }
        }
    }
}
