//! FusionAuth's official npm client (`@fusionauth/typescript-client` 1.69.0) against the real
//! binary, the same coverage as the Python client's tests (`python_client.rs`, `python_idp.rs`):
//! `tests/node/jwt_client.mjs` calls every JWT API operation the client has and checks status
//! codes, response fields and cookies; `tests/node/identity_provider_client.mjs` creates,
//! patches, updates, searches, looks up and deletes providers, logs in with
//! `identityProviderLogin` and `reconcileJWT`, and drives the link, user, lambda and event-log
//! calls. Both also check the call shapes only this client produces: it sends every parameter
//! it was given, so an optional argument left out or passed as `null` arrives as `name=undefined`
//! or `name=null` (e.g. `revokeRefreshToken(token)` sends
//! `?token=T&userId=undefined&applicationId=undefined`), and a FusionAuth user expects the call
//! to behave as if the argument were not given. The package is installed in
//! `target/node-clients` by `scripts/bootstrap --tests` when missing (never skipped); the
//! scripts print every failed check with the request the client sent and the gateway's answer.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use super::kit::*;

/// Runs `node tests/node/{script}` with `envs` (after [`node_clients`] has installed the client).
fn node_script(script: &str, envs: &[(&str, String)]) -> Output {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new("node")
        .arg(repo.join("tests/node").join(script))
        .current_dir(repo)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("run node tests/node/{script}: {e}"))
}

#[test]
fn the_official_typescript_client_drives_the_jwt_api() {
    node_clients();
    let gw = TestGateway::start();

    // The Python test's sessions, and one user per TS-client call shape
    // (tests/node/jwt_client.mjs, "TS-client call shapes"): two sessions of one user, users in
    // both applications, a bystander.
    let mut sessions = jwt_client_sessions(&gw, "node");
    let mut add = |name: &str, session: Session| {
        sessions.insert(name.to_string(), session_json(&session));
    };
    add("ts_one", gw.login("node-ts-one@example.com", &[]));
    add("ts_one_b", gw.login("node-ts-one@example.com", &[]));
    add("ts_user", gw.login("node-ts-user@example.com", &[]));
    let ts_user_other = gw.login_to(OTHER_APP, "node-ts-user@example.com", &[]);
    add("ts_user_other", ts_user_other);
    let undefined = gw.login("node-ts-user-undefined@example.com", &[]);
    add("ts_user_undefined", undefined);
    add("ts_user_app", gw.login("node-ts-user-app@example.com", &[]));
    let app_other = gw.login_to(OTHER_APP, "node-ts-user-app@example.com", &[]);
    add("ts_user_app_other", app_other);
    add(
        "ts_bystander",
        gw.login("node-ts-bystander@example.com", &[]),
    );
    add("ts_issue", gw.login("node-ts-issue@example.com", &[]));
    gw.login_to(OTHER_APP, "node-ts-issue@example.com", &[]);

    let env = jwt_client_env(&gw, &Value::Object(sessions));
    let output = node_script("jwt_client.mjs", &env);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tests/node/jwt_client.mjs failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- gateway log (tail)\n{}",
        output.status,
        tail(&gw.log(), 40)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[test]
fn the_official_typescript_client_drives_the_identity_provider_api() {
    node_clients();
    let gw = TestGateway::start();
    let output = node_script(
        "identity_provider_client.mjs",
        &[
            ("GATEHOUSE_URL", gw.url("")),
            ("GATEHOUSE_API_KEY", API_KEY.into()),
            ("GATEHOUSE_APP_ID", APP.into()),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the TypeScript client failed ({}):\n{stdout}\n{stderr}\n--- gateway log ---\n{}",
        output.status,
        gw.log()
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
