//! The token check in front of the MCP endpoints (RS-1, RS-3, RS-4), step 2 of `gate.rs`:
//! 1. The token, from the `Authorization` header only (scheme case-insensitive); a token in the
//!    query is ignored, and one in both places is a 400. No token: 401 with
//!    `WWW-Authenticate: Bearer resource_metadata=..., scope=...` and no `error`.
//! 2. Validation: RS256 only, `typ` `at+jwt`, no `crit`, the key from `JwksCache` by `kid` (a
//!    fetch it starts is awaited here, outside the actor),
//!    `iss` exact, `aud` one of this server's endpoint URLs, `exp`/`nbf`/`iat` with a small
//!    leeway. Any failure: 401 `invalid_token`.
//! 3. Revocation (unless `--no-revocation-feed`): the token's `jti` must not be in
//!    `RevocationFeed`, the copy of the AS's revoked tokens; a revoked one gets 401
//!    `invalid_token`. While that copy is not current (the feed silent for longer than its
//!    allowed lag) no token is accepted: 503. Until the first page arrives, a request waits for it
//!    up to [`FIRST_SYNC_WAIT`]. `RevocationFeed` also remembers the tokens that passed (by the
//!    digest of the whole token, for at most a minute and never past a revocation or their
//!    expiry): a token presented again is answered from there first, without step 2, along with
//!    whether it was found to own the MCP session the request names (so the session owner check
//!    need not ask again).
//! 4. With `--introspect`: the AS's introspection endpoint (through a short cache) must still
//!    call the token active; a revoked one gets 401 `invalid_token`, and when the AS cannot be
//!    asked the answer is 503 (fail closed).
//!
//! A token that passes becomes the request's [`Caller`], which the steps after this one (the
//! scope gate, the session owner) and the tools read.

use super::caller::Caller;
use super::refusal::{Endpoint, Refusal, refuse};
use super::state::McpState;
use crate::actors::RevocationFeed;
use crate::actors::jwks_cache::{JwksError, LookupJwk};
use crate::actors::revocation_feed::{CheckRevoked, CheckToken, Remembered, Verdict};
use crate::actors::{Deferred, ask, ask_deferred};
use crate::oauth::scope::ScopeSet;
use crate::oauth::token::{ACCESS_TOKEN_TYP, AccessTokenClaims};
use crate::trace::{Secret, SecretDigest, fingerprint};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use jsonwebtoken::{Algorithm, decode, decode_header};
use std::sync::Arc;

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds: within the leeway the
/// authorization server keeps revoked tokens listed past their expiry.
pub const LEEWAY_SECONDS: u64 = 30;
const _: () = assert!(LEEWAY_SECONDS <= crate::oauth::token::CLOCK_LEEWAY.as_secs());

const MAX_TOKEN_LEN: usize = 8192;

/// How long a request waits for the revocation feed's first page after the server starts.
pub const FIRST_SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A token validated here before and still good, as the revocation feed remembers it: `Ok(None)`
/// when it does not (validate it). The ask's trace line is held back in `line`, to be written once
/// the token's flow is recorded. Only a feed that has synced remembers anything (a token is
/// remembered only when its check came back clear), so there is no first page to wait for here:
/// [`check_revoked`] waits for it on the way in.
/// With `session`, the answer also says whether the token was found to own it before.
async fn remembered(
    feed: &kameo::actor::ActorRef<RevocationFeed>,
    token: SecretDigest,
    session: Option<&str>,
    line: &mut Option<Deferred>,
) -> Result<Option<(Arc<AccessTokenClaims>, bool)>, Refusal> {
    let session = session.map(Secret::new);
    let (answer, written) = ask_deferred(feed, CheckToken { token, session }).await;
    *line = Some(written);
    match answer {
        Ok(Remembered::Valid {
            claims,
            owns_session,
        }) => Ok(Some((claims, owns_session))),
        Ok(Remembered::Unknown) => Ok(None),
        Ok(Remembered::Refused(Verdict::Revoked)) => {
            Err(Refusal::InvalidToken("the token has been revoked"))
        }
        Ok(Remembered::Refused(_)) | Err(_) => Err(Refusal::StatusUnknown),
    }
}

