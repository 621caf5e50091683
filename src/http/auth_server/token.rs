//! `POST /token`: the token endpoint (OAuth 2.1 section 3.2, TK-1, TK-2, TK-4).
//!
//! Form-encoded POST only. The client authenticates with exactly one method: `none` (public
//! clients, `client_id` in the form), `client_secret_basic` or `client_secret_post` (the form and
//! the client reach the handler as the `AuthenticatedClient` extractor, `client_auth.rs`). The
//! `authorization_code` grant asks `AuthorizationCodes` to redeem the code (verifier, client,
//! redirect URI and resource checked and the code consumed in one step), then the signer pool to
//! sign an RFC 9068 access token; a client registered for `refresh_token` also gets the first
//! token of a new refresh-token family. The `refresh_token` grant asks `RefreshTokens` to rotate
//! the presented token (client, resource and scope checked first, reuse detected, the grace window
//! applied: see `actors/refresh_tokens.rs`), then signs a new access token. A replayed code, or a
//! reused refresh token, is answered `invalid_grant` once the actors have revoked what it
//! produced (they do it themselves before they answer; `temporarily_unavailable` if they could
//! not). The `client_credentials` grant gives a confidential client a token for itself. Every
//! answer is JSON with `Cache-Control: no-store`, and error descriptions are fixed text that
//! never echoes input.

use super::client_auth::AuthenticatedClient;
use super::state::AuthState;
use crate::actors::clients::MarkUsed;
use crate::actors::codes::{RedeemCode, RedeemError};
use crate::actors::refresh_tokens::{
    FamilyGrant, IssueRefreshToken, RefreshError, RotateRefreshToken,
};
use crate::actors::{AskError, ask};
use crate::http::error::{JsonError, no_store};
use crate::oauth::ErrorCode;
use crate::oauth::client::Client;
use crate::oauth::params::{MAX_REFRESH_TOKEN_LEN, Params};
use crate::oauth::pkce;
use crate::oauth::resource;
use crate::oauth::scope::ScopeSet;
use crate::oauth::time::unix_now;
use crate::oauth::token::AccessTokenClaims;
use crate::trace::Secret;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::oneshot;

fn invalid_request(description: &'static str) -> JsonError {
    JsonError::new(ErrorCode::InvalidRequest, description)
}

pub async fn handler(
    State(state): State<AuthState>,
    AuthenticatedClient {
        client,
        params: form,
    }: AuthenticatedClient,
) -> Result<Response, JsonError> {
    match form.get("grant_type") {
        None => Err(invalid_request("grant_type is required")),
        Some("authorization_code") => authorization_code(&state, &client, &form).await,
        Some("refresh_token") => refresh_token(&state, &client, &form).await,
        Some("client_credentials") => client_credentials(&state, &client, &form).await,
        Some(_) => Err(JsonError::new(
            ErrorCode::UnsupportedGrantType,
            "this grant type is not supported",
        )),
    }
}

async fn authorization_code(
    state: &AuthState,
    client: &Client,
    form: &Params,
) -> Result<Response, JsonError> {
    let code = form
        .get("code")
        .ok_or_else(|| invalid_request("code is required"))?;
    let verifier = form
        .get("code_verifier")
        .ok_or_else(|| invalid_request("code_verifier is required"))?;
    if !pkce::is_valid_verifier(verifier) {
        return Err(invalid_request("code_verifier is malformed"));
    }
    // The resource as the code recorded it (a trailing-slash variant of an origin is the same).
    let resource = match form.get("resource") {
        None => None,
        Some(requested) => Some(canonical_resource(state, requested)?),
    };
    let jti = uuid::Uuid::new_v4().to_string();
    let redeem = RedeemCode {
        code: Secret::new(code),
        client_id: client.client_id.to_string(),
        redirect_uri: form.get("redirect_uri").map(str::to_string),
        verifier: Secret::new(verifier),
        resource,
        jti: jti.clone(),
    };
    // A replayed code is answered once `AuthorizationCodes` has revoked what it produced.
    let grant = match ask(&state.codes, redeem).await {
        Ok(grant) => grant,
        Err(AskError::Rejected(err)) => return Err(redeem_error(err)),
        Err(other) => return Err(other.into()),
    };
    // The access token is signed, the client marked used and the refresh-token family committed
    // all at once: each waits on something else (a core, the store), and the answer needs all.
    let sign = sign_access_token(
        state,
        &grant.subject,
        &grant.client_id,
        &grant.resource,
        &grant.scope,
        &grant.flow,
        jti.clone(),
    );
    // The client completed a flow: it is kept, not reaped as an abandoned registration.
    let mark = ask(
        &state.clients,
        MarkUsed {
            client_id: grant.client_id.clone(),
        },
    );
    let issue = async {
        if !client.grant_types.refresh_token() {
            return None;
        }
        let issue = IssueRefreshToken {
            client_id: grant.client_id.clone(),
            subject: grant.subject.clone(),
            scope: grant.scope.clone(),
            resource: grant.resource.clone(),
            flow: grant.flow.clone(),
            access_jti: jti.clone(),
            access_ttl: access_ttl(state),
        };
        match ask(&state.refresh_tokens, issue).await {
            Ok(token) => Some(token),
            // The code is spent: the client still gets its access token, and signs in again
            // when it expires.
            Err(err) => {
                tracing::warn!(error = ?err, "no refresh token issued");
                None
            }
        }
    };
    // Should the signature or the mark fail, a family issued meanwhile is never answered: its
    // token is known to no one, and the family ends at its idle deadline.
    let (token, marked, refresh) = tokio::join!(sign, mark, issue);
    let token = token?;
    marked?;
    metrics::counter!("mcp_oauth_tokens_total", "kind" => "minted").increment(1);
    metrics::counter!("mcp_oauth_flows_total", "event" => "completed").increment(1);
    tracing::info!(
        client_id = %grant.client_id,
        sub = %grant.subject,
        aud = %grant.resource,
        scope = %grant.scope,
        token = %Secret::new(token.clone()),
        refresh_token = ?refresh,
        "access token issued"
    );
    Ok(token_response(
        state,
        &token,
        &grant.scope,
        refresh.as_ref(),
    ))
}

