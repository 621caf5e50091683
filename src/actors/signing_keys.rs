//! `SigningKeys`: the authorization server's signing keys, their lifecycle and the JWKS.
//!
//! The actor owns which keys exist and which one signs: RSA-2048 keys ([`ActiveKey`], made and
//! parsed by [`crate::oauth::jws`]), their public JWKs and the JWKS document. Signing itself does
//! not queue here: the current key is handed through a watch channel to the
//! [`crate::actors::token_signer`] pool, one signer per core.
//!
//! Rotation, on the actor's one timer: a key signs for the rotation interval. A publication delay
//! before its end, the next key is made, stored and published in the JWKS; when the interval ends
//! it starts signing and the old key is retired. A retired key stays published until every token
//! it signed has expired (the access-token lifetime plus a small margin), then it is removed from
//! the JWKS and the store. So a resource server that caches the JWKS (or refetches it on an
//! unknown `kid`) always knows a key before it sees a token signed with it, and never loses one
//! while its tokens are valid.
//!
//! Durability: keys are in the store ([`crate::store::KeyStore`]) with their private halves
//! encrypted ([`crate::store::cipher`]), and reloaded at start: tokens issued before a restart
//! still validate after it. A key change is made in the store first, then in the JWKS and signers.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::oauth::jws::{ActiveKey, JwsError, jwks_document};
use crate::oauth::time::unix_now;
use crate::store::cipher::KeyCipher;
use crate::store::{Change, KeyMade, KeyRecord, SharedStore, StoreError};
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Why a signing key could not be made, stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Jws(#[from] JwsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cipher(#[from] crate::store::cipher::CipherError),
}

/// One published key: the parsed key, its public half for verification, and its lifecycle.
struct Published {
    key: Arc<ActiveKey>,
    verifying: Arc<jsonwebtoken::DecodingKey>,
    record: KeyRecord,
}

/// How long a key change the store could not commit waits before it is tried again.
const RETRY: Duration = Duration::from_secs(30);

/// Margin kept after a retired key's last token expires, for clocks a little apart.
pub const RETIRED_KEY_MARGIN_SECONDS: u64 = 5;

/// Arguments of [`SigningKeys`].
#[derive(Clone)]
pub struct SigningKeysArgs {
    pub store: SharedStore,
    pub cipher: Arc<KeyCipher>,
    /// The key the signers use; `SigningKeys` switches it.
    pub current: Arc<watch::Sender<Arc<ActiveKey>>>,
    /// How long a key signs (`None`: never rotated).
    pub rotation: Option<Duration>,
    /// How long before it signs a new key is published.
    pub publication_delay: Duration,
    /// How long a retired key stays published: the longest lifetime of a token it signed.
    pub retention: Duration,
}

/// Owns the signing keys' lifecycle and publishes the JWKS.
pub struct SigningKeys {
    keys: Vec<Published>,
    jwks: Arc<serde_json::Value>,
    args: SigningKeysArgs,
    timer: ExpiryQueue<()>,
    /// Unix time of the timer's clock: the actor's times follow tokio's clock, so a paused clock
    /// in tests moves them too.
    clock: (u64, Instant),
}

/// The JWKS document (RFC 7517) of every published key.
#[derive(Debug)]
pub struct Jwks;

/// The public key with this id, if it is published (for introspection).
#[derive(Debug)]
pub struct VerifyingKey {
    pub kid: String,
}

/// Reloads the keys from the store (`mcp-oauth admin keys rotate` added one): new keys are
/// published at once and sign from their activation time. Answers how many keys are published.
#[derive(Debug)]
pub struct ReloadKeys;

/// Makes a new key and stores it, published from now and signing `activate_in` from now: what
/// `mcp-oauth admin keys rotate` does. A running server publishes it when it reloads its keys
/// (within a second), then signs with it from its activation, retiring the one before.
pub async fn add_next_key(
    store: &SharedStore,
    cipher: &KeyCipher,
    activate_in: Duration,
) -> Result<KeyRecord, KeyError> {
    let (key, der) = ActiveKey::generate_with_der().await?;
    let now = unix_now();
    let record = seal(cipher, &key, &der, now, now + activate_in.as_secs())?;
    store.insert_signing_key(&record).await?;
    Ok(record)
}

/// Seals a key and makes its record.
fn seal(
    cipher: &KeyCipher,
    key: &ActiveKey,
    der: &[u8],
    now: u64,
    activates_at: u64,
) -> Result<KeyRecord, KeyError> {
    Ok(KeyRecord {
        kid: key.kid.clone(),
        encrypted_key: cipher.seal(&key.kid, der)?,
        created_at: now,
        activates_at,
        retired_at: None,
        removes_at: None,
    })
}

