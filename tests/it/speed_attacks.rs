//! The round's speed and memory changes attacked through the real binary: the hand-written
//! access line (a `sub` that is not a UUID cannot forge a field or break the line, in text and
//! JSON), the compact token cache (tokens one character apart, ids absent, empty or not UUIDs,
//! times at the ends of i64 or as floats, more shapes than the interner holds and shapes too
//! large to share: a hit answers exactly what the miss did, on the proxy and in forward-auth
//! decisions), and the upstream headers inserted by their parsed name (every spelling and
//! duplicate of a controlled header the client sends, with 0 to 200 other headers, over
//! HTTP/1.0 and 1.1: the upstream gets exactly one of each, the gateway's); and a vended
//! token living past every configured lifetime stays refused by its user's revocation.

use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::*;

/// The fields of an access line, in their order.
const ACCESS_FIELDS: [&str; 9] = [
    "request_id",
    "method",
    "path",
    "route",
    "status",
    "outcome",
    "user",
    "upstream",
    "latency_ms",
];

/// Subjects that are not UUIDs, each trying to end its field or its line.
fn hostile_subjects() -> Vec<String> {
    vec![
        "svc status=200 outcome=\"allowed\" upstream=6.6.6.6:1 latency_ms=0.1".into(),
        "q\"uote\\ back\\\" path=\"/x\"".into(),
        "cr\rlf\n2026-12-06T00:00:00.000000Z  INFO gatehouse::access: request status=200".into(),
        "ctl\u{1}\u{7f}\u{1b}[31mend".into(),
        "nb\u{a0}sp\u{2028}ls\u{3000}id\tx".into(),
        String::new(),
        "long-".repeat(600),
    ]
}

/// The `name=value` fields of a text line after `marker`, split as a logfmt reader would:
/// at spaces outside double quotes (a backslash escapes inside them).
fn text_fields(line: &str, marker: &str) -> Vec<(String, String)> {
    let rest = &line[line.find(marker).expect("marker") + marker.len()..];
    let (mut fields, mut token, mut quoted, mut escaped) =
        (Vec::new(), String::new(), false, false);
    for c in rest.chars().chain([' ']) {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                let (name, value) = token.split_once('=').expect("name=value");
                fields.push((name.to_string(), value.to_string()));
                token.clear();
                continue;
            }
            _ => {}
        }
        token.push(c);
    }
    fields
}

/// Waits (up to 5 s: lines are flushed at least every 100 ms) until `gw`'s log holds an access
/// line for each of `paths`; the log.
fn log_with(gw: &TestGateway, paths: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = gw.log();
        let all = paths.iter().all(|p| {
            log.contains(&format!("path=\"{p}\"")) || log.contains(&format!("\"path\":\"{p}\""))
        });
        if all || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A gateway over `upstream` with route `/plain` (the main application, no identity header,
/// so any `sub` passes) and `extra` top-level YAML.
fn plain_gateway(upstream: &RecordingUpstream, extra: &str) -> TestGateway {
    TestGateway::start_with(Options {
        upstream: Some(upstream.url()),
        extra: extra.into(),
        extra_routes: format!(
            "  - path: /plain\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}}}\n"
        ),
        ..Options::default()
    })
}

/// Sends each hostile subject's token twice (a miss, then a hit) to its own path; the paths.
fn send_hostile_subjects(gw: &TestGateway) -> Vec<String> {
    let mut paths = Vec::new();
    for (i, sub) in hostile_subjects().iter().enumerate() {
        let mut claims = claims(Uuid::new_v4(), APP, &["user"]);
        claims["sub"] = json!(sub);
        let token = gw.token(Algorithm::RS256, &claims);
        for round in 0..2 {
            let path = format!("/plain/s{i}-{round}");
            let response = gw.get_as(&path, &token);
            assert_eq!(response.status().as_u16(), 200, "{sub:?}");
            paths.push(path);
        }
    }
    paths
}

#[test]
fn a_subject_that_is_not_a_uuid_stays_one_field_of_one_text_access_line() {
    let upstream = RecordingUpstream::start();
    let gw = plain_gateway(&upstream, "");
    let paths = send_hostile_subjects(&gw);
    let log = log_with(&gw, &paths);
    for line in log.lines() {
        assert!(
            line.starts_with("20") && line.as_bytes().get(10) == Some(&b'T'),
            "a broken line: {line:?}"
        );
    }
    for path in &paths {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("gatehouse::access") && l.contains(&format!("path=\"{path}\"")))
            .collect();
        assert_eq!(lines.len(), 1, "{path}: {lines:?}");
        let fields = text_fields(lines[0], "gatehouse::access: request ");
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ACCESS_FIELDS, "one value per field: {}", lines[0]);
        assert_eq!(fields[4].1, "200", "{}", lines[0]);
        assert_eq!(fields[5].1, "\"allowed\"", "{}", lines[0]);
        let user = &fields[6].1;
        assert!(
            !user
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"'),
            "{user:?}"
        );
    }
}

