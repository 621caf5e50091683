//! `Consents`: what each user has approved for each client (user x client -> scopes, resources
//! and the exact redirect URIs the consent page showed). The consent page is skipped only when a
//! remembered consent covers a request's scope and resource and names its exact redirect URI:
//! a client that cannot authenticate is known only by where its codes go, so another redirect URI
//! (another loopback port) may be another program and is asked about again (RFC 8252 section
//! 8.6). An error is redirected without a page only to a redirect URI the user approved.
//! Consents are remembered for a configurable time, then expire: every read checks, and the
//! actor's one timer deletes the expired ones every minute.
//!
//! Durability and memory: consents are in the store ([`crate::store::ConsentStore`]), which is
//! the truth; the actor keeps the consents used most recently ([`CACHED_CONSENTS`]) and reads
//! nothing at start, so its memory does not grow with the table. A grant is merged in the store
//! atomically and acknowledged only once committed; a check that misses the cache asks the store
//! (evicted, or recorded by another replica); the account page and a revocation by user or client
//! read the store's list. The store's expired consents are deleted by a sweep every minute.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::oauth::scope::ScopeSet;
use crate::oauth::time::{instant_of, unix_now};
use crate::store::{Approval, Change, ConsentRecord, RedirectApproval, SharedStore, StoreError};
use hashlink::LruCache;
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::time::Duration;
use tokio::time::Instant;

type ConsentKey = (String, String);

struct Consent {
    approvals: Vec<RedirectApproval>,
    expires_at: Instant,
}

impl Consent {
    fn from_record(record: ConsentRecord, expires_at: Instant) -> Self {
        Consent {
            approvals: record.approvals,
            expires_at,
        }
    }

    /// What was approved for this exact redirect URI, while the consent lives.
    fn approval(&self, redirect_uri: &str) -> Option<&RedirectApproval> {
        (self.expires_at > Instant::now())
            .then(|| {
                self.approvals
                    .iter()
                    .find(|a| a.redirect_uri == redirect_uri)
            })
            .flatten()
    }
}

/// Does a remembered consent cover this request: its scope, its resource and its exact
/// redirect URI?
#[derive(Debug)]
pub struct CheckConsent {
    pub subject: String,
    pub client_id: String,
    pub scope: ScopeSet,
    pub resource: String,
    pub redirect_uri: String,
}

/// Has the user approved this client with this exact redirect URI? Only then may an error in a
/// request go there without a page (RFC 9700 section 4.11.2).
#[derive(Debug)]
pub struct ApprovedRedirect {
    pub subject: String,
    pub client_id: String,
    pub redirect_uri: String,
}

/// Records the user's approval (merged with what was approved before).
#[derive(Debug)]
pub struct GrantConsent {
    pub subject: String,
    pub client_id: String,
    pub scope: ScopeSet,
    pub resource: String,
    pub redirect_uri: String,
}

/// Forgets a user's consent for a client.
#[derive(Debug)]
pub struct RevokeConsent {
    pub subject: String,
    pub client_id: String,
}

/// Forgets every consent of a user, of a client, or of a user for a client (`mcp-oauth admin`):
/// `None` matches any. Answers how many were forgotten.
#[derive(Debug)]
pub struct RevokeConsents {
    pub subject: Option<String>,
    pub client_id: Option<String>,
}

/// The clients a user has a live consent for, with what was approved (the account page).
#[derive(Debug)]
pub struct ListConsents {
    pub subject: String,
}

/// One remembered consent, as the account page shows it.
#[derive(Debug, Clone)]
pub struct ConsentSummary {
    pub client_id: String,
    pub scope: ScopeSet,
    pub resources: Vec<String>,
    pub redirect_uris: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ConsentsArgs {
    pub ttl: Duration,
    pub store: SharedStore,
}

/// Consents held in memory, the most recently used.
pub const CACHED_CONSENTS: usize = 10_000;

/// How often the store's expired consents are deleted.
const STORE_SWEEP: Duration = Duration::from_secs(60);

/// The actor's one deadline: the store's expired consents are deleted, and the cache's. A
/// cached consent has no deadline of its own there (every read checks its expiry), so the queue
/// does not grow with the consents read.
struct StoreSweep;

pub struct Consents {
    consents: LruCache<ConsentKey, Consent>,
    expiry: ExpiryQueue<StoreSweep>,
    ttl: Duration,
    store: SharedStore,
}

impl Actor for Consents {
    type Args = ConsentsArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "Consents"
    }

    async fn on_start(args: Self::Args, actor: ActorRef<Self>) -> Result<Self, Self::Error> {
        let mut consents = Consents {
            consents: LruCache::new(CACHED_CONSENTS),
            expiry: ExpiryQueue::default(),
            ttl: args.ttl,
            store: args.store,
        };
        consents
            .expiry
            .schedule(Instant::now() + STORE_SWEEP, StoreSweep, &actor);
        Ok(consents)
    }
}

