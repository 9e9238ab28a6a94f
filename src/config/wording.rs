//! Plain words for the deserializer's messages. serde speaks Rust (`expected usize`,
//! `expected struct RawRoute`, `invalid type: floating`); an operator reading `gatehouse check`
//! should read what a value must be: a whole number, a number, text, a list, a mapping, true
//! or false, an address. Messages arrive here with their literal values already removed
//! ([`super::redact_serde_message`]), so nothing written in the file is echoed.

/// The message for a shape problem at `path`, in plain words. Messages that are already
/// plain (`unknown field …`, `missing field …`) are returned as they are.
pub fn plain(path: &str, message: &str) -> String {
    if message.starts_with("UUID parsing failed") {
        return format!("invalid value: expected {UUID}");
    }
    if message.starts_with("data did not match any variant") {
        return "invalid value: not one of the accepted forms".to_string();
    }
    for (marker, problem) in [
        ("invalid type: ", "invalid type"),
        ("invalid value: ", "invalid value"),
        ("invalid length ", "invalid length"),
    ] {
        let Some(rest) = message.strip_prefix(marker) else {
            continue;
        };
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let expected = hint(path).unwrap_or_else(|| expectation(expected));
        return match problem {
            "invalid type" => format!("{problem}: expected {expected}, found {}", kind(found)),
            _ => format!("{problem}: expected {expected}"),
        };
    }
    message.to_string()
}

/// A key as messages show it: as written, unless it may hold a value. A key with a `:`, `=` or
/// blank in it is most often `name:value` written without the space YAML needs, or another
/// syntax's `name=value` (so the value, perhaps a secret, became part of the key): shown up to
/// that character. A key longer than 64 characters is cut to its first 16. Control characters
/// (a terminal's escape sequence, a line break) are shown escaped, never written as they are.
pub fn shown_key(key: &str) -> std::borrow::Cow<'_, str> {
    let shown: std::borrow::Cow<'_, str> = if let Some(at) = key.find([':', '=', ' ', '\t']) {
        let separator = &key[at..at + 1];
        format!("{}{separator}…", &key[..at]).into()
    } else if key.chars().count() > 64 {
        format!("{}…", key.chars().take(16).collect::<String>()).into()
    } else {
        key.into()
    };
    if shown.chars().any(char::is_control) {
        return shown.escape_debug().to_string().into();
    }
    shown
}

/// `path` as messages show it: each key through [`shown_key`].
pub fn shown_path(path: &str) -> String {
    let mut shown = String::with_capacity(path.len());
    let mut rest = path;
    while !rest.is_empty() {
        // The first character (a `.` or `[` that starts the segment) is never its end.
        let first = rest.chars().next().map_or(0, char::len_utf8);
        let end = rest[first..]
            .find(['.', '['])
            .map_or(rest.len(), |at| at + first);
        let (segment, after) = rest.split_at(end);
        match segment.strip_prefix('.') {
            Some(key) => {
                shown.push('.');
                shown.push_str(&shown_key(key));
            }
            None if segment.starts_with('[') => shown.push_str(segment),
            None => shown.push_str(&shown_key(segment)),
        }
        rest = after;
    }
    shown
}

/// `message` with the key it names as unknown (`unknown field `key`, …`) through [`shown_key`].
pub fn shown_unknown_key(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    match rest.split_once('`') {
        Some((key, after)) => format!("unknown field `{}`{after}", shown_key(key)),
        None => message.to_string(),
    }
}

/// A UUID, as messages describe one.
const UUID: &str = "a UUID such as 3c219e58-ed0e-4b18-ad48-f4f92793ae32";

/// What a field whose name says more than its type must hold, by the last segment of `path`.
fn hint(path: &str) -> Option<String> {
    let leaf = path.rsplit(['.', ']']).next().unwrap_or(path);
    let text = match leaf {
        "listen" => "an address such as 127.0.0.1:9011",
        "upstream" => "a URL such as http://127.0.0.1:9012",
        "store" => "a URL such as sqlite://data/gatehouse.db or postgres://…",
        _ => return None,
    };
    Some(text.to_string())
}

/// serde's name of what was expected, in plain words.
fn expectation(expected: &str) -> String {
    let expected = expected.trim();
    let words = match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a string" | "a borrowed string" | "string" | "a character" | "char" => "text",
        "a formatted UUID string" | "a UUID string" | "UUID" => UUID,
        "a sequence" | "sequence" => "a list",
        "a map" | "map" | "a mapping" | "mapping" => "a mapping",
        "unit" | "null" => "nothing",
        _ if expected.starts_with("struct ") => "a mapping",
        _ if expected.starts_with("a tuple") || expected.starts_with("tuple") => "a list",
        _ if expected.starts_with("enum ")
            || expected.contains("variant")
            || expected.starts_with("option") =>
        {
            "one of the accepted values"
        }
        _ if has_jargon(expected) || expected.is_empty() => "another kind of value",
        _ => return expected.to_string(),
    };
    words.to_string()
}