/// Is the token revoked, as far as the revocation feed tells? `Err` when it cannot tell. A token
/// that is not is remembered as validated.
async fn check_revoked(
    feed: &kameo::actor::ActorRef<RevocationFeed>,
    token: &SecretDigest,
    claims: &Arc<AccessTokenClaims>,
) -> Result<bool, Refusal> {
    let check = || CheckRevoked {
        jti: claims.jti.clone(),
        remember: Some((*token, Arc::clone(claims))),
    };
    let mut verdict = ask(feed, check()).await;
    if let Ok(Verdict::Behind {
        first_sync: Some(mut first),
    }) = verdict
    {
        let _ = tokio::time::timeout(FIRST_SYNC_WAIT, first.changed()).await;
        verdict = ask(feed, check()).await;
    }
    match verdict {
        Ok(Verdict::Clear) => Ok(false),
        Ok(Verdict::Revoked) => Ok(true),
        Ok(Verdict::Behind { .. }) | Err(_) => Err(Refusal::StatusUnknown),
    }
}

/// The bearer token from the `Authorization` header: `Ok(None)` when there is none.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, Refusal> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::BadRequest("more than one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| Refusal::BadRequest("malformed Authorization header"))?;
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another authentication scheme: as if no token was sent (RFC 6750 section 3.1: no
        // error code for an unsupported method).
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Refusal::BadRequest("the Bearer credentials are missing"));
    }
    // RFC 6750's `b64token`: a token of other characters reaches no actor.
    let allowed = |b: u8| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
    };
    if token.len() > MAX_TOKEN_LEN || !token.bytes().all(allowed) {
        return Err(Refusal::InvalidToken("malformed bearer token"));
    }
    Ok(Some(token))
}

fn query_has_token(request: &Parts) -> bool {
    request.uri.query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(name, _)| name == "access_token")
    })
}

/// Validates a token: header rules, key, signature and claims. The key lookup's trace line is
/// held back (`keyed`) so that the caller writes it once the token's flow is recorded.
async fn validate(
    state: &McpState,
    token: &str,
    keyed: &mut Option<Deferred>,
) -> Result<AccessTokenClaims, Refusal> {
    let header = decode_header(token).map_err(|_| Refusal::InvalidToken("malformed token"))?;
    if header.alg != Algorithm::RS256 {
        return Err(Refusal::InvalidToken("the token algorithm is not accepted"));
    }
    if header.crit.is_some() {
        return Err(Refusal::InvalidToken(
            "the token has critical header parameters",
        ));
    }
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(Refusal::InvalidToken(
            "the token is not an access token (typ)",
        ));
    }
    let Some(kid) = header.kid else {
        return Err(Refusal::InvalidToken("the token names no key"));
    };
    if kid.len() > 256 {
        return Err(Refusal::InvalidToken("the token names an unknown key"));
    }
    let (lookup, line) = ask_deferred(&state.jwks, LookupJwk { kid: kid.clone() }).await;
    *keyed = Some(line);
    let lookup = lookup.map_err(|_| Refusal::Unavailable)?;
    let key = match lookup.key(&kid).await {
        Ok(key) => key,
        Err(JwksError::UnknownKid) => {
            return Err(Refusal::InvalidToken("the token names an unknown key"));
        }
        Err(JwksError::Fetch(_)) => return Err(Refusal::Unavailable),
    };
    let data = decode::<AccessTokenClaims>(token, &key, &state.validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        Refusal::InvalidToken(match e.kind() {
            ErrorKind::ExpiredSignature => "the token has expired",
            ErrorKind::ImmatureSignature => "the token is not valid yet",
            ErrorKind::InvalidIssuer => "the token was issued by another server",
            ErrorKind::InvalidAudience => "the token is for another resource",
            ErrorKind::InvalidSignature => "the token signature is invalid",
            ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
            _ => "the token is invalid",
        })
    })?;
    let now = jsonwebtoken::get_current_timestamp();
    // An `iat` the token does not state reads as 0.
    if data.claims.iat > now + LEEWAY_SECONDS {
        return Err(Refusal::InvalidToken("the token was issued in the future"));
    }
    Ok(data.claims)
}

