//! An OpenID Connect provider's endpoints: the ones its document names, the rest from
//! `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery §4), whose `issuer`
//! must be the configured one exactly (§4.3). Discovery documents are kept for
//! [`DISCOVERY_TTL`], at most [`MAX_DISCOVERED`] of them; failures are not kept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::provider::loopback;

/// How long a discovery document is used before it is fetched again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// The most discovery documents kept.
pub const MAX_DISCOVERED: usize = 256;

/// What a discovery document gives (each endpoint an http(s) URL, `https` when the issuer is).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Discovered {
    /// `token_endpoint`.
    pub token_endpoint: Option<String>,
    /// `userinfo_endpoint`.
    pub userinfo_endpoint: Option<String>,
    /// `jwks_uri`.
    pub jwks_uri: Option<String>,
    /// `authorization_endpoint`: where a browser is sent to log in.
    pub authorization_endpoint: Option<String>,
    /// `end_session_endpoint` (OpenID Connect RP-Initiated Logout): where a browser is sent to
    /// log out at the provider, when it has one.
    pub end_session_endpoint: Option<String>,
    /// `authorization_response_iss_parameter_supported` (RFC 9207 §3): the provider names
    /// itself in `iss` on every authorization answer, so an answer without it is refused.
    pub iss_parameter_supported: bool,
}

/// The endpoints a login uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Where the code is exchanged.
    pub token: String,
    /// Where the user's claims are read, when the provider has one.
    pub userinfo: Option<String>,
    /// The issuer and where it publishes its keys, when both are known (the ID token can
    /// then be checked).
    pub keys: Option<(String, String)>,
}

