//! Reading claims by path and the route checks that hold for tokens of every issuer: which
//! issuers a route accepts, `aud`, and exact-match claims. Roles go through
//! [`roles_at`], with the issuer's roles claim.

pub use gatehouse_plugin_api::tokens::claim_at;
use serde_json::{Map, Value};

use crate::auth::cached::CachedToken;

/// A route's checks on the token's issuer and claims (`routes[].auth.issuers`, `audiences`,
/// `claims`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenPolicy {
    /// The `iss` values accepted; empty: the gateway's own key ring only.
    pub issuers: Vec<String>,
    /// When not empty, `aud` (a string or an array) must name one of these.
    pub audiences: Vec<String>,
    /// Claims (by dotted path) that must have exactly these values.
    pub claims: Vec<(String, Value)>,
}

/// Which check a token failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyFailure {
    /// Its issuer is not one the route accepts (a 401: it cannot authenticate here).
    Issuer,
    /// Its `aud` names none of the route's audiences (a 403).
    Audience,
    /// A claim does not have the value the route requires (a 403).
    Claim,
}

impl TokenPolicy {
    /// Checks `claims`; `remote` says the token was verified with a trusted issuer's keys (not
    /// the gateway's own key ring). `Ok` when every check passes.
    pub fn check(&self, claims: &CachedToken, remote: bool) -> Result<(), PolicyFailure> {
        let issuer = claims.issuer();
        let issuer_ok = if self.issuers.is_empty() {
            !remote
        } else {
            issuer.is_some_and(|iss| self.issuers.iter().any(|accepted| accepted == iss))
        };
        if !issuer_ok {
            return Err(PolicyFailure::Issuer);
        }
        if !self.audiences.is_empty()
            && !claims
                .audiences()
                .any(|aud| self.audiences.iter().any(|a| a == aud))
        {
            return Err(PolicyFailure::Audience);
        }
        for (path, wanted) in &self.claims {
            if !claims.claim_matches(path, wanted) {
                return Err(PolicyFailure::Claim);
            }
        }
        Ok(())
    }
}

/// The roles at `path`: the strings of an array (other items ignored), or a single string;
/// none for anything else.
pub fn roles_at(claims: &Map<String, Value>, path: &str) -> Vec<String> {
    match claim_at(claims, path) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(role)) => vec![role.clone()],
        _ => Vec::new(),
    }
}

/// Makes the `roles` claim of a trusted issuer's token hold the roles at its roles claim
/// `path`, as identity headers read it: the array there as it is (a non-string item or one with
/// a `,` then makes the roles header unrepresentable, as for the gateway's own tokens), a
/// single string as an array of it, any other value as it is (an object, a number or a boolean:
/// unrepresentable too, so a route forwarding roles refuses the token rather than forward it
/// with none), and no `roles` claim when the path holds nothing or `null` (a top-level `roles`
/// the issuer does not use for roles never reaches the upstream).
pub fn publish_roles(claims: &mut Map<String, Value>, path: &str) {
    let published = match claim_at(claims, path) {
        Some(Value::String(role)) => Some(Value::Array(vec![Value::String(role.clone())])),
        None | Some(Value::Null) => None,
        Some(other) => Some(other.clone()),
    };
    match published {
        Some(roles) => claims.insert("roles".into(), roles),
        None => claims.remove("roles"),
    };
}

/// Whether a claim has the value a route requires: equal JSON values, except that numbers are
/// compared by value (`1` and `1.0` are the same number; a boolean is never a string).
pub fn same_value(claim: &Value, wanted: &Value) -> bool {
    match (claim, wanted) {
        (Value::Number(a), Value::Number(b)) => {
            match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => a.as_f64().zip(b.as_f64()).is_some_and(|(x, y)| x == y),
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, x)| b.get(k).is_some_and(|y| same_value(x, y)))
        }
        _ => claim == wanted,
    }
}