/// A request's token, valid and still active.
pub struct Authenticated {
    /// Who the token stands for.
    pub caller: Caller,
    /// The token's digest, by which the revocation feed remembers it (none without a feed).
    pub digest: Option<SecretDigest>,
    /// The revocation feed remembers that the token's subject owns the MCP session the request
    /// names ([`crate::actors::revocation_feed::OwnsSession`]): the owner need not be asked.
    pub owns_session: bool,
}

/// The request's token, valid and still active (with `session`, the MCP session the request
/// names), or the answer that refuses the request.
pub async fn authenticate(
    state: &McpState,
    endpoint: Endpoint,
    request: &Parts,
    session: Option<&str>,
) -> Result<Authenticated, Response> {
    let token = match bearer_token(&request.headers) {
        Ok(Some(token)) => token,
        Ok(None) => return Err(refuse(state, endpoint, Refusal::NoToken)),
        Err(refusal) => return Err(refuse(state, endpoint, refusal)),
    };
    if query_has_token(request) {
        return Err(refuse(
            state,
            endpoint,
            Refusal::BadRequest("the token must be sent in one place only"),
        ));
    }
    // The feed, and the token's digest it remembers validated tokens by (none without a feed).
    let feed = (state.revocation_feed.as_ref()).map(|feed| (feed, crate::trace::sha256(token)));
    let mut keyed = None;
    let mut recalled = None;
    let known = match feed {
        Some((feed, digest)) => remembered(feed, digest, session, &mut recalled).await,
        None => Ok(None),
    };
    let (validated, checked, owns_session) = match known {
        Ok(Some((claims, owns_session))) => (Ok(claims), true, owns_session),
        Ok(None) => {
            let validated = validate(state, token, &mut keyed).await.map(Arc::new);
            (validated, false, false)
        }
        Err(refusal) => (Err(refusal), true, false),
    };
    // A valid token names its flow (else its `jti` stands for it): this request's lines carry it
    // from here, the key lookup's too.
    if let Ok(claims) = &validated {
        match (&claims.flow, claims.jti.as_str()) {
            (Some(flow), _) => crate::trace::record_flow(flow),
            (None, "") => {}
            (None, jti) => crate::trace::record_flow(&jti),
        }
    }
    drop(recalled);
    drop(keyed);
    let claims = match validated {
        Ok(claims) => claims,
        Err(refusal) => {
            tracing::info!(server = "mcp", token = %fingerprint(token), "token refused");
            return Err(refuse(state, endpoint, refusal));
        }
    };
    if let Some((feed, digest)) = feed.filter(|_| !checked) {
        match check_revoked(feed, &digest, &claims).await {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(server = "mcp", token = %fingerprint(token), "token refused: revoked");
                return Err(refuse(
                    state,
                    endpoint,
                    Refusal::InvalidToken("the token has been revoked"),
                ));
            }
            Err(refusal) => return Err(refuse(state, endpoint, refusal)),
        }
    }
    if let Some(introspector) = &state.introspection {
        match introspector.is_active(token).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(server = "mcp", token = %fingerprint(token), "token refused: no longer active");
                return Err(refuse(
                    state,
                    endpoint,
                    Refusal::InvalidToken("the token has been revoked"),
                ));
            }
            Err(_) => return Err(refuse(state, endpoint, Refusal::StatusUnknown)),
        }
    }
    let caller = Caller {
        scopes: ScopeSet::parse(&claims.scope).unwrap_or_default(),
        subject: Arc::from(claims.sub.as_str()),
        client_id: claims.client_id.clone(),
        flow: claims.flow.clone(),
        jti: claims.jti.clone(),
    };
    Ok(Authenticated {
        caller,
        digest: feed.map(|(_, digest)| digest),
        owns_session,
    })
}
