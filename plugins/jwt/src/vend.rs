//! `POST /api/jwt/vend`: signs a free-form JWT with caller-chosen claims (API key required).
//!
//! The reserved claims `exp` and `iat` given by the caller are ignored (the token service sets
//! them, with `iss` and `jti`). The tenant is the API key's lock or `X-FusionAuth-TenantId`, else
//! the default tenant; it supplies the default lifetime and signing key.
//!
//! A request scoped to a tenant (a tenant-locked key, or the header) vends tokens of that tenant
//! only: `tid` is set to it (another `tid` is refused) and `applicationId`/`aud` may not name an
//! application of another tenant. The edge trusts every key of the ring, so without this a key
//! locked to one tenant could mint tokens that pass another tenant's routes.

use gatehouse_plugin_api::model::Tenant;
use gatehouse_plugin_api::{
    ApiError, Errors, PluginContext, PluginRequest, PluginResponse, TokenError,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::common::{authenticate, scoped_tenant, signing_error, Accept, Caller};
use gatehouse_plugin_api::ids::{claimed_ids, id_spelling, IdSpelling};

/// The default access-token lifetime when neither the request nor the tenant sets one
/// (FusionAuth's default `timeToLiveInSeconds`, defined with the other JWT defaults).
pub use gatehouse_refresh::DEFAULT_TIME_TO_LIVE_IN_SECONDS;

/// The largest `timeToLiveInSeconds` accepted: FusionAuth reads the field as a Java `Integer`.
pub const MAX_TIME_TO_LIVE_IN_SECONDS: i64 = i32::MAX as i64;

/// Claims the caller may not set.
const RESERVED_CLAIMS: [&str; 2] = ["exp", "iat"];

/// The JWTVendRequest body. Unknown fields (e.g. `eventInfo`) are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VendRequest {
    /// Claims to sign.
    #[serde(default)]
    pub claims: Option<Map<String, Value>>,
    /// The signing key id (a UUID); the tenant's access-token key when absent.
    #[serde(default)]
    pub key_id: Option<String>,
    /// Lifetime in seconds, > 0; the tenant's when absent.
    #[serde(default)]
    pub time_to_live_in_seconds: Option<i64>,
}

/// A vend request that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidVend {
    /// Claims without the reserved ones.
    pub claims: Map<String, Value>,
    /// The signing key.
    pub key_id: Option<Uuid>,
    /// The requested lifetime, if any.
    pub time_to_live_in_seconds: Option<i64>,
}

/// Validates the request: `keyId` a UUID of a known key, `timeToLiveInSeconds` within
/// 1..=[`MAX_TIME_TO_LIVE_IN_SECONDS`]; field errors otherwise. Drops reserved claims.
pub fn validate_vend(
    request: VendRequest,
    has_key: impl Fn(&str) -> bool,
) -> Result<ValidVend, ApiError> {
    let mut errors = Errors::new();
    if let Some(ttl) = request.time_to_live_in_seconds {
        if ttl <= 0 {
            errors.field(
                "timeToLiveInSeconds",
                "invalid",
                "The timeToLiveInSeconds must be greater than 0.",
            );
        } else if ttl > MAX_TIME_TO_LIVE_IN_SECONDS {
            errors.field(
                "timeToLiveInSeconds",
                "invalid",
                format!("The timeToLiveInSeconds must be at most {MAX_TIME_TO_LIVE_IN_SECONDS}."),
            );
        }
    }
    let key_id = match request.key_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => match Uuid::parse_str(raw) {
            Ok(id) if has_key(&id.to_string()) || has_key(raw) => Some(id),
            Ok(_) => {
                errors.field("keyId", "invalid", "No key exists with this keyId.");
                None
            }
            Err(_) => {
                errors.field("keyId", "invalid", "The keyId is not a valid UUID.");
                None
            }
        },
    };
    errors.into_result()?;
    let mut claims = request.claims.unwrap_or_default();
    for reserved in RESERVED_CLAIMS {
        claims.remove(reserved);
    }
    Ok(ValidVend {
        claims,
        key_id,
        time_to_live_in_seconds: request.time_to_live_in_seconds,
    })
}

