//! `RefreshTokens`: refresh-token families (OAuth 2.1 section 4.3, RFC 9700 section 4.14, TK-3).
//!
//! A family is what one authorization (one redeemed code) grants over time: client, subject,
//! scope, resource and flow, an absolute deadline, and an idle deadline pushed back by every use.
//! Its tokens are opaque (256 bits, base64url) and kept only as SHA-256 digests. Exactly one token
//! of a family is current; [`RotateRefreshToken`] rotates it, so every use answers a new token and
//! retires the one presented.
//!
//! Reuse detection: presenting a retired token revokes the whole family, the current token
//! included, and the access tokens minted from it. One exception absorbs the race of two
//! concurrent refreshes of one token (a client with two tabs, or a retry after a lost answer):
//! within the grace window after a rotation, presenting the token that rotation retired (only that
//! one, only by its client) answers the *same* successor token again, with a fresh access token,
//! and changes nothing. Both callers then hold the one current token, so whichever answer the
//! client keeps stays valid, and a thief who raced the client still shares a single chain that
//! reuse detection watches. The successor is derived, not stored: `HMAC-SHA256(key = presented
//! token, message = salt)` with a fresh random salt per rotation, kept with the family. Only a
//! caller holding the retired token can recompute it, and a store that holds digests and salts
//! only can still answer the retry (for example on another replica). After the window, the retired
//! token is reuse.
//!
//! Refused requests never consume a token: another client, another resource or a wider scope
//! leaves the family as it was. A family ends at its absolute or idle deadline (the actor's one
//! timer), on reuse, on revocation (RFC 7009, or the user revoking the client's consent), or when
//! the code it came from is replayed; in the last four cases the actor also revokes the access
//! tokens minted from it, through the `Revocations` actor, before it answers
//! (`refresh_tokens/revocation.rs`).
//!
//! Persistence and memory: the store ([`RefreshTokenStore`], `store/refresh_tokens.rs`) is the
//! truth; every change goes through it and is answered only once it has committed. The actor
//! keeps the families used most recently (`--cached-refresh-families`) and reads a family from
//! the store when a token it does not hold is presented, so its memory does not grow with the
//! table and it reads nothing at start. The access tokens minted here from each family are kept
//! apart from that cache, until they expire, so that a family evicted and then ended still has
//! them revoked. The store's dead families, cached or not, are deleted by a sweep every minute.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::actors::revocations::Revocations;
use crate::oauth::refresh_token::successor;
use crate::oauth::scope::ScopeSet;
use crate::oauth::time::unix_now_ms;
use crate::store::{FamilyRecord, RefreshTokenStore, Rotation, StoreError, TokenHash};
use crate::trace::{FlowId, Secret};
use hashlink::LruCache;
use kameo::actor::{Actor, ActorRef};
use kameo::message::{Context, Message};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

mod queries;
mod revocation;
mod revocation_messages;
mod shared;

pub use revocation_messages::{
    EndError, EndedFamilies, RevokeClientFamilies, RevokeCodeFamily, RevokeRefreshToken,
    TokenRevocation,
};

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// What a family grants, as the token endpoint reads it.
#[derive(Debug, Clone)]
pub struct FamilyGrant {
    pub family_id: String,
    pub client_id: String,
    pub subject: String,
    pub scope: ScopeSet,
    pub resource: String,
    pub flow: FlowId,
}

/// Starts a family at code redemption; replies with its first token.
#[derive(Debug)]
pub struct IssueRefreshToken {
    pub client_id: String,
    pub subject: String,
    pub scope: ScopeSet,
    pub resource: String,
    pub flow: FlowId,
    /// The access token issued with it: its `jti` and lifetime.
    pub access_jti: String,
    pub access_ttl: Duration,
}

/// Exchanges a refresh token (`grant_type=refresh_token`). The checks are made before anything
/// changes: another client, another resource or a wider scope consumes nothing.
#[derive(Debug)]
pub struct RotateRefreshToken {
    pub token: Secret,
    pub client_id: String,
    /// The `resource` parameter, already resolved to a known resource when it names one.
    pub resource: Option<String>,
    /// The `scope` parameter, if sent: it may only narrow the family's scope.
    pub scope: Option<ScopeSet>,
    /// The access token about to be minted: its `jti` and lifetime.
    pub access_jti: String,
    pub access_ttl: Duration,
}

