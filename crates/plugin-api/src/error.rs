//! The one error type of the REST API layer, rendering FusionAuth's Errors JSON.
//!
//! Status codes are chosen in a single exhaustive `match` in [`ApiError::status`].
//! Internal errors carry a correlation id: the detail goes to the log, the client sees only the id.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::response::PluginResponse;

/// One error entry: a machine-readable code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorItem {
    /// FusionAuth's code, e.g. `[blank]refreshToken`.
    pub code: String,
    /// A message for humans; never contains secrets.
    pub message: String,
}

/// FusionAuth's Errors object: general errors and errors per field path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Errors {
    /// Errors not tied to a field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub general_errors: Vec<ErrorItem>,
    /// Errors keyed by the field path, e.g. `identityProvider.name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub field_errors: BTreeMap<String, Vec<ErrorItem>>,
}

/// The longest segment of a field name an error repeats as it is.
pub const MAX_FIELD_SEGMENT: usize = 64;

/// `field` with every segment (between dots) that is not a plain name replaced by `?`
/// (see [`Errors::field`]). Borrowed when every segment is plain.
pub fn safe_field_name(field: &str) -> std::borrow::Cow<'_, str> {
    let plain = |segment: &str| {
        segment.len() <= MAX_FIELD_SEGMENT
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-[]:".contains(&b))
    };
    if field.split('.').all(plain) {
        return std::borrow::Cow::Borrowed(field);
    }
    std::borrow::Cow::Owned(
        field
            .split('.')
            .map(|segment| if plain(segment) { segment } else { "?" })
            .collect::<Vec<_>>()
            .join("."),
    )
}

impl Errors {
    /// An empty collection; add to it and check [`Errors::is_empty`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a field error whose code is `[kind]field`, FusionAuth's convention.
    ///
    /// Field names are often built from the client's own keys (an unknown property, a map
    /// key): a segment that is not a plain name (letters, digits, `_`, `-`, `[`, `]`, `:`; at
    /// most [`MAX_FIELD_SEGMENT`] characters) is replaced by `?`, so an error never echoes
    /// markup, control bytes or a long value the client sent.
    pub fn field(&mut self, field: &str, kind: &str, message: impl Into<String>) -> &mut Self {
        let field = safe_field_name(field);
        self.field_errors
            .entry(field.to_string())
            .or_default()
            .push(ErrorItem {
                code: format!("[{kind}]{field}"),
                message: message.into(),
            });
        self
    }

    /// Adds a general error with the given code.
    pub fn general(&mut self, code: impl Into<String>, message: impl Into<String>) -> &mut Self {
        self.general_errors.push(ErrorItem {
            code: code.into(),
            message: message.into(),
        });
        self
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.general_errors.is_empty() && self.field_errors.is_empty()
    }

    /// Every message with its field path (empty for general errors), field errors first: for
    /// reporting problems outside an HTTP answer, e.g. in the configuration.
    pub fn into_messages(self) -> Vec<(String, String)> {
        self.field_errors
            .into_iter()
            .flat_map(|(field, items)| items.into_iter().map(move |i| (field.clone(), i.message)))
            .chain(
                self.general_errors
                    .into_iter()
                    .map(|i| (String::new(), i.message)),
            )
            .collect()
    }

    /// `Ok(())` when empty, else the errors as a 400.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(ApiError::BadRequest(self))
        }
    }
}

/// What can go wrong while serving an API request.
#[derive(Debug)]
pub enum ApiError {
    /// 400 with an Errors body.
    BadRequest(Errors),
    /// 401 with an empty body (FusionAuth: "The response will be empty").
    Unauthorized,
    /// 403 with an empty body.
    Forbidden,
    /// 404 with an empty body.
    NotFound,
    /// 405: the path exists, the method does not.
    MethodNotAllowed,
    /// 409 with an Errors body: the state changed under the request.
    Conflict(Errors),
    /// 413: the request body is larger than the configured limit.
    PayloadTooLarge,
    /// 415: the Content-Type is not one the endpoint accepts.
    UnsupportedMediaType,
    /// 500: logged with the correlation id; only the id reaches the client.
    Internal {
        /// Random id, printed in the log next to `detail`.
        correlation_id: String,
        /// What happened, for the log only.
        detail: String,
    },
    /// 503: a dependency (the store) is unavailable; logged like `Internal`.
    Unavailable {
        /// Random id, printed in the log next to `detail`.
        correlation_id: String,
        /// What happened, for the log only.
        detail: String,
    },
}

impl ApiError {
    /// A 400 with a single field error.
    pub fn field(field: &str, kind: &str, message: impl Into<String>) -> Self {
        let mut errors = Errors::new();
        errors.field(field, kind, message);
        ApiError::BadRequest(errors)
    }

    /// A 400 with a single general error.
    pub fn general(code: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Errors::new();
        errors.general(code, message);
        ApiError::BadRequest(errors)
    }

