//! `ClientAssertions`: the `jti`s of the client assertions already used (`private_key_jwt`,
//! RFC 7523 section 3 item 7), so that each assertion authenticates once.
//!
//! An assertion is verified first (`oauth/client_assertion.rs`); then [`UseAssertion`] records
//! its `(client_id, jti)` until the assertion's `exp`, and a second use inside that time is
//! refused. Assertions live at most ten minutes, so the set stays small; it is bounded anyway
//! (when full, new assertions are refused with a retry rather than accepted unremembered).
//! Entries leave through the actor's one expiry timer. The set is in memory: after a restart an
//! assertion not yet expired could be used once more, which needs the assertion itself.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::oauth::time::instant_of;
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use sha2::{Digest, Sha256};
use std::collections::HashSet;

type AssertionKey = [u8; 32];

/// Records an assertion's `jti` until its `exp`; refused if it was already used.
#[derive(Debug)]
pub struct UseAssertion {
    pub client_id: String,
    pub jti: String,
    /// Unix seconds.
    pub exp: u64,
}

/// Why an assertion cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AssertionUseError {
    #[error("the assertion was already used")]
    Replayed,
    #[error("too many assertions are remembered; retry shortly")]
    Full,
}

#[derive(Debug, Clone)]
pub struct ClientAssertionsArgs {
    pub max_entries: usize,
}

pub struct ClientAssertions {
    used: HashSet<AssertionKey>,
    expiry: ExpiryQueue<AssertionKey>,
    args: ClientAssertionsArgs,
}

impl Actor for ClientAssertions {
    type Args = ClientAssertionsArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "ClientAssertions"
    }

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(ClientAssertions {
            used: HashSet::new(),
            expiry: ExpiryQueue::default(),
            args,
        })
    }
}

/// One key per client and `jti`: two clients may pick the same `jti`.
fn key_of(client_id: &str, jti: &str) -> AssertionKey {
    let mut hash = Sha256::new();
    hash.update(client_id.as_bytes());
    hash.update([0]);
    hash.update(jti.as_bytes());
    hash.finalize().into()
}

impl Message<UseAssertion> for ClientAssertions {
    type Reply = Result<(), AssertionUseError>;

    async fn handle(
        &mut self,
        msg: UseAssertion,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let key = key_of(&msg.client_id, &msg.jti);
        if self.used.contains(&key) {
            tracing::warn!(client_id = %msg.client_id, "client assertion replayed");
            return Err(AssertionUseError::Replayed);
        }
        if self.used.len() >= self.args.max_entries {
            return Err(AssertionUseError::Full);
        }
        self.used.insert(key);
        // Kept a minute past `exp`: the verifier's clock leeway.
        let until = instant_of(msg.exp.saturating_add(60));
        self.expiry.schedule(until, key, ctx.actor_ref());
        Ok(())
    }
}

impl Message<Sweep> for ClientAssertions {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, ()>) {
        for key in self
            .expiry
            .pop_due(tokio::time::Instant::now(), ctx.actor_ref())
        {
            self.used.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::time::unix_now;
    use kameo::actor::Spawn;

    fn use_of(client_id: &str, jti: &str, exp: u64) -> UseAssertion {
        UseAssertion {
            client_id: client_id.into(),
            jti: jti.into(),
            exp,
        }
    }

    /// Uses an assertion; the actor's refusal, if any.
    async fn try_use(
        actor: &ActorRef<ClientAssertions>,
        client_id: &str,
        jti: &str,
        exp: u64,
    ) -> Result<(), Option<AssertionUseError>> {
        actor
            .ask(use_of(client_id, jti, exp))
            .await
            .map_err(|e| match e {
                kameo::error::SendError::HandlerError(e) => Some(e),
                _ => None,
            })
    }

    #[tokio::test]
    async fn an_assertion_is_used_once_per_client_and_bounded() {
        let actor = ClientAssertions::spawn(ClientAssertionsArgs { max_entries: 3 });
        let exp = unix_now() + 60;
        assert_eq!(try_use(&actor, "c", "j", exp).await, Ok(()));
        let replayed = Err(Some(AssertionUseError::Replayed));
        assert_eq!(try_use(&actor, "c", "j", exp).await, replayed);
        // Another client may pick the same jti.
        assert_eq!(try_use(&actor, "d", "j", exp).await, Ok(()));
        assert_eq!(try_use(&actor, "c", "k", exp).await, Ok(()));
        let full = Err(Some(AssertionUseError::Full));
        assert_eq!(try_use(&actor, "c", "l", exp).await, full);
        // A used one is still refused as used, not as "full".
        assert_eq!(try_use(&actor, "d", "j", exp).await, replayed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_jti_is_forgotten_after_its_assertion_expires() {
        let actor = ClientAssertions::spawn(ClientAssertionsArgs { max_entries: 1 });
        let exp = unix_now() + 5;
        assert_eq!(try_use(&actor, "c", "j", exp).await, Ok(()));
        tokio::time::sleep(std::time::Duration::from_secs(120)).await;
        // Swept: room for a new one (the old one would fail its exp check anyway).
        assert_eq!(try_use(&actor, "c", "k", unix_now() + 600).await, Ok(()));
    }
}
