//! `RefreshTokens`: refresh-token families (OAuth 2.1 section 4.3, RFC 9700 section 4.14, TK-3).
//!
//! A family is what one authorization (one redeemed code) grants over time: client, subject,
//! scope, resource and flow, an absolute deadline, and an idle deadline pushed back by every use.
//! Its tokens are opaque (256 bits, base64url) and kept only as SHA-256 digests. Exactly one token
//! of a family is current; [`Refresh`] rotates it, so every use answers a new token and retires
//! the one presented.
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
//! the code it came from is replayed.
//!
//! Persistence: every change goes through a [`RefreshTokenStore`] and is answered only once the
//! store has committed it. [`MemoryRefreshTokenStore`] keeps nothing (today's in-memory mode);
//! a durable store implements the same trait. At start the actor loads every live family.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::oauth::scope::ScopeSet;
use crate::trace::{FlowId, Secret};
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use kameo::actor::{Actor, ActorRef};
use kameo::message::{Context, Message};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// SHA-256 digest of a refresh token: the only form in which a token is kept.
pub type TokenHash = [u8; 32];

/// The digest of a presented refresh token.
pub fn hash_token(token: &Secret) -> TokenHash {
    Sha256::digest(token.expose().as_bytes()).into()
}

/// The successor of `presented` under `salt`: `base64url(HMAC-SHA256(presented, salt))`.
fn successor(presented: &Secret, salt: &[u8; 32]) -> Secret {
    use base64::Engine;
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(presented.expose().as_bytes()) else {
        // HMAC takes keys of any length; this branch cannot be reached.
        return Secret::random(32);
    };
    mac.update(salt);
    Secret::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()),
    )
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Persistence
// ---------------------------------------------------------------------------------------------

/// A family as the store keeps it. Times are Unix milliseconds; token values are digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyRecord {
    /// Random id (128 bits, base64url). Primary key.
    pub family_id: String,
    pub client_id: String,
    pub subject: String,
    /// The scope granted by the authorization; fixed for the family's life.
    pub scope: String,
    /// The resource (the access tokens' `aud`); fixed for the family's life.
    pub resource: String,
    pub flow: String,
    /// The `jti` of the access token issued with the family's first token (code redemption): a
    /// replay of that code revokes the family.
    pub origin_jti: String,
    pub created_at_ms: u64,
    /// The family ends here whatever happens.
    pub absolute_expires_at_ms: u64,
    /// The family ends here unless a refresh pushes it back (never past the absolute deadline).
    pub idle_expires_at_ms: u64,
    /// Rotations so far (0 for the token issued with the code).
    pub generation: u64,
    /// Digest of the one current token.
    pub current: TokenHash,
    /// Digest of the token the last rotation retired, with the rotation's time and salt: the
    /// grace window's retry recomputes the current token from them.
    pub previous: Option<TokenHash>,
    pub rotated_at_ms: Option<u64>,
    pub salt: Option<[u8; 32]>,
    /// Digests of every token of the family ever issued (current and retired), so that a retired
    /// token is recognised as reuse and not as an unknown token.
    pub tokens: Vec<TokenHash>,
}

/// One rotation, applied by [`RefreshTokenStore::rotate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub family_id: String,
    /// The token presented: the rotation applies only if it is still the family's current one.
    pub presented: TokenHash,
    /// The new current token.
    pub next: TokenHash,
    pub salt: [u8; 32],
    pub generation: u64,
    pub rotated_at_ms: u64,
    pub idle_expires_at_ms: u64,
}

/// The store failed or is unreachable; the actor answers "try again later" and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refresh token store: {0}")]
pub struct StoreError(pub String);

