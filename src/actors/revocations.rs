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
//! The feed: every revocation is also published to resource servers ([`ReadFeed`], served as
//! `GET /oauth/revocations`), so that a revoked token is refused everywhere within moments, with
//! no call to this server per request. Each revocation gets the next number of this actor's
//! run (its `epoch`, random per start); a reader that names the epoch and the last number it saw
//! gets what came after, and one that is new, from another epoch, or too far behind for the
//! recent log gets a snapshot of everything still revoked. A reader with nothing new waits on
//! the reply's `changed` channel, which ticks on every revocation.
//!
//! This actor asks no other actor: `RefreshTokens` and `AuthorizationCodes` ask it while they
//! handle a message, so it must never ask them back.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::oauth::time::{instant_of, unix_now};
use crate::store::{Change, SharedStore, StoreError};
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Most recent revocations kept for readers that are behind; one further behind gets a snapshot.
pub const FEED_LOG_LEN: usize = 4096;

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

/// What the feed has after `after` in `epoch` (a snapshot when that cannot be told).
#[derive(Debug)]
pub struct ReadFeed {
    pub epoch: Option<String>,
    pub after: u64,
}

/// One revoked token: its id and when it would have expired anyway (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RevokedToken {
    pub jti: String,
    pub exp: u64,
}

/// A page of the feed, as the endpoint serves it.
#[derive(Debug, Clone, serde::Serialize, kameo::Reply)]
pub struct FeedPage {
    pub epoch: String,
    /// The number of the last revocation included; the reader's next `after`.
    pub cursor: u64,
    /// `revoked` is everything still revoked, not what came after `after`.
    pub snapshot: bool,
    pub revoked: Vec<RevokedToken>,
    /// Ticks on every revocation: a reader with nothing new waits on it.
    #[serde(skip)]
    pub changed: watch::Receiver<u64>,
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
    /// This run's feed: its id, the number of its last revocation, the recent ones in order,
    /// and the channel that ticks with each.
    epoch: String,
    sequence: u64,
    log: VecDeque<(u64, RevokedToken)>,
    changed: watch::Sender<u64>,
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
            epoch: uuid::Uuid::new_v4().simple().to_string(),
            sequence: 0,
            log: VecDeque::new(),
            changed: watch::channel(0).0,
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
        // The other servers on the same database list it in their feeds too, within a second.
        if self.args.store.is_shared() {
            let change = Change::AccessTokenRevoked {
                jti: msg.jti.clone(),
            };
            self.args.store.record_change(&change, unix_now()).await?;
        }
        let until = Instant::now() + msg.ttl;
        self.revoked.insert(msg.jti.clone(), until);
        self.expiry
            .schedule(until, msg.jti.clone(), ctx.actor_ref());
        metrics::counter!("mcp_oauth_tokens_total", "kind" => "revoked").increment(1);
        self.publish(RevokedToken {
            jti: msg.jti,
            exp: unix_now().saturating_add(msg.ttl.as_secs()),
        });
        Ok(())
    }
}

/// Lists a revocation another server on the same database recorded (read back from the store,
/// with its deadline); one already listed is left as it is.
#[derive(Debug)]
pub struct AdoptRevocation {
    pub jti: String,
}

impl Message<AdoptRevocation> for Revocations {
    type Reply = Result<(), StoreError>;

    async fn handle(
        &mut self,
        msg: AdoptRevocation,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        if self.revoked.contains_key(&msg.jti) {
            return Ok(());
        }
        if self.revoked.len() >= self.args.max_entries {
            // Retried by `StoreChanges` as entries expire; `/introspect` reads the store meanwhile.
            return Err(StoreError("the revocation list is full".into()));
        }
        let now_unix = unix_now();
        let Some(exp) = self.args.store.revoked_until(&msg.jti, now_unix).await? else {
            return Ok(());
        };
        let until = Instant::now() + Duration::from_secs(exp.saturating_sub(now_unix));
        self.revoked.insert(msg.jti.clone(), until);
        self.expiry
            .schedule(until, msg.jti.clone(), ctx.actor_ref());
        self.publish(RevokedToken { jti: msg.jti, exp });
        Ok(())
    }
}

impl Revocations {
    /// Numbers a revocation, keeps it in the recent log and wakes the feed's readers.
    fn publish(&mut self, token: RevokedToken) {
        self.sequence += 1;
        self.log.push_back((self.sequence, token));
        if self.log.len() > FEED_LOG_LEN {
            self.log.pop_front();
        }
        self.changed.send_replace(self.sequence);
    }