/// The key that signs at `now`: the last activated one that is not retired.
fn signing_index(keys: &[KeyRecord], now: u64) -> Option<usize> {
    keys.iter()
        .enumerate()
        .filter(|(_, k)| k.activates_at <= now && k.retired_at.is_none())
        .max_by_key(|(_, k)| (k.activates_at, k.created_at))
        .map(|(i, _)| i)
}

/// Loads the stored keys (decrypted) and makes the first one if there is no signing key. Returns
/// the key that signs now. Called before the actors start, so a wrong secret or a broken store
/// stops the server at start rather than at its first token.
pub async fn load_or_create(
    store: &SharedStore,
    cipher: &KeyCipher,
) -> Result<Arc<ActiveKey>, KeyError> {
    // Twice at most: when another server on the same database makes the first key between the
    // read and the insert, its key is read the second time, and taken even if it activates a
    // moment later by this server's clock.
    for attempt in 0..2 {
        let now = unix_now();
        let records = store.signing_keys().await?;
        let index = signing_index(&records, now).or_else(|| {
            (attempt > 0)
                .then(|| {
                    records
                        .iter()
                        .enumerate()
                        .filter(|(_, k)| k.retired_at.is_none())
                        .min_by_key(|(_, k)| (k.activates_at, k.created_at))
                        .map(|(i, _)| i)
                })
                .flatten()
        });
        if let Some(i) = index {
            let record = &records[i];
            let der = cipher.open(&record.kid, &record.encrypted_key)?;
            return Ok(ActiveKey::from_pkcs1_der(&der)?);
        }
        let (key, der) = ActiveKey::generate_with_der().await?;
        let record = seal(cipher, &key, &der, now, now)?;
        if store
            .insert_signing_key_unless_made(&record, KeyMade::First)
            .await?
        {
            tracing::info!(actor = "SigningKeys", kid = %key.kid, "signing key created");
            return Ok(key);
        }
    }
    Err(KeyError::Store(StoreError(
        "another server made the first signing key, which cannot be read back".into(),
    )))
}

impl Actor for SigningKeys {
    type Args = SigningKeysArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "SigningKeys"
    }

    async fn on_start(args: Self::Args, actor: ActorRef<Self>) -> Result<Self, Self::Error> {
        let mut this = SigningKeys {
            keys: Vec::new(),
            jwks: Arc::new(jwks_document(std::iter::empty())),
            args,
            timer: ExpiryQueue::default(),
            clock: (unix_now(), Instant::now()),
        };
        match this.args.store.signing_keys().await {
            Ok(records) => this.take_records(records),
            Err(err) => tracing::error!(actor = "SigningKeys", error = %err, "keys not loaded"),
        }
        if this.keys.is_empty() {
            // The store failed: keep signing with the signers' key, published.
            let key = Arc::clone(&this.args.current.borrow());
            let now = this.now();
            let record = KeyRecord {
                kid: key.kid.clone(),
                encrypted_key: Vec::new(),
                created_at: now,
                activates_at: now,
                retired_at: None,
                removes_at: None,
            };
            this.add(key, record);
        }
        this.step(&actor).await;
        if let Some(current) = this.signing() {
            tracing::info!(actor = "SigningKeys", kid = %current.key.kid, published = this.keys.len(), "signing key active");
        }
        Ok(this)
    }
}

impl SigningKeys {
    /// Now, in Unix seconds, on the timer's clock.
    fn now(&self) -> u64 {
        self.clock.0 + self.clock.1.elapsed().as_secs()
    }

    /// The timer instant of a Unix time.
    fn instant(&self, unix: u64) -> Instant {
        self.clock.1 + Duration::from_secs(unix.saturating_sub(self.clock.0))
    }

    /// Publishes the stored keys it does not have yet, and takes the stored lifecycle of those
    /// it has (the store is the truth).
    fn take_records(&mut self, records: Vec<KeyRecord>) {
        for record in records {
            if let Some(known) = self.keys.iter_mut().find(|k| k.record.kid == record.kid) {
                known.record = record;
                continue;
            }
            let parsed = self
                .args
                .cipher
                .open(&record.kid, &record.encrypted_key)
                .map_err(KeyError::from)
                .and_then(|der| Ok(ActiveKey::from_pkcs1_der(&der)?));
            match parsed {
                Ok(key) => self.add(key, record),
                Err(err) => {
                    tracing::error!(actor = "SigningKeys", kid = %record.kid, error = %err, "stored key unusable");
                }
            }
        }
    }