/// Where refresh-token families are persisted. The actor holds the authoritative copy in memory
/// and calls the store before it answers; every method must have committed durably when its
/// future resolves `Ok`, and must change nothing when it resolves `Err`.
pub trait RefreshTokenStore: Send + Sync + 'static {
    /// Inserts a new family with its first token (`family.current`, also in `family.tokens`).
    /// Atomic: the family and its token are stored together or not at all.
    fn insert_family(&self, family: &FamilyRecord) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Rotates a family as one atomic compare-and-swap on the current token: if the family
    /// exists and its current token is `rotation.presented`, then in one transaction set
    /// `previous = presented`, `current = next`, record `next` among the family's tokens, and set
    /// `salt`, `generation`, `rotated_at_ms` and `idle_expires_at_ms`; answer `Ok(true)`.
    /// Otherwise (another rotation or a revocation came first) change nothing and answer
    /// `Ok(false)`. A store shared by several servers thereby enforces single use by itself
    /// (`UPDATE ... WHERE family_id = ? AND current = ?`, one row affected or none).
    fn rotate(&self, rotation: &Rotation) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Deletes these families and all their tokens, atomically (revocation, reuse detection,
    /// consent revocation, expiry). Ids that do not exist are ignored. After it commits no token
    /// of these families can be rotated.
    fn remove_families(&self, family_ids: &[String]) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Every family whose absolute and idle deadlines are both after `now_ms`, with all its token
    /// digests; called once when the actor starts. The store may delete the others.
    fn load_live(&self, now_ms: u64) -> BoxFuture<'_, Result<Vec<FamilyRecord>, StoreError>>;
}

/// The store of the in-memory mode: remembers nothing, never fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryRefreshTokenStore;

impl RefreshTokenStore for MemoryRefreshTokenStore {
    fn insert_family(&self, _: &FamilyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn rotate(&self, _: &Rotation) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async { Ok(true) })
    }
    fn remove_families(&self, _: &[String]) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn load_live(&self, _: u64) -> BoxFuture<'_, Result<Vec<FamilyRecord>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

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
pub struct Issue {
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
pub struct Refresh {
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

/// Access tokens minted from a family that ended, still unexpired: revoke them by `jti` until
/// they expire.
#[derive(Debug, Clone, Default)]
pub struct EndedFamilies {
    pub families: usize,
    pub access_tokens: Vec<(String, Duration)>,
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
    #[error("too many refresh-token families")]
    Full,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Revokes the family of a refresh token presented at the revocation endpoint (RFC 7009): only
/// when the token belongs to `client_id`.
#[derive(Debug)]
pub struct RevokeToken {
    pub token: Secret,
    pub client_id: String,
}

/// The outcome of [`RevokeToken`].
#[derive(Debug)]
pub enum TokenRevocation {
    /// No family has this token (unknown, or already ended).
    Unknown,
    /// The token belongs to another client: nothing revoked (RFC 7009 section 2.1).
    OtherClient,
    Revoked(EndedFamilies),
}

/// Revokes every family of a user for a client (the user revoked the client's consent).
#[derive(Debug)]
pub struct RevokeFor {
    pub subject: String,
    pub client_id: String,
}

/// Revokes the family whose first token was issued with the access token `jti` (its code was
/// replayed).
#[derive(Debug)]
pub struct RevokeIssuedWith {
    pub jti: String,
}

/// Reads a refresh token for introspection, changing nothing. Only a current token of a live
/// family is active.
#[derive(Debug)]
pub struct Inspect {
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

/// The clients for which a user holds live families, with how many (the account page).
#[derive(Debug)]
pub struct ClientsOf {
    pub subject: String,
}

/// The number of live families (tests, the benchmark).
#[derive(Debug)]
pub struct Count;

// ---------------------------------------------------------------------------------------------
// The actor
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
pub struct RefreshTokensArgs {
    pub idle_ttl: Duration,
    pub absolute_ttl: Duration,
    pub grace: Duration,
    pub max_families: usize,
    pub store: Arc<dyn RefreshTokenStore>,
}

impl std::fmt::Debug for RefreshTokensArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokensArgs")
            .field("idle_ttl", &self.idle_ttl)
            .field("absolute_ttl", &self.absolute_ttl)
            .field("grace", &self.grace)
            .field("max_families", &self.max_families)
            .finish_non_exhaustive()
    }
}

struct Family {
    record: FamilyRecord,
    scope: ScopeSet,
    /// `min(idle, absolute)` deadline, on the actor's clock.
    expires_at: Instant,
    absolute_at: Instant,
    rotated_at: Option<Instant>,
    /// Access tokens minted from this family (in memory only; they are short-lived).
    access: Vec<(String, Instant)>,
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

