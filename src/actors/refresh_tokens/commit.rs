//! Group commit of the refresh-token writes: new families (code redemptions) and rotations.
//!
//! A write is judged in the actor as it arrives, then waits with the others for one transaction
//! (`RefreshTokenStore::write_batch`), which a task of its own commits while the next writes
//! gather: one commit, one `fsync`, for everyone waiting. Only once it has committed does the
//! actor change its cache and answer each caller, so nothing is acknowledged that is not on
//! disk, and a token is never answered before its family can be found.
//!
//! Order within a family: while a family has a rotation on its way, later refreshes of it are
//! held and judged again once it has committed, so a retry of the same token (two tabs, a lost
//! answer) meets the rotation and gets the same successor within the grace window, as it would
//! one at a time. Everything else that ends a family (revocation, reuse, expiry) goes on
//! meanwhile: the store's compare-and-swap decides, and a committed rotation whose family was
//! ended, evicted or read again in between is judged by the family as the store has it.
//!
//! A replayed code races its own redemption: its family may still be on its way to the store
//! when the replay looks for it; so may a family of a grant being revoked. Such a family's origin
//! access token is remembered, and the family is refused, or ended as soon as it has committed.

use super::{
    ENDED_ORIGIN_MEMORY, HeldRotation, Judgement, MAX_BATCH, MAX_ENDED_ORIGINS, MAX_WAITING,
    RefreshError, RefreshTokens, Refreshed, RotateRefreshToken, Write,
};
use crate::actors::reply::send_reply;
use crate::actors::transaction::run_transaction;
use crate::oauth::refresh_token::successor;
use crate::oauth::time::unix_now_ms;
use crate::store::{FamilyRecord, Rotation, StoreError};
use crate::trace::Secret;
use kameo::actor::ActorRef;
use kameo::message::{Context, Message};
use kameo::reply::ReplySender;
use std::sync::Arc;
use tokio::time::Instant;

/// The writes of one transaction and what the store answered: for each rotation in order,
/// whether its compare-and-swap applied.
pub struct Committed {
    /// The instance that began the transaction, and its count of the stored families then.
    run: u64,
    recounts: u64,
    writes: Vec<Write>,
    outcome: Result<Vec<bool>, StoreError>,
}

/// What judging a presented refresh token decided.
enum Judged {
    /// Answered at once: a retry within the grace window.
    Answer(Refreshed),
    /// Its family has a rotation on its way to the store.
    Hold,
    /// A rotation to commit.
    Rotate {
        /// What it grants, if the caller asked to be told before the commit.
        judgement: Option<Judgement>,
        rotation: Rotation,
        next: Secret,
        scope: crate::oauth::scope::ScopeSet,
    },
}

impl RefreshTokens {
    /// Writes and held refreshes waiting.
    pub(super) fn waiting(&self) -> usize {
        self.pending.len() + self.held.len()
    }

    /// Starts a transaction of the waiting writes unless one is under way.
    pub(super) fn commit_if_idle(&mut self, actor: &ActorRef<Self>) {
        if self.committing || self.pending.is_empty() {
            return;
        }
        let count = self.pending.len().min(MAX_BATCH);
        let mut writes: Vec<Write> = self.pending.drain(..count).collect();
        self.committing = true;
        let mut families: Vec<FamilyRecord> = Vec::new();
        let mut rotations: Vec<Rotation> = Vec::new();
        // The rotations are dated as they go to the store, not as they were judged: the grace
        // window of a retry held meanwhile starts when the rotation commits, not before.
        let now_ms = unix_now_ms();
        for write in &mut writes {
            match write {
                Write::Issue { family, .. } => families.push(family.record.clone()),
                Write::Rotate { rotation, .. } => {
                    rotation.rotated_at_ms = rotation.rotated_at_ms.max(now_ms);
                    rotations.push(rotation.clone());
                }
            }
        }
        let store = Arc::clone(&self.args.store);
        let (actor, run, recounts) = (actor.clone(), self.run, self.recounts);
        tokio::spawn(async move {
            let write = async move { store.write_batch(&families, &rotations).await };
            let outcome = run_transaction("refresh-token", write).await;
            // The actor answers (a stopped actor drops the writes: their callers get an error).
            let committed = Committed {
                run,
                recounts,
                writes,
                outcome,
            };
            let _ = actor.tell(committed).await;
        });
    }