/// Handles `POST /api/jwt/vend`: `{"token": …}`.
pub async fn vend(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<PluginResponse, ApiError> {
    let grant = match authenticate(request, context, Accept::ApiKey).await? {
        Caller::ApiKey(grant) => grant,
        Caller::User { .. } => return Err(ApiError::Unauthorized),
    };
    let body: VendRequest = request.json_or_default()?;
    let valid = validate_vend(body, |kid| context.tokens.has_key(kid))?;
    let tenant = scoped_tenant(context, grant.tenant_id)
        .await?
        .ok_or_else(|| {
            ApiError::general(
                "[invalid]tenantId",
                "The tenant of this request does not exist.",
            )
        })?;
    let ttl = valid
        .time_to_live_in_seconds
        .or(tenant.jwt_configuration.time_to_live_in_seconds)
        .filter(|t| *t > 0)
        .unwrap_or(DEFAULT_TIME_TO_LIVE_IN_SECONDS);
    let mut claims = valid.claims;
    if grant.tenant_id.is_some() {
        // Only a key of this tenant (or of none) signs its tokens.
        if valid
            .key_id
            .is_some_and(|k| !context.tokens.key_speaks_for(&k.to_string(), tenant.id))
        {
            return Err(ApiError::field(
                "keyId",
                "invalid",
                "A request scoped to a tenant can only sign with a key of that tenant.",
            ));
        }
        bind_to_tenant(&mut claims, &tenant, context).await?;
    }
    // A key that cannot sign is the request's fault; a signature that fails on the signing
    // pool (where RSA keys sign, off the thread serving requests) is an internal error.
    let issued = context
        .tokens
        .prepare_vend(&tenant, valid.key_id, claims, ttl)
        .map_err(|e| match (e, valid.key_id) {
            (TokenError::CannotSign | TokenError::UnknownKey, Some(_)) => ApiError::field(
                "keyId",
                "invalid",
                "The key with this keyId cannot sign tokens.",
            ),
            // A token its key does not speak for would be refused everywhere: none is vended.
            (TokenError::KeyOutOfScope, Some(_)) => ApiError::field(
                "keyId",
                "invalid",
                "The key with this keyId does not sign for the tenant or application the claims name.",
            ),
            (TokenError::KeyOutOfScope, None) => ApiError::field(
                "claims",
                "invalid",
                "The tenant's key does not sign for the tenant or application the claims name.",
            ),
            (other, _) => signing_error(other),
        })?
        .sign()
        .await
        .map_err(signing_error)?;
    Ok(PluginResponse::json(200, &json!({ "token": issued.token })))
}

/// True when `id`, named by claim `name`, is a user (`sub`) or an application of another
/// tenant than `tenant_id`.
async fn belongs_to_another_tenant(
    context: &PluginContext,
    name: &str,
    id: Uuid,
    tenant_id: Uuid,
) -> Result<bool, ApiError> {
    Ok(if name == "sub" {
        context
            .store
            .get_user(id)
            .await?
            .is_some_and(|u| u.tenant_id != tenant_id)
    } else {
        context
            .store
            .get_application(id)
            .await?
            .is_some_and(|a| a.tenant_id != tenant_id)
    })
}

/// Binds the claims of a tenant-scoped vend to `tenant`: `tid` set to it (400 for another one),
/// and 400 when `sub` names a user, or `applicationId` or `aud` an application, of another
/// tenant, or spells an id in any but the canonical form.
pub async fn bind_to_tenant(
    claims: &mut Map<String, Value>,
    tenant: &Tenant,
    context: &PluginContext,
) -> Result<(), ApiError> {
    let mut errors = Errors::new();
    match claims.get("tid") {
        None | Some(Value::Null) => {
            claims.insert("tid".into(), json!(tenant.id));
        }
        // Its own tenant's id, in the one canonical spelling (another spelling would reach an
        // upstream that compares text as another tenant id than the one checked here).
        Some(Value::String(s)) if id_spelling(s) == IdSpelling::Canonical(tenant.id) => {}
        Some(_) => {
            errors.field(
                "claims.tid",
                "invalid",
                "A request scoped to a tenant can only vend tokens of that tenant.",
            );
        }
    }
    // `sub` may not name another tenant's user (the edge and the API would take the token as
    // that user), nor `applicationId`/`aud` another tenant's application; and each must spell
    // an id canonically, or an upstream could read another id than the one checked here.
    for name in ["sub", "applicationId", "aud"] {
        let field = format!("claims.{name}");
        let (ids, ambiguous) = claimed_ids(claims.get(name));
        if ambiguous {
            errors.field(
                &field,
                "invalid",
                "A request scoped to a tenant must spell ids as lower-case hyphenated UUIDs.",
            );
            continue;
        }
        for id in ids {
            if belongs_to_another_tenant(context, name, id, tenant.id).await? {
                let what = if name == "sub" { "user" } else { "application" };
                errors.field(
                    &field,
                    "invalid",
                    format!("A request scoped to a tenant cannot vend tokens for another tenant's {what}."),
                );
                break;
            }
        }
    }
    // Nor `iss` another tenant's issuer: whoever checks the token by the published keys and
    // its issuer would take it as that tenant's.
    if let Some(iss) = claims.get("iss").and_then(Value::as_str) {
        let tenants = context.store.list_tenants().await?;
        if iss != tenant.issuer && tenants.iter().any(|t| t.issuer == iss) {
            errors.field(
                "claims.iss",
                "invalid",
                "A request scoped to a tenant cannot vend tokens with another tenant's issuer.",
            );
        }
    }
    errors.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_has_one_spelling() {
        let id = "0082d917-76a8-44c5-9049-37ad3574778d";
        let canonical = Uuid::parse_str(id).expect("uuid");
        assert_eq!(id_spelling(id), IdSpelling::Canonical(canonical));
        for other in [
            "0082D917-76A8-44C5-9049-37AD3574778D".to_string(),
            format!("{{{id}}}"),
            format!("urn:uuid:{id}"),
            id.replace('-', ""),
            "0082-d917-76a8-44c5-9049-37ad-3574-778d".into(),
            "+082d917-76a8-44c5-9049-37ad3574778d".into(),
            "0x82d917-76a8-44c5-9049-37ad3574778d".into(),
            format!("\t{id}"),
            format!(" {id}"),
            id.replace('0', "\u{ff10}"),
            id.replace('0', "\u{660}"),
            id.replace('d', "\u{ff44}").replace('a', "\u{ff41}"),
            id.replace('d', "\u{ff24}"),
            format!("{id}0"),
            "82d917-76a8-44c5-9049-37ad3574778d".into(),
            "1-1-1-1-1".into(),
            "cafe".into(),
            "12345".into(),
        ] {
            assert_eq!(id_spelling(&other), IdSpelling::Ambiguous, "{other:?}");
        }
        for not_an_id in ["svc", "user-1234", "ann@example.com", "", "service-account"] {
            assert_eq!(id_spelling(not_an_id), IdSpelling::NotAnId, "{not_an_id}");
        }
        let (ids, ambiguous) = claimed_ids(Some(&json!([id, "x"])));
        assert_eq!((ids, ambiguous), (vec![canonical], false));
        let (_, ambiguous) = claimed_ids(Some(&json!(123456789012345678901234567890123_f64)));
        assert!(ambiguous, "a number past 64-bit integers lost its digits");
        assert!(claimed_ids(Some(&json!(12345))).1, "a number is all digits");
        assert!(claimed_ids(Some(&json!([[id]]))).1, "nested");
        assert!(claimed_ids(Some(&json!({"id": id}))).1, "an object");
    }
    use crate::testkit::{block_on, Kit};
    use http::Method;

    fn parse(body: Value) -> VendRequest {
        serde_json::from_value(body).expect("request")
    }

    fn field_code(err: &ApiError, field: &str) -> Value {
        let body: Value = serde_json::from_slice(&err.to_response().body).expect("json");
        body["fieldErrors"][field][0]["code"].clone()
    }

    #[test]
    fn reserved_claims_are_dropped() {
        let valid = validate_vend(
            parse(json!({"claims": {"exp": 1, "iat": 2, "iss": "p", "id": "x"}})),
            |_| true,
        )
        .expect("valid");
        assert_eq!(valid.claims.get("exp"), None);
        assert_eq!(valid.claims.get("iat"), None);
        assert_eq!(valid.claims.get("iss"), Some(&json!("p")));
        assert_eq!(valid.claims.get("id"), Some(&json!("x")));
    }

    #[test]
    fn ttl_must_be_positive() {
        for ttl in [0, -1, i64::MAX] {
            let err =
                validate_vend(parse(json!({"timeToLiveInSeconds": ttl})), |_| true).unwrap_err();
            assert_eq!(
                field_code(&err, "timeToLiveInSeconds"),
                "[invalid]timeToLiveInSeconds"
            );
        }
        assert!(validate_vend(parse(json!({"timeToLiveInSeconds": 1})), |_| true).is_ok());
    }

    #[test]
    fn key_id_must_name_a_key() {
        let err = validate_vend(parse(json!({"keyId": "nope"})), |_| true).unwrap_err();
        assert_eq!(field_code(&err, "keyId"), "[invalid]keyId");
        let id = Uuid::new_v4();
        let err = validate_vend(parse(json!({"keyId": id})), |_| false).unwrap_err();
        assert_eq!(field_code(&err, "keyId"), "[invalid]keyId");
        let ok = validate_vend(parse(json!({"keyId": id})), |_| true).expect("valid");
        assert_eq!(ok.key_id, Some(id));
    }

    fn vend_request(key: Option<&str>, body: Value) -> PluginRequest {
        let mut req = PluginRequest::new(Method::POST, "/api/jwt/vend");
        if let Some(key) = key {
            req.headers
                .insert("authorization", key.parse().expect("header"));
        }
        req.headers
            .insert("content-type", "application/json".parse().expect("header"));
        req.body = serde_json::to_vec(&body).expect("body");
        req
    }

    #[test]
    fn vends_with_the_api_key_tenant() {
        let kit = Kit::new();
        let req = vend_request(
            Some(Kit::GLOBAL_KEY),
            json!({"claims": {"foo": "bar", "exp": 5}, "timeToLiveInSeconds": 300}),
        );
        let res = block_on(vend(&req, &kit.context)).expect("ok");
        assert_eq!(res.status, 200);
        let body: Value = serde_json::from_slice(&res.body).expect("json");
        let token = body["token"].as_str().expect("token");
        let vended = kit.tokens.vended(token).expect("vended");
        assert_eq!(vended.tenant_id, kit.tenant.id);
        assert_eq!(vended.ttl, 300);
        assert_eq!(vended.claims.get("foo"), Some(&json!("bar")));
        assert_eq!(vended.claims.get("exp"), None);

        // a tenant-locked key vends in its tenant, with that tenant's default lifetime
        let req = vend_request(Some(Kit::OTHER_TENANT_KEY), json!({}));
        let res = block_on(vend(&req, &kit.context)).expect("ok");
        let body: Value = serde_json::from_slice(&res.body).expect("json");
        let vended = kit
            .tokens
            .vended(body["token"].as_str().expect("token"))
            .expect("vended");
        assert_eq!(vended.tenant_id, kit.other_tenant.id);
        assert_eq!(vended.ttl, DEFAULT_TIME_TO_LIVE_IN_SECONDS);
    }

    #[test]
    fn a_tenant_scoped_vend_stays_in_its_tenant() {
        let kit = Kit::new();
        let vend_body = |key: &str, claims: Value| {
            let req = vend_request(Some(key), json!({ "claims": claims }));
            block_on(vend(&req, &kit.context))
        };
        let refused = [
            (json!({"applicationId": kit.app.id}), "claims.applicationId"),
            (json!({"aud": kit.app.id}), "claims.aud"),
            (json!({"aud": ["x", kit.app.id]}), "claims.aud"),
            (json!({"tid": kit.tenant.id}), "claims.tid"),
            (json!({"tid": 5}), "claims.tid"),
        ];
        for (claims, field) in refused {
            let err = vend_body(Kit::OTHER_TENANT_KEY, claims.clone()).unwrap_err();
            assert_eq!(err.status(), 400, "{claims}");
            assert_eq!(
                field_code(&err, field),
                format!("[invalid]{field}"),
                "{claims}"
            );
        }
        // Its own tenant's application: fine, and `tid` names the tenant.
        let res = vend_body(
            Kit::OTHER_TENANT_KEY,
            json!({"applicationId": kit.other_app.id, "aud": kit.other_app.id}),
        )
        .expect("ok");
        let body: Value = serde_json::from_slice(&res.body).expect("json");
        let vended = kit
            .tokens
            .vended(body["token"].as_str().expect("token"))
            .expect("vended");
        assert_eq!(vended.claims["tid"], json!(kit.other_tenant.id));
        // Unknown application ids and a matching tid are left alone…
        let unknown = Uuid::new_v4();
        let res = vend_body(
            Kit::OTHER_TENANT_KEY,
            json!({"applicationId": unknown, "tid": kit.other_tenant.id}),
        )
        .expect("ok");
        assert_eq!(res.status, 200);
        // …but the tenant's id spelled any other way is refused, as other ids are.
        let err = vend_body(
            Kit::OTHER_TENANT_KEY,
            json!({"tid": kit.other_tenant.id.to_string().to_uppercase()}),
        )
        .unwrap_err();
        assert_eq!(field_code(&err, "claims.tid"), "[invalid]claims.tid");
        // An unscoped key vends what it is given.
        let res = vend_body(
            Kit::GLOBAL_KEY,
            json!({"applicationId": kit.other_app.id, "tid": kit.other_tenant.id}),
        )
        .expect("ok");
        let body: Value = serde_json::from_slice(&res.body).expect("json");
        let vended = kit
            .tokens
            .vended(body["token"].as_str().expect("token"))
            .expect("vended");
        assert_eq!(vended.tenant_id, kit.tenant.id);
        assert_eq!(vended.claims["applicationId"], json!(kit.other_app.id));
    }

    #[test]
    fn vend_needs_an_api_key() {
        let kit = Kit::new();
        let req = vend_request(None, json!({}));
        assert_eq!(
            block_on(vend(&req, &kit.context)).unwrap_err().status(),
            401
        );
        let token = kit.access_token_for(&kit.user);
        let req = vend_request(Some(&format!("Bearer {token}")), json!({}));
        assert_eq!(
            block_on(vend(&req, &kit.context)).unwrap_err().status(),
            401
        );
        let req = vend_request(Some(Kit::GLOBAL_KEY), json!({"timeToLiveInSeconds": 0}));
        assert_eq!(
            block_on(vend(&req, &kit.context)).unwrap_err().status(),
            400
        );
    }
}
