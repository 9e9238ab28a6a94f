//! Errors of the proxy layer and their one mapping to HTTP. Every failure a client sees from
//! the proxy carries FusionAuth's Errors JSON, like the REST API.

use gatehouse_plugin_api::{Errors, TokenError};

/// Why the proxy answered a request itself instead of forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// No route matches the host and path.
    NoRoute,
    /// A required route got no token.
    MissingToken,
    /// The token was presented and refused.
    InvalidToken(TokenError),
    /// The token is valid but for another application.
    WrongApplication,
    /// The token lacks every role the route accepts.
    MissingRole,
    /// The request body is over the limit.
    BodyTooLarge,
    /// The request headers are over the limit.
    HeadersTooLarge,
    /// The upstream could not be reached or failed mid-response.
    UpstreamUnavailable,
    /// Anything else; logged with this correlation id.
    Internal(String),
}

impl GatewayError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::NoRoute => 404,
            GatewayError::MissingToken | GatewayError::InvalidToken(_) => 401,
            GatewayError::WrongApplication | GatewayError::MissingRole => 403,
            GatewayError::BodyTooLarge => 413,
            GatewayError::HeadersTooLarge => 431,
            GatewayError::UpstreamUnavailable => 502,
            GatewayError::Internal(_) => 500,
        }
    }

    /// The Errors JSON body.
    pub fn body(&self) -> Vec<u8> {
        let (code, message) = match self {
            GatewayError::NoRoute => ("[NotFound]", "No route matches this request.".to_string()),
            GatewayError::MissingToken => (
                "[MissingToken]",
                "This resource requires an access token.".to_string(),
            ),
            GatewayError::InvalidToken(reason) => (
                "[InvalidToken]",
                format!("The access token is not valid ({}).", reason.reason()),
            ),
            GatewayError::WrongApplication => (
                "[Forbidden]",
                "The access token was not issued for this application.".to_string(),
            ),
            GatewayError::MissingRole => (
                "[Forbidden]",
                "The access token does not carry a role this resource requires.".to_string(),
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
            GatewayError::Internal(id) => (
                "[InternalError]",
                format!("An internal error occurred. Correlation id: {id}"),
            ),
        };
        let mut errors = Errors::new();
        errors.general(code, message);
        serde_json::to_vec(&errors).unwrap_or_default()
    }

    /// A short label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no_route",
            GatewayError::MissingToken | GatewayError::InvalidToken(_) => "unauthenticated",
            GatewayError::WrongApplication | GatewayError::MissingRole => "forbidden",
            GatewayError::BodyTooLarge | GatewayError::HeadersTooLarge => "too_large",
            GatewayError::UpstreamUnavailable => "upstream_unavailable",
            GatewayError::Internal(_) => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let cases = [
            (GatewayError::NoRoute, 404),
            (GatewayError::MissingToken, 401),
            (GatewayError::InvalidToken(TokenError::Expired), 401),
            (GatewayError::WrongApplication, 403),
            (GatewayError::MissingRole, 403),
            (GatewayError::BodyTooLarge, 413),
            (GatewayError::HeadersTooLarge, 431),
            (GatewayError::UpstreamUnavailable, 502),
            (GatewayError::Internal("abc".into()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status);
            let body: serde_json::Value = serde_json::from_slice(&error.body()).expect("json");
            assert!(body["generalErrors"][0]["code"].is_string());
        }
    }
}
