//! `AuthorizationCodes`: issued authorization codes until they are redeemed or expire (AZ-6, TK-2).
//!
//! A code is 256 random bits and is kept only as its SHA-256 digest, bound to the client, the
//! redirect URI, the PKCE challenge, the scopes, the resource and the flow. [`Redeem`] checks and
//! consumes it in one handler, so two concurrent redemptions cannot both win. A code presented by
//! another client is refused without being consumed (a thief cannot burn it); any other failed
//! check consumes it. A redeemed code is remembered until its original deadline: a replay by its
//! own client is reported with the `jti` of the token it produced, so that the token can be
//! revoked. Entries expire after the configured TTL through the actor's one timer.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::oauth::pkce;
use crate::oauth::scope::ScopeSet;
use crate::trace::{FlowId, Secret};
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// What an approved authorization request grants, carried by its code.
#[derive(Debug, Clone)]
pub struct Grant {
    pub subject: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: ScopeSet,
    pub resource: String,
    pub flow: FlowId,
}

/// Issues a code for a grant; replies with the code.
#[derive(Debug)]
pub struct Issue(pub Grant);

/// Redeems a code at the token endpoint.
#[derive(Debug)]
pub struct Redeem {
    pub code: Secret,
    pub client_id: String,
    pub redirect_uri: Option<String>,
    pub verifier: Secret,
    pub resource: Option<String>,
    /// The id of the token about to be minted, remembered for replay detection.
    pub jti: String,
}

/// Why a redemption failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error("the code is unknown or expired")]
    Unknown,
    #[error("the code was issued to another client")]
    WrongClient,
    #[error("the redirect URI does not match the authorization request")]
    WrongRedirectUri,
    #[error("the code verifier does not match the challenge")]
    WrongVerifier,
    #[error("the resource does not match the authorization request")]
    WrongResource,
    /// The code was already redeemed; `jti` names the token it produced.
    #[error("the code was already used")]
    Replayed { jti: String, flow: FlowId },
    #[error("too many outstanding codes")]
    Full,
}

/// The number of live codes (for tests and the benchmark).
#[derive(Debug)]
pub struct Count;

type CodeKey = [u8; 32];

enum Entry {
    Live {
        grant: Grant,
        expires_at: Instant,
    },
    Redeemed {
        client_id: String,
        code_challenge: String,
        jti: String,
        flow: FlowId,
        expires_at: Instant,
    },
}

impl Entry {
    fn expires_at(&self) -> Instant {
        match self {
            Entry::Live { expires_at, .. } | Entry::Redeemed { expires_at, .. } => *expires_at,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthorizationCodesArgs {
    pub ttl: Duration,
    pub max_codes: usize,
}

pub struct AuthorizationCodes {
    codes: HashMap<CodeKey, Entry>,
    expiry: ExpiryQueue<CodeKey>,
    ttl: Duration,
    max_codes: usize,
}

fn key_of(code: &Secret) -> CodeKey {
    Sha256::digest(code.expose().as_bytes()).into()
}

impl Actor for AuthorizationCodes {
    type Args = AuthorizationCodesArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "AuthorizationCodes"
    }

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(AuthorizationCodes {
            codes: HashMap::new(),
            expiry: ExpiryQueue::default(),
            ttl: args.ttl,
            max_codes: args.max_codes,
        })
    }
}

impl Message<Issue> for AuthorizationCodes {
    type Reply = Result<Secret, RedeemError>;

    async fn handle(&mut self, msg: Issue, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.codes.len() >= self.max_codes {
            return Err(RedeemError::Full);
        }
        let code = Secret::random(32);
        let key = key_of(&code);
        let expires_at = Instant::now() + self.ttl;
        self.codes.insert(
            key,
            Entry::Live {
                grant: msg.0,
                expires_at,
            },
        );
        self.expiry.schedule(expires_at, key, ctx.actor_ref());
        Ok(code)
    }
}

impl Message<Redeem> for AuthorizationCodes {
    type Reply = Result<Grant, RedeemError>;

    async fn handle(&mut self, msg: Redeem, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let key = key_of(&msg.code);
        let now = Instant::now();
        match self.codes.get(&key) {
            None => return Err(RedeemError::Unknown),
            Some(entry) if entry.expires_at() <= now => {
                self.codes.remove(&key);
                return Err(RedeemError::Unknown);
            }
            Some(Entry::Redeemed {
                client_id,
                code_challenge,
                jti,
                flow,
                ..
            }) => {
                // Only the client that redeemed it, proving the same verifier, can trigger the
                // revocation: a replay by anyone else revokes nothing.
                return if *client_id == msg.client_id
                    && pkce::verify_s256(msg.verifier.expose(), code_challenge)
                {
                    Err(RedeemError::Replayed {
                        jti: jti.clone(),
                        flow: flow.clone(),
                    })
                } else {
                    Err(RedeemError::Unknown)
                };
            }
            Some(Entry::Live { grant, .. }) if grant.client_id != msg.client_id => {
                return Err(RedeemError::WrongClient);
            }
            Some(Entry::Live { .. }) => {}
        }
        // The code is live and this is its client: from here on it is consumed, whatever the
        // outcome (a wrong verifier must not get a second try).
        let Some(Entry::Live { grant, expires_at }) = self.codes.remove(&key) else {
            return Err(RedeemError::Unknown);
        };
        if let Some(uri) = &msg.redirect_uri
            && *uri != grant.redirect_uri
        {
            return Err(RedeemError::WrongRedirectUri);
        }
        if !pkce::verify_s256(msg.verifier.expose(), &grant.code_challenge) {
            return Err(RedeemError::WrongVerifier);
        }
        if let Some(resource) = &msg.resource
            && *resource != grant.resource
        {
            return Err(RedeemError::WrongResource);
        }
        self.codes.insert(
            key,
            Entry::Redeemed {
                client_id: grant.client_id.clone(),
                code_challenge: grant.code_challenge.clone(),
                jti: msg.jti,
                flow: grant.flow.clone(),
                expires_at,
            },
        );
        Ok(grant)
    }
}

impl Message<Sweep> for AuthorizationCodes {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, Self::Reply>) {
        let now = Instant::now();
        let mut expired = 0usize;
        for key in self.expiry.pop_due(now, ctx.actor_ref()) {
            if self.codes.get(&key).is_some_and(|e| e.expires_at() <= now) {
                self.codes.remove(&key);
                expired += 1;
            }
        }
        if expired > 0 {
            tracing::info!(
                actor = "AuthorizationCodes",
                expired,
                live = self.codes.len(),
                "timer"
            );
        }
    }
}

