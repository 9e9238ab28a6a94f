//! The README's flow against the shipped `config.yaml` (ports moved to free ones): refused
//! without a token, a vended token reaches the demo upstream with identity headers, and a login
//! through the demo identity provider yields cookies that open the protected route.

use base64::Engine;
use serde_json::{json, Value};

use super::kit::*;

const DEMO_APP: &str = "3c219e58-ed0e-4b18-ad48-f4f92793ae32";
const DEMO_IDP: &str = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d";
const DEMO_KEY: &str = "gatehouse-demo-api-key-change-me";
const DEMO_SSO_SECRET: &[u8] = b"demo-sso-hmac-secret-change-me-0123456789";

/// The external token the README builds with Python, built here the same way.
fn external_token(email: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(json!({"alg": "HS256", "typ": "JWT", "kid": "demo-sso"}).to_string());
    let payload = b64.encode(
        json!({"sub": format!("ext-{email}"), "email": email, "email_verified": true, "exp": now() + 300})
            .to_string(),
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, DEMO_SSO_SECRET);
    let signature = aws_lc_rs::hmac::sign(&key, format!("{header}.{payload}").as_bytes());
    format!("{header}.{payload}.{}", b64.encode(signature.as_ref()))
}

#[test]
fn the_readme_flow_works_on_the_shipped_config() {
    let dir = tempfile::tempdir().expect("dir");
    let (config, [port, ..]) = shipped_config_on_free_ports();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).expect("write");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--config", path.to_str().expect("p")])
        .current_dir(dir.path())
        .stderr(std::fs::File::create(dir.path().join("gatehouse.log")).expect("log file"))
        .spawn()
        .expect("spawn");
    let g = format!("http://127.0.0.1:{port}");
    let http = client();
    let healthy = (0..300).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        http.get(format!("{g}/health"))
            .send()
            .is_ok_and(|r| r.status().as_u16() == 200)
    });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(
            healthy,
            "the shipped config did not start:\n{}",
            std::fs::read_to_string(dir.path().join("gatehouse.log")).unwrap_or_default()
        );
        // No token: refused.
        check_status(http.get(format!("{g}/hello")).send().expect("send"), 401);
        // The discovery document names a URL issuer, as OpenID Connect libraries require.
        let discovery = check_status(
            http.get(format!("{g}/.well-known/openid-configuration"))
                .send()
                .expect("send"),
            200,
        );
        let issuer = discovery["issuer"].as_str().expect("issuer");
        assert!(
            issuer.starts_with("https://") || issuer.starts_with("http://"),
            "{issuer}"
        );
        // A vended token reaches the upstream with identity headers; spoofed ones are replaced.
        let vended = check_status(
            http.post(format!("{g}/api/jwt/vend"))
                .header("Authorization", DEMO_KEY)
                .json(
                    &json!({"claims": {"sub": "00000000-0000-4000-8000-000000000001",
                    "email": "ann@example.com", "applicationId": DEMO_APP, "roles": ["user"]}}),
                )
                .send()
                .expect("send"),
            200,
        );
        let token = vended["token"].as_str().expect("token");
        let echoed = check_status(
            http.get(format!("{g}/hello"))
                .bearer_auth(token)
                .header("X-User-Id", "admin")
                .send()
                .expect("send"),
            200,
        );
        assert_eq!(
            echoed["headers"]["x-user-id"],
            "00000000-0000-4000-8000-000000000001"
        );
        assert_eq!(echoed["headers"]["x-user-email"], "ann@example.com");
        check_status(
            http.get(format!("{g}/admin"))
                .bearer_auth(token)
                .send()
                .expect("send"),
            403,
        );
        // Login through the demo identity provider; its cookies open the protected route.
        let login = http
            .post(format!("{g}/api/identity-provider/login"))
            .json(
                &json!({"applicationId": DEMO_APP, "identityProviderId": DEMO_IDP,
                "encodedJWT": external_token("readme@example.com")}),
            )
            .send()
            .expect("send");
        let cookies: Vec<String> = login
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|c| c.split(';').next().map(str::to_string))
            .collect();
        let body = check_status(login, 200);
        assert!(body["refreshToken"].is_string());
        assert_eq!(body["user"]["email"], "readme@example.com");
        let echoed = check_status(
            http.get(format!("{g}/hello"))
                .header("Cookie", cookies.join("; "))
                .send()
                .expect("send"),
            200,
        );
        assert_eq!(echoed["headers"]["x-user-email"], "readme@example.com");
        // The user as reconcile left it.
        let users: Value = check_status(
            http.get(format!("{g}/api/user?email=readme@example.com"))
                .header("Authorization", DEMO_KEY)
                .send()
                .expect("send"),
            200,
        );
        assert_eq!(users["user"]["email"], "readme@example.com");
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
