//! The refresh token's one derivation rule (TK-3): the successor a rotation answers is
//! `base64url(HMAC-SHA256(key = presented token, message = salt))`, with a fresh random salt per
//! rotation kept beside the family. Only a caller holding the retired token can recompute it, so
//! within the grace window a concurrent retry gets the same successor again without the server
//! storing any token in clear.

use crate::trace::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The successor of `presented` under `salt`.
pub fn successor(presented: &Secret, salt: &[u8; 32]) -> Secret {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(presented.expose().as_bytes()) else {
        // HMAC takes keys of any length; this branch cannot be reached.
        return Secret::random(32);
    };
    mac.update(salt);
    Secret::new(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_successor_depends_on_the_token_and_the_salt_only() {
        let token = Secret::new("retired");
        let first = successor(&token, &[1; 32]);
        assert_eq!(successor(&token, &[1; 32]), first, "recomputable");
        assert_ne!(successor(&token, &[2; 32]), first);
        assert_ne!(successor(&Secret::new("other"), &[1; 32]), first);
        assert_eq!(
            first.expose().len(),
            43,
            "256 bits, base64url without padding"
        );
    }
}
