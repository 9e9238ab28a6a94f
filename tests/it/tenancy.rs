//! Tenant isolation through the binary: a credential of one tenant (a tenant-locked API key, or
//! a token minted in that tenant) never mints, lists, exchanges or revokes anything of another
//! tenant's users or applications.

use reqwest::blocking::RequestBuilder;
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::*;

/// `POST /api/jwt/vend` with `claims`, under the key locked to [`OTHER_TENANT`].
fn locked_vend(gw: &TestGateway, claims: Value) -> reqwest::blocking::Response {
    client()
        .post(gw.url("/api/jwt/vend"))
        .header("Authorization", TENANT_API_KEY)
        .json(&json!({ "claims": claims }))
        .send()
        .expect("send")
}

/// The spellings of one UUID that a UUID parser reads as the same id.
fn spellings(id: &str) -> Vec<String> {
    let parsed = Uuid::parse_str(id).expect("uuid");
    let groups: Vec<&str> = id.split('-').collect();
    let hex = parsed.simple().to_string();
    vec![
        id.to_string(),
        id.to_uppercase(),
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
        hex.clone(),
        format!(" {id} "),
        format!("\t{id}"),
        // Hyphens moved (PostgreSQL, Python), leading zeros dropped (Java), signs and
        // prefixes (Python's int), digits of other scripts (Python).
        hex.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect::<Vec<_>>()
            .join("-"),
        format!(
            "{}-{}",
            groups[0].trim_start_matches('0'),
            groups[1..].join("-")
        ),
        format!("+{}", &id[1..]),
        format!("0x{}", &id[2..]),
        id.replace('0', "\u{ff10}"),
        id.replace('0', "\u{660}"),
        // Full-width hex letters (Java's parser reads them).
        id.chars()
            .map(|c| match c {
                'a'..='f' => char::from_u32(c as u32 - 'a' as u32 + 0xff41).expect("char"),
                c => c,
            })
            .collect(),
    ]
}

#[test]
fn a_tenant_locked_key_cannot_vend_a_token_naming_another_tenants_user() {
    let gw = TestGateway::start();
    let victim = gw.login("victim@example.com", &["admin"]);
    for sub in spellings(&victim.user_id) {
        let body = check_status(locked_vend(&gw, json!({ "sub": sub })), 400);
        assert_eq!(
            body["fieldErrors"]["claims.sub"][0]["code"], "[invalid]claims.sub",
            "{sub}: {body}"
        );
        // With the victim's tenant named too, or an application of the victim's tenant.
        check_status(
            locked_vend(
                &gw,
                json!({ "sub": sub, "tid": TENANT, "applicationId": APP }),
            ),
            400,
        );
    }
    // Another tenant's application, in any spelling, alone or in an array.
    for app in spellings(APP) {
        for claims in [
            json!({ "applicationId": app }),
            json!({ "aud": [app] }),
            json!({ "aud": [[app]] }),
            json!({ "aud": {"id": app} }),
        ] {
            let body = check_status(locked_vend(&gw, claims.clone()), 400);
            assert!(body["fieldErrors"].is_object(), "{claims}: {body}");
        }
    }
    // Its own tenant's users, and subjects that name no user, are vended as before.
    let mine = Uuid::new_v4().to_string();
    let body = check_status(locked_vend(&gw, json!({ "sub": mine })), 200);
    assert!(body["token"]
        .as_str()
        .is_some_and(|t| t.split('.').count() == 3));
    check_status(locked_vend(&gw, json!({ "sub": "not-a-uuid" })), 200);
}

/// A token that claims the victim's `sub` but was minted in another tenant (`tid`): what a
/// tenant-locked key could vend before, or any token of the other tenant with a borrowed `sub`.
fn foreign_token(gw: &TestGateway, victim: &str, tenant: Option<&str>) -> String {
    let issuer = if tenant == Some(OTHER_TENANT) {
        "other.test"
    } else {
        ISSUER
    };
    let mut claims = json!({
        "sub": victim,
        "iss": issuer,
        "iat": now(),
        "exp": now() + 600,
    });
    if let Some(tenant) = tenant {
        claims["tid"] = json!(tenant);
    }
    gw.token(jsonwebtoken::Algorithm::RS256, &claims)
}

