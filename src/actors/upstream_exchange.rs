//! The relying-party side of a sign-in at an upstream provider, over HTTP: OpenID Connect
//! discovery, the authorization URL (code flow with PKCE S256, `state`, and `nonce`), the code
//! redemption, and the identity: from the ID token for OpenID Connect (signature against the
//! provider's JWKS, `iss`, `aud`, `exp`, `nonce`, all checked by the `openidconnect` crate), or
//! from the user-info endpoint for a plain OAuth 2.0 provider (the `oauth2` crate redeems the code).
//!
//! Used by the `IdentityProviders` actor, which owns the pending sign-ins and the discovered
//! metadata; this file holds no state. Every request has a timeout, follows no redirect, and reads
//! at most 512 KiB. The upstream's tokens are dropped here once the identity is
//! known: nothing of them leaves this file.

use crate::oauth::upstream::{ProviderKind, UpstreamIdentity, UpstreamProvider, check_endpoint};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreProviderMetadata,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse,
    IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Largest upstream response read (discovery, JWKS, token, user info).
const MAX_RESPONSE_BYTES: usize = 512 * 1024;
/// Longest wait for one upstream request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a sign-in at an upstream provider did not give a user (the login handlers turn each into
/// a page naming the provider and the reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("no such identity provider")]
    UnknownProvider,
    /// The callback's `state` is unknown, expired, already used, or from another browser.
    #[error("the sign-in is unknown, expired, used, or from another browser")]
    SignInUnknown,
    #[error("too many sign-ins are in progress; retry shortly")]
    Full,
    /// The provider answered the authorization request with an error.
    #[error("the provider refused the sign-in: {error}")]
    Refused {
        error: String,
        description: Option<String>,
    },
    /// The provider could not be reached, or answered something unusable.
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
    /// What the provider sent does not prove who the user is: an ID token with a bad signature,
    /// another issuer, audience or nonce, an expired one, or none.
    #[error("the provider's answer could not be verified: {0}")]
    Unverified(String),
    /// The user is not on the provider's allow-list.
    #[error("this account may not sign in here")]
    NotAllowed,
    /// The shared store could not keep or read the sign-in.
    #[error("the sign-in could not be stored or read; retry shortly")]
    Unavailable,
}

/// The HTTP client for upstream requests: no redirects, a timeout per request.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("mcp-oauth/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A failed upstream HTTP exchange (the error type the OAuth crates' HTTP client needs).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpFailure(String);

