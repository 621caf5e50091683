//! `JwksCache`: the resource server's copy of the authorization server's signing keys.
//!
//! The key set is fetched in a task beside the actor, never inside a handler, so a slow or failing
//! authorization server never holds up a token whose key is already known (stale while
//! revalidate). There is at most one fetch in flight: every lookup waiting for it shares it.
//! Fetches happen:
//! - when a token names a key id the copy does not know, at most once per cooldown (RS-3), so a
//!   flood of tokens with random key ids costs at most one fetch per cooldown;
//! - every `refresh` interval, so a key the authorization server stops publishing stops being
//!   trusted within that interval, and a new one is known before it signs.
//!
//! A successful fetch replaces the whole set. A failed one keeps the known keys, but only for
//! `max_stale` after the last success: beyond it no key is trusted until a fetch succeeds (the
//! lookup fails and the request gets 503). Responses are size-capped and time-limited; only RSA
//! signing keys for RS256 are kept.

use crate::actors::expiry::OwnedTask;
use crate::actors::revocation_feed::{ForgetRemembered, RevocationFeed};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm, PublicKeyUse};
use kameo::actor::{Actor, ActorRef, WeakActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The keys of one fetch, by key id.
type KeySet = Arc<HashMap<String, Arc<DecodingKey>>>;
/// A fetch in flight, shared by everyone waiting for it.
pub type SharedFetch = Shared<BoxFuture<'static, Result<KeySet, JwksError>>>;

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

/// The answer to a lookup: the key, or the fetch to wait for (then [`Lookup::key`]).
#[derive(kameo::Reply)]
pub enum Lookup {
    Ready(Result<Arc<DecodingKey>, JwksError>),
    Fetching(SharedFetch),
}

impl Lookup {
    /// The key with `kid`, once any fetch this lookup started has finished.
    pub async fn key(self, kid: &str) -> Result<Arc<DecodingKey>, JwksError> {
        match self {
            Lookup::Ready(key) => key,
            Lookup::Fetching(fetch) => fetch.await?.get(kid).cloned().ok_or(JwksError::UnknownKid),
        }
    }
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lookup::Ready(key) => f.debug_tuple("Ready").field(&key.is_ok()).finish(),
            Lookup::Fetching(_) => f.write_str("Fetching"),
        }
    }
}

/// Time for the periodic fetch (sent by the actor's timer task).
#[derive(Debug)]
struct Refresh;

/// A fetch finished (sent by the fetch task).
#[derive(Debug)]
struct Fetched(Result<KeySet, JwksError>);

#[derive(Debug, Clone)]
pub struct JwksCacheArgs {
    pub jwks_url: String,
    /// Least time between two fetches caused by unknown key ids.
    pub cooldown: Duration,
    /// Time between two periodic fetches.
    pub refresh: Duration,
    /// How long known keys are trusted after the last successful fetch.
    pub max_stale: Duration,
    pub http: reqwest::Client,
    /// Where validated tokens are remembered: told to forget them when a key leaves the set, so
    /// that a token signed by a removed key is validated again, and refused.
    pub remembered_tokens: Option<ActorRef<RevocationFeed>>,
}

pub struct JwksCache {
    keys: KeySet,
    /// When the keys were last fetched successfully.
    fetched_at: Option<Instant>,
    /// When a fetch caused by an unknown key id last started.
    last_unknown_fetch: Option<Instant>,
    in_flight: Option<SharedFetch>,
    args: JwksCacheArgs,
    _timer: OwnedTask,
}

impl Actor for JwksCache {
    type Args = JwksCacheArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "JwksCache"
    }

    async fn on_start(args: Self::Args, actor: ActorRef<Self>) -> Result<Self, Self::Error> {
        let timer = tokio::spawn(tick(actor.downgrade(), args.refresh));
        Ok(JwksCache {
            keys: KeySet::default(),
            fetched_at: None,
            last_unknown_fetch: None,
            in_flight: None,
            args,
            _timer: OwnedTask(timer),
        })
    }
}

/// The timer task: tells the actor to refresh every `every`.
async fn tick(actor: WeakActorRef<JwksCache>, every: Duration) {
    let mut interval = tokio::time::interval_at(Instant::now() + every, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(actor) = actor.upgrade() else {
            return;
        };
        let _ = actor.tell(Refresh).send().await;
    }
}

/// Fetches and parses the key set.
async fn fetch(args: &JwksCacheArgs) -> Result<KeySet, JwksError> {
    let fetch = async {
        let mut response = args
            .http
            .get(&args.jwks_url)
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
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|_| JwksError::Fetch("not a JWK set".into()))?;
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
        Ok(Arc::new(keys))
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| JwksError::Fetch("timed out".into()))?
}

