//! Codes on a store that several servers share: a code issued by one server is redeemed at any of
//! them. The store holds it (its digest and grant), and its conditional update decides the one
//! redemption, however many servers try at once ([`crate::store::CodeStore::take_code`]). The
//! rules are the same as for the actor's own map: another client's attempt consumes nothing, any
//! other failed check consumes the code, and a replay by its client with its verifier revokes what
//! the first redemption produced.
//!
//! The actor still keeps each code it issued, for its bound (`--max-codes`) and its trace; the
//! task that stores or redeems a code tells it what became of the code ([`Settled`]), so that a
//! code redeemed, consumed or refused by the store stops counting as outstanding.

use super::{
    AuthorizationCodes, AuthorizationCodesArgs, CodeKey, Entry, Grant, RedeemCode, RedeemError,
    check_redemption,
};
use crate::oauth::pkce;
use crate::oauth::scope::ScopeSet;
use crate::oauth::time::unix_now;
use crate::store::{CodeRecord, CodeTake, SharedStore};
use crate::trace::{FlowId, Secret};
use kameo::actor::WeakActorRef;
use kameo::message::{Context, Message};
use std::time::Duration;

/// What became of a code this server issued, told by the task that stored or redeemed it.
pub(super) enum Settled {
    /// Redeemed here for the access token `jti`: remembered as redeemed (its flow stays known).
    Redeemed { key: CodeKey, jti: String },
    /// Consumed, refused by the store, or gone from it: no longer outstanding.
    Gone(CodeKey),
}

impl Settled {
    /// What a redemption's outcome makes of the code: `None` when it is still outstanding (or
    /// its fate is unknown).
    fn after(key: CodeKey, jti: &str, outcome: &Result<Grant, RedeemError>) -> Option<Settled> {
        match outcome {
            Ok(_) => Some(Settled::Redeemed {
                key,
                jti: jti.to_string(),
            }),
            Err(RedeemError::WrongClient | RedeemError::Unavailable | RedeemError::Full) => None,
            Err(_) => Some(Settled::Gone(key)),
        }
    }

    /// Tells the actor, if it still runs.
    async fn tell(self, codes: &WeakActorRef<AuthorizationCodes>) {
        if let Some(codes) = codes.upgrade() {
            let _ = codes.tell(self).await;
        }
    }
}

impl Message<Settled> for AuthorizationCodes {
    type Reply = ();

    async fn handle(&mut self, msg: Settled, _: &mut Context<Self, ()>) {
        let (key, jti) = match msg {
            Settled::Redeemed { key, jti } => (key, Some(jti)),
            Settled::Gone(key) => (key, None),
        };
        if !matches!(self.codes.get(&key), Some(Entry::Live { .. })) {
            return;
        }
        if let (Some(Entry::Live { grant, expires_at }), Some(jti)) = (self.forget(&key), jti) {
            self.remember_redeemed(key, &grant, jti, expires_at);
        }
    }
}

impl Grant {
    /// The stored form of this grant, expiring `ttl` from now.
    pub(super) fn stored(&self, ttl: Duration) -> CodeRecord {
        let grant = self;
        CodeRecord {
            client_id: grant.client_id.clone(),
            subject: grant.subject.clone(),
            redirect_uri: grant.redirect_uri.clone(),
            redirect_uri_named: grant.redirect_uri_named,
            code_challenge: grant.code_challenge.clone(),
            scope: grant.scope.to_string(),
            resource: grant.resource.clone(),
            flow: grant.flow.as_str().to_string(),
            expires_at: unix_now() + ttl.as_secs(),
        }
    }
}

fn grant_of(record: CodeRecord) -> Grant {
    Grant {
        scope: ScopeSet::parse(&record.scope).unwrap_or_default(),
        flow: FlowId::from_claim(&record.flow),
        subject: record.subject,
        client_id: record.client_id,
        redirect_uri: record.redirect_uri,
        redirect_uri_named: record.redirect_uri_named,
        code_challenge: record.code_challenge,
        resource: record.resource,
    }
}

impl AuthorizationCodes {
    /// Stores a code issued for `record` and answers it once stored (from a task of its own); a
    /// code the store refused is no longer counted by `codes`.
    pub(super) async fn store_code(
        store: SharedStore,
        key: CodeKey,
        record: CodeRecord,
        code: Secret,
        codes: WeakActorRef<AuthorizationCodes>,
    ) -> Result<Secret, RedeemError> {
        match store.insert_code(&key, &record).await {
            Ok(()) => Ok(code),
            Err(err) => {
                tracing::warn!(actor = "AuthorizationCodes", error = %err, "code not stored");
                Settled::Gone(key).tell(&codes).await;
                Err(RedeemError::Unavailable)
            }
        }
    }

    /// [`RedeemCode`] against the shared store (from a task of its own: nothing here is the actor's
    /// state), then tells `codes` what became of the code.
    pub(super) async fn redeem_shared(
        args: AuthorizationCodesArgs,
        store: SharedStore,
        msg: RedeemCode,
        codes: WeakActorRef<AuthorizationCodes>,
    ) -> Result<Grant, RedeemError> {
        let key = super::key_of(&msg.code);
        let jti = msg.jti.clone();
        let outcome = Self::take_shared(args, store, msg, key).await;
        if let Some(settled) = Settled::after(key, &jti, &outcome) {
            settled.tell(&codes).await;
        }
        outcome
    }

    /// The redemption itself, against the shared store.
    async fn take_shared(
        args: AuthorizationCodesArgs,
        store: SharedStore,
        msg: RedeemCode,
        key: CodeKey,
    ) -> Result<Grant, RedeemError> {
        let taken = store
            .take_code(&key, &msg.client_id, &msg.jti, unix_now())
            .await
            .map_err(|err| {
                tracing::warn!(actor = "AuthorizationCodes", error = %err, "code not read from the store");
                RedeemError::Unavailable
            })?;
        match taken {
            CodeTake::Unknown => Err(RedeemError::Unknown),
            CodeTake::OtherClient => Err(RedeemError::WrongClient),
            CodeTake::Redeemed { record, jti } => {
                // Only its client, proving the same verifier, triggers the revocation.
                if record.client_id != msg.client_id
                    || !pkce::verify_s256(msg.verifier.expose(), &record.code_challenge)
                {
                    return Err(RedeemError::Unknown);
                }
                Err(args
                    .revoke_replayed(jti, FlowId::from_claim(&record.flow))
                    .await)
            }
            CodeTake::Taken(record) => {
                let grant = grant_of(record);
                if let Err(refused) = check_redemption(&grant, &msg) {
                    // Consumed all the same, with nothing to revoke on a replay.
                    if let Err(err) = store.delete_code(&key).await {
                        tracing::warn!(actor = "AuthorizationCodes", error = %err, "refused code not deleted; it expires");
                    }
                    return Err(refused);
                }
                Ok(grant)
            }
        }
    }
}