#[test]
fn a_token_of_another_tenant_never_acts_as_the_user_it_names() {
    let gw = TestGateway::start();
    let victim = gw.login("victim@example.com", &["admin"]);
    let http = client();
    let bearer = |request: RequestBuilder, token: &str| {
        request.header("Authorization", format!("Bearer {token}"))
    };
    for token in [
        foreign_token(&gw, &victim.user_id, Some(OTHER_TENANT)),
        foreign_token(&gw, &victim.user_id, None),
    ] {
        // The token itself is valid: it is the tenant binding that refuses it below.
        assert_eq!(gw.get_as("/api/jwt/validate", &token).status(), 200);
        // Single sign-on into the victim's application.
        let issue = bearer(
            http.get(gw.url(&format!("/api/jwt/issue?applicationId={APP}"))),
            &token,
        )
        .send()
        .expect("send");
        assert_eq!(issue.status(), 401);
        // The same through the cookie.
        let issue = http
            .get(gw.url(&format!("/api/jwt/issue?applicationId={APP}")))
            .header("Cookie", format!("access_token={token}"))
            .send()
            .expect("send");
        assert_eq!(issue.status(), 401);
        // Listing, and revoking, the victim's refresh tokens.
        let list = bearer(
            http.get(gw.url(&format!("/api/jwt/refresh?userId={}", victim.user_id))),
            &token,
        )
        .send()
        .expect("send");
        assert_eq!(list.status(), 401);
        for path in [
            format!("/api/jwt/refresh/{}", victim.refresh_token_id),
            format!("/api/jwt/refresh?userId={}", victim.user_id),
            format!("/api/jwt/refresh?token={}", victim.refresh_token),
        ] {
            let revoke = bearer(http.delete(gw.url(&path)), &token)
                .send()
                .expect("send");
            assert_eq!(revoke.status(), 401, "{path}");
        }
    }
    // The victim's own token still works, and the victim's session was not touched.
    let own = gw.get_as(
        &format!("/api/jwt/refresh?userId={}", victim.user_id),
        &victim.token,
    );
    let body = check_status(own, 200);
    assert_eq!(body["refreshTokens"].as_array().map(Vec::len), Some(1));
    let issued = gw.get_as(
        &format!("/api/jwt/issue?applicationId={APP}"),
        &victim.token,
    );
    check_status(issued, 200);
}

#[test]
fn two_keys_or_two_tenant_scopes_in_one_request_are_refused() {
    let gw = TestGateway::start();
    let http = client();
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("Authorization", API_KEY),
            ("Authorization", TENANT_API_KEY),
        ],
        vec![
            ("Authorization", TENANT_API_KEY),
            ("Authorization", API_KEY),
        ],
        vec![
            ("Authorization", API_KEY),
            ("X-FusionAuth-TenantId", ""),
            ("X-FusionAuth-TenantId", TENANT),
        ],
        vec![
            ("Authorization", API_KEY),
            ("X-FusionAuth-TenantId", TENANT),
            ("X-FusionAuth-TenantId", TENANT),
        ],
    ];
    for headers in &cases {
        for (method, path) in [
            ("POST", "/api/system/event-log/search"),
            (
                "GET",
                "/api/jwt/refresh?userId=00000000-0000-4000-8000-000000000001",
            ),
            ("POST", "/api/jwt/vend"),
        ] {
            let mut request = match method {
                "POST" => http.post(gw.url(path)).json(&json!({})),
                _ => http.get(gw.url(path)),
            };
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let response = request.send().expect("send");
            assert_eq!(response.status(), 400, "{method} {path} {headers:?}");
        }
    }
    // Without a key, on an endpoint the tenant header scopes: the same.
    let response = http
        .post(gw.url("/api/jwt/refresh"))
        .header("X-FusionAuth-TenantId", TENANT)
        .header("X-FusionAuth-TenantId", OTHER_TENANT)
        .json(&json!({"refreshToken": "x"}))
        .send()
        .expect("send");
    assert_eq!(response.status(), 400);
}