/// One request for the `openidconnect` and `oauth2` crates, sent with reqwest and read up to
/// [`MAX_RESPONSE_BYTES`].
fn send(
    http: &reqwest::Client,
    request: HttpRequest,
) -> impl Future<Output = Result<HttpResponse, HttpFailure>> + use<> {
    let (parts, body) = request.into_parts();
    let request = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body);
    async move {
        let mut response = request
            .send()
            .await
            .map_err(|e| HttpFailure(e.without_url().to_string()))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| HttpFailure(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(HttpFailure(format!(
                    "the response is larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let mut out = http::Response::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

/// Fetches an OpenID provider's discovery document and JWKS. The document's `issuer` must be the
/// configured one exactly (OpenID Connect Discovery section 4.3).
pub async fn discover(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<Arc<CoreProviderMetadata>, UpstreamError> {
    let issuer = IssuerUrl::new(issuer.to_string())
        .map_err(|e| UpstreamError::Unreachable(format!("the issuer is not a URL: {e}")))?;
    let client = |request| send(http, request);
    let metadata = CoreProviderMetadata::discover_async(issuer, &client)
        .await
        .map_err(|e| UpstreamError::Unreachable(format!("discovery failed: {}", chain(&e))))?;
    // The endpoints the document names get what the configured ones get: the code, the PKCE
    // verifier and the client secret go to them.
    let token_endpoint = metadata.token_endpoint().map(|u| u.as_str());
    for (name, url) in [
        (
            "authorization_endpoint",
            Some(metadata.authorization_endpoint().as_str()),
        ),
        ("token_endpoint", token_endpoint),
        ("jwks_uri", Some(metadata.jwks_uri().as_str())),
    ] {
        if let Some(url) = url {
            check_endpoint(name, url)
                .map_err(|e| UpstreamError::Unreachable(format!("the discovery document's {e}")))?;
        }
    }
    Ok(Arc::new(metadata))
}

/// What one sign-in sends the provider and keeps for the callback.
#[derive(Clone)]
pub struct Challenge {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Challenge(state, nonce and verifier withheld)")
    }
}

/// The provider's authorization URL for this sign-in; `metadata` is the discovery of an OpenID
/// provider (`None` for an OAuth 2.0 one).
pub fn authorization_url(
    provider: &UpstreamProvider,
    metadata: Option<&CoreProviderMetadata>,
    redirect_uri: &str,
    challenge: &Challenge,
) -> Result<String, UpstreamError> {
    let pkce = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
        challenge.verifier.clone(),
    ));
    let redirect = redirect_url(redirect_uri)?;
    let state = challenge.state.clone();
    // `openid` is added by the crate itself.
    let scopes = provider
        .scopes
        .iter()
        .filter(|s| *s != "openid")
        .map(|s| Scope::new(s.clone()));
    let url = match (&provider.kind, metadata) {
        (ProviderKind::Oidc { .. }, Some(metadata)) => {
            let nonce = challenge.nonce.clone();
            let client = oidc_client(provider, metadata)?.set_redirect_uri(redirect);
            client
                .authorize_url(
                    CoreAuthenticationFlow::AuthorizationCode,
                    move || CsrfToken::new(state),
                    move || Nonce::new(nonce),
                )
                .add_scopes(scopes)
                .set_pkce_challenge(pkce)
                .url()
                .0
        }
        (ProviderKind::OAuth2 { .. }, _) => {
            oauth2_client(provider)?
                .set_redirect_uri(redirect)
                .authorize_url(move || CsrfToken::new(state))
                .add_scopes(scopes)
                .set_pkce_challenge(pkce)
                .url()
                .0
        }
        (ProviderKind::Oidc { .. }, None) => {
            return Err(UpstreamError::Unreachable("not discovered".into()));
        }
    };
    Ok(url.into())
}

/// What a redemption gives: the user, and the provider's metadata again when its keys had to be
/// fetched anew (a key rotated at the provider since discovery).
#[derive(Debug)]
pub struct Redeemed {
    pub identity: UpstreamIdentity,
    pub refreshed: Option<Arc<CoreProviderMetadata>>,
}

/// Redeems the callback's code at the provider and says who signed in.
pub async fn redeem(
    http: &reqwest::Client,
    provider: &UpstreamProvider,
    metadata: Option<Arc<CoreProviderMetadata>>,
    redirect_uri: &str,
    code: String,
    challenge: &Challenge,
) -> Result<Redeemed, UpstreamError> {
    let client = |request| send(http, request);
    let code = AuthorizationCode::new(code);
    let verifier = PkceCodeVerifier::new(challenge.verifier.clone());
    let redirect = redirect_url(redirect_uri)?;
    let token_failed = |e: &dyn std::error::Error| {
        UpstreamError::Unreachable(format!("the token request failed: {}", chain(e)))
    };
    match (&provider.kind, metadata) {
        (ProviderKind::Oidc { .. }, Some(metadata)) => {
            let oidc = oidc_client(provider, &metadata)?.set_redirect_uri(redirect);
            let request = oidc
                .exchange_code(code)
                .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
            let token = request
                .set_pkce_verifier(verifier)
                .request_async(&client)
                .await
                .map_err(|e| token_failed(&e))?;
            let id_token = token.id_token().ok_or_else(|| {
                UpstreamError::Unverified("the token response has no ID token".into())
            })?;
            let nonce = Nonce::new(challenge.nonce.clone());
            let verified = id_token
                .claims(&id_token_verifier(&oidc), &nonce)
                .map(identity_of);
            match verified {
                Ok(identity) => Ok(Redeemed {
                    identity,
                    refreshed: None,
                }),
                // A key the discovery did not see: fetch the key set once more, then decide.
                Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
                    let jwks = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), &client)
                        .await
                        .map_err(|e| {
                            UpstreamError::Unreachable(format!(
                                "the JWKS fetch failed: {}",
                                chain(&e)
                            ))
                        })?;
                    let refreshed = Arc::new((*metadata).clone().set_jwks(jwks));
                    let oidc = oidc_client(provider, &refreshed)?;
                    let identity = id_token
                        .claims(&id_token_verifier(&oidc), &nonce)
                        .map(identity_of)
                        .map_err(|e| UpstreamError::Unverified(chain(&e)))?;
                    Ok(Redeemed {
                        identity,
                        refreshed: Some(refreshed),
                    })
                }
                Err(e) => Err(UpstreamError::Unverified(chain(&e))),
            }
        }
        (
            ProviderKind::OAuth2 {
                userinfo_url,
                subject_field,
                email_field,
                name_field,
                ..
            },
            _,
        ) => {
            let token = oauth2_client(provider)?
                .set_redirect_uri(redirect)
                .exchange_code(code)
                .set_pkce_verifier(verifier)
                .request_async(&client)
                .await
                .map_err(|e| token_failed(&e))?;
            let access_token = oauth2::TokenResponse::access_token(&token).secret().clone();
            let user = user_info(http, userinfo_url, &access_token).await?;
            let identity = identity_from_user_info(
                &user,
                subject_field,
                email_field.as_deref(),
                name_field.as_deref(),
            )?;
            Ok(Redeemed {
                identity,
                refreshed: None,
            })
        }
        (ProviderKind::Oidc { .. }, None) => {
            Err(UpstreamError::Unreachable("not discovered".into()))
        }
    }
}

