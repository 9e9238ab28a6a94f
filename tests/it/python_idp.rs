//! FusionAuth's official Python client (`fusionauth-client` 1.69.0) against the real binary for
//! the identity-provider API: `tests/python/identity_provider_client.py` creates, patches,
//! updates, looks up and deletes providers, logs in with `identity_provider_login` and
//! `reconcile_jwt`, and drives the link, user, lambda and event-log calls. The venv is
//! `target/pyenv`, made by `scripts/bootstrap` when missing (never skipped).

use std::path::Path;
use std::process::Command;

use super::kit::*;

#[test]
fn the_official_python_client_drives_the_identity_provider_api() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = fusionauth_python();
    let gw = TestGateway::start();
    let output = Command::new(&python)
        .arg(repo.join("tests/python/identity_provider_client.py"))
        .env("GATEHOUSE_URL", gw.url(""))
        .env("GATEHOUSE_API_KEY", API_KEY)
        .env("GATEHOUSE_APP_ID", APP)
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python client failed ({}):\n{stdout}\n{stderr}\n--- gateway log ---\n{}",
        output.status,
        gw.log()
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