/// A successful refresh: the family, the refresh token to answer, and the access token's scope.
#[derive(Debug)]
pub struct Refreshed {
    pub grant: FamilyGrant,
    pub refresh_token: Secret,
    pub scope: ScopeSet,
    /// True when this answered a concurrent retry within the grace window.
    pub grace: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is unknown, expired or revoked")]
    Unknown,
    #[error("the refresh token was issued to another client")]
    WrongClient,
    #[error("the resource does not match the refresh token's")]
    WrongResource,
    #[error("the requested scope exceeds the refresh token's")]
    WiderScope,
    /// A retired token was presented: the family is revoked.
    #[error("the refresh token was already used; its family is revoked")]
    Reused(EndedFamilies),
    /// The family of a reused token ended, but the access tokens minted from it could not all be
    /// revoked: answered "try again later", not as a detected reuse.
    #[error("the reused family's access tokens could not all be revoked")]
    AccessTokensNotRevoked,
    #[error("too many refresh-token families")]
    Full,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads a refresh token for introspection, changing nothing. Only a current token of a live
/// family is active.
#[derive(Debug)]
pub struct InspectRefreshToken {
    pub token: Secret,
}

/// What introspection reports of an active refresh token.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub grant: FamilyGrant,
    /// Unix seconds.
    pub issued_at: u64,
    pub expires_at: u64,
}

/// The flow of the family a refresh token (current or retired) belongs to, changing nothing:
/// a refresh or a revocation is traced as part of that flow from its first line.
#[derive(Debug)]
pub struct FlowOfRefreshToken {
    pub token: Secret,
}

/// The clients for which a user holds live families, with how many (the account page).
#[derive(Debug)]
pub struct CountFamiliesByClient {
    pub subject: String,
}

/// The number of live families (tests, the benchmark).
#[derive(Debug)]
pub struct CountFamilies;

// ---------------------------------------------------------------------------------------------
// The actor
// ---------------------------------------------------------------------------------------------

/// The number of families held in memory (tests, the benchmark).
#[derive(Debug)]
pub struct CountCachedFamilies;

// ---------------------------------------------------------------------------------------------
// The actor
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
pub struct RefreshTokensArgs {
    pub idle_ttl: Duration,
    pub absolute_ttl: Duration,
    pub grace: Duration,
    pub max_families: usize,
    /// Families kept in memory.
    pub cached: usize,
    pub store: Arc<dyn RefreshTokenStore>,
    /// Other servers write the same store: a family is read again before a token is judged.
    pub shared: bool,
    /// Where the access tokens of an ended family are revoked.
    pub revocations: ActorRef<Revocations>,
}

impl std::fmt::Debug for RefreshTokensArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokensArgs")
            .field("idle_ttl", &self.idle_ttl)
            .field("absolute_ttl", &self.absolute_ttl)
            .field("grace", &self.grace)
            .field("max_families", &self.max_families)
            .field("cached", &self.cached)
            .finish_non_exhaustive()
    }
}

/// How often the store's dead families are deleted.
const STORE_SWEEP: Duration = Duration::from_secs(60);

struct Family {
    record: FamilyRecord,
    scope: ScopeSet,
    /// `min(idle, absolute)` deadline, on the actor's clock.
    expires_at: Instant,
    absolute_at: Instant,
    rotated_at: Option<Instant>,
}

impl Family {
    fn grant(&self) -> FamilyGrant {
        FamilyGrant {
            family_id: self.record.family_id.clone(),
            client_id: self.record.client_id.clone(),
            subject: self.record.subject.clone(),
            scope: self.scope.clone(),
            resource: self.record.resource.clone(),
            flow: FlowId::from_claim(&self.record.flow),
        }
    }
}

/// What a deadline in the actor's queue is for.
enum Due {
    /// A cached family's deadline.
    Family(String),
    /// An access token minted from this family expires.
    Minted(String),
    /// The store's dead families are deleted.
    Store,
}

pub struct RefreshTokens {
    /// The families used lately, the least recently used evicted first.
    families: LruCache<String, Family>,
    /// Every token digest of every cached family -> its family.
    tokens: HashMap<TokenHash, String>,
    /// Subject -> its cached families, for consent revocation.
    by_subject: HashMap<String, HashSet<String>>,
    /// Origin access-token `jti` -> cached family.
    by_origin: HashMap<String, String>,
    /// Family -> the access tokens minted here from it, each until it expires (in memory only;
    /// they are short-lived).
    minted: HashMap<String, Vec<(String, Instant)>>,
    /// Families in the store: counted at start and at each store sweep, kept in between.
    stored: u64,
    expiry: ExpiryQueue<Due>,
    args: RefreshTokensArgs,
}

