//! The canonical form of a request path.
//!
//! Upstreams (nginx, web frameworks, static file servers, Tomcat) decode percent-encodings
//! and resolve dot-segments, so `/public/../admin` or `/%61dmin` must not slip past a policy
//! written for `/admin` (the class of Envoy CVE-2019-9901). [`canonical_path`] computes one
//! canonical form of the path, once per request: routes are matched on it and it is what is
//! forwarded upstream. A path that has no single unambiguous form is refused with a
//! [`PathRefusal`]. Envoy's path normalization and Spring Security's `StrictHttpFirewall`
//! defaults are the anchors.
//!
//! Rules, applied to the raw bytes received on the wire (query string already split off):
//! 1. An empty path is `/`; otherwise the path must start with `/` ([`PathRefusal::NotAbsolute`]).
//! 2. `%` must start a triplet with two hex digits ([`PathRefusal::InvalidEncoding`]).
//!    Triplets of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded; `%2F` is
//!    [`PathRefusal::EncodedSlash`], `%5C` [`PathRefusal::Backslash`], `%00`–`%1F` and `%7F`
//!    [`PathRefusal::ControlCharacter`], `%3B` [`PathRefusal::Semicolon`] unless semicolons are
//!    allowed; every other triplet stays encoded with upper-case hex digits.
//! 3. An encoded `%` (`%25`) followed in the decoded path by two hex digits (`%252e`,
//!    `%25%32%65`) is [`PathRefusal::DoubleEncoding`]; an encoded `?` or `#` is
//!    [`PathRefusal::EncodedDelimiter`]. Percent-encoded bytes of non-ASCII characters must be
//!    valid UTF-8 ([`PathRefusal::InvalidUtf8`]: overlong `%C0%AE` is not `.`), and no character
//!    may turn into ASCII by case mapping or NFKC ([`PathRefusal::Confusable`]: `ſ`, `ı`,
//!    fullwidth forms).
//! 4. Raw bytes: `\` is [`PathRefusal::Backslash`]; `0x00`–`0x1F` and `0x7F` are
//!    [`PathRefusal::ControlCharacter`]; space, `#` and `?` are [`PathRefusal::InvalidCharacter`];
//!    `;` is [`PathRefusal::Semicolon`] unless semicolons are allowed; bytes `>= 0x80` and
//!    `" < > [ ] ^ ` { | }` are percent-encoded with upper-case hex digits; the rest is kept.
//! 5. Dot-segments are resolved after decoding (RFC 3986 §5.2.4): `.` is removed, `..` removes
//!    the previous segment, and climbing above the root is [`PathRefusal::AboveRoot`]. A final
//!    `.` or `..` leaves a trailing `/`.
//! 6. With semicolons allowed, a segment whose part before its first `;` (or `%3B`) is empty,
//!    `.` or `..` (`/..;/admin`) is [`PathRefusal::Semicolon`]: Tomcat strips path parameters
//!    before resolving dot-segments, so such a path would mean something else upstream.
//! 7. With `merge_slashes`, runs of `/` become one; without it, empty segments are kept. A
//!    segment ending with a dot or an encoded space is [`PathRefusal::TrailingDotOrSpace`].
//! 8. A trailing `/` is kept; case is kept (it is the router's business).
//!
//! The result is a fixed point: the canonical form of a canonical path is the path itself,
//! borrowed. A path that already is canonical costs one scan and no allocation.

use std::borrow::Cow;

/// Options of the canonical form (from the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathOptions {
    /// Merge runs of `/` into one (`//admin` becomes `/admin`); otherwise empty segments are kept.
    pub merge_slashes: bool,
    /// Accept `;` (raw, or kept encoded as `%3B`) instead of refusing the path.
    pub allow_semicolons: bool,
}

impl Default for PathOptions {
    /// Slashes are merged and semicolons refused.
    fn default() -> Self {
        Self {
            merge_slashes: true,
            allow_semicolons: false,
        }
    }
}

