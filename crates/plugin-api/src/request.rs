//! The request a plugin receives: a plain value, no proxy types, and the readers of its parts
//! (JSON body, query and form parameters; the token credentials through
//! [`crate::credentials`], the reader the edge uses too; the client address as the host read
//! it).

use std::collections::HashMap;
use std::net::IpAddr;

use http::{HeaderMap, Method};
use serde::de::DeserializeOwned;

use crate::credentials::{Credentials, OtherScheme};
use crate::error::ApiError;

/// An HTTP request routed to a plugin, with its body already read (within the size limit).
#[derive(Debug, Clone)]
pub struct PluginRequest {
    /// The request method.
    pub method: Method,
    /// The path, without the query string.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// The request headers as the client sent them.
    pub headers: HeaderMap,
    /// The request body.
    pub body: Vec<u8>,
    /// The client's address as the host read it: the connection's peer, or, behind proxies
    /// the host is configured to trust, the address they forwarded. Never a client's own
    /// claim.
    pub client_address: Option<IpAddr>,
    /// True when the request arrived over TLS.
    pub tls: bool,
    /// Values of the `{name}` segments of the matched route template.
    pub path_params: HashMap<String, String>,
}

impl PluginRequest {
    /// A request with the given method and path (query string split off), no headers, no body.
    pub fn new(method: Method, path_and_query: &str) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (path_and_query.to_string(), String::new()),
        };
        PluginRequest {
            method,
            path,
            query,
            headers: HeaderMap::new(),
            body: Vec::new(),
            client_address: None,
            tls: false,
            path_params: HashMap::new(),
        }
    }

    /// The value of header `name` as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first value of query parameter `name`, percent-decoded; `None` when it is absent or
    /// its value says "no value" (see [`is_given`]).
    pub fn query_param(&self, name: &str) -> Option<String> {
        parse_form(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .filter(|v| is_given(v))
    }

    /// The first value of query parameter `name` as written, percent-decoded; `None` when it is
    /// absent or empty. For free text that may be the word `null` (a username, an email, a
    /// provider's user id) and for the OAuth parameters a provider or browser sends; an API
    /// parameter is read with [`Self::query_param`].
    pub fn query_text(&self, name: &str) -> Option<String> {
        parse_form(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty())
    }

    /// The body parsed as `application/x-www-form-urlencoded`, when that is its Content-Type.
    pub fn form_params(&self) -> Vec<(String, String)> {
        let is_form = self
            .header("content-type")
            .map(|ct| {
                ct.to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            })
            .unwrap_or(false);
        if !is_form {
            return Vec::new();
        }
        parse_form(&String::from_utf8_lossy(&self.body))
    }

    /// A parameter from the query string, else from a form-encoded body; `None` when absent or
    /// it says "no value" (see [`is_given`]).
    pub fn param(&self, name: &str) -> Option<String> {
        self.query_param(name)
            .or_else(|| self.form_param(name).filter(|v| is_given(v)))
    }

    /// A parameter from the query string, else from a form body, as written ([`Self::query_text`]:
    /// only empty is absent).
    pub fn param_text(&self, name: &str) -> Option<String> {
        self.query_text(name)
            .or_else(|| self.form_param(name).filter(|v| !v.is_empty()))
    }

    /// The first value of `name` in a form-encoded body, as written.
    fn form_param(&self, name: &str) -> Option<String> {
        self.form_params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Checks the parameters a handler may read as text — the query string's, a form body's
    /// and the path's `{name}` segments — before any handler runs: a name or value holding a
    /// control character (U+0000–U+001F, U+007F–U+009F; a NUL is what PostgreSQL cannot take
    /// in a query, and none belongs in an email, a username, an id, a URL or an OAuth
    /// parameter) is a 400 `[invalid]<name>`, so a lookup answers the same on every store. The
    /// host calls it for every plugin request. The message never contains the value, and the
    /// name only as [`crate::error::safe_field_name`] shows it.
    pub fn check_parameters(&self) -> Result<(), ApiError> {
        let path = self
            .path_params
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str(), "path segment"));
        let query = parse_form(&self.query);
        let form = self.form_params();
        let pairs = query
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str(), "query parameter"))
            .chain(
                form.iter()
                    .map(|(name, value)| (name.as_str(), value.as_str(), "form parameter")),
            )
            .chain(path);
        for (name, value, place) in pairs {
            if name.chars().chain(value.chars()).any(char::is_control) {
                let shown = crate::error::safe_field_name(name);
                return Err(ApiError::field(
                    name,
                    "invalid",
                    format!("The {shown} {place} holds a control character."),
                ));
            }
        }
        Ok(())
    }

    /// The value of a `{name}` path segment.
    pub fn path_param(&self, name: &str) -> Option<&str> {
        self.path_params.get(name).map(String::as_str)
    }

    /// The request's token credentials, read with the edge's rules
    /// ([`crate::credentials::read`], an `Authorization` header of another scheme being an API
    /// key): one access token (Bearer header or `access_token` cookie), one `refresh_token`
    /// cookie. A 400 `[AmbiguousRequest]` when they could be read two ways (two different
    /// cookies of one name, a Bearer token and a cookie that differ, a look-alike cookie name,
    /// a cookie hidden after a `,`, two `Authorization` headers…), as at the edge.
    pub fn credentials(&self) -> Result<Credentials<'_>, ApiError> {
        crate::credentials::read(&self.headers, OtherScheme::ApiKey)
            .map_err(|ambiguity| ApiError::general("[AmbiguousRequest]", ambiguity.message()))
    }

    /// The token of an `Authorization: Bearer …` header (scheme case-insensitive, read by
    /// [`crate::credentials::bearer_token`]); `None` for another scheme, a `Bearer` without a
    /// token, or no header. Only tells an API key from a JWT: the JWT itself is [`Self::jwt`].
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let token = crate::credentials::bearer_token(value.as_bytes())?;
        std::str::from_utf8(token).ok().filter(|t| !t.is_empty())
    }

    /// The JWT of the request: the `Authorization: Bearer` token, else the `access_token`
    /// cookie; `Ok(None)` without either, and the 400 of [`PluginRequest::credentials`] when
    /// they are ambiguous. A token that is not text is returned empty (it verifies as nothing).
    pub fn jwt(&self) -> Result<Option<&str>, ApiError> {
        Ok(self.credentials()?.access_token.map(as_text))
    }

    /// The `refresh_token` cookie (non-empty); the 400 of [`PluginRequest::credentials`] when
    /// the credentials are ambiguous. A value that is not text is returned empty.
    pub fn refresh_cookie(&self) -> Result<Option<&str>, ApiError> {
        Ok(self.credentials()?.refresh_token.map(as_text))
    }

    /// The body as a JSON value of any shape (a JSON Patch is an array), parsed and checked
    /// against the document limits ([`crate::json`]); a 400 with Errors JSON otherwise, and a
    /// 415 when the request does not declare it JSON ([`PluginRequest::declares_json`]).
    pub fn json_value(&self) -> Result<serde_json::Value, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::general(
                "[invalid]",
                "The request body is empty but this API requires a JSON body.",
            ));
        }
        if !self.declares_json() {
            return Err(ApiError::UnsupportedMediaType);
        }
        crate::json::parse(&self.body)
    }

    /// True when the request has exactly one `Content-Type` and it is JSON: `application/json`
    /// or an `application/…+json` type (JSON Patch, merge patch), with any parameters.
    ///
    /// A body of another type is never read as JSON: `text/plain`, forms and multipart are
    /// what a cross-site HTML form or a no-CORS `fetch` can send, so taking them would let
    /// another site log a browser in or act for it (login CSRF).
    pub fn declares_json(&self) -> bool {
        let mut values = self.headers.get_all(http::header::CONTENT_TYPE).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().is_ok_and(is_json_media_type),
            _ => false,
        }
    }

    /// The body parsed as a JSON object into `T`; a 400 with Errors JSON when it is malformed,
    /// not an object (`[]`, `"x"`, `1`, `null`), over the limits, or mistyped — naming the
    /// property at fault, never echoing a value the client sent.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let value = self.json_value()?;
        if !value.is_object() {
            return Err(ApiError::general(
                "[invalidJSON]",
                "Invalid JSON in the request body. The body must be a JSON object.",
            ));
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let error = crate::json::sanitized(&e.inner().to_string());
            let message = match e.path().to_string() {
                path if path == "." => {
                    format!("Invalid JSON in the request body. The error was [{error}].")
                }
                path => format!(
                    "Invalid JSON in the request body. The property was [{path}]. The error was [{error}]."
                ),
            };
            ApiError::general("[invalidJSON]", message)
        })
    }

    /// The body parsed as JSON when there is one, else `T::default()`.
    pub fn json_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            Ok(T::default())
        } else {
            self.json()
        }
    }

    /// The client's address as text ([`PluginRequest::client_address`]).
    pub fn client_ip(&self) -> Option<String> {
        self.client_address.map(|ip| ip.to_string())
    }
}