    fn remember_access(&mut self, jti: String, ttl: Duration, now: Instant) {
        self.access.retain(|(_, until)| *until > now);
        self.access.push((jti, now + ttl));
    }
}

pub struct RefreshTokens {
    families: HashMap<String, Family>,
    /// Every token digest of every live family -> its family.
    tokens: HashMap<TokenHash, String>,
    /// Subject -> its families, for consent revocation and the account page.
    by_subject: HashMap<String, HashSet<String>>,
    /// Origin access-token `jti` -> family.
    by_origin: HashMap<String, String>,
    expiry: ExpiryQueue<String>,
    args: RefreshTokensArgs,
}

/// A Unix-millisecond time as a deadline on the actor's clock.
fn instant_of(at_ms: u64, now: Instant, now_ms: u64) -> Instant {
    now + Duration::from_millis(at_ms.saturating_sub(now_ms))
}

impl Actor for RefreshTokens {
    type Args = RefreshTokensArgs;
    type Error = StoreError;

    fn name() -> &'static str {
        "RefreshTokens"
    }

    async fn on_start(args: Self::Args, actor: ActorRef<Self>) -> Result<Self, Self::Error> {
        let mut this = RefreshTokens {
            families: HashMap::new(),
            tokens: HashMap::new(),
            by_subject: HashMap::new(),
            by_origin: HashMap::new(),
            expiry: ExpiryQueue::default(),
            args,
        };
        let now_ms = unix_now_ms();
        let loaded = this.args.store.load_live(now_ms).await?;
        let count = loaded.len();
        for record in loaded {
            let now = Instant::now();
            let expires_ms = record.idle_expires_at_ms.min(record.absolute_expires_at_ms);
            if expires_ms <= now_ms {
                continue;
            }
            let family = Family {
                scope: ScopeSet::parse(&record.scope).unwrap_or_default(),
                expires_at: instant_of(expires_ms, now, now_ms),
                absolute_at: instant_of(record.absolute_expires_at_ms, now, now_ms),
                rotated_at: record.rotated_at_ms.map(|at| {
                    now.checked_sub(Duration::from_millis(now_ms.saturating_sub(at)))
                        .unwrap_or(now)
                }),
                access: Vec::new(),
                record,
            };
            this.insert(family, &actor);
        }
        if count > 0 {
            tracing::info!(actor = "RefreshTokens", families = count, "loaded");
        }
        Ok(this)
    }
}

impl RefreshTokens {
    fn insert(&mut self, family: Family, actor: &ActorRef<Self>) {
        let id = family.record.family_id.clone();
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
        self.expiry.schedule(family.expires_at, id.clone(), actor);
        self.families.insert(id, family);
    }

    /// Forgets a family in memory (after the store has removed it); returns its live access
    /// tokens.
    fn forget(&mut self, id: &str, now: Instant) -> Vec<(String, Duration)> {
        let Some(family) = self.families.remove(id) else {
            return Vec::new();
        };
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
        family
            .access
            .into_iter()
            .filter(|(_, until)| *until > now)
            .map(|(jti, until)| (jti, until - now))
            .collect()
    }

    /// Ends these families: the store first, then memory.
    async fn end(&mut self, ids: Vec<String>) -> Result<EndedFamilies, StoreError> {
        if ids.is_empty() {
            return Ok(EndedFamilies::default());
        }
        self.args.store.remove_families(&ids).await?;
        let now = Instant::now();
        let mut ended = EndedFamilies::default();
        for id in &ids {
            if self.families.contains_key(id) {
                ended.families += 1;
            }
            ended.access_tokens.extend(self.forget(id, now));
        }
        Ok(ended)
    }

    /// The live family of a token digest (an expired one is treated as gone).
    fn family_of(&self, hash: &TokenHash, now: Instant) -> Option<&Family> {
        let id = self.tokens.get(hash)?;
        self.families.get(id).filter(|f| f.expires_at > now)
    }
}

impl Message<Issue> for RefreshTokens {
    type Reply = Result<Secret, RefreshError>;

