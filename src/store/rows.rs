//! The rules every backend applies that are not SQL, written once: how a record becomes its
//! row (users, registrations, links, revocations, refresh-token columns), how a value is
//! hashed and matched, how a rotation is recorded, how stored documents are decoded. The
//! backends differ only in their SQL and in reading columns.

use gatehouse_plugin_api::model::{IdentityProviderLink, RefreshToken, Registration};
use gatehouse_plugin_api::store::StoreError;
use gatehouse_plugin_api::tokens::RevocationScope;
use serde::Serialize;
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// The columns of a refresh token row, in the order both backends read them.
pub(crate) const TOKEN_COLUMNS: &str = "id, token, user_id, application_id, tenant_id, \
     insert_instant, start_instant, first_issued_instant, expiration_instant, meta_data";

/// How many rows one pruning statement deletes at most, so upkeep never holds a long lock.
pub(crate) const PRUNE_BATCH: i64 = 1_000;

/// A value as stored JSON text.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encode: {e}")))
}

/// The token a lookup by hash found, when its value is `value` (compared in constant time:
/// the hash found the row, the value itself is checked as well).
pub(crate) fn live_match(found: Option<RefreshToken>, value: &str) -> Option<RefreshToken> {
    found.filter(|t| bool::from(t.token.as_bytes().ct_eq(value.as_bytes())))
}

/// What a one-time-use rotation writes besides the new value: the retired value's hash, the
/// token it belonged to, when, and the outcome late requests may be handed until `until`.
pub(crate) struct RotationRow {
    pub old_hash: String,
    pub token_id: Uuid,
    pub rotated_at: i64,
    /// The access token issued with the rotation, and until when (ms) it is handed out.
    pub outcome: Option<(String, i64)>,
    /// The new value's hash.
    pub next_hash: String,
    /// The new token's metadata, encoded.
    pub next_meta: String,
}

impl RotationRow {
    /// The row of rotating `live` (the token found under `old_value`) to `next`: a rotation
    /// keeps the token's id, or it is refused.
    pub fn of(
        old_value: &str,
        live: &RefreshToken,
        next: &RefreshToken,
        outcome: Option<(String, i64)>,
    ) -> Result<RotationRow, StoreError> {
        if live.id != next.id {
            return Err(StoreError::Conflict(
                "rotation must keep the token id".into(),
            ));
        }
        Ok(RotationRow {
            old_hash: token_hash(old_value),
            token_id: next.id,
            rotated_at: next.insert_instant,
            outcome,
            next_hash: token_hash(&next.token),
            next_meta: encode(&next.meta_data)?,
        })
    }
}

/// A registration as its row.
pub(crate) struct RegistrationRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub application_id: Uuid,
    pub body: String,
}

impl RegistrationRow {
    /// The row of `registration`; a registration must name its user.
    pub fn of(registration: &Registration) -> Result<RegistrationRow, StoreError> {
        let user_id = registration
            .user_id
            .ok_or_else(|| StoreError::Backend("registration without user id".into()))?;
        Ok(RegistrationRow {
            id: registration.id,
            user_id,
            application_id: registration.application_id,
            body: encode(registration)?,
        })
    }
}

/// A link as its row.
pub(crate) struct LinkRow {
    pub provider: Uuid,
    pub provider_user: String,
    pub user: Uuid,
    pub body: String,
}

impl LinkRow {
    /// The row of `link`.
    pub fn of(link: &IdentityProviderLink) -> Result<LinkRow, StoreError> {
        Ok(LinkRow {
            provider: link.identity_provider_id,
            provider_user: link.identity_provider_user_id.clone(),
            user: link.user_id,
            body: encode(link)?,
        })
    }
}

/// The row form of a revocation scope: kind and up to two ids.
pub(crate) fn revocation_row(scope: &RevocationScope) -> (&'static str, String, String) {
    match scope {
        RevocationScope::User(u) => ("user", u.to_string(), String::new()),
        RevocationScope::Application(a) => ("application", a.to_string(), String::new()),
        RevocationScope::UserApplication(u, a) => {
            ("user_application", u.to_string(), a.to_string())
        }
        RevocationScope::Session(s) => ("session", s.to_string(), String::new()),
    }
}

/// The scope of a revocation row; `None` for a row this version does not know.
pub(crate) fn revocation_scope(kind: &str, first: &str, second: &str) -> Option<RevocationScope> {
    let first = Uuid::parse_str(first).ok()?;
    Some(match kind {
        "user" => RevocationScope::User(first),
        "application" => RevocationScope::Application(first),
        "user_application" => {
            RevocationScope::UserApplication(first, Uuid::parse_str(second).ok()?)
        }
        "session" => RevocationScope::Session(first),
        _ => return None,
    })
}

/// Decodes a stored JSON document whatever its depth: the reader's recursion limit is off and
/// the stack grows as needed, so a record written before the document limits existed (or by
/// another tool) stays readable, and can be repaired or deleted through the API. New writes are
/// held to the limits of `gatehouse_plugin_api::json` before they reach the store.
pub(crate) fn decode_document<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<T, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer.disable_recursion_limit();
    let value = T::deserialize(serde_stacker::Deserializer::new(&mut deserializer))?;
    deserializer.end()?;
    Ok(value)
}

/// A user as its row, for every backend: the lower-cased login ids (the unique keys within a
/// tenant) and the body, without registrations (they have rows of their own).
pub(crate) struct UserRow {
    pub id: Uuid,
    pub tenant: Uuid,
    pub email: Option<String>,
    pub username: Option<String>,
    pub body: String,
}

impl UserRow {
    /// The row of `user`.
    pub fn of(user: &gatehouse_plugin_api::model::User) -> Result<UserRow, StoreError> {
        let mut stored = user.clone();
        stored.registrations.clear();
        Ok(UserRow {
            id: user.id,
            tenant: user.tenant_id,
            email: user.email.as_ref().map(|e| e.to_lowercase()),
            username: user.username.as_ref().map(|u| u.to_lowercase()),
            body: encode(&stored)?,
        })
    }
}

/// How a user row is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserWrite {
    /// A new user (`Conflict` when its email or username is taken in the tenant).
    Insert,
    /// Replaces the stored user, whatever it is now.
    Replace,
    /// Replaces the stored user only while its `lastUpdateInstant` is still this.
    ReplaceIf(i64),
}

impl UserWrite {
    /// The version an update must find, when it must find one.
    pub fn expected(self) -> Option<i64> {
        match self {
            UserWrite::ReplaceIf(version) => Some(version),
            UserWrite::Insert | UserWrite::Replace => None,
        }
    }
}

/// SHA-256 of a refresh token value, hex: the lookup key, so the index never holds values
/// that could be compared byte by byte.
pub fn token_hash(value: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