/// Returns `url` when it is an absolute http(s) URL with a host, and `https` when the issuer
/// is; `Err` names the member otherwise.
fn endpoint(
    document: &Value,
    member: &'static str,
    issuer: &str,
) -> Result<Option<String>, String> {
    let Some(value) = document.get(member) else {
        return Ok(None);
    };
    let text = value
        .as_str()
        .ok_or_else(|| format!("its {member} is not a string"))?;
    let url = url::Url::parse(text).map_err(|_| format!("its {member} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("its {member} is not an http(s) URL"));
    }
    if url.scheme() == "http" && !issuer.starts_with("http://") {
        return Err(format!("its {member} is plain http for an https issuer"));
    }
    if url.scheme() == "http" && !loopback(&url) {
        return Err(format!("its {member} is plain http off this machine"));
    }
    Ok(Some(text.to_string()))
}

/// Reads a discovery document fetched for `issuer`. `Err` says what is wrong with it (never
/// its content).
pub fn parse(body: &[u8], issuer: &str) -> Result<Discovered, String> {
    let document: Value = serde_json::from_slice(body).map_err(|_| "it is not JSON".to_string())?;
    if !document.is_object() {
        return Err("it is not a JSON object".into());
    }
    if document.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err("it names another issuer".into());
    }
    Ok(Discovered {
        token_endpoint: endpoint(&document, "token_endpoint", issuer)?,
        userinfo_endpoint: endpoint(&document, "userinfo_endpoint", issuer)?,
        jwks_uri: endpoint(&document, "jwks_uri", issuer)?,
        authorization_endpoint: endpoint(&document, "authorization_endpoint", issuer)?,
        end_session_endpoint: endpoint(&document, "end_session_endpoint", issuer)?,
        iss_parameter_supported: document
            .get("authorization_response_iss_parameter_supported")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// `{issuer}/.well-known/openid-configuration` (a trailing `/` of the issuer is not doubled).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Discovery documents by issuer, each with when it was fetched.
#[derive(Default)]
pub struct DiscoveryCache {
    entries: Mutex<HashMap<String, (Instant, Discovered)>>,
}

impl DiscoveryCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Discovered)>> {
        // Entries are replaced whole: a panic while held leaves nothing half-changed.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The document of `issuer` fetched less than [`DISCOVERY_TTL`] ago, if any.
    pub fn get(&self, issuer: &str) -> Option<Discovered> {
        let entries = self.lock();
        let (at, found) = entries.get(issuer)?;
        (at.elapsed() < DISCOVERY_TTL).then(|| found.clone())
    }

    /// Keeps `found` for `issuer`; when [`MAX_DISCOVERED`] are kept, expired entries go first,
    /// then all.
    pub fn put(&self, issuer: &str, found: Discovered) {
        let mut entries = self.lock();
        if entries.len() >= MAX_DISCOVERED && !entries.contains_key(issuer) {
            entries.retain(|_, (at, _)| at.elapsed() < DISCOVERY_TTL);
            if entries.len() >= MAX_DISCOVERED {
                entries.clear();
            }
        }
        entries.insert(issuer.to_string(), (Instant::now(), found));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://idp.example";

    #[test]
    fn a_document_for_another_issuer_or_with_bad_endpoints_is_refused() {
        let good =
            br#"{"issuer":"https://idp.example","token_endpoint":"https://idp.example/token",
            "userinfo_endpoint":"https://idp.example/me","jwks_uri":"https://keys.example/k"}"#;
        let found = parse(good, ISSUER).expect("ok");
        assert_eq!(
            found.token_endpoint.as_deref(),
            Some("https://idp.example/token")
        );
        assert_eq!(found.jwks_uri.as_deref(), Some("https://keys.example/k"));
        assert!(!found.iss_parameter_supported);
        let promised = br#"{"issuer":"https://idp.example",
            "authorization_response_iss_parameter_supported":true}"#;
        assert!(parse(promised, ISSUER).expect("ok").iss_parameter_supported);
        let bad: [&[u8]; 7] = [
            b"<html>",
            b"[1]",
            br#"{"issuer":"https://idp.example/"}"#,
            br#"{"issuer":"https://evil.example","token_endpoint":"https://evil.example/t"}"#,
            br#"{"issuer":"https://idp.example","token_endpoint":"http://idp.example/t"}"#,
            br#"{"issuer":"https://idp.example","jwks_uri":"file:///etc/passwd"}"#,
            br#"{"issuer":"https://idp.example","userinfo_endpoint":7}"#,
        ];
        for body in bad {
            let error = parse(body, ISSUER).expect_err("refused");
            assert!(!error.contains("evil"), "{error}");
        }
        let plain = br#"{"issuer":"http://127.0.0.1:9","token_endpoint":"http://127.0.0.1:9/t"}"#;
        assert!(parse(plain, "http://127.0.0.1:9").is_ok());
        // A local issuer cannot send the secret over the network in clear either.
        let away = br#"{"issuer":"http://127.0.0.1:9","token_endpoint":"http://idp.example/t"}"#;
        assert!(parse(away, "http://127.0.0.1:9").is_err());
        for (url, local) in [
            ("http://127.0.0.1:9/", true),
            ("http://127.3.2.1/", true),
            ("http://[::1]:8/", true),
            ("http://LOCALHOST/", true),
            ("http://a.localhost/", true),
            ("http://idp.example/", false),
            ("http://10.0.0.1/", false),
            ("http://localhost.evil.example/", false),
        ] {
            assert_eq!(
                loopback(&url::Url::parse(url).expect("url")),
                local,
                "{url}"
            );
        }
        assert_eq!(
            discovery_url("https://idp.example/realms/a/"),
            "https://idp.example/realms/a/.well-known/openid-configuration"
        );
    }

    #[test]
    fn the_cache_keeps_documents_bounded() {
        let cache = DiscoveryCache::default();
        assert_eq!(cache.get(ISSUER), None);
        cache.put(ISSUER, Discovered::default());
        assert_eq!(cache.get(ISSUER), Some(Discovered::default()));
        for i in 0..MAX_DISCOVERED + 3 {
            cache.put(&format!("https://{i}.example"), Discovered::default());
        }
        assert!(cache.lock().len() <= MAX_DISCOVERED);
    }
}
