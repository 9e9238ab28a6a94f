//! Which tenants and applications each of the gateway's keys speaks for.
//!
//! A key that a tenant signs its tokens with (its access-token or id-token key), or that an
//! application signs its own tokens with (its JWT settings enabled, with a key of its own), is
//! bound to them: a token signed with it may name only those tenants (by `tid`, or by a
//! tenant's issuer in `iss`) and only applications of them (by `applicationId` or `aud`). So a
//! tenant (or an application) that can sign with its own key — every holder of an HMAC
//! secret can — cannot mint tokens that pass as another tenant's, or another application's
//! of its tenant. A key no tenant or application signs with (a verification-only key kept
//! for tokens signed elsewhere) is bound to none and speaks for any, as before.
//!
//! Checked once per token, when it is verified (a cached token was checked when cached).

use std::collections::HashMap;

use gatehouse_plugin_api::ids::{claimed_ids, id_spelling, IdSpelling};
use gatehouse_plugin_api::model::{Application, JwtConfiguration, Tenant};
use gatehouse_plugin_api::tokens::VerifiedClaims;
use serde_json::Value;
use uuid::Uuid;

/// The tenants and applications a key is bound to.
#[derive(Debug, Default)]
struct KeyScope {
    /// Tenants that sign with the key: their tokens, and those of all their applications.
    tenants: Vec<Uuid>,
    /// Applications that sign with the key as their own: their tokens and their tenant's.
    applications: Vec<Uuid>,
}

/// The scope of every bound key, by `kid`.
#[derive(Debug, Default)]
pub struct KeyScopes {
    by_kid: HashMap<String, KeyScope>,
    /// Each configured application's tenant.
    app_tenants: HashMap<Uuid, Uuid>,
    /// Each tenant's issuer.
    issuers: Vec<(Uuid, String)>,
}

impl KeyScopes {
    /// The scopes of the keys `tenants` and `applications` sign with.
    pub fn new(tenants: &[Tenant], applications: &[Application]) -> KeyScopes {
        let mut by_kid: HashMap<String, KeyScope> = HashMap::new();
        let keys = |jwt: &JwtConfiguration| {
            [jwt.access_token_key_id, jwt.id_token_key_id]
                .into_iter()
                .flatten()
                .map(|key| key.to_string())
        };
        for tenant in tenants {
            for key in keys(&tenant.jwt_configuration) {
                by_kid.entry(key).or_default().tenants.push(tenant.id);
            }
        }
        // An application signs with a key of its own only when its JWT settings are enabled.
        let own_settings = applications
            .iter()
            .filter(|app| app.jwt_configuration.enabled == Some(true));
        for app in own_settings {
            for key in keys(&app.jwt_configuration) {
                by_kid.entry(key).or_default().applications.push(app.id);
            }
        }
        KeyScopes {
            by_kid,
            app_tenants: applications.iter().map(|a| (a.id, a.tenant_id)).collect(),
            issuers: tenants.iter().map(|t| (t.id, t.issuer.clone())).collect(),
        }
    }

    /// True when a token of `claims` signed with key `kid` names only tenants and applications
    /// the key speaks for (always, for a key bound to none). Application ids no configured
    /// application has are not judged here.
    pub fn permits(&self, kid: &str, claims: &VerifiedClaims) -> bool {
        let Some(scope) = self.by_kid.get(kid) else {
            return true;
        };
        // The ids the check reads must be the ids every reader reads: in a token of a bound key,
        // `tid` is one string and `tid`, `applicationId` and `aud` spell ids canonically (or
        // name none); a list, or `B000-…` that PostgreSQL reads as tenant B, is refused.
        let raw = |name: &str| claims.claims.get(name);
        let tid_canonical = match raw("tid") {
            None => true,
            Some(Value::String(text)) => id_spelling(text) != IdSpelling::Ambiguous,
            Some(_) => false,
        };
        let (_, ambiguous_app) = claimed_ids(raw("applicationId"));
        let (_, ambiguous_aud) = claimed_ids(raw("aud"));
        if !tid_canonical || ambiguous_app || ambiguous_aud {
            return false;
        }
        let tenant_ok = |tenant: Uuid| self.speaks_for_tenant(scope, tenant);
        if claims.tenant_id.is_some_and(|t| !tenant_ok(t)) {
            return false;
        }
        // A tenant's issuer names that tenant (any of them, when tenants share an issuer).
        let iss = claims.claims.get("iss").and_then(|v| v.as_str());
        if let Some(iss) = iss {
            let mut named = self.issuers.iter().filter(|(_, i)| i == iss).peekable();
            if named.peek().is_some() && !named.any(|(t, _)| tenant_ok(*t)) {
                return false;
            }
        }
        let audience = claims.audience.iter().flatten();
        let mut named = claims.application_id.iter().chain(audience);
        let named_ok = named.clone().all(|app| match self.app_tenants.get(app) {
            Some(tenant) => scope.applications.contains(app) || scope.tenants.contains(tenant),
            None => true,
        });
        // A key only applications sign with speaks for them alone: its token must name one
        // (else it would pass as any application's of the tenant, at `issue` say).
        named_ok && (!scope.tenants.is_empty() || named.any(|app| scope.applications.contains(app)))
    }

    /// True when key `kid` may sign tokens for `tenant`: it is bound to none, or to the tenant
    /// or one of its applications.
    pub fn may_sign_for(&self, kid: &str, tenant: Uuid) -> bool {
        self.by_kid
            .get(kid)
            .is_none_or(|scope| self.speaks_for_tenant(scope, tenant))
    }

