//! JWS with RSA keys: making an RSA-2048 key, reading and writing it as PKCS#1 DER, signing
//! compact JWS (RS256), the public key as a JWK (RFC 7517, with its RFC 7638 thumbprint as `kid`),
//! the JWKS document, and the key that verifies what a key signed.
//!
//! Pure key material and signatures, with no state and no I/O: the `SigningKeys` actor decides
//! which key signs and for how long, and the `TokenSigner` actors call [`ActiveKey::sign`]. A key
//! is parsed once (aws-lc-rs), so no signature re-parses it as `jsonwebtoken::encode` would.
//!
//! Access tokens are RFC 9068 JWTs: header `{"alg":"RS256","typ":"at+jwt","kid":<thumbprint>}`.

use crate::oauth::token::{ACCESS_TOKEN_TYP, AccessTokenClaims};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::traits::PublicKeyParts;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum JwsError {
    #[error("RSA key generation failed: {0}")]
    Generate(String),
    #[error("the key could not be encoded or parsed: {0}")]
    Encode(String),
    #[error("signing failed")]
    Sign,
}

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

impl ActiveKey {
    /// Makes a new RSA-2048 key on a blocking thread (so the runtime never stalls).
    pub async fn generate() -> Result<Arc<ActiveKey>, JwsError> {
        Ok(Self::generate_with_der().await?.0)
    }

    /// Makes a new RSA-2048 key on a blocking thread; also returns its PKCS#1 DER, to be stored.
    pub async fn generate_with_der() -> Result<(Arc<ActiveKey>, Vec<u8>), JwsError> {
        tokio::task::spawn_blocking(|| {
            let mut rng = rand::rngs::SysRng;
            let private = rsa::PrivateKey::new(&mut rng, 2048)
                .map_err(|e| JwsError::Generate(e.to_string()))?;
            let der = private
                .to_pkcs1_der()
                .map_err(|e| JwsError::Encode(e.to_string()))?;
            let der = der.as_bytes().to_vec();
            Ok((Self::from_pkcs1_der(&der)?, der))
        })
        .await
        .map_err(|e| JwsError::Generate(e.to_string()))?
    }

    /// Parses a stored private key (PKCS#1 DER).
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Arc<ActiveKey>, JwsError> {
        let private =
            rsa::PrivateKey::from_pkcs1_der(der).map_err(|e| JwsError::Encode(e.to_string()))?;
        let n = URL_SAFE_NO_PAD.encode(private.n().to_be_bytes_trimmed_vartime());
        let e = URL_SAFE_NO_PAD.encode(private.e().to_be_bytes_trimmed_vartime());
        let key_pair = RsaKeyPair::from_der(der).map_err(|e| JwsError::Encode(e.to_string()))?;
        Ok(Arc::new(ActiveKey::new(key_pair, n, e)))
    }

    /// The public half, for verifying tokens this key signed.
    pub fn decoding_key(&self) -> Result<jsonwebtoken::DecodingKey, JwsError> {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(self.jwk.clone())
            .map_err(|e| JwsError::Encode(e.to_string()))?;
        jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| JwsError::Encode(e.to_string()))
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
    pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, JwsError> {
        let payload = serde_json::to_vec(claims).map_err(|_| JwsError::Sign)?;
        self.sign_jws(&self.header_b64, &payload)
    }

    /// Signs any header and payload with this key (RS256). For tools and tests that need tokens
    /// this server would never issue (another `typ`, extra header parameters).
    pub fn sign_with_header(
        &self,
        header: &serde_json::Value,
        payload: &serde_json::Value,
    ) -> Result<String, JwsError> {
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string().as_bytes());
        self.sign_jws(&header_b64, payload.to_string().as_bytes())
    }

    fn sign_jws(&self, header_b64: &str, payload: &[u8]) -> Result<String, JwsError> {
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
            .map_err(|_| JwsError::Sign)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}

/// The JWKS document (RFC 7517 section 5) publishing these keys' public JWKs.
pub fn jwks_document<'a>(keys: impl IntoIterator<Item = &'a ActiveKey>) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = keys.into_iter().map(|k| k.jwk.clone()).collect();
    json!({ "keys": keys })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};

    #[tokio::test]
    async fn tokens_verify_with_the_published_jwk() {
        let key = ActiveKey::generate().await.unwrap();
        let claims = crate::oauth::token::sample_claims("j");
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
        // The stored form reads back as the same key, and the verifying key accepts its tokens.
        let (key, der) = ActiveKey::generate_with_der().await.unwrap();
        let reread = ActiveKey::from_pkcs1_der(&der).unwrap();
        assert_eq!(reread.kid, key.kid);
        let token = reread.sign(&claims).unwrap();
        assert!(
            decode::<AccessTokenClaims>(&token, &key.decoding_key().unwrap(), &validation).is_ok()
        );
        assert_eq!(
            jwks_document([key.as_ref(), reread.as_ref()])["keys"][1]["kid"],
            key.kid.as_str()
        );
    }
}