impl Actor for RefreshTokens {
    type Args = RefreshTokensArgs;
    type Error = StoreError;

    fn name() -> &'static str {
        "RefreshTokens"
    }

    async fn on_start(args: Self::Args, actor: ActorRef<Self>) -> Result<Self, Self::Error> {
        let mut this = RefreshTokens {
            families: LruCache::new(args.cached.max(1)),
            tokens: HashMap::new(),
            by_subject: HashMap::new(),
            by_origin: HashMap::new(),
            minted: HashMap::new(),
            stored: 0,
            expiry: ExpiryQueue::default(),
            args,
        };
        this.sweep_store().await;
        this.expiry
            .schedule(Instant::now() + STORE_SWEEP, Due::Store, &actor);
        Ok(this)
    }
}

impl RefreshTokens {
    /// Caches a family, evicting the least recently used beyond the cache's size.
    fn insert(&mut self, family: Family, actor: &ActorRef<Self>) {
        let id = family.record.family_id.clone();
        self.uncache(&id);
        if self.families.len() >= self.families.capacity()
            && let Some((evicted, family)) = self.families.remove_lru()
        {
            self.unindex(&evicted, &family);
        }
        for token in &family.record.tokens {
            self.tokens.insert(*token, id.clone());
        }
        self.tokens.insert(family.record.current, id.clone());
        self.by_subject
            .entry(family.record.subject.clone())
            .or_default()
            .insert(id.clone());
        self.by_origin
            .insert(family.record.origin_jti.clone(), id.clone());
        self.expiry
            .schedule(family.expires_at, Due::Family(id.clone()), actor);
        self.families.insert(id, family);
    }

    fn unindex(&mut self, id: &str, family: &Family) {
        for token in &family.record.tokens {
            self.tokens.remove(token);
        }
        self.tokens.remove(&family.record.current);
        if let Some(set) = self.by_subject.get_mut(&family.record.subject) {
            set.remove(id);
            if set.is_empty() {
                self.by_subject.remove(&family.record.subject);
            }
        }
        if self
            .by_origin
            .get(&family.record.origin_jti)
            .map(String::as_str)
            == Some(id)
        {
            self.by_origin.remove(&family.record.origin_jti);
        }
    }

    /// Drops a family from the cache; the access tokens minted from it stay remembered.
    fn uncache(&mut self, id: &str) {
        if let Some(family) = self.families.remove(id) {
            self.unindex(id, &family);
        }
    }

    /// Remembers an access token minted from a family, until it expires.
    fn remember_minted(&mut self, id: &str, jti: String, ttl: Duration, actor: &ActorRef<Self>) {
        let now = Instant::now();
        let minted = self.minted.entry(id.to_string()).or_default();
        minted.retain(|(_, until)| *until > now);
        minted.push((jti, now + ttl));
        self.expiry
            .schedule(now + ttl, Due::Minted(id.to_string()), actor);
    }

    /// The unexpired access tokens minted here from a family, with their remaining lifetimes.
    fn live_minted(&self, id: &str, now: Instant) -> Vec<(String, Duration)> {
        self.minted
            .get(id)
            .into_iter()
            .flatten()
            .filter(|(_, until)| *until > now)
            .map(|(jti, until)| (jti.clone(), *until - now))
            .collect()
    }

    /// Forgets a family (after the store has removed it); returns its live access tokens.
    fn forget(&mut self, id: &str, now: Instant) -> Vec<(String, Duration)> {
        self.uncache(id);
        let live = self.live_minted(id, now);
        self.minted.remove(id);
        live
    }

    /// Ends these families: the store first, then memory. Their access tokens stay as they are
    /// (expiry); `refresh_tokens/revocation.rs` also revokes them when a family ends early.
    async fn end(&mut self, ids: Vec<String>) -> Result<EndedFamilies, StoreError> {
        if ids.is_empty() {
            return Ok(EndedFamilies::default());
        }
        let removed = self.args.store.remove_families(&ids).await?;
        self.stored = self.stored.saturating_sub(removed);
        let now = Instant::now();
        let mut ended = EndedFamilies {
            families: usize::try_from(removed).unwrap_or(usize::MAX),
            ..EndedFamilies::default()
        };
        for id in &ids {
            ended.access_tokens.extend(self.forget(id, now));
        }
        Ok(ended)
    }

    /// The cached live family of a token digest (an expired one is treated as gone).
    fn family_of(&self, hash: &TokenHash, now: Instant) -> Option<&Family> {
        let id = self.tokens.get(hash)?;
        self.families.peek(id).filter(|f| f.expires_at > now)
    }

