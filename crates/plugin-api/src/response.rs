//! The response a plugin returns, and the cookies it sets: plain values the host writes.

use serde::Serialize;

/// The cookie scripts read the access token's expiry from (seconds), set with the token
/// cookies by a login, a refresh through `/app/refresh` and a transparent refresh at the edge.
pub const AT_EXP_COOKIE: &str = "app.at_exp";

/// A cookie to set on the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    /// Cookie name.
    pub name: String,
    /// Cookie value (URL-safe; not quoted).
    pub value: String,
    /// `Max-Age` in seconds; `None` for a session cookie.
    pub max_age: Option<i64>,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `Secure`.
    pub secure: bool,
    /// `Path`.
    pub path: String,
    /// `SameSite` value.
    pub same_site: &'static str,
}

impl Cookie {
    /// An HttpOnly, `Path=/`, `SameSite=Lax` cookie (Lax so the cookie survives a redirect back from a login page).
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Cookie {
            name: name.into(),
            value: value.into(),
            max_age: None,
            http_only: true,
            secure: false,
            path: "/".into(),
            same_site: "Lax",
        }
    }

    /// An HttpOnly cookie living until `expiration_ms` (`Max-Age` counted from `now_ms`, at
    /// least 0): the attributes of the `access_token` and `refresh_token` cookies the gateway
    /// sets.
    pub fn expiring(
        name: &str,
        value: &str,
        expiration_ms: i64,
        now_ms: i64,
        secure: bool,
    ) -> Self {
        let mut cookie = Cookie::new(name, value);
        cookie.max_age = Some(expiration_ms.saturating_sub(now_ms).max(0) / 1000);
        cookie.secure = secure;
        cookie
    }

    /// The `app.at_exp` cookie ([`AT_EXP_COOKIE`]) FusionAuth's SDKs read to schedule refreshes:
    /// the access token's expiry `access_expiry_ms` in seconds, not HttpOnly (scripts read it),
    /// `Path=/`, `SameSite=Lax`, a session cookie like the `access_token` cookie of a login.
    pub fn access_expiry(access_expiry_ms: i64, secure: bool) -> Self {
        let mut cookie = Cookie::new(AT_EXP_COOKIE, (access_expiry_ms / 1000).to_string());
        cookie.http_only = false;
        cookie.secure = secure;
        cookie
    }

    /// A cookie that deletes `name` in the browser.
    pub fn cleared(name: impl Into<String>) -> Self {
        let mut c = Cookie::new(name, "");
        c.max_age = Some(0);
        c
    }

    /// The `Set-Cookie` header value.
    pub fn to_header_value(&self) -> String {
        let mut s = format!("{}={}; Path={}", self.name, self.value, self.path);
        if let Some(age) = self.max_age {
            s.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure {
            s.push_str("; Secure");
        }
        if self.http_only {
            s.push_str("; HttpOnly");
        }
        s.push_str("; SameSite=");
        s.push_str(self.same_site);
        s
    }
}

/// The response a plugin returns; the host writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers, in order; `Set-Cookie` may repeat.
    pub headers: Vec<(String, String)>,
    /// Body bytes; empty for none.
    pub body: Vec<u8>,
}

impl PluginResponse {
    /// A response with a JSON body and `Content-Type: application/json`.
    pub fn json<T: Serialize + ?Sized>(status: u16, body: &T) -> Self {
        // Serializing our own model types cannot fail (no non-string map keys); fall back to an
        // empty object rather than panic if it ever did.
        let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
        PluginResponse {
            status,
            headers: vec![(
                "Content-Type".into(),
                "application/json; charset=UTF-8".into(),
            )],
            body: bytes,
        }
    }

    /// A response with no body.
    pub fn empty(status: u16) -> Self {
        PluginResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Adds a `Set-Cookie` header.
    pub fn with_cookie(self, cookie: &Cookie) -> Self {
        self.with_header("Set-Cookie", cookie.to_header_value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_expiry_cookie_is_seconds_readable_by_scripts() {
        let cookie = Cookie::access_expiry(1_700_000_123_999, true);
        assert_eq!(
            cookie.to_header_value(),
            "app.at_exp=1700000123; Path=/; Secure; SameSite=Lax"
        );
        assert!(!Cookie::access_expiry(5_000, false)
            .to_header_value()
            .contains("Secure"));
    }

    #[test]
    fn cookie_header_value() {
        let mut c = Cookie::new("refresh_token", "v");
        c.max_age = Some(60);
        c.secure = true;
        assert_eq!(
            c.to_header_value(),
            "refresh_token=v; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax"
        );
    }
}