impl Message<Count> for AuthorizationCodes {
    type Reply = usize;

    async fn handle(&mut self, _: Count, _: &mut Context<Self, Self::Reply>) -> usize {
        self.codes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kameo::actor::Spawn;

    fn grant(challenge: &str) -> Grant {
        Grant {
            subject: "alice".into(),
            client_id: "c1".into(),
            redirect_uri: "http://127.0.0.1:9/cb".into(),
            code_challenge: challenge.into(),
            scope: ScopeSet::parse("mcp.read").unwrap(),
            resource: "http://localhost:8990".into(),
            flow: FlowId::mint(),
        }
    }

    fn redeem(code: &Secret, client: &str, verifier: &str) -> Redeem {
        Redeem {
            code: code.clone(),
            client_id: client.into(),
            redirect_uri: Some("http://127.0.0.1:9/cb".into()),
            verifier: Secret::new(verifier),
            resource: None,
            jti: "jti-1".into(),
        }
    }

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn spawn(ttl: u64) -> ActorRef<AuthorizationCodes> {
        AuthorizationCodes::spawn(AuthorizationCodesArgs {
            ttl: Duration::from_secs(ttl),
            max_codes: 10,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn single_use_and_replay_detection() {
        let codes = spawn(600);
        let code = codes.ask(Issue(grant(CHALLENGE))).await.unwrap();
        let first = codes.ask(redeem(&code, "c1", VERIFIER)).await;
        assert!(first.is_ok());
        let replay = codes.ask(redeem(&code, "c1", VERIFIER)).await;
        assert!(matches!(
            replay,
            Err(kameo::error::SendError::HandlerError(RedeemError::Replayed { ref jti, .. })) if jti == "jti-1"
        ));
        // Another client replaying it learns nothing.
        let other = codes.ask(redeem(&code, "c2", VERIFIER)).await;
        assert!(matches!(
            other,
            Err(kameo::error::SendError::HandlerError(RedeemError::Unknown))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_client_does_not_burn_but_wrong_verifier_does() {
        let codes = spawn(600);
        let code = codes.ask(Issue(grant(CHALLENGE))).await.unwrap();
        let stolen = codes.ask(redeem(&code, "c2", VERIFIER)).await;
        assert!(matches!(
            stolen,
            Err(kameo::error::SendError::HandlerError(
                RedeemError::WrongClient
            ))
        ));
        assert!(codes.ask(redeem(&code, "c1", VERIFIER)).await.is_ok());

        let code = codes.ask(Issue(grant(CHALLENGE))).await.unwrap();
        let wrong = codes
            .ask(redeem(&code, "c1", "x".repeat(43).as_str()))
            .await;
        assert!(matches!(
            wrong,
            Err(kameo::error::SendError::HandlerError(
                RedeemError::WrongVerifier
            ))
        ));
        assert!(codes.ask(redeem(&code, "c1", VERIFIER)).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn codes_expire_and_the_timer_removes_them() {
        let codes = spawn(600);
        let code = codes.ask(Issue(grant(CHALLENGE))).await.unwrap();
        let _other = codes.ask(Issue(grant(CHALLENGE))).await.unwrap();
        assert_eq!(codes.ask(Count).await.unwrap(), 2);
        tokio::time::sleep(Duration::from_secs(599)).await;
        assert_eq!(codes.ask(Count).await.unwrap(), 2);
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Let the timer's Sweep reach the actor.
        tokio::task::yield_now().await;
        assert_eq!(codes.ask(Count).await.unwrap(), 0);
        assert!(matches!(
            codes.ask(redeem(&code, "c1", VERIFIER)).await,
            Err(kameo::error::SendError::HandlerError(RedeemError::Unknown))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_redemptions_exactly_one_wins() {
        let codes = spawn(600);
        let code = codes.ask(Issue(grant(CHALLENGE))).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let codes = codes.clone();
            let code = code.clone();
            tasks.push(tokio::spawn(async move {
                codes.ask(redeem(&code, "c1", VERIFIER)).await.is_ok()
            }));
        }
        let mut wins = 0;
        for t in tasks {
            if t.await.unwrap() {
                wins += 1;
            }
        }
        assert_eq!(wins, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn bounded() {
        let codes = spawn(600);
        for _ in 0..10 {
            codes.ask(Issue(grant(CHALLENGE))).await.unwrap();
        }
        assert!(matches!(
            codes.ask(Issue(grant(CHALLENGE))).await,
            Err(kameo::error::SendError::HandlerError(RedeemError::Full))
        ));
    }
}
