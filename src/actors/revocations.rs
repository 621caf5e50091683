//! `Revocations`: access tokens revoked before they expire, by `jti`. A replayed authorization
//! code revokes the token its first redemption produced (AZ-6, RFC 9700 section 4.5), an ended
//! refresh-token family the tokens minted from it, `/revoke` the token presented. Entries are kept
//! until the token would have expired anyway, then dropped by the actor's one timer. The list is
//! bounded and fails closed: when it is full a new revocation is refused
//! ([`RevocationError::Full`]), so nothing is acknowledged that is not recorded.
//!
//! Durability: revocations are in the store ([`crate::store::RevocationStore`]), loaded at start
//! and acknowledged only once committed. A `jti` missing from the map is not revoked, unless the
//! store is shared by replicas, in which case the store is asked.
//!
//! This actor asks no other actor: `RefreshTokens` and `AuthorizationCodes` ask it while they
//! handle a message, so it must never ask them back.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::oauth::time::{instant_of, unix_now};
use crate::store::{SharedStore, StoreError};
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Revokes the token with this id until `ttl` from now (its remaining lifetime).
#[derive(Debug)]
pub struct RevokeAccessToken {
    pub jti: String,
    pub ttl: Duration,
}

/// Why a revocation was not recorded. Either way nothing changed, and the caller must not
/// acknowledge the revocation (503, try again later).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RevocationError {
    /// The list holds its maximum number of revoked tokens.
    #[error("the revocation list is full")]
    Full,
    /// The store did not commit the revocation.
    #[error(transparent)]
    Store(#[from] StoreError),
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

impl Message<RevokeAccessToken> for Revocations {
    type Reply = Result<(), RevocationError>;

    async fn handle(
        &mut self,
        msg: RevokeAccessToken,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        // A token already listed only has its deadline moved: that takes no room.
        if self.revoked.len() >= self.args.max_entries && !self.revoked.contains_key(&msg.jti) {
            tracing::warn!(actor = "Revocations", jti = %msg.jti, "revocation list full; revocation refused");
            return Err(RevocationError::Full);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use kameo::actor::Spawn;
    use kameo::error::SendError;
    use std::sync::Arc;

    fn revoke(jti: &str, seconds: u64) -> RevokeAccessToken {
        RevokeAccessToken {
            jti: jti.into(),
            ttl: Duration::from_secs(seconds),
        }
    }

    async fn is_revoked(revocations: &ActorRef<Revocations>, jti: &str) -> bool {
        revocations
            .ask(IsRevoked { jti: jti.into() })
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_list_refuses_new_revocations_until_entries_expire() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let revocations = Revocations::spawn(RevocationsArgs {
            max_entries: 2,
            store: Arc::clone(&store),
        });
        revocations.ask(revoke("a", 10)).await.unwrap();
        revocations.ask(revoke("b", 100)).await.unwrap();
        // Full: refused, not recorded, in memory or in the store.
        assert!(matches!(
            revocations.ask(revoke("c", 100)).await,
            Err(SendError::HandlerError(RevocationError::Full))
        ));
        assert!(!is_revoked(&revocations, "c").await);
        assert!(!store.is_revoked("c", unix_now()).await.unwrap());
        // A token already listed takes no new room.
        revocations.ask(revoke("a", 20)).await.unwrap();
        assert!(is_revoked(&revocations, "a").await);
        // Once an entry expires, its room is free again.
        tokio::time::sleep(Duration::from_secs(21)).await;
        tokio::task::yield_now().await;
        assert!(!is_revoked(&revocations, "a").await);
        revocations.ask(revoke("c", 100)).await.unwrap();
        assert!(is_revoked(&revocations, "c").await);
        assert!(is_revoked(&revocations, "b").await);
    }
}
