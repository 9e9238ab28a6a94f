//! Durability: what the gateway acknowledged survives a restart.

use super::kit::*;

#[test]
fn generated_keys_and_tokens_survive_a_restart() {
    // The shipped config's key has no material: it is generated on first start.
    let dir = tempfile::tempdir().expect("dir");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let port = free_port();
    let demo = free_port();
    let config = std::fs::read_to_string(repo.join("config.yaml"))
        .expect("config")
        .replace(
            "${GATEHOUSE_LISTEN:-127.0.0.1:9011}",
            &format!("127.0.0.1:{port}"),
        )
        .replace(
            "${GATEHOUSE_DEMO_LISTEN:-127.0.0.1:9012}",
            &format!("127.0.0.1:{demo}"),
        );
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
            .stderr(std::process::Stdio::null())
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
        panic!("not healthy");
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
