//! The identity-provider plugin through the real binary: provider management (CRUD, validation,
//! the three PATCH formats, lookup, tenant-locked keys), login and reconcile (key selection,
//! every linking strategy, claim mapping, lambdas, statuses, cookies, tokens on the proxy), the
//! Link API, users, lambdas and the debug event log.
//!
//! External providers sign with keys of their own, generated here like the kit's, plus a fixed
//! self-signed certificate (`fixtures/idp_cert.pem`, x5t below) for X.509 key selection.

use gatehouse::auth::keys::{generate_material, SigningKey};
use gatehouse::config::{KeySource, KeySpec};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::*;

const CERT: &str = include_str!("fixtures/idp_cert.pem");
const CERT_KEY: &str = include_str!("fixtures/idp_cert_key.pem");
/// base64url(SHA-1(DER of `CERT`)).
const CERT_X5T: &str = "BfrPRVqRm0HLt6ZuN-cRygi9BhM";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A key of an external provider: what it signs with and what the gateway verifies with.
pub struct ExternalKey {
    pub algorithm: Algorithm,
    pub signing: String,
    pub verifying: String,
}

impl ExternalKey {
    pub fn generate(algorithm: Algorithm) -> ExternalKey {
        let spec = KeySpec {
            id: Uuid::new_v4(),
            name: "external".into(),
            algorithm: key_algorithm(algorithm),
            source: KeySource::Generate,
        };
        let material = generate_material(&spec, 0).expect("generate");
        if let Some(secret) = material.secret.clone() {
            return ExternalKey {
                algorithm,
                signing: secret.clone(),
                verifying: secret,
            };
        }
        let key = SigningKey::from_spec(&spec, Some(&material)).expect("key");
        let public = key.public().expect("public half").pem.clone();
        ExternalKey {
            algorithm,
            signing: material.private_key.expect("private key"),
            verifying: public,
        }
    }

    pub fn certificate() -> ExternalKey {
        ExternalKey {
            algorithm: Algorithm::RS256,
            signing: CERT_KEY.into(),
            verifying: CERT.into(),
        }
    }

    /// Signs `claims` with header parameters `kid`/`x5t` as given.
    pub fn sign(&self, kid: Option<&str>, x5t: Option<&str>, claims: &Value) -> String {
        sign_as(self.algorithm, &self.signing, kid, x5t, claims)
    }
}

fn sign_as(
    algorithm: Algorithm,
    text: &str,
    kid: Option<&str>,
    x5t: Option<&str>,
    claims: &Value,
) -> String {
    let key = match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(text.as_bytes())
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            EncodingKey::from_ec_pem(text.as_bytes()).expect("ec")
        }
        Algorithm::EdDSA => EncodingKey::from_ed_pem(text.as_bytes()).expect("ed"),
        _ => EncodingKey::from_rsa_pem(text.as_bytes()).expect("rsa"),
    };
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_string);
    header.x5t = x5t.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

/// External claims for a user.
pub fn ext_claims(sub: &str, email: Option<&str>, extra: Value) -> Value {
    let mut claims = json!({"sub": sub, "iat": now(), "exp": now() + 600, "iss": "external.test"});
    if let Some(e) = email {
        claims["email"] = json!(e);
    }
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            claims[k] = v;
        }
    }
    claims
}

/// The test harness: a gateway and a client.
pub struct Idp {
    pub gw: TestGateway,
    pub http: Client,
}

impl Idp {
    /// A request with the key locked to the other tenant.
    fn scoped(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        self.http
            .request(method, self.gw.url(path))
            .header("Authorization", TENANT_API_KEY)
    }

    pub fn start() -> Idp {
        Idp {
            gw: TestGateway::start(),
            http: client(),
        }
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.http
            .post(self.gw.url(path))
            .header("Authorization", API_KEY)
            .json(body)
            .send()
            .expect("send")
    }

    pub fn get(&self, path: &str) -> Response {
        self.http
            .get(self.gw.url(path))
            .header("Authorization", API_KEY)
            .send()
            .expect("send")
    }

    pub fn delete(&self, path: &str) -> Response {
        self.http
            .delete(self.gw.url(path))
            .header("Authorization", API_KEY)
            .send()
            .expect("send")
    }

    pub fn patch(&self, path: &str, content_type: &str, body: &Value) -> Response {
        self.http
            .patch(self.gw.url(path))
            .header("Authorization", API_KEY)
            .header("Content-Type", content_type)
            .body(body.to_string())
            .send()
            .expect("send")
    }

    /// Creates a provider enabled for the kit's application; returns its id.
    pub fn provider(&self, fields: Value) -> Uuid {
        let mut doc = json!({
            "name": format!("idp {}", Uuid::new_v4()),
            "type": "ExternalJWT",
            "enabled": true,
            "headerKeyParameter": "kid",
            "applicationConfiguration": {APP: {"enabled": true, "createRegistration": true}},
        });
        if let Value::Object(fields) = fields {
            for (k, v) in fields {
                doc[k] = v;
            }
        }
        let body = check_status(
            self.post("/api/identity-provider", &json!({"identityProvider": doc})),
            200,
        );
        Uuid::parse_str(body["identityProvider"]["id"].as_str().expect("id")).expect("uuid")
    }

    /// Posts a login (no API key).
    pub fn login(&self, idp: Uuid, token: &str, extra: Value) -> Response {
        let mut body =
            json!({"applicationId": APP, "identityProviderId": idp, "encodedJWT": token});
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                body[k] = v;
            }
        }
        self.http
            .post(self.gw.url("/api/identity-provider/login"))
            .json(&body)
            .send()
            .expect("send")
    }
}