/// The ID-token verifier: the crate's checks (signature by the provider's JWKS, `iss`, `aud`,
/// `exp`, `nonce`), with public-key signatures only. A provider may advertise HS256, which the
/// crate would check with our client secret: a token anyone holding the secret could forge.
fn id_token_verifier(client: &OidcClient) -> openidconnect::core::CoreIdTokenVerifier<'_> {
    use openidconnect::core::CoreJwsSigningAlgorithm as Alg;
    client.id_token_verifier().set_allowed_algs([
        Alg::RsaSsaPkcs1V15Sha256,
        Alg::RsaSsaPkcs1V15Sha384,
        Alg::RsaSsaPkcs1V15Sha512,
        Alg::RsaSsaPssSha256,
        Alg::RsaSsaPssSha384,
        Alg::RsaSsaPssSha512,
        Alg::EcdsaP256Sha256,
        Alg::EcdsaP384Sha384,
        Alg::EcdsaP521Sha512,
        Alg::EdDsa,
    ])
}

fn identity_of<AC, GC>(claims: &openidconnect::IdTokenClaims<AC, GC>) -> UpstreamIdentity
where
    AC: openidconnect::AdditionalClaims,
    GC: openidconnect::GenderClaim,
{
    let name = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.to_string())
        .or_else(|| claims.preferred_username().map(|u| u.to_string()));
    UpstreamIdentity {
        subject: claims.subject().to_string(),
        email: claims.email().map(|e| e.to_string()),
        email_verified: claims.email_verified().unwrap_or(false),
        name,
    }
}

/// The user-info object of a plain OAuth 2.0 provider.
async fn user_info(
    http: &reqwest::Client,
    url: &str,
    access_token: &str,
) -> Result<serde_json::Value, UpstreamError> {
    let request = http::Request::builder()
        .method(http::Method::GET)
        .uri(url)
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {access_token}"),
        )
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
    let response = send(http, request)
        .await
        .map_err(|e| UpstreamError::Unreachable(format!("the user-info request failed: {e}")))?;
    if !response.status().is_success() {
        return Err(UpstreamError::Unreachable(format!(
            "the user-info endpoint answered {}",
            response.status()
        )));
    }
    serde_json::from_slice(response.body())
        .map_err(|e| UpstreamError::Unreachable(format!("the user-info response is not JSON: {e}")))
}

