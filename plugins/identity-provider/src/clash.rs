//! What a unique-value conflict of a login's write means: a race with another login (start
//! over), or an email or username that another user of the tenant has (a 400 at once).
//!
//! A login writes its user, registration and link in one transaction ([`crate::store`]); the
//! store answers `Conflict` when a unique value is taken: the user's email or username in the
//! tenant, or the provider user's link. That is a race when starting over would decide
//! differently — a concurrent login linked the provider user meanwhile, or created a user with
//! the email or username the linking strategy looked up and found free. It is permanent when the
//! value did not come from that decision (a reconcile lambda set it, or the user already existed)
//! and another user has it: retrying would collide with the same user every time, so the login
//! answers FusionAuth's `[duplicate]user.email` / `[duplicate]user.username` field errors.

use gatehouse_plugin_api::model::User;
use gatehouse_plugin_api::{ApiError, Errors, StoreError};
use uuid::Uuid;

use crate::common::Env;
use crate::reconcile::Identity;

/// What a login was writing when the store answered `Conflict`.
pub struct Write<'a> {
    /// The provider.
    pub provider_id: Uuid,
    /// The application's tenant (the scope of unique emails, usernames and links).
    pub tenant_id: Uuid,
    /// Who the token names.
    pub who: &'a Identity,
    /// The user as the login would have written it.
    pub user: &'a User,
    /// True when the login was creating the user.
    pub created: bool,
    /// True when the provider user's link existed when the login read it.
    pub had_link: bool,
}

/// Which unique values of the user other users hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holders {
    /// Another user of the tenant has the user's email.
    pub email: bool,
    /// Another user of the tenant has the user's username.
    pub username: bool,
}

/// The verdict on a conflict.
#[derive(Debug)]
pub enum Clash {
    /// A concurrent change: the login starts over.
    Race,
    /// A value another user has: this 400 (field errors `user.email` / `user.username`).
    Taken(ApiError),
}

/// Returns whether the conflict of `write` is a race or a value another user has, reading the
/// link and the holders of the user's email and username as they are now.
pub async fn classify(context: &Env<'_>, write: &Write<'_>) -> Result<Clash, StoreError> {
    if !write.had_link && linked_now(context, write).await? {
        return Ok(Clash::Race);
    }
    let holders = holders(context, write.tenant_id, write.user).await?;
    Ok(verdict(write, holders))
}

/// True when the provider user has a link in the tenant now.
async fn linked_now(context: &Env<'_>, write: &Write<'_>) -> Result<bool, StoreError> {
    let links = context
        .records
        .find_links(Some(write.provider_id), None, Some(&write.who.unique_id))
        .await?;
    Ok(links.iter().any(|l| l.tenant_id == write.tenant_id))
}

/// Returns which of `user`'s email and username another user of `tenant_id` holds.
async fn holders(context: &Env<'_>, tenant_id: Uuid, user: &User) -> Result<Holders, StoreError> {
    let other = |found: Option<User>| found.is_some_and(|u| u.id != user.id);
    let email = match &user.email {
        Some(e) => other(context.store.find_user_by_email(tenant_id, e).await?),
        None => false,
    };
    let username = match &user.username {
        Some(u) => other(context.store.find_user_by_username(tenant_id, u).await?),
        None => false,
    };
    Ok(Holders { email, username })
}

/// The verdict once the link is known to be absent: a held value is permanent unless the login
/// was creating the user with the token's own email or username (the value the linking
/// strategy looked up and found free: starting over finds the new holder). No holder at all
/// means the holder changed or went away meanwhile: a race.
pub fn verdict(write: &Write<'_>, holders: Holders) -> Clash {
    let from_token = |value: &Option<String>, token: &Option<String>| {
        write.created
            && matches!((value, token), (Some(v), Some(t)) if v.to_lowercase() == t.to_lowercase())
    };
    let email = holders.email && !from_token(&write.user.email, &write.who.email);
    let username = holders.username && !from_token(&write.user.username, &write.who.username);
    if !email && !username {
        return Clash::Race;
    }
    let mut errors = Errors::new();
    if email {
        errors.field(
            "user.email",
            "duplicate",
            "Another user in the tenant already has this email; the login would give it to this user too (set by the reconcile lambda).",
        );
    }
    if username {
        errors.field(
            "user.username",
            "duplicate",
            "Another user in the tenant already has this username; the login would give it to this user too (set by the reconcile lambda).",
        );
    }
    Clash::Taken(ApiError::BadRequest(errors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn who(email: Option<&str>, username: Option<&str>) -> Identity {
        Identity {
            unique_id: "ext-1".into(),
            email: email.map(str::to_string),
            email_verified: None,
            username: username.map(str::to_string),
        }
    }

    fn user(email: Option<&str>, username: Option<&str>) -> User {
        User {
            id: Uuid::new_v4(),
            email: email.map(str::to_string),
            username: username.map(str::to_string),
            ..Default::default()
        }
    }

    fn fields(clash: Clash) -> Vec<String> {
        match clash {
            Clash::Race => Vec::new(),
            Clash::Taken(e) => {
                assert_eq!(e.status(), 400);
                let body: Value = serde_json::from_slice(&e.to_response().body).expect("json");
                let mut out: Vec<String> = body["fieldErrors"]
                    .as_object()
                    .expect("field errors")
                    .iter()
                    .map(|(k, v)| format!("{k} {}", v[0]["code"].as_str().unwrap_or_default()))
                    .collect();
                out.sort();
                out
            }
        }
    }

    #[test]
    fn a_value_set_by_the_lambda_and_held_by_another_user_is_permanent() {
        let who = who(Some("ann@example.com"), Some("ann"));
        let taken = user(Some("bob@example.com"), Some("bob"));
        for created in [false, true] {
            let write = Write {
                provider_id: Uuid::new_v4(),
                tenant_id: Uuid::new_v4(),
                who: &who,
                user: &taken,
                created,
                had_link: true,
            };
            let both = Holders {
                email: true,
                username: true,
            };
            assert_eq!(
                fields(verdict(&write, both)),
                [
                    "user.email [duplicate]user.email",
                    "user.username [duplicate]user.username"
                ],
                "created: {created}"
            );
            let email_only = Holders {
                email: true,
                username: false,
            };
            assert_eq!(
                fields(verdict(&write, email_only)),
                ["user.email [duplicate]user.email"]
            );
        }
    }

    #[test]
    fn the_tokens_own_value_on_a_new_user_is_a_race() {
        let who = who(Some("Ann@Example.com"), Some("ann"));
        let new_user = user(Some("ann@example.com"), Some("ANN"));
        let write = Write {
            provider_id: Uuid::new_v4(),
            tenant_id: Uuid::new_v4(),
            who: &who,
            user: &new_user,
            created: true,
            had_link: false,
        };
        let both = Holders {
            email: true,
            username: true,
        };
        assert!(matches!(verdict(&write, both), Clash::Race));
        // the same values on an existing user are someone else's: permanent
        let existing = Write {
            created: false,
            ..write
        };
        assert_eq!(fields(verdict(&existing, both)).len(), 2);
        // nobody holds anything any more: the holder changed meanwhile
        assert!(matches!(
            verdict(&existing, Holders::default()),
            Clash::Race
        ));
    }
}
