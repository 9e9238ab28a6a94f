//! Errors of the proxy layer and their one mapping to HTTP: every answer the proxy gives
//! instead of forwarding a request is a [`GatewayError`], whatever phase refused it (a request
//! with no single reading, a policy, a failure of the engine or the upstream — see
//! [`GatewayError::of_failure`]). Every one carries FusionAuth's Errors JSON, like the REST
//! API, but the API's own empty 404 for an unknown API path.

use gatehouse_plugin_api::{Errors, TokenError};
use pingora::prelude::*;
use uuid::Uuid;

use crate::request::canonical::PathRefusal;
use crate::request::forwarded::ForwardedRefusal;
use crate::request::target::TargetRefusal;
use gatehouse_plugin_api::credentials::Ambiguity;

/// The realm of the gateway's `WWW-Authenticate` challenges.
const REALM: &str = "gatehouse";

/// Why the proxy answered a request itself instead of forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// The request target has no canonical form.
    InvalidPath(PathRefusal),
    /// The request could be read in more than one way (credentials, `Host`).
    Ambiguous(Ambiguity),
    /// An absolute-form request target names another host than the `Host` header, or the
    /// request has several `Host` headers, or none (HTTP/1.1), or one that is not a host.
    AmbiguousHost,
    /// The path matches a more specific route's path in all but case.
    AmbiguousPathCase,
    /// The request's framing could be read in more than one way (several or malformed
    /// `Content-Length` headers).
    AmbiguousFraming,
    /// A forward-auth request whose request to judge has no single reading (a target or host
    /// with none is [`GatewayError::InvalidPath`] or [`GatewayError::AmbiguousHost`]).
    Forwarded(ForwardedRefusal),
    /// A forward-auth request from a peer outside `forwardAuth.trustedProxies`.
    UntrustedProxy,
    /// A proxied request matched a route without an upstream: such a route is only judged in
    /// forward-auth decisions.
    DecisionOnlyRoute,
    /// The engine could not read the request (bad request line, header syntax); carries the
    /// 4xx status it chose.
    Malformed(u16),
    /// A plugin serves this path, but not with this method (or the method is one the gateway
    /// forwards on no route: `TRACE`); `allow` lists the methods served there, the `Allow`
    /// header's value.
    MethodNotAllowed {
        /// The method refused.
        method: http::Method,
        /// What the path is served with.
        allow: String,
    },
    /// The request's `Expect` header names an expectation the gateway does not meet: anything
    /// but `100-continue` (RFC 9110 §10.1.1).
    ExpectationFailed,
    /// A path under a plugin's prefix (`/api/jwt/…`) that no plugin serves: never proxied,
    /// answered as FusionAuth's API does (an empty 404).
    UnknownApiPath,
    /// No route matches the host and path.
    NoRoute,
    /// A required route got no token.
    MissingToken,
    /// The token was presented and refused.
    InvalidToken(TokenError),
    /// The token carries a claim the route forwards whose value cannot be a header value.
    UnforwardableClaim,
    /// The token is valid but for another application.
    WrongApplication,
    /// The token lacks every role the route accepts.
    MissingRole,
    /// The token's `aud` names none of the route's audiences, or a claim lacks the value the
    /// route requires.
    UnmetClaim,
    /// The keys that check the token cannot be had now (its issuer is unreachable and no
    /// fresh enough key set is held): try again shortly; the token may be fine.
    KeysUnavailable,
    /// The request body is over the limit.
    BodyTooLarge,
    /// The request headers are over the limit.
    HeadersTooLarge,
    /// The upstream could not be reached or failed mid-response.
    UpstreamUnavailable,
    /// The store could not be reached to refresh the session: try again shortly (the
    /// cookies are kept).
    StoreUnavailable,
    /// Anything else; logged with this correlation id.
    Internal(String),
}

