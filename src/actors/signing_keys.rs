//! `SigningKeys` and its `TokenSigner` pool: the authorization server's signing key.
//!
//! `SigningKeys` owns the key's lifecycle: the RSA-2048 key made at start (with `rsa`, on a
//! blocking thread so the runtime never stalls), its public JWK and the JWKS document. Signing is
//! the hottest CPU work of the server, so it does not queue on one mailbox: the parsed key is
//! handed to a pool of [`TokenSigner`] actors, one per core, and handlers send `Sign` to the pool
//! ([`SignerPool`]). Each signer keeps the key parsed once (aws-lc-rs), so no signature re-parses
//! the key as `jsonwebtoken::encode` would.
//!
//! Tokens are RFC 9068 JWTs: header `{"alg":"RS256","typ":"at+jwt","kid":<RFC 7638 thumbprint>}`.

use crate::actors::{AskError, ask};
use crate::oauth::token::{ACCESS_TOKEN_TYP, AccessTokenClaims};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A signing key, parsed once: the private key for aws-lc-rs, its id and its public JWK.
pub struct ActiveKey {
    pub kid: String,
    pub jwk: serde_json::Value,
    key_pair: RsaKeyPair,
    /// The base64url JOSE header, the same for every token this key signs.
    header_b64: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for ActiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveKey").field("kid", &self.kid).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("RSA key generation failed: {0}")]
    Generate(String),
    #[error("the key could not be encoded or parsed: {0}")]
    Encode(String),
    #[error("signing failed")]
    Sign,
}

impl ActiveKey {
    /// Makes a new RSA-2048 key on a blocking thread.
    pub async fn generate() -> Result<Arc<ActiveKey>, KeyError> {
        tokio::task::spawn_blocking(Self::generate_blocking)
            .await
            .map_err(|e| KeyError::Generate(e.to_string()))?
    }

    fn generate_blocking() -> Result<Arc<ActiveKey>, KeyError> {
        let mut rng = rand::rngs::SysRng;
        let private =
            rsa::PrivateKey::new(&mut rng, 2048).map_err(|e| KeyError::Generate(e.to_string()))?;
        let der = private
            .to_pkcs1_der()
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        let n = URL_SAFE_NO_PAD.encode(private.n().to_be_bytes_trimmed_vartime());
        let e = URL_SAFE_NO_PAD.encode(private.e().to_be_bytes_trimmed_vartime());
        let key_pair =
            RsaKeyPair::from_der(der.as_bytes()).map_err(|e| KeyError::Encode(e.to_string()))?;
        Ok(Arc::new(ActiveKey::new(key_pair, n, e)))
    }

    fn new(key_pair: RsaKeyPair, n: String, e: String) -> ActiveKey {
        // RFC 7638: the members required for the key type, in lexicographic order, no spaces.
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": kid,
            "n": n,
            "e": e,
        });
        let header = json!({"alg": "RS256", "typ": ACCESS_TOKEN_TYP, "kid": kid});
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string().as_bytes());
        ActiveKey {
            kid,
            jwk,
            key_pair,
            header_b64,
            rng: SystemRandom::new(),
        }
    }

    /// Signs the claims as a compact JWS with this key's access-token header.
    pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, KeyError> {
        let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
        self.sign_jws(&self.header_b64, &payload)
    }

    /// Signs any header and payload with this key (RS256). For tools and tests that need tokens
    /// this server would never issue (another `typ`, extra header parameters).
    pub fn sign_with_header(
        &self,
        header: &serde_json::Value,
        payload: &serde_json::Value,
    ) -> Result<String, KeyError> {
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string().as_bytes());
        self.sign_jws(&header_b64, payload.to_string().as_bytes())
    }

    fn sign_jws(&self, header_b64: &str, payload: &[u8]) -> Result<String, KeyError> {
        let mut token = String::with_capacity(800);
        token.push_str(header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let mut signature = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                token.as_bytes(),
                &mut signature,
            )
            .map_err(|_| KeyError::Sign)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}

/// Owns the signing key's lifecycle and publishes the JWKS.
pub struct SigningKeys {
    current: Arc<ActiveKey>,
    jwks: Arc<serde_json::Value>,
}

/// The JWKS document (RFC 7517) of every published key.
#[derive(Debug)]
pub struct Jwks;

impl Actor for SigningKeys {
    type Args = Arc<ActiveKey>;
    type Error = Infallible;

    fn name() -> &'static str {
        "SigningKeys"
    }

    async fn on_start(key: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        tracing::info!(actor = "SigningKeys", kid = %key.kid, "signing key active");
        let jwks = Arc::new(json!({ "keys": [key.jwk.clone()] }));
        Ok(SigningKeys { current: key, jwks })
    }
}

impl SigningKeys {
    /// The key the signers use.
    pub fn current(&self) -> &Arc<ActiveKey> {
        &self.current
    }
}

impl Message<Jwks> for SigningKeys {
    type Reply = Arc<serde_json::Value>;

    async fn handle(&mut self, _: Jwks, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Arc::clone(&self.jwks)
    }
}

/// Signs access tokens with the key it was given.
pub struct TokenSigner {
    key: Arc<ActiveKey>,
}

/// Signs the claims of one access token.
#[derive(Debug)]
pub struct Sign(pub AccessTokenClaims);

impl Actor for TokenSigner {
    type Args = Arc<ActiveKey>;
    type Error = Infallible;

    fn name() -> &'static str {
        "TokenSigner"
    }

    async fn on_start(key: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(TokenSigner { key })
    }
}

impl Message<Sign> for TokenSigner {
    type Reply = Result<String, KeyError>;

    async fn handle(&mut self, msg: Sign, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.key.sign(&msg.0)
    }
}

/// The signer actors, used round-robin. Cloned into every handler's state.
#[derive(Clone)]
pub struct SignerPool {
    signers: Arc<[ActorRef<TokenSigner>]>,
    next: Arc<AtomicUsize>,
}

impl SignerPool {
    pub fn new(signers: Vec<ActorRef<TokenSigner>>) -> Self {
        SignerPool {
            signers: signers.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Signs the claims on the next signer.
    pub async fn sign(&self, claims: AccessTokenClaims) -> Result<String, AskError<KeyError>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.signers.len().max(1);
        match self.signers.get(i) {
            Some(signer) => ask(signer, Sign(claims)).await,
            None => Err(AskError::Unavailable("TokenSigner")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};

    #[tokio::test]
    async fn tokens_verify_with_the_published_jwk() {
        let key = ActiveKey::generate().await.unwrap();
        let claims = AccessTokenClaims {
            iss: "http://localhost:8999".into(),
            sub: "alice".into(),
            aud: "http://localhost:8990".into(),
            exp: jsonwebtoken::get_current_timestamp() + 60,
            iat: jsonwebtoken::get_current_timestamp(),
            nbf: None,
            jti: "j".into(),
            client_id: "c".into(),
            scope: "mcp.read".into(),
            flow: None,
        };
        let token = key.sign(&claims).unwrap();
        let header = decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk.clone()).unwrap();
        let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["http://localhost:8990"]);
        let decoded =
            decode::<AccessTokenClaims>(&token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
                .unwrap();
        assert_eq!(decoded.claims, claims);
        // RFC 7638 thumbprint, computed independently by jsonwebtoken.
        assert_eq!(
            jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap(),
            key.kid
        );
    }
}