    /// Judges a refresh and answers it, holds it, or queues its rotation.
    pub(super) async fn rotate(
        &mut self,
        request: RotateRefreshToken,
        reply: Option<ReplySender<Result<Refreshed, RefreshError>>>,
        lost: bool,
        actor: &ActorRef<Self>,
    ) {
        match self.judge(&request, lost, actor).await {
            Err(err) => send_reply(reply, Err(err)),
            Ok(Judged::Answer(refreshed)) => send_reply(reply, Ok(refreshed)),
            Ok(_) if self.waiting() >= MAX_WAITING => send_reply(reply, Err(RefreshError::Busy)),
            Ok(Judged::Hold) => self.held.push(HeldRotation {
                request,
                lost,
                reply,
            }),
            Ok(Judged::Rotate {
                judgement,
                rotation,
                next,
                scope,
            }) => {
                let mut request = request;
                if let (Some(judged), Some(judgement)) = (request.judged.take(), judgement) {
                    // A caller that has gone away no longer needs it.
                    let _ = judged.send(judgement);
                }
                self.rotating.insert(rotation.family_id.clone());
                self.pending.push(Write::Rotate {
                    rotation,
                    next,
                    scope,
                    request,
                    lost,
                    reply,
                });
            }
        }
    }

    /// The checks of a refresh, before anything changes: another client, another resource or a
    /// wider scope consumes nothing; a retired token within the grace window is answered the
    /// same successor; any other retired token ends its family (reuse).
    /// `lost`: this presentation already lost a compare-and-swap (a shared store).
    async fn judge(
        &mut self,
        msg: &RotateRefreshToken,
        lost: bool,
        actor: &ActorRef<Self>,
    ) -> Result<Judged, RefreshError> {
        let hash = msg.token.sha256();
        // On a store other servers write too, the family is judged as the store has it, or as
        // its compare-and-swap will find it.
        self.load_family_to_rotate(&hash, lost).await?;
        let now = Instant::now();
        let Some(family) = self.family_of(&hash, now) else {
            return Err(RefreshError::Unknown);
        };
        if self.rotating.contains(&family.record.family_id) {
            return Ok(Judged::Hold);
        }
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
                    self.remember_minted(&grant, msg.access_jti.clone(), msg.access_ttl, actor);
                    return Ok(Judged::Answer(Refreshed {
                        grant,
                        refresh_token: again,
                        scope,
                        grace: true,
                    }));
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

        // Rotate: a compare-and-swap on the presented token, in the store's next transaction.
        let mut salt = [0u8; 32];
        rand::fill(&mut salt[..]);
        let next = successor(&msg.token, &salt);
        let now_ms = unix_now_ms();
        let idle_ms = (now_ms + self.args.idle_ttl.as_millis() as u64)
            .min(family.record.absolute_expires_at_ms);
        let rotation = Rotation {
            family_id: id,
            presented: hash,
            next: next.sha256(),
            salt,
            generation: family.record.generation + 1,
            rotated_at_ms: now_ms,
            idle_expires_at_ms: idle_ms,
        };
        let judgement = msg.judged.as_ref().map(|_| Judgement {
            grant: family.grant(),
            scope: scope.clone(),
        });
        Ok(Judged::Rotate {
            judgement,
            rotation,
            next,
            scope,
        })
    }

    /// A committed rotation, in memory: the cached family moves on, or, if it was evicted,
    /// ended or read again meanwhile, the family is judged as the store has it now.
    async fn apply_rotation(
        &mut self,
        rotation: &Rotation,
        next: Secret,
        scope: crate::oauth::scope::ScopeSet,
        request: RotateRefreshToken,
        actor: &ActorRef<Self>,
    ) -> Result<Refreshed, RefreshError> {
        let now = Instant::now();
        let (idle_ttl, id) = (self.args.idle_ttl, rotation.family_id.clone());
        let grant = match self.families.get_mut(&id) {
            Some(family) if family.record.current == rotation.presented => {
                family.record.previous = Some(rotation.presented);
                family.record.current = rotation.next;
                family.record.tokens.push(rotation.next);
                family.record.salt = Some(rotation.salt);
                family.record.generation = rotation.generation;
                family.record.rotated_at_ms = Some(rotation.rotated_at_ms);
                family.record.idle_expires_at_ms = rotation.idle_expires_at_ms;
                family.rotated_at = Some(now);
                family.expires_at = (now + idle_ttl).min(family.absolute_at);
                let grant = family.grant();
                self.tokens.insert(rotation.next, id);
                grant
            }
            _ => {
                self.load_family(&rotation.next).await?;
                match self.family_of(&rotation.next, now) {
                    Some(family) if family.record.current == rotation.next => family.grant(),
                    _ => return Err(RefreshError::Unknown),
                }
            }
        };
        self.remember_minted(&grant, request.access_jti, request.access_ttl, actor);
        Ok(Refreshed {
            grant,
            refresh_token: next,
            scope,
            grace: false,
        })
    }

