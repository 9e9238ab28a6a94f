//! The compact form of a verified token that the verified-token cache keeps and the proxy's
//! hot path reads: the parsed times and ids, interned roles, key id, issuer and audience, and
//! the claims the configuration names already rendered — the identity headers' values and the
//! results of the routes' exact-match claim checks. The full claim map is not kept: paths that
//! need it (the REST API's validate, plugins) decode it again from the token they hold (see
//! [`crate::auth::tokens::Tokens::verify_bytes`]).
//!
//! What is rendered is fixed by a [`ClaimPlan`] made from the configuration's routes when the
//! token service is built; a reload builds a new service with a new plan and an empty cache,
//! so a value rendered for an old configuration is never served.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use gatehouse_plugin_api::claim_headers::Rendered;
use gatehouse_plugin_api::{ClaimHeader, VerifiedClaims};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::issuers::policy::{audiences_of, claim_at, same_value};

/// The claims the configuration reads from a token on the hot path: the claims of every
/// route's identity headers (forward-auth answers carry the same), and every route's
/// exact-match claim checks.
#[derive(Debug, Default, PartialEq)]
pub struct ClaimPlan {
    headers: Vec<String>,
    checks: Vec<(String, Value)>,
}

impl ClaimPlan {
    /// The plan of these header claims and claim checks (a configuration's routes give them:
    /// see [`crate::server`]), each claim and check once, in their first order.
    pub fn new(
        headers: impl IntoIterator<Item = String>,
        checks: impl IntoIterator<Item = (String, Value)>,
    ) -> Self {
        let mut plan = ClaimPlan::default();
        for claim in headers {
            if !plan.headers.contains(&claim) {
                plan.headers.push(claim);
            }
        }
        for check in checks {
            if !plan.checks.contains(&check) {
                plan.checks.push(check);
            }
        }
        plan
    }

    /// A plan of these header claims and claim checks (for tests and tools).
    pub fn of(headers: &[&str], checks: &[(&str, Value)]) -> Self {
        ClaimPlan {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            checks: checks
                .iter()
                .map(|(path, wanted)| (path.to_string(), wanted.clone()))
                .collect(),
        }
    }
}

/// What the time and revocation checks read of a verified token, in either form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// `exp`, seconds.
    pub exp: i64,
    /// `nbf`, seconds, when present.
    pub not_before: Option<i64>,
    /// `iat`, seconds (0 when absent).
    pub iat: i64,
    /// `sub` as a UUID.
    pub subject: Option<Uuid>,
    /// `applicationId`.
    pub application_id: Option<Uuid>,
    /// `sid`.
    pub session_id: Option<Uuid>,
}

impl Facts {
    /// The facts of a token's full claims.
    pub fn of(claims: &VerifiedClaims) -> Facts {
        Facts {
            exp: claims.exp,
            not_before: claims.not_before,
            iat: claims.iat,
            subject: claims.subject,
            application_id: claims.application_id,
            session_id: claims.session_id,
        }
    }
}

/// A verified token as the cache keeps it (see the module's documentation).
#[derive(Debug)]
pub struct CachedToken {
    /// `exp`, seconds.
    pub exp: i64,
    /// `iat`, seconds (0 when absent).
    pub iat: i64,
    /// `nbf`, seconds, when present.
    pub not_before: Option<i64>,
    /// `sub` as a UUID, when it is one.
    pub subject: Option<Uuid>,
    /// `applicationId`, when present and a UUID.
    pub application_id: Option<Uuid>,
    /// `tid`, when present and a UUID.
    pub tenant_id: Option<Uuid>,
    /// `sid`, when present and a UUID.
    pub session_id: Option<Uuid>,
    /// `kid` of the key that verified it.
    pub key_id: Arc<str>,
    /// `iss`, when a string.
    pub issuer: Option<Arc<str>>,
    /// The roles, as the policy reads them.
    pub roles: Arc<[Arc<str>]>,
    /// The application ids `aud` names; `None` without `aud`.
    pub audience: Option<Arc<[Uuid]>>,
    /// The strings `aud` names (a route's `audiences` compare them).
    audience_texts: Arc<[Arc<str>]>,
    /// `sub` when it is a string but not a UUID (the access log shows it).
    subject_text: Option<Box<str>>,
    /// The rendered header value of each of the plan's header claims, in its order.
    headers: Box<[Rendered]>,
    /// The outcome of each of the plan's claim checks, in its order.
    checks: Box<[bool]>,
    plan: Arc<ClaimPlan>,
}

impl CachedToken {
    /// What the time and revocation checks read.
    pub fn facts(&self) -> Facts {
        Facts {
            exp: self.exp,
            not_before: self.not_before,
            iat: self.iat,
            subject: self.subject,
            application_id: self.application_id,
            session_id: self.session_id,
        }
    }