/// The bytes of a token as text; empty when they are not UTF-8 (no token is valid then).
fn as_text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

/// True for `application/json` and `application/<subtype>+json`, parameters allowed, case
/// insensitive.
pub fn is_json_media_type(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = media_type.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5
                && subtype
                    .get(subtype.len() - 5..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case("+json")))
}

/// Whether a query or form parameter's `value` gives a value. Empty is no value (as in
/// FusionAuth, which reads empty parameters as null), and so are the exact words `null` and
/// `undefined`: FusionAuth's TypeScript client writes every argument of a call into the query
/// string, a `null` or omitted one as that word, and its documented calls rely on it
/// (`revokeRefreshToken(token)` sends `token=…&userId=undefined&applicationId=undefined`,
/// `revokeRefreshToken(null, userId)` sends `token=null&userId=…`). Neither word is a UUID, a
/// refresh token, a key id, an email or a provider type, so no parameter the API reads loses a
/// value it could name.
pub fn is_given(value: &str) -> bool {
    !matches!(value, "" | "null" | "undefined")
}

/// Parses `a=1&b=two` as `application/x-www-form-urlencoded` (`+` is a space,
/// percent-encodings are decoded, bytes that are not UTF-8 become U+FFFD), in order; empty
/// pairs are skipped.
pub fn parse_form(input: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(input.as_bytes())
        .into_owned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_query_are_parsed() {
        let mut req = PluginRequest::new(Method::GET, "/x");
        req.headers.insert(
            http::header::COOKIE,
            http::HeaderValue::from_bytes(b"theme=\xc3\xa9\xff; access_token=\"xyz\"")
                .expect("header"),
        );
        assert_eq!(req.jwt().expect("one reading"), Some("xyz"));
        assert_eq!(req.refresh_cookie().expect("one reading"), None);
        // Two access_token cookies that differ: one reading only, as at the edge.
        req.headers.append(
            http::header::COOKIE,
            http::HeaderValue::from_static("access_token=other"),
        );
        assert_eq!(req.jwt().map_err(|e| e.status()), Err(400));
        let req = PluginRequest::new(Method::GET, "/x?applicationId=a%2Db&x=1+2&empty=");
        assert_eq!(req.query_param("applicationId").as_deref(), Some("a-b"));
        assert_eq!(req.query_param("x").as_deref(), Some("1 2"));
        assert_eq!(req.query_param("empty"), None);
        // The TypeScript client's words for an argument it was not given.
        let req = PluginRequest::new(Method::GET, "/x?a=null&b=undefined&c=Null&d=nulls");
        assert_eq!(req.query_param("a"), None);
        assert_eq!(req.query_param("b"), None);
        assert_eq!(req.query_param("c").as_deref(), Some("Null"));
        assert_eq!(req.query_param("d").as_deref(), Some("nulls"));
        assert_eq!(req.query_text("a").as_deref(), Some("null"));
        assert_eq!(req.query_text("b").as_deref(), Some("undefined"));
        let form = parse_form("a=%&b=%4&c=%zz&d=%41&&e");
        assert_eq!(
            form,
            [("a", "%"), ("b", "%4"), ("c", "%zz"), ("d", "A"), ("e", "")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn a_parameter_with_a_control_character_is_a_400_naming_it() {
        let field_code = |req: &PluginRequest| match req.check_parameters() {
            Ok(()) => None,
            Err(ApiError::BadRequest(errors)) => {
                let body = serde_json::to_value(&errors).expect("json");
                assert!(!body.to_string().contains("a\\u0000b"), "{body}");
                let (field, items) = body["fieldErrors"]
                    .as_object()
                    .and_then(|f| f.iter().next())
                    .expect("a field error");
                Some(format!(
                    "{field} {}",
                    items[0]["code"].as_str().unwrap_or("")
                ))
            }
            Err(other) => panic!("{other:?}"),
        };
        for (query, refused) in [
            ("email=a%00b", "email [invalid]email"),
            ("username=x&loginId=a%0Ab", "loginId [invalid]loginId"),
            (
                "identityProviderUserId=%7F",
                "identityProviderUserId [invalid]identityProviderUserId",
            ),
            ("state=%C2%85", "state [invalid]state"),
            ("%00=1", "? [invalid]?"),
            ("x<y>%01=1", "? [invalid]?"),
        ] {
            let req = PluginRequest::new(Method::GET, &format!("/api/user?{query}"));
            assert_eq!(field_code(&req).as_deref(), Some(refused), "{query}");
        }
        for query in ["email=a%40b.c", "q=%E2%80%8B+%C3%A9", "x=%", "", "a&&b="] {
            let req = PluginRequest::new(Method::GET, &format!("/api/user?{query}"));
            assert_eq!(field_code(&req), None, "{query}");
        }
        let mut form = PluginRequest::new(Method::DELETE, "/api/jwt/refresh");
        form.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        form.body = b"token=a%00b".to_vec();
        assert_eq!(field_code(&form).as_deref(), Some("token [invalid]token"));
        let mut path = PluginRequest::new(Method::GET, "/api/identity-provider/link/pending/x");
        path.path_params
            .insert("pendingLinkId".into(), "a\0b".into());
        assert_eq!(
            field_code(&path).as_deref(),
            Some("pendingLinkId [invalid]pendingLinkId")
        );
    }

    #[test]
    fn client_ip_is_the_address_the_host_read_never_a_header() {
        let mut req = PluginRequest::new(Method::GET, "/x");
        req.client_address = Some("127.0.0.1".parse().expect("ip"));
        req.headers.insert(
            "x-forwarded-for",
            "203.0.113.9, 10.0.0.1".parse().expect("header"),
        );
        assert_eq!(req.client_ip().as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn malformed_json_is_a_400() {
        let mut req = PluginRequest::new(Method::POST, "/x");
        req.headers
            .insert("content-type", "application/json".parse().expect("header"));
        req.body = b"{not json".to_vec();
        let err = req.json::<serde_json::Value>().unwrap_err();
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn only_a_body_declared_json_is_read_as_json() {
        for (content_type, json) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON;charset=UTF-8", true),
            ("application/json-patch+json", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("text/plain; a=application/json", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
            ("text/json", false),
            ("application/jsonx", false),
            ("application/+json", false),
            ("json", false),
            ("", false),
        ] {
            let mut req = PluginRequest::new(Method::POST, "/x");
            req.headers
                .insert("content-type", content_type.parse().expect("header"));
            req.body = b"{}".to_vec();
            assert_eq!(req.declares_json(), json, "{content_type}");
            let read = req.json::<serde_json::Value>().map_err(|e| e.status());
            assert_eq!(read.is_ok(), json, "{content_type}");
            if !json {
                assert_eq!(read, Err(415), "{content_type}");
            }
        }
        // No Content-Type, or two.
        let mut req = PluginRequest::new(Method::POST, "/x");
        req.body = b"{}".to_vec();
        assert!(!req.declares_json());
        req.headers
            .append("content-type", "application/json".parse().expect("header"));
        req.headers
            .append("content-type", "application/json".parse().expect("header"));
        assert!(!req.declares_json());
    }
}