/// The requested resource as grants record it ([`resource::canonicalize`]).
fn canonical_resource(state: &AuthState, requested: &str) -> Result<String, JsonError> {
    resource::canonicalize(requested, &state.config.known_resources)
        .map(str::to_string)
        .map_err(|_| {
            JsonError::new(
                ErrorCode::InvalidTarget,
                "resource must be an absolute URI without a fragment",
            )
        })
}

fn access_ttl(state: &AuthState) -> std::time::Duration {
    state.config.tokens.access_ttl
}

/// Signs an access token for a grant.
async fn sign_access_token(
    state: &AuthState,
    subject: &str,
    client_id: &str,
    resource: &str,
    scope: &ScopeSet,
    flow: &crate::trace::FlowId,
    jti: String,
) -> Result<String, JsonError> {
    let now = unix_now();
    let claims = AccessTokenClaims {
        iss: state.config.issuer.clone(),
        sub: subject.to_string(),
        aud: resource.to_string(),
        exp: now + state.config.tokens.access_ttl.as_secs(),
        iat: now,
        nbf: None,
        jti,
        client_id: client_id.to_string(),
        scope: scope.to_string(),
        flow: Some(flow.to_string()),
    };
    Ok(state.signers.sign(claims).await?)
}

/// Signs an access token for what a refresh-token family grants.
async fn sign_grant(
    state: &AuthState,
    grant: &FamilyGrant,
    scope: &ScopeSet,
    jti: String,
) -> Result<String, JsonError> {
    sign_access_token(
        state,
        &grant.subject,
        &grant.client_id,
        &grant.resource,
        scope,
        &grant.flow,
        jti,
    )
    .await
}

/// The successful token response (OAuth 2.1 section 3.2.3).
fn token_response(
    state: &AuthState,
    access_token: &str,
    scope: &ScopeSet,
    refresh_token: Option<&Secret>,
) -> Response {
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": state.config.tokens.access_ttl.as_secs(),
        "scope": scope.to_string(),
    });
    if let Some(refresh) = refresh_token {
        body["refresh_token"] = json!(refresh.expose());
    }
    let mut response = Json(body).into_response();
    no_store(&mut response);
    response
}

