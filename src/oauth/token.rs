//! Access tokens: the claims of an RFC 9068 JWT, one type for every place that writes or reads
//! them. The authorization server signs them at `/token` and reads its own back at `/introspect`
//! and `/revoke`; the resource server reads them in front of the MCP endpoint.
//!
//! As written, every claim but `nbf` and `flow` is present. As read, the claims the JWT validator
//! checks itself (`exp`, `nbf`, `aud`) never fail to deserialize, whatever their type, so that the
//! validator's verdict and the reason it gives stand (claims are deserialized before they are
//! validated). The rest are strict where the resource server has always been strict: `iss` and
//! `sub` must be strings (the validator alone would accept an array of issuers containing ours),
//! `client_id` and `scope` strings when present (empty when absent), `iat` an integer and `jti`
//! and `flow` strings when present and not null (absent or null reads as 0 and empty: not stated).

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The JOSE `typ` of an access token (RFC 9068 section 2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The clock leeway a resource server may grant past an access token's `exp` (the common default
/// of JWT libraries). A revoked token stays on the revocation list this long after it expires, so
/// no resource server that validates it locally with such a leeway can still accept it.
pub const CLOCK_LEEWAY: Duration = Duration::from_secs(60);

/// Claims of an access token. `flow` is this project's own claim: the id of the authorization
/// flow that produced the token, so that the flow trace can follow it across both servers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    /// One audience, as this server issues it; any other form reads as empty (the validator
    /// checks the audience itself).
    #[serde(default, deserialize_with = "read::string_or_empty")]
    pub aud: String,
    /// 0 when absent or not a number (the validator refuses such a token where `exp` is required).
    #[serde(default, deserialize_with = "read::number_or_zero")]
    pub exp: u64,
    #[serde(default, deserialize_with = "read::u64_or_null")]
    pub iat: u64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "read::number_or_none"
    )]
    pub nbf: Option<u64>,
    #[serde(default, deserialize_with = "read::string_or_null")]
    pub jti: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
}

/// Deserializers for claims read leniently.
mod read {
    use serde::Deserialize;
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    /// Any JSON value, kept only when it is a string or a number a JWT date can be.
    enum Loose {
        Text(String),
        Number(u64),
        Other,
    }

    struct LooseVisitor;

    impl<'de> Visitor<'de> for LooseVisitor {
        type Value = Loose;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Loose, E> {
            Ok(Loose::Other)
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Loose, E> {
            Ok(u64::try_from(n).map_or(Loose::Other, Loose::Number))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Loose, E> {
            Ok(Loose::Number(n))
        }
        /// Rounded, as the validator reads a fractional date.
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Loose, E> {
            Ok(if n.is_finite() && n >= 0.0 && n < u64::MAX as f64 {
                Loose::Number(n.round() as u64)
            } else {
                Loose::Other
            })
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Loose, E> {
            Ok(Loose::Text(s.to_string()))
        }
        fn visit_string<E: de::Error>(self, s: String) -> Result<Loose, E> {
            Ok(Loose::Text(s))
        }
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Loose, E> {
            Ok(Loose::Other)
        }
        fn visit_none<E: de::Error>(self) -> Result<Loose, E> {
            Ok(Loose::Other)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Loose, E> {
            Ok(Loose::Other)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Loose, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Loose::Other)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Loose::Other)
        }
    }

    fn loose<'de, D: Deserializer<'de>>(d: D) -> Result<Loose, D::Error> {
        d.deserialize_any(LooseVisitor)
    }

    pub fn string_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(match loose(d)? {
            Loose::Text(s) => s,
            _ => String::new(),
        })
    }

    pub fn number_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        Ok(number_or_none(d)?.unwrap_or_default())
    }

    pub fn number_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(match loose(d)? {
            Loose::Number(n) => Some(n),
            _ => None,
        })
    }

    pub fn u64_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.unwrap_or_default())
    }

    pub fn string_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
    }
}