    fn add(&mut self, key: Arc<ActiveKey>, record: KeyRecord) {
        match key.decoding_key() {
            Ok(verifying) => self.keys.push(Published {
                key,
                verifying: Arc::new(verifying),
                record,
            }),
            Err(err) => tracing::error!(actor = "SigningKeys", error = %err, "key not published"),
        }
    }

    fn signing(&self) -> Option<&Published> {
        let records: Vec<KeyRecord> = self.keys.iter().map(|k| k.record.clone()).collect();
        signing_index(&records, self.now()).and_then(|i| self.keys.get(i))
    }

    /// The key that signs now, for tools and tests.
    pub fn current(&self) -> Option<&Arc<ActiveKey>> {
        self.signing().map(|p| &p.key)
    }

    /// Does every key change that is due, then arms the timer for the next one.
    async fn step(&mut self, actor: &ActorRef<Self>) {
        let mut retry = false;
        // Bounded: each pass makes at most one change of each kind.
        for _ in 0..4 {
            match self.step_once().await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(err) => {
                    tracing::warn!(actor = "SigningKeys", error = %err, "key change deferred");
                    retry = true;
                    break;
                }
            }
        }
        self.publish();
        let next = if retry {
            Some(Instant::now() + RETRY)
        } else {
            self.next_change().map(|at| self.instant(at))
        };
        if let Some(at) = next {
            self.timer.schedule(at, (), actor);
        }
    }

    /// One due change: remove an expired retired key, activate a pending key, or make the next
    /// key. True if something changed.
    async fn step_once(&mut self) -> Result<bool, KeyError> {
        let now = self.now();
        // 1. A retired key whose tokens have all expired leaves the JWKS and the store.
        if let Some(i) = self
            .keys
            .iter()
            .position(|k| k.record.removes_at.is_some_and(|at| at <= now))
        {
            let kid = self.keys[i].record.kid.clone();
            self.args.store.delete_signing_key(&kid).await?;
            self.keys.remove(i);
            tracing::info!(actor = "SigningKeys", kid = %kid, "timer: retired key removed from the JWKS");
            return Ok(true);
        }
        // 2. A published key whose time has come signs from now on; the older ones retire.
        let Some(current) = self.signing().map(|p| p.record.kid.clone()) else {
            return Ok(false);
        };
        let mut changed = false;
        let retained = self.args.retention.as_secs() + RETIRED_KEY_MARGIN_SECONDS;
        for i in 0..self.keys.len() {
            let record = &self.keys[i].record;
            if record.kid != current && record.retired_at.is_none() && record.activates_at <= now {
                let mut retired = record.clone();
                retired.retired_at = Some(now);
                retired.removes_at = Some(now + retained);
                self.args.store.update_signing_key(&retired).await?;
                tracing::info!(actor = "SigningKeys", kid = %retired.kid, "timer: key retired, stays published until its tokens expire");
                self.keys[i].record = retired;
                changed = true;
            }
        }
        if let Some(p) = self.keys.iter().find(|k| k.record.kid == current)
            && p.key.kid != self.args.current.borrow().kid
        {
            tracing::info!(actor = "SigningKeys", kid = %p.key.kid, "timer: new key signs");
            self.args.current.send_replace(Arc::clone(&p.key));
            changed = true;
        }
        if changed {
            return Ok(true);
        }
        // 3. Near the end of the signing key's interval, the next key is made and published.
        if let Some(prepare_at) = self.prepare_at()
            && prepare_at <= now
        {
            let (key, der) = ActiveKey::generate_with_der().await?;
            let activates_at = now + self.args.publication_delay.as_secs();
            let record = seal(&self.args.cipher, &key, &der, now, activates_at)?;
            let store = &self.args.store;
            if !store
                .insert_signing_key_unless_made(&record, KeyMade::NextAfter(now))
                .await?
            {
                // Another server on the database made the next key: publish that one.
                let records = store.signing_keys().await?;
                self.take_records(records);
                tracing::info!(
                    actor = "SigningKeys",
                    "timer: next key made by another server, published"
                );
                return Ok(true);
            }
            // The other servers on the database publish it within a second, long before it signs.
            store.record_change(&Change::KeysChanged, now).await?;
            tracing::info!(actor = "SigningKeys", kid = %key.kid, activates_at, "timer: next key published");
            self.add(key, record);
            return Ok(true);
        }
        Ok(false)
    }

    /// When the next key should be made: none while one is pending, or without rotation.
    fn prepare_at(&self) -> Option<u64> {
        let rotation = self.args.rotation?;
        let now = self.now();
        if self.keys.iter().any(|k| k.record.activates_at > now) {
            return None;
        }
        let current = self.signing()?;
        Some(
            (current.record.activates_at + rotation.as_secs())
                .saturating_sub(self.args.publication_delay.as_secs()),
        )
    }

    /// The Unix time of the next change.
    fn next_change(&self) -> Option<u64> {
        let now = self.now();
        let removals = self.keys.iter().filter_map(|k| k.record.removes_at);
        let activations = self
            .keys
            .iter()
            .map(|k| k.record.activates_at)
            .filter(|at| *at > now);
        removals.chain(activations).chain(self.prepare_at()).min()
    }

    /// Rebuilds the JWKS from the published keys.
    fn publish(&mut self) {
        self.jwks = Arc::new(jwks_document(self.keys.iter().map(|k| k.key.as_ref())));
    }
}

