//! Why a refresh token could not be exchanged ([`RefreshError`]), and how each reason is
//! answered: an invalid token is FusionAuth's 400 `[invalid]refreshToken`, a store failure keeps
//! the store's status (503 when it cannot be reached), a signing failure is a 500.

use std::fmt;

use gatehouse_plugin_api::error::ApiError;
use gatehouse_plugin_api::store::StoreError;
use gatehouse_plugin_api::tokens::TokenError;

/// Why a refresh token could not be exchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshError {
    /// No live token has this value: unknown, revoked, replaced by a rotation, or outside the
    /// tenant the request is scoped to.
    NotFound,
    /// The token is past its expiration.
    Expired,
    /// The token's user no longer exists.
    UserNotFound,
    /// The token's user is deactivated.
    UserInactive,
    /// The token's application no longer exists or is deactivated.
    ApplicationUnavailable,
    /// The application does not allow token refresh (`loginConfiguration.allowTokenRefresh`).
    RefreshNotAllowed,
    /// The user is no longer registered to the token's application.
    NotRegistered,
    /// A one-time-use value presented again after it was rotated, outside any grace period.
    AlreadyRotated,
    /// A live token of another application (the one named, or none) than the one the exchange
    /// was for: left untouched (only the edge's transparent refresh asks for an application).
    OtherApplication(Option<uuid::Uuid>),
    /// The store failed.
    Store(StoreError),
    /// Signing the access token failed.
    Token(TokenError),
}

impl RefreshError {
    /// True when the presented token is at fault (a 400), false for server-side failures.
    pub fn is_invalid_token(&self) -> bool {
        !matches!(self, RefreshError::Store(_) | RefreshError::Token(_))
    }

    /// A short, stable name for logs and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            RefreshError::NotFound => "not_found",
            RefreshError::Expired => "expired",
            RefreshError::UserNotFound => "user_not_found",
            RefreshError::UserInactive => "user_inactive",
            RefreshError::ApplicationUnavailable => "application_unavailable",
            RefreshError::RefreshNotAllowed => "refresh_not_allowed",
            RefreshError::NotRegistered => "not_registered",
            RefreshError::AlreadyRotated => "already_rotated",
            RefreshError::OtherApplication(_) => "other_application",
            RefreshError::Store(_) => "store_error",
            RefreshError::Token(_) => "signing_error",
        }
    }

    fn message(&self) -> &'static str {
        match self {
            RefreshError::NotFound
            | RefreshError::AlreadyRotated
            | RefreshError::OtherApplication(_) => {
                "The refresh token is not valid: it was not found or has been revoked."
            }
            RefreshError::Expired => "The refresh token has expired.",
            RefreshError::UserNotFound | RefreshError::UserInactive => {
                "The user of the refresh token does not exist or is not active."
            }
            RefreshError::ApplicationUnavailable => {
                "The application of the refresh token does not exist or is not active."
            }
            RefreshError::RefreshNotAllowed => {
                "The application of the refresh token does not allow token refresh."
            }
            RefreshError::NotRegistered => {
                "The user is not registered to the application of the refresh token."
            }
            RefreshError::Store(_) | RefreshError::Token(_) => "The refresh failed.",
        }
    }
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshError::Store(e) => write!(f, "refresh failed: {e}"),
            RefreshError::Token(e) => write!(f, "refresh failed: signing: {e}"),
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for RefreshError {}

impl From<StoreError> for RefreshError {
    fn from(e: StoreError) -> Self {
        RefreshError::Store(e)
    }
}

impl From<RefreshError> for ApiError {
    /// Invalid tokens are a 400 with the field error `[invalid]refreshToken` (FusionAuth answers
    /// 400 for an unknown, expired or revoked refresh token); store and signing failures keep
    /// their own status.
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Store(store) => ApiError::from(store),
            RefreshError::Token(token) => ApiError::internal(format!("signing failed: {token}")),
            invalid => ApiError::field("refreshToken", "invalid", invalid.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_400_or_server_statuses() {
        let invalid: ApiError = RefreshError::Expired.into();
        assert_eq!(invalid.status(), 400);
        let body: serde_json::Value =
            serde_json::from_slice(&invalid.to_response().body).expect("json");
        assert_eq!(
            body["fieldErrors"]["refreshToken"][0]["code"],
            "[invalid]refreshToken"
        );
        let down: ApiError = RefreshError::Store(StoreError::Unavailable("x".into())).into();
        assert_eq!(down.status(), 503);
        let signing: ApiError = RefreshError::Token(TokenError::CannotSign).into();
        assert_eq!(signing.status(), 500);
        assert!(RefreshError::AlreadyRotated.is_invalid_token());
        assert!(!RefreshError::Token(TokenError::CannotSign).is_invalid_token());
    }
}