#[test]
fn a_subject_that_is_not_a_uuid_stays_one_field_of_one_json_access_line() {
    let upstream = RecordingUpstream::start();
    let gw = plain_gateway(&upstream, "log: {format: json, level: info}\n");
    let paths = send_hostile_subjects(&gw);
    let log = log_with(&gw, &paths);
    let mut seen = 0;
    for line in log.lines() {
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let Some(path) = parsed["fields"]["path"]
            .as_str()
            .or(parsed["path"].as_str())
        else {
            continue;
        };
        if !paths.iter().any(|p| p == path) {
            continue;
        }
        seen += 1;
        let fields = if parsed["fields"].is_object() {
            &parsed["fields"]
        } else {
            &parsed
        };
        assert_eq!(fields["status"], 200, "{line}");
        assert_eq!(fields["outcome"], "allowed", "{line}");
        let user = fields["user"].as_str().expect("a user");
        assert!(
            !user.chars().any(|c| c.is_whitespace() || c.is_control()),
            "{line}"
        );
    }
    assert_eq!(seen, paths.len(), "one line per request:\n{log}");
}

/// Routes that read every id and list claim of the compact entry.
fn shape_routes() -> String {
    format!(
        r#"  - path: /shape
    upstream: $UPSTREAM
    auth: {{applicationId: {APP}, roles: [admin]}}
    identityHeaders: {{X-Roles: roles, X-App: applicationId, X-Tid: tid, X-Sid: sid, X-Aud: aud, X-Sub: sub}}
  - path: /aud
    upstream: $UPSTREAM
    auth: {{audiences: [my-api], claims: {{org.tier: gold}}}}
    identityHeaders: {{X-Aud: aud, X-Tier: org.tier}}
  - path: /judged
    auth: {{applicationId: {APP}, roles: [admin]}}
    identityHeaders: {{X-Roles: roles, X-App: applicationId, X-Tid: tid, X-Sid: sid}}
"#
    )
}

/// A gateway over `upstream` with [`shape_routes`] and forward-auth decisions on
/// `/_gatehouse/auth`.
fn shape_gateway(upstream: &RecordingUpstream) -> TestGateway {
    TestGateway::start_with(Options {
        upstream: Some(upstream.url()),
        extra: "forwardAuth: {path: /_gatehouse/auth, trustedProxies: [127.0.0.1/32]}\n".into(),
        extra_routes: shape_routes(),
        ..Options::default()
    })
}

/// Everything a client (or a front proxy) sees of one answer: status, the headers that are not
/// per request, and the body (the upstream's echo holds the header block it received).
fn answer(response: reqwest::blocking::Response) -> String {
    let status = response.status().as_u16();
    let mut headers: Vec<String> = response
        .headers()
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "date" | "x-request-id"))
        .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    headers.sort();
    let body = response.text().unwrap_or_default();
    format!("{status}\n{}\n\n{body}", headers.join("\n"))
}

