//! Where the hosted-backend routes may send a browser afterwards (`redirect_uri`,
//! `post_logout_redirect_uri`): a path on the gateway's own origin, or an absolute `http(s)`
//! URL whose origin is `login.publicOrigin` or one of `login.redirects`. Anything a browser or a
//! server could read as another host is refused (no open redirect): `//evil`, `/\evil`,
//! `https:evil`, `http:/evil`, a backslash or a control byte anywhere (browsers turn `\` into
//! `/` and drop tabs and line breaks), the same spelled with percent-encodings (`/%2F%2Fevil`,
//! `/%5Cevil`, `%0d%0a`), user information (`https://app@evil`), other schemes
//! (`javascript:`, `data:`).

use super::AppSettings;

/// The target as it will be sent in `Location`, or `None` when it is not allowed. `target`
/// is the parameter's decoded value.
pub fn allowed(target: &str, settings: &AppSettings) -> Option<String> {
    if unsafe_text(target) {
        return None;
    }
    // What a server that decodes the path once more would read must be safe too. The query
    // and the fragment name no host: their encoded bytes (`?q=%5C`, `?t=a%0Ab`, `?n=%2F%2F`)
    // are the page's own and are kept as they are.
    let path_end = target.find(['?', '#']).unwrap_or(target.len());
    let decoded = percent_decoded(&target[..path_end])?;
    if decoded.chars().any(|c| c == '\\' || c.is_control()) {
        return None;
    }
    if target.starts_with('/') {
        let is_path = |t: &str| t.starts_with('/') && !t.starts_with("//");
        return (is_path(target) && is_path(&decoded)).then(|| target.to_string());
    }
    let absolute = target.starts_with("https://") || target.starts_with("http://");
    if !absolute {
        return None;
    }
    let url = url::Url::parse(target).ok()?;
    if !url.username().is_empty() || url.password().is_some() || url.host_str().is_none() {
        return None;
    }
    let origin = url.origin().ascii_serialization();
    let known = origin == settings.public_origin || settings.redirects.contains(&origin);
    known.then(|| url.to_string())
}

/// The target made absolute on the public origin (a path), as a provider's logout needs it.
pub fn absolute(target: &str, settings: &AppSettings) -> String {
    if target.starts_with('/') {
        format!("{}{target}", settings.public_origin)
    } else {
        target.to_string()
    }
}

/// True for text with a backslash, a control byte, whitespace or a non-ASCII character.
fn unsafe_text(text: &str) -> bool {
    text.is_empty()
        || text
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace() || !c.is_ascii())
}

/// `text` with every `%XX` decoded (as Latin-1 bytes, so a decoded control byte or backslash
/// shows); `None` for a `%` not followed by two hex digits.
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            let byte = u8::from_str_radix(hex, 16).ok()?;
            out.push(char::from(byte));
            i += 3;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AppSettings {
        AppSettings {
            public_origin: "https://app.example".into(),
            base_path: "/app".into(),
            redirects: vec!["https://other.example".into()],
        }
    }

    #[test]
    fn same_origin_paths_and_listed_origins_are_allowed() {
        let s = settings();
        for ok in [
            "/",
            "/dashboard?tab=1#x",
            "/a/b%20c",
            "/p?q=C%3A%5Cdir",
            "/p?t=one%0Atwo",
            "/p?next=%2F%2Fevil.example",
            "/p?a=%25&b=%",
            "/p#%5C",
            "https://app.example/x",
            "https://other.example/",
            "https://other.example",
        ] {
            assert!(allowed(ok, &s).is_some(), "{ok}");
        }
        assert_eq!(
            allowed("https://other.example", &s).as_deref(),
            Some("https://other.example/")
        );
        assert_eq!(absolute("/x", &s), "https://app.example/x");
    }

    #[test]
    fn every_open_redirect_spelling_is_refused() {
        let s = settings();
        for bad in [
            "",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https:evil.example",
            "https:/evil.example",
            "http:evil.example",
            "https://evil.example/",
            "https://app.example.evil.example/",
            "https://app.example@evil.example/",
            "https://user@app.example/",
            "http://app.example/",
            "https://app.example:8443/",
            "/%2F%2Fevil.example",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "/x%0d%0aSet-Cookie:%20a=b",
            "/x\r\nSet-Cookie: a=b",
            "/\tevil",
            "/%",
            "/%zz",
            "/%?q=1",
            "/%2F%2Fevil.example?q=1",
            "/%5Cevil.example#x",
            "/p?q=\\x",
            "/p?q=a b",
            "/p?q=\u{e9}",
            "javascript:alert(1)",
            "data:text/html,x",
            "evil.example",
            " /x",
            "/é",
        ] {
            assert_eq!(allowed(bad, &s), None, "{bad:?}");
        }
    }
}
