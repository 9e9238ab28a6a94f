//! API-key authentication: the raw key in `Authorization` (no scheme), compared in constant time,
//! optionally locked to a tenant; `X-FusionAuth-TenantId` scopes a request.

use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::error::ApiError;
use crate::model::ApiKey;
use crate::request::PluginRequest;

/// What a valid API key grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiKeyGrant {
    /// The key's id.
    pub key_id: Uuid,
    /// The tenant the request is scoped to: the key's lock, else the `X-FusionAuth-TenantId`
    /// header, else `None` (all tenants).
    pub tenant_id: Option<Uuid>,
}

impl ApiKeyGrant {
    /// True when this grant may act on a record of `tenant_id`.
    pub fn allows_tenant(&self, tenant_id: Uuid) -> bool {
        self.tenant_id.is_none_or(|t| t == tenant_id)
    }
}

/// The API keys of the gateway, held in memory.
#[derive(Debug, Default)]
pub struct ApiKeyRing {
    keys: Vec<ApiKey>,
}

impl ApiKeyRing {
    /// A ring of these keys.
    pub fn new(keys: Vec<ApiKey>) -> Self {
        ApiKeyRing { keys }
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there are no keys (every API-key request is then refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Authenticates the request's API key. Every key is compared, each in constant time, so the
    /// time taken does not depend on which key (if any) matched.
    ///
    /// Returns the grant, `Unauthorized` for a missing or unknown key or a tenant header that a
    /// tenant-locked key does not allow, and 400 for a malformed tenant header or for several
    /// `Authorization` or `X-FusionAuth-TenantId` headers.
    pub fn authenticate(&self, request: &PluginRequest) -> Result<ApiKeyGrant, ApiError> {
        // Two keys, or two tenant scopes, in one request: which one counts is a guess.
        for name in ["authorization", "x-fusionauth-tenantid"] {
            if request.headers.get_all(name).iter().nth(1).is_some() {
                return Err(ApiError::general(
                    "[AmbiguousRequest]",
                    format!("The request has more than one {name} header."),
                ));
            }
        }
        let presented = request
            .header("authorization")
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let mut found: Option<&ApiKey> = None;
        for key in &self.keys {
            if bool::from(key.key.as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(key);
            }
        }
        let key = found.ok_or(ApiError::Unauthorized)?;
        let header_tenant = match request.header("x-fusionauth-tenantid") {
            Some(raw) if !raw.trim().is_empty() => {
                Some(Uuid::parse_str(raw.trim()).map_err(|_| {
                    ApiError::general(
                        "[invalid]X-FusionAuth-TenantId",
                        "The X-FusionAuth-TenantId header is not a valid UUID.",
                    )
                })?)
            }
            _ => None,
        };
        let tenant_id = match (key.tenant_id, header_tenant) {
            (Some(locked), Some(asked)) if locked != asked => return Err(ApiError::Unauthorized),
            (Some(locked), _) => Some(locked),
            (None, asked) => asked,
        };
        Ok(ApiKeyGrant {
            key_id: key.id,
            tenant_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn ring() -> (ApiKeyRing, Uuid) {
        let tenant = Uuid::new_v4();
        let keys = vec![
            ApiKey {
                id: Uuid::new_v4(),
                key: "global-key".into(),
                tenant_id: None,
                description: None,
            },
            ApiKey {
                id: Uuid::new_v4(),
                key: "tenant-key".into(),
                tenant_id: Some(tenant),
                description: None,
            },
        ];
        (ApiKeyRing::new(keys), tenant)
    }

    fn request(key: Option<&str>, tenant: Option<&str>) -> PluginRequest {
        let mut req = PluginRequest::new(Method::GET, "/api/jwt/refresh");
        if let Some(k) = key {
            req.headers
                .insert("authorization", k.parse().expect("header"));
        }
        if let Some(t) = tenant {
            req.headers
                .insert("x-fusionauth-tenantid", t.parse().expect("header"));
        }
        req
    }

    #[test]
    fn keys_are_checked() {
        let (ring, tenant) = ring();
        assert!(ring.authenticate(&request(None, None)).is_err());
        assert!(ring.authenticate(&request(Some("nope"), None)).is_err());
        assert!(ring
            .authenticate(&request(Some("global-ke"), None))
            .is_err());
        let grant = ring
            .authenticate(&request(Some("global-key"), None))
            .expect("ok");
        assert_eq!(grant.tenant_id, None);
        let grant = ring
            .authenticate(&request(Some("tenant-key"), None))
            .expect("ok");
        assert_eq!(grant.tenant_id, Some(tenant));
        assert!(grant.allows_tenant(tenant));
        assert!(!grant.allows_tenant(Uuid::new_v4()));
    }

    #[test]
    fn several_keys_or_scopes_are_ambiguous() {
        let (ring, tenant) = ring();
        let mut req = request(Some("global-key"), Some(&tenant.to_string()));
        req.headers
            .append("x-fusionauth-tenantid", "".parse().expect("header"));
        assert_eq!(ring.authenticate(&req).map_err(|e| e.status()), Err(400));
        let mut req = request(Some("global-key"), None);
        req.headers
            .append("authorization", "tenant-key".parse().expect("header"));
        assert_eq!(ring.authenticate(&req).map_err(|e| e.status()), Err(400));
    }

    #[test]
    fn tenant_header_scopes_and_cannot_escape_a_lock() {
        let (ring, tenant) = ring();
        let other = Uuid::new_v4().to_string();
        let grant = ring
            .authenticate(&request(Some("global-key"), Some(&other)))
            .expect("ok");
        assert_eq!(grant.tenant_id.map(|t| t.to_string()), Some(other.clone()));
        let err = ring
            .authenticate(&request(Some("tenant-key"), Some(&other)))
            .unwrap_err();
        assert_eq!(err.status(), 401);
        let ok = ring.authenticate(&request(Some("tenant-key"), Some(&tenant.to_string())));
        assert!(ok.is_ok());
        let bad = ring
            .authenticate(&request(Some("global-key"), Some("not-a-uuid")))
            .unwrap_err();
        assert_eq!(bad.status(), 400);
    }
}
