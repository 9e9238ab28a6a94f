//! The pure part of reconciling an external JWT: who the token names ([`identity`]), what the
//! linking strategy does when no link exists yet ([`decide`]), and how `claimMap` updates the
//! user and registration ([`apply_claim_map`]). The endpoint in [`crate::login`] does the I/O.

use std::collections::BTreeMap;

use gatehouse_plugin_api::indexed::Indexed;
use gatehouse_plugin_api::model::User;
use serde_json::{Map, Value};

use crate::provider::{LinkingStrategy, Provider};

/// A refusal: the general error code and message of the 401 (or the 404 of [`Refusal::NotLinked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The unique id claim is missing.
    MissingUniqueId(String),
    /// The email claim the strategy needs is missing.
    MissingEmail(String),
    /// The username claim the strategy needs is missing.
    MissingUsername(String),
    /// `email_verified` is false and the strategy links by email.
    UnverifiedEmail,
    /// The email's domain is not one of the provider's `domains`.
    DomainNotManaged,
    /// The user already has `limitUserLinkCount.maximumLinks` links to this provider.
    LinkLimitReached(i64),
    /// No link exists and none may be made automatically (404).
    NotLinked,
    /// An identity claim (the unique id, email or username) is longer than the store keeps
    /// ([`gatehouse_plugin_api::indexed`]): the claim's name and the limit, bytes.
    ClaimTooLong(String, usize),
}

impl Refusal {
    /// The HTTP status: 404 for [`Refusal::NotLinked`], else 401.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NotLinked => 404,
            _ => 401,
        }
    }

    /// FusionAuth-style general error code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::MissingUniqueId(_) => "[MissingUniqueIdClaim]",
            Refusal::MissingEmail(_) => "[MissingEmailClaim]",
            Refusal::MissingUsername(_) => "[MissingUsernameClaim]",
            Refusal::UnverifiedEmail => "[UnverifiedEmail]",
            Refusal::DomainNotManaged => "[DomainNotManaged]",
            Refusal::LinkLimitReached(_) => "[LinkLimitReached]",
            Refusal::NotLinked => "[NotLinked]",
            // A token whose claims cannot be kept, as one holding a NUL (see `login.rs`).
            Refusal::ClaimTooLong(..) => "[InvalidJWT]",
        }
    }

    /// A message for humans (no token content beyond claim names).
    pub fn message(&self) -> String {
        match self {
            Refusal::MissingUniqueId(c) => {
                format!("The JWT has no [{c}] claim to identify the user.")
            }
            Refusal::MissingEmail(c) => {
                format!(
                    "The JWT has no [{c}] claim holding an email address, which the linking strategy needs."
                )
            }
            Refusal::MissingUsername(c) => {
                format!("The JWT has no [{c}] claim, which the linking strategy needs.")
            }
            Refusal::UnverifiedEmail => {
                "A link cannot be established using an unverified email address.".into()
            }
            Refusal::DomainNotManaged => {
                "The domain of the email address is not managed by this identity provider.".into()
            }
            Refusal::LinkLimitReached(n) => {
                format!("The user already has the maximum of {n} links to this identity provider.")
            }
            Refusal::NotLinked => {
                "No link exists for this user and none can be made automatically.".into()
            }
            Refusal::ClaimTooLong(c, most) => {
                format!("The JWT's [{c}] claim is longer than the {most} bytes the gateway keeps.")
            }
        }
    }
}

/// Who the token names, per the provider's claim settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's user id (`uniqueIdClaim`).
    pub unique_id: String,
    /// `emailClaim`, trimmed, when present and an email address.
    pub email: Option<String>,
    /// `emailVerifiedClaim` when present: true only for `true` (or `"true"`), false for any
    /// other value.
    pub email_verified: Option<bool>,
    /// `usernameClaim`, when present.
    pub username: Option<String>,
}

impl Identity {
    /// The link's display name: email, else username, else the unique id.
    pub fn display_name(&self) -> String {
        self.email
            .clone()
            .or_else(|| self.username.clone())
            .unwrap_or_else(|| self.unique_id.clone())
    }
}