impl JwksCache {
    /// The fetch in flight, or a new one in a task that reports back to the actor.
    fn start_fetch(&mut self, actor: &ActorRef<Self>) -> SharedFetch {
        // A fetch that finished without reporting back (its task died) is not in flight.
        if let Some(fetch) = &self.in_flight
            && fetch.peek().is_none()
        {
            return fetch.clone();
        }
        let args = self.args.clone();
        let actor = actor.clone();
        let task = tokio::spawn(async move {
            let outcome = fetch(&args).await;
            let _ = actor.tell(Fetched(outcome.clone())).send().await;
            outcome
        });
        let shared = async move {
            task.await
                .unwrap_or_else(|_| Err(JwksError::Fetch("the fetch stopped".into())))
        }
        .boxed()
        .shared();
        self.in_flight = Some(shared.clone());
        shared
    }

    /// The known keys may still be trusted.
    fn fresh(&self) -> bool {
        self.fetched_at
            .is_some_and(|at| at.elapsed() <= self.args.max_stale)
    }
}

impl Message<LookupJwk> for JwksCache {
    type Reply = Lookup;

    async fn handle(&mut self, msg: LookupJwk, ctx: &mut Context<Self, Lookup>) -> Lookup {
        if self.fresh()
            && let Some(key) = self.keys.get(&msg.kid)
        {
            return Lookup::Ready(Ok(Arc::clone(key)));
        }
        if let Some(fetch) = &self.in_flight
            && fetch.peek().is_none()
        {
            return Lookup::Fetching(fetch.clone());
        }
        // A lookup starts a fetch at most once per cooldown: meanwhile an unknown key id is
        // unknown, and keys too stale to trust are unavailable.
        let now = Instant::now();
        if self
            .last_unknown_fetch
            .is_some_and(|at| now.duration_since(at) < self.args.cooldown)
        {
            return Lookup::Ready(Err(if self.fresh() {
                JwksError::UnknownKid
            } else {
                JwksError::Fetch("the keys are stale and the cooldown is running".into())
            }));
        }
        self.last_unknown_fetch = Some(now);
        Lookup::Fetching(self.start_fetch(ctx.actor_ref()))
    }
}

/// How current the keys are (readiness). Keys never fetched are fetched now (the answer says
/// not yet), so a resource server becomes ready without waiting for its first token.
#[derive(Debug)]
pub struct KeysStatus;

/// The answer to [`KeysStatus`].
#[derive(Debug, Clone, kameo::Reply)]
pub struct KeysReport {
    pub keys: usize,
    /// Time since the last successful fetch (`None`: never fetched).
    pub age: Option<Duration>,
    /// The keys may be trusted (fetched, and not too long ago).
    pub fresh: bool,
}

impl Message<KeysStatus> for JwksCache {
    type Reply = KeysReport;

    async fn handle(&mut self, _: KeysStatus, ctx: &mut Context<Self, KeysReport>) -> KeysReport {
        if self.fetched_at.is_none() {
            drop(self.start_fetch(ctx.actor_ref()));
        }
        KeysReport {
            keys: self.keys.len(),
            age: self.fetched_at.map(|at| at.elapsed()),
            fresh: self.fresh(),
        }
    }
}

impl Message<Refresh> for JwksCache {
    type Reply = ();

    async fn handle(&mut self, _: Refresh, ctx: &mut Context<Self, ()>) {
        // The fetch runs in its own task; nobody needs to wait for it.
        drop(self.start_fetch(ctx.actor_ref()));
    }
}

impl Message<Fetched> for JwksCache {
    type Reply = ();

    async fn handle(&mut self, msg: Fetched, _: &mut Context<Self, ()>) {
        self.in_flight = None;
        match msg.0 {
            Ok(keys) => {
                let removed = self.keys.keys().filter(|k| !keys.contains_key(*k)).count();
                if removed > 0
                    && let Some(feed) = &self.args.remembered_tokens
                    && feed.tell(ForgetRemembered).try_send().is_err()
                {
                    tracing::warn!(
                        actor = "JwksCache",
                        "remembered tokens not forgotten: the revocation feed is busy"
                    );
                }
                if self.fetched_at.is_none() || removed > 0 || keys.len() != self.keys.len() {
                    tracing::info!(
                        actor = "JwksCache",
                        url = %self.args.jwks_url,
                        keys = keys.len(),
                        removed,
                        "jwks fetched"
                    );
                }
                metrics::gauge!("mcp_oauth_jwks_keys").set(keys.len() as f64);
                metrics::gauge!("mcp_oauth_jwks_fetched_timestamp_seconds")
                    .set(crate::oauth::time::unix_now() as f64);
                self.keys = keys;
                self.fetched_at = Some(Instant::now());
            }
            Err(err) => {
                tracing::warn!(actor = "JwksCache", url = %self.args.jwks_url, error = %err, stale = !self.fresh(), "jwks fetch failed; known keys kept");
            }
        }
    }
}