/// `grant_type=client_credentials` (OAuth 2.1 section 4.2, the MCP client-credentials
/// extension): a confidential client registered for it gets a token for itself (`sub` is
/// `client:<id>`, RFC 9068 section 2.2, never a user's), for the resource it names (or the
/// default one) and the scopes it asks for, narrowed to those it registered (all supported ones
/// when it registered none). No user and no consent are involved, so no refresh token is issued
/// (RFC 6749 section 4.4.3).
async fn client_credentials(
    state: &AuthState,
    client: &Client,
    form: &Params,
) -> Result<Response, JsonError> {
    if !client.grant_types.client_credentials() || client.is_public() {
        return Err(JsonError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the client_credentials grant",
        ));
    }
    let resource = resource::resolve(
        form.get("resource"),
        &state.config.known_resources,
        &state.config.resource,
    )
    .map_err(|_| {
        JsonError::new(
            ErrorCode::InvalidTarget,
            "resource is not a resource this server issues tokens for",
        )
    })?;
    let allowed = match client.scope.as_deref() {
        Some(registered) => ScopeSet::parse(registered).unwrap_or_default(),
        None => ScopeSet::all_supported(),
    };
    // A request for more than the client registered gets what it registered of it (RFC 6749
    // section 3.3: the answer's `scope` says so), as SDKs ask for the scopes a resource server's
    // challenge names; nothing of it left is refused.
    let scope = match form.get("scope") {
        None => allowed,
        Some(requested) => ScopeSet::parse_supported(requested)
            .map_err(|_| {
                JsonError::new(
                    ErrorCode::InvalidScope,
                    "the scope is malformed or unsupported",
                )
            })?
            .intersection(&allowed),
    };
    if scope.is_empty() {
        return Err(JsonError::new(
            ErrorCode::InvalidScope,
            "the requested scope is outside the client's registered scope",
        ));
    }
    let flow = crate::trace::FlowId::mint();
    let jti = uuid::Uuid::new_v4().to_string();
    let subject = crate::oauth::client::machine_subject(&client.client_id);
    let token = sign_access_token(
        state,
        &subject,
        &client.client_id,
        resource,
        &scope,
        &flow,
        jti,
    )
    .await?;
    // The client obtained a token: it is kept, not reaped as an abandoned registration.
    let mark = MarkUsed {
        client_id: client.client_id.to_string(),
    };
    ask(&state.clients, mark).await?;
    metrics::counter!("mcp_oauth_tokens_total", "kind" => "client_credentials").increment(1);
    tracing::info!(
        client_id = %client.client_id,
        aud = %resource,
        scope = %scope,
        token = %Secret::new(token.clone()),
        "access token issued to the client itself"
    );
    Ok(token_response(state, &token, &scope, None))
}

/// `grant_type=refresh_token` (OAuth 2.1 section 4.3).
async fn refresh_token(
    state: &AuthState,
    client: &Client,
    form: &Params,
) -> Result<Response, JsonError> {
    if !client.grant_types.refresh_token() {
        return Err(JsonError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the refresh_token grant",
        ));
    }
    let token = form
        .get("refresh_token")
        .ok_or_else(|| invalid_request("refresh_token is required"))?;
    if token.len() > MAX_REFRESH_TOKEN_LEN {
        return Err(JsonError::new(
            ErrorCode::InvalidGrant,
            "the refresh token is invalid, expired or revoked",
        ));
    }
    let scope = match form.get("scope") {
        None => None,
        Some(s) => Some(ScopeSet::parse(s).map_err(|_| {
            JsonError::new(ErrorCode::InvalidScope, "the scope parameter is malformed")
        })?),
    };
    let resource = match form.get("resource") {
        None => None,
        Some(requested) => Some(canonical_resource(state, requested)?),
    };
    let jti = uuid::Uuid::new_v4().to_string();
    let (judged, judgement) = oneshot::channel();
    let refresh = RotateRefreshToken {
        token: Secret::new(token),
        client_id: client.client_id.to_string(),
        resource,
        scope,
        access_jti: jti.clone(),
        access_ttl: access_ttl(state),
        judged: Some(judged),
    };
    // The access token is signed while the rotation commits, from what the refresh was judged to
    // grant; it is released only with the rotation's successful reply, for that same grant.
    let signed_early = async {
        let judgement = judgement.await.ok()?;
        let token = sign_grant(state, &judgement.grant, &judgement.scope, jti.clone()).await;
        Some((judgement, token))
    };
    // A reused token is answered once `RefreshTokens` has ended its family and revoked the
    // family's access tokens.
    // An error is answered at once. Once the rotation has answered, its judgement was sent or
    // dropped, so the early signature does not keep a success waiting long.
    let (refreshed, signed_early) =
        alongside(ask(&state.refresh_tokens, refresh), signed_early).await;
    let refreshed = match refreshed {
        Ok(refreshed) => refreshed,
        Err(AskError::Rejected(err)) => return Err(refresh_error(err)),
        Err(other) => return Err(other.into()),
    };
    let token = match signed_early.flatten() {
        Some((judged, token))
            if judged.grant == refreshed.grant && judged.scope == refreshed.scope =>
        {
            token?
        }
        // Answered without a rotation (a retry within the grace window), or judged again after
        // the store's compare-and-swap.
        _ => sign_grant(state, &refreshed.grant, &refreshed.scope, jti.clone()).await?,
    };
    let FamilyGrant {
        subject,
        client_id,
        resource,
        ..
    } = &refreshed.grant;
    metrics::counter!("mcp_oauth_tokens_total", "kind" => "refreshed").increment(1);
    tracing::info!(
        client_id = %client_id,
        sub = %subject,
        aud = %resource,
        scope = %refreshed.scope,
        token = %Secret::new(token.clone()),
        refresh_token = %refreshed.refresh_token,
        grace = refreshed.grace,
        "access token refreshed"
    );
    Ok(token_response(
        state,
        &token,
        &refreshed.scope,
        Some(&refreshed.refresh_token),
    ))
}

