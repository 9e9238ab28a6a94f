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

/// `gatehouse check` on `text` written to a file of its own, with the environment `vars`:
/// exit code, stdout and stderr.
fn check_text(text: &str, vars: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, text).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "--config", path.to_str().expect("path")])
        .envs(vars.iter().copied())
        .current_dir(dir.path())
        .output()
        .expect("run gatehouse");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_refuses_numbers_levels_store_urls_and_provider_keys_serve_would_misread() {
    let text = format!(
        "listen: 127.0.0.1:1\n\
         store: postgres://u:pw@127.0.0.1:5432/db?sslmode=require\n\
         shutdownTimeoutSeconds: 18446744073709551615\n\
         log: {{level: loud}}\n\
         keys: [{{id: 11111111-1111-4111-8111-111111111111, algorithm: RS256}}]\n\
         tenants:\n  - {{id: {TENANT}, name: T, issuer: https://a.example,\n     jwtConfiguration: {{timeToLiveInSeconds: 9223372036854775807}}}}\n\
         plugins: {{identity-provider: {{}}}}\n\
         identityProviders:\n  - {{id: 22222222-2222-4222-8222-222222222222, name: P, type: ExternalJWT, headerKeyParameter: kid,\n     oauth2: {{emailclaim: mail}}}}\n"
    );
    let (code, _, stderr) = check_text(&text, &[]);
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "store: sslmode=require, but the store connects without TLS",
        "shutdownTimeoutSeconds: must be at most 3600 (line 3",
        "log.level: must be a level",
        "tenants[0].jwtConfiguration.timeToLiveInSeconds: must be between 1 and 2147483647 (line 8",
        "identityProviders[0].oauth2.emailclaim: This is not a field of oauth2. (line 12",
    ] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    assert!(
        stderr.contains("store: ") && stderr.contains("(line 2, column 1)"),
        "{stderr}"
    );
    assert!(!stderr.contains("pw@"), "{stderr}");
}

#[test]
fn check_reads_past_a_byte_order_mark_and_trailing_comments_and_quotes_an_empty_variable() {
    let text = "\u{FEFF}listen: 127.0.0.1:1 # ${GATEHOUSE_TEST_UNSET_VARIABLE}\nthreads: 2\n";
    let (code, stdout, stderr) = check_text(text, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // An empty variable is an empty text, refused for what it means, not read as nothing.
    let text = "listen: 127.0.0.1:1\ntenants:\n  - {id: 0a6a8d1e-3f2b-4c5d-8e9f-1a2b3c4d5e6f, name: ${GATEHOUSE_TEST_EMPTY}, issuer: https://a.example}\n";
    let (code, _, stderr) = check_text(text, &[("GATEHOUSE_TEST_EMPTY", "")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("tenants[0].name: must not be blank (line 3"),
        "{stderr}"
    );
    let text = "\u{FEFF}listen: 127.0.0.1:1\nbogus: 1\n";
    let (_, _, stderr) = check_text(text, &[]);
    assert!(
        stderr.contains("bogus: unknown field") && stderr.contains("(line 2, column 1)"),
        "{stderr}"
    );
}