    /// Reads the family of `hash` from the store when the cache does not hold it, or always when
    /// other servers write the store too.
    async fn load_family(
        &mut self,
        hash: &TokenHash,
        actor: &ActorRef<Self>,
    ) -> Result<(), StoreError> {
        if self.args.shared || !self.tokens.contains_key(hash) {
            self.sync_family(hash, actor).await?;
        }
        Ok(())
    }

    /// Deletes the store's dead families and counts the others.
    async fn sweep_store(&mut self) {
        match self.args.store.remove_dead_families(unix_now_ms()).await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(
                actor = "RefreshTokens",
                expired,
                "timer: dead families deleted"
            ),
            Err(err) => {
                tracing::warn!(actor = "RefreshTokens", error = %err, "expired families stay stored until the next sweep")
            }
        }
        match self.args.store.count_families().await {
            Ok(stored) => self.stored = stored,
            Err(err) => {
                tracing::warn!(actor = "RefreshTokens", error = %err, "families not counted")
            }
        }
    }
}

impl Message<IssueRefreshToken> for RefreshTokens {
    type Reply = Result<Secret, RefreshError>;

    async fn handle(
        &mut self,
        msg: IssueRefreshToken,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        if self.stored >= self.args.max_families as u64 {
            return Err(RefreshError::Full);
        }
        let token = Secret::random(32);
        let hash = token.sha256();
        let now = Instant::now();
        let now_ms = unix_now_ms();
        let absolute_ms = now_ms + self.args.absolute_ttl.as_millis() as u64;
        let idle_ms = (now_ms + self.args.idle_ttl.as_millis() as u64).min(absolute_ms);
        let record = FamilyRecord {
            family_id: crate::trace::random_token(16),
            client_id: msg.client_id,
            subject: msg.subject,
            scope: msg.scope.to_string(),
            resource: msg.resource,
            flow: msg.flow.to_string(),
            origin_jti: msg.access_jti.clone(),
            created_at_ms: now_ms,
            absolute_expires_at_ms: absolute_ms,
            idle_expires_at_ms: idle_ms,
            generation: 0,
            current: hash,
            previous: None,
            rotated_at_ms: None,
            salt: None,
            tokens: vec![hash],
        };
        self.args.store.insert_family(&record).await?;
        self.stored += 1;
        let id = record.family_id.clone();
        let family = Family {
            record,
            scope: msg.scope,
            expires_at: now + self.args.idle_ttl.min(self.args.absolute_ttl),
            absolute_at: now + self.args.absolute_ttl,
            rotated_at: None,
        };
        self.insert(family, ctx.actor_ref());
        self.remember_minted(&id, msg.access_jti, msg.access_ttl, ctx.actor_ref());
        Ok(token)
    }
}

impl Message<RotateRefreshToken> for RefreshTokens {
    type Reply = Result<Refreshed, RefreshError>;

