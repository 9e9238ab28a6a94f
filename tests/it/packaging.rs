//! The deployment files in `packaging/`: the systemd unit passes `systemd-analyze verify` with
//! no warning and carries the hardening the README promises; the Dockerfile builds in two
//! stages, runs as an unprivileged user, keeps the configuration and the store in volumes and
//! checks `/health` on the admin listener (no image can be pulled here, so it is read, not
//! built).

use std::path::Path;
use std::process::Command;

fn packaging_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The unit's `Key=value` lines (comments and section headers left out).
fn directives(unit: &str) -> Vec<(&str, &str)> {
    unit.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect()
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = packaging_file("gatehouse.service");
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        analyze.is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing: run `scripts/bootstrap --tests` (it installs systemd)"
    );
    // `verify` checks that ExecStart's program exists: the unit names the installed path,
    // so it is verified with this build's binary in its place.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("gatehouse.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/gatehouse", env!("CARGO_BIN_EXE_gatehouse")),
    )
    .expect("write unit");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // `verify` exits 0 on unknown keys and bad values (it only warns): any line is a failure.
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify ({}):\n{stderr}",
        output.status
    );

    let set = directives(&unit);
    for expected in [
        (
            "ExecStart",
            "/usr/local/bin/gatehouse serve --config /etc/gatehouse/config.yaml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("StateDirectory", "gatehouse"),
        ("NoNewPrivileges", "yes"),
        ("KillSignal", "SIGTERM"),
        ("CapabilityBoundingSet", ""),
        (
            "Environment",
            "GATEHOUSE_STORE=sqlite:///var/lib/gatehouse/gatehouse.db",
        ),
    ] {
        assert!(set.contains(&expected), "missing {expected:?}");
    }
}

#[test]
fn the_dockerfile_builds_in_two_stages_and_runs_unprivileged_with_volumes() {
    let dockerfile = packaging_file("Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.starts_with(' '))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let from: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(from.len(), 2, "{from:?}");
    assert!(from[0].ends_with(" AS build"), "{from:?}");
    assert!(
        from[1].contains("-slim") || from[1].contains("distroless"),
        "{from:?}"
    );
    for expected in [
        "COPY --from=build /usr/local/bin/gatehouse /usr/local/bin/gatehouse",
        "USER gatehouse:gatehouse",
        r#"VOLUME ["/etc/gatehouse", "/var/lib/gatehouse"]"#,
        "EXPOSE 9011",
        "STOPSIGNAL SIGTERM",
        r#"CMD ["serve", "--config", "/etc/gatehouse/config.yaml"]"#,
    ] {
        assert!(instructions.contains(&expected), "missing {expected}");
    }
    assert!(
        dockerfile.contains("HEALTHCHECK") && dockerfile.contains("http://127.0.0.1:9013/health"),
        "the health check asks the admin listener"
    );
    // The ports and store it names are the ones the shipped config reads from the environment.
    let config = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml"))
        .expect("config.yaml");
    for variable in [
        "GATEHOUSE_LISTEN",
        "GATEHOUSE_ADMIN_LISTEN",
        "GATEHOUSE_STORE",
    ] {
        assert!(config.contains(&format!("${{{variable}")), "{variable}");
        assert!(dockerfile.contains(&format!("{variable}=")), "{variable}");
    }
    // The build context leaves out build output and local state.
    let ignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore"))
            .expect(".dockerignore");
    for entry in ["target", "data"] {
        assert!(
            ignore.lines().any(|l| l.trim_matches('/') == entry),
            "{entry}"
        );
    }
}

#[test]
fn the_containers_environment_gives_a_valid_configuration() {
    // The shipped config with the Dockerfile's environment passes `gatehouse check`.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "--config"])
        .arg(repo.join("config.yaml"))
        .env("GATEHOUSE_LISTEN", "0.0.0.0:9011")
        .env("GATEHOUSE_ADMIN_LISTEN", "127.0.0.1:9013")
        .env(
            "GATEHOUSE_STORE",
            format!("sqlite://{}", dir.path().join("gatehouse.db").display()),
        )
        .output()
        .expect("gatehouse check");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