    /// Whether the family started with the access token `jti` ended before it was made.
    pub(super) fn origin_ended(&self, jti: &str) -> bool {
        self.ended_origins.jtis.contains(jti)
    }

    /// Ends the family started with the access token `jti` when it is made, if it is made within
    /// [`ENDED_ORIGIN_MEMORY`].
    pub(super) fn end_origin(&mut self, jti: &str) {
        let now = Instant::now();
        let ended = &mut self.ended_origins;
        while let Some((at, old)) = ended.order.front() {
            if now.duration_since(*at) < ENDED_ORIGIN_MEMORY
                && ended.order.len() < MAX_ENDED_ORIGINS
            {
                break;
            }
            ended.jtis.remove(old);
            ended.order.pop_front();
        }
        if ended.jtis.insert(jti.to_string()) {
            ended.order.push_back((now, jti.to_string()));
        }
    }

    /// Ends, once made, the families on their way to the store of a user, of a client, or of a
    /// user for a client.
    pub(super) fn end_issuing(&mut self, subject: Option<&str>, client_id: Option<&str>) {
        let origins: Vec<String> = self
            .issuing
            .iter()
            .filter(|(_, (s, c))| {
                subject.is_none_or(|x| x == s) && client_id.is_none_or(|x| x == c)
            })
            .map(|(jti, _)| jti.clone())
            .collect();
        for jti in origins {
            self.end_origin(&jti);
        }
    }
}

impl Message<Committed> for RefreshTokens {
    type Reply = ();

    async fn handle(&mut self, msg: Committed, ctx: &mut Context<Self, ()>) {
        let actor = ctx.actor_ref().clone();
        // A predecessor's transaction is answered, but this instance's own goes on.
        if msg.run == self.run {
            self.committing = false;
        }
        // Counted since the transaction began (or by a successor): its families are in the count.
        let counted = msg.run != self.run || msg.recounts != self.recounts;
        let mut swapped = msg.outcome.as_ref().ok().map(|flags| flags.iter());
        let mut lost = Vec::new();
        for write in msg.writes {
            match write {
                Write::Issue {
                    family,
                    token,
                    access_jti,
                    access_ttl,
                    reply,
                } => {
                    self.issuing.remove(&access_jti);
                    if let Err(err) = &msg.outcome {
                        send_reply(reply, Err(RefreshError::Store(err.clone())));
                        continue;
                    }
                    if !counted {
                        self.stored += 1;
                    }
                    let grant = family.grant();
                    self.insert(family);
                    self.remember_minted(&grant, access_jti.clone(), access_ttl, &actor);
                    if self.origin_ended(&access_jti) {
                        // Its code was replayed, or its grant revoked, while it was being
                        // written: it ends, then the access tokens minted from it are revoked.
                        let ended = self.end_then_revoke(vec![grant.family_id]).await;
                        send_reply(
                            reply,
                            Err(match ended {
                                Ok(_) => RefreshError::Unknown,
                                Err(err) => err.into(),
                            }),
                        );
                    } else {
                        send_reply(reply, Ok(token));
                    }
                }
                Write::Rotate {
                    rotation,
                    next,
                    scope,
                    request,
                    lost: lost_before,
                    reply,
                } => {
                    self.rotating.remove(&rotation.family_id);
                    let Some(flags) = swapped.as_mut() else {
                        // Committed or not, the store knows: the family is read again.
                        self.uncache(&rotation.family_id);
                        let err = msg.outcome.as_ref().err().cloned();
                        let err = err.unwrap_or_else(|| StoreError("no outcome".into()));
                        send_reply(reply, Err(RefreshError::Store(err)));
                        continue;
                    };
                    let applied = flags.next().copied().unwrap_or(false);
                    if applied {
                        let answer = self
                            .apply_rotation(&rotation, next, scope, request, &actor)
                            .await;
                        send_reply(reply, answer);
                    } else if self.args.shared && !lost_before {
                        // Another server rotated or revoked it first: judged again, once.
                        lost.push(HeldRotation {
                            request,
                            lost: true,
                            reply,
                        });
                    } else {
                        send_reply(reply, Err(RefreshError::Unknown));
                    }
                }
            }
        }
        for held in lost.into_iter().chain(std::mem::take(&mut self.held)) {
            self.rotate(held.request, held.reply, held.lost, &actor)
                .await;
        }
        self.commit_if_idle(&actor);
    }
}