/// The identity in a user-info object: the subject member is a non-empty string or an integer
/// (GitHub's numeric `id`; its `login` can be renamed, so it is no subject).
pub fn identity_from_user_info(
    user: &serde_json::Value,
    subject_field: &str,
    email_field: Option<&str>,
    name_field: Option<&str>,
) -> Result<UpstreamIdentity, UpstreamError> {
    let text = |field: Option<&str>| {
        field
            .and_then(|f| user.get(f))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let subject = match user.get(subject_field) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(serde_json::Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => {
            return Err(UpstreamError::Unverified(format!(
                "the user info has no {subject_field} to name the user by"
            )));
        }
    };
    let email = text(email_field);
    Ok(UpstreamIdentity {
        subject,
        email_verified: email.is_some(),
        email,
        name: text(name_field),
    })
}

type OidcClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

fn oidc_client(
    provider: &UpstreamProvider,
    metadata: &CoreProviderMetadata,
) -> Result<OidcClient, UpstreamError> {
    let client = CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(provider.client_id.clone()),
        provider
            .client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose().to_string())),
    );
    Ok(client.set_auth_type(auth_type(provider)))
}

type OAuth2Client = oauth2::basic::BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn oauth2_client(provider: &UpstreamProvider) -> Result<OAuth2Client, UpstreamError> {
    let ProviderKind::OAuth2 {
        authorization_url,
        token_url,
        ..
    } = &provider.kind
    else {
        return Err(UpstreamError::UnknownProvider);
    };
    let bad = |e: url::ParseError| UpstreamError::Unreachable(e.to_string());
    let mut client =
        oauth2::basic::BasicClient::new(oauth2::ClientId::new(provider.client_id.clone()))
            .set_auth_uri(oauth2::AuthUrl::new(authorization_url.clone()).map_err(bad)?)
            .set_token_uri(oauth2::TokenUrl::new(token_url.clone()).map_err(bad)?)
            .set_auth_type(auth_type(provider));
    if let Some(secret) = &provider.client_secret {
        client = client.set_client_secret(oauth2::ClientSecret::new(secret.expose().to_string()));
    }
    Ok(client)
}

fn auth_type(provider: &UpstreamProvider) -> AuthType {
    match provider.secret_in_body {
        true => AuthType::RequestBody,
        false => AuthType::BasicAuth,
    }
}

fn redirect_url(redirect_uri: &str) -> Result<RedirectUrl, UpstreamError> {
    RedirectUrl::new(redirect_uri.to_string())
        .map_err(|e| UpstreamError::Unreachable(format!("the callback URL is not a URL: {e}")))
}

/// An error and its sources on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_user_info_object_names_the_user_by_its_subject_member() {
        let github = json!({"id": 583231, "login": "octocat", "email": "octo@github.com"});
        let identity = identity_from_user_info(&github, "id", Some("email"), Some("login"))
            .expect("an identity");
        assert_eq!(identity.subject, "583231");
        assert_eq!(identity.name.as_deref(), Some("octocat"));
        assert_eq!(identity.email.as_deref(), Some("octo@github.com"));
        let no_email = json!({"id": "u-1", "email": null});
        let identity =
            identity_from_user_info(&no_email, "id", Some("email"), None).expect("an identity");
        assert_eq!((identity.email, identity.email_verified), (None, false));
        for bad in [
            json!({}),
            json!({"id": ""}),
            json!({"id": 1.5}),
            json!({"id": [1]}),
            json!([]),
        ] {
            assert!(
                matches!(
                    identity_from_user_info(&bad, "id", None, None),
                    Err(UpstreamError::Unverified(_))
                ),
                "{bad}"
            );
        }
    }
}