/// The answers to `token` on each proxied route and in a decision for `/judged`.
fn answers(gw: &TestGateway, token: &str) -> Vec<String> {
    let mut all = Vec::new();
    for path in ["/shape", "/aud"] {
        all.push(answer(gw.get_as(path, token)));
    }
    let decision = client()
        .get(gw.url("/_gatehouse/auth"))
        .header("X-Original-Method", "GET")
        .header("X-Original-URI", "/judged")
        .header("X-Forwarded-Host", "app.example")
        .bearer_auth(token)
        .send()
        .expect("decision");
    all.push(answer(decision));
    all
}

/// The base claims of the shape tests: admin of the main application, with a session id,
/// audiences and a gold tier.
fn shape_claims() -> Value {
    let mut claims = claims(Uuid::nil(), APP, &["admin", "user"]);
    claims["sub"] = json!("7c2a4a8e-0d2b-4f0e-9c39-1d2a3b4c5d6e");
    claims["aud"] = json!([APP, "my-api"]);
    claims["sid"] = json!("5e5e5e5e-0d2b-4f0e-9c39-1d2a3b4c5d6e");
    claims["org"] = json!({"tier": "gold"});
    claims
}

/// One-claim changes of [`shape_claims`]: one character, absent, empty, not a UUID, and times
/// at the ends of i64, as floats, negative and huge.
fn variants() -> Vec<(&'static str, Value)> {
    let t = now();
    let changes: Vec<(&'static str, &'static str, Value)> = vec![
        ("base", "sub", json!("7c2a4a8e-0d2b-4f0e-9c39-1d2a3b4c5d6e")),
        ("role one char", "roles", json!(["admiN", "user"])),
        ("role trailing space", "roles", json!(["admin ", "user"])),
        ("role order", "roles", json!(["user", "admin"])),
        ("aud one char", "aud", json!([APP, "my-apI"])),
        (
            "aud app one char",
            "aud",
            json!(["3c219e58-ed0e-4b18-ad48-f4f92793ae33", "my-api"]),
        ),
        ("aud string", "aud", json!("my-api")),
        (
            "app one char",
            "applicationId",
            json!("3c219e58-ed0e-4b18-ad48-f4f92793ae33"),
        ),
        ("app empty", "applicationId", json!("")),
        ("app not uuid", "applicationId", json!("not-a-uuid")),
        ("app number", "applicationId", json!(7)),
        (
            "tid one char",
            "tid",
            json!("0a6a8d1e-3f2b-4c5d-8e9f-1a2b3c4d5e6e"),
        ),
        ("tid empty", "tid", json!("")),
        ("tid not uuid", "tid", json!("tenant")),
        (
            "sid one char",
            "sid",
            json!("5e5e5e5e-0d2b-4f0e-9c39-1d2a3b4c5d6f"),
        ),
        ("sid empty", "sid", json!("")),
        ("sid not uuid", "sid", json!("session")),
        ("tier one char", "org", json!({"tier": "golD"})),
        (
            "sub one char",
            "sub",
            json!("7c2a4a8e-0d2b-4f0e-9c39-1d2a3b4c5d6f"),
        ),
        ("exp float", "exp", json!(t as f64 + 600.5)),
        ("exp i64 max", "exp", json!(i64::MAX)),
        ("exp u64 max", "exp", json!(u64::MAX)),
        ("exp huge float", "exp", json!(1e300)),
        ("exp negative", "exp", json!(-1)),
        ("exp i64 min", "exp", json!(i64::MIN)),
        ("exp just passed", "exp", json!(t - 1)),
        ("nbf i64 min", "nbf", json!(i64::MIN)),
        ("nbf i64 max", "nbf", json!(i64::MAX)),
        ("nbf negative", "nbf", json!(-5)),
        ("nbf float past", "nbf", json!(t as f64 - 10.25)),
        ("nbf future", "nbf", json!(t + 60)),
        ("nbf huge float", "nbf", json!(-1e300)),
        ("iat i64 max", "iat", json!(i64::MAX)),
        ("iat i64 min", "iat", json!(i64::MIN)),
        ("iat float", "iat", json!(t as f64 - 0.5)),
    ];
    let mut all = Vec::new();
    for (name, claim, value) in changes {
        let mut claims = shape_claims();
        claims[claim] = value;
        all.push((name, claims));
    }
    for claim in ["applicationId", "tid", "sid", "aud", "iat", "roles"] {
        let mut claims = shape_claims();
        claims.as_object_mut().expect("object").remove(claim);
        all.push((claim, claims));
    }
    all
}

