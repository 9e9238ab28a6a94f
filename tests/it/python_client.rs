//! FusionAuth's official Python client (`fusionauth-client` 1.69.0) against the real binary:
//! `tests/python/jwt_client.py` calls every JWT API operation the client has and checks status
//! codes and response fields. The venv is `target/pyenv`, made by `scripts/bootstrap` when
//! missing.

use std::path::Path;
use std::process::Command;

use jsonwebtoken::Algorithm;
use serde_json::json;

use super::kit::*;

fn session_json(session: &Session) -> serde_json::Value {
    json!({
        "token": session.token,
        "refreshToken": session.refresh_token,
        "refreshTokenId": session.refresh_token_id,
        "userId": session.user_id,
    })
}

#[test]
fn the_official_python_client_drives_the_jwt_api() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = fusionauth_python();
    let gw = TestGateway::start();

    let main = gw.login("py-main@example.com", &["user", "admin"]);
    let second = gw.login("py-main@example.com", &[]);
    let sso = gw.login("py-sso@example.com", &[]);
    let sso_other = gw.login_to(OTHER_APP, "py-sso@example.com", &[]);
    let sessions = json!({
        "main": session_json(&main),
        "second": session_json(&second),
        "sso": session_json(&sso),
        "sso_other": session_json(&sso_other),
        "carol": session_json(&gw.login("py-carol@example.com", &[])),
        "dave": session_json(&gw.login("py-dave@example.com", &[])),
        "erin": session_json(&gw.login("py-erin@example.com", &[])),
        "frank": session_json(&gw.login("py-frank@example.com", &[])),
    });

    let output = Command::new(&python)
        .arg(repo.join("tests/python/jwt_client.py"))
        .current_dir(repo)
        .env("GATEHOUSE_URL", gw.url(""))
        .env("GATEHOUSE_API_KEY", API_KEY)
        .env("GATEHOUSE_TENANT_API_KEY", TENANT_API_KEY)
        .env("GATEHOUSE_TENANT_ID", TENANT)
        .env("GATEHOUSE_OTHER_TENANT_ID", OTHER_TENANT)
        .env("GATEHOUSE_APP_ID", APP)
        .env("GATEHOUSE_OTHER_APP_ID", OTHER_APP)
        .env("GATEHOUSE_ISSUER", ISSUER)
        .env(
            "GATEHOUSE_RSA_KID",
            gw.keys.get(Algorithm::RS256).0.to_string(),
        )
        .env(
            "GATEHOUSE_HMAC_KID",
            gw.keys.get(Algorithm::HS256).0.to_string(),
        )
        .env("GATEHOUSE_SESSIONS", sessions.to_string())
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

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
