//! How a claim reads as an id: in its one canonical spelling (lower-case hyphenated UUID), as
//! no id at all, or in another spelling some UUID parser (PostgreSQL's, Java's, Python's) reads
//! as one. A check that judged a claim by one parser's reading must refuse what another could
//! read as a different id.

use serde_json::Value;
use uuid::Uuid;

/// How a claim value reads as an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSpelling {
    /// No UUID parser would read it as one: letters other than hex digits or other text
    /// around it, and fewer than 32 digits of any kind.
    NotAnId,
    /// A UUID in its one canonical spelling: lower-case hex, hyphenated.
    Canonical(Uuid),
    /// Something some UUID parser reads as one, in another spelling: upper case, braces,
    /// `urn:uuid:`, moved or missing hyphens, `0x`, `+`, whitespace, non-ASCII digits…
    Ambiguous,
}

/// How `text` reads as an id. Parsers differ (Rust's `uuid`, PostgreSQL's `uuid`, Java's
/// `UUID.fromString`, Python's `uuid.UUID` each accept other spellings), so anything with 32 or
/// more digits of any script that is not the canonical spelling is [`IdSpelling::Ambiguous`]:
/// an upstream could read it as an id this check never saw.
pub fn id_spelling(text: &str) -> IdSpelling {
    if let Ok(id) = Uuid::try_parse(text) {
        if id.hyphenated().to_string() == text {
            return IdSpelling::Canonical(id);
        }
    }
    // Non-ASCII letters and digits count as digits: some parsers read full-width `ａ`–`ｆ`
    // or other scripts' digits as hex digits.
    let is_digit =
        |c: char| c.is_ascii_hexdigit() || c.is_numeric() || (!c.is_ascii() && c.is_alphanumeric());
    let digits = text.chars().filter(|&c| is_digit(c)).count();
    // Java reads `82d917-76a8-…` (leading zeros dropped) as an id, Python `+…` and `0x…`: any
    // text made of nothing but digits and the punctuation of id spellings is one.
    let bare = strip_prefix_ignore_case(text.trim(), "urn:uuid:");
    let id_shaped = bare
        .chars()
        .all(|c| is_digit(c) || c.is_whitespace() || "-{}+_xX".contains(c));
    if digits >= 32 || (digits > 0 && id_shaped) {
        IdSpelling::Ambiguous
    } else {
        IdSpelling::NotAnId
    }
}

/// `text` without `prefix` (ASCII case ignored) when it starts with it.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> &'a str {
    match text.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => &text[prefix.len()..],
        _ => text,
    }
}

/// The ids a claim names (a string, or the strings of an array), and whether any string
/// spells an id ambiguously (see [`id_spelling`]).
pub fn claimed_ids(value: Option<&Value>) -> (Vec<Uuid>, bool) {
    // Numbers count by their digits too (a 32-digit number is an integer some parsers take).
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    // A number beyond 64-bit integers was read as a float: its own digits (32 of them could be
    // an id to a reader with big integers) are lost, so it is ambiguous.
    let lossy = |v: &Value| matches!(v, Value::Number(n) if n.is_f64());
    // Nested arrays and objects are no spelling of an id this check could read: ambiguous.
    let nested = |v: &Value| matches!(v, Value::Array(_) | Value::Object(_));
    let (strings, mut ambiguous): (Vec<String>, bool) = match value {
        Some(Value::Array(items)) => (
            items.iter().filter_map(text).collect(),
            items.iter().any(|v| nested(v) || lossy(v)),
        ),
        Some(Value::Object(_)) => (Vec::new(), true),
        Some(other) => (text(other).into_iter().collect(), lossy(other)),
        None => (Vec::new(), false),
    };
    let mut ids = Vec::new();
    for text in &strings {
        match id_spelling(text) {
            IdSpelling::Canonical(id) => ids.push(id),
            IdSpelling::Ambiguous => ambiguous = true,
            IdSpelling::NotAnId => {}
        }
    }
    (ids, ambiguous)
}
