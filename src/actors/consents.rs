//! `Consents`: what each user has approved for each client (user x client -> scopes and
//! resources). The consent page is skipped when a remembered consent already covers a request.
//! Consents are remembered for a configurable time and then expire through the actor's timer.
//!
//! Durability: consents are in the store ([`crate::store::ConsentStore`]), loaded at start; a
//! grant is merged in the store atomically and acknowledged only once committed; a check that
//! misses the map asks the store (another replica may have recorded the approval).

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::oauth::scope::ScopeSet;
use crate::oauth::time::{instant_of, unix_now};
use crate::store::{ConsentRecord, SharedStore, StoreError};
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use tokio::time::Instant;

type ConsentKey = (String, String);

struct Consent {
    scope: ScopeSet,
    resources: BTreeSet<String>,
    expires_at: Instant,
}

/// Does a remembered consent cover this request?
#[derive(Debug)]
pub struct CheckConsent {
    pub subject: String,
    pub client_id: String,
    pub scope: ScopeSet,
    pub resource: String,
}

/// Records the user's approval (merged with what was approved before).
#[derive(Debug)]
pub struct GrantConsent {
    pub subject: String,
    pub client_id: String,
    pub scope: ScopeSet,
    pub resource: String,
}

/// Forgets a user's consent for a client.
#[derive(Debug)]
pub struct RevokeConsent {
    pub subject: String,
    pub client_id: String,
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
}

#[derive(Debug, Clone)]
pub struct ConsentsArgs {
    pub ttl: Duration,
    pub store: SharedStore,
}

pub struct Consents {
    consents: HashMap<ConsentKey, Consent>,
    expiry: ExpiryQueue<ConsentKey>,
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
            consents: HashMap::new(),
            expiry: ExpiryQueue::default(),
            ttl: args.ttl,
            store: args.store,
        };
        match consents.store.consents(unix_now()).await {
            Ok(records) => {
                for record in records {
                    consents.remember(record, &actor);
                }
                tracing::info!(
                    actor = "Consents",
                    loaded = consents.consents.len(),
                    "consents loaded"
                );
            }
            Err(err) => tracing::error!(actor = "Consents", error = %err, "consents not loaded"),
        }
        Ok(consents)
    }
}

impl Consents {
    /// Keeps a stored consent in the map, with its expiry.
    fn remember(&mut self, record: ConsentRecord, actor: &ActorRef<Self>) {
        let key = (record.subject, record.client_id);
        let expires_at = instant_of(record.expires_at);
        self.consents.insert(
            key.clone(),
            Consent {
                scope: record.scope,
                resources: record.resources.into_iter().collect(),
                expires_at,
            },
        );
        self.expiry.schedule(expires_at, key, actor);
    }
}

impl Message<CheckConsent> for Consents {
    type Reply = Result<bool, StoreError>;

    async fn handle(
        &mut self,
        msg: CheckConsent,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let key = (msg.subject, msg.client_id);
        let covers = |c: &Consent| {
            c.expires_at > Instant::now()
                && msg.scope.is_subset(&c.scope)
                && c.resources.contains(&msg.resource)
        };
        if let Some(c) = self.consents.get(&key)
            && c.expires_at > Instant::now()
        {
            return Ok(covers(c));
        }
        match self.store.consent(&key.0, &key.1, unix_now()).await? {
            Some(record) => {
                self.remember(record, ctx.actor_ref());
                Ok(self.consents.get(&key).is_some_and(covers))
            }
            None => Ok(false),
        }
    }
}

impl Message<GrantConsent> for Consents {
    type Reply = Result<(), StoreError>;

    async fn handle(
        &mut self,
        msg: GrantConsent,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let now = unix_now();
        let merged = self
            .store
            .grant_consent(
                &msg.subject,
                &msg.client_id,
                &msg.scope,
                &msg.resource,
                now,
                now.saturating_add(self.ttl.as_secs()),
            )
            .await?;
        let key = (msg.subject, msg.client_id);
        let expires_at = Instant::now() + self.ttl;
        self.consents.insert(
            key.clone(),
            Consent {
                scope: merged.scope,
                resources: merged.resources.into_iter().collect::<BTreeSet<_>>(),
                expires_at,
            },
        );
        self.expiry.schedule(expires_at, key, ctx.actor_ref());
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
        let cached = self
            .consents
            .remove(&(msg.subject, msg.client_id))
            .is_some();
        Ok(stored || cached)
    }
}

impl Message<ListConsents> for Consents {
    type Reply = Vec<ConsentSummary>;

    async fn handle(
        &mut self,
        msg: ListConsents,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let now = Instant::now();
        let mut list: Vec<ConsentSummary> = self
            .consents
            .iter()
            .filter(|((subject, _), c)| *subject == msg.subject && c.expires_at > now)
            .map(|((_, client_id), c)| ConsentSummary {
                client_id: client_id.clone(),
                scope: c.scope.clone(),
                resources: c.resources.iter().cloned().collect(),
            })
            .collect();
        list.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        list
    }
}

impl Message<Sweep> for Consents {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, Self::Reply>) {
        let now = Instant::now();
        let mut expired = 0usize;
        for key in self.expiry.pop_due(now, ctx.actor_ref()) {
            if self.consents.get(&key).is_some_and(|c| c.expires_at <= now) {
                self.consents.remove(&key);
                expired += 1;
            }
        }
        if expired > 0 {
            tracing::info!(actor = "Consents", expired, "timer");
            if let Err(err) = self.store.delete_expired_consents(unix_now()).await {
                tracing::warn!(actor = "Consents", error = %err, "expired consents stay stored until the next sweep");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kameo::actor::Spawn;

    fn check(scope: &str, resource: &str) -> CheckConsent {
        CheckConsent {
            subject: "alice".into(),
            client_id: "c1".into(),
            scope: ScopeSet::parse(scope).unwrap(),
            resource: resource.into(),
        }
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
            })
            .await
            .unwrap();
        assert!(consents.ask(check("mcp.read", "r")).await.unwrap());
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