#[test]
fn a_key_signs_only_for_the_tenant_and_applications_it_is_configured_for() {
    // The main application signs with its own key (an HMAC secret, which whoever verifies
    // with it also signs with); the tenants sign with the RS256 key.
    let keys = Keys::generate();
    let hmac = keys.get(jsonwebtoken::Algorithm::HS256).0;
    let options = Options {
        app_jwt: format!("enabled: true, accessTokenKeyId: {hmac}, timeToLiveInSeconds: 300"),
        ..Options::default()
    };
    let gw = TestGateway::start_with_keys(options, keys);
    let session = gw.login("owner@example.com", &["admin"]);
    let hs = |claims: Value| gw.token(jsonwebtoken::Algorithm::HS256, &claims);
    let base = json!({"sub": session.user_id, "iss": ISSUER, "iat": now(), "exp": now() + 600,
                      "roles": ["admin"]});
    let with = |extra: Value| {
        let mut claims = base.clone();
        for (k, v) in extra.as_object().expect("object") {
            claims[k] = v.clone();
        }
        claims
    };
    // Its own application's token passes the edge and the API.
    let own = hs(with(
        json!({"applicationId": APP, "tid": TENANT, "aud": APP}),
    ));
    assert_eq!(gw.get_as("/admin/x", &own).status(), 200);
    assert_eq!(gw.get_as("/api/jwt/validate", &own).status(), 200);
    // Tokens it signs for a sibling application or another tenant are refused everywhere.
    let moved = |id: &str| {
        let hex = id.replace('-', "");
        format!("{}-{}", &hex[..4], &hex[4..])
    };
    for forged in [
        with(json!({"applicationId": OTHER_APP, "tid": TENANT})),
        with(json!({"aud": [APP, OTHER_APP]})),
        with(json!({"applicationId": APP, "tid": OTHER_TENANT})),
        with(json!({"iss": "other.test"})),
        // Ids spelled so that the check and another reader read different ones.
        with(json!({"applicationId": APP, "tid": [OTHER_TENANT]})),
        with(json!({"applicationId": APP, "tid": moved(OTHER_TENANT)})),
        with(json!({"applicationId": moved(OTHER_APP), "tid": TENANT, "aud": APP})),
        // The application's key naming no application: it would pass as any of the tenant's.
        with(json!({"tid": TENANT})),
    ] {
        let token = hs(forged.clone());
        assert_eq!(
            gw.get_as("/api/jwt/validate", &token).status(),
            401,
            "{forged}"
        );
        assert_eq!(gw.get_as("/x", &token).status(), 401, "{forged}");
        let issue = gw.get_as(&format!("/api/jwt/issue?applicationId={OTHER_APP}"), &token);
        assert_eq!(issue.status(), 401, "{forged}");
    }
    // A key locked to the other tenant can sign neither with the application's key nor with
    // the main tenant's issuer.
    let vend_with = |api_key: &str, body: Value| {
        client()
            .post(gw.url("/api/jwt/vend"))
            .header("Authorization", api_key)
            .json(&body)
            .send()
            .expect("send")
    };
    let vend = |body: Value| vend_with(TENANT_API_KEY, body);
    let body = check_status(vend(json!({"claims": {"sub": "svc"}, "keyId": hmac})), 400);
    assert_eq!(
        body["fieldErrors"]["keyId"][0]["code"], "[invalid]keyId",
        "{body}"
    );
    let body = check_status(vend(json!({"claims": {"iss": ISSUER}})), 400);
    assert_eq!(
        body["fieldErrors"]["claims.iss"][0]["code"], "[invalid]claims.iss",
        "{body}"
    );
    // Even the global key gets no token its key would not speak for (it would be refused
    // everywhere): the application's key for a token naming no application.
    let body = check_status(
        vend_with(API_KEY, json!({"claims": {"sub": "svc"}, "keyId": hmac})),
        400,
    );
    assert_eq!(
        body["fieldErrors"]["keyId"][0]["code"], "[invalid]keyId",
        "{body}"
    );
    let claims = json!({"sub": "svc", "applicationId": APP});
    let body = check_status(
        vend_with(API_KEY, json!({"claims": claims, "keyId": hmac})),
        200,
    );
    let vended = body["token"].as_str().expect("token");
    assert_eq!(gw.get_as("/api/jwt/validate", vended).status(), 200);
    // Its own issuer, a custom one, and a key both tenants sign with are fine.
    for ok in [
        json!({"claims": {"iss": "other.test"}}),
        json!({"claims": {"iss": "svc.internal"}}),
        json!({"claims": {}, "keyId": gw.keys.get(jsonwebtoken::Algorithm::RS256).0}),
    ] {
        check_status(vend(ok), 200);
    }
}
