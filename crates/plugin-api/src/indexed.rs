//! Free text the stores index, with one set of limits: a user's email and username (unique per
//! tenant, lower-cased), an identity provider's user id (the key of a link) and an API key.
//! Every value of these kinds is checked here before it is written, by the API that takes it
//! (a 400 naming the field, nothing written) and again by the store's row logic (both
//! backends refuse the row the same way), so SQLite and PostgreSQL accept exactly the same
//! values.
//!
//! Why limits at all: PostgreSQL refuses an index entry over about 2700 bytes (a btree page's
//! third) and text holding U+0000; SQLite has neither rule. The limits are far above real data
//! (RFC 5321 caps an address at 254 bytes; providers' user ids are UUIDs, numbers or URLs) and
//! far below PostgreSQL's: the largest entry is a tenant id (16 bytes) and a lower-cased value,
//! and lower-casing grows UTF-8 text by at most half (`İ`, 2 bytes, becomes `i̇`, 3 bytes).

use std::fmt;

use crate::error::ApiError;
use crate::model::User;

/// The most bytes (UTF-8) of a user's email address: a 64-byte local part, `@` and a 255-byte
/// domain, more than the 254 RFC 5321 allows in a path.
pub const MAX_EMAIL_BYTES: usize = 320;
/// The most bytes of a user's username.
pub const MAX_USERNAME_BYTES: usize = 1024;
/// The most bytes of an identity provider's user id (a link's `identityProviderUserId`, the
/// unique id claim of a login).
pub const MAX_PROVIDER_USER_ID_BYTES: usize = 1024;
/// The most bytes of an API key.
pub const MAX_API_KEY_BYTES: usize = 1024;

/// The kinds of indexed text, each with its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexed {
    /// A user's email.
    Email,
    /// A user's username.
    Username,
    /// An identity provider's user id.
    ProviderUserId,
    /// An API key.
    ApiKey,
}

impl Indexed {
    /// The most bytes a value of this kind may have.
    pub fn most(self) -> usize {
        match self {
            Indexed::Email => MAX_EMAIL_BYTES,
            Indexed::Username => MAX_USERNAME_BYTES,
            Indexed::ProviderUserId => MAX_PROVIDER_USER_ID_BYTES,
            Indexed::ApiKey => MAX_API_KEY_BYTES,
        }
    }
}

/// Why a value cannot be stored as indexed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unstorable {
    /// Longer than its kind's limit (the limit, bytes).
    TooLong(usize),
    /// Holds U+0000, which PostgreSQL cannot store in text.
    Nul,
}

impl fmt::Display for Unstorable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unstorable::TooLong(most) => write!(f, "longer than {most} bytes"),
            Unstorable::Nul => write!(f, "holding a NUL character"),
        }
    }
}

/// Checks `value` as text of `kind`: `Ok` when every store can index it.
pub fn check(kind: Indexed, value: &str) -> Result<(), Unstorable> {
    if value.len() > kind.most() {
        return Err(Unstorable::TooLong(kind.most()));
    }
    if value.contains('\0') {
        return Err(Unstorable::Nul);
    }
    Ok(())
}

/// [`check`] as the API's answer: a 400 naming `field`, `[tooLong]` over the limit, `[invalid]`
/// for a NUL. The message never contains the value.
pub fn check_field(kind: Indexed, value: &str, field: &str) -> Result<(), ApiError> {
    check(kind, value).map_err(|flaw| {
        let code = match flaw {
            Unstorable::TooLong(_) => "tooLong",
            Unstorable::Nul => "invalid",
        };
        ApiError::field(field, code, format!("The {field} is {flaw}."))
    })
}

/// Checks a user's email and username ([`check_field`]), named `user.email` and
/// `user.username`.
pub fn check_user(user: &User) -> Result<(), ApiError> {
    if let Some(email) = &user.email {
        check_field(Indexed::Email, email, "user.email")?;
    }
    if let Some(username) = &user.username {
        check_field(Indexed::Username, username, "user.username")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL's largest btree entry (`BTMaxItemSize` on 8 KiB pages), bytes.
    const POSTGRES_INDEX_ENTRY: usize = 2704;

    #[test]
    fn values_at_the_limit_pass_and_one_byte_more_is_refused() {
        for kind in [
            Indexed::Email,
            Indexed::Username,
            Indexed::ProviderUserId,
            Indexed::ApiKey,
        ] {
            assert_eq!(check(kind, &"a".repeat(kind.most())), Ok(()));
            assert_eq!(
                check(kind, &"a".repeat(kind.most() + 1)),
                Err(Unstorable::TooLong(kind.most()))
            );
            assert_eq!(check(kind, "a\0b"), Err(Unstorable::Nul));
        }
        // Bytes, not characters: 161 two-byte letters are 322 bytes.
        assert!(check(Indexed::Email, &"é".repeat(161)).is_err());
    }

    #[test]
    fn every_limit_fits_a_postgres_index_entry_after_lower_casing() {
        // The most any character grows, in UTF-8 bytes, when lower-cased.
        let growth = (0..=u32::from(char::MAX))
            .filter_map(char::from_u32)
            .map(|c| {
                let lower: usize = c.to_lowercase().map(char::len_utf8).sum();
                lower as f64 / c.len_utf8() as f64
            })
            .fold(1.0, f64::max);
        assert!(growth <= 1.5, "{growth}");
        for kind in [Indexed::Email, Indexed::Username, Indexed::ProviderUserId] {
            // Two uuids (tenant or provider, and a margin) and the lower-cased value.
            let entry = 32 + (kind.most() as f64 * growth) as usize;
            assert!(entry < POSTGRES_INDEX_ENTRY, "{kind:?}: {entry}");
        }
    }

    #[test]
    fn the_answer_names_the_field_and_never_the_value() {
        let user = User {
            email: Some(format!("{}@example.com", "x".repeat(400))),
            ..Default::default()
        };
        let ApiError::BadRequest(errors) = check_user(&user).expect_err("too long") else {
            panic!("a 400");
        };
        let body = serde_json::to_string(&errors).expect("json");
        assert!(body.contains("[tooLong]user.email"), "{body}");
        assert!(!body.contains("xxx"), "{body}");
        let user = User {
            username: Some("a\0b".into()),
            ..Default::default()
        };
        let ApiError::BadRequest(errors) = check_user(&user).expect_err("NUL") else {
            panic!("a 400");
        };
        let body = serde_json::to_string(&errors).expect("json");
        assert!(body.contains("[invalid]user.username"), "{body}");
    }
}
