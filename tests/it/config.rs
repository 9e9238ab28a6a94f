//! Configuration errors through the real binary: `check` and `serve` name every path.

use super::kit::*;

#[test]
fn check_accepts_the_shipped_config() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, stdout, stderr) = run_cli(&["check", "--config", "config.yaml"], repo);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok"));
}

#[test]
fn check_and_serve_report_every_problem_with_its_path() {
    let gw = TestGateway::start();
    let text = gw.config_text(&Options::default());
    let broken = text
        .replace(
            &format!("auth: {{applicationId: {APP}, roles: [admin]"),
            "auth: {applicationId: 99999999-9999-4999-8999-999999999999, roles: [admin]",
        )
        .replace("threads: 2", "threads: 0");
    let path = gw.dir.path().join("broken.yaml");
    std::fs::write(&path, broken).expect("write");
    let (code, _, stderr) = run_cli(
        &["check", "--config", path.to_str().expect("path")],
        gw.dir.path(),
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("routes[1].auth.applicationId: no application with this id"),
        "{stderr}"
    );
    assert!(
        stderr.contains("threads: must be between 1 and 1024"),
        "{stderr}"
    );
    let (code, _, stderr) = run_cli(
        &["serve", "--config", path.to_str().expect("path")],
        gw.dir.path(),
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("routes[1].auth.applicationId"), "{stderr}");
}

#[test]
fn unknown_keys_and_unset_variables_are_reported() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "listen: 127.0.0.1:1\nroutes:\n  - path: /\n    upstream: http://127.0.0.1:2\n    auth: {requierd: true}\n").expect("write");
    let (code, _, stderr) = run_cli(
        &["check", "--config", path.to_str().expect("p")],
        dir.path(),
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("routes[0].auth"), "{stderr}");
    assert!(stderr.contains("requierd"), "{stderr}");

    std::fs::write(
        &path,
        "listen: 127.0.0.1:1\napiKeys:\n  - key: ${GATEHOUSE_TEST_UNSET_VARIABLE}\n",
    )
    .expect("write");
    let (code, _, stderr) = run_cli(
        &["check", "--config", path.to_str().expect("p")],
        dir.path(),
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("GATEHOUSE_TEST_UNSET_VARIABLE is not set"),
        "{stderr}"
    );
}

#[test]
fn secrets_never_appear_in_messages() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:1\nkeys:\n  - {id: 11111111-1111-4111-8111-111111111111, algorithm: HS256, secret: tooshort-s3cr3t}\n",
    )
    .expect("write");
    let (code, stdout, stderr) = run_cli(
        &["check", "--config", path.to_str().expect("p")],
        dir.path(),
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("keys[0].secret: must be at least 32 bytes"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cr3t") && !stdout.contains("s3cr3t"),
        "{stderr}"
    );
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        format!("listen: 127.0.0.1:{port}\nstore: sqlite://g.db\n"),
    )
    .expect("write");
    let (code, _, stderr) = run_cli(
        &["serve", "--config", path.to_str().expect("p")],
        dir.path(),
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

#[test]
fn check_reports_unknown_keys_wrong_types_and_meaning_in_one_run() {
    let gw = TestGateway::start();
    let text = gw.config_text(&Options::default());
    let broken = text
        .replace(
            &format!("auth: {{applicationId: {APP}}}"),
            "auth: {applicationId: 99999999-9999-4999-8999-999999999999}",
        )
        .replace("  - path: /admin\n", "  - path: /admin\n    bogus: 1\n")
        .replace("threads: 2", "threads: many\nunknownTop: 3");
    let path = gw.dir.path().join("broken.yaml");
    std::fs::write(&path, broken).expect("write");
    let (code, _, stderr) = run_cli(
        &["check", "--config", path.to_str().expect("path")],
        gw.dir.path(),
    );
    assert_ne!(code, 0);
    for expected in [
        "routes[1].bogus: unknown field",
        "unknownTop: unknown field",
        "threads: invalid type",
        "routes[0].auth.applicationId: no application with this id",
    ] {
        assert!(stderr.contains(expected), "{expected} missing:\n{stderr}");
    }
    assert!(
        stderr.contains("(line "),
        "the first problem has its position:\n{stderr}"
    );
    assert!(!stderr.contains("many"), "{stderr}");
}