impl Consents {
    /// Keeps a stored consent in the cache, with its expiry.
    fn remember(&mut self, record: ConsentRecord) {
        let key = (record.subject.clone(), record.client_id.clone());
        let expires_at = instant_of(record.expires_at);
        self.consents
            .insert(key, Consent::from_record(record, expires_at));
    }

    /// The live consent for (subject, client): from the cache, or from the store when the cache
    /// has none (evicted, or recorded by another replica).
    async fn live(&mut self, key: &ConsentKey) -> Result<Option<&Consent>, StoreError> {
        let cached = self
            .consents
            .get(key)
            .is_some_and(|c| c.expires_at > Instant::now());
        if !cached {
            match self.store.consent(&key.0, &key.1, unix_now()).await? {
                Some(record) => self.remember(record),
                None => return Ok(None),
            }
        }
        Ok(self.consents.get(key))
    }
}

impl Message<CheckConsent> for Consents {
    type Reply = Result<bool, StoreError>;

    async fn handle(
        &mut self,
        msg: CheckConsent,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let key = (msg.subject, msg.client_id);
        // Only what was approved for this redirect URI: another URI's approval does not widen it.
        Ok(self.live(&key).await?.is_some_and(|c| {
            c.approval(&msg.redirect_uri)
                .is_some_and(|a| a.covers(&msg.scope, &msg.resource))
        }))
    }
}

impl Message<ApprovedRedirect> for Consents {
    type Reply = Result<bool, StoreError>;

    async fn handle(
        &mut self,
        msg: ApprovedRedirect,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let key = (msg.subject, msg.client_id);
        Ok(self
            .live(&key)
            .await?
            .is_some_and(|c| c.approval(&msg.redirect_uri).is_some()))
    }
}

impl Message<GrantConsent> for Consents {
    type Reply = Result<(), StoreError>;

    async fn handle(
        &mut self,
        msg: GrantConsent,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let now = unix_now();
        let approval = Approval {
            subject: &msg.subject,
            client_id: &msg.client_id,
            scope: &msg.scope,
            resource: &msg.resource,
            redirect_uri: &msg.redirect_uri,
        };
        let merged = self
            .store
            .grant_consent(approval, now, now.saturating_add(self.ttl.as_secs()))
            .await?;
        let key = (msg.subject, msg.client_id);
        let expires_at = Instant::now() + self.ttl;
        self.consents
            .insert(key, Consent::from_record(merged, expires_at));
        Ok(())
    }
}

impl Message<RevokeConsent> for Consents {
    type Reply = Result<bool, StoreError>;

    async fn handle(
        &mut self,
        msg: RevokeConsent,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let stored = self
            .store
            .delete_consent(&msg.subject, &msg.client_id)
            .await?;
        // Other servers on the same database end the grant too (their copy of the consent, the
        // codes they issued for it, their refresh-token families' access tokens), within a
        // second, as they apply an operator's revocation.
        let cached = self
            .consents
            .remove(&(msg.subject.clone(), msg.client_id.clone()))
            .is_some();
        if self.store.is_shared() {
            let change = Change::GrantsRevoked {
                subject: Some(msg.subject),
                client_id: Some(msg.client_id),
            };
            self.store.record_change(&change, unix_now()).await?;
        }
        Ok(stored || cached)
    }
}

impl Message<RevokeConsents> for Consents {
    type Reply = Result<usize, StoreError>;

    async fn handle(
        &mut self,
        msg: RevokeConsents,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let matches = |(subject, client_id): &ConsentKey| {
            msg.subject.as_ref().is_none_or(|s| s == subject)
                && msg.client_id.as_ref().is_none_or(|c| c == client_id)
        };
        // The store's consents (by user when one is named), and the cached copies.
        let stored = match &msg.subject {
            Some(subject) => self.store.consents_of(subject, unix_now()).await?,
            None => self.store.consents(unix_now()).await?,
        };
        let mut keys: Vec<ConsentKey> = stored
            .into_iter()
            .map(|c| (c.subject, c.client_id))
            .filter(|k| matches(k))
            .collect();
        for (key, _) in self.consents.iter() {
            if matches(key) && !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        let mut revoked = 0;
        for (subject, client_id) in &keys {
            revoked += usize::from(self.store.delete_consent(subject, client_id).await?);
        }
        for key in &keys {
            self.consents.remove(key);
        }
        Ok(revoked)
    }
}

impl Message<ListConsents> for Consents {
    type Reply = Result<Vec<ConsentSummary>, StoreError>;