#[test]
fn tokens_one_claim_apart_get_on_a_hit_exactly_what_their_miss_got() {
    let upstream = RecordingUpstream::start();
    let gw = shape_gateway(&upstream);
    // Every variant is verified (a miss) and cached before any hit, so the entries share
    // every string, list and shape they can.
    let tokens: Vec<(&str, String)> = variants()
        .into_iter()
        .map(|(name, claims)| (name, gw.token(Algorithm::RS256, &claims)))
        .collect();
    let misses: Vec<Vec<String>> = tokens.iter().map(|(_, t)| answers(&gw, t)).collect();
    for ((name, token), miss) in tokens.iter().zip(&misses) {
        for answer in miss {
            let status: u16 = answer[..3].parse().expect("status");
            assert!(matches!(status, 200 | 401 | 403), "{name}: {answer}");
        }
        for _ in 0..2 {
            assert_eq!(
                &answers(&gw, token),
                miss,
                "{name}: a hit answers what the miss did"
            );
        }
    }
    let status = |name: &str, route: usize| -> u16 {
        let i = tokens
            .iter()
            .position(|(n, _)| *n == name)
            .expect("variant");
        misses[i][route][..3].parse().expect("status")
    };
    // The verdicts one character decides.
    for route in 0..3 {
        assert_eq!(status("base", route), 200, "base on route {route}");
    }
    for name in ["role one char", "role trailing space", "roles"] {
        assert_eq!(status(name, 0), 403, "{name}");
        assert_eq!(status(name, 2), 403, "{name}");
    }
    assert_eq!(status("role order", 0), 200);
    for name in ["aud one char", "tier one char"] {
        assert_eq!(status(name, 1), 403, "{name}");
        assert_eq!(status(name, 0), 200, "{name}");
    }
    for name in [
        "app one char",
        "app empty",
        "app not uuid",
        "app number",
        "applicationId",
    ] {
        assert_ne!(status(name, 0), 200, "{name}");
        assert_ne!(status(name, 2), 200, "{name}");
    }
    for name in [
        "tid one char",
        "exp just passed",
        "exp negative",
        "exp i64 min",
        "nbf future",
        "nbf i64 max",
    ] {
        for route in 0..3 {
            assert_eq!(status(name, route), 401, "{name} on route {route}");
        }
    }
    for name in [
        "nbf i64 min",
        "nbf negative",
        "nbf float past",
        "exp i64 max",
    ] {
        assert_eq!(status(name, 0), 200, "{name}");
    }
    // The headers carry each token's own ids and lists, never a sibling's.
    let header = |name: &str, header: &str| -> Value {
        let i = tokens
            .iter()
            .position(|(n, _)| *n == name)
            .expect("variant");
        let body = misses[i][0].split("\n\n").nth(1).expect("body");
        serde_json::from_str::<Value>(body).expect("echo")["headers"][header].clone()
    };
    assert_eq!(
        header("base", "x-sid"),
        json!(["5e5e5e5e-0d2b-4f0e-9c39-1d2a3b4c5d6e"])
    );
    assert_eq!(
        header("sid one char", "x-sid"),
        json!(["5e5e5e5e-0d2b-4f0e-9c39-1d2a3b4c5d6f"])
    );
    assert_eq!(header("sid", "x-sid"), Value::Null);
    assert_eq!(header("tid not uuid", "x-tid"), json!(["tenant"]));
    assert_eq!(header("tid", "x-tid"), Value::Null);
    assert_eq!(header("role order", "x-roles"), json!(["user,admin"]));
    assert_eq!(
        header("sub one char", "x-sub"),
        json!(["7c2a4a8e-0d2b-4f0e-9c39-1d2a3b4c5d6f"])
    );
}

