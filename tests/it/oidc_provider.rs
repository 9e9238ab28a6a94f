//! The `OpenIDConnect` identity-provider type through the real binary: CRUD and the three PATCH
//! formats next to ExternalJWT providers, FusionAuth's validation with every field path at
//! once, the client secret (redacted in every answer, kept across updates, never logged),
//! reconcile lambdas of type `OpenIDReconcile`, the Link API, declaration in `config.yaml`
//! (served and checked), and what a login request with such a provider must carry (the logins
//! themselves: `oidc_login.rs`).

use gatehouse_plugin_api::SystemClock;
use gatehouse_plugin_identity_provider::IdentityProviderStore;
use reqwest::blocking::Response;
use serde_json::{json, Value};
use uuid::Uuid;

use super::identity_provider::Idp;
use super::kit::*;

/// The client secret of the providers created here; it must never appear in an answer or log.
const SECRET: &str = "oidc-client-secret-never-shown-1234";
/// The secret of the application override.
const APP_SECRET: &str = "oidc-app-secret-never-shown-5678";

/// An OpenIDConnect provider document (discovery from the issuer), enabled for [`APP`].
fn oidc_document(name: &str) -> Value {
    json!({
        "name": name, "type": "OpenIDConnect", "enabled": true,
        "buttonText": "Log in with SSO",
        "oauth2": {"issuer": "https://sso.example.com", "client_id": "gatehouse",
                   "client_secret": SECRET, "scope": "openid email profile offline_access",
                   "emailClaim": "email", "uniqueIdClaim": "sub"},
        "linkingStrategy": "LinkByEmail",
        "applicationConfiguration": {APP: {"enabled": true, "createRegistration": true,
            "oauth2": {"client_id": "app-client", "client_secret": APP_SECRET}}},
    })
}

/// `PUT path` with the API key.
fn put(t: &Idp, path: &str, body: &Value) -> Response {
    t.http
        .put(t.gw.url(path))
        .header("Authorization", API_KEY)
        .json(body)
        .send()
        .expect("send")
}

/// The answer's body as text, checked for the status and for the secrets.
fn text_of(response: Response, status: u16) -> String {
    let code = response.status().as_u16();
    let text = response.text().expect("body");
    assert_eq!(code, status, "{text}");
    assert!(
        !text.contains(SECRET) && !text.contains(APP_SECRET),
        "a secret in {text}"
    );
    text
}

/// The answer's JSON, checked for the status and for the secrets.
fn json_of(response: Response, status: u16) -> Value {
    serde_json::from_str(&text_of(response, status)).unwrap_or(Value::Null)
}

/// The provider `id` as stored (read from the gateway's SQLite file).
fn stored(gw: &TestGateway, id: &str) -> Value {
    let store = gatehouse::store::sqlite::SqliteStore::open(
        &gw.store_path(),
        std::sync::Arc::new(SystemClock),
    )
    .expect("open the store");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let id = Uuid::parse_str(id).expect("uuid");
    runtime
        .block_on(store.get_identity_provider(id))
        .expect("read")
        .expect("stored")
}

/// The codes of the field errors of an Errors body.
fn field_codes(body: &Value) -> Vec<String> {
    let fields = body["fieldErrors"].as_object().cloned().unwrap_or_default();
    fields
        .values()
        .flat_map(|errors| errors.as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["code"].as_str().map(str::to_string))
        .collect()
}

fn assert_codes(body: &Value, expected: &[&str]) {
    let codes = field_codes(body);
    for code in expected {
        assert!(codes.contains(&code.to_string()), "{code} missing: {body}");
    }
}