    /// Everything still revoked, with Unix expiry times.
    fn snapshot(&self) -> Vec<RevokedToken> {
        let now = Instant::now();
        let unix = unix_now();
        self.revoked
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(jti, until)| RevokedToken {
                jti: jti.clone(),
                exp: unix.saturating_add(until.duration_since(now).as_secs() + 1),
            })
            .collect()
    }
}

impl Message<ReadFeed> for Revocations {
    type Reply = FeedPage;

    async fn handle(&mut self, msg: ReadFeed, _: &mut Context<Self, FeedPage>) -> FeedPage {
        // The log holds every revocation after `oldest - 1`.
        let oldest = self.log.front().map_or(self.sequence + 1, |(n, _)| *n);
        let continues = msg.epoch.as_deref() == Some(self.epoch.as_str())
            && msg.after <= self.sequence
            && msg.after + 1 >= oldest;
        let revoked = if continues {
            self.log
                .iter()
                .filter(|(n, _)| *n > msg.after)
                .map(|(_, token)| token.clone())
                .collect()
        } else {
            self.snapshot()
        };
        FeedPage {
            epoch: self.epoch.clone(),
            cursor: self.sequence,
            snapshot: !continues,
            revoked,
            changed: self.changed.subscribe(),
        }
    }
}

impl Message<IsRevoked> for Revocations {
    type Reply = Result<bool, StoreError>;

    async fn handle(&mut self, msg: IsRevoked, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if let Some(until) = self.revoked.get(&msg.jti) {
            return Ok(*until > Instant::now());
        }
        if self.args.store.is_shared() {
            let until = self.args.store.revoked_until(&msg.jti, unix_now()).await?;
            return Ok(until.is_some());
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

    fn read(epoch: Option<&str>, after: u64) -> ReadFeed {
        ReadFeed {
            epoch: epoch.map(str::to_string),
            after,
        }
    }

    /// A new reader gets a snapshot; a reader that names the epoch gets what came after its
    /// cursor; another epoch, or a cursor older than the log, gets a snapshot again.
    #[tokio::test]
    async fn the_feed_continues_from_a_cursor_or_starts_from_a_snapshot() {
        let revocations = Revocations::spawn(RevocationsArgs {
            max_entries: 10_000,
            store: Arc::new(MemoryStore::new()),
        });
        revocations.ask(revoke("a", 100)).await.unwrap();
        let first = revocations.ask(read(None, 0)).await.unwrap();
        assert!(first.snapshot);
        assert_eq!(first.cursor, 1);
        assert_eq!(first.revoked.len(), 1);
        assert_eq!(first.revoked[0].jti, "a");
        assert!(first.revoked[0].exp >= unix_now() + 99);
        let epoch = first.epoch.clone();

        let nothing = revocations.ask(read(Some(&epoch), 1)).await.unwrap();
        assert!(!nothing.snapshot && nothing.revoked.is_empty());
        let mut changed = nothing.changed;
        revocations.ask(revoke("b", 100)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), changed.changed())
            .await
            .expect("a revocation wakes the waiting reader")
            .unwrap();
        let next = revocations.ask(read(Some(&epoch), 1)).await.unwrap();
        assert!(!next.snapshot);
        assert_eq!(next.cursor, 2);
        assert_eq!(
            next.revoked
                .iter()
                .map(|t| t.jti.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );

        let other_epoch = revocations.ask(read(Some("other"), 1)).await.unwrap();
        assert!(other_epoch.snapshot);
        assert_eq!(other_epoch.revoked.len(), 2);
        let ahead = revocations.ask(read(Some(&epoch), 9)).await.unwrap();
        assert!(ahead.snapshot, "a cursor this run never gave");

        for n in 0..FEED_LOG_LEN {
            revocations
                .ask(revoke(&format!("t{n}"), 100))
                .await
                .unwrap();
        }
        let behind = revocations.ask(read(Some(&epoch), 1)).await.unwrap();
        assert!(behind.snapshot, "older than the log");
        assert_eq!(behind.revoked.len(), FEED_LOG_LEN + 2);
        let recent = revocations
            .ask(read(Some(&epoch), behind.cursor - 3))
            .await
            .unwrap();
        assert!(!recent.snapshot);
        assert_eq!(recent.revoked.len(), 3);
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
        assert!(
            store
                .revoked_until("c", unix_now())
                .await
                .unwrap()
                .is_none()
        );
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
