//! `TokenSigner` and its pool: signing access tokens, the hottest CPU work of the server.
//!
//! Signing does not queue on one mailbox: the key `SigningKeys` says is current reaches a pool of
//! [`TokenSigner`] actors, one per core, through a watch channel, and handlers send
//! [`SignAccessToken`] to the pool ([`SignerPool`]), round-robin. A key switch takes effect at the
//! next signature; each signer reads the key already parsed ([`ActiveKey`]).

use crate::actors::ask::{AskError, ask};
use crate::oauth::jws::{ActiveKey, JwsError};
use crate::oauth::token::AccessTokenClaims;
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::watch;

/// Signs the claims of one access token.
#[derive(Debug)]
pub struct SignAccessToken(pub AccessTokenClaims);

/// Signs access tokens with the key `SigningKeys` says is current.
pub struct TokenSigner {
    key: watch::Receiver<Arc<ActiveKey>>,
}

impl Actor for TokenSigner {
    type Args = watch::Receiver<Arc<ActiveKey>>;
    type Error = Infallible;

    fn name() -> &'static str {
        "TokenSigner"
    }

    async fn on_start(key: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(TokenSigner { key })
    }
}

impl Message<SignAccessToken> for TokenSigner {
    type Reply = Result<String, JwsError>;

    async fn handle(
        &mut self,
        msg: SignAccessToken,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let key = Arc::clone(&self.key.borrow());
        key.sign(&msg.0)
    }
}

/// The signer actors, used round-robin. Cloned into every handler's state.
#[derive(Clone)]
pub struct SignerPool {
    signers: Arc<[ActorRef<TokenSigner>]>,
    next: Arc<AtomicUsize>,
}

impl SignerPool {
    pub fn new(signers: Vec<ActorRef<TokenSigner>>) -> Self {
        SignerPool {
            signers: signers.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Signs the claims on the next signer.
    pub async fn sign(&self, claims: AccessTokenClaims) -> Result<String, AskError<JwsError>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.signers.len().max(1);
        match self.signers.get(i) {
            Some(signer) => ask(signer, SignAccessToken(claims)).await,
            None => Err(AskError::Unavailable("TokenSigner")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kameo::actor::Spawn;

    fn claims(jti: &str) -> AccessTokenClaims {
        crate::oauth::token::sample_claims(jti)
    }

    fn kid_of(token: &str) -> String {
        jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
    }

    #[tokio::test]
    async fn the_pool_signs_with_the_current_key_and_follows_a_switch() {
        let first = ActiveKey::generate().await.unwrap();
        let (current, key) = watch::channel(Arc::clone(&first));
        let pool = SignerPool::new(vec![
            TokenSigner::spawn(key.clone()),
            TokenSigner::spawn(key),
        ]);
        for jti in ["a", "b", "c"] {
            assert_eq!(kid_of(&pool.sign(claims(jti)).await.unwrap()), first.kid);
        }
        let next = ActiveKey::generate().await.unwrap();
        current.send_replace(Arc::clone(&next));
        for jti in ["d", "e"] {
            assert_eq!(kid_of(&pool.sign(claims(jti)).await.unwrap()), next.kid);
        }
        assert!(matches!(
            SignerPool::new(Vec::new()).sign(claims("f")).await,
            Err(AskError::Unavailable("TokenSigner"))
        ));
    }
}