    async fn handle(
        &mut self,
        msg: RotateRefreshToken,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let hash = msg.token.sha256();
        // On a store other servers write too, the family is judged as the store has it; a
        // rotation lost to another server is judged again, once (`shared.rs`).
        let shared = self.args.shared;
        let mut lost = false;
        loop {
            self.load_family(&hash, ctx.actor_ref()).await?;
            let now = Instant::now();
            let Some(family) = self.family_of(&hash, now) else {
                return Err(RefreshError::Unknown);
            };
            // Checks that consume nothing.
            if family.record.client_id != msg.client_id {
                return Err(RefreshError::WrongClient);
            }
            if let Some(resource) = &msg.resource
                && *resource != family.record.resource
            {
                return Err(RefreshError::WrongResource);
            }
            let scope = match &msg.scope {
                Some(requested) if !requested.is_subset(&family.scope) => {
                    return Err(RefreshError::WiderScope);
                }
                Some(requested) if !requested.is_empty() => requested.clone(),
                _ => family.scope.clone(),
            };
            let id = family.record.family_id.clone();

            if family.record.current != hash {
                let in_grace = family.record.previous == Some(hash)
                    && family
                        .rotated_at
                        .is_some_and(|at| now.duration_since(at) <= self.args.grace);
                if in_grace && let Some(salt) = family.record.salt {
                    // The concurrent retry: the same successor, recomputed from the presented token.
                    let again = successor(&msg.token, &salt);
                    if again.sha256() == family.record.current {
                        let grant = family.grant();
                        self.remember_minted(&id, msg.access_jti, msg.access_ttl, ctx.actor_ref());
                        return Ok(Refreshed {
                            grant,
                            refresh_token: again,
                            scope,
                            grace: true,
                        });
                    }
                }
                // A retired token: whoever presents it, the chain is compromised.
                tracing::warn!(
                    actor = "RefreshTokens",
                    flow = %family.record.flow,
                    client_id = %family.record.client_id,
                    sub = %family.record.subject,
                    generation = family.record.generation,
                    "refresh token reused; revoking its family"
                );
                let ended = self.end_then_revoke(vec![id]).await?;
                return Err(RefreshError::Reused(ended));
            }

            // Rotate: compare-and-swap on the presented token in the store, then in memory.
            let mut salt = [0u8; 32];
            rand::fill(&mut salt[..]);
            let next = successor(&msg.token, &salt);
            let next_hash = next.sha256();
            let now_ms = unix_now_ms();
            let idle_ms = (now_ms + self.args.idle_ttl.as_millis() as u64)
                .min(family.record.absolute_expires_at_ms);
            let rotation = Rotation {
                family_id: id.clone(),
                presented: hash,
                next: next_hash,
                salt,
                generation: family.record.generation + 1,
                rotated_at_ms: now_ms,
                idle_expires_at_ms: idle_ms,
            };
            if !self.args.store.rotate(&rotation).await? {
                // Another server rotated or revoked it first: this presentation lost the race.
                if shared && !lost {
                    lost = true;
                    continue;
                }
                return Err(RefreshError::Unknown);
            }
            let idle_ttl = self.args.idle_ttl;
            let Some(family) = self.families.get_mut(&id) else {
                return Err(RefreshError::Unknown);
            };
            family.record.previous = Some(hash);
            family.record.current = next_hash;
            family.record.tokens.push(next_hash);
            family.record.salt = Some(salt);
            family.record.generation = rotation.generation;
            family.record.rotated_at_ms = Some(now_ms);
            family.record.idle_expires_at_ms = idle_ms;
            family.rotated_at = Some(now);
            family.expires_at = (now + idle_ttl).min(family.absolute_at);
            let grant = family.grant();
            // The family's deadline only moves later: its entry in the expiry queue stays, and the
            // sweep re-queues it at the new deadline (one entry per family, however often it is used).
            self.tokens.insert(next_hash, id.clone());
            self.remember_minted(&id, msg.access_jti, msg.access_ttl, ctx.actor_ref());
            return Ok(Refreshed {
                grant,
                refresh_token: next,
                scope,
                grace: false,
            });
        }
    }
}

impl Message<Sweep> for RefreshTokens {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, ()>) {
        let now = Instant::now();
        let mut due = Vec::new();
        let mut sweep_store = false;
        for entry in self.expiry.pop_due(now, ctx.actor_ref()) {
            match entry {
                Due::Family(id) => match self.families.peek(&id) {
                    Some(family) if family.expires_at <= now => {
                        tracing::info!(actor = "RefreshTokens", flow = %family.record.flow, "timer: refresh-token family expired");
                        due.push(id);
                    }
                    // Used since it was queued: due again at its new deadline.
                    Some(family) => {
                        let at = family.expires_at;
                        self.expiry.schedule(at, Due::Family(id), ctx.actor_ref());
                    }
                    None => {}
                },
                Due::Minted(id) => {
                    if let Some(minted) = self.minted.get_mut(&id) {
                        minted.retain(|(_, until)| *until > now);
                        if minted.is_empty() {
                            self.minted.remove(&id);
                        }
                    }
                }
                Due::Store => {
                    sweep_store = true;
                    self.expiry
                        .schedule(now + STORE_SWEEP, Due::Store, ctx.actor_ref());
                }
            }
        }
        // On a store other servers write too, this copy's deadline may be stale (a refresh at
        // another server pushed it back): drop the copies, and let the store delete only the
        // families its own deadlines say are dead.
        if self.args.shared || sweep_store {
            for id in &due {
                self.uncache(id);
            }
            if sweep_store || !due.is_empty() {
                self.sweep_store().await;
            }
            return;
        }
        if due.is_empty() {
            return;
        }
        match self.end(due).await {
            Ok(ended) => tracing::info!(
                actor = "RefreshTokens",
                expired = ended.families,
                stored = self.stored,
                "timer"
            ),
            // Expired families are refused on every read anyway; the next sweep retries.
            Err(err) => tracing::warn!(actor = "RefreshTokens", error = %err, "expiry not stored"),
        }
    }
}

#[cfg(test)]
mod tests;