impl GatewayError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::InvalidPath(_)
            | GatewayError::Ambiguous(_)
            | GatewayError::AmbiguousHost
            | GatewayError::AmbiguousPathCase
            | GatewayError::AmbiguousFraming
            | GatewayError::Forwarded(_) => 400,
            GatewayError::Malformed(code) if (400..500).contains(code) => *code,
            GatewayError::Malformed(_) => 400,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::ExpectationFailed => 417,
            GatewayError::NoRoute
            | GatewayError::UnknownApiPath
            | GatewayError::DecisionOnlyRoute => 404,
            GatewayError::MissingToken
            | GatewayError::InvalidToken(_)
            | GatewayError::UnforwardableClaim => 401,
            GatewayError::WrongApplication
            | GatewayError::MissingRole
            | GatewayError::UnmetClaim
            | GatewayError::UntrustedProxy => 403,
            GatewayError::BodyTooLarge => 413,
            GatewayError::HeadersTooLarge => 431,
            GatewayError::UpstreamUnavailable => 502,
            GatewayError::StoreUnavailable | GatewayError::KeysUnavailable => 503,
            GatewayError::Internal(_) => 500,
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3): no error code when no credentials were
    /// given, `invalid_token` for a refused token, `insufficient_scope` for a valid token
    /// without the route's application or role.
    pub fn challenge(&self) -> Option<String> {
        let error = match self {
            GatewayError::MissingToken => return Some(format!("Bearer realm=\"{REALM}\"")),
            GatewayError::InvalidToken(_) | GatewayError::UnforwardableClaim => "invalid_token",
            GatewayError::WrongApplication
            | GatewayError::MissingRole
            | GatewayError::UnmetClaim => "insufficient_scope",
            GatewayError::InvalidPath(_)
            | GatewayError::Ambiguous(_)
            | GatewayError::AmbiguousHost
            | GatewayError::AmbiguousPathCase
            | GatewayError::AmbiguousFraming
            | GatewayError::Forwarded(_)
            | GatewayError::UntrustedProxy
            | GatewayError::DecisionOnlyRoute
            | GatewayError::Malformed(_)
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::ExpectationFailed
            | GatewayError::NoRoute
            | GatewayError::UnknownApiPath
            | GatewayError::BodyTooLarge
            | GatewayError::HeadersTooLarge
            | GatewayError::UpstreamUnavailable
            | GatewayError::StoreUnavailable
            | GatewayError::KeysUnavailable
            | GatewayError::Internal(_) => return None,
        };
        Some(format!("Bearer realm=\"{REALM}\", error=\"{error}\""))
    }

    /// The body: Errors JSON, or nothing for [`GatewayError::UnknownApiPath`].
    pub fn body(&self) -> Vec<u8> {
        let Some((code, message)) = self.code_and_message() else {
            return Vec::new();
        };
        let mut errors = Errors::new();
        errors.general(code, message);
        serde_json::to_vec(&errors).unwrap_or_default()
    }

    /// The refusal's FusionAuth error code and message; `None` for
    /// [`GatewayError::UnknownApiPath`], which has no body.
    pub fn code_and_message(&self) -> Option<(&'static str, String)> {
        Some(match self {
            GatewayError::UnknownApiPath => return None,
            GatewayError::InvalidPath(refusal) => ("[InvalidPath]", refusal.message().to_string()),
            GatewayError::Ambiguous(ambiguity) => {
                ("[AmbiguousRequest]", ambiguity.message().to_string())
            }
            GatewayError::AmbiguousHost => (
                "[AmbiguousRequest]",
                "The request must name exactly one valid host.".to_string(),
            ),
            GatewayError::AmbiguousPathCase => (
                "[AmbiguousRequest]",
                "The request path differs from a route's path only in case.".to_string(),
            ),
            GatewayError::AmbiguousFraming => (
                "[AmbiguousRequest]",
                "The request must have at most one valid Content-Length.".to_string(),
            ),
            GatewayError::Forwarded(refusal) => {
                let code = match refusal {
                    ForwardedRefusal::TwoReadings => "[AmbiguousRequest]",
                    _ => "[BadRequest]",
                };
                (code, refusal.message().to_string())
            }
            GatewayError::UntrustedProxy => (
                "[Forbidden]",
                "Only the configured trusted proxies may ask for forward-auth decisions.".to_string(),
            ),
            GatewayError::DecisionOnlyRoute => (
                "[NotFound]",
                "No upstream serves this path: its route only answers forward-auth decisions."
                    .to_string(),
            ),
            GatewayError::Malformed(status) => malformed(*status),
            // The method is not echoed: it is the client's input, up to the header limit.
            GatewayError::MethodNotAllowed { .. } => (
                "[MethodNotAllowed]",
                "The request method is not allowed on this path.".to_string(),
            ),
            GatewayError::ExpectationFailed => (
                "[ExpectationFailed]",
                "Only the 100-continue expectation can be met.".to_string(),
            ),
            GatewayError::NoRoute => ("[NotFound]", "No route matches this request.".to_string()),
            GatewayError::MissingToken => (
                "[MissingToken]",
                "This resource requires an access token.".to_string(),
            ),
            GatewayError::InvalidToken(reason) => (
                "[InvalidToken]",
                format!("The access token is not valid ({}).", reason.reason()),
            ),
            GatewayError::UnforwardableClaim => (
                "[InvalidToken]",
                "The access token carries a claim that cannot be passed on.".to_string(),
            ),
            GatewayError::WrongApplication => (
                "[Forbidden]",
                "The access token was not issued for this application.".to_string(),
            ),
            GatewayError::MissingRole => (
                "[Forbidden]",
                "The access token does not carry a role this resource requires.".to_string(),
            ),
            GatewayError::UnmetClaim => (
                "[Forbidden]",
                "The access token does not carry a claim this resource requires.".to_string(),
            ),
            GatewayError::KeysUnavailable => (
                "[ServiceUnavailable]",
                "The keys that check this access token cannot be fetched right now; try again shortly.".to_string(),
            ),
            GatewayError::BodyTooLarge => (
                "[TooLarge]",
                "The request body is larger than allowed.".to_string(),
            ),
            GatewayError::HeadersTooLarge => (
                "[TooLarge]",
                "The request headers are larger than allowed.".to_string(),
            ),
            GatewayError::UpstreamUnavailable => (
                "[BadGateway]",
                "The upstream service is not reachable.".to_string(),
            ),
            GatewayError::StoreUnavailable => (
                "[ServiceUnavailable]",
                "The session cannot be refreshed right now; try again shortly.".to_string(),
            ),
            GatewayError::Internal(id) => (
                "[InternalError]",
                format!("An internal error occurred. Correlation id: {id}"),
            ),
        })
    }

    /// True for an answer of the REST API's rather than a refusal of a proxied request
    /// ([`GatewayError::UnknownApiPath`]): not counted among proxied requests.
    pub fn is_api_answer(&self) -> bool {
        matches!(self, GatewayError::UnknownApiPath)
    }

    /// The error to answer for a failure of the engine (a request it could not read, a limit)
    /// or of the upstream; `None` when the client went away (nobody to answer). An internal
    /// failure is logged with the correlation id the answer carries.
    pub fn of_failure(e: &Error) -> Option<GatewayError> {
        Some(match e.etype() {
            HTTPStatus(413) => GatewayError::BodyTooLarge,
            HTTPStatus(431) => GatewayError::HeadersTooLarge,
            HTTPStatus(417) => GatewayError::ExpectationFailed,
            HTTPStatus(code) if *code < 500 => GatewayError::Malformed(*code),
            _ => match e.esource() {
                ErrorSource::Upstream => GatewayError::UpstreamUnavailable,
                ErrorSource::Downstream => match e.etype() {
                    // Gone, or not reading in time: nobody to answer.
                    WriteError | ReadError | ConnectionClosed | WriteTimedout => return None,
                    // A body that did not come in time (the read timeout, or the pace a body
                    // must keep): 408, as the body pace's own refusal.
                    ReadTimedout => GatewayError::Malformed(408),
                    _ => GatewayError::Malformed(400),
                },
                ErrorSource::Internal | ErrorSource::Unset => internal_failure(e),
            },
        })
        .inspect(|error| {
            if matches!(error, GatewayError::UpstreamUnavailable) {
                // The kind and the root cause (`Connection refused`…), never the context,
                // which can quote the upstream's raw response header.
                tracing::warn!(kind = e.etype().as_str(), cause = %e.root_cause(), "upstream unavailable");
            }
        })
    }

    /// A short label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            GatewayError::InvalidPath(_)
            | GatewayError::Ambiguous(_)
            | GatewayError::AmbiguousHost
            | GatewayError::AmbiguousPathCase
            | GatewayError::AmbiguousFraming
            | GatewayError::Forwarded(_)
            | GatewayError::Malformed(_) => "bad_request",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::ExpectationFailed => "bad_request",
            GatewayError::NoRoute | GatewayError::DecisionOnlyRoute => "no_route",
            GatewayError::UntrustedProxy => "untrusted_proxy",
            GatewayError::UnknownApiPath => "api",
            GatewayError::MissingToken
            | GatewayError::InvalidToken(_)
            | GatewayError::UnforwardableClaim => "unauthenticated",
            GatewayError::WrongApplication
            | GatewayError::MissingRole
            | GatewayError::UnmetClaim => "forbidden",
            GatewayError::KeysUnavailable => "keys_unavailable",
            GatewayError::BodyTooLarge | GatewayError::HeadersTooLarge => "too_large",
            GatewayError::UpstreamUnavailable => "upstream_unavailable",
            GatewayError::StoreUnavailable => "store_unavailable",
            GatewayError::Internal(_) => "internal",
        }
    }
}

