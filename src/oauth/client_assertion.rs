//! Client assertions: `private_key_jwt` client authentication (RFC 7523 sections 2.2 and 3,
//! OpenID Connect Core section 9). The client presents
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and a
//! `client_assertion` it signed with a key of the JWKS it registered.
//!
//! The rules: `iss` and `sub` are the client's id; `aud` names this server (its issuer, or the
//! token endpoint's URL); `exp` has not passed and is at most [`MAX_LIFETIME_SECS`] ahead (so a
//! `jti` need only be remembered that long); `jti` is present (its single use is the
//! `ClientAssertions` actor's business); the signature is RS256, PS256 or ES256 by a registered
//! key (the one the header's `kid` names, or any key of the right type when there is no `kid`).
//! Every refusal is the same `invalid_client` for the caller; the reason is for the trace.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

/// The `client_assertion_type` of a JWT client assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The signature algorithms accepted, as the metadata advertises them.
pub const SIGNING_ALGORITHMS: [&str; 3] = ["RS256", "PS256", "ES256"];
/// The furthest ahead an assertion's `exp` may be.
pub const MAX_LIFETIME_SECS: u64 = 600;
/// Leeway for the clocks of the client and this server.
const LEEWAY_SECS: u64 = 30;
/// Largest assertion read.
pub const MAX_ASSERTION_LEN: usize = 8 * 1024;

/// Why an assertion is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("the assertion is not a JWT with iss and sub equal to a client id")]
    Malformed,
    #[error("the assertion's algorithm is not supported")]
    Algorithm,
    #[error("no registered key verifies the assertion")]
    NoKey,
    #[error("the assertion's signature or claims are invalid (aud, exp, iss, sub)")]
    Invalid,
    #[error("the assertion expires too far in the future")]
    TooLong,
    #[error("the assertion has no jti")]
    NoJti,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    exp: Option<u64>,
    jti: Option<String>,
}

/// A verified assertion: what replay protection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub jti: String,
    pub exp: u64,
}

/// The client an assertion says it is from, before anything is verified: `sub`, which must
/// equal `iss`. Only for finding the client whose keys then verify it.
pub fn claimed_client(assertion: &str) -> Result<String, AssertionError> {
    if assertion.len() > MAX_ASSERTION_LEN {
        return Err(AssertionError::Malformed);
    }
    let claims: Claims = jsonwebtoken::dangerous::insecure_decode_claims(assertion)
        .map_err(|_| AssertionError::Malformed)?;
    match (claims.iss, claims.sub) {
        (Some(iss), Some(sub)) if iss == sub && !sub.is_empty() => Ok(sub),
        _ => Err(AssertionError::Malformed),
    }
}

/// Verifies an assertion from `client_id` against its registered JWKS (JSON), for a server
/// known by `audiences`, at `now` (Unix seconds).
pub fn verify(
    assertion: &str,
    client_id: &str,
    jwks: &str,
    audiences: &[String],
    now: u64,
) -> Result<VerifiedAssertion, AssertionError> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| AssertionError::Malformed)?;
    if !matches!(
        header.alg,
        Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256
    ) {
        return Err(AssertionError::Algorithm);
    }
    let set: JwkSet = serde_json::from_str(jwks).map_err(|_| AssertionError::NoKey)?;
    let candidates: Vec<&Jwk> = match &header.kid {
        Some(kid) => set.find(kid).into_iter().collect(),
        None => set.keys.iter().collect(),
    };
    let mut validation = Validation::new(header.alg);
    validation.set_audience(audiences);
    validation.set_issuer(&[client_id]);
    validation.sub = Some(client_id.to_string());
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    let mut verified = None;
    for jwk in candidates.into_iter().filter(|k| fits(k, header.alg)) {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if let Ok(data) = jsonwebtoken::decode::<Claims>(assertion, &key, &validation) {
            verified = Some(data.claims);
            break;
        }
    }
    let claims = match verified {
        Some(claims) => claims,
        None if header.kid.is_some() && set.find(header.kid.as_deref().unwrap_or("")).is_none() => {
            return Err(AssertionError::NoKey);
        }
        None => return Err(AssertionError::Invalid),
    };
    let exp = claims.exp.ok_or(AssertionError::Invalid)?;
    if exp > now + MAX_LIFETIME_SECS + LEEWAY_SECS {
        return Err(AssertionError::TooLong);
    }
    match claims.jti {
        Some(jti) if !jti.is_empty() && jti.len() <= 256 => Ok(VerifiedAssertion { jti, exp }),
        _ => Err(AssertionError::NoJti),
    }
}

/// Whether a key can check a signature of `alg`: RSA keys for RS256 and PS256, P-256 keys for
/// ES256, and a key that names its algorithm only for that one.
fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => matches!(alg, Algorithm::RS256 | Algorithm::PS256),
        AlgorithmParameters::EllipticCurve(ec) => {
            ec.curve == EllipticCurve::P256 && alg == Algorithm::ES256
        }
        _ => false,
    };
    family
        && jwk
            .common
            .key_algorithm
            .is_none_or(|named| Algorithm::try_from(named).is_ok_and(|a| a == alg))
}