    async fn handle(&mut self, msg: Issue, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.families.len() >= self.args.max_families {
            return Err(RefreshError::Full);
        }
        let token = Secret::random(32);
        let hash = hash_token(&token);
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
        let mut family = Family {
            record,
            scope: msg.scope,
            expires_at: now + self.args.idle_ttl.min(self.args.absolute_ttl),
            absolute_at: now + self.args.absolute_ttl,
            rotated_at: None,
            access: Vec::new(),
        };
        family.remember_access(msg.access_jti, msg.access_ttl, now);
        self.insert(family, ctx.actor_ref());
        Ok(token)
    }
}

impl Message<Refresh> for RefreshTokens {
    type Reply = Result<Refreshed, RefreshError>;

    async fn handle(&mut self, msg: Refresh, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let hash = hash_token(&msg.token);
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
                if hash_token(&again) == family.record.current {
                    let grant = family.grant();
                    if let Some(family) = self.families.get_mut(&id) {
                        family.remember_access(msg.access_jti, msg.access_ttl, now);
                    }
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
            let ended = self.end(vec![id]).await?;
            return Err(RefreshError::Reused(ended));
        }

        // Rotate: compare-and-swap on the presented token in the store, then in memory.
        let mut salt = [0u8; 32];
        rand::fill(&mut salt[..]);
        let next = successor(&msg.token, &salt);
        let next_hash = hash_token(&next);
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
        family.remember_access(msg.access_jti, msg.access_ttl, now);
        let grant = family.grant();
        // The family's deadline only moves later: its entry in the expiry queue stays, and the
        // sweep re-queues it at the new deadline (one entry per family, however often it is used).
        self.tokens.insert(next_hash, id);
        Ok(Refreshed {
            grant,
            refresh_token: next,
            scope,
            grace: false,
        })
    }
}

impl Message<RevokeToken> for RefreshTokens {
    type Reply = Result<TokenRevocation, StoreError>;

    async fn handle(
        &mut self,
        msg: RevokeToken,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let hash = hash_token(&msg.token);
        let Some(family) = self.family_of(&hash, Instant::now()) else {
            return Ok(TokenRevocation::Unknown);
        };
        if family.record.client_id != msg.client_id {
            return Ok(TokenRevocation::OtherClient);
        }
        let id = family.record.family_id.clone();
        Ok(TokenRevocation::Revoked(self.end(vec![id]).await?))
    }
}

impl Message<RevokeFor> for RefreshTokens {
    type Reply = Result<EndedFamilies, StoreError>;

    async fn handle(&mut self, msg: RevokeFor, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let ids: Vec<String> = self
            .by_subject
            .get(&msg.subject)
            .into_iter()
            .flatten()
            .filter(|id| {
                self.families
                    .get(*id)
                    .is_some_and(|f| f.record.client_id == msg.client_id)
            })
            .cloned()
            .collect();
        self.end(ids).await
    }
}

impl Message<RevokeIssuedWith> for RefreshTokens {
    type Reply = Result<EndedFamilies, StoreError>;

    async fn handle(
        &mut self,
        msg: RevokeIssuedWith,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let ids: Vec<String> = self.by_origin.get(&msg.jti).cloned().into_iter().collect();
        self.end(ids).await
    }
}

impl Message<Inspect> for RefreshTokens {
    type Reply = Option<Inspected>;

    async fn handle(&mut self, msg: Inspect, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let hash = hash_token(&msg.token);
        let family = self.family_of(&hash, Instant::now())?;
        if family.record.current != hash {
            return None;
        }
        Some(Inspected {
            grant: family.grant(),
            issued_at: family
                .record
                .rotated_at_ms
                .unwrap_or(family.record.created_at_ms)
                / 1000,
            expires_at: family
                .record
                .idle_expires_at_ms
                .min(family.record.absolute_expires_at_ms)
                / 1000,
        })
    }
}

impl Message<ClientsOf> for RefreshTokens {
    type Reply = Vec<(String, usize)>;

    async fn handle(&mut self, msg: ClientsOf, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let now = Instant::now();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for id in self.by_subject.get(&msg.subject).into_iter().flatten() {
            if let Some(family) = self.families.get(id).filter(|f| f.expires_at > now) {
                *counts.entry(family.record.client_id.clone()).or_default() += 1;
            }
        }
        let mut clients: Vec<(String, usize)> = counts.into_iter().collect();
        clients.sort();
        clients
    }
}

impl Message<Count> for RefreshTokens {
    type Reply = usize;