/// The error code and message of a request the engine could not read (its `status`).
fn malformed(status: u16) -> (&'static str, String) {
    let (code, message) = match status {
        414 => (
            "[URITooLong]",
            "The request target is over the header size limit.",
        ),
        _ => ("[BadRequest]", "The request could not be processed."),
    };
    (code, message.to_string())
}

impl From<ForwardedRefusal> for GatewayError {
    /// A host or path with no single reading keeps the answer it has on the proxy path.
    fn from(refusal: ForwardedRefusal) -> Self {
        match refusal {
            ForwardedRefusal::Target(refusal) => GatewayError::from(refusal),
            other => GatewayError::Forwarded(other),
        }
    }
}

impl From<TargetRefusal> for GatewayError {
    fn from(refusal: TargetRefusal) -> Self {
        match refusal {
            TargetRefusal::Framing => GatewayError::AmbiguousFraming,
            TargetRefusal::Host => GatewayError::AmbiguousHost,
            TargetRefusal::Path(refusal) => GatewayError::InvalidPath(refusal),
        }
    }
}

/// The gateway error of an internal proxy failure: an upstream that cannot be reached, or an
/// internal error logged with its correlation id.
fn internal_failure(e: &Error) -> GatewayError {
    if matches!(
        e.etype(),
        ConnectTimedout | ConnectRefused | ConnectError | ConnectNoRoute | TLSHandshakeFailure
    ) {
        return GatewayError::UpstreamUnavailable;
    }
    let id = Uuid::new_v4().to_string();
    tracing::error!(correlation_id = %id, error = %e, "proxy failure");
    GatewayError::Internal(id)
}