    /// True when `scope` covers `tenant`: the tenant signs with the key, or one of its
    /// applications does.
    fn speaks_for_tenant(&self, scope: &KeyScope, tenant: Uuid) -> bool {
        scope.tenants.contains(&tenant)
            || scope
                .applications
                .iter()
                .any(|app| self.app_tenants.get(app) == Some(&tenant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    fn tenant(id: Uuid, key: Uuid, issuer: &str) -> Tenant {
        Tenant {
            id,
            name: "t".into(),
            issuer: issuer.into(),
            jwt_configuration: JwtConfiguration {
                access_token_key_id: Some(key),
                ..Default::default()
            },
            data: None,
        }
    }

    fn app(id: Uuid, tenant_id: Uuid, key: Option<Uuid>) -> Application {
        Application {
            id,
            tenant_id,
            name: "a".into(),
            roles: vec![],
            login_configuration: Default::default(),
            jwt_configuration: JwtConfiguration {
                enabled: key.map(|_| true),
                access_token_key_id: key,
                ..Default::default()
            },
            active: true,
            data: None,
        }
    }

    fn claims(value: Value) -> VerifiedClaims {
        let mut map: Map<String, Value> = value.as_object().cloned().unwrap_or_default();
        map.insert("exp".into(), json!(4_000_000_000i64));
        VerifiedClaims::from_claims(map, "k".into()).expect("claims")
    }

    #[test]
    fn a_key_speaks_only_for_the_tenants_and_applications_that_sign_with_it() {
        let (ta, tb) = (Uuid::new_v4(), Uuid::new_v4());
        let (ka, kb, k1, free) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let (a1, a2, b1) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let scopes = KeyScopes::new(
            &[tenant(ta, ka, "a.example"), tenant(tb, kb, "b.example")],
            &[app(a1, ta, Some(k1)), app(a2, ta, None), app(b1, tb, None)],
        );
        let (ka, kb, k1, free) = (
            ka.to_string(),
            kb.to_string(),
            k1.to_string(),
            free.to_string(),
        );
        // a tenant's key: its tenant, its issuer, its applications
        for ok in [
            json!({"tid": ta, "iss": "a.example", "applicationId": a2}),
            json!({"tid": ta, "aud": [a1, a2]}),
            json!({"iss": "custom"}),
            json!({"applicationId": Uuid::new_v4()}),
        ] {
            assert!(scopes.permits(&ka, &claims(ok.clone())), "{ok}");
        }
        // …never another tenant's, by tid, issuer, application or audience
        for refused in [
            json!({"tid": tb}),
            json!({"iss": "b.example"}),
            json!({"tid": ta, "applicationId": b1}),
            json!({"aud": [a2, b1]}),
        ] {
            assert!(!scopes.permits(&ka, &claims(refused.clone())), "{refused}");
            assert!(scopes.permits(&free, &claims(refused.clone())), "{refused}");
        }
        // an application's own key: that application (and its tenant), not a sibling, and not
        // a token that names no application (it would pass as any of the tenant's)
        assert!(scopes.permits(&k1, &claims(json!({"tid": ta, "applicationId": a1}))));
        assert!(scopes.permits(&k1, &claims(json!({"tid": ta, "aud": a1}))));
        assert!(!scopes.permits(&k1, &claims(json!({"tid": ta, "applicationId": a2}))));
        assert!(!scopes.permits(&k1, &claims(json!({"tid": tb}))));
        assert!(!scopes.permits(&k1, &claims(json!({"tid": ta}))));
        assert!(!scopes.permits(&k1, &claims(json!({"sub": "x"}))));
        // ids the check reads one way and another reader another: refused for a bound key
        let moved = |id: Uuid| {
            let hex = id.simple().to_string();
            format!("{}-{}", &hex[..4], &hex[4..])
        };
        for spelled in [
            json!({"tid": [tb]}),
            json!({"tid": moved(tb)}),
            json!({"tid": tb.to_string().to_uppercase()}),
            json!({"tid": 5}),
            json!({"applicationId": moved(b1)}),
            json!({"aud": [a2, moved(b1)]}),
            json!({"aud": [[b1]]}),
            json!({"applicationId": 12345678901234567890123456789012_f64}),
            json!({"aud": [a2, 1.5]}),
        ] {
            assert!(!scopes.permits(&ka, &claims(spelled.clone())), "{spelled}");
        }
        assert!(scopes.permits(&ka, &claims(json!({"aud": ["bench-api", a2]}))));
        // signing for a tenant
        assert!(scopes.may_sign_for(&ka, ta) && scopes.may_sign_for(&k1, ta));
        assert!(!scopes.may_sign_for(&kb, ta) && !scopes.may_sign_for(&k1, tb));
        assert!(scopes.may_sign_for(&free, tb));
    }

    #[test]
    fn tenants_sharing_an_issuer_are_each_named_by_it() {
        let (ta, tb, ka, kb) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let scopes = KeyScopes::new(&[tenant(ta, ka, "shared"), tenant(tb, kb, "shared")], &[]);
        let token = claims(json!({"tid": tb, "iss": "shared"}));
        assert!(scopes.permits(&kb.to_string(), &token));
        assert!(!scopes.permits(&ka.to_string(), &token));
    }
}