    async fn handle(&mut self, _: Count, _: &mut Context<Self, usize>) -> usize {
        self.families.len()
    }
}

impl Message<Sweep> for RefreshTokens {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, ()>) {
        let now = Instant::now();
        let mut due = Vec::new();
        for id in self.expiry.pop_due(now, ctx.actor_ref()) {
            match self.families.get(&id) {
                Some(family) if family.expires_at <= now => due.push(id),
                // Used since it was queued: due again at its new deadline.
                Some(family) => {
                    let at = family.expires_at;
                    self.expiry.schedule(at, id, ctx.actor_ref());
                }
                None => {}
            }
        }
        if due.is_empty() {
            return;
        }
        match self.end(due).await {
            Ok(ended) => tracing::info!(
                actor = "RefreshTokens",
                expired = ended.families,
                live = self.families.len(),
                "timer"
            ),
            // Expired families are refused on every read anyway; the next sweep retries.
            Err(err) => tracing::warn!(actor = "RefreshTokens", error = %err, "expiry not stored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kameo::actor::Spawn;
    use kameo::error::SendError;

    fn spawn(grace: u64) -> ActorRef<RefreshTokens> {
        RefreshTokens::spawn(RefreshTokensArgs {
            idle_ttl: Duration::from_secs(100),
            absolute_ttl: Duration::from_secs(1000),
            grace: Duration::from_secs(grace),
            max_families: 10,
            store: Arc::new(MemoryRefreshTokenStore),
        })
    }

    fn issue() -> Issue {
        Issue {
            client_id: "c1".into(),
            subject: "alice".into(),
            scope: ScopeSet::parse("mcp.read mcp.write").unwrap(),
            resource: "r".into(),
            flow: FlowId::mint(),
            access_jti: "a0".into(),
            access_ttl: Duration::from_secs(60),
        }
    }

    fn refresh(token: &Secret) -> Refresh {
        Refresh {
            token: token.clone(),
            client_id: "c1".into(),
            resource: None,
            scope: None,
            access_jti: "a1".into(),
            access_ttl: Duration::from_secs(60),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rotation_grace_and_reuse() {
        let tokens = spawn(5);
        let t0 = tokens.ask(issue()).await.unwrap();
        let first = tokens.ask(refresh(&t0)).await.unwrap();
        assert!(!first.grace);
        assert_ne!(first.refresh_token, t0);
        // Within the grace window: the same successor again.
        let again = tokens.ask(refresh(&t0)).await.unwrap();
        assert!(again.grace);
        assert_eq!(again.refresh_token, first.refresh_token);
        let t2 = tokens.ask(refresh(&first.refresh_token)).await.unwrap();
        // t0 is now two rotations old: reuse, the family ends, t2 included.
        let reused = tokens.ask(refresh(&t0)).await;
        match reused {
            Err(SendError::HandlerError(RefreshError::Reused(ended))) => {
                assert_eq!(ended.families, 1);
                // Issued with the code, two rotations and the grace retry.
                assert_eq!(ended.access_tokens.len(), 4, "{ended:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(tokens.ask(refresh(&t2.refresh_token)).await.is_err());
        assert_eq!(tokens.ask(Count).await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn reuse_after_the_grace_window_ends_the_family() {
        let tokens = spawn(5);
        let t0 = tokens.ask(issue()).await.unwrap();
        let t1 = tokens.ask(refresh(&t0)).await.unwrap().refresh_token;
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(matches!(
            tokens.ask(refresh(&t0)).await,
            Err(SendError::HandlerError(RefreshError::Reused(_)))
        ));
        assert!(matches!(
            tokens.ask(refresh(&t1)).await,
            Err(SendError::HandlerError(RefreshError::Unknown))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn refused_requests_consume_nothing_and_families_expire() {
        let tokens = spawn(0);
        let t0 = tokens.ask(issue()).await.unwrap();
        let mut other = refresh(&t0);
        other.client_id = "c2".into();
        assert!(matches!(
            tokens.ask(other).await,
            Err(SendError::HandlerError(RefreshError::WrongClient))
        ));
        let mut wider = refresh(&t0);
        wider.scope = Some(ScopeSet::parse("mcp.read admin").unwrap());
        assert!(matches!(
            tokens.ask(wider).await,
            Err(SendError::HandlerError(RefreshError::WiderScope))
        ));
        let mut narrower = refresh(&t0);
        narrower.scope = Some(ScopeSet::parse("mcp.read").unwrap());
        let t1 = tokens.ask(narrower).await.unwrap();
        assert_eq!(t1.scope.to_string(), "mcp.read");
        // The family keeps its scope: the next refresh may ask for all of it again.
        let t2 = tokens.ask(refresh(&t1.refresh_token)).await.unwrap();
        assert_eq!(t2.scope.to_string(), "mcp.read mcp.write");
        // Idle expiry.
        tokio::time::sleep(Duration::from_secs(101)).await;
        tokio::task::yield_now().await;
        assert!(matches!(
            tokens.ask(refresh(&t2.refresh_token)).await,
            Err(SendError::HandlerError(RefreshError::Unknown))
        ));
        assert_eq!(tokens.ask(Count).await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_family_in_use_still_ends_at_its_absolute_deadline() {
        let tokens = spawn(0);
        let mut token = tokens.ask(issue()).await.unwrap();
        // Used every 90 s (idle TTL 100 s): alive, and re-queued by each sweep, until 1000 s.
        for _ in 0..11 {
            tokio::time::sleep(Duration::from_secs(90)).await;
            token = tokens.ask(refresh(&token)).await.unwrap().refresh_token;
        }
        assert_eq!(tokens.ask(Count).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_secs(20)).await;
        tokio::task::yield_now().await;
        assert!(matches!(
            tokens.ask(refresh(&token)).await,
            Err(SendError::HandlerError(RefreshError::Unknown))
        ));
        assert_eq!(tokens.ask(Count).await.unwrap(), 0);
    }

    /// A store that loads one family and loses every compare-and-swap, as a shared store would
    /// when another server rotated first.
    struct LosingStore(FamilyRecord);

    impl RefreshTokenStore for LosingStore {
        fn insert_family(&self, _: &FamilyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn rotate(&self, _: &Rotation) -> BoxFuture<'_, Result<bool, StoreError>> {
            Box::pin(async { Ok(false) })
        }
        fn remove_families(&self, _: &[String]) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(async { Err(StoreError("unavailable".into())) })
        }
        fn load_live(&self, _: u64) -> BoxFuture<'_, Result<Vec<FamilyRecord>, StoreError>> {
            let record = self.0.clone();
            Box::pin(async move { Ok(vec![record]) })
        }
    }

    #[tokio::test]
    async fn loaded_families_are_served_and_a_lost_swap_or_failed_store_changes_nothing() {
        let token = Secret::random(32);
        let now_ms = unix_now_ms();
        let record = FamilyRecord {
            family_id: "f1".into(),
            client_id: "c1".into(),
            subject: "alice".into(),
            scope: "mcp.read".into(),
            resource: "r".into(),
            flow: "0123456789ab".into(),
            origin_jti: "a0".into(),
            created_at_ms: now_ms,
            absolute_expires_at_ms: now_ms + 1_000_000,
            idle_expires_at_ms: now_ms + 100_000,
            generation: 0,
            current: hash_token(&token),
            previous: None,
            rotated_at_ms: None,
            salt: None,
            tokens: vec![hash_token(&token)],
        };
        let tokens = RefreshTokens::spawn(RefreshTokensArgs {
            idle_ttl: Duration::from_secs(100),
            absolute_ttl: Duration::from_secs(1000),
            grace: Duration::from_secs(5),
            max_families: 10,
            store: Arc::new(LosingStore(record)),
        });
        assert_eq!(tokens.ask(Count).await.unwrap(), 1);
        let found = tokens
            .ask(Inspect {
                token: token.clone(),
            })
            .await
            .unwrap();
        assert_eq!(found.map(|f| f.grant.subject), Some("alice".to_string()));
        // Another server rotated it first: refused, and the family is as it was.
        assert!(matches!(
            tokens.ask(refresh(&token)).await,
            Err(SendError::HandlerError(RefreshError::Unknown))
        ));
        // The store cannot remove: the revocation fails and memory keeps the family.
        let revoke = RevokeToken {
            token: token.clone(),
            client_id: "c1".into(),
        };
        assert!(tokens.ask(revoke).await.is_err());
        assert_eq!(tokens.ask(Count).await.unwrap(), 1);
    }
}
