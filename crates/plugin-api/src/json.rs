//! JSON bodies and stored documents: one set of limits for every JSON value the gateway
//! accepts or stores — request bodies, external claims copied into users, the result of every
//! PATCH, lambda output — so whatever is written can always be read back (the reader's limit is
//! serde_json's 128 levels, far above [`MAX_DEPTH`]).
//!
//! Parsing refuses invalid UTF-8, syntax errors, duplicate object keys (two readers could take
//! different ones) and anything over the limits. Error messages never contain a value the
//! client sent: serde's messages are stripped of quoted text.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// The deepest nesting of arrays and objects a document may have.
pub const MAX_DEPTH: usize = 32;
/// The most values (every scalar, array and object counts one) a document may hold.
pub const MAX_VALUES: usize = 100_000;
/// The largest a document may be, as JSON text (bytes, estimated from its values).
pub const MAX_BYTES: usize = 1024 * 1024;

/// Why a JSON value is over the limits (or holds what no store can keep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// A string or key holds U+0000, which PostgreSQL cannot store in text.
    Nul,
    /// Nested deeper than [`MAX_DEPTH`].
    Depth,
    /// More than [`MAX_VALUES`] values.
    Values,
    /// Larger than [`MAX_BYTES`].
    Bytes,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitExceeded::Nul => write!(f, "holding a NUL character"),
            LimitExceeded::Depth => write!(f, "nested deeper than {MAX_DEPTH} levels"),
            LimitExceeded::Values => write!(f, "more than {MAX_VALUES} values"),
            LimitExceeded::Bytes => write!(f, "larger than {MAX_BYTES} bytes"),
        }
    }
}

/// Checks `value` against the limits: `Ok` when it may be stored.
pub fn check(value: &Value) -> Result<(), LimitExceeded> {
    check_counting(value).map(drop)
}

/// [`check`], also returning how many values `value` holds (every scalar, array and object
/// counts one), which is the work of the check and of copying the value.
pub fn check_counting(value: &Value) -> Result<usize, LimitExceeded> {
    let mut values = 0usize;
    let mut bytes = 0usize;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((value, depth)) = stack.pop() {
        values += 1;
        if values > MAX_VALUES {
            return Err(LimitExceeded::Values);
        }
        bytes += match value {
            Value::Null | Value::Bool(_) | Value::Number(_) => 8,
            Value::String(s) => s.len() + 2,
            Value::Array(items) => 2 + items.len(),
            Value::Object(map) => 2 + map.keys().map(|k| k.len() + 4).sum::<usize>(),
        };
        let has_nul = match value {
            Value::String(s) => s.contains('\0'),
            Value::Object(map) => map.keys().any(|k| k.contains('\0')),
            _ => false,
        };
        if has_nul {
            return Err(LimitExceeded::Nul);
        }
        if bytes > MAX_BYTES {
            return Err(LimitExceeded::Bytes);
        }
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth >= MAX_DEPTH {
            if children.into_iter().any(|c| c.is_array() || c.is_object()) {
                return Err(LimitExceeded::Depth);
            }
            continue;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    Ok(values)
}

/// [`check`] as an API error naming `field` (a 400, nothing written).
pub fn check_field(value: &Value, field: &str) -> Result<(), ApiError> {
    check(value)
        .map_err(|limit| ApiError::field(field, "tooLarge", format!("The {field} is {limit}.")))
}

/// Parses a request body: UTF-8 JSON, no duplicate keys, within the limits. The 400 says what
/// is wrong without echoing the body.
pub fn parse(body: &[u8]) -> Result<Value, ApiError> {
    let invalid = |detail: String| {
        ApiError::general(
            "[invalidJSON]",
            format!("Invalid JSON in the request body. {detail}"),
        )
    };
    let text = std::str::from_utf8(body)
        .map_err(|_| invalid("The body is not valid UTF-8.".to_string()))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = UniqueKeys
        .deserialize(&mut deserializer)
        .and_then(|v| deserializer.end().map(|()| v))
        .map_err(|e| invalid(format!("The error was [{}].", sanitized(&e.to_string()))))?;
    check(&value).map_err(|limit| invalid(format!("The body is {limit}.")))?;
    Ok(value)
}

/// A serde message without the client's values: text in double quotes or backticks becomes
/// `…`, and the position suffix (` at line 1 column 9`) is kept.
pub fn sanitized(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match (quote, c) {
            (None, '"' | '`') => {
                quote = Some(c);
                out.push('…');
            }
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, c) => out.push(c),
        }
    }
    out
}

/// Deserializes a JSON value, refusing an object with the same key twice.
struct UniqueKeys;

impl<'de> DeserializeSeed<'de> for UniqueKeys {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(UniqueKeys)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(UniqueKeys)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom("an object has the same key twice"));
            }
            let value = map.next_value_seed(UniqueKeys)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        (1..depth).fold(json!({}), |inner, _| json!({ "a": inner }))
    }

    #[test]
    fn limits_on_depth_values_and_bytes() {
        assert_eq!(check(&nested(MAX_DEPTH)), Ok(()));
        assert_eq!(check(&nested(MAX_DEPTH + 1)), Err(LimitExceeded::Depth));
        let many = Value::Array(vec![json!(1); MAX_VALUES]);
        assert_eq!(check(&many), Err(LimitExceeded::Values));
        let big = Value::Array(vec![json!("x".repeat(1024)); 1100]);
        assert_eq!(check(&big), Err(LimitExceeded::Bytes));
        assert_eq!(check(&json!({"a": [1, "two", null, {"b": true}]})), Ok(()));
        assert_eq!(check(&json!({"a": "x\0y"})), Err(LimitExceeded::Nul));
        assert_eq!(check(&json!({"a\0": 1})), Err(LimitExceeded::Nul));
    }

    #[test]
    fn parsing_refuses_what_two_readers_could_read_differently() {
        assert_eq!(
            parse(br#"{"a": 1, "b": [2]}"#).expect("ok"),
            json!({"a": 1, "b": [2]})
        );
        for bad in [
            &br#"{"a": 1, "a": 2}"#[..],
            br#"{"x": {"a": 1, "a": 1}}"#,
            b"{\"a\": \"\xff\"}",
            br#"{"a": "#,
            br#"{"a": 1} trailing"#,
            b"",
        ] {
            let error = parse(bad).expect_err("refused");
            assert_eq!(error.status(), 400);
        }
        let deep = "[".repeat(40) + &"]".repeat(40);
        assert_eq!(parse(deep.as_bytes()).expect_err("deep").status(), 400);
        let deeper = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(parse(deeper.as_bytes()).expect_err("deeper").status(), 400);
    }

    #[test]
    fn messages_do_not_echo_client_values() {
        assert_eq!(
            sanitized(r#"invalid type: string "hunter2-secret", expected u64 at line 1 column 9"#),
            "invalid type: string …, expected u64 at line 1 column 9"
        );
        assert_eq!(
            sanitized("unknown variant `s3cr3t`, expected one of `A`, `B`"),
            "unknown variant …, expected one of …, …"
        );
        let error = parse(br#"{"a": "hunter2-secret" "#).expect_err("bad");
        let body = String::from_utf8(error.to_response().body).expect("utf-8");
        assert!(!body.contains("hunter2"), "{body}");
    }
}