/// True for failures that are the client's doing (a malformed request, a connection it
/// closed): logged at debug level, never as errors, so bad traffic cannot fill a disk.
pub fn is_client_failure(e: &Error) -> bool {
    match e.etype() {
        HTTPStatus(code) => *code < 500,
        _ => matches!(e.esource(), ErrorSource::Downstream),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let cases = [
            (GatewayError::InvalidPath(PathRefusal::AboveRoot), 400),
            (GatewayError::Ambiguous(Ambiguity::TwoCredentials), 400),
            (GatewayError::AmbiguousHost, 400),
            (GatewayError::UnforwardableClaim, 401),
            (GatewayError::StoreUnavailable, 503),
            (GatewayError::KeysUnavailable, 503),
            (GatewayError::UnmetClaim, 403),
            (GatewayError::NoRoute, 404),
            (GatewayError::MissingToken, 401),
            (GatewayError::InvalidToken(TokenError::Expired), 401),
            (GatewayError::WrongApplication, 403),
            (GatewayError::MissingRole, 403),
            (GatewayError::BodyTooLarge, 413),
            (GatewayError::HeadersTooLarge, 431),
            (GatewayError::UpstreamUnavailable, 502),
            (GatewayError::Internal("abc".into()), 500),
            (GatewayError::Malformed(400), 400),
            (GatewayError::Malformed(414), 414),
            (GatewayError::Malformed(200), 400),
            (
                GatewayError::MethodNotAllowed {
                    method: http::Method::PUT,
                    allow: "GET".into(),
                },
                405,
            ),
            (GatewayError::ExpectationFailed, 417),
            (GatewayError::Forwarded(ForwardedRefusal::TwoReadings), 400),
            (GatewayError::Forwarded(ForwardedRefusal::NoTarget), 400),
            (GatewayError::UntrustedProxy, 403),
            (GatewayError::DecisionOnlyRoute, 404),
        ];
        for (error, status) in cases {
            assert!(!error.is_api_answer());
            assert_eq!(error.status(), status);
            let body: serde_json::Value = serde_json::from_slice(&error.body()).expect("json");
            assert!(body["generalErrors"][0]["code"].is_string());
        }
        assert_eq!(
            GatewayError::MissingToken.challenge().as_deref(),
            Some("Bearer realm=\"gatehouse\"")
        );
        assert_eq!(
            GatewayError::InvalidToken(TokenError::Expired)
                .challenge()
                .as_deref(),
            Some("Bearer realm=\"gatehouse\", error=\"invalid_token\"")
        );
        assert_eq!(
            GatewayError::MissingRole.challenge().as_deref(),
            Some("Bearer realm=\"gatehouse\", error=\"insufficient_scope\"")
        );
        assert_eq!(GatewayError::NoRoute.challenge(), None);
        assert_eq!(GatewayError::KeysUnavailable.challenge(), None);
        assert_eq!(
            GatewayError::UnmetClaim.challenge().as_deref(),
            Some("Bearer realm=\"gatehouse\", error=\"insufficient_scope\"")
        );
        // The API's answer to a path no plugin serves: FusionAuth's empty 404.
        let unknown = GatewayError::UnknownApiPath;
        assert_eq!((unknown.status(), unknown.body()), (404, Vec::new()));
        assert_eq!((unknown.challenge(), unknown.outcome()), (None, "api"));
        assert!(unknown.is_api_answer());
    }

    #[test]
    fn target_refusals_keep_their_answers() {
        for (refusal, error) in [
            (TargetRefusal::Framing, GatewayError::AmbiguousFraming),
            (TargetRefusal::Host, GatewayError::AmbiguousHost),
            (
                TargetRefusal::Path(PathRefusal::AboveRoot),
                GatewayError::InvalidPath(PathRefusal::AboveRoot),
            ),
        ] {
            assert_eq!(GatewayError::from(refusal), error);
            assert_eq!(GatewayError::from(refusal).status(), 400);
        }
    }

    #[test]
    fn forwarded_refusals_answer_as_on_the_proxy_path() {
        // A host or path with no single reading: the proxy path's own answer.
        assert_eq!(
            GatewayError::from(ForwardedRefusal::Target(TargetRefusal::Host)),
            GatewayError::AmbiguousHost
        );
        assert_eq!(
            GatewayError::from(ForwardedRefusal::Target(TargetRefusal::Path(
                PathRefusal::AboveRoot
            ))),
            GatewayError::InvalidPath(PathRefusal::AboveRoot)
        );
        for (refusal, code) in [
            (ForwardedRefusal::TwoReadings, "[AmbiguousRequest]"),
            (ForwardedRefusal::NoTarget, "[BadRequest]"),
            (ForwardedRefusal::NotOriginForm, "[BadRequest]"),
            (ForwardedRefusal::Method, "[BadRequest]"),
            (ForwardedRefusal::Scheme, "[BadRequest]"),
        ] {
            let error = GatewayError::from(refusal);
            assert_eq!((error.status(), error.outcome()), (400, "bad_request"));
            let body: serde_json::Value = serde_json::from_slice(&error.body()).expect("json");
            assert_eq!(body["generalErrors"][0]["code"], code);
        }
        assert_eq!(GatewayError::UntrustedProxy.challenge(), None);
        assert_eq!(GatewayError::DecisionOnlyRoute.outcome(), "no_route");
    }

    #[test]
    fn engine_failures_map_to_one_answer_each() {
        let of =
            |etype, source| GatewayError::of_failure(&Error::create(etype, source, None, None));
        assert_eq!(
            of(HTTPStatus(413), ErrorSource::Downstream),
            Some(GatewayError::BodyTooLarge)
        );
        assert_eq!(
            of(HTTPStatus(431), ErrorSource::Downstream),
            Some(GatewayError::HeadersTooLarge)
        );
        assert_eq!(
            of(HTTPStatus(414), ErrorSource::Downstream),
            Some(GatewayError::Malformed(414))
        );
        assert_eq!(
            of(ReadError, ErrorSource::Upstream),
            Some(GatewayError::UpstreamUnavailable)
        );
        assert_eq!(
            of(ConnectRefused, ErrorSource::Internal),
            Some(GatewayError::UpstreamUnavailable)
        );
        assert_eq!(of(ConnectionClosed, ErrorSource::Downstream), None);
        assert_eq!(of(WriteError, ErrorSource::Downstream), None);
        assert_eq!(of(WriteTimedout, ErrorSource::Downstream), None);
        assert_eq!(
            of(ReadTimedout, ErrorSource::Downstream),
            Some(GatewayError::Malformed(408))
        );
        assert!(is_client_failure(&Error::create(
            WriteTimedout,
            ErrorSource::Downstream,
            None,
            None
        )));
        assert_eq!(
            of(InvalidHTTPHeader, ErrorSource::Downstream),
            Some(GatewayError::Malformed(400))
        );
        assert!(matches!(
            of(InternalError, ErrorSource::Internal),
            Some(GatewayError::Internal(_))
        ));
        assert!(is_client_failure(&Error::new(HTTPStatus(400))));
        assert!(!is_client_failure(&Error::new(HTTPStatus(502))));
    }
}
