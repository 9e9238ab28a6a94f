//! What the REST API may write into the store's indexed columns, through the binary, on
//! SQLite and PostgreSQL alike: an email, username or provider user id longer than the shared
//! limits (`gatehouse_plugin_api::indexed`) is refused before anything is written — an
//! External JWT naming one is a 401 `[InvalidJWT]`, a reconcile lambda setting one and the Link
//! API given one are a 400 naming the field — while values at the limits are kept and found;
//! and a query parameter holding a control character (a NUL above all, which PostgreSQL cannot
//! compare) is a 400 naming the parameter on both stores.

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use uuid::Uuid;

use super::identity_provider::{ext_claims, ExternalKey, Idp};
use super::kit::*;

/// A lambda copying `set_email` and `set_username` from the JWT into the user.
const SETTING_LAMBDA: &str = "function reconcile(user, registration, jwt) {\n  \
    if (jwt.set_email) { user.email = jwt.set_email; }\n  \
    if (jwt.set_username) { user.username = jwt.set_username; }\n}";

/// `bytes` bytes of hex digits no compression shrinks much (PostgreSQL compresses long index
/// entries, so repeated text would pass where real text fails).
fn random_text(bytes: usize) -> String {
    let mut text = String::new();
    while text.len() < bytes {
        text.push_str(&Uuid::new_v4().simple().to_string());
    }
    text.truncate(bytes);
    text
}

/// The harness on a gateway with `store_url` (SQLite when `None`).
fn gateway(store_url: Option<String>) -> Idp {
    Idp {
        gw: TestGateway::start_with(Options {
            store_url,
            ..Default::default()
        }),
        http: client(),
    }
}

/// The one field error of a 400 body, as `code`.
fn field_code(body: &Value) -> String {
    let fields = body["fieldErrors"].as_object().cloned().unwrap_or_default();
    assert_eq!(fields.len(), 1, "{body}");
    let items = fields.values().next().cloned().unwrap_or_default();
    items[0]["code"].as_str().unwrap_or_default().to_string()
}

/// `GET /api/identity-provider/link` of `sub` at `idp`: the status.
fn link_status(t: &Idp, idp: Uuid, sub: &str) -> u16 {
    t.http
        .get(t.gw.url("/api/identity-provider/link"))
        .query(&[
            ("identityProviderId", idp.to_string()),
            ("identityProviderUserId", sub.to_string()),
        ])
        .header("Authorization", API_KEY)
        .send()
        .expect("send")
        .status()
        .as_u16()
}

/// `GET /api/user?{name}={value}`: the status.
fn user_status(t: &Idp, name: &str, value: &str) -> u16 {
    t.http
        .get(t.gw.url("/api/user"))
        .query(&[(name, value)])
        .header("Authorization", API_KEY)
        .send()
        .expect("send")
        .status()
        .as_u16()
}

