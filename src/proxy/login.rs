//! Browser login at the edge, the proxy's half: a route with `auth.login: true` answers a
//! browser navigation that has no usable credentials with a 302 to the hosted-backend login
//! (`{login.basePath}/login/{applicationId}?redirect_uri={canonical path and query}`), which
//! the identity-provider plugin serves. Everything else keeps its 401: a request is a
//! navigation only when it is a `GET` or `HEAD`, accepts `text/html`, has no
//! `X-Requested-With`, and its `Sec-Fetch-Mode` is absent or `navigate` (so `fetch`, XHR and
//! API clients are never redirected). A transparent refresh runs before this (an expired token
//! with a refresh cookie is refreshed, not redirected).

use http::{HeaderMap, Method};

/// True when the request looks like a browser navigating to a page.
pub fn navigation(method: &Method, headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let page = matches!(*method, Method::GET | Method::HEAD);
    let html = headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/html"));
    let scripted = headers.contains_key("x-requested-with");
    let mode_ok = text("sec-fetch-mode").is_none_or(|m| m.eq_ignore_ascii_case("navigate"));
    page && html && !scripted && mode_ok
}

/// The login redirect for `path` (canonical) and `query` (as sent): `login_path` with
/// `redirect_uri` the form-encoded path and query. A query byte a URL cannot carry as it is
/// (a control, a space, a non-ASCII byte, `\`, `"`, `<`, `>`, `` ` ``, `{`, `|`, `}`, `^`) is
/// percent-encoded, which a page reads the same, so the login accepts the target and the
/// browser comes back to the page it asked for.
pub fn location(login_path: &str, path: &str, query: Option<&str>) -> String {
    let target = match query {
        Some(q) => format!("{path}?{}", url_safe(q)),
        None => path.to_string(),
    };
    let encoded: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
    format!("{login_path}?redirect_uri={encoded}")
}

/// `query` with each byte a URL cannot carry as it is percent-encoded (`%` itself is kept).
fn url_safe(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    for byte in query.bytes() {
        let plain = byte.is_ascii_graphic() && !b"\\\"<>`{|}^".contains(&byte);
        if plain {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("header"));
        }
        map
    }

    #[test]
    fn only_browser_navigations_are_redirected() {
        let html = ("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
        assert!(navigation(&Method::GET, &headers(&[html])));
        assert!(navigation(
            &Method::HEAD,
            &headers(&[html, ("sec-fetch-mode", "navigate")])
        ));
        assert!(!navigation(&Method::POST, &headers(&[html])));
        assert!(!navigation(
            &Method::GET,
            &headers(&[("accept", "application/json")])
        ));
        assert!(!navigation(&Method::GET, &headers(&[])));
        assert!(!navigation(
            &Method::GET,
            &headers(&[html, ("x-requested-with", "XMLHttpRequest")])
        ));
        assert!(!navigation(
            &Method::GET,
            &headers(&[html, ("sec-fetch-mode", "cors")])
        ));
        assert!(!navigation(
            &Method::GET,
            &headers(&[html, ("sec-fetch-mode", "no-cors")])
        ));
    }

    #[test]
    fn the_target_is_the_path_and_query_encoded() {
        assert_eq!(
            location("/app/login/a", "/docs/x", Some("q=1&r=/b")),
            "/app/login/a?redirect_uri=%2Fdocs%2Fx%3Fq%3D1%26r%3D%2Fb"
        );
        assert_eq!(
            location("/app/login/a", "/", None),
            "/app/login/a?redirect_uri=%2F"
        );
        // Bytes a URL cannot carry are encoded before the whole is form-encoded.
        assert_eq!(
            url_safe("q=caf\u{e9} x\\y&z=\"<a>\"%41"),
            "q=caf%C3%A9%20x%5Cy&z=%22%3Ca%3E%22%41"
        );
        assert_eq!(
            location("/app/login/a", "/p", Some("x=\\")),
            "/app/login/a?redirect_uri=%2Fp%3Fx%3D%255C"
        );
    }
}
