//! Fetching an issuer's documents over HTTP(S): the discovery document and the JWKS, with
//! rustls over the system roots (plus a configured CA file), a time limit, a size limit
//! enforced while the body streams in, and no redirect to another host. Also the reading of
//! `Cache-Control: max-age`, which sets when the key set is fetched again (within bounds). The
//! same client sends the plugins' outbound requests (the contract's `HttpClient`).

use std::time::Duration;

use gatehouse_plugin_api::remote::{
    HttpAnswer, HttpCall, HttpClient, HttpFailure, HttpMethod, MAX_ANSWER_BYTES,
};
use serde_json::Value;

use super::config::MAX_DOCUMENT_BYTES;

// The contract's limit is the one the client enforces.
const _: () = assert!(MAX_ANSWER_BYTES == MAX_DOCUMENT_BYTES);

/// Why a fetch failed. Never carries a response body (it could be anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The server could not be reached, or the connection failed or timed out.
    Network(String),
    /// It answered with a status other than 200.
    Status(u16),
    /// The body is larger than [`MAX_DOCUMENT_BYTES`].
    TooLarge,
    /// The discovery document is not valid JSON, names another issuer, or has no usable
    /// `jwks_uri`.
    Discovery(&'static str),
}

impl FetchError {
    /// A short, stable name for logs and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::Network(_) => "network",
            FetchError::Status(_) => "http_status",
            FetchError::TooLarge => "too_large",
            FetchError::Discovery(_) => "discovery",
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Network(e) => write!(f, "cannot fetch: {e}"),
            FetchError::Status(s) => write!(f, "answered HTTP {s}"),
            FetchError::TooLarge => write!(f, "answered more than {MAX_DOCUMENT_BYTES} bytes"),
            FetchError::Discovery(why) => write!(f, "discovery document: {why}"),
        }
    }
}

/// A fetched document: its bytes and the `max-age` it may be kept for, when it says.
pub struct Document {
    /// The body, at most [`MAX_DOCUMENT_BYTES`].
    pub body: Vec<u8>,
    /// `Cache-Control: max-age`, when present (`Some(0)` for `no-cache`/`no-store`).
    pub max_age: Option<Duration>,
}

/// An HTTP client for one issuer.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
}

impl Fetcher {
    /// A client with this time limit, trusting the system roots and the certificates of
    /// `ca_pem` (PEM text) when given. `Err` with a message when the CA file holds no
    /// certificate or the TLS setup fails.
    pub fn new(timeout: Duration, ca_pem: Option<&[u8]>) -> Result<Fetcher, String> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(same_host_redirects())
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|_| "caFile holds no PEM certificate".to_string())?;
            if certificates.is_empty() {
                return Err("caFile holds no PEM certificate".into());
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Fetcher { client })
    }

    /// GETs `url`: the body (read in chunks, refused as soon as it passes the limit) and its
    /// `max-age`.
    pub async fn get(&self, url: &str) -> Result<Document, FetchError> {
        let mut response = self
            .client
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Network(describe(&e)))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let max_age = response
            .headers()
            .get_all(reqwest::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(max_age);
        let body = read_limited(&mut response).await.map_err(|e| match e {
            ReadError::TooLarge => FetchError::TooLarge,
            ReadError::Broken(e) => FetchError::Network(describe(&e)),
        })?;
        Ok(Document { body, max_age })
    }

    /// The `jwks_uri` of `issuer`'s discovery document (`{issuer}/.well-known/openid-configuration`),
    /// which must name the same issuer exactly (OpenID Connect Discovery §4.3).
    pub async fn discover(&self, issuer: &str) -> Result<String, FetchError> {
        let url = discovery_url(issuer);
        let document = self.get(&url).await?;
        jwks_uri_of(&document.body, issuer)
    }
}

/// Why a body could not be read whole.
enum ReadError {
    /// It is over [`MAX_DOCUMENT_BYTES`].
    TooLarge,
    /// The connection broke or timed out.
    Broken(reqwest::Error),
}