/// A claim as text: strings as they are, numbers and booleans in JSON form.
pub fn claim_text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The email claim: a string (trimmed) that reads as an address, one `@` between a local part
/// and a domain, with no whitespace, control or invisible (format) characters. Anything else —
/// a number, a list, `not-an-email`, an address with a zero-width space — is not an email: the
/// login goes on as without one (and a strategy that needs one refuses it).
fn email_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    let Value::String(text) = claims.get(name)? else {
        return None;
    };
    let email = text.trim();
    let (local, domain) = email.split_once('@')?;
    let clean = |part: &str| {
        !part.is_empty()
            && !part.contains('@')
            && !part
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
    };
    (clean(local) && clean(domain)).then(|| email.to_string())
}

/// True for characters that show nothing (Unicode format characters such as the zero-width
/// space and joiners, the BOM, bidirectional controls): two addresses that differ only by them
/// look the same.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}' | '\u{E0000}'..='\u{E007F}')
}

/// Refuses a token whose identity claims are longer than the store keeps (the unique id, the
/// email claim's text whether or not it reads as an address, the username), whatever the
/// linking strategy does with them: the same token is refused on every store.
fn check_claim_lengths(provider: &Provider, claims: &Map<String, Value>) -> Result<(), Refusal> {
    let email = match claims.get(&provider.email_claim) {
        Some(Value::String(text)) => Some(text.trim().to_string()),
        _ => None,
    };
    let checked = [
        (
            &provider.unique_id_claim,
            Indexed::ProviderUserId,
            claim_text(claims, &provider.unique_id_claim),
        ),
        (&provider.email_claim, Indexed::Email, email),
        (
            &provider.username_claim,
            Indexed::Username,
            claim_text(claims, &provider.username_claim),
        ),
    ];
    for (claim, kind, text) in checked {
        if text.is_some_and(|t| t.len() > kind.most()) {
            return Err(Refusal::ClaimTooLong(claim.clone(), kind.most()));
        }
    }
    Ok(())
}

/// Reads the identity from verified claims, checking the unique id, the lengths of the
/// identity claims and the email domain.
pub fn identity(provider: &Provider, claims: &Map<String, Value>) -> Result<Identity, Refusal> {
    let unique_id = claim_text(claims, &provider.unique_id_claim)
        .ok_or_else(|| Refusal::MissingUniqueId(provider.unique_id_claim.clone()))?;
    check_claim_lengths(provider, claims)?;
    let email = email_claim(claims, &provider.email_claim);
    let email_verified = match claims.get(&provider.email_verified_claim) {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        // Present but not a clear `true` (`false`, `0`, `null`, `"no"`…): not verified.
        Some(_) => Some(false),
    };
    let username = claim_text(claims, &provider.username_claim);
    if let Some(email) = &email {
        if !provider.manages_email(email) {
            return Err(Refusal::DomainNotManaged);
        }
    }
    Ok(Identity {
        unique_id,
        email,
        email_verified,
        username,
    })
}

/// What to do for a login whose provider user has no link yet.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Answer with a pending link id.
    Pending,
    /// Link this existing user.
    Link(Box<User>),
    /// Create a user (with this email / username) and link it.
    Create {
        /// Email of the new user.
        email: Option<String>,
        /// Username of the new user.
        username: Option<String>,
    },
    /// Refuse the login.
    Refuse(Refusal),
}

/// The linking strategy's decision, given the user found by email or username (the caller
/// looks up the one the strategy uses, in the application's tenant).
pub fn decide(
    strategy: LinkingStrategy,
    provider: &Provider,
    who: &Identity,
    found: Option<User>,
) -> Decision {
    match strategy {
        LinkingStrategy::CreatePendingLink => Decision::Pending,
        LinkingStrategy::Disabled => Decision::Refuse(Refusal::NotLinked),
        LinkingStrategy::LinkAnonymously => Decision::Create {
            email: None,
            username: None,
        },
        s if s.by_email() => {
            let Some(email) = who.email.clone() else {
                return Decision::Refuse(Refusal::MissingEmail(provider.email_claim.clone()));
            };
            if who.email_verified == Some(false) {
                return Decision::Refuse(Refusal::UnverifiedEmail);
            }
            match found {
                Some(user) => Decision::Link(Box::new(user)),
                None if s.creates_users() => Decision::Create {
                    email: Some(email),
                    username: None,
                },
                None => Decision::Refuse(Refusal::NotLinked),
            }
        }
        s => {
            let Some(username) = who.username.clone() else {
                return Decision::Refuse(Refusal::MissingUsername(provider.username_claim.clone()));
            };
            match found {
                Some(user) => Decision::Link(Box::new(user)),
                None if s.creates_users() => Decision::Create {
                    email: None,
                    username: Some(username),
                },
                None => Decision::Refuse(Refusal::NotLinked),
            }
        }
    }
}

