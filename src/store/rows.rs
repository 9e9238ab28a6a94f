//! The rules every backend applies that are not SQL, written once: how a record becomes its
//! row (users, registrations, links, a login's rows, revocations, refresh-token columns), which
//! rows a revocation addresses, how a value is hashed and matched, how a rotation is recorded,
//! how stored documents are decoded, what a broken rule is reported as, which schema versions a
//! gateway can use. The backends differ only in their SQL and in reading columns.

use gatehouse_plugin_api::indexed::{self, Indexed};
use gatehouse_plugin_api::model::{IdentityProviderLink, RefreshToken, Registration, User};
use gatehouse_plugin_api::store::{RevokeScope, StoreError};
use gatehouse_plugin_api::tokens::RevocationScope;
use gatehouse_plugin_identity_provider::store::LinkWrite;
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
    /// The tenant of the linked user: a provider's user id is linked once per tenant.
    pub tenant: Uuid,
    pub provider_user: String,
    pub user: Uuid,
    pub body: String,
}

impl LinkRow {
    /// The row of `link`; refused when its provider user id is not indexable text
    /// ([`indexable`]).
    pub fn of(link: &IdentityProviderLink) -> Result<LinkRow, StoreError> {
        indexable(
            Indexed::ProviderUserId,
            &link.identity_provider_user_id,
            "link's identityProviderUserId",
        )?;
        Ok(LinkRow {
            provider: link.identity_provider_id,
            tenant: link.tenant_id,
            provider_user: link.identity_provider_user_id.clone(),
            user: link.user_id,
            body: encode(link)?,
        })
    }
}