fn general_code(body: &Value) -> String {
    body["generalErrors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Provider management
// ---------------------------------------------------------------------------------------------

#[test]
fn providers_are_created_retrieved_updated_and_deleted() {
    let t = Idp::start();
    let hmac = "a-shared-hmac-secret-of-the-provider";
    let rsa = ExternalKey::generate(Algorithm::RS256);
    let request = json!({"identityProvider": {
        "name": "Acme Corp. ADFS", "type": "ExternalJWT", "enabled": true, "headerKeyParameter": "kid",
        "claimMap": {"first_name": "firstName", "dept": "RegistrationData"},
        "domains": ["Acme.com", "acme.org"], "debug": false,
        "keys": {"hmac": hmac, "rsa": rsa.verifying, "cert": CERT},
        "defaultKeyId": "rsa",
        "oauth2": {"authorization_endpoint": "https://acme.com/authorize", "token_endpoint": "https://acme.com/token",
                   "emailClaim": "mail", "uniqueIdClaim": "oid"},
        "tenantConfiguration": {TENANT: {"limitUserLinkCount": {"enabled": false, "maximumLinks": 42}}},
        "applicationConfiguration": {APP: {"enabled": true}},
        "uniqueIdentityClaim": "email", "linkingStrategy": "LinkByEmail"
    }});
    // 401 without an API key
    let r = client()
        .post(t.gw.url("/api/identity-provider"))
        .json(&request)
        .send()
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);

    let created =
        check_status(t.post("/api/identity-provider", &request), 200)["identityProvider"].clone();
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["domains"], json!(["acme.com", "acme.org"]));
    assert_eq!(
        created["keys"]["hmac"], "********",
        "HMAC secrets are never returned"
    );
    assert_eq!(created["keys"]["rsa"], json!(rsa.verifying));
    assert_eq!(
        created["applicationConfiguration"][APP]["createRegistration"],
        true
    );
    assert!(created["insertInstant"].as_i64().expect("insertInstant") > 0);
    assert_eq!(created["insertInstant"], created["lastUpdateInstant"]);

    // with a given id; a second create with that id is refused
    let given = Uuid::new_v4();
    let mut other = request.clone();
    other["identityProvider"]["domains"] = json!(["other.com"]);
    let body = check_status(
        t.post(&format!("/api/identity-provider/{given}"), &other),
        200,
    );
    assert_eq!(body["identityProvider"]["id"], given.to_string());
    let body = check_status(
        t.post(&format!("/api/identity-provider/{given}"), &other),
        400,
    );
    assert!(
        body["fieldErrors"]["identityProviderId"].is_array(),
        "{body}"
    );
    // a domain can belong to one provider only
    let body = check_status(t.post("/api/identity-provider", &request), 400);
    assert!(
        body["fieldErrors"]["identityProvider.domains[0]"].is_array(),
        "{body}"
    );

    // retrieve one and all, and by type
    let got = check_status(t.get(&format!("/api/identity-provider/{id}")), 200);
    assert_eq!(got["identityProvider"]["name"], "Acme Corp. ADFS");
    let all = check_status(t.get("/api/identity-provider"), 200);
    assert_eq!(all["identityProviders"].as_array().expect("list").len(), 2);
    let typed = check_status(t.get("/api/identity-provider?type=Google"), 200);
    assert_eq!(typed["identityProviders"], json!([]));
    assert_eq!(
        t.get(&format!("/api/identity-provider/{}", Uuid::new_v4()))
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        t.get("/api/identity-provider/not-a-uuid").status().as_u16(),
        400
    );

    // lookup by domain or email
    let found = check_status(
        t.get("/api/identity-provider/lookup?domain=someone@ACME.org"),
        200,
    );
    assert_eq!(found["identityProvider"]["id"], id);
    assert_eq!(found["identityProvider"]["applicationIds"], json!([APP]));
    assert_eq!(
        found["identityProvider"]["oauth2"]["token_endpoint"],
        "https://acme.com/token"
    );
    assert_eq!(
        t.get("/api/identity-provider/lookup?domain=nobody.com")
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        t.get("/api/identity-provider/lookup").status().as_u16(),
        400
    );

    // PUT replaces everything; the redacted secret sent back keeps the stored one
    let mut replacement = got.clone();
    replacement["identityProvider"]["name"] = json!("Renamed");
    replacement["identityProvider"]
        .as_object_mut()
        .expect("object")
        .remove("claimMap");
    let put = t
        .http
        .put(t.gw.url(&format!("/api/identity-provider/{id}")))
        .header("Authorization", API_KEY)
        .json(&replacement)
        .send()
        .expect("send");
    let updated = check_status(put, 200)["identityProvider"].clone();
    assert_eq!(updated["name"], "Renamed");
    assert!(updated.get("claimMap").is_none());
    assert_eq!(updated["insertInstant"], created["insertInstant"]);
    // the secret still verifies logins: sign with it through the hmac key
    let token = sign_as(
        Algorithm::HS256,
        hmac,
        Some("hmac"),
        None,
        &ext_claims("u-1", None, json!({"mail": "ann@acme.com", "oid": "o-1"})),
    );
    let r = t.login(Uuid::parse_str(&id).expect("uuid"), &token, json!({}));
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap_or_default());

    // DELETE, then 404
    assert_eq!(
        t.delete(&format!("/api/identity-provider/{id}"))
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        t.get(&format!("/api/identity-provider/{id}"))
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        t.delete(&format!("/api/identity-provider/{id}"))
            .status()
            .as_u16(),
        404
    );
}

