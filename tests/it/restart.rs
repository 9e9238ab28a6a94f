//! Durability: what the gateway acknowledged survives a restart.

use super::kit::*;

#[test]
fn generated_keys_and_tokens_survive_a_restart() {
    // The shipped config's key has no material: it is generated on first start.
    let dir = tempfile::tempdir().expect("dir");
    let (config, [port, ..]) = shipped_config_on_free_ports();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).expect("write");
    let token_args = [
        "token",
        "--config",
        path.to_str().expect("p"),
        "--application-id",
        "3c219e58-ed0e-4b18-ad48-f4f92793ae32",
    ];
    let (code, token, stderr) = run_cli(&token_args, dir.path());
    assert_eq!(code, 0, "{stderr}");
    let token = token.trim().to_string();
    assert!(dir.path().join("data/gatehouse.db").exists());

    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["serve", "--config", path.to_str().expect("p")])
            .current_dir(dir.path())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.path().join("gatehouse.log"))
                    .expect("log file"),
            )
            .spawn()
            .expect("spawn")
    };
    let wait_healthy = || {
        for _ in 0..300 {
            if client()
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .is_ok_and(|r| r.status().as_u16() == 200)
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "not healthy:\n{}",
            std::fs::read_to_string(dir.path().join("gatehouse.log")).unwrap_or_default()
        );
    };
    let stop = |child: &mut std::process::Child| {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait().expect("wait");
        assert!(status.success(), "SIGTERM is a clean shutdown: {status}");
    };
    for _ in 0..2 {
        let mut child = start();
        wait_healthy();
        // A token signed with the generated key before any start is accepted on every start.
        let response = client()
            .get(format!("http://127.0.0.1:{port}/hello"))
            .bearer_auth(&token)
            .send()
            .expect("send");
        let status = response.status().as_u16();
        stop(&mut child);
        assert_eq!(status, 200);
    }
}