/// The conflict of a link write whose condition failed: the provider user is linked in the
/// tenant already, or its link is no longer the one the login read.
pub(crate) fn link_taken() -> StoreError {
    StoreError::Conflict("the provider user's link changed".into())
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
    /// The row of `user`; refused when its email or username is not indexable text
    /// ([`indexable`]).
    pub fn of(user: &gatehouse_plugin_api::model::User) -> Result<UserRow, StoreError> {
        if let Some(email) = &user.email {
            indexable(Indexed::Email, email, "user's email")?;
        }
        if let Some(username) = &user.username {
            indexable(Indexed::Username, username, "user's username")?;
        }
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

/// Checks text bound for an indexed column against the shared limits
/// ([`gatehouse_plugin_api::indexed`]), the same on every backend: the APIs refuse such a
/// value first (a 400 naming the field), so this refusal (`what` names the value in the log) is
/// the store's own guarantee that no backend writes what another would refuse.
pub(crate) fn indexable(kind: Indexed, value: &str, what: &str) -> Result<(), StoreError> {
    indexed::check(kind, value)
        .map_err(|flaw| StoreError::Backend(format!("refused to store a {what} {flaw}")))
}

/// The lower-cased key a lookup of `value` (an email or a username) compares with, or `None`
/// when no row can hold it (over its limit, or holding a NUL): such a lookup finds nothing,
/// on every backend, without asking the database.
pub(crate) fn lookup_key(kind: Indexed, value: &str) -> Option<String> {
    indexed::check(kind, value).ok()?;
    Some(value.to_lowercase())
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
/// Returns 64 lowercase hex digits. Written digit by digit from a table: a refresh hashes its
/// value twice (the read, then the touch or rotation), and formatting each byte through
/// `format!` cost more than the SHA-256 itself.
pub fn token_hash(value: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    let mut hex = String::with_capacity(digest.as_ref().len() * 2);
    for byte in digest.as_ref() {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

/// The conflict a broken uniqueness or integrity rule is reported as, by every backend.
pub(crate) fn unique_violation() -> StoreError {
    StoreError::Conflict("a record with the same unique value already exists".into())
}

/// A user write's conflict (a taken email or username) in the words the API shows; other
/// errors unchanged.
pub(crate) fn user_conflict(e: StoreError) -> StoreError {
    match e {
        StoreError::Conflict(_) => StoreError::Conflict(
            "a user with this email or username already exists in the tenant".into(),
        ),
        other => other,
    }
}

/// A failed reference (the registration of a missing user, a link to a missing provider) is
/// `NotFound`; other errors unchanged.
pub(crate) fn conflict_is_not_found(e: StoreError) -> StoreError {
    match e {
        StoreError::Conflict(_) => StoreError::NotFound,
        other => other,
    }
}

/// Whether a database at schema version `current` can be used by a gateway that knows `known`
/// migrations: `Ok` (the pending ones are then applied), or `Unavailable` when the database is
/// newer than this gateway.
pub(crate) fn check_schema_version(current: usize, known: usize) -> Result<(), StoreError> {
    if current > known {
        return Err(StoreError::Unavailable(format!(
            "the database is at schema version {current}, newer than this gatehouse ({known}); \
             upgrade gatehouse"
        )));
    }
    Ok(())
}

/// What an identity-provider login writes in one transaction: the user (inserted, or replaced
/// only while it is still the version the login read), its registration, its link.
pub(crate) struct LoginRows {
    pub user: UserRow,
    pub how: UserWrite,
    pub registration: Option<RegistrationRow>,
    pub link: LinkRow,
    pub link_write: LinkWrite,
}

impl LoginRows {
    /// The rows of a login that read `expected_user` (`None`: the user is new).
    pub fn of(
        user: &User,
        expected_user: Option<&User>,
        registration: Option<&Registration>,
        link: &IdentityProviderLink,
        link_write: LinkWrite,
    ) -> Result<LoginRows, StoreError> {
        Ok(LoginRows {
            user: UserRow::of(user)?,
            how: expected_user.map_or(UserWrite::Insert, |u| {
                UserWrite::ReplaceIf(u.last_update_instant)
            }),
            registration: registration.map(RegistrationRow::of).transpose()?,
            link: LinkRow::of(link)?,
            link_write,
        })
    }
}

/// The refresh-token rows a revocation addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RevokeTarget<'a> {
    /// The live token with this value (the backend looks it up; none revoked when none is live).
    Value(&'a str),
    /// The rows whose columns hold these ids, all of them.
    Columns(Vec<(&'static str, Uuid)>),
}

impl RevokeTarget<'_> {
    /// The rows `scope` addresses.
    pub fn of(scope: &RevokeScope) -> RevokeTarget<'_> {
        RevokeTarget::Columns(match scope {
            RevokeScope::Token(value) => return RevokeTarget::Value(value),
            RevokeScope::Id(id) => vec![("id", *id)],
            RevokeScope::User(user) => vec![("user_id", *user)],
            RevokeScope::Application(app) => vec![("application_id", *app)],
            RevokeScope::UserApplication(user, app) => {
                vec![("user_id", *user), ("application_id", *app)]
            }
        })
    }
}

/// The SQL condition `column = P1 AND …` over `columns`, each placeholder written by
/// `placeholder` from its position (1-based): `?1` for SQLite, `$1` for PostgreSQL.
pub(crate) fn column_filter(
    columns: &[(&'static str, Uuid)],
    placeholder: fn(usize) -> String,
) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(index, (column, _))| format!("{column} = {}", placeholder(index + 1)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_hash_is_the_lowercase_hex_sha256_stored_rows_were_keyed_by() {
        // FIPS 180-2's test vectors.
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            token_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // The same text as the byte-by-byte formatting the stored hashes were made with, for
        // values of every length up to 300.
        for len in 0..300usize {
            let value: String = (0..len)
                .map(|i| char::from(b'!' + ((i * 31 + len * 7) % 94) as u8))
                .collect();
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
            let formatted: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(token_hash(&value), formatted, "length {len}");
        }
    }

    #[test]
    fn a_revocation_addresses_its_scope_columns_or_a_value() {
        let (user, app) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(
            RevokeTarget::of(&RevokeScope::Token("v".into())),
            RevokeTarget::Value("v")
        );
        let scope = RevokeScope::UserApplication(user, app);
        let RevokeTarget::Columns(columns) = RevokeTarget::of(&scope) else {
            panic!("columns expected");
        };
        assert_eq!(columns, vec![("user_id", user), ("application_id", app)]);
        assert_eq!(
            column_filter(&columns, |n| format!("${n}")),
            "user_id = $1 AND application_id = $2"
        );
        assert_eq!(
            RevokeTarget::of(&RevokeScope::Id(user)),
            RevokeTarget::Columns(vec![("id", user)])
        );
    }

    #[test]
    fn a_newer_schema_is_refused_and_conflicts_are_named() {
        assert!(check_schema_version(3, 3).is_ok());
        assert!(check_schema_version(0, 3).is_ok());
        let newer = check_schema_version(4, 3);
        assert!(
            matches!(&newer, Err(StoreError::Unavailable(m)) if m.contains("version 4")),
            "{newer:?}"
        );
        assert_eq!(
            conflict_is_not_found(unique_violation()),
            StoreError::NotFound
        );
        let taken = user_conflict(unique_violation());
        assert!(matches!(taken, StoreError::Conflict(m) if m.contains("email or username")));
        assert_eq!(user_conflict(StoreError::NotFound), StoreError::NotFound);
    }
}
