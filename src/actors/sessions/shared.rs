//! Sessions on a store that several servers share: a browser's session, the requests parked in
//! it and a replaced id's successor are kept in the store, so that any server goes on with a
//! sign-in another server started (`/authorize` at one, the login page at another, consent at a
//! third). The rules are the actor's own: a request is read only from its own session and taken
//! once (a conditional delete), a login replaces the session id and carries the requests over,
//! and a replaced id leads to its successor for a few seconds; the successor is an HMAC of the old
//! id (the refresh-token successor function), so no session id is ever stored, only digests.

use super::{
    AuthorizationRequest, Opened, RENEWAL_GRACE, SessionError, SessionView, Sessions, SignedIn,
    key_of,
};
use crate::oauth::refresh_token::successor;
use crate::oauth::scope::ScopeSet;
use crate::oauth::time::unix_now;
use crate::store::{Renewal, SessionRecord, SharedStore, StoreError};
use crate::trace::{FlowId, Secret};

/// How a parked request is stored: the actor's record as JSON.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRequest {
    client_id: String,
    client_name: String,
    redirect_uri: String,
    redirect_uri_named: bool,
    state: Option<String>,
    code_challenge: String,
    scope: String,
    resource: String,
    prompt_consent: bool,
    flow: String,
}

fn stored(request: &AuthorizationRequest) -> String {
    let stored = StoredRequest {
        client_id: request.client_id.clone(),
        client_name: request.client_name.clone(),
        redirect_uri: request.redirect_uri.clone(),
        redirect_uri_named: request.redirect_uri_named,
        state: request.state.clone(),
        code_challenge: request.code_challenge.clone(),
        scope: request.scope.to_string(),
        resource: request.resource.clone(),
        prompt_consent: request.prompt_consent,
        flow: request.flow.as_str().to_string(),
    };
    serde_json::to_string(&stored).unwrap_or_default()
}

fn request_of(text: &str) -> Result<AuthorizationRequest, SessionError> {
    let stored: StoredRequest =
        serde_json::from_str(text).map_err(|_| SessionError::Unavailable)?;
    Ok(AuthorizationRequest {
        scope: ScopeSet::parse(&stored.scope).unwrap_or_default(),
        flow: FlowId::from_claim(&stored.flow),
        client_id: stored.client_id,
        client_name: stored.client_name,
        redirect_uri: stored.redirect_uri,
        redirect_uri_named: stored.redirect_uri_named,
        state: stored.state,
        code_challenge: stored.code_challenge,
        resource: stored.resource,
        prompt_consent: stored.prompt_consent,
    })
}

impl From<StoreError> for SessionError {
    fn from(err: StoreError) -> Self {
        tracing::warn!(actor = "Sessions", error = %err, "sessions not read or written");
        SessionError::Unavailable
    }
}