impl Message<Jwks> for SigningKeys {
    type Reply = Arc<serde_json::Value>;

    async fn handle(&mut self, _: Jwks, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Arc::clone(&self.jwks)
    }
}

impl Message<VerifyingKey> for SigningKeys {
    type Reply = Option<Arc<jsonwebtoken::DecodingKey>>;

    async fn handle(
        &mut self,
        msg: VerifyingKey,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.keys
            .iter()
            .find(|k| k.key.kid == msg.kid)
            .map(|k| Arc::clone(&k.verifying))
    }
}

impl Message<ReloadKeys> for SigningKeys {
    type Reply = Result<usize, StoreError>;

    async fn handle(&mut self, _: ReloadKeys, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let records = self.args.store.signing_keys().await?;
        self.take_records(records);
        self.step(ctx.actor_ref()).await;
        Ok(self.keys.len())
    }
}

impl Message<Sweep> for SigningKeys {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, ()>) {
        let _ = self.timer.pop_due(Instant::now(), ctx.actor_ref());
        self.step(ctx.actor_ref()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use kameo::actor::Spawn;

    fn kids(jwks: &serde_json::Value) -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    }

    /// Paused time: publish, then sign, then retire and remove after the retention.
    #[tokio::test(start_paused = true)]
    async fn keys_rotate_on_the_timer() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let cipher = Arc::new(KeyCipher::ephemeral().unwrap());
        let first = load_or_create(&store, &cipher).await.unwrap();
        let (current, signer_key) = watch::channel(Arc::clone(&first));
        let keys = SigningKeys::spawn(SigningKeysArgs {
            store: Arc::clone(&store),
            cipher: Arc::clone(&cipher),
            current: Arc::new(current),
            rotation: Some(Duration::from_secs(100)),
            publication_delay: Duration::from_secs(10),
            retention: Duration::from_secs(50),
        });
        assert_eq!(
            kids(&keys.ask(Jwks).await.unwrap()),
            vec![first.kid.clone()]
        );
        // At 90 s the next key is published; the first one still signs.
        tokio::time::sleep(Duration::from_secs(95)).await;
        let published = kids(&keys.ask(Jwks).await.unwrap());
        assert_eq!(published.len(), 2, "{published:?}");
        assert_eq!(signer_key.borrow().kid, first.kid);
        let next = published.iter().find(|k| **k != first.kid).unwrap().clone();
        // At 100 s the new key signs; the first stays published while its tokens live.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(signer_key.borrow().kid, next);
        assert!(kids(&keys.ask(Jwks).await.unwrap()).contains(&first.kid));
        let stored = store.signing_keys().await.unwrap();
        assert_eq!(stored.len(), 2);
        assert!(
            stored
                .iter()
                .any(|k| k.kid == first.kid && k.retired_at.is_some())
        );
        // 50 s of token lifetime and the margin later, it is gone from the JWKS and the store.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(kids(&keys.ask(Jwks).await.unwrap()), vec![next.clone()]);
        assert!(
            store
                .signing_keys()
                .await
                .unwrap()
                .iter()
                .all(|k| k.kid != first.kid)
        );
        // A restarted actor reloads the published keys from the store. (Which one signs depends
        // on the wall clock, which a paused tokio clock does not move; the restart tests over
        // HTTP check that.)
        let (current, _signer_key) = watch::channel(Arc::clone(&first));
        let reloaded = SigningKeys::spawn(SigningKeysArgs {
            store: Arc::clone(&store),
            cipher,
            current: Arc::new(current),
            rotation: None,
            publication_delay: Duration::from_secs(10),
            retention: Duration::from_secs(50),
        });
        assert_eq!(kids(&reloaded.ask(Jwks).await.unwrap()), vec![next.clone()]);
    }
}
