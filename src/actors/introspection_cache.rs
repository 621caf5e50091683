//! `IntrospectionCache`: the resource server's short memory of introspection answers (RFC 7662).
//!
//! When the resource server introspects (`--introspect`), the bearer middleware asks this cache
//! first and the authorization server only on a miss, then records the answer here. An answer is
//! reused for a few seconds (configurable): that is how late a revocation may be noticed. Tokens
//! are keyed by their SHA-256 digest. An inactive answer is cached too: a token never becomes
//! active again once revoked or expired. The cache is bounded (when full, answers are simply not
//! remembered) and entries expire through the actor's one timer.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::trace::Secret;
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

type TokenKey = [u8; 32];

fn key_of(token: &Secret) -> TokenKey {
    token.sha256()
}

/// The remembered answer for a token, if any: `Some(active)`.
#[derive(Debug)]
pub struct Recall {
    pub token: Secret,
}

/// Remembers an answer for the configured time.
#[derive(Debug)]
pub struct Remember {
    pub token: Secret,
    pub active: bool,
}

#[derive(Debug, Clone)]
pub struct IntrospectionCacheArgs {
    pub ttl: Duration,
    pub max_entries: usize,
}

pub struct IntrospectionCache {
    answers: HashMap<TokenKey, (bool, Instant)>,
    expiry: ExpiryQueue<TokenKey>,
    args: IntrospectionCacheArgs,
}

impl Actor for IntrospectionCache {
    type Args = IntrospectionCacheArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "IntrospectionCache"
    }

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(IntrospectionCache {
            answers: HashMap::new(),
            expiry: ExpiryQueue::default(),
            args,
        })
    }
}

impl Message<Recall> for IntrospectionCache {
    type Reply = Option<bool>;

    async fn handle(&mut self, msg: Recall, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.answers
            .get(&key_of(&msg.token))
            .filter(|(_, until)| *until > Instant::now())
            .map(|(active, _)| *active)
    }
}

impl Message<Remember> for IntrospectionCache {
    type Reply = ();

    async fn handle(&mut self, msg: Remember, ctx: &mut Context<Self, ()>) {
        if self.args.ttl.is_zero() || self.answers.len() >= self.args.max_entries {
            return;
        }
        let key = key_of(&msg.token);
        let until = Instant::now() + self.args.ttl;
        self.answers.insert(key, (msg.active, until));
        self.expiry.schedule(until, key, ctx.actor_ref());
    }
}

impl Message<Sweep> for IntrospectionCache {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, ()>) {
        let now = Instant::now();
        for key in self.expiry.pop_due(now, ctx.actor_ref()) {
            if self
                .answers
                .get(&key)
                .is_some_and(|(_, until)| *until <= now)
            {
                self.answers.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kameo::actor::Spawn;

    #[tokio::test(start_paused = true)]
    async fn answers_are_remembered_for_the_ttl() {
        let cache = IntrospectionCache::spawn(IntrospectionCacheArgs {
            ttl: Duration::from_secs(5),
            max_entries: 10,
        });
        let token = Secret::new("t");
        assert_eq!(
            cache
                .ask(Recall {
                    token: token.clone()
                })
                .await
                .unwrap(),
            None
        );
        cache
            .ask(Remember {
                token: token.clone(),
                active: true,
            })
            .await
            .unwrap();
        assert_eq!(
            cache
                .ask(Recall {
                    token: token.clone()
                })
                .await
                .unwrap(),
            Some(true)
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(cache.ask(Recall { token }).await.unwrap(), None);
    }
}