fn long_identities_are_refused_before_anything_is_written(t: &Idp) {
    let key = ExternalKey::generate(Algorithm::HS256);
    let lambda = check_status(
        t.post(
            "/api/lambda",
            &json!({"lambda": {"name": "set", "type": "ExternalJWTReconcile", "body": SETTING_LAMBDA}}),
        ),
        200,
    );
    let idp = t.provider(json!({
        "keys": {"k": key.verifying}, "linkingStrategy": "LinkByEmail",
        "lambdaConfiguration": {"reconcileId": lambda["lambda"]["id"]},
    }));
    let login = |sub: &str, email: &str, extra: Value| {
        let token = key.sign(Some("k"), None, &ext_claims(sub, Some(email), extra));
        t.login(idp, &token, json!({}))
    };

    // At the limits: kept and found, on every store.
    let (sub, email) = (
        random_text(1024),
        format!("{}@{}", random_text(64), random_text(255)),
    );
    let username = random_text(1024);
    let body = check_status(login(&sub, &email, json!({"set_username": username})), 200);
    assert_eq!(body["user"]["username"], json!(username));
    assert_eq!(link_status(t, idp, &sub), 200);
    assert_eq!(user_status(t, "email", &email), 200);
    assert_eq!(user_status(t, "username", &username), 200);

    // An identity claim over its limit: the token is refused, naming the claim.
    for (sub, email, claim) in [
        (random_text(3000), "a@example.com".to_string(), "sub"),
        (random_text(1025), "a@example.com".to_string(), "sub"),
        (
            "ext-1".into(),
            format!("{}@{}", random_text(65), random_text(255)),
            "email",
        ),
        (
            "ext-2".into(),
            format!("{}@example.com", random_text(3000)),
            "email",
        ),
    ] {
        let body = check_status(login(&sub, &email, json!({})), 401);
        assert_eq!(body["generalErrors"][0]["code"], "[InvalidJWT]", "{body}");
        let message = body["generalErrors"][0]["message"].as_str().unwrap_or("");
        assert!(message.contains(&format!("[{claim}]")), "{message}");
        assert_eq!(link_status(t, idp, &sub), 404);
        assert_eq!(user_status(t, "email", &email), 404);
    }

    // A lambda setting one: a 400 naming the field, nothing written.
    for (extra, field) in [
        (
            json!({"set_email": format!("{}@example.com", random_text(3000))}),
            "user.email",
        ),
        (json!({"set_username": random_text(1025)}), "user.username"),
    ] {
        let body = check_status(login("ext-3", "b@example.com", extra), 400);
        assert_eq!(field_code(&body), format!("[tooLong]{field}"), "{body}");
        assert_eq!(link_status(t, idp, "ext-3"), 404);
        assert_eq!(user_status(t, "email", "b@example.com"), 404);
    }

    // The Link API: a 400 naming the field, no link; a lookup of such an id finds nothing.
    let user_id = body["user"]["id"].as_str().expect("user id").to_string();
    for long in [random_text(1025), random_text(3000), random_text(9000)] {
        let link = json!({"identityProviderLink": {
            "identityProviderId": idp, "identityProviderUserId": long, "userId": user_id,
        }});
        let body = check_status(t.post("/api/identity-provider/link", &link), 400);
        assert_eq!(
            field_code(&body),
            "[tooLong]identityProviderLink.identityProviderUserId",
            "{body}"
        );
        // (A 9000-byte id does not fit in a request line: 431.)
        if long.len() <= 3000 {
            assert_eq!(link_status(t, idp, &long), 404);
        }
    }
    let links = check_status(
        t.get(&format!("/api/identity-provider/link?userId={user_id}")),
        200,
    );
    assert_eq!(
        links["identityProviderLinks"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn long_identities_are_refused_before_anything_is_written_on_sqlite() {
    long_identities_are_refused_before_anything_is_written(&gateway(None));
}

#[test]
fn long_identities_are_refused_before_anything_is_written_on_postgres() {
    let db = super::postgres::Database::create();
    long_identities_are_refused_before_anything_is_written(&gateway(Some(db.url.clone())));
}

fn control_characters_in_parameters_are_a_400_naming_them(t: &Idp) {
    let (idp, user) = (Uuid::new_v4(), Uuid::new_v4());
    let link = format!("identityProviderId={idp}&userId={user}");
    for (method, path, name) in [
        ("GET", "/api/user?email=a%00b".to_string(), "email"),
        ("GET", "/api/user?username=a%00b".into(), "username"),
        ("GET", "/api/user?loginId=a%00b".into(), "loginId"),
        ("GET", "/api/user?email=a%0Ab%40example.com".into(), "email"),
        (
            "GET",
            format!("/api/identity-provider/link?{link}&identityProviderUserId=a%00b"),
            "identityProviderUserId",
        ),
        (
            "DELETE",
            format!("/api/identity-provider/link?{link}&identityProviderUserId=a%00b"),
            "identityProviderUserId",
        ),
        ("DELETE", "/api/jwt/refresh?token=a%00b".into(), "token"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = t
            .http
            .request(method, t.gw.url(&path))
            .header("Authorization", API_KEY)
            .send()
            .expect("send");
        let body = check_status(response, 400);
        assert_eq!(
            field_code(&body),
            format!("[invalid]{name}"),
            "{path}: {body}"
        );
    }
    // The same lookups without the control character answer as before.
    assert_eq!(user_status(t, "email", "ab@example.com"), 404);
    assert_eq!(user_status(t, "username", "ab"), 404);
    assert_eq!(user_status(t, "loginId", "ab"), 404);
    assert_eq!(user_status(t, "email", &random_text(3000)), 404);
    let log = t.gw.log();
    assert!(
        !log.contains("InternalError") && !log.contains("0x00"),
        "{log}"
    );
}

#[test]
fn control_characters_in_parameters_are_a_400_naming_them_on_sqlite() {
    control_characters_in_parameters_are_a_400_naming_them(&gateway(None));
}

#[test]
fn control_characters_in_parameters_are_a_400_naming_them_on_postgres() {
    let db = super::postgres::Database::create();
    control_characters_in_parameters_are_a_400_naming_them(&gateway(Some(db.url.clone())));
}