/// Why a path has no canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    /// The path is not empty and does not start with `/` (`*`, `a/b`).
    NotAbsolute,
    /// A `%` is not followed by two hex digits.
    InvalidEncoding,
    /// An encoded slash (`%2F`).
    EncodedSlash,
    /// A backslash, raw or encoded (`%5C`).
    Backslash,
    /// A control character (`0x00`–`0x1F`, `0x7F`), raw or encoded.
    ControlCharacter,
    /// A raw character that has no place in a path (space, `#`, `?`).
    InvalidCharacter,
    /// An encoded `%` followed by two hex digits (`%252e`).
    DoubleEncoding,
    /// A semicolon while they are not allowed, or a segment that is a dot-segment or empty
    /// before its path parameters (`/..;/admin`).
    Semicolon,
    /// A `..` segment climbing above the root.
    AboveRoot,
    /// An encoded `?` or `#` (`%3F`, `%23`): an upstream that decodes twice would split the
    /// path there.
    EncodedDelimiter,
    /// A segment that ends with a dot or a space (`/admin.`, `/admin%20`): Windows servers
    /// and some frameworks drop them, so the path would name another resource upstream.
    TrailingDotOrSpace,
    /// Percent-encoded bytes that are not valid UTF-8 (overlong forms such as `%C0%AE`,
    /// surrogates, stray bytes): lenient decoders read them as `.` or `/`.
    InvalidUtf8,
    /// A character that case mapping or Unicode compatibility normalization (NFKC) turns into
    /// ASCII (`ſ` → `S`, `ı` → `I`, fullwidth `ａ` → `a`, `．` → `.`): servers that fold case or
    /// normalize would read another path.
    Confusable,
}

impl PathRefusal {
    /// A short English sentence for the client (no input echoed).
    pub fn message(&self) -> &'static str {
        match self {
            Self::NotAbsolute => "The request path must start with '/'.",
            Self::InvalidEncoding => "The request path contains a malformed percent-encoding.",
            Self::EncodedSlash => "The request path contains an encoded slash.",
            Self::Backslash => "The request path contains a backslash.",
            Self::ControlCharacter => "The request path contains a control character.",
            Self::InvalidCharacter => "The request path contains a character that is not allowed.",
            Self::DoubleEncoding => "The request path contains a double percent-encoding.",
            Self::Semicolon => "The request path contains a semicolon that is not allowed.",
            Self::AboveRoot => "The request path climbs above the root.",
            Self::EncodedDelimiter => "The request path contains an encoded '?' or '#'.",
            Self::TrailingDotOrSpace => "A segment of the request path ends with a dot or a space.",
            Self::InvalidUtf8 => {
                "The request path contains percent-encoded bytes that are not UTF-8."
            }
            Self::Confusable => {
                "The request path contains a character other servers may read as ASCII."
            }
        }
    }
}

/// The canonical form of `raw` (the request path, without the query string):
/// borrowed when `raw` already is canonical (the common case costs one scan, no allocation).
pub fn canonical_path<'a>(
    raw: &'a [u8],
    options: PathOptions,
) -> Result<Cow<'a, str>, PathRefusal> {
    if raw.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    if raw.first() != Some(&b'/') {
        return Err(PathRefusal::NotAbsolute);
    }
    if is_plain(raw) || is_canonical(raw, options) {
        // Canonical paths are ASCII, so this cannot fail.
        if let Ok(path) = std::str::from_utf8(raw) {
            return Ok(Cow::Borrowed(path));
        }
    }
    let canonical = rewrite(raw, options)?;
    Ok(match std::str::from_utf8(raw) {
        Ok(path) if path == canonical => Cow::Borrowed(path),
        _ => Cow::Owned(canonical),
    })
}

/// How one byte (raw or decoded from a triplet) appears in the canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Emit {
    /// As the character itself.
    Literal,
    /// As a percent-encoded triplet with upper-case hex digits.
    Encoded,
    /// Not at all: the path is refused.
    Refuse(PathRefusal),
}

/// How a raw byte other than `%` appears in the canonical form.
fn raw_emit(byte: u8, options: PathOptions) -> Emit {
    match byte {
        b'%' => Emit::Refuse(PathRefusal::InvalidEncoding),
        b'\\' => Emit::Refuse(PathRefusal::Backslash),
        0x00..=0x1F | 0x7F => Emit::Refuse(PathRefusal::ControlCharacter),
        b' ' | b'#' | b'?' => Emit::Refuse(PathRefusal::InvalidCharacter),
        b';' if !options.allow_semicolons => Emit::Refuse(PathRefusal::Semicolon),
        b'"' | b'<' | b'>' | b'[' | b']' | b'^' | b'`' | b'{' | b'|' | b'}' => Emit::Encoded,
        0x80..=0xFF => Emit::Encoded,
        _ => Emit::Literal,
    }
}