/// Reads `response`'s body in chunks, refused as soon as it passes [`MAX_DOCUMENT_BYTES`] (a
/// declared `Content-Length` over it is refused before reading).
async fn read_limited(response: &mut reqwest::Response) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Broken)? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The plugins' outbound requests (an identity provider's endpoints) go through the same
/// client and limits as the key fetches: [`MAX_DOCUMENT_BYTES`] (the contract's
/// [`MAX_ANSWER_BYTES`]), redirects only on the same host, never to `http` from `https`, and
/// the call's own time limit over the whole exchange.
#[async_trait::async_trait]
impl HttpClient for Fetcher {
    async fn send(&self, call: HttpCall) -> Result<HttpAnswer, HttpFailure> {
        let url = reqwest::Url::parse(&call.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| HttpFailure::Refused("not an http(s) URL".into()))?;
        let method = match call.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
        };
        let mut request = self.client.request(method, url).timeout(call.timeout);
        for (name, value) in &call.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = call.body {
            request = request.body(body);
        }
        let failure = |e: reqwest::Error| {
            if e.is_timeout() {
                HttpFailure::Timeout
            } else if e.is_redirect() {
                HttpFailure::Refused("a redirect to another host or to plain http".into())
            } else {
                HttpFailure::Unreachable(describe(&e))
            }
        };
        let mut response = request.send().await.map_err(failure)?;
        if response.status().is_redirection() {
            // A redirect the policy stopped (another host, or a downgrade).
            return Err(HttpFailure::Refused(
                "a redirect to another host or to plain http".into(),
            ));
        }
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_limited(&mut response).await.map_err(|e| match e {
            ReadError::TooLarge => HttpFailure::TooLarge,
            ReadError::Broken(e) => failure(e),
        })?;
        Ok(HttpAnswer {
            status,
            content_type,
            body,
        })
    }
}

/// `{issuer}/.well-known/openid-configuration` (a trailing `/` of the issuer is not doubled).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// The `jwks_uri` of a discovery document for `issuer`: its `issuer` must be `issuer` exactly,
/// and `jwks_uri` an http(s) URL, `https` when the issuer is (another host is allowed: Google
/// publishes its keys on another host than its issuer's).
pub fn jwks_uri_of(body: &[u8], issuer: &str) -> Result<String, FetchError> {
    let document: Value =
        serde_json::from_slice(body).map_err(|_| FetchError::Discovery("not JSON"))?;
    if document.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(FetchError::Discovery("it names another issuer"));
    }
    let uri = document
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or(FetchError::Discovery("no jwks_uri"))?;
    let parsed =
        reqwest::Url::parse(uri).map_err(|_| FetchError::Discovery("jwks_uri is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(FetchError::Discovery("jwks_uri is not an http(s) URL"));
    }
    if parsed.scheme() == "http" && !issuer.starts_with("http://") {
        return Err(FetchError::Discovery(
            "jwks_uri is plain http for an https issuer",
        ));
    }
    Ok(uri.to_string())
}

/// Redirects are followed only to the same host and port (at most 3), never to another host
/// and never from `https` to `http`: a compromised or misconfigured page must not point the
/// gateway at keys elsewhere, nor let them be swapped on the wire (see [`may_follow`]).
fn same_host_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let allowed = attempt
            .previous()
            .iter()
            .all(|from| may_follow(from, attempt.url()));
        if !allowed {
            attempt.stop()
        } else if attempt.previous().len() > 3 {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// Whether a redirect from `from` to `to` may be followed: the same host (compared as the URL
/// parser normalizes it), and either the same scheme and port, or an upgrade from `http` to
/// `https`. `false` for anything else, downgrades to `http` included.
pub fn may_follow(from: &reqwest::Url, to: &reqwest::Url) -> bool {
    if from.host_str().is_none() || from.host_str() != to.host_str() {
        return false;
    }
    match (from.scheme(), to.scheme()) {
        ("http", "https") => true,
        (a, b) if a == b => from.port_or_known_default() == to.port_or_known_default(),
        _ => false,
    }
}

/// A fetch error in words, without the URL's query or any body.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else if e.is_redirect() {
        "too many redirects".into()
    } else if e.is_body() || e.is_decode() {
        "the answer broke off".into()
    } else {
        "request failed".into()
    }
}

/// The `max-age` of a `Cache-Control` value: `Some(0)` for `no-cache` or `no-store`, `None`
/// when it says neither (or the number is not one).
pub fn max_age(value: &str) -> Option<Duration> {
    let mut age = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, argument) = match directive.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") {
            age = argument
                .and_then(|a| a.parse::<u64>().ok())
                .map(Duration::from_secs);
        }
    }
    age
}

