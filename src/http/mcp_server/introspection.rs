//! Asking the authorization server whether a token is still active (RFC 7662), for a resource
//! server run with `--introspect`. The bearer middleware calls [`Introspector::is_active`] after a
//! token has validated locally: the `IntrospectionCache` actor answers when it remembers the
//! token, otherwise the introspection endpoint is asked (with the resource-server credential,
//! 3-second timeout, 64 KiB answer cap, redirects not followed) and the answer remembered. Any
//! failure to get a clear answer is an error, which the middleware answers with 503: a resource
//! server that was told to honour revocation never accepts a token it could not check.

use crate::actors::introspection_cache::{Recall, Remember};
use crate::actors::{IntrospectionCache, ask};
use crate::trace::Secret;
use kameo::actor::ActorRef;
use std::time::Duration;

const MAX_ANSWER_BYTES: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(3);

/// Why a token could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum IntrospectionError {
    #[error("the authorization server could not be reached: {0}")]
    Unreachable(String),
    #[error("the authorization server answered status {0}")]
    Status(u16),
    #[error("the introspection answer is not valid")]
    Malformed,
}

/// The introspection client of the resource server.
#[derive(Clone)]
pub struct Introspector {
    pub url: String,
    pub secret: Secret,
    pub http: reqwest::Client,
    pub cache: ActorRef<IntrospectionCache>,
}

impl Introspector {
    /// Is this (locally valid) token still active at the authorization server?
    pub async fn is_active(&self, token: &str) -> Result<bool, IntrospectionError> {
        let token = Secret::new(token);
        if let Ok(Some(active)) = ask(
            &self.cache,
            Recall {
                token: token.clone(),
            },
        )
        .await
        {
            return Ok(active);
        }
        let active = self.ask_server(&token).await?;
        let _ = ask(&self.cache, Remember { token, active }).await;
        Ok(active)
    }

    async fn ask_server(&self, token: &Secret) -> Result<bool, IntrospectionError> {
        let call = async {
            let mut response = self
                .http
                .post(&self.url)
                .bearer_auth(self.secret.expose())
                .form(&[
                    ("token", token.expose()),
                    ("token_type_hint", "access_token"),
                ])
                .send()
                .await
                .map_err(|e| IntrospectionError::Unreachable(e.without_url().to_string()))?;
            if !response.status().is_success() {
                return Err(IntrospectionError::Status(response.status().as_u16()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| IntrospectionError::Unreachable(e.without_url().to_string()))?
            {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(IntrospectionError::Malformed);
                }
                body.extend_from_slice(&chunk);
            }
            let answer: serde_json::Value =
                serde_json::from_slice(&body).map_err(|_| IntrospectionError::Malformed)?;
            answer["active"]
                .as_bool()
                .ok_or(IntrospectionError::Malformed)
        };
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(TIMEOUT, call)
            .await
            .map_err(|_| IntrospectionError::Unreachable("timed out".into()))
            .and_then(|r| r);
        match &result {
            Ok(active) => tracing::info!(
                token = %token,
                active,
                us = started.elapsed().as_micros() as u64,
                "token introspected"
            ),
            Err(err) => tracing::warn!(token = %token, error = %err, "introspection failed"),
        }
        result
    }
}