/// Applies `claimMap`: user fields take the claim as text; `UserData` and `RegistrationData`
/// take the claim's JSON value under the claim's name. Claims absent from the token are left
/// alone. Returns the names of the claims applied (for the debug log).
pub fn apply_claim_map(
    claim_map: &BTreeMap<String, String>,
    claims: &Map<String, Value>,
    user: &mut User,
    registration_data: &mut BTreeMap<String, Value>,
) -> Vec<String> {
    let mut applied = Vec::new();
    for (claim, target) in claim_map {
        let Some(value) = claims.get(claim).filter(|v| !v.is_null()) else {
            continue;
        };
        let text = || claim_text(claims, claim);
        let field = match target.as_str() {
            "UserData" => {
                user.data.insert(claim.clone(), value.clone());
                applied.push(claim.clone());
                continue;
            }
            "RegistrationData" => {
                registration_data.insert(claim.clone(), value.clone());
                applied.push(claim.clone());
                continue;
            }
            "birthDate" => &mut user.birth_date,
            "firstName" => &mut user.first_name,
            "lastName" => &mut user.last_name,
            "fullName" => &mut user.full_name,
            "middleName" => &mut user.middle_name,
            "mobilePhone" => &mut user.mobile_phone,
            "imageUrl" => &mut user.image_url,
            "timezone" => &mut user.timezone,
            _ => continue,
        };
        let valid = |t: &String| match target.as_str() {
            "birthDate" => is_birth_date(t),
            "timezone" => is_time_zone(t),
            _ => true,
        };
        // A birth date or time zone a typed client could not read is left out.
        if let Some(t) = text().filter(valid) {
            *field = Some(t);
            applied.push(claim.clone());
        }
    }
    applied
}

