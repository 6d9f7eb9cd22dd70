//! Finds a key that appears twice in one JSON object.
//!
//! serde_json keeps the last of two equal keys, so `{"op":"ping","op":"shutdown"}` would read
//! as `shutdown` while a proxy or a log reading the first would see `ping`. Requests with a
//! repeated key are refused instead of guessed.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// The first key found twice in one object anywhere in `text`, if any. `text` must be JSON.
pub fn duplicate_key(text: &str) -> Result<Option<String>, serde_json::Error> {
    Ok(serde_json::from_str::<Scan>(text)?.0)
}

/// What a walk over a JSON value found: the first repeated key.
struct Scan(Option<String>);

impl<'de> Deserialize<'de> for Scan {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Scan, D::Error> {
        deserializer.deserialize_any(ScanVisitor)
    }
}

struct ScanVisitor;

impl<'de> Visitor<'de> for ScanVisitor {
    type Value = Scan;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scan, E> {
        Ok(Scan(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Scan, E> {
        Ok(Scan(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Scan, E> {
        Ok(Scan(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scan, E> {
        Ok(Scan(None))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Scan, E> {
        Ok(Scan(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scan, E> {
        Ok(Scan(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scan, A::Error> {
        let mut found = None;
        while let Some(Scan(inner)) = seq.next_element::<Scan>()? {
            found = found.or(inner);
        }
        Ok(Scan(found))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scan, A::Error> {
        let mut keys = HashSet::new();
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            let Scan(inner) = map.next_value::<Scan>()?;
            if found.is_none() && !keys.insert(key.clone()) {
                found = Some(key);
            }
            found = found.or(inner);
        }
        Ok(Scan(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_repeats_at_any_depth() {
        assert_eq!(duplicate_key(r#"{"op":"ping"}"#).unwrap(), None);
        assert_eq!(
            duplicate_key(r#"{"op":"ping","op":"shutdown"}"#).unwrap(),
            Some("op".into())
        );
        assert_eq!(
            duplicate_key(r#"{"a":[{"b":1,"b":2}],"c":null}"#).unwrap(),
            Some("b".into())
        );
        // The same key in two different objects is fine.
        assert_eq!(duplicate_key(r#"[{"a":1},{"a":2}]"#).unwrap(), None);
        // Escapes are compared decoded.
        assert_eq!(
            duplicate_key(r#"{"op":1,"\u006fp":2}"#).unwrap(),
            Some("op".into())
        );
    }
}
