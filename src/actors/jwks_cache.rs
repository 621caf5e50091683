//! `JwksCache`: the resource server's copy of the authorization server's signing keys.
//!
//! Keys are fetched from the JWKS URL the first time a token names a key id the cache does not
//! know, and again on each unknown `kid` at most once per cooldown (RS-3). The fetch happens inside
//! the actor's handler, so there is never more than one in flight: a flood of tokens with random
//! key ids costs at most one fetch per cooldown. Responses are size-capped and time-limited; only
//! RSA signing keys for RS256 are kept.

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm, PublicKeyUse};
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Finds the key with this id, fetching the JWKS if the id is new and the cooldown allows.
#[derive(Debug)]
pub struct LookupJwk {
    pub kid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("no published key has this id")]
    UnknownKid,
    #[error("the JWKS could not be fetched: {0}")]
    Fetch(String),
}

#[derive(Debug, Clone)]
pub struct JwksCacheArgs {
    pub jwks_url: String,
    pub cooldown: Duration,
    pub http: reqwest::Client,
}

pub struct JwksCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    last_fetch: Option<Instant>,
    args: JwksCacheArgs,
}

impl Actor for JwksCache {
    type Args = JwksCacheArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "JwksCache"
    }

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(JwksCache {
            keys: HashMap::new(),
            last_fetch: None,
            args,
        })
    }
}

impl JwksCache {
    async fn fetch(&self) -> Result<HashMap<String, Arc<DecodingKey>>, JwksError> {
        let fetch = async {
            let mut response = self
                .args
                .http
                .get(&self.args.jwks_url)
                .send()
                .await
                .map_err(|e| JwksError::Fetch(e.without_url().to_string()))?;
            if !response.status().is_success() {
                return Err(JwksError::Fetch(format!("status {}", response.status())));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| JwksError::Fetch(e.without_url().to_string()))?
            {
                if body.len() + chunk.len() > MAX_JWKS_BYTES {
                    return Err(JwksError::Fetch("document too large".into()));
                }
                body.extend_from_slice(&chunk);
            }
            let set: JwkSet = serde_json::from_slice(&body)
                .map_err(|_| JwksError::Fetch("not a JWK set".into()))?;
            let mut keys = HashMap::new();
            for jwk in &set.keys {
                let Some(kid) = jwk.common.key_id.clone() else {
                    continue;
                };
                let rs256 = matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256));
                let signing = matches!(
                    jwk.common.public_key_use,
                    None | Some(PublicKeyUse::Signature)
                );
                let rsa = matches!(
                    jwk.algorithm,
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
                );
                if !(rs256 && signing && rsa) {
                    continue;
                }
                if let Ok(key) = DecodingKey::from_jwk(jwk) {
                    keys.insert(kid, Arc::new(key));
                }
            }
            Ok(keys)
        };
        tokio::time::timeout(Duration::from_secs(5), fetch)
            .await
            .map_err(|_| JwksError::Fetch("timed out".into()))?
    }
}

impl Message<LookupJwk> for JwksCache {
    type Reply = Result<Arc<DecodingKey>, JwksError>;

    async fn handle(&mut self, msg: LookupJwk, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if let Some(key) = self.keys.get(&msg.kid) {
            return Ok(Arc::clone(key));
        }
        let now = Instant::now();
        if self
            .last_fetch
            .is_some_and(|at| now.duration_since(at) < self.args.cooldown)
        {
            return Err(JwksError::UnknownKid);
        }
        self.last_fetch = Some(now);
        let started = std::time::Instant::now();
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(
                    actor = "JwksCache",
                    url = %self.args.jwks_url,
                    keys = keys.len(),
                    us = started.elapsed().as_micros() as u64,
                    "jwks fetched"
                );
                self.keys = keys;
            }
            Err(err) => {
                tracing::warn!(actor = "JwksCache", url = %self.args.jwks_url, error = %err, "jwks fetch failed");
                return Err(err);
            }
        }
        self.keys
            .get(&msg.kid)
            .cloned()
            .ok_or(JwksError::UnknownKid)
    }
}
