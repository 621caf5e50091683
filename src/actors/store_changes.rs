//! `StoreChanges`: brings the authorization server's actors in line with changes another process
//! made to the store (`mcp-oauth admin`), within a second. The admin command changes the tables
//! and records a [`Change`]; this actor reads the changes after its cursor every
//! [`POLL_INTERVAL`], from a task it owns, and applies each one by messages to the actors that
//! own the state: a deleted client is forgotten with its consents and refresh-token families; a
//! revoked grant ends its consents and families, whose access tokens `RefreshTokens` revokes
//! (which the revocation feed carries to every resource server); a disabled user's sessions and
//! grants end; the users and the signing keys are reloaded.
//!
//! The cursor starts at the last change recorded before the actors loaded what they own (all
//! that came before is in what they loaded), and survives a restart of this actor. A change
//! whose messages are not all answered (a busy actor, a failing store) is retried at every poll
//! for about a minute, then given up with an error line; it holds up none of the changes after
//! it. Changes older than [`CHANGE_RETENTION_SECONDS`] are pruned now and then.

use crate::actors::ask;
use crate::actors::clients::{ClientRegistry, ForgetClient};
use crate::actors::codes::{AuthorizationCodes, WithdrawCodes};
use crate::actors::consents::{Consents, RevokeConsents};
use crate::actors::expiry::OwnedTask;
use crate::actors::refresh_tokens::{FamilyEndedElsewhere, RefreshTokens, RevokeClientFamilies};
use crate::actors::revocations::{AdoptRevocation, Revocations};
use crate::actors::sessions::{EndUserSessions, Sessions};
use crate::actors::signing_keys::{ReloadKeys, SigningKeys};
use crate::actors::users::{ReloadUsers, Users};
use crate::oauth::time::unix_now;
use crate::store::changes::CHANGE_RETENTION_SECONDS;
use crate::store::{Change, SharedStore};
use kameo::actor::{Actor, ActorRef, WeakActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How often the store is asked for new changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Changes read per poll.
const BATCH: u32 = 100;

/// How far below the cursor each poll reads again. On PostgreSQL a change's number is taken when
/// its row is inserted, and rows commit in any order, so a change can appear below the cursor
/// after a later one was read; it is applied then. Each change is applied once: the numbers seen
/// in this window are remembered.
const LOOKBACK: i64 = 64;

/// How often old changes are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Polls a change that cannot be applied is retried at (about a minute).
const MAX_ATTEMPTS: u32 = 240;

/// The actors a change is applied to.
#[derive(Clone)]
pub struct StoreChangesArgs {
    pub store: SharedStore,
    pub clients: ActorRef<ClientRegistry>,
    pub consents: ActorRef<Consents>,
    pub codes: ActorRef<AuthorizationCodes>,
    pub refresh_tokens: ActorRef<RefreshTokens>,
    pub sessions: ActorRef<Sessions>,
    pub users: ActorRef<Users>,
    pub keys: ActorRef<SigningKeys>,
    pub revocations: ActorRef<Revocations>,
    /// The last change applied: read before the actors loaded, and kept across restarts of
    /// this actor so that a restart neither skips nor repeats a change.
    pub cursor: Arc<AtomicI64>,
}

/// Reads and applies the changes recorded since the last poll.
#[derive(Debug)]
pub struct Poll;

/// A change not applied yet, and how many polls tried it.
struct Retry {
    change: Change,
    attempts: u32,
}

pub struct StoreChanges {
    args: StoreChangesArgs,
    retries: VecDeque<Retry>,
    /// The changes read in the last [`LOOKBACK`] numbers (`None` until the first poll marks the
    /// ones loaded before the start as seen).
    seen: Option<BTreeSet<i64>>,
    /// Polls in a row that could not read the store.
    read_failures: u32,
    pruned_at: Instant,
    _poller: OwnedTask,
}

impl Actor for StoreChanges {
    type Args = StoreChangesArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "StoreChanges"
    }

    async fn on_start(args: Self::Args, actor: ActorRef<Self>) -> Result<Self, Self::Error> {
        let poller = tokio::spawn(tick(actor.downgrade(), args.store.change_signal()));
        Ok(StoreChanges {
            args,
            retries: VecDeque::new(),
            seen: None,
            read_failures: 0,
            pruned_at: Instant::now(),
            _poller: OwnedTask(poller),
        })
    }
}

/// The polling task: one `Poll` at a time, each after the last was answered, every
/// [`POLL_INTERVAL`], or at once when the store announces a change (PostgreSQL).
async fn tick(
    actor: WeakActorRef<StoreChanges>,
    mut signal: Option<tokio::sync::watch::Receiver<u64>>,
) {
    loop {
        match &mut signal {
            Some(announced) => {
                tokio::select! {
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                    changed = announced.changed() => {
                        if changed.is_err() {
                            signal = None;
                        }
                    }
                }
            }
            None => tokio::time::sleep(POLL_INTERVAL).await,
        }
        let Some(actor) = actor.upgrade() else {
            return;
        };
        if actor.ask(Poll).await.is_err() {
            return;
        }
    }
}

/// Why a change could not be applied yet.
#[derive(Debug)]
struct NotApplied(String);

impl<E: std::fmt::Debug> From<crate::actors::ask::AskError<E>> for NotApplied {
    fn from(err: crate::actors::ask::AskError<E>) -> Self {
        NotApplied(format!("{err:?}"))
    }
}