    async fn handle(
        &mut self,
        msg: ListConsents,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        // The store's list: the cache holds only the consents used lately (and other servers
        // may have granted or revoked since). Unreadable: an error, not a shorter list.
        let records = self.store.consents_of(&msg.subject, unix_now()).await?;
        let mut list: Vec<ConsentSummary> = records
            .into_iter()
            .map(|c| ConsentSummary {
                redirect_uris: c.approvals.into_iter().map(|a| a.redirect_uri).collect(),
                client_id: c.client_id,
                scope: c.scope,
                resources: c.resources,
            })
            .collect();
        list.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(list)
    }
}

impl Message<Sweep> for Consents {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, Self::Reply>) {
        let now = Instant::now();
        if self.expiry.pop_due(now, ctx.actor_ref()).is_empty() {
            return;
        }
        self.expiry
            .schedule(now + STORE_SWEEP, StoreSweep, ctx.actor_ref());
        let expired: Vec<ConsentKey> = self
            .consents
            .iter()
            .filter(|(_, c)| c.expires_at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            self.consents.remove(key);
        }
        match self.store.delete_expired_consents(unix_now()).await {
            Ok(deleted) if deleted > 0 || !expired.is_empty() => {
                tracing::info!(
                    actor = "Consents",
                    expired = expired.len(),
                    deleted,
                    "timer"
                )
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(actor = "Consents", error = %err, "expired consents stay stored until the next sweep")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kameo::actor::Spawn;

    const REDIRECT: &str = "http://127.0.0.1:4000/cb";

    fn check(scope: &str, resource: &str) -> CheckConsent {
        check_redirect(scope, resource, REDIRECT)
    }

    fn check_redirect(scope: &str, resource: &str, redirect_uri: &str) -> CheckConsent {
        CheckConsent {
            subject: "alice".into(),
            client_id: "c1".into(),
            scope: ScopeSet::parse(scope).unwrap(),
            resource: resource.into(),
            redirect_uri: redirect_uri.into(),
        }
    }

    /// Nothing is read at start: a consent in the store is found on demand, listed, and revoked
    /// by user, though the actor never held it.
    #[tokio::test]
    async fn stored_consents_are_read_on_demand_and_revoked_by_user() {
        let store: SharedStore = std::sync::Arc::new(crate::store::MemoryStore::new());
        let scope = ScopeSet::parse("mcp.read").unwrap();
        for client_id in ["c1", "c2"] {
            let approval = Approval {
                subject: "alice",
                client_id,
                scope: &scope,
                resource: "r",
                redirect_uri: REDIRECT,
            };
            let now = unix_now();
            store
                .grant_consent(approval, now, now + 3600)
                .await
                .unwrap();
        }
        let consents = Consents::spawn(ConsentsArgs {
            ttl: Duration::from_secs(3600),
            store: store.clone(),
        });
        assert!(consents.ask(check("mcp.read", "r")).await.unwrap());
        let listed = consents
            .ask(ListConsents {
                subject: "alice".into(),
            })
            .await
            .unwrap();
        let clients: Vec<&str> = listed.iter().map(|c| c.client_id.as_str()).collect();
        assert_eq!(clients, ["c1", "c2"]);
        let revoked = consents
            .ask(RevokeConsents {
                subject: Some("alice".into()),
                client_id: None,
            })
            .await
            .unwrap();
        assert_eq!(revoked, 2, "the cached one and the one only stored");
        assert!(!consents.ask(check("mcp.read", "r")).await.unwrap());
        assert!(store.consents(unix_now()).await.unwrap().is_empty());
    }

    /// Real time: expiry is decided by the store's Unix clock as well as the actor's timer.
    #[tokio::test]
    async fn remembered_until_expiry() {
        let consents = Consents::spawn(ConsentsArgs {
            ttl: Duration::from_secs(1),
            store: std::sync::Arc::new(crate::store::MemoryStore::new()),
        });
        assert!(!consents.ask(check("mcp.read", "r")).await.unwrap());
        consents
            .ask(GrantConsent {
                subject: "alice".into(),
                client_id: "c1".into(),
                scope: ScopeSet::parse("mcp.read").unwrap(),
                resource: "r".into(),
                redirect_uri: REDIRECT.into(),
            })
            .await
            .unwrap();
        assert!(consents.ask(check("mcp.read", "r")).await.unwrap());
        // Another loopback port, or any other redirect URI, is not what the user approved.
        for other in [
            "http://127.0.0.1:4001/cb",
            "http://127.0.0.1:4000/cb/",
            "http://127.0.0.1:4000/cb?x=1",
            "http://localhost:4000/cb",
        ] {
            assert!(
                !consents
                    .ask(check_redirect("mcp.read", "r", other))
                    .await
                    .unwrap(),
                "{other}"
            );
            let approved = ApprovedRedirect {
                subject: "alice".into(),
                client_id: "c1".into(),
                redirect_uri: other.into(),
            };
            assert!(!consents.ask(approved).await.unwrap(), "{other}");
        }
        let approved = ApprovedRedirect {
            subject: "alice".into(),
            client_id: "c1".into(),
            redirect_uri: REDIRECT.into(),
        };
        assert!(consents.ask(approved).await.unwrap());
        assert!(
            !consents
                .ask(check("mcp.read mcp.write", "r"))
                .await
                .unwrap()
        );
        assert!(!consents.ask(check("mcp.read", "other")).await.unwrap());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(!consents.ask(check("mcp.read", "r")).await.unwrap());
    }
}