    /// True when the token may be used for `application`: its `aud`, when present, names it.
    pub fn audience_allows(&self, application: Uuid) -> bool {
        self.audience
            .as_ref()
            .is_none_or(|audience| audience.contains(&application))
    }

    /// The strings `aud` names.
    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        self.audience_texts.iter().map(|a| &**a)
    }

    /// `sub` for the access log: the UUID, or the text of a string that is not one.
    pub fn subject_text(&self) -> Option<&str> {
        self.subject_text.as_deref()
    }

    /// Claim `name` as a header value, rendered when the token was verified. A claim the plan
    /// does not name is unrepresentable (refused rather than silently left out).
    pub fn header_value(&self, name: &str) -> ClaimHeader<'_> {
        let slot = self.plan.headers.iter().position(|h| h == name);
        match slot.and_then(|i| self.headers.get(i)) {
            Some(Rendered::Absent) => ClaimHeader::Absent,
            Some(Rendered::Value(value)) => ClaimHeader::Value(value),
            Some(Rendered::Unrepresentable) | None => ClaimHeader::Unrepresentable,
        }
    }

    /// Whether the claim at `path` has exactly the value `wanted`, as checked when the token
    /// was verified; false for a check the plan does not name.
    pub fn claim_matches(&self, path: &str, wanted: &Value) -> bool {
        self.plan
            .checks
            .iter()
            .position(|(p, w)| p == path && w == wanted)
            .and_then(|i| self.checks.get(i).copied())
            .unwrap_or(false)
    }

    /// Roughly what this entry costs in memory (bytes): the struct and its `Arc`, the rendered
    /// values, roles and audiences (interned, but counted as if each entry had its own copy),
    /// and 96 for the cache's
    /// own bookkeeping (its slot, table and ghost entries). On the high side, so the byte
    /// bound holds.
    pub fn estimated_bytes(&self) -> u64 {
        let rendered: usize = self
            .headers
            .iter()
            .map(|r| match r {
                Rendered::Value(v) => v.len() + 32,
                _ => 0,
            })
            .sum();
        // Counted as if not shared (an interner full of other values shares nothing).
        let texts = |list: &[Arc<str>]| list.iter().map(|t| 32 + t.len()).sum::<usize>();
        let shared = texts(&self.roles)
            + texts(&self.audience_texts)
            + self.audience.as_ref().map_or(0, |a| a.len() * 16);
        let size = std::mem::size_of::<CachedToken>()
            + 16
            + self.headers.len() * std::mem::size_of::<Rendered>()
            + rendered
            + self.checks.len()
            + self.subject_text.as_ref().map_or(0, |s| s.len() + 16)
            + shared
            + 96;
        size as u64
    }
}

/// The rendered values of one header slot, by their bytes.
type ValuesOfSlot = HashMap<Box<[u8]>, http::HeaderValue>;

/// The most distinct values one interner keeps; past it, values are allocated per entry.
const INTERNED: usize = 4096;

/// Shares the strings and lists many tokens repeat (key ids, issuers, roles, audiences, and
/// header values such as the roles'), up to [`INTERNED`] of each kind.
#[derive(Default)]
pub struct Interner {
    strings: Mutex<HashSet<Arc<str>>>,
    lists: Mutex<HashSet<Arc<[Arc<str>]>>>,
    audiences: Mutex<HashSet<Arc<[Uuid]>>>,
    /// Per header slot: rendered values by their bytes. A slot whose values are all distinct
    /// (a subject) fills up and then stops interning.
    values: Mutex<HashMap<usize, ValuesOfSlot>>,
}

/// `value` from `set`, or `value` added to it while it has room.
fn shared<T: Eq + Hash + ?Sized>(set: &Mutex<HashSet<Arc<T>>>, value: Arc<T>) -> Arc<T> {
    let Ok(mut set) = set.lock() else {
        return value;
    };
    if let Some(found) = set.get(&value) {
        return found.clone();
    }
    if set.len() < INTERNED {
        set.insert(value.clone());
    }
    value
}

impl Interner {
    fn string(&self, text: &str) -> Arc<str> {
        shared(&self.strings, Arc::from(text))
    }