impl StoreChanges {
    async fn apply(&self, change: &Change) -> Result<(), NotApplied> {
        let a = &self.args;
        match change {
            Change::ClientDeleted { client_id } => {
                let forget = ForgetClient {
                    client_id: client_id.clone(),
                };
                ask(&a.clients, forget).await?;
                self.end_grants(None, Some(client_id.clone())).await?;
            }
            Change::GrantsRevoked { subject, client_id } => {
                self.end_grants(subject.clone(), client_id.clone()).await?;
            }
            Change::UsersChanged => {
                ask(&a.users, ReloadUsers).await?;
            }
            Change::UserDisabled { subject } => {
                ask(&a.users, ReloadUsers).await?;
                let end = EndUserSessions {
                    subject: subject.clone(),
                };
                ask(&a.sessions, end).await?;
                self.end_grants(Some(subject.clone()), None).await?;
            }
            Change::SessionsRevoked { subject } => {
                let end = EndUserSessions {
                    subject: subject.clone(),
                };
                ask(&a.sessions, end).await?;
            }
            Change::KeysChanged => {
                ask(&a.keys, ReloadKeys).await?;
            }
            Change::AccessTokenRevoked { jti } => {
                let adopt = AdoptRevocation { jti: jti.clone() };
                ask(&a.revocations, adopt).await?;
            }
            Change::FamilyEnded { family_id } => {
                let ended = FamilyEndedElsewhere {
                    family_id: family_id.clone(),
                };
                ask(&a.refresh_tokens, ended).await?;
            }
        }
        Ok(())
    }

    /// Ends the matching consents, withdraws the matching unredeemed codes, then ends the
    /// matching refresh-token families with their access tokens.
    async fn end_grants(
        &self,
        subject: Option<String>,
        client_id: Option<String>,
    ) -> Result<(), NotApplied> {
        let consents = RevokeConsents {
            subject: subject.clone(),
            client_id: client_id.clone(),
        };
        ask(&self.args.consents, consents).await?;
        let codes = WithdrawCodes {
            subject: subject.clone(),
            client_id: client_id.clone(),
        };
        ask(&self.args.codes, codes).await?;
        let families = RevokeClientFamilies { subject, client_id };
        ask(&self.args.refresh_tokens, families).await?;
        Ok(())
    }
}

impl StoreChanges {
    /// Applies a change; a failure is retried at the next polls.
    async fn try_apply(&mut self, change: Change, attempts: u32) {
        match self.apply(&change).await {
            Ok(()) => {
                tracing::info!(actor = "StoreChanges", change = ?change, "change from the store applied");
            }
            Err(NotApplied(why)) if attempts + 1 >= MAX_ATTEMPTS => {
                tracing::error!(actor = "StoreChanges", change = ?change, why, "change from the store given up: apply it again with mcp-oauth admin, or restart the server");
            }
            Err(NotApplied(why)) => {
                if attempts == 0 {
                    tracing::warn!(actor = "StoreChanges", change = ?change, why, "change from the store not applied yet; retried");
                }
                self.retries.push_back(Retry {
                    change,
                    attempts: attempts + 1,
                });
            }
        }
    }
}

impl Message<Poll> for StoreChanges {
    type Reply = ();

    async fn handle(&mut self, _: Poll, _: &mut Context<Self, ()>) {
        for retry in std::mem::take(&mut self.retries) {
            self.try_apply(retry.change, retry.attempts).await;
        }
        let cursor = self.args.cursor.load(Ordering::Acquire);
        let from = cursor.saturating_sub(LOOKBACK).max(0);
        let window = u32::try_from(LOOKBACK).unwrap_or(0);
        let changes = match self.args.store.changes_after(from, BATCH + window).await {
            Ok(changes) => changes,
            Err(err) => {
                // Once when the store stops answering, then once a minute.
                if self.read_failures.is_multiple_of(MAX_ATTEMPTS) {
                    tracing::warn!(actor = "StoreChanges", error = %err, "store changes not read");
                }
                self.read_failures = self.read_failures.wrapping_add(1);
                return;
            }
        };
        self.read_failures = 0;
        // The first poll: what is at or below the cursor was loaded by the actors before the
        // start (or applied before this actor restarted).
        let seen = self.seen.get_or_insert_with(|| {
            changes
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| *id <= cursor)
                .collect()
        });
        let mut fresh = Vec::new();
        for (id, change) in changes {
            if seen.insert(id) {
                fresh.push((id, change));
            }
        }
        seen.retain(|id| *id > cursor.saturating_sub(LOOKBACK));
        for (id, change) in fresh {
            if id > self.args.cursor.load(Ordering::Acquire) {
                self.args.cursor.store(id, Ordering::Release);
            }
            // A kind this version does not know (a newer one's) is skipped.
            if let Some(change) = change {
                self.try_apply(change, 0).await;
            }
        }
        if self.pruned_at.elapsed() >= PRUNE_EVERY {
            self.pruned_at = Instant::now();
            let before = unix_now().saturating_sub(CHANGE_RETENTION_SECONDS);
            if let Err(err) = self.args.store.delete_changes_before(before).await {
                tracing::warn!(actor = "StoreChanges", error = %err, "old store changes not pruned");
            }
        }
    }
}