#[test]
fn validation_names_each_bad_field() {
    let t = Idp::start();
    let body = check_status(
        t.post(
            "/api/identity-provider",
            &json!({"identityProvider": {
                "type": "Google", "enabled": "yes",
                "keys": {"bad": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"},
                "claimMap": {"x": "email"}, "linkingStrategy": "Sometimes",
                "applicationConfiguration": {Uuid::new_v4().to_string(): {"enabled": true}},
                "tenantConfiguration": {Uuid::new_v4().to_string(): {}},
                "lambdaConfiguration": {"reconcileId": Uuid::new_v4()},
                "defaultKeyId": "nope"
            }}),
        ),
        400,
    );
    let fields = body["fieldErrors"].as_object().expect("fieldErrors");
    for field in [
        "identityProvider.name",
        "identityProvider.type",
        "identityProvider.headerKeyParameter",
        "identityProvider.enabled",
        "identityProvider.keys.bad",
        "identityProvider.claimMap.x",
        "identityProvider.linkingStrategy",
        "identityProvider.lambdaConfiguration.reconcileId",
        "identityProvider.defaultKeyId",
    ] {
        assert!(fields.contains_key(field), "{field} missing in {body}");
    }
    assert!(
        fields
            .keys()
            .any(|k| k.starts_with("identityProvider.applicationConfiguration[")),
        "{body}"
    );
    assert!(
        fields
            .keys()
            .any(|k| k.starts_with("identityProvider.tenantConfiguration[")),
        "{body}"
    );
    assert_eq!(
        body["fieldErrors"]["identityProvider.name"][0]["code"],
        "[blank]identityProvider.name"
    );
    // malformed JSON and a missing wrapper
    let r = t
        .http
        .post(t.gw.url("/api/identity-provider"))
        .header("Authorization", API_KEY)
        .header("Content-Type", "application/json")
        .body("{nope")
        .send()
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let body = check_status(t.post("/api/identity-provider", &json!({"name": "x"})), 400);
    assert!(body["fieldErrors"]["identityProvider"].is_array());
}

#[test]
fn tenant_locked_keys_see_global_providers_and_change_only_their_own() {
    let t = Idp::start();
    let global = t.provider(json!({"keys": {"k": "secret"}}));
    let scoped = |method: reqwest::Method, path: &str| t.scoped(method, path);
    let r = scoped(
        reqwest::Method::GET,
        &format!("/api/identity-provider/{global}"),
    )
    .send()
    .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let r = scoped(
        reqwest::Method::DELETE,
        &format!("/api/identity-provider/{global}"),
    )
    .send()
    .expect("send");
    assert_eq!(
        r.status().as_u16(),
        404,
        "a tenant-locked key cannot delete a global provider"
    );
    let created = scoped(reqwest::Method::POST, "/api/identity-provider")
        .json(&json!({"identityProvider": {"name": "mine", "type": "ExternalJWT", "headerKeyParameter": "kid"}}))
        .send()
        .expect("send");
    let created = check_status(created, 200);
    assert_eq!(created["identityProvider"]["tenantId"], OTHER_TENANT);
    let mine = created["identityProvider"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // A null tenant is no tenant, never "global": the scoped key's create, replace and patch
    // with `"tenantId": null` leave the provider in its tenant (and an id in another spelling
    // is stored in the canonical one).
    let nulled = scoped(reqwest::Method::POST, "/api/identity-provider")
        .json(
            &json!({"identityProvider": {"name": "nulled", "type": "ExternalJWT",
            "headerKeyParameter": "kid", "tenantId": null}}),
        )
        .send()
        .expect("send");
    let nulled = check_status(nulled, 200)["identityProvider"].clone();
    assert_eq!(nulled["tenantId"], OTHER_TENANT);
    let nulled_id = nulled["id"].as_str().expect("id").to_string();
    let path = format!("/api/identity-provider/{nulled_id}");
    let mut replaced = nulled.clone();
    replaced["tenantId"] = Value::Null;
    let put = scoped(reqwest::Method::PUT, &path)
        .json(&json!({"identityProvider": replaced}))
        .send()
        .expect("send");
    assert_eq!(
        check_status(put, 200)["identityProvider"]["tenantId"],
        OTHER_TENANT
    );
    let patch = scoped(reqwest::Method::PATCH, &path)
        .header("Content-Type", "application/json-patch+json")
        .body(r#"[{"op": "replace", "path": "/identityProvider/tenantId", "value": null}]"#)
        .send()
        .expect("send");
    assert_eq!(
        check_status(patch, 200)["identityProvider"]["tenantId"],
        OTHER_TENANT
    );
    let by_header = t
        .http
        .post(t.gw.url("/api/identity-provider"))
        .header("Authorization", API_KEY)
        .header("X-FusionAuth-TenantId", OTHER_TENANT)
        .json(&json!({"identityProvider": {"name": "spelled", "type": "ExternalJWT",
            "headerKeyParameter": "kid", "tenantId": OTHER_TENANT.to_uppercase().replace('-', "")}}))
        .send()
        .expect("send");
    assert_eq!(
        check_status(by_header, 200)["identityProvider"]["tenantId"],
        OTHER_TENANT
    );
    let global_list = check_status(t.get("/api/identity-provider"), 200);
    for provider in global_list["identityProviders"].as_array().expect("list") {
        if provider["id"] != global.to_string().as_str() {
            assert_eq!(provider["tenantId"], OTHER_TENANT, "{provider}");
        }
    }
    for name in ["nulled", "spelled"] {
        let found = check_status(t.get("/api/identity-provider"), 200)["identityProviders"]
            .as_array()
            .expect("list")
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["id"].as_str().map(str::to_string))
            .expect("created");
        check_status(t.delete(&format!("/api/identity-provider/{found}")), 200);
    }
    // the unscoped key sees both; the header-scoped request to the default tenant does not see it
    assert_eq!(
        check_status(t.get("/api/identity-provider"), 200)["identityProviders"]
            .as_array()
            .expect("list")
            .len(),
        2
    );
    let r = t
        .http
        .get(t.gw.url(&format!("/api/identity-provider/{mine}")))
        .header("Authorization", API_KEY)
        .header("X-FusionAuth-TenantId", TENANT)
        .send()
        .expect("send");
    assert_eq!(r.status().as_u16(), 404);
    let r = scoped(
        reqwest::Method::DELETE,
        &format!("/api/identity-provider/{mine}"),
    )
    .send()
    .expect("send");
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn patch_supports_merge_merge_patch_and_json_patch() {
    let t = Idp::start();
    let id = t.provider(
        json!({"domains": ["a.com"], "claimMap": {"given": "firstName"}, "keys": {"k": "secret"}}),
    );
    let path = format!("/api/identity-provider/{id}");

    // application/json: FusionAuth merge, arrays appended, null removes
    let body = check_status(
        t.patch(
            &path,
            "application/json",
            &json!({"identityProvider": {"domains": ["b.com"], "debug": true, "claimMap": null}}),
        ),
        200,
    );
    assert_eq!(
        body["identityProvider"]["domains"],
        json!(["a.com", "b.com"])
    );
    assert_eq!(body["identityProvider"]["debug"], true);
    assert!(body["identityProvider"].get("claimMap").is_none());
    assert_eq!(body["identityProvider"]["keys"]["k"], "********");

    // application/merge-patch+json: RFC 7396, arrays replaced
    let body = check_status(
        t.patch(
            &path,
            "application/merge-patch+json",
            &json!({"identityProvider": {"domains": ["c.com"], "name": "merged"}}),
        ),
        200,
    );
    assert_eq!(body["identityProvider"]["domains"], json!(["c.com"]));
    assert_eq!(body["identityProvider"]["name"], "merged");

    // application/json-patch+json: RFC 6902
    let body = check_status(
        t.patch(
            &path,
            "application/json-patch+json",
            &json!([
                {"op": "test", "path": "/identityProvider/name", "value": "merged"},
                {"op": "replace", "path": "/identityProvider/name", "value": "patched"},
                {"op": "add", "path": "/identityProvider/domains/-", "value": "d.com"}
            ]),
        ),
        200,
    );
    assert_eq!(body["identityProvider"]["name"], "patched");
    assert_eq!(
        body["identityProvider"]["domains"],
        json!(["c.com", "d.com"])
    );

    // a failing test leaves the provider untouched
    let body = check_status(
        t.patch(
            &path,
            "application/json-patch+json",
            &json!([
                {"op": "replace", "path": "/identityProvider/name", "value": "never"},
                {"op": "test", "path": "/identityProvider/name", "value": "merged"}
            ]),
        ),
        400,
    );
    assert_eq!(general_code(&body), "[TestFailed]");
    let now = check_status(t.get(&path), 200);
    assert_eq!(now["identityProvider"]["name"], "patched");

    // validation applies to the patched document; other content types are 415
    let body = check_status(
        t.patch(
            &path,
            "application/merge-patch+json",
            &json!({"identityProvider": {"claimMap": {"x": "email"}}}),
        ),
        400,
    );
    assert!(
        body["fieldErrors"]["identityProvider.claimMap.x"].is_array(),
        "{body}"
    );
    assert_eq!(
        t.patch(&path, "text/plain", &json!({})).status().as_u16(),
        415
    );
    assert_eq!(
        t.patch(
            &format!("/api/identity-provider/{}", Uuid::new_v4()),
            "application/json",
            &json!({})
        )
        .status()
        .as_u16(),
        404
    );
}

// ---------------------------------------------------------------------------------------------
// Login: keys
// ---------------------------------------------------------------------------------------------

#[test]
fn keys_are_selected_by_kid_x5t_default_key_and_the_empty_key() {
    let t = Idp::start();
    let rsa = ExternalKey::generate(Algorithm::RS256);
    let ps = ExternalKey::generate(Algorithm::PS384);
    let es = ExternalKey::generate(Algorithm::ES256);
    let es384 = ExternalKey::generate(Algorithm::ES384);
    let ed = ExternalKey::generate(Algorithm::EdDSA);
    let hs = ExternalKey::generate(Algorithm::HS256);
    let by_kid = t.provider(json!({
        "linkingStrategy": "LinkAnonymously",
        "keys": {"rsa": rsa.verifying, "ps": ps.verifying, "es": es.verifying, "es384": es384.verifying, "ed": ed.verifying, "hs": hs.verifying},
        "defaultKeyId": "es",
    }));
    let n = std::cell::Cell::new(0);
    let claims = || {
        n.set(n.get() + 1);
        ext_claims(&format!("user-{}", n.get()), None, json!({}))
    };
    let ok = |idp: Uuid, token: String| {
        let r = t.login(idp, &token, json!({}));
        let status = r.status().as_u16();
        assert_eq!(status, 200, "{}", r.text().unwrap_or_default());
    };
    for (kid, key) in [
        ("rsa", &rsa),
        ("ps", &ps),
        ("es", &es),
        ("es384", &es384),
        ("ed", &ed),
        ("hs", &hs),
    ] {
        ok(by_kid, key.sign(Some(kid), None, &claims()));
    }
    // no kid: the defaultKeyId
    ok(by_kid, es.sign(None, None, &claims()));

    // x5t names a certificate
    let by_x5t = t.provider(json!({"linkingStrategy": "LinkAnonymously", "headerKeyParameter": "x5t", "keys": {CERT_X5T: CERT}}));
    ok(
        by_x5t,
        ExternalKey::certificate().sign(None, Some(CERT_X5T), &claims()),
    );

    // the empty-key entry when the header names no key
    let empty =
        t.provider(json!({"linkingStrategy": "LinkAnonymously", "keys": {"": hs.verifying}}));
    ok(empty, hs.sign(None, None, &claims()));

    // defaultKeyId may name a key of the gateway's own ring
    let ring_kid = t.gw.keys.get(Algorithm::RS256).0.to_string();
    let ring = t.provider(json!({"linkingStrategy": "LinkAnonymously", "defaultKeyId": ring_kid}));
    let ring_private = t.gw.keys.get(Algorithm::RS256).2.clone();
    ok(
        ring,
        sign_as(Algorithm::RS256, &ring_private, None, None, &claims()),
    );

    let refused = |idp: Uuid, token: String, why: &str| {
        let r = t.login(idp, &token, json!({}));
        let status = r.status().as_u16();
        let body: Value = r.json().unwrap_or(Value::Null);
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(general_code(&body), "[InvalidJWT]", "{why}: {body}");
    };
    refused(
        by_kid,
        rsa.sign(Some("nope"), None, &claims()),
        "unknown kid",
    );
    refused(
        by_kid,
        es.sign(Some("rsa"), None, &claims()),
        "signed by another key",
    );
    refused(
        by_x5t,
        ExternalKey::certificate().sign(Some("x"), None, &claims()),
        "no x5t, no default",
    );
    // the algorithm-confusion attack: HS256 keyed with the RSA public key
    refused(
        by_kid,
        sign_as(
            Algorithm::HS256,
            &rsa.verifying,
            Some("rsa"),
            None,
            &claims(),
        ),
        "alg confusion",
    );
    // alg none
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let unsigned = format!(
        "{}.{}.",
        engine.encode(json!({"alg": "none", "kid": "hs"}).to_string()),
        engine.encode(claims().to_string())
    );
    refused(by_kid, unsigned, "alg none");
    // expired and not yet valid
    let mut expired = claims();
    expired["exp"] = json!(now() - 60);
    refused(by_kid, hs.sign(Some("hs"), None, &expired), "expired");
    let mut early = claims();
    early["nbf"] = json!(now() + 600);
    refused(by_kid, hs.sign(Some("hs"), None, &early), "nbf");
    refused(by_kid, "not.a.jwt".into(), "malformed");
}

// ---------------------------------------------------------------------------------------------
// Login: strategies and statuses
// ---------------------------------------------------------------------------------------------

#[test]
fn every_linking_strategy_and_status() {
    let t = Idp::start();
    let key = ExternalKey::generate(Algorithm::HS256);
    let keys = json!({"k": key.verifying});
    let login = |idp: Uuid, claims: Value, extra: Value| {
        t.login(idp, &key.sign(Some("k"), None, &claims), extra)
    };

    // LinkByEmail: creates the user, registers it with the default roles, then reuses the link
    let by_email = t.provider(json!({"keys": keys, "linkingStrategy": "LinkByEmail"}));
    let body = check_status(
        login(
            by_email,
            ext_claims(
                "e-1",
                Some("ann@example.com"),
                json!({"email_verified": true}),
            ),
            json!({}),
        ),
        200,
    );
    let ann = body["user"]["id"].as_str().expect("user id").to_string();
    assert_eq!(body["user"]["email"], "ann@example.com");
    assert_eq!(body["user"]["verified"], true);
    assert_eq!(body["user"]["registrations"][0]["applicationId"], APP);
    assert_eq!(body["user"]["registrations"][0]["roles"], json!(["user"]));
    assert!(
        body["token"].is_string()
            && body["refreshToken"].is_string()
            && body["refreshTokenId"].is_string()
    );
    assert!(body["tokenExpirationInstant"].as_i64().expect("instant") > now() * 1000);
    let again = check_status(
        login(
            by_email,
            ext_claims("e-1", Some("ann@example.com"), json!({})),
            json!({}),
        ),
        200,
    );
    assert_eq!(again["user"]["id"], ann.as_str());
    // email_verified false refuses a new link
    let body = check_status(
        login(
            by_email,
            ext_claims(
                "e-2",
                Some("bob@example.com"),
                json!({"email_verified": false}),
            ),
            json!({}),
        ),
        401,
    );
    assert_eq!(general_code(&body), "[UnverifiedEmail]");
    // no email claim
    let body = check_status(
        login(by_email, ext_claims("e-3", None, json!({})), json!({})),
        401,
    );
    assert_eq!(general_code(&body), "[MissingEmailClaim]");
    // noLink without a link: 404
    assert_eq!(
        login(
            by_email,
            ext_claims("e-4", Some("carl@example.com"), json!({})),
            json!({"noLink": true})
        )
        .status()
        .as_u16(),
        404
    );
    // ...and with one: 200
    assert_eq!(
        login(
            by_email,
            ext_claims("e-1", Some("ann@example.com"), json!({})),
            json!({"noLink": true})
        )
        .status()
        .as_u16(),
        200
    );

    // LinkByEmailForExistingUser: links Ann, never creates
    let existing_email =
        t.provider(json!({"keys": keys, "linkingStrategy": "LinkByEmailForExistingUser"}));
    let body = check_status(
        login(
            existing_email,
            ext_claims("x-1", Some("ANN@example.com"), json!({})),
            json!({}),
        ),
        200,
    );
    assert_eq!(body["user"]["id"], ann.as_str());
    assert_eq!(
        login(
            existing_email,
            ext_claims("x-2", Some("nobody@example.com"), json!({})),
            json!({})
        )
        .status()
        .as_u16(),
        404
    );

    // LinkByUsername (usernameClaim configurable), LinkByUsernameForExistingUser
    let by_username = t.provider(json!({"keys": keys, "linkingStrategy": "LinkByUsername", "oauth2": {"usernameClaim": "upn"}}));
    let body = check_status(
        login(
            by_username,
            ext_claims("u-1", None, json!({"upn": "dora"})),
            json!({}),
        ),
        200,
    );
    let dora = body["user"]["id"].as_str().expect("id").to_string();
    assert_eq!(body["user"]["username"], "dora");
    let body = check_status(
        login(by_username, ext_claims("u-2", None, json!({})), json!({})),
        401,
    );
    assert_eq!(general_code(&body), "[MissingUsernameClaim]");
    let existing_username =
        t.provider(json!({"keys": keys, "linkingStrategy": "LinkByUsernameForExistingUser"}));
    let body = check_status(
        login(
            existing_username,
            ext_claims("y-1", None, json!({"preferred_username": "dora"})),
            json!({}),
        ),
        200,
    );
    assert_eq!(body["user"]["id"], dora.as_str());
    assert_eq!(
        login(
            existing_username,
            ext_claims("y-2", None, json!({"preferred_username": "zed"})),
            json!({})
        )
        .status()
        .as_u16(),
        404
    );

    // LinkAnonymously: a user without email or username
    let anonymous = t.provider(json!({"keys": keys, "linkingStrategy": "LinkAnonymously"}));
    let body = check_status(
        login(
            anonymous,
            ext_claims("a-1", Some("ann@example.com"), json!({})),
            json!({}),
        ),
        200,
    );
    assert_ne!(body["user"]["id"], ann.as_str());
    assert!(body["user"].get("email").is_none());

    // Disabled: no automatic link
    let disabled = t.provider(json!({"keys": keys, "linkingStrategy": "Disabled"}));
    assert_eq!(
        login(
            disabled,
            ext_claims("d-1", Some("ann@example.com"), json!({})),
            json!({})
        )
        .status()
        .as_u16(),
        404
    );

    // CreatePendingLink: a pending link the Link API completes
    let pending = t.provider(json!({"keys": keys, "linkingStrategy": "CreatePendingLink"}));
    let body = check_status(
        login(
            pending,
            ext_claims("p-1", Some("ann@example.com"), json!({})),
            json!({"refresh_token": "provider-refresh"}),
        ),
        200,
    );
    let pending_id = body["pendingIdPLinkId"]
        .as_str()
        .expect("pendingIdPLinkId")
        .to_string();
    assert!(body.get("token").is_none() && body.get("user").is_none());
    let got = check_status(
        t.get(&format!(
            "/api/identity-provider/link/pending/{pending_id}?userId={ann}"
        )),
        200,
    );
    assert_eq!(got["pendingIdPLink"]["identityProviderUserId"], "p-1");
    assert_eq!(got["pendingIdPLink"]["email"], "ann@example.com");
    assert_eq!(got["linkCount"], 0);
    let linked = check_status(
        t.post(
            "/api/identity-provider/link",
            &json!({"pendingIdPLinkId": pending_id, "identityProviderLink": {"userId": ann}}),
        ),
        200,
    );
    assert_eq!(linked["identityProviderLink"]["userId"], ann.as_str());
    assert_eq!(linked["identityProviderLink"]["token"], "provider-refresh");
    assert_eq!(
        t.get(&format!("/api/identity-provider/link/pending/{pending_id}"))
            .status()
            .as_u16(),
        404
    );
    let body = check_status(
        login(
            pending,
            ext_claims("p-1", Some("ann@example.com"), json!({})),
            json!({}),
        ),
        200,
    );
    assert_eq!(body["user"]["id"], ann.as_str());

    // limitUserLinkCount: one link per user to this provider
    let limited = t.provider(json!({"keys": keys, "linkingStrategy": "LinkByEmail",
        "tenantConfiguration": {TENANT: {"limitUserLinkCount": {"enabled": true, "maximumLinks": 1}}}}));
    check_status(
        login(
            limited,
            ext_claims("l-1", Some("ann@example.com"), json!({})),
            json!({}),
        ),
        200,
    );
    let body = check_status(
        login(
            limited,
            ext_claims("l-2", Some("ann@example.com"), json!({})),
            json!({}),
        ),
        401,
    );
    assert_eq!(general_code(&body), "[LinkLimitReached]");

    // domains: an email outside them is refused
    let domains = t.provider(json!({"keys": keys, "domains": ["corp.test"]}));
    let body = check_status(
        login(
            domains,
            ext_claims("m-1", Some("ann@example.com"), json!({})),
            json!({}),
        ),
        401,
    );
    assert_eq!(general_code(&body), "[DomainNotManaged]");
    check_status(
        login(
            domains,
            ext_claims("m-2", Some("eve@corp.test"), json!({})),
            json!({}),
        ),
        200,
    );

    // createRegistration false: 202 and a token without application roles
    let no_reg = t.provider(json!({"keys": keys, "linkingStrategy": "LinkAnonymously",
        "applicationConfiguration": {APP: {"enabled": true, "createRegistration": false}}}));
    let body = check_status(
        login(no_reg, ext_claims("n-1", None, json!({})), json!({})),
        202,
    );
    assert!(body["token"].is_string());
    assert!(body.get("refreshToken").is_none());
    assert!(body["user"].get("registrations").is_none());

    // a disabled provider, one not enabled for the application, an unknown provider or app: 401
    let off = t.provider(json!({"keys": keys, "enabled": false}));
    assert_eq!(
        general_code(&check_status(
            login(
                off,
                ext_claims("o-1", Some("o@example.com"), json!({})),
                json!({})
            ),
            401
        )),
        "[IdentityProviderDisabled]"
    );
    let not_for_app = t.provider(
        json!({"keys": keys, "applicationConfiguration": {OTHER_APP: {"enabled": true}}}),
    );
    assert_eq!(
        general_code(&check_status(
            login(
                not_for_app,
                ext_claims("o-2", Some("o@example.com"), json!({})),
                json!({})
            ),
            401
        )),
        "[IdentityProviderDisabledForApplication]"
    );
    check_status(
        login(
            Uuid::new_v4(),
            ext_claims("o-3", None, json!({})),
            json!({}),
        ),
        401,
    );
    check_status(
        login(
            by_email,
            ext_claims("o-4", None, json!({})),
            json!({"applicationId": Uuid::new_v4()}),
        ),
        401,
    );
    // missing fields: 400 naming them
    let r = t
        .http
        .post(t.gw.url("/api/identity-provider/login"))
        .json(&json!({}))
        .send()
        .expect("send");
    let body = check_status(r, 400);
    for field in ["applicationId", "identityProviderId", "encodedJWT"] {
        assert!(body["fieldErrors"][field].is_array(), "{field}: {body}");
    }
}

#[test]
fn login_answers_tokens_and_cookies_that_work_on_the_proxy() {
    let t = Idp::start();
    let key = ExternalKey::generate(Algorithm::ES256);
    let idp = t.provider(json!({"keys": {"k": key.verifying}, "linkingStrategy": "LinkByEmail"}));
    let token = key.sign(
        Some("k"),
        None,
        &ext_claims("ext-7", Some("fay@example.com"), json!({})),
    );
    let r = t.login(
        idp,
        &token,
        json!({"ipAddress": "203.0.113.9", "refresh_token": "idp-refresh-token",
               "metaData": {"device": {"name": "Fay's laptop", "type": "LAPTOP", "description": "work"}}}),
    );
    let cookies = set_cookies(&r);
    let body = check_status(r, 200);
    let access = body["token"].as_str().expect("token").to_string();
    let user = body["user"]["id"].as_str().expect("id").to_string();
    let access_cookie = cookies
        .iter()
        .find(|c| c.starts_with("access_token="))
        .expect("access_token cookie");
    assert!(
        access_cookie.contains("HttpOnly") && !access_cookie.contains("Max-Age"),
        "{access_cookie}"
    );
    let refresh_cookie = cookies
        .iter()
        .find(|c| c.starts_with("refresh_token="))
        .expect("refresh_token cookie");
    assert!(
        refresh_cookie.contains("Max-Age=") && refresh_cookie.contains("HttpOnly"),
        "{refresh_cookie}"
    );
    assert!(body["user"]["lastLoginInstant"].as_i64().is_some());

    // the access token is FusionAuth-shaped and works on the protected route
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(access.split('.').nth(1).expect("payload"))
            .expect("b64"),
    )
    .expect("claims");
    assert_eq!(claims["authenticationType"], "FEDERATED_JWT");
    assert_eq!(claims["sub"], user.as_str());
    assert_eq!(claims["sid"], body["refreshTokenId"]);
    assert_eq!(claims["roles"], json!(["user"]));
    let echoed = check_status(
        t.http
            .get(t.gw.url("/hello"))
            .bearer_auth(&access)
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(echoed["headers"]["x-user-id"], user.as_str());
    assert_eq!(echoed["headers"]["x-user-email"], "fay@example.com");
    let via_cookie = t
        .http
        .get(t.gw.url("/hello"))
        .header("Cookie", format!("access_token={access}"))
        .send()
        .expect("send");
    assert_eq!(via_cookie.status().as_u16(), 200);
    // device metadata and the address were recorded on the refresh token
    let tokens = check_status(t.get(&format!("/api/jwt/refresh?userId={user}")), 200);
    let device = &tokens["refreshTokens"][0]["metaData"]["device"];
    assert_eq!(device["name"], "Fay's laptop");
    assert_eq!(device["type"], "LAPTOP");
    assert_eq!(device["lastAccessedAddress"], "203.0.113.9");
    // the refresh token works with the JWT API
    let refreshed = check_status(
        t.http
            .post(t.gw.url("/api/jwt/refresh"))
            .json(&json!({"refreshToken": body["refreshToken"]}))
            .send()
            .expect("send"),
        200,
    );
    assert!(refreshed["token"].is_string());

    // the provider's refresh token is on the link
    let link = check_status(t.get(&format!("/api/identity-provider/link?identityProviderId={idp}&identityProviderUserId=ext-7&userId={user}")), 200);
    assert_eq!(link["identityProviderLink"]["token"], "idp-refresh-token");

    // Without ipAddress: the client's address, never its own X-Forwarded-For claim (no
    // trusted proxies are configured here)
    let token = key.sign(
        Some("k"),
        None,
        &ext_claims("ext-7", Some("fay@example.com"), json!({})),
    );
    let r = t
        .http
        .post(t.gw.url("/api/identity-provider/login"))
        .header("X-Forwarded-For", "198.51.100.7, 10.0.0.1")
        .json(&json!({"applicationId": APP, "identityProviderId": idp, "encodedJWT": token}))
        .send()
        .expect("send");
    check_status(r, 200);
    let tokens = check_status(t.get(&format!("/api/jwt/refresh?userId={user}")), 200);
    let addresses: Vec<&str> = tokens["refreshTokens"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["metaData"]["device"]["lastAccessedAddress"].as_str())
        .collect();
    assert!(!addresses.contains(&"198.51.100.7"), "{addresses:?}");
    assert!(addresses.contains(&"127.0.0.1"), "{addresses:?}");

    // noJWT: no token, no cookies
    let token = key.sign(
        Some("k"),
        None,
        &ext_claims("ext-7", Some("fay@example.com"), json!({})),
    );
    let r = t.login(idp, &token, json!({"noJWT": true}));
    assert!(set_cookies(&r).is_empty());
    let body = check_status(r, 200);
    assert!(body.get("token").is_none() && body.get("refreshToken").is_none());
    assert_eq!(body["user"]["id"], user.as_str());

    // /api/jwt/reconcile with data.token, and with the deprecated encodedJWT
    let token = key.sign(
        Some("k"),
        None,
        &ext_claims("ext-7", Some("fay@example.com"), json!({})),
    );
    for body in [
        json!({"applicationId": APP, "identityProviderId": idp, "data": {"token": token}}),
        json!({"applicationId": APP, "identityProviderId": idp, "encodedJWT": token}),
    ] {
        let r = t
            .http
            .post(t.gw.url("/api/jwt/reconcile"))
            .json(&body)
            .send()
            .expect("send");
        let got = check_status(r, 200);
        assert_eq!(got["user"]["id"], user.as_str());
    }
    let r = t
        .http
        .post(t.gw.url("/api/jwt/reconcile"))
        .json(&json!({"applicationId": APP, "identityProviderId": idp}))
        .send()
        .expect("send");
    let body = check_status(r, 400);
    assert!(body["fieldErrors"]["data.token"].is_array(), "{body}");
}

// ---------------------------------------------------------------------------------------------
// Claim map, lambdas, debug, users
// ---------------------------------------------------------------------------------------------

#[test]
fn claim_map_lambdas_debug_events_and_users() {
    let t = Idp::start();
    let key = ExternalKey::generate(Algorithm::RS256);

    // lambdas: create, list, validate, retrieve, update
    let lambda = check_status(
        t.post(
            "/api/lambda",
            &json!({"lambda": {"name": "reconcile", "type": "ExternalJWTReconcile", "debug": true,
                "body": "function reconcile(user, registration, jwt) {\n  user.lastName = jwt.family_name.toUpperCase();\n  registration.roles.push('admin');\n  console.log('reconciled', jwt.sub);\n}"}}),
        ),
        200,
    );
    let lambda_id = lambda["lambda"]["id"].as_str().expect("id").to_string();
    assert_eq!(lambda["lambda"]["engineType"], "GraalJS");
    let body = check_status(
        t.post("/api/lambda", &json!({"lambda": {"name": "x", "type": "JWTPopulate", "body": "function reconcile( {"}})),
        400,
    );
    assert!(
        body["fieldErrors"]["lambda.type"].is_array()
            && body["fieldErrors"]["lambda.body"].is_array(),
        "{body}"
    );
    let listed = check_status(t.get("/api/lambda?type=ExternalJWTReconcile"), 200);
    assert_eq!(listed["lambdas"].as_array().expect("list").len(), 1);
    check_status(t.get(&format!("/api/lambda/{lambda_id}")), 200);

    let idp = t.provider(json!({
        "keys": {"k": key.verifying}, "debug": true, "linkingStrategy": "LinkByEmail",
        "claimMap": {"given_name": "firstName", "groups": "UserData", "dept": "RegistrationData", "birthdate": "birthDate"},
        "lambdaConfiguration": {"reconcileId": lambda_id},
    }));
    let token = key.sign(Some("k"), None, &ext_claims("c-1", Some("gil@example.com"), json!({
        "given_name": "Gil", "family_name": "Lamb", "groups": ["a", "b"], "dept": "ops", "birthdate": "1981-02-03"})));
    let body = check_status(t.login(idp, &token, json!({})), 200);
    let user = &body["user"];
    assert_eq!(user["firstName"], "Gil");
    assert_eq!(user["lastName"], "LAMB");
    assert_eq!(user["birthDate"], "1981-02-03");
    assert_eq!(user["data"]["groups"], json!(["a", "b"]));
    assert_eq!(user["registrations"][0]["data"]["dept"], "ops");
    assert_eq!(user["registrations"][0]["roles"], json!(["user", "admin"]));
    let user_id = user["id"].as_str().expect("id").to_string();

    // the User API shows what reconcile did
    let got = check_status(t.get(&format!("/api/user/{user_id}")), 200);
    assert_eq!(got["user"]["lastName"], "LAMB");
    assert_eq!(
        got["user"]["registrations"][0]["roles"],
        json!(["user", "admin"])
    );
    let by_email = check_status(t.get("/api/user?email=GIL@example.com"), 200);
    assert_eq!(by_email["user"]["id"], user_id.as_str());
    assert_eq!(
        t.get("/api/user?email=none@example.com").status().as_u16(),
        404
    );
    assert_eq!(
        t.get(&format!("/api/user/{}", Uuid::new_v4()))
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        client()
            .get(t.gw.url(&format!("/api/user/{user_id}")))
            .send()
            .expect("send")
            .status()
            .as_u16(),
        401
    );
    let scoped = client()
        .get(t.gw.url(&format!("/api/user/{user_id}")))
        .header("Authorization", TENANT_API_KEY)
        .send()
        .expect("send");
    assert_eq!(
        scoped.status().as_u16(),
        404,
        "a key locked to another tenant does not see the user"
    );

    // debug: the login wrote an event, searchable and retrievable
    let found = check_status(
        t.post(
            "/api/system/event-log/search",
            &json!({"search": {"message": "External JWT login", "type": "Debug"}}),
        ),
        200,
    );
    assert!(found["total"].as_i64().expect("total") >= 1, "{found}");
    let event = &found["eventLogs"][0];
    let message = event["message"].as_str().expect("message");
    assert!(
        message.contains("JWT verified with header key [k]"),
        "{message}"
    );
    assert!(message.contains("Created user"), "{message}");
    assert!(!message.contains(&token), "the token is never logged");
    let id = event["id"].as_i64().expect("id");
    let one = check_status(t.get(&format!("/api/system/event-log/{id}")), 200);
    assert_eq!(one["eventLog"]["id"], id);
    // The log holds every tenant's logins: a request scoped to a tenant reads none of it.
    for (key, tenant) in [(TENANT_API_KEY, None), (API_KEY, Some(OTHER_TENANT))] {
        let scoped = |request: reqwest::blocking::RequestBuilder| {
            let request = request.header("Authorization", key);
            match tenant {
                Some(tenant) => request.header("X-FusionAuth-TenantId", tenant),
                None => request,
            }
        };
        for response in [
            scoped(t.http.get(t.gw.url(&format!("/api/system/event-log/{id}")))),
            scoped(
                t.http
                    .get(t.gw.url("/api/system/event-log/search?message=External")),
            ),
            scoped(
                t.http
                    .post(t.gw.url("/api/system/event-log/search"))
                    .json(&json!({"search": {}})),
            ),
        ] {
            assert_eq!(response.send().expect("send").status().as_u16(), 401);
        }
    }
    let console = check_status(
        t.get("/api/system/event-log/search?message=console+output"),
        200,
    );
    assert!(
        console["eventLogs"][0]["message"]
            .as_str()
            .expect("m")
            .contains("reconciled c-1"),
        "{console}"
    );

    let set_lambda = |name: &str, body: &str| {
        let r = t
            .http
            .put(t.gw.url(&format!("/api/lambda/{lambda_id}")))
            .header("Authorization", API_KEY)
            .json(&json!({"lambda": {"name": name, "type": "ExternalJWTReconcile", "body": body}}))
            .send()
            .expect("send");
        check_status(r, 200);
    };
    let gil_token = || {
        key.sign(
            Some("k"),
            None,
            &ext_claims("c-1", Some("gil@example.com"), json!({"family_name": "x"})),
        )
    };

    // a lambda that deactivates the user, or ends its account, stops the login: no tokens, and
    // nothing of the login written (the user stays active, its expiry unset)
    for (name, body, status) in [
        (
            "deactivates",
            "function reconcile(user, registration, jwt) { user.active = false; }",
            401,
        ),
        (
            "expires",
            "function reconcile(user, registration, jwt) { user.expiry = 1000; }",
            410,
        ),
    ] {
        set_lambda(name, body);
        let token = gil_token();
        let r = t.login(idp, &token, json!({}));
        assert_eq!(r.status().as_u16(), status, "{name}");
        let text = r.text().expect("body");
        assert!(!text.contains("\"token\""), "{name}: {text}");
        if status == 401 {
            let body: Value = serde_json::from_str(&text).expect("errors");
            assert_eq!(general_code(&body), "[UserInactive]", "{body}");
        } else {
            assert_eq!(text, "", "a 410 has no body");
        }
        let found = check_status(t.get("/api/user?email=gil@example.com"), 200);
        assert_eq!(found["user"]["active"], true, "{found}");
        assert!(found["user"].get("expiry").is_none(), "{found}");
    }

    // a throwing lambda, a looping one, and one leaving a birth date or time zone no typed
    // client reads are clear 401s; the gateway keeps serving
    for (name, body, says) in [
        (
            "throws",
            "function reconcile(user, registration, jwt) { throw new Error('no dept'); }",
            "no dept",
        ),
        (
            "loops",
            "function reconcile(user, registration, jwt) { while (true) {} }",
            "time limit",
        ),
        (
            "bad-date",
            "function reconcile(user, registration, jwt) { user.birthDate = 'not-a-date'; }",
            "birthDate",
        ),
        (
            "bad-zone",
            "function reconcile(user, registration, jwt) { user.timezone = 'Mars/Olympus'; }",
            "timezone",
        ),
    ] {
        set_lambda(name, body);
        let started = std::time::Instant::now();
        let token = gil_token();
        let body = check_status(t.login(idp, &token, json!({})), 401);
        assert_eq!(general_code(&body), "[LambdaInvocationFailed]", "{body}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let message = body["generalErrors"][0]["message"].as_str().expect("m");
        assert!(message.contains(says), "{body}");
    }
    assert_eq!(t.get("/health").status().as_u16(), 200);

    // a lambda in use cannot be deleted; once unused it can
    let body = check_status(t.delete(&format!("/api/lambda/{lambda_id}")), 400);
    assert_eq!(general_code(&body), "[InUse]");
    check_status(
        t.patch(
            &format!("/api/identity-provider/{idp}"),
            "application/merge-patch+json",
            &json!({"identityProvider": {"lambdaConfiguration": null}}),
        ),
        200,
    );
    assert_eq!(
        t.delete(&format!("/api/lambda/{lambda_id}"))
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        t.get(&format!("/api/lambda/{lambda_id}")).status().as_u16(),
        404
    );
}

// ---------------------------------------------------------------------------------------------
// Links
// ---------------------------------------------------------------------------------------------

#[test]
fn the_link_api_links_lists_and_unlinks() {
    let t = Idp::start();
    let key = ExternalKey::generate(Algorithm::HS256);
    let idp = t.provider(
        json!({"keys": {"k": key.verifying}, "linkingStrategy": "LinkByEmailForExistingUser"}),
    );
    // a user to link to: made by an anonymous provider
    let anon =
        t.provider(json!({"keys": {"k": key.verifying}, "linkingStrategy": "LinkAnonymously"}));
    let body = check_status(
        t.login(
            anon,
            &key.sign(Some("k"), None, &ext_claims("anon-1", None, json!({}))),
            json!({}),
        ),
        200,
    );
    let user = body["user"]["id"].as_str().expect("id").to_string();

    let link = json!({"identityProviderLink": {"identityProviderId": idp, "identityProviderUserId": "ext-42", "userId": user, "displayName": "Hal", "token": "t-1"}});
    let created = check_status(t.post("/api/identity-provider/link", &link), 200);
    assert_eq!(
        created["identityProviderLink"]["identityProviderUserId"],
        "ext-42"
    );
    assert_eq!(
        created["identityProviderLink"]["identityProviderType"],
        "ExternalJWT"
    );
    let body = check_status(t.post("/api/identity-provider/link", &link), 400);
    assert!(general_code(&body).contains("duplicate"), "{body}");
    let body = check_status(
        t.post(
            "/api/identity-provider/link",
            &json!({"identityProviderLink": {"identityProviderId": idp, "userId": user}}),
        ),
        400,
    );
    assert!(
        body["fieldErrors"]["identityProviderLink.identityProviderUserId"].is_array(),
        "{body}"
    );

    // the link now lets the provider user in, though the strategy would not have created one
    let body = check_status(
        t.login(
            idp,
            &key.sign(Some("k"), None, &ext_claims("ext-42", None, json!({}))),
            json!({}),
        ),
        200,
    );
    assert_eq!(body["user"]["id"], user.as_str());

    let all = check_status(
        t.get(&format!("/api/identity-provider/link?userId={user}")),
        200,
    );
    assert_eq!(
        all["identityProviderLinks"].as_array().expect("list").len(),
        2
    );
    let one_idp = check_status(
        t.get(&format!(
            "/api/identity-provider/link?userId={user}&identityProviderId={idp}"
        )),
        200,
    );
    assert_eq!(
        one_idp["identityProviderLinks"]
            .as_array()
            .expect("list")
            .len(),
        1
    );
    let single = check_status(t.get(&format!("/api/identity-provider/link?identityProviderId={idp}&identityProviderUserId=ext-42&userId={user}")), 200);
    assert_eq!(single["identityProviderLink"]["displayName"], "Hal");
    assert_eq!(t.get("/api/identity-provider/link").status().as_u16(), 400);

    let path = format!("/api/identity-provider/link?identityProviderId={idp}&identityProviderUserId=ext-42&userId={user}");
    let deleted = check_status(t.delete(&path), 200);
    assert_eq!(
        deleted["identityProviderLink"]["identityProviderUserId"],
        "ext-42"
    );
    assert_eq!(t.delete(&path).status().as_u16(), 404);
    assert_eq!(t.get(&path).status().as_u16(), 404);
    let token = key.sign(
        Some("k"),
        None,
        &ext_claims("ext-42", Some("nobody@example.com"), json!({})),
    );
    assert_eq!(t.login(idp, &token, json!({})).status().as_u16(), 404);

    // deleting a provider takes its links with it
    check_status(
        t.get(&format!(
            "/api/identity-provider/link?userId={user}&identityProviderId={anon}"
        )),
        200,
    );
    assert_eq!(
        t.delete(&format!("/api/identity-provider/{anon}"))
            .status()
            .as_u16(),
        200
    );
    let left = check_status(
        t.get(&format!("/api/identity-provider/link?userId={user}")),
        200,
    );
    assert_eq!(left["identityProviderLinks"], json!([]));
    assert_eq!(
        t.get("/api/identity-provider/link/pending/nope")
            .status()
            .as_u16(),
        404
    );
}

/// `POST` and `GET /api/identity-provider/search`: FusionAuth's criteria (name with `*`
/// wildcards or anywhere, type, application), pages with the total, orders, secrets stay
/// redacted, and a bad criterion is a 400 naming it (never read as a provider id).
#[test]
fn providers_are_searched_by_name_type_and_application_in_pages() {
    let t = Idp::start();
    let names = ["Acme SSO", "acme partners", "Zeta", "Partner ACME"];
    for (i, name) in names.iter().enumerate() {
        let enabled = i % 2 == 0;
        t.provider(
            json!({"name": name, "keys": {"k": "an-hmac-secret-value-for-search"},
            "applicationConfiguration": {APP: {"enabled": enabled}}}),
        );
    }
    // The status and body of a search with `criteria`; no answer holds a secret.
    let post_search = |criteria: &Value| -> (u16, Value) {
        let response = t
            .http
            .post(t.gw.url("/api/identity-provider/search"))
            .header("Authorization", API_KEY)
            .json(&json!({"search": criteria}))
            .send()
            .expect("send");
        let status = response.status().as_u16();
        let body: Value = response.json().expect("json");
        assert!(!body.to_string().contains("an-hmac-secret-value"), "{body}");
        (status, body)
    };
    let search = |criteria: Value| -> Value {
        let (status, body) = post_search(&criteria);
        assert_eq!(status, 200, "{criteria}: {body}");
        body
    };
    let names_of = |body: &Value| -> Vec<String> {
        body["identityProviders"]
            .as_array()
            .expect("list")
            .iter()
            .map(|p| p["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let all = search(json!({}));
    assert_eq!(all["total"], 4);
    assert_eq!(
        names_of(&all),
        ["acme partners", "Acme SSO", "Partner ACME", "Zeta"]
    );
    assert_eq!(names_of(&search(json!({"name": "ACME"}))).len(), 3);
    assert_eq!(
        names_of(&search(json!({"name": "acme*"}))),
        ["acme partners", "Acme SSO"]
    );
    assert_eq!(
        names_of(&search(json!({"name": "*acme"}))),
        ["Partner ACME"]
    );
    assert_eq!(
        names_of(&search(json!({"applicationId": APP}))),
        ["Acme SSO", "Zeta"]
    );
    assert_eq!(search(json!({"type": "OpenIDConnect"}))["total"], 0);
    let page = search(json!({"orderBy": "name DESC", "numberOfResults": 2, "startRow": 1}));
    assert_eq!(page["total"], 4);
    assert_eq!(names_of(&page), ["Partner ACME", "Acme SSO"]);
    let by_insert = search(json!({"orderBy": "insertInstant ASC"}));
    let inserted: Vec<i64> = by_insert["identityProviders"]
        .as_array()
        .expect("list")
        .iter()
        .map(|p| p["insertInstant"].as_i64().expect("instant"))
        .collect();
    assert!(inserted.windows(2).all(|w| w[0] <= w[1]), "{inserted:?}");
    // GET takes the same criteria as query parameters.
    let got = t.get("/api/identity-provider/search?name=zeta&orderBy=id");
    assert_eq!(got.status().as_u16(), 200);
    let got: Value = got.json().expect("json");
    assert_eq!(names_of(&got), ["Zeta"]);
    // Bad criteria: a 400 naming the member.
    for (criteria, member) in [
        (json!({"orderBy": "keys ASC"}), "search.orderBy"),
        (json!({"numberOfResults": 0}), "search.numberOfResults"),
        (json!({"applicationId": "x"}), "search.applicationId"),
        (json!({"type": "Kerberos"}), "search.type"),
    ] {
        let (status, body) = post_search(&criteria);
        assert_eq!(status, 400, "{criteria}");
        assert!(body["fieldErrors"][member].is_array(), "{criteria}: {body}");
    }
    let unauthenticated = t
        .http
        .post(t.gw.url("/api/identity-provider/search"))
        .json(&json!({"search": {}}))
        .send()
        .expect("send");
    assert_eq!(unauthenticated.status().as_u16(), 401);
}

/// The API refuses, as the file does, keys that are no field of the provider's sections
/// (`oauth2`, an application's or a tenant's configuration), and one application id written
/// twice in another case.
#[test]
fn unknown_keys_inside_sections_and_an_id_written_twice_are_refused() {
    let t = Idp::start();
    let upper = APP.to_string().to_uppercase();
    let doc = json!({"identityProvider": {
        "name": "typos", "type": "ExternalJWT", "headerKeyParameter": "kid",
        "oauth2": {"emailClaim": "email", "emailclaim": "mail"},
        "applicationConfiguration": {
            APP: {"enabled": true, "createregistration": false},
            (upper): {"enabled": false}},
        "tenantConfiguration": {TENANT: {"limitUserLinkCount": {"enabled": true, "maximum": 1}}},
    }});
    let body = check_status(t.post("/api/identity-provider", &doc), 400);
    let fields = body["fieldErrors"].as_object().expect("fieldErrors");
    let codes: Vec<&str> = (fields.values())
        .flat_map(|errors| errors.as_array().into_iter().flatten())
        .filter_map(|e| e["code"].as_str())
        .collect();
    for expected in [
        "[unknown]identityProvider.oauth2.emailclaim".to_string(),
        format!("[unknown]identityProvider.applicationConfiguration[{APP}].createregistration"),
        format!(
            "[unknown]identityProvider.tenantConfiguration[{TENANT}].limitUserLinkCount.maximum"
        ),
    ] {
        assert!(codes.contains(&expected.as_str()), "{expected}: {body}");
    }
    assert!(
        codes
            .iter()
            .any(|c| c.starts_with("[duplicate]identityProvider.applicationConfiguration[")),
        "{body}"
    );
}

/// `body`'s first field error under `field`: (code, message).
fn field_error(body: &Value, field: &str) -> (String, String) {
    let error = &body["fieldErrors"][field][0];
    let text = |k: &str| error[k].as_str().unwrap_or_default().to_string();
    (text("code"), text("message"))
}

#[test]
fn a_tenant_locked_key_learns_nothing_of_other_tenants_from_reads_or_a_taken_domain() {
    let t = Idp::start();
    let global = t.provider(json!({
        "keys": {"k": "secret"},
        "domains": ["shared.example"],
        "tenantConfiguration": {TENANT: {"data": {"t": 1}}, OTHER_TENANT: {"data": {"o": 1}}},
    }));
    let hidden = check_status(
        t.post(
            "/api/identity-provider",
            &json!({"identityProvider": {"name": "theirs", "type": "ExternalJWT",
                "headerKeyParameter": "kid", "tenantId": TENANT, "domains": ["secret.example"]}}),
        ),
        200,
    )["identityProvider"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let scoped = |method: reqwest::Method, path: &str| t.scoped(method, path);
    // Reads: the global provider without the other tenant's application and configuration.
    let read = scoped(
        reqwest::Method::GET,
        &format!("/api/identity-provider/{global}"),
    );
    let read = check_status(read.send().expect("send"), 200);
    assert_eq!(
        read["identityProvider"]["applicationConfiguration"],
        json!({})
    );
    let tenants = read["identityProvider"]["tenantConfiguration"]
        .as_object()
        .expect("tenants");
    assert_eq!(tenants.keys().collect::<Vec<_>>(), [OTHER_TENANT]);
    let list = scoped(reqwest::Method::GET, "/api/identity-provider");
    let list = check_status(list.send().expect("send"), 200);
    assert_eq!(
        list["identityProviders"][0]["applicationConfiguration"],
        json!({})
    );
    let search = json!({"search": {"applicationId": APP}});
    let found = scoped(reqwest::Method::POST, "/api/identity-provider/search").json(&search);
    assert_eq!(check_status(found.send().expect("send"), 200)["total"], 0);
    assert_eq!(
        check_status(t.post("/api/identity-provider/search", &search), 200)["total"],
        1
    );
    // A taken domain: the owner is named only when the key may see it.
    let create = |domain: &str| {
        scoped(reqwest::Method::POST, "/api/identity-provider")
            .json(
                &json!({"identityProvider": {"name": "mine", "type": "ExternalJWT",
                "headerKeyParameter": "kid", "domains": [domain]}}),
            )
            .send()
            .expect("send")
    };
    let body = check_status(create("secret.example"), 400);
    let (code, message) = field_error(&body, "identityProvider.domains[0]");
    assert_eq!(code, "[duplicate]identityProvider.domains[0]");
    assert!(!message.contains(&hidden), "{message}");
    let body = check_status(create("shared.example"), 400);
    let (_, message) = field_error(&body, "identityProvider.domains[0]");
    assert!(message.contains(&global.to_string()), "{message}");
}

#[test]
fn creates_racing_with_one_id_or_one_domain_leave_one_written() {
    let t = Idp::start();
    let post_all = |paths: Vec<(String, Value)>| -> Vec<(u16, Value)> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (paths.into_iter())
                .map(|(path, body)| {
                    let t = &t;
                    s.spawn(move || {
                        let r = t.post(&path, &body);
                        let status = r.status().as_u16();
                        (status, r.json().unwrap_or(Value::Null))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("join"))
                .collect()
        })
    };
    let provider = |name: String, domains: Value| {
        json!({"identityProvider": {"name": name, "type": "ExternalJWT",
            "headerKeyParameter": "kid", "domains": domains}})
    };
    let id = Uuid::new_v4();
    let answers = post_all(
        (0..8)
            .map(|i| {
                (
                    format!("/api/identity-provider/{id}"),
                    provider(format!("race{i}"), json!([])),
                )
            })
            .collect(),
    );
    let ok: Vec<&Value> = (answers.iter())
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    one_wins(&answers, "identityProviderId");
    let stored = check_status(t.get(&format!("/api/identity-provider/{id}")), 200);
    assert_eq!(
        stored["identityProvider"]["name"],
        ok[0]["identityProvider"]["name"]
    );

    let lambda = Uuid::new_v4();
    let body = json!({"lambda": {"type": "ExternalJWTReconcile", "name": "l",
        "body": "function reconcile(user, registration, jwt) {}"}});
    let answers = post_all(
        (0..8)
            .map(|_| (format!("/api/lambda/{lambda}"), body.clone()))
            .collect(),
    );
    one_wins(&answers, "lambdaId");

    let answers = post_all(
        (0..8)
            .map(|i| {
                (
                    "/api/identity-provider".to_string(),
                    provider(format!("d{i}"), json!(["one.example"])),
                )
            })
            .collect(),
    );
    one_wins(&answers, "identityProvider.domains[0]");
}

/// Asserts that exactly one of racing creates answered 200 and every other a 400
/// `[duplicate]` on `field`.
fn one_wins(answers: &[(u16, Value)], field: &str) {
    let won = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(won, 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 400, "{body}");
        assert_eq!(field_error(body, field).0, format!("[duplicate]{field}"));
    }
}