/// Checks a JWKS a client registers: a `keys` list of 1 to `max` public RSA or P-256 keys.
pub fn check_public_keys(jwks: &Value, max: usize) -> Result<(), &'static str> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("jwks must be an object with a keys list")?;
    if keys.is_empty() || keys.len() > max {
        return Err("jwks must hold between 1 and 10 keys");
    }
    for key in keys {
        // A private key must never be registered: it would be stored and shown.
        if ["d", "p", "q", "dp", "dq", "qi", "k"]
            .iter()
            .any(|private| key.get(private).is_some())
        {
            return Err("jwks must contain public keys only");
        }
        let jwk: Jwk = serde_json::from_value(key.clone()).map_err(|_| "jwks holds a bad key")?;
        let length = |b64: &str| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .map_or(0, |bytes| bytes.len())
        };
        // Shapes only: a 2048-bit or longer RSA modulus; P-256 coordinates of 32 bytes.
        let usable = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => length(&rsa.n) >= 256 && length(&rsa.e) > 0,
            AlgorithmParameters::EllipticCurve(ec) => {
                ec.curve == EllipticCurve::P256 && length(&ec.x) == 32 && length(&ec.y) == 32
            }
            _ => false,
        };
        if !usable || DecodingKey::from_jwk(&jwk).is_err() {
            return Err("jwks keys must be RSA or P-256 public keys");
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const CLIENT: &str = "machine-1";
    /// One "now" for every assertion of the tests (the library checks `exp` against the clock).
    static NOW: std::sync::LazyLock<u64> = std::sync::LazyLock::new(crate::oauth::time::unix_now);

    /// A fresh P-256 key pair: the signing key and the public JWK.
    pub(crate) fn key_pair(kid: &str) -> (EncodingKey, Value) {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        // The uncompressed point: 0x04, then x and y.
        let point = pair.public_key().as_ref();
        let b64 = |bytes: &[u8]| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        };
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
    }

    fn assertion(key: &EncodingKey, kid: Option<&str>, claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    fn claims() -> Value {
        let now = *NOW;
        json!({"iss": CLIENT, "sub": CLIENT, "aud": "https://as.example/token",
               "exp": now + 60, "iat": now, "jti": "j1"})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut c = claims();
        c[field] = value;
        c
    }

    #[test]
    fn assertion_rules() {
        let now = *NOW;
        let (key, jwk) = key_pair("k1");
        let (other, other_jwk) = key_pair("k2");
        let jwks = json!({"keys": [jwk]}).to_string();
        let audiences = vec![
            "https://as.example".to_string(),
            "https://as.example/token".to_string(),
        ];
        let check = |a: &str| verify(a, CLIENT, &jwks, &audiences, now);
        let ok = Ok(VerifiedAssertion {
            jti: "j1".into(),
            exp: now + 60,
        });
        let cases: Vec<(String, Result<VerifiedAssertion, AssertionError>)> = vec![
            (assertion(&key, Some("k1"), claims()), ok.clone()),
            (assertion(&key, None, claims()), ok.clone()),
            // The issuer is an audience too.
            (
                assertion(&key, None, with("aud", json!("https://as.example"))),
                ok,
            ),
            (
                assertion(&key, None, with("aud", json!("https://other.example"))),
                Err(AssertionError::Invalid),
            ),
            (
                assertion(&key, None, with("exp", json!(now - 120))),
                Err(AssertionError::Invalid),
            ),
            (
                assertion(&key, None, with("exp", json!(now + 3600))),
                Err(AssertionError::TooLong),
            ),
            (
                assertion(&key, None, with("sub", json!("someone-else"))),
                Err(AssertionError::Invalid),
            ),
            (
                assertion(&key, None, with("jti", Value::Null)),
                Err(AssertionError::NoJti),
            ),
            // Signed by a key the client never registered.
            (
                assertion(&other, Some("k2"), claims()),
                Err(AssertionError::NoKey),
            ),
            (
                assertion(&other, Some("k1"), claims()),
                Err(AssertionError::Invalid),
            ),
            (
                assertion(&other, None, claims()),
                Err(AssertionError::Invalid),
            ),
            ("not.a.jwt".into(), Err(AssertionError::Malformed)),
        ];
        for (assertion, expected) in cases {
            assert_eq!(check(&assertion), expected, "{assertion}");
        }
        // A symmetric signature is never accepted, whatever its key.
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(jwks.as_bytes()),
        )
        .unwrap();
        assert_eq!(check(&hs), Err(AssertionError::Algorithm));
        // Both keys registered: the one without a kid is found by trying them.
        let both = json!({"keys": [other_jwk, key_pair("k3").1]}).to_string();
        let a = assertion(&other, None, claims());
        assert!(verify(&a, CLIENT, &both, &audiences, now).is_ok());
    }

    #[test]
    fn the_claimed_client_is_sub_equal_to_iss() {
        let (key, _) = key_pair("k");
        assert_eq!(
            claimed_client(&assertion(&key, None, claims())).as_deref(),
            Ok(CLIENT)
        );
        for bad in [with("iss", json!("x")), with("sub", Value::Null)] {
            assert_eq!(
                claimed_client(&assertion(&key, None, bad)),
                Err(AssertionError::Malformed)
            );
        }
        assert_eq!(claimed_client("garbage"), Err(AssertionError::Malformed));
    }

    #[test]
    fn registered_keys_are_public_rsa_or_p256_keys() {
        let (_, jwk) = key_pair("k");
        assert_eq!(
            check_public_keys(&json!({"keys": [jwk.clone()]}), 10),
            Ok(())
        );
        let mut private = jwk.clone();
        private["d"] = json!("c2VjcmV0");
        let mut p384 = jwk.clone();
        p384["crv"] = json!("P-384");
        for bad in [
            json!({}),
            json!({"keys": []}),
            json!({"keys": [private]}),
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
            json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}),
            json!({"keys": [p384]}),
            json!({"keys": vec![jwk; 11]}),
        ] {
            assert!(check_public_keys(&bad, 10).is_err(), "{bad}");
        }
    }
}