    /// An internal error with a fresh correlation id; `detail` is for the log only.
    pub fn internal(detail: impl fmt::Display) -> Self {
        ApiError::Internal {
            correlation_id: uuid::Uuid::new_v4().to_string(),
            detail: detail.to_string(),
        }
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden => 403,
            ApiError::NotFound => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::Conflict(_) => 409,
            ApiError::PayloadTooLarge => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::Internal { .. } => 500,
            ApiError::Unavailable { .. } => 503,
        }
    }

    /// Renders the error as a response. Internal errors are logged by the host, which sees the
    /// `Internal` variant before rendering; the body names only the correlation id.
    pub fn to_response(&self) -> PluginResponse {
        let status = self.status();
        match self {
            ApiError::BadRequest(errors) | ApiError::Conflict(errors) => {
                PluginResponse::json(status, errors)
            }
            ApiError::Unauthorized => {
                PluginResponse::empty(status).with_header("WWW-Authenticate", "Bearer")
            }
            ApiError::Forbidden | ApiError::NotFound | ApiError::MethodNotAllowed => {
                PluginResponse::empty(status)
            }
            ApiError::PayloadTooLarge => {
                let mut errors = Errors::new();
                errors.general("[TooLarge]", "The request body is larger than allowed.");
                PluginResponse::json(status, &errors)
            }
            ApiError::UnsupportedMediaType => {
                let mut errors = Errors::new();
                errors.general(
                    "[UnsupportedMediaType]",
                    "The Content-Type of the request is not supported by this endpoint.",
                );
                PluginResponse::json(status, &errors)
            }
            ApiError::Internal { correlation_id, .. } => {
                let mut errors = Errors::new();
                errors.general(
                    "[InternalError]",
                    format!("An internal error occurred. Correlation id: {correlation_id}"),
                );
                PluginResponse::json(status, &errors)
            }
            ApiError::Unavailable { correlation_id, .. } => {
                let mut errors = Errors::new();
                errors.general(
                    "[Unavailable]",
                    format!("The store is not available. Correlation id: {correlation_id}"),
                );
                PluginResponse::json(status, &errors)
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Internal {
                correlation_id,
                detail,
            }
            | ApiError::Unavailable {
                correlation_id,
                detail,
            } => write!(f, "error {correlation_id}: {detail}"),
            other => write!(f, "API error {}", other.status()),
        }
    }
}

impl std::error::Error for ApiError {}

/// A step the CPU pool could not run to its end: an internal error (500, correlation id).
impl From<crate::cpu::CpuPoolError> for ApiError {
    fn from(e: crate::cpu::CpuPoolError) -> Self {
        ApiError::internal(e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::NotFound => ApiError::NotFound,
            crate::store::StoreError::Conflict(message) => {
                let mut errors = Errors::new();
                errors.general("[Conflict]", message);
                ApiError::Conflict(errors)
            }
            crate::store::StoreError::Unavailable(detail) => ApiError::Unavailable {
                correlation_id: uuid::Uuid::new_v4().to_string(),
                detail,
            },
            crate::store::StoreError::Backend(detail) => ApiError::internal(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_never_echo_what_a_client_sent() {
        let mut errors = Errors::new();
        errors.field("lambda.<img src=x onerror=alert(1)>", "unknown", "m");
        errors.field(
            &format!("identityProvider.{}", "k".repeat(5000)),
            "unknown",
            "m",
        );
        errors.field(
            "identityProvider.applicationConfiguration.{abc}.enabled",
            "invalid",
            "m",
        );
        errors.field("identityProvider.keys[0]", "invalid", "m");
        let rendered = serde_json::to_string(&errors).expect("json");
        assert!(
            !rendered.contains('<') && !rendered.contains("kkkk"),
            "{rendered}"
        );
        assert!(rendered.contains("[unknown]lambda.?"), "{rendered}");
        assert!(rendered.contains("identityProvider.applicationConfiguration.?.enabled"));
        assert!(
            rendered.contains("[invalid]identityProvider.keys[0]"),
            "{rendered}"
        );
        assert_eq!(safe_field_name("a.b-c.d_e"), "a.b-c.d_e");
    }

    #[test]
    fn every_variant_has_its_status() {
        let cases = [
            (ApiError::BadRequest(Errors::new()), 400),
            (ApiError::Unauthorized, 401),
            (ApiError::Forbidden, 403),
            (ApiError::NotFound, 404),
            (ApiError::MethodNotAllowed, 405),
            (ApiError::Conflict(Errors::new()), 409),
            (ApiError::PayloadTooLarge, 413),
            (ApiError::UnsupportedMediaType, 415),
            (ApiError::internal("boom"), 500),
            (
                ApiError::Unavailable {
                    correlation_id: "c".into(),
                    detail: "d".into(),
                },
                503,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status);
            assert_eq!(error.to_response().status, status);
        }
    }

    #[test]
    fn field_errors_render_fusionauth_json() {
        let error = ApiError::field("refreshToken", "blank", "You must specify a refresh token.");
        let body: serde_json::Value =
            serde_json::from_slice(&error.to_response().body).expect("json");
        assert_eq!(
            body["fieldErrors"]["refreshToken"][0]["code"],
            "[blank]refreshToken"
        );
        assert!(body.get("generalErrors").is_none());
    }

    #[test]
    fn internal_errors_hide_the_detail() {
        let error = ApiError::internal("database file /secret/path is locked");
        let body = String::from_utf8(error.to_response().body).expect("utf8");
        assert!(!body.contains("/secret/path"));
        assert!(body.contains("Correlation id"));
    }
}
