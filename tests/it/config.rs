//! Configuration errors through the real binary: `check` and `serve` name every path.

use super::kit::*;

#[test]
fn check_accepts_the_shipped_config() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, stdout, stderr) = run_cli(&["check", "--config", "config.yaml"], repo);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok"));
    // The shipped issuer is a URL: no warning about it.
    assert!(!stderr.contains("issuer"), "{stderr}");
}

#[test]
fn check_warns_about_an_issuer_that_is_not_a_url() {
    let gw = TestGateway::start();
    // The test tenants' issuers are `acme.test` and `other.test`.
    let (code, stdout, stderr) = run_cli(
        &["check", "--config", gw.config_path.to_str().expect("utf-8")],
        gw.dir.path(),
    );
    assert_eq!(code, 0, "a warning, not an error: {stdout}{stderr}");
    assert!(
        stderr.contains("warning: tenants[0].issuer: is not an http(s) URL"),
        "{stderr}"
    );
    assert!(stderr.contains("warning: tenants[1].issuer:"), "{stderr}");
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

#[test]
fn check_gives_syntax_errors_their_position_and_every_message_plain_words() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.yaml");
    let check = |text: &str| {
        std::fs::write(&path, text).expect("write");
        let (code, _, stderr) = run_cli(
            &["check", "--config", path.to_str().expect("p")],
            dir.path(),
        );
        assert_ne!(code, 0, "{text}");
        // The header line, then one line per problem.
        stderr
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let lines = check("listen: 127.0.0.1:1\nroutes:\n  - path: /\n   upstream: x\n");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("YAML syntax error"), "{lines:?}");
    assert!(lines[0].contains("(line 4, column 4)"), "{lines:?}");

    let lines = check("listen: 18081\n");
    assert_eq!(
        lines,
        vec!["  listen: invalid type: expected an address such as 127.0.0.1:9011, found a whole number (line 1, column 1)"]
    );

    let lines = check(
        "listen: 127.0.0.1:1\nthreads: x\nshutdownTimeoutSeconds: -1\nlimits: {maxBodyBytes: 1.5}\n\
         log: [1]\ncookies: {secure: 3}\nkeys:\n  - {id: x, algorithm: 5}\n\
         tenants: [{id: 1, name: [a], issuer: b}]\nroutes: [3, {path: 4, upstream: 5}]\n",
    );
    let text = lines.join("\n");
    for expected in [
        "threads: invalid type: expected a whole number, 0 or more, found text (line 2",
        "shutdownTimeoutSeconds: invalid value: expected a whole number, 0 or more (line 3",
        "limits.maxBodyBytes: invalid type: expected a whole number, 0 or more, found a number with a fraction",
        "log: invalid type: expected a mapping, found a list",
        "cookies.secure: invalid type: expected true or false, found a whole number",
        "keys[0].id: invalid value: expected a UUID such as",
        "keys[0].algorithm: invalid type: expected text, found a whole number",
        "tenants[0].id: invalid type: expected a UUID such as",
        "tenants[0].name: invalid type: expected text, found a list",
        "routes[0]: invalid type: expected a mapping, found a whole number",
        "routes[1].path: invalid type: expected text, found a whole number",
        "routes[1].upstream: invalid type: expected a URL such as http://127.0.0.1:9012",
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
    for jargon in [
        "usize",
        "u64",
        "i64",
        "struct",
        "enum",
        "Raw",
        "missing field",
        "sequence",
        "floating",
    ] {
        assert!(!text.contains(jargon), "{jargon}:\n{text}");
    }
    // Each path once.
    let mut paths: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.trim().split(": ").next())
        .collect();
    let all = paths.len();
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(all, paths.len(), "{text}");
}

#[test]
fn check_warns_about_an_upstream_that_does_not_resolve() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:1\nroutes:\n  - path: /\n    upstream: http://127.0.0.1:2\n    auth: {enabled: false}\n  - path: /gone\n    upstream: http://no-such-host.invalid:8080\n    auth: {enabled: false}\n",
    )
    .expect("write");
    let (code, stdout, stderr) = run_cli(
        &["check", "--config", path.to_str().expect("p")],
        dir.path(),
    );
    assert_eq!(code, 0, "a warning, not an error:\n{stderr}");
    assert!(stdout.contains("ok"), "{stdout}");
    assert!(
        stderr.contains("warning: routes[1].upstream: cannot resolve no-such-host.invalid:8080"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// `check` reads the TLS files as `serve` does: a certificate file that holds no certificate is
/// a problem named with its field and line, not `ok` (and `serve` refuses it alike).
#[test]
fn check_refuses_tls_files_that_serve_would_refuse() {
    let gw = TestGateway::start();
    let dir = gw.dir.path();
    std::fs::write(dir.join("not-a-cert.pem"), "just a line of text\n").expect("write");
    std::fs::write(dir.join("not-a-key.pem"), "just a line of text\n").expect("write");
    let text = format!(
        "{}\ntls: {{certificateFile: not-a-cert.pem, privateKeyFile: not-a-key.pem}}\n",
        gw.config_text(&Options::default())
    );
    let path = dir.join("tls.yaml");
    std::fs::write(&path, text).expect("write");
    let (code, stdout, stderr) = run_cli(&["check", "--config", path.to_str().expect("path")], dir);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("tls.certificateFile:"), "{stderr}");
    assert!(stderr.contains("(line "), "{stderr}");
    assert!(!stdout.contains("ok"), "{stdout}");
}

/// A listener whose address is taken stops the start with the field that gives it: `listen`,
/// `admin.listen`, `demoUpstream.listen`.
#[test]
fn a_taken_address_names_its_listeners_field() {
    let gw = TestGateway::start();
    let text = gw.config_text(&Options::default());
    // The running gateway holds every address of its configuration.
    let path = gw.dir.path().join("again.yaml");
    std::fs::write(&path, &text).expect("write");
    let (code, _, stderr) = run_cli(
        &["serve", "--config", path.to_str().expect("path")],
        gw.dir.path(),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("listen: cannot listen on"), "{stderr}");
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let free_port = free.local_addr().expect("addr").port();
    drop(free);
    let moved = text.replacen(
        &format!("127.0.0.1:{}", gw.port),
        &format!("127.0.0.1:{free_port}"),
        1,
    );
    std::fs::write(&path, moved).expect("write");
    let (code, _, stderr) = run_cli(
        &["serve", "--config", path.to_str().expect("path")],
        gw.dir.path(),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("demoUpstream.listen: cannot listen on")
            || stderr.contains("admin.listen: cannot listen on"),
        "{stderr}"
    );
}
