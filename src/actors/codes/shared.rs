//! Codes on a store that several servers share: a code issued by one server is redeemed at any of
//! them. The store holds it (its digest and grant), and its conditional update decides the one
//! redemption, however many servers try at once ([`crate::store::CodeStore::take_code`]). The
//! rules are the same as for the actor's own map: another client's attempt consumes nothing, any
//! other failed check consumes the code, and a replay by its client with its verifier revokes what
//! the first redemption produced.

use super::{
    AuthorizationCodes, AuthorizationCodesArgs, Grant, RedeemCode, RedeemError, check_redemption,
};
use crate::oauth::pkce;
use crate::oauth::scope::ScopeSet;
use crate::oauth::time::unix_now;
use crate::store::{CodeRecord, CodeTake, SharedStore};
use crate::trace::FlowId;
use std::time::Duration;

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
    /// [`RedeemCode`] against the shared store (from a task of its own: nothing here is the actor's
    /// state).
    pub(super) async fn redeem_shared(
        args: AuthorizationCodesArgs,
        store: SharedStore,
        msg: RedeemCode,
    ) -> Result<Grant, RedeemError> {
        let key = super::key_of(&msg.code);
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
