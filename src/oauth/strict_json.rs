//! JSON in which every object names each key once. `serde_json` keeps the last of two equal keys,
//! another parser may keep the first, so a registration or metadata document that repeats a key
//! could describe two different clients; it is refused instead (RFC 7591 section 3.2.2,
//! `invalid_client_metadata`).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Why a body is not strict JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StrictJsonError {
    #[error("the body is not valid JSON")]
    Malformed,
    #[error("an object in the body repeats a key")]
    RepeatedKey,
}

/// Parses `bytes` as JSON, refusing any object that repeats a key, at any depth.
pub fn parse(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    serde_json::from_slice::<Unique>(bytes)
        .map(|unique| unique.0)
        .map_err(|err| {
            // Any JSON value is accepted below, so a data error can only be a repeated key.
            if err.is_data() {
                StrictJsonError::RepeatedKey
            } else {
                StrictJsonError::Malformed
            }
        })
}

/// A JSON value whose objects were checked for repeated keys while they were read.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Unique, E> {
        Ok(Unique(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Unique, E> {
        Ok(Unique(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Unique, E> {
        Ok(Unique(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Unique, E> {
        Ok(Unique(Value::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Unique, E> {
        Ok(Unique(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Unique, E> {
        Ok(Unique(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Unique, E> {
        Ok(Unique(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Unique(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom("repeated key"));
            }
            let Unique(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Unique(Value::Object(object)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_cases() {
        use StrictJsonError::*;
        #[rustfmt::skip]
        let cases: [(&str, Result<Value, StrictJsonError>); 10] = [
            (r#"{"a": 1, "b": [true, null, -2, 1.5, "x"]}"#, Ok(json!({"a": 1, "b": [true, null, -2, 1.5, "x"]}))),
            (r#"{"redirect_uris": ["a"], "redirect_uris": ["b"]}"#, Err(RepeatedKey)),
            (r#"{"a": {"b": 1, "b": 2}}"#, Err(RepeatedKey)),
            (r#"[{"k": 1}, {"k": 1, "k": 1}]"#, Err(RepeatedKey)),
            // An escaped spelling is the same key.
            (r#"{"client_name": "a", "client_n\u0061me": "b"}"#, Err(RepeatedKey)),
            (r#"{"a": 1, "A": 2}"#, Ok(json!({"a": 1, "A": 2}))),
            (r#"[{"k": 1}, {"k": 2}]"#, Ok(json!([{"k": 1}, {"k": 2}]))),
            (r#"{"a": 1"#, Err(Malformed)),
            (r#"{"a": 1} x"#, Err(Malformed)),
            ("", Err(Malformed)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input.as_bytes()), expected, "{input}");
        }
    }
}