#[test]
fn oidc_providers_are_created_retrieved_updated_patched_and_deleted() {
    let t = Idp::start();
    // Create without an id: defaults filled, the secrets redacted.
    let body = json!({"identityProvider": oidc_document("Corporate SSO")});
    let created = json_of(t.post("/api/identity-provider", &body), 200)["identityProvider"].clone();
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["type"], "OpenIDConnect");
    assert_eq!(created["oauth2"]["client_secret"], "********");
    assert_eq!(
        created["applicationConfiguration"][APP]["oauth2"]["client_secret"],
        "********"
    );
    assert_eq!(
        created["oauth2"]["clientAuthenticationMethod"],
        "client_secret_basic"
    );
    assert_eq!(created["postRequest"], false);
    assert_eq!(stored(&t.gw, &id)["oauth2"]["client_secret"], SECRET);

    // Create with an id: endpoints instead of an issuer; `none` needs no secret.
    let given = Uuid::new_v4().to_string();
    let mut explicit = oidc_document("Partner SSO");
    explicit["oauth2"] = json!({"client_id": "public", "clientAuthenticationMethod": "none",
        "authorization_endpoint": "https://partner.example/authorize",
        "token_endpoint": "https://partner.example/token",
        "userinfo_endpoint": "https://partner.example/userinfo"});
    explicit["domains"] = json!(["Partner.example"]);
    let path = format!("/api/identity-provider/{given}");
    let body = json!({"identityProvider": explicit});
    let second = json_of(t.post(&path, &body), 200)["identityProvider"].clone();
    assert_eq!(second["id"], given);
    assert_eq!(second["domains"], json!(["partner.example"]));
    json_of(t.post(&path, &body), 400);
    let jwt = t.provider(json!({"keys": {"k": "an-hmac-secret-of-the-jwt-provider"}}));

    // Retrieve one, all (mixed types), by type; lookup names the type.
    let got = json_of(t.get(&format!("/api/identity-provider/{id}")), 200);
    assert_eq!(got["identityProvider"]["name"], "Corporate SSO");
    let all = json_of(t.get("/api/identity-provider"), 200)["identityProviders"].clone();
    let types: Vec<&str> = all
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["type"].as_str())
        .collect();
    assert_eq!(types.len(), 3, "{all}");
    assert!(types.contains(&"ExternalJWT") && types.contains(&"OpenIDConnect"));
    let typed = json_of(t.get("/api/identity-provider?type=OpenIDConnect"), 200);
    assert_eq!(
        typed["identityProviders"].as_array().expect("list").len(),
        2
    );
    let found = json_of(
        t.get("/api/identity-provider/lookup?domain=ann@partner.example"),
        200,
    );
    assert_eq!(found["identityProvider"]["id"], given);
    assert_eq!(found["identityProvider"]["type"], "OpenIDConnect");
    let jwt_doc = json_of(t.get(&format!("/api/identity-provider/{jwt}")), 200);
    assert_eq!(jwt_doc["identityProvider"]["type"], "ExternalJWT");

    // PUT what GET gave (secrets redacted): the stored secrets are kept.
    let mut replacement = got.clone();
    replacement["identityProvider"]["name"] = json!("Renamed SSO");
    let path = format!("/api/identity-provider/{id}");
    let updated = json_of(put(&t, &path, &replacement), 200)["identityProvider"].clone();
    assert_eq!(updated["name"], "Renamed SSO");
    assert_eq!(updated["insertInstant"], created["insertInstant"]);
    let kept = stored(&t.gw, &id);
    assert_eq!(kept["oauth2"]["client_secret"], SECRET);
    assert_eq!(
        kept["applicationConfiguration"][APP]["oauth2"]["client_secret"],
        APP_SECRET
    );
    // PUT without the secret keeps it too; with a new client_id it must be given anew.
    let mut omitted = replacement.clone();
    let oauth2 = &mut omitted["identityProvider"]["oauth2"];
    oauth2
        .as_object_mut()
        .expect("oauth2")
        .remove("client_secret");
    json_of(put(&t, &path, &omitted), 200);
    assert_eq!(stored(&t.gw, &id)["oauth2"]["client_secret"], SECRET);
    omitted["identityProvider"]["oauth2"]["client_id"] = json!("another-client");
    let refused = json_of(put(&t, &path, &omitted), 400);
    assert_codes(
        &refused,
        &["[missing]identityProvider.oauth2.client_secret"],
    );
    replacement["identityProvider"]["oauth2"]["client_id"] = json!("another-client");
    let refused = json_of(put(&t, &path, &replacement), 400);
    assert_codes(
        &refused,
        &["[invalid]identityProvider.oauth2.client_secret"],
    );
    // A new secret replaces it.
    replacement["identityProvider"]["oauth2"]["client_secret"] = json!("a-new-secret-value");
    json_of(put(&t, &path, &replacement), 200);
    assert_eq!(
        stored(&t.gw, &id)["oauth2"]["client_secret"],
        "a-new-secret-value"
    );

    // PATCH in the three formats; the secret stays and stays hidden.
    let merged = json_of(
        t.patch(
            &path,
            "application/json",
            &json!({"identityProvider": {"domains": ["corp.example"], "debug": true}}),
        ),
        200,
    );
    assert_eq!(
        merged["identityProvider"]["domains"],
        json!(["corp.example"])
    );
    assert_eq!(
        merged["identityProvider"]["oauth2"]["client_secret"],
        "********"
    );
    let merged = json_of(
        t.patch(
            &path,
            "application/merge-patch+json",
            &json!({"identityProvider": {"oauth2": {"scope": "openid email"}}}),
        ),
        200,
    );
    assert_eq!(
        merged["identityProvider"]["oauth2"]["scope"],
        "openid email"
    );
    assert_eq!(
        merged["identityProvider"]["oauth2"]["client_id"],
        "another-client"
    );
    let patched = json_of(
        t.patch(
            &path,
            "application/json-patch+json",
            &json!([{"op": "replace", "path": "/identityProvider/buttonText", "value": "Corporate login"}]),
        ),
        200,
    );
    assert_eq!(patched["identityProvider"]["buttonText"], "Corporate login");
    assert_eq!(
        stored(&t.gw, &id)["oauth2"]["client_secret"],
        "a-new-secret-value"
    );
    // An invalid patch writes nothing.
    let bad = json!([{"op": "remove", "path": "/identityProvider/oauth2/client_id"}]);
    let refused = json_of(t.patch(&path, "application/json-patch+json", &bad), 400);
    assert_codes(&refused, &["[blank]identityProvider.oauth2.client_id"]);
    assert_eq!(stored(&t.gw, &id)["oauth2"]["client_id"], "another-client");

    // The type cannot change, by PUT or PATCH, either way.
    let mut retyped = replacement.clone();
    retyped["identityProvider"]["type"] = json!("ExternalJWT");
    retyped["identityProvider"]["headerKeyParameter"] = json!("kid");
    let refused = json_of(put(&t, &path, &retyped), 400);
    assert_codes(&refused, &["[invalid]identityProvider.type"]);
    let retype = json!({"identityProvider": {"type": "ExternalJWT"}});
    let refused = json_of(t.patch(&path, "application/merge-patch+json", &retype), 400);
    assert_codes(&refused, &["[invalid]identityProvider.type"]);
    let jwt_path = format!("/api/identity-provider/{jwt}");
    let to_oidc = json!({"identityProvider": {"type": "OpenIDConnect"}});
    let refused = json_of(
        t.patch(&jwt_path, "application/merge-patch+json", &to_oidc),
        400,
    );
    assert_codes(&refused, &["[invalid]identityProvider.type"]);
    assert_eq!(stored(&t.gw, &id)["type"], "OpenIDConnect");

    // Delete, then 404.
    assert_eq!(t.delete(&path).status().as_u16(), 200);
    assert_eq!(t.get(&path).status().as_u16(), 404);
    assert_eq!(t.delete(&path).status().as_u16(), 404);

    // No secret ever reached the log.
    let log = t.gw.log();
    for secret in [SECRET, APP_SECRET, "a-new-secret-value"] {
        assert!(!log.contains(secret), "{secret} logged");
    }
}

