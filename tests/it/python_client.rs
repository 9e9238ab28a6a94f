//! FusionAuth's official Python client (`fusionauth-client` 1.69.0) against the real binary:
//! `tests/python/jwt_client.py` calls every JWT API operation the client has and checks status
//! codes and response fields. `tests/python/es512.py` checks ES512 tokens both ways with PyJWT,
//! an independent JOSE implementation. The venv is `target/pyenv`, made by `scripts/bootstrap`
//! when missing.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::*;

#[test]
fn the_official_python_client_drives_the_jwt_api() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = fusionauth_python();
    let gw = TestGateway::start();

    let sessions = Value::Object(jwt_client_sessions(&gw, "py"));
    let output = Command::new(&python)
        .arg(repo.join("tests/python/jwt_client.py"))
        .current_dir(repo)
        .envs(jwt_client_env(&gw, &sessions))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run the Python client script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tests/python/jwt_client.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- gateway log (tail)\n{}",
        output.status,
        tail(&gw.log(), 40)
    );
    assert!(
        stdout.contains("all FusionAuth client checks passed"),
        "{stdout}"
    );
}

/// Runs `tests/python/es512.py` with `args` and `envs`; its standard output.
fn es512_script(args: &[&str], envs: &[(&str, String)]) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(fusionauth_python())
        .arg(repo.join("tests/python/es512.py"))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run tests/python/es512.py");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "tests/python/es512.py {args:?} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn es512_tokens_interoperate_with_an_independent_jose_library() {
    // A P-521 key made by Python's cryptography (SEC1 PEM), configured as an ES512 key.
    let private_pem = es512_script(&["genkey"], &[]);
    assert!(
        private_pem.contains("BEGIN EC PRIVATE KEY"),
        "{private_pem}"
    );
    let kid = Uuid::new_v4();
    let gw = TestGateway::start_with_keys(
        Options::default(),
        Keys::generate().with_pem_key(kid, "ES512", &private_pem),
    );
    let http = client();
    let user = Uuid::new_v4();
    let token_claims = |exp: i64| {
        json!({"sub": user, "applicationId": APP, "roles": ["user"], "email": "p521@example.com",
               "iss": ISSUER, "tid": TENANT, "exp": exp, "iat": now()})
    };

    // The gateway signs with it (vend, keyId) ...
    let vended = check_status(
        http.post(gw.url("/api/jwt/vend"))
            .header("Authorization", API_KEY)
            .json(
                &json!({"claims": {"sub": user, "applicationId": APP, "roles": ["user"]},
                          "keyId": kid, "timeToLiveInSeconds": 600}),
            )
            .send()
            .expect("send"),
        200,
    );
    let gateway_token = vended["token"].as_str().expect("token").to_string();
    check_status(gw.get_as("/api/jwt/validate", &gateway_token), 200);
    let through_proxy = check_status(gw.get_as("/p521", &gateway_token), 200);
    assert_eq!(through_proxy["headers"]["x-user-id"], user.to_string());

    // ... PyJWT verifies that token with the JWKS and PEM the gateway serves, and signs one
    // of its own with the same key, which the proxy accepts.
    let stdout = es512_script(
        &["check"],
        &[
            ("GATEHOUSE_URL", gw.url("")),
            ("GATEHOUSE_KID", kid.to_string()),
            ("GATEHOUSE_TOKEN", gateway_token.clone()),
            ("GATEHOUSE_PRIVATE_KEY", private_pem.clone()),
            ("GATEHOUSE_CLAIMS", token_claims(now() + 600).to_string()),
        ],
    );
    assert!(
        stdout.contains("verified the gateway's ES512 token with PyJWT"),
        "{stdout}"
    );
    let python_token = stdout.lines().last().expect("a token").trim().to_string();
    let body = check_status(gw.get_as("/p521", &python_token), 200);
    assert_eq!(body["headers"]["x-user-email"], "p521@example.com");
    assert_eq!(body["headers"]["x-user-roles"], "user");

    // Tampered, expired, or relabelled as another algorithm: refused.
    let parts: Vec<&str> = python_token.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let forged = b64.encode(
        json!({"sub": user, "applicationId": APP, "roles": ["user", "admin"], "iss": ISSUER,
               "tid": TENANT, "exp": now() + 600})
        .to_string(),
    );
    let relabelled = b64.encode(json!({"alg": "ES384", "kid": kid}).to_string());
    let none = b64.encode(json!({"alg": "none", "kid": kid}).to_string());
    let expired = es512_script(
        &["check"],
        &[
            ("GATEHOUSE_URL", gw.url("")),
            ("GATEHOUSE_KID", kid.to_string()),
            ("GATEHOUSE_TOKEN", gateway_token),
            ("GATEHOUSE_PRIVATE_KEY", private_pem),
            ("GATEHOUSE_CLAIMS", token_claims(now() - 60).to_string()),
        ],
    );
    let expired = expired.lines().last().expect("a token").trim().to_string();
    for (name, token) in [
        ("tampered", format!("{}.{forged}.{}", parts[0], parts[2])),
        (
            "relabelled",
            format!("{relabelled}.{}.{}", parts[1], parts[2]),
        ),
        ("alg none", format!("{none}.{}.", parts[1])),
        ("expired", expired),
    ] {
        let response = gw.get_as("/p521", &token);
        assert_eq!(response.status().as_u16(), 401, "{name}");
    }
}