/// What was found, named by serde's first word for it (`integer`, `floating`, `string`…), in
/// plain words.
fn kind(found: &str) -> &'static str {
    match found.split_whitespace().next().unwrap_or("") {
        "integer" => "a whole number",
        "floating" => "a number with a fraction",
        "string" | "char" | "character" => "text",
        "boolean" => "true or false",
        "sequence" => "a list",
        "map" | "mapping" => "a mapping",
        "unit" | "null" | "Option" => "nothing",
        _ => "another kind of value",
    }
}

/// True when `text` names a Rust type or serde's notion of one.
pub fn has_jargon(text: &str) -> bool {
    const TYPES: &[&str] = &[
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "f32", "f64", "bool", "struct", "enum", "variant", "Option", "Vec", "tuple", "unit",
    ];
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| TYPES.contains(&word) || word.starts_with("Raw"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_types_become_plain_words() {
        let cases = [
            (
                "threads",
                "invalid type: string, expected usize",
                "invalid type: expected a whole number, 0 or more, found text",
            ),
            (
                "shutdownTimeoutSeconds",
                "invalid value: integer, expected u64",
                "invalid value: expected a whole number, 0 or more",
            ),
            (
                "limits.maxBodyBytes",
                "invalid type: floating, expected usize",
                "invalid type: expected a whole number, 0 or more, found a number with a fraction",
            ),
            (
                "routes[0]",
                "invalid type: integer, expected struct RawRoute",
                "invalid type: expected a mapping, found a whole number",
            ),
            (
                "routes",
                "invalid type: integer, expected a sequence",
                "invalid type: expected a list, found a whole number",
            ),
            (
                "cookies.secure",
                "invalid type: integer, expected a boolean",
                "invalid type: expected true or false, found a whole number",
            ),
            (
                "tenants[0].id",
                "invalid type: integer, expected a formatted UUID string",
                "invalid type: expected a UUID such as 3c219e58-ed0e-4b18-ad48-f4f92793ae32, found a whole number",
            ),
            (
                "keys[0].id",
                "UUID parsing failed: invalid character: found `x` at 0",
                "invalid value: expected a UUID such as 3c219e58-ed0e-4b18-ad48-f4f92793ae32",
            ),
            (
                "listen",
                "invalid type: integer, expected a string",
                "invalid type: expected an address such as 127.0.0.1:9011, found a whole number",
            ),
            (
                "admin.listen",
                "invalid type: sequence, expected a string",
                "invalid type: expected an address such as 127.0.0.1:9011, found a list",
            ),
            (
                "x",
                "invalid type: map, expected enum Policy",
                "invalid type: expected one of the accepted values, found a mapping",
            ),
        ];
        for (path, message, plain_words) in cases {
            let got = plain(path, message);
            assert_eq!(got, plain_words, "{path}: {message}");
            assert!(!has_jargon(&got), "{got}");
        }
    }

    #[test]
    fn plain_messages_are_kept() {
        for message in [
            "missing field `listen`",
            "unknown field `bogus`, expected one of `a`",
        ] {
            assert_eq!(plain("x", message), message);
        }
        assert!(has_jargon("expected i64"));
        assert!(has_jargon("expected struct RawLog"));
        assert!(!has_jargon("expected a whole number"));
    }

    #[test]
    fn control_characters_in_keys_are_shown_escaped() {
        assert_eq!(shown_key("bogus\u{1b}[31mRED"), "bogus\\u{1b}[31mRED");
        assert_eq!(shown_key("a\nb"), "a\\nb");
        assert_eq!(shown_path("x.a\rb:secret"), "x.a\\rb:…");
    }

    #[test]
    fn paths_are_shown_with_keys_that_hold_values_cut() {
        assert_eq!(shown_path("routes[2].auth.roles"), "routes[2].auth.roles");
        assert_eq!(shown_path("keys[0].secret:VALUE"), "keys[0].secret:…");
        assert_eq!(shown_path("ünï.cödé[1].k=v"), "ünï.cödé[1].k=…");
        assert_eq!(shown_path("a.é"), "a.é");
        assert_eq!(shown_path(""), "");
        let long = format!("data.{}", "x".repeat(70));
        assert_eq!(shown_path(&long), format!("data.{}…", "x".repeat(16)));
    }
}