#[test]
fn oidc_validation_names_every_field_at_once_without_echoing_values() {
    let t = Idp::start();
    let empty = json_of(
        t.post(
            "/api/identity-provider",
            &json!({"identityProvider": {"type": "OpenIDConnect", "keys": {}}}),
        ),
        400,
    );
    assert_codes(
        &empty,
        &[
            "[blank]identityProvider.name",
            "[blank]identityProvider.oauth2.client_id",
            "[missing]identityProvider.oauth2.client_secret",
            "[blank]identityProvider.oauth2.authorization_endpoint",
            "[blank]identityProvider.oauth2.token_endpoint",
            "[blank]identityProvider.oauth2.userinfo_endpoint",
            "[unknown]identityProvider.keys",
        ],
    );
    let mut bad = oidc_document("Bad SSO");
    bad["oauth2"] = json!({"issuer": "https://sso.example.com/?realm=secret-realm-value",
        "client_id": "gatehouse", "clientAuthenticationMethod": "client_secret_post",
        "token_endpoint": "ldap://sso.example.com/token", "emailClaim": 5});
    bad["buttonImageURL"] = json!("data:image/png;base64,AAAA");
    bad["postRequest"] = json!("sometimes");
    bad["linkingStrategy"] = json!("Unsupported");
    bad["domains"] = json!(["ok.example", "not a domain"]);
    bad["lambdaConfiguration"] = json!({"reconcileId": Uuid::new_v4()});
    bad["applicationConfiguration"][APP]["oauth2"] = json!({"client_secret": "********"});
    let app_secret_path =
        format!("identityProvider.applicationConfiguration[{APP}].oauth2.client_secret");
    let text = text_of(
        t.post("/api/identity-provider", &json!({"identityProvider": bad})),
        400,
    );
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_codes(
        &body,
        &[
            "[invalid]identityProvider.oauth2.issuer",
            "[missing]identityProvider.oauth2.client_secret",
            "[invalid]identityProvider.oauth2.token_endpoint",
            "[invalid]identityProvider.oauth2.emailClaim",
            "[invalid]identityProvider.buttonImageURL",
            "[invalid]identityProvider.postRequest",
            "[invalid]identityProvider.linkingStrategy",
            "[invalid]identityProvider.domains[1]",
            "[invalid]identityProvider.lambdaConfiguration.reconcileId",
            &format!("[invalid]{app_secret_path}"),
        ],
    );
    for value in [
        "secret-realm-value",
        "ldap://",
        "data:image",
        "sometimes",
        "not a domain",
    ] {
        assert!(!text.contains(value), "{value} echoed: {text}");
    }

    // The reconcile lambda must be an OpenIDReconcile one; each type keeps its own.
    let lambda = |kind: &str| {
        let body = json!({"lambda": {"name": kind, "type": kind,
            "body": "function reconcile(user, registration, jwt, id_token, tokens) { user.data = {}; }"}});
        let created = json_of(t.post("/api/lambda", &body), 200);
        created["lambda"]["id"].as_str().expect("id").to_string()
    };
    let (oidc_lambda, jwt_lambda) = (lambda("OpenIDReconcile"), lambda("ExternalJWTReconcile"));
    let mut doc = oidc_document("Lambda SSO");
    doc["lambdaConfiguration"] = json!({"reconcileId": jwt_lambda});
    let refused = json_of(
        t.post("/api/identity-provider", &json!({"identityProvider": doc})),
        400,
    );
    assert_codes(
        &refused,
        &["[invalid]identityProvider.lambdaConfiguration.reconcileId"],
    );
    let message = refused["fieldErrors"]["identityProvider.lambdaConfiguration.reconcileId"][0]
        ["message"]
        .as_str()
        .expect("message");
    assert!(message.contains("OpenIDReconcile"), "{message}");
    doc["lambdaConfiguration"] = json!({"reconcileId": oidc_lambda});
    doc["domains"] = json!(["taken.example"]);
    let created = json_of(
        t.post("/api/identity-provider", &json!({"identityProvider": doc})),
        200,
    );
    let oidc_id = created["identityProvider"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let refused = json_of(
        t.post(
            "/api/identity-provider",
            &json!({"identityProvider": {"name": "j", "type": "ExternalJWT", "headerKeyParameter": "kid",
                "lambdaConfiguration": {"reconcileId": oidc_lambda}, "domains": ["TAKEN.example"]}}),
        ),
        400,
    );
    assert_codes(
        &refused,
        &[
            "[invalid]identityProvider.lambdaConfiguration.reconcileId",
            "[duplicate]identityProvider.domains[0]",
        ],
    );
    // A lambda in use cannot be deleted, nor change its type.
    let in_use = json_of(t.delete(&format!("/api/lambda/{oidc_lambda}")), 400);
    assert_eq!(in_use["generalErrors"][0]["code"], "[InUse]", "{in_use}");
    let retype = json!({"lambda": {"type": "ExternalJWTReconcile"}});
    let refused = json_of(
        t.patch(
            &format!("/api/lambda/{oidc_lambda}"),
            "application/merge-patch+json",
            &retype,
        ),
        400,
    );
    assert_codes(&refused, &["[invalid]lambda.type"]);

    // The Link API links users to OpenIDConnect providers too.
    let user = t.gw.login("ann@example.com", &[]).user_id;
    let link = json!({"identityProviderLink": {"identityProviderId": oidc_id,
        "identityProviderUserId": "sso-ann", "userId": user}});
    let created = json_of(t.post("/api/identity-provider/link", &link), 200);
    assert_eq!(
        created["identityProviderLink"]["identityProviderType"],
        "OpenIDConnect"
    );
}

#[test]
fn oidc_login_requests_name_what_they_lack() {
    let t = Idp::start();
    let body = json!({"identityProvider": oidc_document("Corporate SSO")});
    let created = json_of(t.post("/api/identity-provider", &body), 200);
    let id = created["identityProvider"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let post = |path: &str, body: Value| {
        t.http
            .post(t.gw.url(path))
            .json(&body)
            .send()
            .expect("send")
    };
    // An OpenIDConnect login takes an authorization code, not a JWT, on both endpoints.
    for path in ["/api/identity-provider/login", "/api/jwt/reconcile"] {
        let body = json_of(
            post(
                path,
                json!({"applicationId": APP, "identityProviderId": id, "encodedJWT": "a.b.c",
                       "data": {"token": "a.b.c"}}),
            ),
            400,
        );
        assert_codes(&body, &["[blank]data.code", "[blank]data.redirect_uri"]);
    }
    // A request that is wrong in other ways still names its own problems.
    let body = json_of(
        post(
            "/api/identity-provider/login",
            json!({"identityProviderId": Uuid::new_v4(), "data": {"code": "x"}}),
        ),
        400,
    );
    assert_codes(&body, &["[blank]applicationId", "[blank]encodedJWT"]);
    // Nothing was created by the refused logins.
    let users = t.get("/api/user?email=ann@example.com").status().as_u16();
    assert_eq!(users, 404);
}

/// A provider declared in the configuration, with its secret from the environment.
fn declared(secret: &str) -> String {
    format!(
        r#"identityProviders:
  - id: 1b9c2b0e-8d4f-4e3a-9c1b-2a3b4c5d6e7f
    type: OpenIDConnect
    name: Corporate SSO
    buttonText: Log in with Corporate SSO
    enabled: true
    oauth2: {{issuer: https://sso.example.com, client_id: gatehouse, client_secret: "{secret}",
             clientAuthenticationMethod: client_secret_basic, scope: openid email profile offline_access,
             emailClaim: email, uniqueIdClaim: sub}}
    linkingStrategy: LinkByEmail
    applicationConfiguration: {{{APP}: {{enabled: true, createRegistration: true}}}}
"#
    )
}

#[test]
fn declared_oidc_providers_are_stored_and_listed() {
    // `${VAR:-default}` substitution: the variable is unset, so the default is the secret.
    let default_secret = "declared-secret-from-the-default";
    let secret = format!("${{GATEHOUSE_TEST_UNSET_OIDC_SECRET:-{default_secret}}}");
    let options = Options {
        extra: declared(&secret),
        ..Options::default()
    };
    let t = Idp {
        gw: TestGateway::start_with(options),
        http: client(),
    };
    let id = "1b9c2b0e-8d4f-4e3a-9c1b-2a3b4c5d6e7f";
    let listed = check_status(t.get("/api/identity-provider?type=OpenIDConnect"), 200);
    let provider = &listed["identityProviders"][0];
    assert_eq!(provider["id"], id, "{listed}");
    assert_eq!(provider["oauth2"]["client_secret"], "********");
    assert_eq!(provider["postRequest"], false);
    assert_eq!(stored(&t.gw, id)["oauth2"]["client_secret"], default_secret);
    assert!(!t.gw.log().contains(default_secret));
    // Its logins take a code and a redirect URI.
    let body = check_status(
        t.http
            .post(t.gw.url("/api/identity-provider/login"))
            .json(&json!({"applicationId": APP, "identityProviderId": id, "data": {"code": "c"}}))
            .send()
            .expect("send"),
        400,
    );
    assert_codes(&body, &["[blank]data.redirect_uri"]);
}

/// The 1-based number of the first line of `text` that starts with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with {prefix:?}"))
        + 1
}

#[test]
fn check_reports_a_bad_oidc_declaration_with_path_and_line() {
    let gw = TestGateway::start();
    let secret = "env-secret-of-the-declared-provider";
    let bad = r#"  - id: 2c9c2b0e-8d4f-4e3a-9c1b-2a3b4c5d6e7f
    type: OpenIDConnect
    name: Broken SSO
    oauth2:
      issuer: sso.example.com/?tenant=1
      client_id: gatehouse
      clientAuthenticationMethod: client_secret_post
    linkingStrategy: LinkBySomething
"#;
    let text = gw.config_text(&Options {
        extra: format!("{}{bad}", declared("${SSO_SECRET}")),
        ..Options::default()
    });
    let path = gw.dir.path().join("oidc.yaml");
    std::fs::write(&path, &text).expect("write");
    let check = |secret: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        command.args(["check", "--config", path.to_str().expect("utf-8")]);
        match secret {
            Some(s) => command.env("SSO_SECRET", s),
            None => command.env_remove("SSO_SECRET"),
        };
        let output = command.output().expect("run gatehouse check");
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), out, err)
    };
    let (code, out, err) = check(Some(secret));
    assert_eq!(code, Some(1), "{out}{err}");
    let expect = |field: &str, line: usize| {
        let wanted = format!("identityProviders[1].{field}: ");
        let found = err.lines().find(|l| l.contains(&wanted));
        let found = found.unwrap_or_else(|| panic!("{wanted} missing: {err}"));
        assert!(found.contains(&format!("(line {line}, column")), "{found}");
    };
    expect(
        "oauth2.issuer",
        line_of(&text, "      issuer: sso.example.com"),
    );
    let block_oauth2 = text
        .lines()
        .position(|l| l == "    oauth2:")
        .expect("oauth2 line")
        + 1;
    expect("oauth2.client_secret", block_oauth2);
    expect(
        "linkingStrategy",
        line_of(&text, "    linkingStrategy: LinkBySomething"),
    );
    assert!(
        !err.contains("identityProviders[0]"),
        "the first one is valid: {err}"
    );
    for leaked in [secret, "tenant=1", "LinkBySomething"] {
        assert!(
            !err.contains(leaked) && !out.contains(leaked),
            "{leaked}: {err}"
        );
    }
    // The secret comes from the environment: unset, the file is refused for that too.
    let (code, _, err) = check(None);
    assert_eq!(code, Some(1));
    assert!(err.contains("SSO_SECRET is not set"), "{err}");
}