/// How a byte decoded from a `%XX` triplet appears in the canonical form.
fn encoded_emit(byte: u8, options: PathOptions) -> Emit {
    match byte {
        b'/' => Emit::Refuse(PathRefusal::EncodedSlash),
        b'\\' => Emit::Refuse(PathRefusal::Backslash),
        0x00..=0x1F | 0x7F => Emit::Refuse(PathRefusal::ControlCharacter),
        b';' if !options.allow_semicolons => Emit::Refuse(PathRefusal::Semicolon),
        b'?' | b'#' => Emit::Refuse(PathRefusal::EncodedDelimiter),
        b'-' | b'.' | b'_' | b'~' => Emit::Literal,
        _ if byte.is_ascii_alphanumeric() => Emit::Literal,
        _ => Emit::Encoded,
    }
}

/// The value of one hex digit, either case.
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The byte encoded by the triplet whose `%` is at `bytes[at]`.
fn triplet(bytes: &[u8], at: usize) -> Result<u8, PathRefusal> {
    let high = bytes.get(at + 1).copied().and_then(hex_value);
    let low = bytes.get(at + 2).copied().and_then(hex_value);
    match (high, low) {
        (Some(high), Some(low)) => Ok((high << 4) | low),
        _ => Err(PathRefusal::InvalidEncoding),
    }
}

/// The part of a segment before its path parameters (its first `;` or `%3B`).
fn before_parameters(segment: &[u8]) -> &[u8] {
    let end = (0..segment.len())
        .find(|&i| segment[i] == b';' || segment[i..].starts_with(b"%3B"))
        .unwrap_or(segment.len());
    &segment[..end]
}

/// Whether a segment has path parameters and is empty or a dot-segment before them.
fn is_parameter_dot_segment(segment: &[u8]) -> bool {
    let head = before_parameters(segment);
    head.len() < segment.len() && matches!(head, b"" | b"." | b"..")
}

/// Whether a segment other than `.` and `..` ends (before its path parameters, when they are
/// allowed) with a dot or an encoded space.
fn has_trailing_dot_or_space(segment: &[u8], options: PathOptions) -> bool {
    let head = if options.allow_semicolons {
        before_parameters(segment)
    } else {
        segment
    };
    !matches!(head, b"." | b"..") && (head.ends_with(b".") || head.ends_with(b"%20"))
}

/// The bytes of a plain path: letters, digits, `-`, `_`, `~` and `/` (see [`is_plain`]).
const PLAIN: [bool; 256] = super::alphanumeric_or(b"-_~/");

/// The fastest path: `raw` starts with `/`, holds only [`PLAIN`] bytes, and no `/` follows
/// another. Such a path is canonical under every [`PathOptions`] (no dot, no `%`, no `;`, no
/// empty segment but a last one), as [`is_canonical`] would find, one table look a byte.
fn is_plain(raw: &[u8]) -> bool {
    let mut previous = 0u8;
    for &byte in raw {
        if !PLAIN[usize::from(byte)] || (byte == b'/' && previous == b'/') {
            return false;
        }
        previous = byte;
    }
    raw.first() == Some(&b'/')
}

/// The fast path: whether `raw` already is canonical. May answer `false` for a canonical
/// path (the slow path then finds it unchanged); never answers `true` for another one.
fn is_canonical(raw: &[u8], options: PathOptions) -> bool {
    let Some(rest) = raw.strip_prefix(b"/") else {
        return false;
    };
    let mut segments = rest.split(|&byte| byte == b'/').peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        let merged = options.merge_slashes && segment.is_empty() && !is_last;
        let dotted = matches!(segment, b"." | b"..")
            || (options.allow_semicolons && is_parameter_dot_segment(segment));
        if merged
            || dotted
            || has_trailing_dot_or_space(segment, options)
            || !is_canonical_segment(segment, options)
        {
            return false;
        }
    }
    true
}

/// Whether every byte and triplet of a segment already is in canonical form.
fn is_canonical_segment(segment: &[u8], options: PathOptions) -> bool {
    let mut at = 0;
    while at < segment.len() {
        if segment[at] != b'%' {
            if raw_emit(segment[at], options) != Emit::Literal {
                return false;
            }
            at += 1;
        } else {
            if !is_canonical_triplet(segment, at, options) {
                return false;
            }
            at += 3;
        }
    }
    true
}

/// Whether the triplet at `segment[at]` stays as it is: upper-case, kept encoded, and not
/// an encoded `%` followed by a hex digit (left to the slow path's double-encoding check).
fn is_canonical_triplet(segment: &[u8], at: usize, options: PathOptions) -> bool {
    let Ok(value) = triplet(segment, at) else {
        return false;
    };
    let upper = !segment[at + 1..at + 3].iter().any(u8::is_ascii_lowercase);
    let hex_follows = segment.get(at + 3).is_some_and(u8::is_ascii_hexdigit);
    // Bytes of non-ASCII characters are left to the slow path's UTF-8 and confusable checks.
    value < 0x80
        && upper
        && encoded_emit(value, options) == Emit::Encoded
        && !(value == b'%' && hex_follows)
}