    fn list<'a>(&self, items: impl Iterator<Item = &'a str>) -> Arc<[Arc<str>]> {
        let items: Vec<Arc<str>> = items.map(|s| self.string(s)).collect();
        shared(&self.lists, Arc::from(items))
    }

    fn value(&self, slot: usize, value: &http::HeaderValue) -> http::HeaderValue {
        let Ok(mut values) = self.values.lock() else {
            return value.clone();
        };
        let values = values.entry(slot).or_default();
        if let Some(found) = values.get(value.as_bytes()) {
            return found.clone();
        }
        if values.len() < INTERNED {
            values.insert(value.as_bytes().into(), value.clone());
        }
        value.clone()
    }

    /// The compact form of `claims` under `plan`: the plan's header claims rendered (as
    /// [`VerifiedClaims::header_value`] renders them) and its claim checks applied.
    pub fn compact(&self, claims: &VerifiedClaims, plan: &Arc<ClaimPlan>) -> CachedToken {
        let map = &claims.claims;
        let headers = plan
            .headers
            .iter()
            .enumerate()
            .map(|(slot, name)| match claims.header_value(name) {
                ClaimHeader::Absent => Rendered::Absent,
                ClaimHeader::Value(value) => Rendered::Value(self.value(slot, value)),
                ClaimHeader::Unrepresentable => Rendered::Unrepresentable,
            })
            .collect();
        let checks = plan
            .checks
            .iter()
            .map(|(path, wanted)| claim_at(map, path).is_some_and(|c| same_value(c, wanted)))
            .collect();
        let sub = map.get("sub").and_then(Value::as_str);
        CachedToken {
            exp: claims.exp,
            iat: claims.iat,
            not_before: claims.not_before,
            subject: claims.subject,
            application_id: claims.application_id,
            tenant_id: claims.tenant_id,
            session_id: claims.session_id,
            key_id: self.string(&claims.key_id),
            issuer: map
                .get("iss")
                .and_then(Value::as_str)
                .map(|i| self.string(i)),
            roles: self.list(claims.roles.iter().map(String::as_str)),
            audience: claims
                .audience
                .as_ref()
                .map(|a| shared(&self.audiences, Arc::from(a.as_slice()))),
            audience_texts: self.list(audiences_of(map)),
            subject_text: sub.filter(|_| claims.subject.is_none()).map(Box::from),
            headers,
            checks,
            plan: plan.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verified(claims: Value) -> VerifiedClaims {
        let Value::Object(map) = claims else {
            panic!("an object")
        };
        VerifiedClaims::from_claims(map, "k1".into()).expect("claims")
    }

    #[test]
    fn the_plan_is_rendered_and_checked_at_insert_and_nothing_else_is_kept() {
        let plan = Arc::new(ClaimPlan::of(
            &["sub", "roles", "email", "nested"],
            &[("org.tier", json!("gold")), ("level", json!(2))],
        ));
        let interner = Interner::default();
        let sub = Uuid::new_v4();
        let token = interner.compact(
            &verified(json!({
                "exp": 100, "iat": 50, "sub": sub, "iss": "acme.com", "aud": ["x", "y"],
                "roles": ["user", "admin"], "org": {"tier": "gold"}, "level": 2.0,
                "nested": {"a": 1}, "secret": "not kept"
            })),
            &plan,
        );
        let value = |text: &str| http::HeaderValue::from_str(text).expect("value");
        assert_eq!(
            token.header_value("sub"),
            ClaimHeader::Value(&value(&sub.to_string()))
        );
        assert_eq!(
            token.header_value("roles"),
            ClaimHeader::Value(&value("user,admin"))
        );
        assert_eq!(token.header_value("email"), ClaimHeader::Absent);
        assert_eq!(token.header_value("nested"), ClaimHeader::Absent);
        // Not in the plan: refused, never silently empty.
        assert_eq!(token.header_value("secret"), ClaimHeader::Unrepresentable);
        assert!(token.claim_matches("org.tier", &json!("gold")));
        assert!(token.claim_matches("level", &json!(2)));
        assert!(!token.claim_matches("org.tier", &json!("silver")));
        assert_eq!(token.audiences().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(token.issuer.as_deref(), Some("acme.com"));
        assert_eq!(token.subject, Some(sub));
        assert_eq!(token.subject_text(), None);
        assert!(
            token.estimated_bytes() < 1024,
            "{}",
            token.estimated_bytes()
        );
        // With its `Arc`'s counts, one 256-byte allocation.
        assert!(std::mem::size_of::<CachedToken>() <= 240);
    }

    #[test]
    fn repeated_strings_and_lists_are_shared() {
        let plan = Arc::new(ClaimPlan::of(&["roles"], &[]));
        let interner = Interner::default();
        let claims = json!({"exp": 100, "iss": "acme.com", "roles": ["user"], "sub": "svc"});
        let a = interner.compact(&verified(claims.clone()), &plan);
        let b = interner.compact(&verified(claims), &plan);
        assert!(Arc::ptr_eq(&a.roles, &b.roles));
        assert!(Arc::ptr_eq(&a.key_id, &b.key_id));
        assert!(Arc::ptr_eq(
            a.issuer.as_ref().expect("iss"),
            b.issuer.as_ref().expect("iss")
        ));
        assert_eq!(a.subject_text(), Some("svc"));
        let (ClaimHeader::Value(x), ClaimHeader::Value(y)) =
            (a.header_value("roles"), b.header_value("roles"))
        else {
            panic!("values")
        };
        assert_eq!(x.as_bytes().as_ptr(), y.as_bytes().as_ptr(), "one copy");
    }
}