#[test]
fn more_shapes_than_the_interner_holds_and_shapes_too_large_to_share_stay_exact() {
    let upstream = RecordingUpstream::start();
    let gw = shape_gateway(&upstream);
    let http = client();
    let mut sample = Vec::new();
    // 4,300 role sets (the interner holds 4,096 shapes), every fifth over 1 kB, half admins.
    for i in 0..4_300usize {
        let mut roles = vec![format!("r{i}")];
        if i % 2 == 0 {
            roles.push("admin".into());
        }
        if i % 5 == 0 {
            roles.push(format!("big-{i}-{}", "x".repeat(1_200)));
        }
        let mut claims = shape_claims();
        claims["roles"] = json!(roles);
        let token = gw.token(Algorithm::ES256, &claims);
        let response = http
            .get(gw.url("/shape"))
            .bearer_auth(&token)
            .send()
            .expect("send");
        let expected = if i % 2 == 0 { 200 } else { 403 };
        assert_eq!(response.status().as_u16(), expected, "role set {i}");
        if expected == 200 {
            let echo: Value = response.json().expect("echo");
            assert_eq!(
                echo["headers"]["x-roles"],
                json!([roles.join(",")]),
                "role set {i}"
            );
        }
        if i % 97 == 0 || i >= 4_290 {
            sample.push((i, token, expected, roles.join(",")));
        }
    }
    // Hits, long after their shapes were made (the early ones interned, the late ones not).
    for (i, token, expected, roles) in sample {
        let response = http
            .get(gw.url("/shape"))
            .bearer_auth(&token)
            .send()
            .expect("send");
        assert_eq!(response.status().as_u16(), expected, "hit of role set {i}");
        if expected == 200 {
            let echo: Value = response.json().expect("echo");
            assert_eq!(
                echo["headers"]["x-roles"],
                json!([roles]),
                "hit of role set {i}"
            );
        }
    }
}