/// The slow path: decoding, the double-encoding check, then segment resolution.
fn rewrite(raw: &[u8], options: PathOptions) -> Result<String, PathRefusal> {
    let decoded = decode(raw, options)?;
    check_double_encoding(&decoded)?;
    check_non_ascii(&decoded)?;
    resolve_segments(&decoded, options)
}

/// The non-ASCII characters of a decoded path (its `%XX` triplets of bytes ≥ 0x80) must be
/// valid UTF-8, and none may be a [`PathRefusal::Confusable`].
fn check_non_ascii(decoded: &str) -> Result<(), PathRefusal> {
    let bytes = decoded.as_bytes();
    let mut run: Vec<u8> = Vec::new();
    let mut at = 0;
    while at <= bytes.len() {
        let high = (bytes.get(at) == Some(&b'%'))
            .then(|| triplet(bytes, at).ok())
            .flatten()
            .filter(|&b| b >= 0x80);
        match high {
            Some(byte) => {
                run.push(byte);
                at += 3;
            }
            None => {
                if !run.is_empty() {
                    check_characters(&run)?;
                    run.clear();
                }
                at += 1;
            }
        }
    }
    Ok(())
}

/// One run of percent-decoded non-ASCII bytes: valid UTF-8 of no confusable character.
fn check_characters(run: &[u8]) -> Result<(), PathRefusal> {
    use unicode_normalization::UnicodeNormalization;
    let text = std::str::from_utf8(run).map_err(|_| PathRefusal::InvalidUtf8)?;
    let confusable = text.chars().any(|c| {
        c.to_lowercase().any(|m| m.is_ascii())
            || c.to_uppercase().any(|m| m.is_ascii())
            || c.to_lowercase()
                .flat_map(char::to_uppercase)
                .any(|m| m.is_ascii())
            || std::iter::once(c).nfkc().any(|m| m.is_ascii())
            || gatehouse_plugin_api::text::is_default_ignorable(c)
    });
    if confusable {
        Err(PathRefusal::Confusable)
    } else {
        Ok(())
    }
}

/// Applies the byte and percent-encoding rules: every byte of the result is ASCII and every
/// `%` in it starts an upper-case triplet that stays encoded.
fn decode(raw: &[u8], options: PathOptions) -> Result<String, PathRefusal> {
    let mut out = String::with_capacity(raw.len() + 16);
    let mut at = 0;
    while at < raw.len() {
        let (byte, emit, width) = if raw[at] == b'%' {
            let value = triplet(raw, at)?;
            (value, encoded_emit(value, options), 3)
        } else {
            (raw[at], raw_emit(raw[at], options), 1)
        };
        match emit {
            Emit::Literal => out.push(char::from(byte)),
            Emit::Encoded => push_encoded(&mut out, byte),
            Emit::Refuse(refusal) => return Err(refusal),
        }
        at += width;
    }
    Ok(out)
}

/// Appends `byte` as a triplet with upper-case hex digits.
fn push_encoded(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0F)]));
}

/// Refuses an encoded `%` followed in the decoded path by two hex digits.
fn check_double_encoding(decoded: &str) -> Result<(), PathRefusal> {
    let doubled = decoded.as_bytes().windows(5).any(|window| {
        window.starts_with(b"%25") && window[3].is_ascii_hexdigit() && window[4].is_ascii_hexdigit()
    });
    if doubled {
        Err(PathRefusal::DoubleEncoding)
    } else {
        Ok(())
    }
}