/// A short-lived token's claims for unit tests that sign and verify (one fixture for the JWS and
/// signer tests).
#[cfg(test)]
pub(crate) fn sample_claims(jti: &str) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: "http://localhost:8999".into(),
        sub: "alice".into(),
        aud: "http://localhost:8990".into(),
        exp: jsonwebtoken::get_current_timestamp() + 60,
        iat: jsonwebtoken::get_current_timestamp(),
        nbf: None,
        jti: jti.into(),
        client_id: "c".into(),
        scope: "mcp.read".into(),
        flow: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn issued() -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "http://as.example".into(),
            sub: "alice".into(),
            aud: "http://rs.example/mcp".into(),
            exp: 1_700_000_300,
            iat: 1_700_000_000,
            nbf: None,
            jti: "j1".into(),
            client_id: "c1".into(),
            scope: "mcp.read".into(),
            flow: Some("f1".into()),
        }
    }

    #[test]
    fn written_exactly_as_issued() {
        assert_eq!(
            serde_json::to_string(&issued()).unwrap(),
            r#"{"iss":"http://as.example","sub":"alice","aud":"http://rs.example/mcp","exp":1700000300,"iat":1700000000,"jti":"j1","client_id":"c1","scope":"mcp.read","flow":"f1"}"#
        );
        let without_flow = AccessTokenClaims {
            flow: None,
            nbf: Some(5),
            ..issued()
        };
        assert_eq!(
            serde_json::to_value(&without_flow).unwrap()["nbf"],
            json!(5)
        );
        assert!(
            serde_json::to_value(&without_flow)
                .unwrap()
                .get("flow")
                .is_none()
        );
        let written = serde_json::to_vec(&issued()).unwrap();
        assert_eq!(
            serde_json::from_slice::<AccessTokenClaims>(&written).unwrap(),
            issued()
        );
    }

    #[test]
    fn read_cases() {
        let base = serde_json::to_value(issued()).unwrap();
        let with = |name: &str, value: Value| {
            let mut v = base.clone();
            v[name] = value;
            v
        };
        let without = |name: &str| {
            let mut v = base.clone();
            v.as_object_mut().unwrap().remove(name);
            v
        };
        let read = |v: &Value| serde_json::from_value::<AccessTokenClaims>(v.clone());
        let ok = |v: Value, check: &dyn Fn(&AccessTokenClaims) -> bool| {
            let claims = read(&v).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert!(check(&claims), "{v}: {claims:?}");
        };
        // Claims the validator checks: never a deserialization error.
        ok(without("exp"), &|c| c.exp == 0);
        ok(with("exp", json!("1700000000")), &|c| c.exp == 0);
        ok(with("exp", json!(2.5e9)), &|c| c.exp == 2_500_000_000);
        ok(with("exp", json!(-1)), &|c| c.exp == 0);
        ok(with("exp", json!([1, {"a": [2]}])), &|c| c.exp == 0);
        ok(without("aud"), &|c| c.aud.is_empty());
        ok(with("aud", json!(["http://rs.example/mcp", "x"])), &|c| {
            c.aud.is_empty()
        });
        ok(with("aud", json!(7)), &|c| c.aud.is_empty());
        ok(with("aud", json!(null)), &|c| c.aud.is_empty());
        ok(with("nbf", json!(1.5)), &|c| c.nbf == Some(2));
        ok(with("nbf", json!("soon")), &|c| c.nbf.is_none());
        // Absent or null: not stated.
        ok(without("iat"), &|c| c.iat == 0);
        ok(with("iat", json!(null)), &|c| c.iat == 0);
        ok(with("jti", json!(null)), &|c| c.jti.is_empty());
        ok(without("client_id"), &|c| c.client_id.is_empty());
        ok(without("scope"), &|c| c.scope.is_empty());
        ok(with("flow", json!(null)), &|c| c.flow.is_none());
        ok(with("extra", json!({"any": "thing"})), &|c| *c == issued());
        // Strict.
        for (name, refused) in [
            without("iss"),
            with("iss", json!(["http://as.example"])),
            without("sub"),
            with("sub", json!(["alice"])),
            with("iat", json!(1.5)),
            with("iat", json!("1700000000")),
            with("jti", json!(7)),
            with("client_id", json!(null)),
            with("client_id", json!(1)),
            with("scope", json!(["mcp.read"])),
            with("flow", json!(1)),
        ]
        .iter()
        .enumerate()
        {
            assert!(read(refused).is_err(), "case {name}: {refused}");
        }
    }
}