/// Runs `main` and `aside` together, and answers `main`'s outcome with `aside`'s: awaited to its
/// end when `main` succeeded, dropped unfinished (`None`) when `main` failed, so that an error is
/// answered at once whatever `aside` is waiting for.
async fn alongside<T, E, A>(
    main: impl Future<Output = Result<T, E>>,
    aside: impl Future<Output = A>,
) -> (Result<T, E>, Option<A>) {
    let mut main = std::pin::pin!(main);
    let mut aside = std::pin::pin!(aside);
    let mut done = None;
    let outcome = loop {
        tokio::select! {
            outcome = &mut main => break outcome,
            value = &mut aside, if done.is_none() => done = Some(value),
        }
    };
    match (outcome, done) {
        (Err(err), _) => (Err(err), None),
        (Ok(value), Some(done)) => (Ok(value), Some(done)),
        (Ok(value), None) => (Ok(value), Some(aside.await)),
    }
}

fn refresh_error(err: RefreshError) -> JsonError {
    match err {
        RefreshError::Unknown | RefreshError::Reused(_) => JsonError::new(
            ErrorCode::InvalidGrant,
            "the refresh token is invalid, expired or revoked",
        ),
        RefreshError::WrongClient => JsonError::new(
            ErrorCode::InvalidGrant,
            "the refresh token was not issued to this client",
        ),
        RefreshError::WrongResource => JsonError::new(
            ErrorCode::InvalidTarget,
            "resource does not match the refresh token",
        ),
        RefreshError::WiderScope => JsonError::new(
            ErrorCode::InvalidScope,
            "the requested scope exceeds the scope originally granted",
        ),
        RefreshError::Full
        | RefreshError::Busy
        | RefreshError::AccessTokensNotRevoked
        | RefreshError::Store(_) => JsonError::new(
            ErrorCode::TemporarilyUnavailable,
            "the server is busy; retry shortly",
        ),
    }
}

fn redeem_error(err: RedeemError) -> JsonError {
    match err {
        RedeemError::Unknown => {
            JsonError::new(ErrorCode::InvalidGrant, "the code is invalid or expired")
        }
        RedeemError::WrongClient => JsonError::new(
            ErrorCode::InvalidGrant,
            "the code was not issued to this client",
        ),
        RedeemError::WrongRedirectUri => JsonError::new(
            ErrorCode::InvalidGrant,
            "redirect_uri does not match the authorization request",
        ),
        RedeemError::MissingRedirectUri => JsonError::new(
            ErrorCode::InvalidRequest,
            "redirect_uri is required: the authorization request named one",
        ),
        RedeemError::WrongVerifier => JsonError::new(
            ErrorCode::InvalidGrant,
            "code_verifier does not match the code challenge",
        ),
        RedeemError::WrongResource => JsonError::new(
            ErrorCode::InvalidTarget,
            "resource does not match the authorization request",
        ),
        RedeemError::Replayed { .. } => {
            JsonError::new(ErrorCode::InvalidGrant, "the code was already used")
        }
        RedeemError::Full | RedeemError::ReplayNotRevoked | RedeemError::Unavailable => {
            JsonError::new(
                ErrorCode::TemporarilyUnavailable,
                "the server is busy; retry shortly",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::alongside;
    use std::future::pending;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_answered_without_waiting_for_what_runs_alongside() {
        let failed = async { Err::<(), _>("refused") };
        let (outcome, aside) = alongside(failed, pending::<()>()).await;
        assert_eq!((outcome, aside), (Err("refused"), None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_waits_for_what_runs_alongside_however_they_finish() {
        let late = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            "signed"
        };
        let (outcome, aside) = alongside(async { Ok::<_, ()>(1) }, late).await;
        assert_eq!((outcome, aside), (Ok(1), Some("signed")));
        let early = async { "signed" };
        let main = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, ()>(2)
        };
        let (outcome, aside) = alongside(main, early).await;
        assert_eq!((outcome, aside), (Ok(2), Some("signed")));
    }
}