/// Resolves dot-segments (RFC 3986 §5.2.4) and merges slashes on a decoded path.
fn resolve_segments(decoded: &str, options: PathOptions) -> Result<String, PathRefusal> {
    let rest = decoded.strip_prefix('/').ok_or(PathRefusal::NotAbsolute)?;
    let mut kept: Vec<&str> = Vec::new();
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        match segment {
            "." => {}
            ".." => {
                kept.pop().ok_or(PathRefusal::AboveRoot)?;
            }
            "" if options.merge_slashes && !is_last => {}
            _ if options.allow_semicolons && is_parameter_dot_segment(segment.as_bytes()) => {
                return Err(PathRefusal::Semicolon);
            }
            _ if has_trailing_dot_or_space(segment.as_bytes(), options) => {
                return Err(PathRefusal::TrailingDotOrSpace);
            }
            _ => kept.push(segment),
        }
        if is_last && matches!(segment, "." | "..") {
            kept.push("");
        }
    }
    Ok(format!("/{}", kept.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain path is one the full check finds canonical, under every option set; and the
    /// paths it leaves to that check are the others (dots, `%`, `;`, `//`, anything else).
    #[test]
    fn a_plain_path_is_canonical_under_every_option() {
        let alphabet = b"aZ9-_~/.%;:@!$&'()*+,= \\";
        let options = [
            PathOptions::default(),
            PathOptions {
                merge_slashes: false,
                allow_semicolons: true,
            },
            PathOptions {
                merge_slashes: true,
                allow_semicolons: true,
            },
            PathOptions {
                merge_slashes: false,
                allow_semicolons: false,
            },
        ];
        // Every path of up to five bytes from the alphabet, after a leading `/`.
        let mut paths: Vec<Vec<u8>> = vec![b"/".to_vec()];
        let mut frontier = paths.clone();
        for _ in 0..4 {
            let mut next = Vec::new();
            for path in &frontier {
                for &byte in alphabet {
                    let mut longer = path.clone();
                    longer.push(byte);
                    next.push(longer);
                }
            }
            paths.extend(next.iter().cloned());
            frontier = next;
        }
        let mut plain = 0;
        for path in &paths {
            if !is_plain(path) {
                continue;
            }
            plain += 1;
            for option in options {
                assert!(
                    is_canonical(path, option),
                    "{:?}",
                    String::from_utf8_lossy(path)
                );
            }
        }
        assert!(plain > 1000, "{plain}");
        for refused in [
            &b"/a//b"[..],
            b"/a/./b",
            b"/a/b.",
            b"/a%41",
            b"/a;b",
            b"a/b",
            b"",
        ] {
            assert!(!is_plain(refused), "{:?}", String::from_utf8_lossy(refused));
        }
    }
    use PathRefusal::*;

    /// Default options: slashes merged, semicolons refused.
    const D: PathOptions = PathOptions {
        merge_slashes: true,
        allow_semicolons: false,
    };
    /// Semicolons allowed.
    const S: PathOptions = PathOptions {
        merge_slashes: true,
        allow_semicolons: true,
    };
    /// Slashes kept (not merged).
    const K: PathOptions = PathOptions {
        merge_slashes: false,
        allow_semicolons: false,
    };
    /// Slashes kept and semicolons allowed.
    const KS: PathOptions = PathOptions {
        merge_slashes: false,
        allow_semicolons: true,
    };

    type Case = (
        &'static [u8],
        PathOptions,
        Result<&'static str, PathRefusal>,
    );

    const CASES: &[Case] = &[
        // Empty and absolute.
        (b"", D, Ok("/")),
        (b"/", D, Ok("/")),
        (b"*", D, Err(NotAbsolute)),
        (b"a/b", D, Err(NotAbsolute)),
        (b"admin", D, Err(NotAbsolute)),
        (b"%2Fadmin", D, Err(NotAbsolute)),
        (b"/admin", D, Ok("/admin")),
        (b"/admin/", D, Ok("/admin/")),
        (b"/ADMIN", D, Ok("/ADMIN")),
        (b"/a/b/c.html", D, Ok("/a/b/c.html")),
        // Dot-segments, raw and encoded.
        (b"/public/../admin", D, Ok("/admin")),
        (b"/public/%2e%2e/admin", D, Ok("/admin")),
        (b"/public/.%2E/admin", D, Ok("/admin")),
        (b"/public/%2E%2e/admin", D, Ok("/admin")),
        (b"/public/%2E./admin", D, Ok("/admin")),
        (b"/admin/.", D, Ok("/admin/")),
        (b"/./admin", D, Ok("/admin")),
        (b"/a/b/..", D, Ok("/a/")),
        (b"/a/..", D, Ok("/")),
        (b"/a/./b/./c", D, Ok("/a/b/c")),
        (b"/.", D, Ok("/")),
        (b"/a/%2e", D, Ok("/a/")),
        (b"/a/b/../../c", D, Ok("/c")),
        (b"/..", D, Err(AboveRoot)),
        (b"/a/../..", D, Err(AboveRoot)),
        (b"/a/../../b", D, Err(AboveRoot)),
        (b"/%2e%2e/x", D, Err(AboveRoot)),
        (b"/.../x", D, Err(TrailingDotOrSpace)),
        (b"/.hidden", D, Ok("/.hidden")),
        (b"/a./b", D, Err(TrailingDotOrSpace)),
        (b"/..a/b..", D, Err(TrailingDotOrSpace)),
        (b"/..a/b", D, Ok("/..a/b")),
        (b"/admin.", D, Err(TrailingDotOrSpace)),
        (b"/admin%2e/x", D, Err(TrailingDotOrSpace)),
        (b"/admin%20", D, Err(TrailingDotOrSpace)),
        (b"/admin%20/x", D, Err(TrailingDotOrSpace)),
        (b"/admin.;x", S, Err(TrailingDotOrSpace)),
        (b"/a%20b", D, Ok("/a%20b")),
        (b"/v1.2/x", D, Ok("/v1.2/x")),
        (b"/%2e%2e%2e/x", D, Err(TrailingDotOrSpace)),
        // Percent-encoding.
        (b"/%61dmin", D, Ok("/admin")),
        (b"/%41%42", D, Ok("/AB")),
        (b"/%7e", D, Ok("/~")),
        (b"/%7E", D, Ok("/~")),
        (b"/%2d%2E%5f%7e%30%39%7a", D, Ok("/-._~09z")),
        (b"/caf%c3%a9", D, Ok("/caf%C3%A9")),
        (b"/caf%C3%A9", D, Ok("/caf%C3%A9")),
        (b"/%20", D, Err(TrailingDotOrSpace)),
        (b"/100%25", D, Ok("/100%25")),
        (b"/a%25/b", D, Ok("/a%25/b")),
        (b"/%25zz", D, Ok("/%25zz")),
        (b"/%25a", D, Ok("/%25a")),
        (b"/a%23b", D, Err(EncodedDelimiter)),
        // Non-ASCII: valid UTF-8, and nothing that folds or normalizes to ASCII.
        (b"/public/%c0%ae%c0%ae/admin", D, Err(InvalidUtf8)),
        (b"/public/..%c0%afadmin", D, Err(InvalidUtf8)),
        (b"/public/%e0%80%ae/admin", D, Err(InvalidUtf8)),
        (b"/public/%ff/admin", D, Err(InvalidUtf8)),
        (b"/public/%ED%A0%80", D, Err(InvalidUtf8)),
        (b"/%C3", D, Err(InvalidUtf8)),
        (b"/%C3a", D, Err(InvalidUtf8)),
        (b"/Doc%C5%BF/secret", D, Err(Confusable)),
        (b"/adm%C4%B1n", D, Err(Confusable)),
        (b"/%E2%84%AAelvin", D, Err(Confusable)),
        (b"/%C4%B0", D, Err(Confusable)),
        (b"/public/%EF%BC%8E%EF%BC%8E/admin", D, Err(Confusable)),
        (b"/%EF%BD%81dmin", D, Err(Confusable)),
        (b"/%E2%80%A4%E2%80%A4/x", D, Err(Confusable)),
        // Default-ignorable code points, which NFKC_Casefold deletes, and a capital sharp s
        // that case folding makes `ss`.
        (b"/ad%C2%ADmin", D, Err(Confusable)),
        (b"/ad%E2%80%8Bmin", D, Err(Confusable)),
        (b"/admin%EF%BB%BF", D, Err(Confusable)),
        (b"/a%CD%8Fdmin", D, Err(Confusable)),
        (b"/cla%E1%BA%9E", D, Err(Confusable)),
        (
            b"/caf%C3%A9/%E6%97%A5%E6%9C%AC",
            D,
            Ok("/caf%C3%A9/%E6%97%A5%E6%9C%AC"),
        ),
        (b"/%D0%B0%D0%B1", D, Ok("/%D0%B0%D0%B1")),
        (b"/admin%3Fx", D, Err(EncodedDelimiter)),
        (b"/admin%3f", D, Err(EncodedDelimiter)),
        (b"/static/..%3F", D, Err(EncodedDelimiter)),
        (b"/%5b%5D%7c", D, Ok("/%5B%5D%7C")),
        (b"/%21%40%3a", D, Ok("/%21%40%3A")),
        (b"/%", D, Err(InvalidEncoding)),
        (b"/%4", D, Err(InvalidEncoding)),
        (b"/a%zz", D, Err(InvalidEncoding)),
        (b"/%4g", D, Err(InvalidEncoding)),
        (b"/a%g4", D, Err(InvalidEncoding)),
        (b"/admin%2F..", D, Err(EncodedSlash)),
        (b"/a%2fb", D, Err(EncodedSlash)),
        (b"/a/..%2f", D, Err(EncodedSlash)),
        (b"/admin%5c", D, Err(Backslash)),
        (b"/admin%5C", D, Err(Backslash)),
        (b"/a%00", D, Err(ControlCharacter)),
        (b"/a%0a", D, Err(ControlCharacter)),
        (b"/a%1F", D, Err(ControlCharacter)),
        (b"/a%7f", D, Err(ControlCharacter)),
        (b"/a%3bx", D, Err(Semicolon)),
        (b"/a%3bx", S, Ok("/a%3Bx")),
        (b"/a%3Bx", S, Ok("/a%3Bx")),
        // Double encoding.
        (b"/%252e%252e/admin", D, Err(DoubleEncoding)),
        (b"/%252F", D, Err(DoubleEncoding)),
        (b"/%2541", D, Err(DoubleEncoding)),
        (b"/%25%32%65", D, Err(DoubleEncoding)),
        (b"/%25%32e", D, Err(DoubleEncoding)),
        (b"/%25%2e", D, Err(TrailingDotOrSpace)),
        (b"/%25%C3%A9", D, Ok("/%25%C3%A9")),
        // Raw bytes.
        (b"/a\\b", D, Err(Backslash)),
        (b"/a\x00", D, Err(ControlCharacter)),
        (b"/a\nb", D, Err(ControlCharacter)),
        (b"/a\tb", D, Err(ControlCharacter)),
        (b"/a\x7f", D, Err(ControlCharacter)),
        (b"/a b", D, Err(InvalidCharacter)),
        (b"/a#b", D, Err(InvalidCharacter)),
        (b"/a?b", D, Err(InvalidCharacter)),
        (b"/caf\xc3\xa9", D, Ok("/caf%C3%A9")),
        (b"/\xff\x80", D, Err(InvalidUtf8)),
        (b"/a|b", D, Ok("/a%7Cb")),
        (b"/a\"b<c>d", D, Ok("/a%22b%3Cc%3Ed")),
        (b"/a^b`c{d}e", D, Ok("/a%5Eb%60c%7Bd%7De")),
        (b"/a[b]", D, Ok("/a%5Bb%5D")),
        (b"/!$&'()*+,=:@-._~", D, Ok("/!$&'()*+,=:@-._~")),
        // Semicolons.
        (b"/admin;x", D, Err(Semicolon)),
        (b"/admin;x", S, Ok("/admin;x")),
        (b"/..;/admin", D, Err(Semicolon)),
        (b"/..;/admin", S, Err(Semicolon)),
        (b"/a/..;x/b", S, Err(Semicolon)),
        (b"/.;/admin", S, Err(Semicolon)),
        (b"/a/%2e;x/b", S, Err(Semicolon)),
        (b"/a/%2E%2e%3bx/b", S, Err(Semicolon)),
        (b"/a/;x/../admin", S, Err(Semicolon)),
        (b"/a;x/../b", S, Ok("/b")),
        (b"/a;x/.;y", S, Err(Semicolon)),
        (b"/a/...;x", S, Err(TrailingDotOrSpace)),
        (b"/a;jsessionid=1/b;v=2", S, Ok("/a;jsessionid=1/b;v=2")),
        // Slashes.
        (b"//admin", D, Ok("/admin")),
        (b"/a///b//", D, Ok("/a/b/")),
        (b"///", D, Ok("/")),
        (b"/a/.//b", D, Ok("/a/b")),
        (b"//admin", K, Ok("//admin")),
        (b"/a//../b", K, Ok("/a/b")),
        (b"/a///b//", K, Ok("/a///b//")),
        (b"//..", K, Ok("/")),
        (b"//../..", K, Err(AboveRoot)),
        (b"/a//./b", K, Ok("/a//b")),
        (b"//%61//", K, Ok("//a//")),
        (b"//a;b//", KS, Ok("//a;b//")),
        (b"//..;//", KS, Err(Semicolon)),
        // Mixed and long.
        (b"//public/./..//%61dmin/", D, Ok("/admin/")),
        (b"/public/%2e%2E/%2e%2e/admin", D, Err(AboveRoot)),
        (b"/api/v1/users/%7euser/../%41", D, Ok("/api/v1/users/A")),
        (b"/public/..%2Fadmin", D, Err(EncodedSlash)),
        (
            b"/static/%c3%a9t%C3%A9/./x%20y/",
            D,
            Ok("/static/%C3%A9t%C3%A9/x%20y/"),
        ),
        (
            b"/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/0/1/2/3/4/5/6/7/8/9",
            D,
            Ok("/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/0/1/2/3/4/5/6/7/8/9"),
        ),
        (b"/a/b/c/d/e/f/g/h/../../../../../../../../x", D, Ok("/x")),
        (
            b"/a/b/c/d/e/f/g/h/../../../../../../../../../x",
            D,
            Err(AboveRoot),
        ),
    ];

    fn shown(input: &[u8]) -> String {
        input.escape_ascii().to_string()
    }

    #[test]
    fn table() {
        assert!(CASES.len() >= 70, "only {} rows", CASES.len());
        let failures: Vec<String> = CASES
            .iter()
            .filter_map(|&(input, options, expected)| {
                let got = canonical_path(input, options);
                let same = got.as_deref().map_err(|refusal| *refusal) == expected;
                (!same).then(|| format!("{} {options:?}: {got:?} != {expected:?}", shown(input)))
            })
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn outputs_are_borrowed_fixed_points() {
        for &(input, options, expected) in CASES {
            let Ok(output) = expected else { continue };
            let again = canonical_path(output.as_bytes(), options);
            assert!(
                matches!(again, Ok(Cow::Borrowed(path)) if path == output),
                "{} -> {output} -> {again:?}",
                shown(input)
            );
        }
    }

    #[test]
    fn non_ascii_paths_take_the_slow_path_and_come_back_borrowed() {
        for input in [&b"/caf%C3%A9"[..], b"/a%20b%C3%A9", b"/%E6%97%A5"] {
            assert!(!is_canonical(input, D), "{}", shown(input));
            let got = canonical_path(input, D);
            assert!(
                matches!(got, Ok(Cow::Borrowed(_))),
                "{} -> {got:?}",
                shown(input)
            );
        }
    }

    #[test]
    fn canonical_inputs_come_back_borrowed() {
        let canonical: &[(&[u8], PathOptions)] = &[
            (b"/", D),
            (b"/admin", D),
            (b"/a/b/", D),
            (b"/.hidden/x.y", D),
            (b"/100%25", D),
            (b"/a%20b", D),
            (b"/admin;x", S),
            (b"/a%3Bb", S),
            (b"//a//", K),
        ];
        for &(input, options) in canonical {
            let got = canonical_path(input, options);
            let Ok(Cow::Borrowed(path)) = got else {
                panic!("{} -> {got:?}", shown(input));
            };
            assert_eq!(path.as_ptr(), input.as_ptr(), "{}", shown(input));
            assert!(
                is_canonical(input, options),
                "fast path missed {}",
                shown(input)
            );
        }
    }

    #[test]
    fn fast_path_never_accepts_a_changing_path() {
        let all = [D, S, K, KS];
        for &(input, _, _) in CASES {
            for options in all {
                if is_canonical(input, options) {
                    let expected = std::str::from_utf8(input).map(String::from).ok();
                    assert_eq!(rewrite(input, options).ok(), expected, "{}", shown(input));
                }
            }
        }
    }

    #[test]
    fn exhaustive_short_paths_are_stable() {
        let alphabet = b"/.%2e5Fa;";
        let mut path = vec![b'/'; 5];
        let n = alphabet.len();
        for index in 0..n.pow(4) {
            for (position, slot) in path[1..].iter_mut().enumerate() {
                *slot = alphabet[index / n.pow(position as u32) % n];
            }
            for options in [D, S, K, KS] {
                check_stable(&path, options);
            }
        }
    }

    fn check_stable(path: &[u8], options: PathOptions) {
        if is_canonical(path, options) {
            let expected = std::str::from_utf8(path).ok();
            assert_eq!(rewrite(path, options).ok().as_deref(), expected);
        }
        if let Ok(output) = canonical_path(path, options) {
            let again = canonical_path(output.as_bytes(), options);
            assert!(
                matches!(again, Ok(Cow::Borrowed(p)) if p == output),
                "{} -> {output} -> {again:?} ({options:?})",
                shown(path)
            );
        }
    }

    #[test]
    fn very_long_paths() {
        let depth = 10_000;
        let down = "/seg".repeat(depth);
        assert!(matches!(
            canonical_path(down.as_bytes(), D),
            Ok(Cow::Borrowed(_))
        ));
        let up = format!("{down}{}", "/..".repeat(depth));
        assert_eq!(canonical_path(up.as_bytes(), D).as_deref(), Ok("/"));
        let above = format!("{up}/..");
        assert_eq!(canonical_path(above.as_bytes(), D), Err(AboveRoot));
    }

    #[test]
    fn default_options_and_messages() {
        assert_eq!(PathOptions::default(), D);
        let all = [
            NotAbsolute,
            InvalidEncoding,
            EncodedSlash,
            Backslash,
            ControlCharacter,
            InvalidCharacter,
            DoubleEncoding,
            Semicolon,
            AboveRoot,
        ];
        for (i, refusal) in all.iter().enumerate() {
            let message = refusal.message();
            assert!(message.starts_with("The request path") && message.ends_with('.'));
            assert!(all[..i].iter().all(|other| other.message() != message));
        }
    }
}
