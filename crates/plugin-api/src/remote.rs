//! The ports through which a plugin reaches other servers: [`HttpClient`] (an outbound HTTP
//! request with the host's limits: a time limit, a body size limit enforced while it streams,
//! no redirect to another host or from `https` to `http`) and [`RemoteKeys`] (a JWT verified
//! with the keys an issuer publishes as a JWKS, with the host's fetch policy: key sets cached,
//! refreshed in the background, refetched once on an unknown `kid`, stale-if-error).
//!
//! The host implements both; [`Offline`] is the implementation for a context without network
//! access (a plugin's unit tests): every call fails as unreachable.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

/// The most bytes an answer to an outbound request may have (1 MiB); a longer one is
/// [`HttpFailure::TooLarge`].
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The method of an outbound request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
}

/// An outbound request.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// The method.
    pub method: HttpMethod,
    /// An absolute `http` or `https` URL.
    pub url: String,
    /// Request headers (name, value); they may carry credentials, so `Debug` leaves their
    /// values out.
    pub headers: Vec<(String, String)>,
    /// The body, if any (its `Content-Type` is one of `headers`).
    pub body: Option<Vec<u8>>,
    /// The time limit of the whole exchange (connection, request, the answer's body).
    pub timeout: Duration,
}

impl std::fmt::Debug for HttpCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpCall")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &names)
            .field("body_bytes", &self.body.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The answer to an outbound request, whatever its status.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The HTTP status.
    pub status: u16,
    /// `Content-Type`, when present and readable.
    pub content_type: Option<String>,
    /// The body, at most [`MAX_ANSWER_BYTES`].
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body may hold tokens: never printed.
        f.debug_struct("HttpAnswer")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// Why an outbound request got no answer. Never carries a body or a header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFailure {
    /// No complete answer within the time limit.
    Timeout,
    /// The server could not be reached, or the connection broke.
    Unreachable(String),
    /// The answer's body is over [`MAX_ANSWER_BYTES`].
    TooLarge,
    /// The request was not sent or not followed: not an http(s) URL, or a redirect to
    /// another host or from `https` to `http`.
    Refused(String),
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpFailure::Timeout => f.write_str("did not answer in time"),
            HttpFailure::Unreachable(why) => write!(f, "cannot be reached ({why})"),
            HttpFailure::TooLarge => write!(f, "answered more than {MAX_ANSWER_BYTES} bytes"),
            HttpFailure::Refused(why) => write!(f, "was not called ({why})"),
        }
    }
}

/// Sends outbound HTTP requests with the host's limits.
#[async_trait]
pub trait HttpClient: Send + Sync {
    /// Sends `call`. Returns the answer whatever its status (a 4xx or 5xx is an answer), or
    /// why there is none.
    async fn send(&self, call: HttpCall) -> Result<HttpAnswer, HttpFailure>;
}

/// Why [`RemoteKeys::verify`] did not return claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteKeyError {
    /// The issuer's keys cannot be had now (never fetched, or older than the host keeps them
    /// while the issuer is down): the token may be fine, ask again later (a 503).
    Unavailable,
    /// The token is not signed by the issuer's keys: a stable reason (`bad_signature`,
    /// `unknown_key`, `algorithm_mismatch`, `malformed`…), never token content.
    Invalid(&'static str),
}

/// Verifies JWTs with the keys an issuer publishes.
#[async_trait]
pub trait RemoteKeys: Send + Sync {
    /// Verifies the signature of `token` with the key of its `kid` among the keys `issuer`
    /// publishes at `jwks_uri`, with an algorithm of `algorithms` (names such as `RS256`;
    /// `none` and HMAC names are never accepted) that the key's type agrees with. A token
    /// naming keys itself (`jku`, `x5u`, `jwk`, `x5c`) or without `kid` is invalid.
    ///
    /// Returns the token's claims, unchecked: `iss`, `aud`, times and the rest are the
    /// caller's to check.
    async fn verify(
        &self,
        issuer: &str,
        jwks_uri: &str,
        algorithms: &[&str],
        token: &str,
    ) -> Result<Map<String, Value>, RemoteKeyError>;
}

/// Ports for a context without network access: every request is unreachable and no key can
/// be had.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offline;

#[async_trait]
impl HttpClient for Offline {
    async fn send(&self, _call: HttpCall) -> Result<HttpAnswer, HttpFailure> {
        Err(HttpFailure::Unreachable(
            "no network in this context".into(),
        ))
    }
}

#[async_trait]
impl RemoteKeys for Offline {
    async fn verify(
        &self,
        _issuer: &str,
        _jwks_uri: &str,
        _algorithms: &[&str],
        _token: &str,
    ) -> Result<Map<String, Value>, RemoteKeyError> {
        Err(RemoteKeyError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_carries_no_header_value_or_body() {
        let call = HttpCall {
            method: HttpMethod::Post,
            url: "https://idp.example/token".into(),
            headers: vec![("Authorization".into(), "Basic c2VjcmV0".into())],
            body: Some(b"code=abc&client_secret=s3cret".to_vec()),
            timeout: Duration::from_secs(1),
        };
        let printed = format!("{call:?}");
        assert!(printed.contains("Authorization"), "{printed}");
        assert!(
            !printed.contains("c2VjcmV0") && !printed.contains("s3cret"),
            "{printed}"
        );
        let answer = HttpAnswer {
            status: 200,
            content_type: None,
            body: b"{\"refresh_token\":\"r\"}".to_vec(),
        };
        assert!(!format!("{answer:?}").contains("refresh_token"));
    }

    #[tokio::test]
    async fn offline_reaches_nothing() {
        let call = HttpCall {
            method: HttpMethod::Get,
            url: "https://idp.example/".into(),
            headers: vec![],
            body: None,
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            Offline.send(call).await,
            Err(HttpFailure::Unreachable(_))
        ));
        assert_eq!(
            Offline.verify("i", "u", &["RS256"], "t").await,
            Err(RemoteKeyError::Unavailable)
        );
    }
}