/// The audiences `aud` names: a string, or the strings of an array.
pub fn audiences_of(claims: &Map<String, Value>) -> impl Iterator<Item = &str> {
    let (one, many) = match claims.get("aud") {
        Some(Value::String(aud)) => (Some(aud.as_str()), None),
        Some(Value::Array(items)) => (None, Some(items.iter().filter_map(Value::as_str))),
        _ => (None, None),
    };
    one.into_iter().chain(many.into_iter().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::cached::{ClaimPlan, Interner};
    use gatehouse_plugin_api::VerifiedClaims;
    use serde_json::json;
    use std::sync::Arc;

    /// `value` in the compact form the policy reads, with the tests' claim check planned.
    fn compact(value: Value) -> CachedToken {
        let plan = Arc::new(ClaimPlan::of(&[], &[("email_verified", json!(true))]));
        Interner::default().compact(&claims(value), &plan)
    }

    fn claims(value: Value) -> VerifiedClaims {
        let Value::Object(mut map) = value else {
            panic!("object")
        };
        map.insert("exp".into(), json!(4_000_000_000i64));
        VerifiedClaims::from_claims(map, "k".into()).expect("claims")
    }

    #[test]
    fn claims_are_read_by_dotted_path() {
        let c = claims(json!({
            "realm_access": {"roles": ["analyst", "user"]},
            "https://example.com/roles": ["admin"],
            "groups": "ops",
            "permissions": ["read:reports", 7],
            "deep": {"a": {"b": true}},
        }));
        assert_eq!(
            roles_at(&c.claims, "realm_access.roles"),
            ["analyst", "user"]
        );
        assert_eq!(roles_at(&c.claims, "https://example.com/roles"), ["admin"]);
        assert_eq!(roles_at(&c.claims, "groups"), ["ops"]);
        assert_eq!(roles_at(&c.claims, "permissions"), ["read:reports"]);
        assert!(roles_at(&c.claims, "realm_access").is_empty());
        assert!(roles_at(&c.claims, "missing.path").is_empty());
        assert_eq!(claim_at(&c.claims, "deep.a.b"), Some(&json!(true)));
        assert_eq!(claim_at(&c.claims, "deep.a.b.c"), None);
        assert_eq!(claim_at(&c.claims, "groups.x"), None);
    }

    #[test]
    fn aud_is_a_string_or_an_array() {
        let one = claims(json!({"aud": "my-api"}));
        let many = claims(json!({"aud": ["other", "my-api", 3]}));
        let none = claims(json!({}));
        assert_eq!(audiences_of(&one.claims).collect::<Vec<_>>(), ["my-api"]);
        assert_eq!(
            audiences_of(&many.claims).collect::<Vec<_>>(),
            ["other", "my-api"]
        );
        assert_eq!(audiences_of(&none.claims).count(), 0);
        let policy = TokenPolicy {
            audiences: vec!["my-api".into()],
            ..TokenPolicy::default()
        };
        let compact_of = |c: &VerifiedClaims| compact(Value::Object(c.claims.clone()));
        let (one, many, none) = (compact_of(&one), compact_of(&many), compact_of(&none));
        assert_eq!(policy.check(&one, false), Ok(()));
        assert_eq!(policy.check(&many, false), Ok(()));
        assert_eq!(policy.check(&none, false), Err(PolicyFailure::Audience));
    }

    #[test]
    fn issuers_and_exact_claims() {
        let remote = compact(json!({"iss": "https://login.example.com", "email_verified": true}));
        let local = compact(json!({"iss": "acme.test", "email_verified": "true"}));
        let own_only = TokenPolicy::default();
        assert_eq!(own_only.check(&local, false), Ok(()));
        assert_eq!(own_only.check(&remote, true), Err(PolicyFailure::Issuer));
        let named = TokenPolicy {
            issuers: vec!["https://login.example.com".into()],
            claims: vec![("email_verified".into(), json!(true))],
            ..TokenPolicy::default()
        };
        assert_eq!(named.check(&remote, true), Ok(()));
        assert_eq!(named.check(&local, false), Err(PolicyFailure::Issuer));
        let both = TokenPolicy {
            issuers: vec!["https://login.example.com".into(), "acme.test".into()],
            claims: vec![("email_verified".into(), json!(true))],
            ..TokenPolicy::default()
        };
        // "true" the string is not true the boolean.
        assert_eq!(both.check(&local, false), Err(PolicyFailure::Claim));
    }

    #[test]
    fn numbers_match_by_value_and_nothing_else_is_coerced() {
        let same = |a: Value, b: Value| same_value(&a, &b);
        assert!(same(json!(1), json!(1.0)));
        assert!(same(json!({"n": [1, 2.0]}), json!({"n": [1.0, 2]})));
        assert!(!same(json!(1), json!(1.5)));
        assert!(!same(json!(1), json!("1")));
        assert!(!same(json!(true), json!("true")));
        assert!(!same(json!(u64::MAX), json!(-1)));
        assert!(!same(
            json!(9_007_199_254_740_993u64),
            json!(9_007_199_254_740_992u64)
        ));
        assert!(!same(json!([1]), json!([1, 1])));
        assert!(!same(json!({"a": 1}), json!({"a": 1, "b": 2})));
    }

    #[test]
    fn the_roles_claim_becomes_what_the_roles_path_holds() {
        let published = |value: Value, path: &str| {
            let Value::Object(mut map) = value else {
                panic!("object")
            };
            publish_roles(&mut map, path);
            map.get("roles").cloned()
        };
        let kc = json!({"realm_access": {"roles": ["analyst", "user"]}, "roles": ["admin"]});
        assert_eq!(
            published(kc, "realm_access.roles"),
            Some(json!(["analyst", "user"]))
        );
        assert_eq!(
            published(json!({"groups": "ops"}), "groups"),
            Some(json!(["ops"]))
        );
        // Items the policy ignores stay, so the header refuses them as for local tokens.
        assert_eq!(
            published(json!({"permissions": ["a,b", 7]}), "permissions"),
            Some(json!(["a,b", 7]))
        );
        // A top-level `roles` the issuer does not use for roles is not forwarded.
        assert_eq!(published(json!({"roles": ["admin"]}), "groups"), None);
        assert_eq!(published(json!({"roles": null}), "roles"), None);
        // Anything else stays as it is, so a route forwarding roles refuses the token.
        for other in [json!({"x": 1}), json!(5), json!(true)] {
            assert_eq!(
                published(json!({"roles": other.clone()}), "roles"),
                Some(other)
            );
        }
    }
}
