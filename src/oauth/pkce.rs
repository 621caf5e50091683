//! PKCE (RFC 7636) with the S256 method only, as OAuth 2.1 and the MCP authorization spec require.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The only method accepted; `plain` is refused (AZ-1).
pub const S256: &str = "S256";

/// True when `value` has the shape of a code verifier (and so of an S256 challenge's input):
/// 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"` (RFC 7636 section 4.1).
pub fn is_valid_verifier(value: &str) -> bool {
    (43..=128).contains(&value.len()) && value.bytes().all(is_unreserved)
}

/// True when `value` is an S256 challenge: the base64url encoding, without padding, of a SHA-256
/// digest, which is always 43 characters of the base64url alphabet.
pub fn is_valid_s256_challenge(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The S256 challenge of a verifier.
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Compares the verifier's challenge to the stored one in constant time.
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    s256_challenge(verifier)
        .as_bytes()
        .ct_eq(challenge.as_bytes())
        .into()
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            s256_challenge(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(verify_s256(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!verify_s256(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn verifier_shape() {
        let cases: &[(&str, bool)] = &[
            (&"a".repeat(42), false),
            (&"a".repeat(43), true),
            (&"a".repeat(128), true),
            (&"a".repeat(129), false),
            (&format!("{}~._-", "a".repeat(40)), true),
            (&format!("{} ", "a".repeat(43)), false),
            (&format!("{}+", "a".repeat(43)), false),
            (&format!("{}é", "a".repeat(42)), false),
        ];
        for (v, ok) in cases {
            assert_eq!(is_valid_verifier(v), *ok, "{v}");
        }
    }

    #[test]
    fn challenge_shape() {
        assert!(is_valid_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!is_valid_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"
        ));
        assert!(!is_valid_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"
        ));
        assert!(!is_valid_s256_challenge(&"a".repeat(128)));
    }
}