/// The header lines (lowercased name, value) of the upstream's received `head`.
fn head_lines(echo: &Value) -> Vec<(String, String)> {
    echo["head"]
        .as_str()
        .expect("head")
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

#[test]
fn forged_controlled_headers_in_every_spelling_reach_the_upstream_once_as_the_gateways() {
    let upstream = RecordingUpstream::start();
    let gw = TestGateway::start_with(Options {
        upstream: Some(upstream.url()),
        ..Options::default()
    });
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::RS256, &claims(user, APP, &["user"]));
    let forged = [
        "X-User-Id: forged-1",
        "x-user-id: forged-2",
        "X-USER-ID: forged-3",
        "x-User-Id:forged-4",
        "X-User-Id: ",
        "X_User_Id: forged-5",
        "X-User-Roles: admin",
        "x-user-roles: admin",
        "X-Forwarded-For: 6.6.6.6",
        "x-forwarded-for: 7.7.7.7, 8.8.8.8",
        "X-FORWARDED-FOR: ",
        "X_Forwarded_For: 9.9.9.9",
        "X-Forwarded-Proto: https",
        "x-forwarded-proto: wss",
        "X-Real-IP: 6.6.6.6",
        "Forwarded: for=6.6.6.6;proto=https",
    ];
    for version in ["HTTP/1.0", "HTTP/1.1"] {
        for others in [0usize, 1, 2, 3, 7, 15, 16, 31, 64, 127, 200] {
            let mut request = format!(
                "GET /n/{others} {version}\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            );
            for i in 0..others {
                request.push_str(&format!("X-Filler-{i}: v{i}\r\n"));
            }
            for line in forged {
                request.push_str(line);
                request.push_str("\r\n");
            }
            request.push_str("Connection: close\r\n\r\n");
            let (status, response) = raw_http(gw.port, request.as_bytes());
            assert_eq!(status, 200, "{version} with {others} headers: {response}");
            let lines = head_lines(&raw_body(&response));
            let values = |name: &str| -> Vec<&str> {
                lines
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
                    .collect()
            };
            let context = format!("{version} with {others} headers: {lines:?}");
            assert_eq!(values("x-user-id"), [user.to_string()], "{context}");
            assert_eq!(values("x-user-roles"), ["user"], "{context}");
            assert_eq!(values("x-forwarded-for"), ["127.0.0.1"], "{context}");
            assert_eq!(values("x-forwarded-proto"), ["http"], "{context}");
            for name in ["x_user_id", "x_forwarded_for", "x-real-ip", "forwarded"] {
                assert!(values(name).is_empty(), "{name}: {context}");
            }
            for i in 0..others {
                assert_eq!(
                    values(&format!("x-filler-{i}")),
                    [format!("v{i}")],
                    "{context}"
                );
            }
        }
    }
    // Obs-fold continuing a controlled header is refused whole, never forwarded.
    let folded = format!(
        "GET /n/fold HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nX-User-Id: a\r\n forged\r\nConnection: close\r\n\r\n"
    );
    let before = upstream.received().len();
    let (status, _) = raw_http(gw.port, folded.as_bytes());
    assert_eq!(status, 400, "obs-fold");
    assert_eq!(
        upstream.received().len(),
        before,
        "nothing reached the upstream"
    );
}

/// Vends a token for `user` of the main application living `ttl` seconds.
fn vend(gw: &TestGateway, user: Uuid, ttl: u64) -> String {
    let response = client()
        .post(gw.url("/api/jwt/vend"))
        .header("Authorization", API_KEY)
        .json(&json!({
            "claims": {"sub": user, "applicationId": APP, "aud": APP, "roles": ["user"]},
            "timeToLiveInSeconds": ttl,
        }))
        .send()
        .expect("vend");
    check_status(response, 200)["token"]
        .as_str()
        .expect("token")
        .to_string()
}

#[test]
fn a_vended_token_outliving_every_configured_lifetime_stays_revoked_past_the_prune() {
    // Configured lifetimes of 1 s: revocations would otherwise leave memory at the first
    // prune (every 60 s) after that.
    let gw = TestGateway::start_with(Options {
        app_jwt: "enabled: true, timeToLiveInSeconds: 1, refreshTokenUsagePolicy: Reusable".into(),
        tenant_jwt: "timeToLiveInSeconds: 1".into(),
        ..Options::default()
    });
    let user_of = |email: &str| Uuid::parse_str(&gw.login(email, &["user"]).user_id).expect("id");
    let (revoked_user, kept_user) = (user_of("vended@example.com"), user_of("kept@example.com"));
    let revoked = vend(&gw, revoked_user, 3_600);
    let kept = vend(&gw, kept_user, 3_600);
    // Both verified and cached.
    assert_eq!(gw.get_as("/", &revoked).status().as_u16(), 200);
    assert_eq!(gw.get_as("/", &kept).status().as_u16(), 200);
    std::thread::sleep(Duration::from_millis(1_100));
    let status = client()
        .delete(gw.url(&format!("/api/jwt/refresh?userId={revoked_user}")))
        .header("Authorization", API_KEY)
        .send()
        .expect("revoke")
        .status()
        .as_u16();
    assert_eq!(status, 200);
    // Past the configured lifetimes and at least one prune, the vended token stays refused.
    let deadline = Instant::now() + Duration::from_secs(64);
    while Instant::now() < deadline {
        assert_eq!(gw.get_as("/", &revoked).status().as_u16(), 401, "revoked");
        assert_eq!(gw.get_as("/", &kept).status().as_u16(), 200, "not revoked");
        std::thread::sleep(Duration::from_secs(4));
    }
    assert_eq!(
        gw.get_as("/", &revoked).status().as_u16(),
        401,
        "after the prune"
    );
}