/// True for a calendar date written `YYYY-MM-DD` (as FusionAuth's `birthDate` is): a real
/// month and day of that month (29 February in leap years only).
pub fn is_birth_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes[range.clone()]
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| text[range].parse::<u32>().unwrap_or(0))
    };
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// True for a time zone of the IANA database (`Europe/Paris`, `UTC`), as FusionAuth's
/// `timezone` is.
pub fn is_time_zone(text: &str) -> bool {
    text.parse::<chrono_tz::Tz>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    #[test]
    fn birth_dates_and_time_zones_are_ones_a_typed_client_reads() {
        for date in ["2000-02-29", "1999-12-31", "0001-01-01"] {
            assert!(is_birth_date(date), "{date}");
        }
        for date in [
            "1900-02-29",
            "2001-02-29",
            "2000-13-01",
            "2000-04-31",
            "2000-1-01",
            "not-a-date",
            "2000-01-01T00:00",
            "２０００-01-01",
            "+200-01-01",
        ] {
            assert!(!is_birth_date(date), "{date}");
        }
        for zone in ["Europe/Paris", "America/Argentina/Buenos_Aires", "UTC"] {
            assert!(is_time_zone(zone), "{zone}");
        }
        for zone in ["Mars/Olympus", "europe/paris", "", "Europe/Paris "] {
            assert!(!is_time_zone(zone), "{zone}");
        }
        let mut user = User::default();
        let mut data = BTreeMap::new();
        let claim_map: BTreeMap<String, String> = [
            ("bd".to_string(), "birthDate".to_string()),
            ("tz".to_string(), "timezone".to_string()),
        ]
        .into_iter()
        .collect();
        let applied = apply_claim_map(
            &claim_map,
            &claims(json!({"bd": "not-a-date", "tz": "Mars/Olympus"})),
            &mut user,
            &mut data,
        );
        assert!(applied.is_empty() && user.birth_date.is_none() && user.timezone.is_none());
        apply_claim_map(
            &claim_map,
            &claims(json!({"bd": "1990-05-17", "tz": "Europe/Paris"})),
            &mut user,
            &mut data,
        );
        assert_eq!(
            (user.birth_date.as_deref(), user.timezone.as_deref()),
            (Some("1990-05-17"), Some("Europe/Paris"))
        );
    }

    fn provider(strategy: &str) -> Provider {
        Provider::from_document(&json!({
            "id": Uuid::new_v4(), "type": "ExternalJWT", "name": "p", "headerKeyParameter": "kid",
            "linkingStrategy": strategy, "domains": ["acme.com"],
            "oauth2": {"usernameClaim": "upn"}
        }))
        .expect("provider")
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    fn user() -> User {
        User {
            id: Uuid::new_v4(),
            ..Default::default()
        }
    }

    #[test]
    fn identity_reads_the_configured_claims() {
        let p = provider("LinkByEmail");
        let who = identity(
            &p,
            &claims(
                json!({"sub": 42, "email": "a@ACME.com", "email_verified": "false", "upn": "ann"}),
            ),
        )
        .expect("ok");
        assert_eq!(who.unique_id, "42");
        assert_eq!(who.email.as_deref(), Some("a@ACME.com"));
        assert_eq!(who.email_verified, Some(false));
        assert_eq!(who.username.as_deref(), Some("ann"));
        assert_eq!(who.display_name(), "a@ACME.com");
        // email_verified: only a clear true verifies; any other value present does not
        for (value, verified) in [
            (json!(true), Some(true)),
            (json!("TRUE"), Some(true)),
            (json!(false), Some(false)),
            (json!(0), Some(false)),
            (json!(1), Some(false)),
            (json!(null), Some(false)),
            (json!("yes"), Some(false)),
        ] {
            let token = claims(json!({"sub": "x", "email_verified": value}));
            assert_eq!(identity(&p, &token).expect("ok").email_verified, verified);
        }
        // an email claim that is not an address is no email
        for value in [
            json!(5),
            json!(["a@acme.com"]),
            json!("not-an-email"),
            json!("a@b@acme.com"),
            json!("@acme.com"),
            json!("a@"),
            json!("a b@acme.com"),
            json!("a\u{200b}@acme.com"),
            json!("a@acme.com\u{200b}"),
            json!("a\u{202e}@acme.com"),
        ] {
            let token = claims(json!({"sub": "x", "email": value}));
            assert_eq!(identity(&p, &token).expect("ok").email, None, "{value}");
        }
        let spaced = claims(json!({"sub": "x", "email": "  a@acme.com "}));
        assert_eq!(
            identity(&p, &spaced).expect("ok").email.as_deref(),
            Some("a@acme.com")
        );
        assert_eq!(
            identity(&p, &claims(json!({"email": "a@acme.com"}))).unwrap_err(),
            Refusal::MissingUniqueId("sub".into())
        );
        assert_eq!(
            identity(&p, &claims(json!({"sub": "x", "email": "a@evil.com"}))).unwrap_err(),
            Refusal::DomainNotManaged
        );
        assert_eq!(
            identity(&p, &claims(json!({"sub": "x"})))
                .expect("ok")
                .display_name(),
            "x"
        );
    }

    #[test]
    fn identity_claims_longer_than_the_store_keeps_are_refused() {
        use gatehouse_plugin_api::indexed::{MAX_EMAIL_BYTES, MAX_PROVIDER_USER_ID_BYTES};
        let p = provider("LinkByEmail");
        let local = "a".repeat(MAX_EMAIL_BYTES - "@acme.com".len());
        let at_limits = claims(json!({
            "sub": "s".repeat(MAX_PROVIDER_USER_ID_BYTES),
            "email": format!("{local}@acme.com"),
            "upn": "u".repeat(1024),
        }));
        assert!(identity(&p, &at_limits).is_ok());
        for (claim, value) in [
            ("sub", json!("s".repeat(MAX_PROVIDER_USER_ID_BYTES + 1))),
            ("email", json!(format!("{local}x@acme.com"))),
            // Not an address, but over the limit all the same.
            ("email", json!("e".repeat(3000))),
            ("upn", json!("u".repeat(1025))),
        ] {
            let mut token = at_limits.clone();
            token.insert(claim.into(), value);
            let refused = identity(&p, &token).expect_err(claim);
            assert!(matches!(&refused, Refusal::ClaimTooLong(c, _) if c == claim));
            assert_eq!((refused.status(), refused.code()), (401, "[InvalidJWT]"));
            assert!(refused.message().len() < 200, "{}", refused.message());
        }
    }

    #[test]
    fn every_strategy_decides() {
        let who = Identity {
            unique_id: "u".into(),
            email: Some("a@acme.com".into()),
            email_verified: None,
            username: Some("ann".into()),
        };
        let d = |s: &str, found: Option<User>| {
            decide(
                LinkingStrategy::parse(s).expect("s"),
                &provider(s),
                &who,
                found,
            )
        };
        assert_eq!(d("CreatePendingLink", None), Decision::Pending);
        assert_eq!(
            d("Disabled", Some(user())),
            Decision::Refuse(Refusal::NotLinked)
        );
        assert_eq!(
            d("LinkAnonymously", Some(user())),
            Decision::Create {
                email: None,
                username: None
            }
        );
        assert_eq!(
            d("LinkByEmail", None),
            Decision::Create {
                email: Some("a@acme.com".into()),
                username: None
            }
        );
        assert!(matches!(d("LinkByEmail", Some(user())), Decision::Link(_)));
        assert_eq!(
            d("LinkByEmailForExistingUser", None),
            Decision::Refuse(Refusal::NotLinked)
        );
        assert!(matches!(
            d("LinkByEmailForExistingUser", Some(user())),
            Decision::Link(_)
        ));
        assert_eq!(
            d("LinkByUsername", None),
            Decision::Create {
                email: None,
                username: Some("ann".into())
            }
        );
        assert_eq!(
            d("LinkByUsernameForExistingUser", None),
            Decision::Refuse(Refusal::NotLinked)
        );
        assert!(matches!(
            d("LinkByUsernameForExistingUser", Some(user())),
            Decision::Link(_)
        ));

        let unverified = Identity {
            email_verified: Some(false),
            ..who.clone()
        };
        for s in ["LinkByEmail", "LinkByEmailForExistingUser"] {
            let strategy = LinkingStrategy::parse(s).expect("s");
            assert_eq!(
                decide(strategy, &provider(s), &unverified, Some(user())),
                Decision::Refuse(Refusal::UnverifiedEmail)
            );
        }
        // an unverified email does not matter when linking by username
        assert!(matches!(
            decide(
                LinkingStrategy::LinkByUsername,
                &provider("LinkByUsername"),
                &unverified,
                Some(user())
            ),
            Decision::Link(_)
        ));
        let nobody = Identity {
            email: None,
            username: None,
            ..who
        };
        assert_eq!(
            decide(
                LinkingStrategy::LinkByEmail,
                &provider("LinkByEmail"),
                &nobody,
                None
            ),
            Decision::Refuse(Refusal::MissingEmail("email".into()))
        );
        assert_eq!(
            decide(
                LinkingStrategy::LinkByUsername,
                &provider("LinkByUsername"),
                &nobody,
                None
            ),
            Decision::Refuse(Refusal::MissingUsername("upn".into()))
        );
        assert_eq!(Refusal::NotLinked.status(), 404);
        assert_eq!(Refusal::UnverifiedEmail.status(), 401);
    }

    #[test]
    fn claim_map_targets_fields_and_data() {
        let map: BTreeMap<String, String> = [
            ("given", "firstName"),
            ("family", "lastName"),
            ("dob", "birthDate"),
            ("phone", "mobilePhone"),
            ("dept", "RegistrationData"),
            ("groups", "UserData"),
            ("missing", "fullName"),
            ("obj", "middleName"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let mut u = user();
        let mut reg = BTreeMap::new();
        let applied = apply_claim_map(
            &map,
            &claims(
                json!({"given": "Ann", "family": "Lee", "dob": "1980-01-02", "phone": 5551234,
                           "dept": "ops", "groups": ["a", "b"], "obj": {"x": 1}}),
            ),
            &mut u,
            &mut reg,
        );
        assert_eq!(u.first_name.as_deref(), Some("Ann"));
        assert_eq!(u.last_name.as_deref(), Some("Lee"));
        assert_eq!(u.birth_date.as_deref(), Some("1980-01-02"));
        assert_eq!(u.mobile_phone.as_deref(), Some("5551234"));
        assert_eq!(u.data["groups"], json!(["a", "b"]));
        assert_eq!(reg["dept"], "ops");
        assert_eq!(u.full_name, None);
        assert_eq!(u.middle_name, None);
        assert_eq!(applied.len(), 6);
    }
}
