//! Encryption of the signing keys' private halves at rest. A 256-bit AES-GCM key is derived with
//! HKDF-SHA256 from the configured key-encryption secret (`--key-encryption-secret`); each private
//! key is sealed with a fresh random nonce and its key id as associated data, so a sealed key
//! cannot be swapped under another id. Stored form: nonce (12 bytes) || ciphertext || tag.
//!
//! With no secret configured, [`secret_from_file`] makes one: 32 random bytes in
//! `key-encryption.secret` (mode 0600) in the data directory, with a warning in the log, so the
//! one-command start needs no configuration. The keys are then only as safe as the directory.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::path::Path;

/// The file holding a generated key-encryption secret in the data directory.
pub const SECRET_FILE: &str = "key-encryption.secret";

/// HKDF salt and info: fixed, naming what the derived key is for.
const SALT: &[u8] = b"mcp-oauth key encryption";
const INFO: &[u8] = b"signing keys v1 aes-256-gcm";

#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    #[error("a stored signing key cannot be decrypted (wrong key-encryption secret?)")]
    Open,
    #[error("a signing key cannot be encrypted")]
    Seal,
    #[error("the key-encryption secret file {path}: {reason}")]
    SecretFile { path: String, reason: String },
}

/// Seals and opens private keys with the key derived from the secret.
pub struct KeyCipher {
    key: LessSafeKey,
}

impl std::fmt::Debug for KeyCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyCipher")
    }
}

impl KeyCipher {
    pub fn from_secret(secret: &[u8]) -> Result<Self, CipherError> {
        let prk = Salt::new(HKDF_SHA256, SALT).extract(secret);
        let okm = prk
            .expand(&[INFO], &AES_256_GCM)
            .map_err(|_| CipherError::Seal)?;
        Ok(KeyCipher {
            key: LessSafeKey::new(UnboundKey::from(okm)),
        })
    }

    /// A cipher with a random secret, for a store that does not outlive the process.
    pub fn ephemeral() -> Result<Self, CipherError> {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret[..]);
        Self::from_secret(&secret)
    }

    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, CipherError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce[..]);
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| CipherError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, CipherError> {
        if sealed.len() < NONCE_LEN {
            return Err(CipherError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CipherError::Open)?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buffer)
            .map_err(|_| CipherError::Open)?;
        Ok(plain.to_vec())
    }
}

/// Reads the generated secret from the data directory, creating it (mode 0600) if absent.
pub fn secret_from_file(dir: &Path) -> Result<Vec<u8>, CipherError> {
    let path = dir.join(SECRET_FILE);
    let fail = |reason: String| CipherError::SecretFile {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => match STANDARD.decode(text.trim()) {
            Ok(secret) if secret.len() >= 16 => Ok(secret),
            _ => Err(fail("not a base64 secret of 16 bytes or more".into())),
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            rand::fill(&mut secret[..]);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = match options.open(&path) {
                Ok(file) => file,
                // Another process made it first: use that one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
                    return STANDARD
                        .decode(text.trim())
                        .map_err(|_| fail("not base64".into()));
                }
                Err(e) => return Err(fail(e.to_string())),
            };
            use std::io::Write;
            file.write_all(STANDARD.encode(secret).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| fail(e.to_string()))?;
            tracing::warn!(
                path = %path.display(),
                "no key-encryption secret configured: generated one beside the data; set --key-encryption-secret to keep it elsewhere"
            );
            Ok(secret.to_vec())
        }
        Err(err) => Err(fail(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_their_secret_and_id() {
        let cipher = KeyCipher::from_secret(b"a secret of some length").unwrap();
        let sealed = cipher.seal("kid-1", b"private key").unwrap();
        assert_eq!(cipher.open("kid-1", &sealed).unwrap(), b"private key");
        assert!(cipher.open("kid-2", &sealed).is_err(), "bound to its id");
        let other = KeyCipher::from_secret(b"another secret").unwrap();
        assert!(other.open("kid-1", &sealed).is_err(), "bound to the secret");
        assert!(cipher.open("kid-1", &sealed[..5]).is_err());
    }
}
