//! Browser login at the edge, the proxy's half: a route with `auth.login: true` answers a
//! browser navigation that has no usable credentials with a 302 to the hosted-backend login
//! (`{login.basePath}/login/{applicationId}?redirect_uri={canonical path and query}`), which
//! the identity-provider plugin serves. Everything else keeps its 401: a request is a
//! navigation only when it is a `GET` or `HEAD`, accepts `text/html`, has no
//! `X-Requested-With`, and its `Sec-Fetch-Mode` is absent or `navigate` (so `fetch`, XHR and
//! API clients are never redirected). A transparent refresh runs before this (an expired token
//! with a refresh cookie is refreshed, not redirected).

use http::{HeaderMap, Method};

/// True when the request looks like a browser navigating to a page: a `GET` or `HEAD` that
/// [`is_navigation`] reads as a navigation (the same rule as `loginUrl` redirects).
pub fn navigation(method: &Method, headers: &HeaderMap) -> bool {
    matches!(*method, Method::GET | Method::HEAD) && is_navigation(headers)
}

/// True when the request is a browser's navigation to a page, the only request a login page
/// is any use to: its `Accept` names `text/html` (with a q-value above 0), and nothing marks
/// it as a script's (`X-Requested-With`, sent by jQuery and other XHR libraries, or a
/// `Sec-Fetch-Mode` other than `navigate`, sent by every current browser). A script's
/// `fetch` or XHR gets the 401: it would follow a redirect to a page it cannot use.
pub fn is_navigation(headers: &http::HeaderMap) -> bool {
    if headers.contains_key("x-requested-with") {
        return false;
    }
    let navigates = headers
        .get_all("sec-fetch-mode")
        .iter()
        .all(|mode| mode.as_bytes().eq_ignore_ascii_case(b"navigate"));
    navigates
        && headers
            .get_all(http::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(accepts_html)
}

/// True when one media range of an `Accept` header is `text/html` with a q-value other than 0.
fn accepts_html(range: &str) -> bool {
    let mut parts = range.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|media| media.eq_ignore_ascii_case("text/html"))
    {
        return false;
    }
    !parts.any(|param| {
        param.split_once('=').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("q")
                && value.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
        })
    })
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
        // The method and `Accept` rules beyond it: see the next test.
        assert!(!navigation(
            &Method::GET,
            &headers(&[("accept", "text/html;q=0")])
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

    #[test]
    fn only_a_browser_navigation_is_sent_to_the_login_page() {
        let page = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        for (pairs, navigation) in [
            (vec![("accept", page)], true),
            (vec![("accept", "TEXT/HTML")], true),
            (vec![("accept", page), ("sec-fetch-mode", "navigate")], true),
            (
                vec![("accept", "application/json"), ("accept", "text/html")],
                true,
            ),
            // Scripts: XHR libraries, fetch in cors/same-origin/no-cors mode.
            (
                vec![("accept", page), ("x-requested-with", "XMLHttpRequest")],
                false,
            ),
            (vec![("accept", page), ("sec-fetch-mode", "cors")], false),
            (
                vec![("accept", "text/html"), ("sec-fetch-mode", "same-origin")],
                false,
            ),
            // No page wanted: JSON, anything, or text/html refused by its q-value.
            (vec![("accept", "application/json, text/plain, */*")], false),
            (vec![("accept", "*/*")], false),
            (vec![("accept", "application/json, text/html;q=0")], false),
            (vec![("accept", "text/html; q=0.000")], false),
            (vec![("accept", "text/html-fragment")], false),
            (vec![("accept", "text/htmlx")], false),
            (vec![], false),
        ] {
            assert_eq!(is_navigation(&headers(&pairs)), navigation, "{pairs:?}");
        }
    }
}