/// How long a sweep of expired rows waits after the last one.
const CLEAN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Sessions {
    /// Opens a session in the store (anonymous, or signed in).
    pub(super) async fn open_shared(
        &mut self,
        store: &SharedStore,
        user: Option<SignedIn>,
    ) -> Result<Opened, SessionError> {
        self.clean_shared(store).await;
        let sid = Secret::random(32);
        let csrf = Secret::random(24);
        let ttl = match user {
            Some(_) => self.args.session_ttl,
            None => self.args.pending_ttl.min(self.args.session_ttl),
        };
        let record = SessionRecord {
            csrf: csrf.expose().to_string(),
            subject: user.as_ref().map(|u| u.subject.clone()),
            display_name: user.map(|u| u.display_name),
            expires_at: unix_now() + ttl.as_secs(),
        };
        store.insert_session(&key_of(&sid), &record).await?;
        Ok(Opened { sid, csrf })
    }

    /// Signs a user in: a replaced id still within its grace leads to its successor; a live
    /// session is replaced, its requests carried over; otherwise a new session.
    pub(super) async fn login_shared(
        &mut self,
        store: &SharedStore,
        sid: Option<&Secret>,
        user: SignedIn,
    ) -> Result<Opened, SessionError> {
        let now = unix_now();
        if let Some(sid) = sid {
            let old = key_of(sid);
            if let Some(renewal) = store.renewal(&old, now).await?
                && renewal.subject == user.subject
            {
                let next = successor(sid, &renewal.salt);
                if let Some(session) = store.session(&key_of(&next), now).await? {
                    return Ok(Opened {
                        sid: next,
                        csrf: Secret::new(session.csrf),
                    });
                }
            }
            if store.session(&old, now).await?.is_some() {
                let mut salt = [0u8; 32];
                rand::fill(&mut salt[..]);
                let next = successor(sid, &salt);
                let csrf = Secret::random(24);
                let record = SessionRecord {
                    csrf: csrf.expose().to_string(),
                    subject: Some(user.subject.clone()),
                    display_name: Some(user.display_name),
                    expires_at: now + self.args.session_ttl.as_secs(),
                };
                let renewal = Renewal {
                    salt,
                    subject: user.subject,
                    until: now + RENEWAL_GRACE.as_secs(),
                };
                store
                    .renew_session(&old, &key_of(&next), &record, &renewal)
                    .await?;
                return Ok(Opened { sid: next, csrf });
            }
        }
        self.open_shared(store, Some(user)).await
    }

    /// Deletes expired rows, at most once per [`CLEAN_EVERY`] (from the sessions this server
    /// opens: every server cleans what any of them left).
    async fn clean_shared(&mut self, store: &SharedStore) {
        if self.cleaned_at.elapsed() < CLEAN_EVERY {
            return;
        }
        self.cleaned_at = tokio::time::Instant::now();
        if let Err(err) = store.delete_expired_sessions(unix_now()).await {
            tracing::warn!(actor = "Sessions", error = %err, "expired sessions stay stored until the next sweep");
        }
    }
}

/// The shared store's reads and writes that need none of the actor's state: its handlers answer
/// them from a task of their own (`actors/reply.rs`).
impl Sessions {
    pub(super) async fn resolve_shared(
        store: SharedStore,
        sid: Secret,
    ) -> Result<Option<SessionView>, SessionError> {
        let Some(session) = store.session(&key_of(&sid), unix_now()).await? else {
            return Ok(None);
        };
        let user = match (session.subject, session.display_name) {
            (Some(subject), display_name) => Some(SignedIn {
                display_name: display_name.unwrap_or_else(|| subject.clone()),
                subject,
            }),
            (None, _) => None,
        };
        Ok(Some(SessionView {
            user,
            csrf: Secret::new(session.csrf),
        }))
    }

    /// Parks `request` in the session, at most `per_session` in one session, for `ttl`.
    pub(super) async fn park_shared(
        store: SharedStore,
        sid: Secret,
        request: AuthorizationRequest,
        per_session: usize,
        ttl: std::time::Duration,
    ) -> Result<String, SessionError> {
        let key = key_of(&sid);
        let now = unix_now();
        if store.session(&key, now).await?.is_none() {
            return Err(SessionError::UnknownSession);
        }
        let id = format!("{:032x}", rand::random::<u128>());
        let per_session = u32::try_from(per_session).unwrap_or(u32::MAX);
        store
            .park_request(
                &id,
                &key,
                &stored(&request),
                now + ttl.as_secs(),
                per_session.max(1),
            )
            .await?;
        Ok(id)
    }

    pub(super) async fn peek_shared(
        store: SharedStore,
        sid: Secret,
        request_id: String,
    ) -> Result<Option<AuthorizationRequest>, SessionError> {
        let found = store
            .parked_request(&request_id, &key_of(&sid), unix_now())
            .await?;
        found.as_deref().map(request_of).transpose()
    }

    pub(super) async fn take_shared(
        store: SharedStore,
        sid: Secret,
        request_id: String,
    ) -> Result<Option<AuthorizationRequest>, SessionError> {
        let taken = store
            .take_request(&request_id, &key_of(&sid), unix_now())
            .await?;
        taken.as_deref().map(request_of).transpose()
    }
}