/// `buttonText` defaults to the provider's `name` (FusionAuth requires it; the config contract's
/// example leaves it out), and one sent is kept.
#[test]
fn a_missing_button_text_is_the_providers_name() {
    let t = Idp::start();
    let mut document = oidc_document("Corporate SSO");
    document
        .as_object_mut()
        .expect("object")
        .remove("buttonText");
    let created = json_of(
        t.post(
            "/api/identity-provider",
            &json!({"identityProvider": document}),
        ),
        200,
    );
    assert_eq!(created["identityProvider"]["buttonText"], "Corporate SSO");
    let created = json_of(
        t.post(
            "/api/identity-provider",
            &json!({"identityProvider": oidc_document("Other SSO")}),
        ),
        200,
    );
    assert_eq!(created["identityProvider"]["buttonText"], "Log in with SSO");
}

/// A PATCH applies to the provider as answers show it, every secret redacted: a new
/// `client_id` (the provider's or an application's) needs its secret in every format; a
/// `null` (or a JSON Patch `remove`) removes the stored secret; no `test` can probe a secret,
/// and no `copy` can put one where an answer shows it. Nothing is written by a refused PATCH.
#[test]
fn a_patch_sees_secrets_redacted_so_a_new_client_id_needs_its_secret_and_null_removes_it() {
    let t = Idp::start();
    let body = json!({"identityProvider": oidc_document("Patched SSO")});
    let created = json_of(t.post("/api/identity-provider", &body), 200)["identityProvider"].clone();
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("/api/identity-provider/{id}");
    let before = stored(&t.gw, &id);
    let app_pointer = format!("/identityProvider/applicationConfiguration/{APP}/oauth2/client_id");
    let new_client_id = [
        (
            "application/json",
            json!({"identityProvider": {"oauth2": {"client_id": "client-two"}}}),
        ),
        (
            "application/merge-patch+json",
            json!({"identityProvider": {"oauth2": {"client_id": "client-two"}}}),
        ),
        (
            "application/json-patch+json",
            json!([{"op": "replace", "path": "/identityProvider/oauth2/client_id", "value": "client-two"}]),
        ),
        (
            "application/json",
            json!({"identityProvider": {"applicationConfiguration": {APP: {"oauth2": {"client_id": "ac2"}}}}}),
        ),
        (
            "application/json-patch+json",
            json!([{"op": "replace", "path": app_pointer, "value": "ac2"}]),
        ),
        // Another spelling is another client id: the secret is not carried over either.
        (
            "application/merge-patch+json",
            json!({"identityProvider": {"oauth2": {"client_id": "gatehouse "}}}),
        ),
        (
            "application/json",
            json!({"identityProvider": {"applicationConfiguration": {APP: {"oauth2": {"client_id": "\tapp-client"}}}}}),
        ),
    ];
    for (content_type, patch) in &new_client_id {
        let refused = json_of(t.patch(&path, content_type, patch), 400);
        let codes = field_codes(&refused);
        assert!(
            codes.iter().any(|c| c.ends_with("oauth2.client_secret")),
            "{content_type} {patch}: {refused}"
        );
        assert_eq!(stored(&t.gw, &id), before, "{content_type} {patch}");
    }
    // A client id with a control character is refused, with its secret or not.
    let control =
        json!({"identityProvider": {"oauth2": {"client_id": "gate\nhouse", "client_secret": "s"}}});
    let refused = json_of(t.patch(&path, "application/json", &control), 400);
    assert_codes(&refused, &["[invalid]identityProvider.oauth2.client_id"]);
    assert_eq!(stored(&t.gw, &id), before);
    // A secret can be neither probed nor copied out.
    let probe =
        json!([{"op": "test", "path": "/identityProvider/oauth2/client_secret", "value": SECRET}]);
    json_of(t.patch(&path, "application/json-patch+json", &probe), 400);
    let copy = json!([{"op": "copy", "from": "/identityProvider/oauth2/client_secret", "path": "/identityProvider/buttonText"},
                      {"op": "copy", "from": format!("/identityProvider/applicationConfiguration/{APP}/oauth2/client_secret"),
                       "path": "/identityProvider/name"}]);
    let copied = json_of(t.patch(&path, "application/json-patch+json", &copy), 200);
    assert_eq!(copied["identityProvider"]["buttonText"], "********");
    let now = stored(&t.gw, &id);
    assert_eq!(now["buttonText"], "********");
    assert_eq!(
        now["oauth2"]["client_secret"], SECRET,
        "the secret itself is kept"
    );
    // A new client id with its secret is taken.
    let both = json!({"identityProvider": {"oauth2": {"client_id": "client-two", "client_secret": "secret-of-client-two"}}});
    json_of(t.patch(&path, "application/json", &both), 200);
    assert_eq!(
        stored(&t.gw, &id)["oauth2"]["client_secret"],
        "secret-of-client-two"
    );
    // `null` removes the secret, in every format: a method that needs one is then refused.
    let removals = [
        (
            "application/json",
            json!({"identityProvider": {"oauth2": {"client_secret": null, "clientAuthenticationMethod": "none"}}}),
        ),
        (
            "application/merge-patch+json",
            json!({"identityProvider": {"oauth2": {"client_secret": null, "clientAuthenticationMethod": "none"}}}),
        ),
        (
            "application/json-patch+json",
            json!([{"op": "remove", "path": "/identityProvider/oauth2/client_secret"},
                                               {"op": "replace", "path": "/identityProvider/oauth2/clientAuthenticationMethod", "value": "none"}]),
        ),
    ];
    for (content_type, patch) in &removals {
        let restore = json!({"identityProvider": {"oauth2": {"client_secret": "secret-of-client-two",
                                                             "clientAuthenticationMethod": "client_secret_basic"}}});
        json_of(t.patch(&path, "application/json", &restore), 200);
        json_of(t.patch(&path, content_type, patch), 200);
        let removed = stored(&t.gw, &id);
        assert!(
            removed["oauth2"].get("client_secret").is_none(),
            "{content_type}: {removed}"
        );
        let basic = json!({"identityProvider": {"oauth2": {"clientAuthenticationMethod": "client_secret_basic"}}});
        let refused = json_of(t.patch(&path, "application/json", &basic), 400);
        assert_codes(
            &refused,
            &["[missing]identityProvider.oauth2.client_secret"],
        );
    }
    // An application's secret: `null` removes its own (logins then use the provider's).
    let app_null = json!({"identityProvider": {"applicationConfiguration": {APP: {"oauth2": {"client_secret": null}}}}});
    json_of(
        t.patch(&path, "application/merge-patch+json", &app_null),
        200,
    );
    let removed = stored(&t.gw, &id);
    assert!(
        removed["applicationConfiguration"][APP]["oauth2"]
            .get("client_secret")
            .is_none(),
        "{removed}"
    );
}