/// When to fetch again after a successful fetch: the document's `max_age` within
/// `[least, most]`, else `most` (the configured refresh interval).
pub fn next_refresh(max_age: Option<Duration>, least: Duration, most: Duration) -> Duration {
    match max_age {
        Some(age) => age.clamp(least.min(most), most),
        None => most,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age_is_read() {
        let s = Duration::from_secs;
        assert_eq!(max_age("public, max-age=600"), Some(s(600)));
        assert_eq!(max_age("Max-Age=\"30\", must-revalidate"), Some(s(30)));
        assert_eq!(max_age("no-cache"), Some(s(0)));
        assert_eq!(max_age("max-age=60, no-store"), Some(s(0)));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
        assert_eq!(max_age("max-age=-5"), None);
        assert_eq!(max_age("s-maxage=99"), None);
    }

    #[test]
    fn the_refresh_interval_is_bounded() {
        let s = Duration::from_secs;
        // Within bounds: honoured.
        assert_eq!(next_refresh(Some(s(120)), s(10), s(300)), s(120));
        // Too short (or no-cache): the rate-limit window at least.
        assert_eq!(next_refresh(Some(s(0)), s(10), s(300)), s(10));
        // Too long: never past the configured interval.
        assert_eq!(next_refresh(Some(s(86_400)), s(10), s(300)), s(300));
        assert_eq!(next_refresh(None, s(10), s(300)), s(300));
        // A window longer than the interval does not invert the bounds.
        assert_eq!(next_refresh(Some(s(1)), s(600), s(300)), s(300));
    }

    #[test]
    fn redirects_stay_on_the_host_and_never_downgrade() {
        let url = |u: &str| reqwest::Url::parse(u).expect("url");
        let follows = |a: &str, b: &str| may_follow(&url(a), &url(b));
        assert!(follows("https://a.example/k", "https://a.example/keys"));
        assert!(follows("http://a.example/k", "https://a.example/k"));
        assert!(follows("https://A.example/k", "https://a.example:443/k"));
        assert!(!follows(
            "https://a.example:8443/k",
            "http://a.example:8443/k"
        ));
        assert!(!follows("https://a.example/k", "http://a.example/k"));
        assert!(!follows("https://a.example/k", "https://b.example/k"));
        assert!(!follows("https://a.example/k", "https://a.example:8443/k"));
        assert!(!follows(
            "http://a.example/k",
            "http://a.example.evil.test/k"
        ));
        assert!(!follows("https://a.example/k", "file:///etc/passwd"));
    }

    #[test]
    fn discovery_must_name_the_same_issuer() {
        let issuer = "https://login.example.com";
        let good = br#"{"issuer":"https://login.example.com","jwks_uri":"https://login.example.com/keys"}"#;
        assert_eq!(
            jwks_uri_of(good, issuer),
            Ok("https://login.example.com/keys".to_string())
        );
        let other = br#"{"issuer":"https://evil.example","jwks_uri":"https://evil.example/k"}"#;
        assert!(jwks_uri_of(other, issuer).is_err());
        let slash =
            br#"{"issuer":"https://login.example.com/","jwks_uri":"https://login.example.com/k"}"#;
        assert!(jwks_uri_of(slash, issuer).is_err(), "compared exactly");
        for bad in [
            &br#"{"issuer":"https://login.example.com"}"#[..],
            br#"{"issuer":"https://login.example.com","jwks_uri":"file:///etc/passwd"}"#,
            br#"{"issuer":"https://login.example.com","jwks_uri":7}"#,
            b"<html>",
        ] {
            assert!(jwks_uri_of(bad, issuer).is_err());
        }
        let downgrade =
            br#"{"issuer":"https://login.example.com","jwks_uri":"http://login.example.com/k"}"#;
        assert!(jwks_uri_of(downgrade, issuer).is_err(), "no downgrade");
        let elsewhere =
            br#"{"issuer":"https://login.example.com","jwks_uri":"https://keys.example.net/k"}"#;
        assert!(
            jwks_uri_of(elsewhere, issuer).is_ok(),
            "another host, over https"
        );
        let plain = br#"{"issuer":"http://127.0.0.1:9","jwks_uri":"http://127.0.0.1:9/k"}"#;
        assert!(
            jwks_uri_of(plain, "http://127.0.0.1:9").is_ok(),
            "a plain issuer"
        );
        assert_eq!(
            discovery_url("https://a.example/realms/x/"),
            "https://a.example/realms/x/.well-known/openid-configuration"
        );
    }
}
