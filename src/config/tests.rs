//! Unit tests of configuration validation: paths in messages, defaults, secrecy.

use super::routes::parse_upstream;
use super::*;

const TENANT: &str = "11111111-1111-1111-1111-111111111111";
const APP: &str = "22222222-2222-2222-2222-222222222222";
const KEY: &str = "33333333-3333-3333-3333-333333333333";

fn base() -> String {
    format!(
        r#"
listen: 127.0.0.1:0
store: sqlite://test.db
apiKeys:
  - key: ${{API_KEY}}
keys:
  - {{id: {KEY}, algorithm: HS256, secret: ${{SECRET}}}}
tenants:
  - {{id: {TENANT}, name: Default, issuer: acme.com}}
applications:
  - id: {APP}
    tenantId: {TENANT}
    name: App
    roles: [{{name: user, isDefault: true}}, {{name: admin}}]
routes:
  - path: /
    upstream: http://127.0.0.1:9
    auth: {{applicationId: {APP}, roles: [admin]}}
    identityHeaders: {{X-User-Id: sub}}
"#
    )
}

fn env(name: &str) -> Option<String> {
    match name {
        "API_KEY" => Some("an-api-key-of-enough-length".into()),
        "SECRET" => Some("0123456789abcdef0123456789abcdef-very-secret".into()),
        _ => None,
    }
}

fn parse_str(text: &str) -> Result<Config, ConfigErrors> {
    parse(text, Path::new("/tmp"), env)
}

#[test]
fn a_valid_file_is_accepted_with_defaults_filled_in() {
    let config = parse_str(&base()).expect("valid");
    assert_eq!(config.routes.len(), 1);
    assert!(config.routes[0].auth.required);
    let jwt = &config.tenants[0].jwt_configuration;
    assert_eq!(
        jwt.access_token_key_id.map(|k| k.to_string()).as_deref(),
        Some(KEY)
    );
    assert_eq!(jwt.time_to_live_in_seconds, Some(3600));
    assert_eq!(
        config.store,
        StoreLocation::Sqlite(PathBuf::from("/tmp/test.db"))
    );
    assert!(!config.uses_demo_api_key);
}

#[test]
fn the_race_window_is_an_opt_in_of_at_most_a_minute() {
    assert_eq!(
        parse_str(&base()).expect("valid").race_window_ms,
        0,
        "none by default"
    );
    let with = |seconds: u32| {
        parse_str(&format!(
            "{}rotation: {{raceWindowSeconds: {seconds}}}\n",
            base()
        ))
    };
    assert_eq!(with(5).expect("valid").race_window_ms, 5_000);
    assert_eq!(with(60).expect("valid").race_window_ms, 60_000);
    let errors = with(61).unwrap_err().to_string();
    assert!(
        errors.contains("rotation.raceWindowSeconds: must be at most 60"),
        "{errors}"
    );
}

#[test]
fn the_connection_limit_defaults_to_ten_thousand_within_its_range() {
    assert_eq!(parse_str(&base()).expect("valid").max_connections, 10_000);
    let with = |limit: u64| parse_str(&format!("{}limits: {{maxConnections: {limit}}}\n", base()));
    assert_eq!(with(1).expect("valid").max_connections, 1);
    assert_eq!(with(1_000_000).expect("valid").max_connections, 1_000_000);
    for limit in [0, 1_000_001] {
        let errors = with(limit).unwrap_err().to_string();
        assert!(
            errors.contains("limits.maxConnections: must be between 1 and 1000000"),
            "{errors}"
        );
    }
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let text = base()
        .replace(
            &format!("applicationId: {APP}"),
            "applicationId: 44444444-4444-4444-4444-444444444444",
        )
        .replace("http://127.0.0.1:9", "ftp://x")
        .replace("listen: 127.0.0.1:0", "listen: nowhere");
    let errors = parse_str(&text).unwrap_err();
    let text = errors.to_string();
    assert!(
        text.contains("routes[0].auth.applicationId: no application with this id"),
        "{text}"
    );
    assert!(
        text.contains("routes[0].upstream: scheme `ftp` is not http, https, h2c or h2"),
        "{text}"
    );
    assert!(text.contains("listen: must be an address"), "{text}");
    assert_eq!(errors.0.len(), 3, "{text}");
}

#[test]
fn unknown_keys_are_errors_with_their_path() {
    let text = base().replace("    auth: {", "    auth: {bogus: 1, ");
    let errors = parse_str(&text).unwrap_err().to_string();
    assert!(errors.contains("routes[0].auth"), "{errors}");
    assert!(errors.contains("unknown field `bogus`"), "{errors}");
}

#[test]
fn unknown_roles_and_short_secrets_are_reported() {
    let text = base()
        .replace("roles: [admin]", "roles: [root]")
        .replace("secret: ${SECRET}", "secret: short");
    let errors = parse_str(&text).unwrap_err().to_string();
    assert!(errors.contains("routes[0].auth.roles[0]"), "{errors}");
    assert!(
        errors.contains("keys[0].secret: must be at least 32 bytes"),
        "{errors}"
    );
    assert!(!errors.contains("short"), "the secret leaked: {errors}");
}

#[test]
fn substituted_secrets_never_appear_in_messages() {
    // A secret put where a number is expected would be echoed by the YAML parser.
    let text = base().replace(
        "listen: 127.0.0.1:0",
        "listen: 127.0.0.1:0\nthreads: ${SECRET}",
    );
    let errors = parse_str(&text).unwrap_err().to_string();
    assert!(errors.contains("threads"), "{errors}");
    assert!(
        !errors.contains("very-secret"),
        "the secret leaked: {errors}"
    );
}

#[test]
fn literal_values_are_not_echoed_by_type_errors() {
    let text = base().replace(
        "listen: 127.0.0.1:0",
        "listen: 127.0.0.1:0\nthreads: hunter2-password",
    );
    let errors = parse_str(&text).unwrap_err().to_string();
    assert!(!errors.contains("hunter2"), "{errors}");
}

#[test]
fn reserved_identity_headers_are_refused() {
    // Credentials, connection and framing headers, and the headers the gateway or proxies set:
    // from a claim, an HTTP/1 upstream would get a second line beside the gateway's own.
    for name in [
        "Authorization",
        "X-Forwarded-For",
        "x-forwarded-proto",
        "X-Real-IP",
        "Forwarded",
        "Via",
        "Expect",
        "Proxy-Connection",
        "HTTP2-Settings",
        "Max-Forwards",
        "Content-Type",
        // The request's path, method, scheme, host or client address by another name: the
        // upstream would act on another request than the one the policy judged.
        "X-Original-URL",
        "X-HTTP-Method-Override",
        "True-Client-IP",
    ]
    .into_iter()
    .chain(crate::request::REQUEST_VIEW_HEADERS.iter().copied())
    {
        let text = base().replace("X-User-Id: sub", &format!("{name}: sub"));
        let errors = parse_str(&text).unwrap_err().to_string();
        assert!(
            errors.contains(&format!("routes[0].identityHeaders.{name}"))
                && errors.contains("cannot be set from a claim"),
            "{name}: {errors}"
        );
    }
}

#[test]
fn identity_headers_with_unconventional_names_are_refused() {
    // A name a framework reads as another (`X.User.Id` as `X-User-Id`): the gateway strips a
    // client's header of that name, but would forward the client's `X-User-Id` beside it.
    for name in [
        "X_User_Id",
        "X.User.Id",
        "X~User",
        "X-Auth!",
        "X-User'Id",
        "X+Id",
        "X*",
    ] {
        let text = base().replace("X-User-Id: sub", &format!("\"{name}\": sub"));
        let errors = parse_str(&text).unwrap_err().to_string();
        assert!(
            errors.contains("routes[0].identityHeaders.")
                && errors.contains("other than letters, digits and -"),
            "{name}: {errors}"
        );
    }
    // Other auth proxies' user headers stay available (an upstream moved from one keeps them).
    for name in [
        "X-Forwarded-User",
        "X-Auth-Request-Email",
        "Remote-User",
        "X-User-Id-2",
    ] {
        let text = base().replace("X-User-Id: sub", &format!("{name}: sub"));
        assert!(parse_str(&text).is_ok(), "{name}");
    }
}

#[test]
fn an_identity_header_spelled_twice_on_a_route_is_refused() {
    let text = base().replace("X-User-Id: sub", "X-User-Id: sub, x-user-id: email");
    let errors = parse_str(&text).unwrap_err().to_string();
    assert!(
        errors.contains("routes[0].identityHeaders.x-user-id")
            && errors.contains("already set by another spelling"),
        "{errors}"
    );
}

#[test]
fn demo_key_is_flagged() {
    let text = base().replace("${API_KEY}", DEMO_API_KEY);
    assert!(parse_str(&text).expect("valid").uses_demo_api_key);
}

#[test]
fn upstream_urls_are_parsed() {
    let u = parse_upstream("https://example.com").expect("ok");
    assert_eq!(u.address, "example.com:443");
    assert!(u.tls);
    let u = parse_upstream("http://127.0.0.1:8080/").expect("ok");
    assert_eq!(u.address, "127.0.0.1:8080");
    assert!(parse_upstream("http://h/path").is_err());
    assert!(parse_upstream("http://h:notaport").is_err());
    assert_eq!(
        parse_upstream("http://[::1]").expect("ok").address,
        "[::1]:80"
    );
    assert_eq!(
        parse_upstream("h2c://[::1]:50051").expect("ok").address,
        "[::1]:50051"
    );
    for bad in [
        "http://[::1",
        "http://[::1]x",
        "http://h:0",
        "http://h:65536",
        "http://h h",
        "http://:80",
        "http://h:+80",
        "http://h:",
        "http://::1",
        "http://[::1]:+443",
    ] {
        assert!(parse_upstream(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_value_written_into_a_key_is_not_echoed_in_paths_or_messages() {
    // `secret:VALUE` without the space YAML needs makes the value part of the key.
    let glued = base().replace(
        "secret: ${SECRET}}",
        "secret:HMACSECRETVALUE0123456789012345678901234567}",
    );
    let errors = parse_str(&glued).unwrap_err().to_string();
    assert!(errors.contains("keys[0].secret:…"), "{errors}");
    assert!(!errors.contains("HMACSECRETVALUE"), "{errors}");
    let glued_env = base().replace("  - key: ${API_KEY}", "  - {key:${API_KEY}}");
    let errors = parse_str(&glued_env).unwrap_err().to_string();
    assert!(errors.contains("apiKeys[0].key:…"), "{errors}");
    let api_key = env("API_KEY").expect("set");
    assert!(!errors.contains(&api_key), "{errors}");
    for glued in ["password=HUNTER2SECRETVAL", "token HUNTER3SECRETVAL"] {
        let text = base().replace(
            "  - key: ${API_KEY}",
            &format!("  - key: x\n    {glued}: 1"),
        );
        let errors = parse_str(&text).unwrap_err().to_string();
        assert!(!errors.contains("SECRETVAL"), "{errors}");
    }
    let long = format!("  - key: x\n    {}: 1", "k".repeat(80));
    let errors = parse_str(&base().replace("  - key: ${API_KEY}", &long))
        .unwrap_err()
        .to_string();
    assert!(!errors.contains(&"k".repeat(17)), "{errors}");
}

#[test]
fn credentials_in_an_upstream_url_are_refused_and_never_echoed() {
    for url in [
        "http://user:SECRETPW@127.0.0.1:1",
        "https://admin:SECRETPW@upstream.example.internal",
    ] {
        let errors = parse_str(&base().replace("http://127.0.0.1:9", url))
            .unwrap_err()
            .to_string();
        assert!(errors.contains("must not hold credentials"), "{errors}");
        assert!(!errors.contains("SECRETPW"), "{errors}");
    }
}

#[test]
fn http2_upstreams_are_named_by_their_scheme() {
    for (url, address, tls, http2) in [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", false, false),
        ("https://example.com", "example.com:443", true, false),
        ("h2c://127.0.0.1:50051", "127.0.0.1:50051", false, true),
        ("h2c://grpc.internal", "grpc.internal:80", false, true),
        ("h2://grpc.example.com", "grpc.example.com:443", true, true),
        ("h2://[::1]:8443/", "[::1]:8443", true, true),
    ] {
        let u = parse_upstream(url).expect(url);
        assert_eq!(
            (u.address.as_str(), u.tls, u.http2),
            (address, tls, http2),
            "{url}"
        );
    }
    for url in ["h2c://h/path", "grpc://h:1", "h3://h:1", "H2C//h"] {
        assert!(parse_upstream(url).is_err(), "{url}");
    }
}

#[test]
fn listen_options_are_read_and_checked_against_tls() {
    let config = parse_str(&base()).expect("valid");
    assert_eq!(
        config.protocols,
        super::ListenProtocols {
            http2: true,
            h2c: false
        }
    );
    let text = format!("listenOptions: {{h2c: true}}\n{}", base());
    let config = parse_str(&text).expect("valid");
    assert!(config.protocols.h2c);
    let text = format!("listenOptions: {{h2c: true, http2: false}}\n{}", base());
    let errors = parse_str(&text).expect_err("h2c without http2").to_string();
    assert!(errors.contains("listenOptions.h2c"), "{errors}");
    let text = format!("listenOptions: {{http3: true}}\n{}", base());
    let errors = parse_str(&text).expect_err("unknown key").to_string();
    assert!(errors.contains("listenOptions"), "{errors}");
}

#[test]
fn a_file_with_several_mistakes_gets_every_one_with_its_line_and_column_in_one_run() {
    let text = format!(
        "{}  - path: /b\n    upstream: http://127.0.0.1:9\n    bogus: 1\n",
        base().replace(
            &format!("applicationId: {APP}"),
            "applicationId: 44444444-4444-4444-4444-444444444444",
        )
    );
    let line_of = |needle: &str| 1 + text.lines().position(|l| l.contains(needle)).expect("line");
    let errors = parse_str(&text).unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    let unknown = lines
        .iter()
        .find(|l| l.starts_with("routes[1].bogus: unknown field"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    let at = format!("(line {}, column 5)", line_of("bogus: 1"));
    assert!(unknown.ends_with(&at), "{unknown}");
    let application = lines
        .iter()
        .find(|l| l.starts_with("routes[0].auth.applicationId: no application"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    let at = format!("(line {}, column 12)", line_of("applicationId: 4444"));
    assert!(application.ends_with(&at), "{application}");
}

#[test]
fn shape_problems_are_in_plain_words_and_each_reported_once() {
    let cases = [
        ("listen: 127.0.0.1:0", "listen: 18081"),
        ("  - path: /\n", "  - path: 7\n"),
        ("upstream: http://127.0.0.1:9", "upstream: [a]"),
        ("issuer: acme.com}", "issuer: acme.com, jwtConfiguration: {timeToLiveInSeconds: x, refreshTokenUsagePolicy: 5, refreshTokenExpirationPolicy: [1]}}"),
        ("roles: [admin]", "roles: admin, enabled: 3, refresh: {}"),
        ("store: sqlite://test.db", "store: sqlite://test.db\nthreads: -2\nlimits: {maxBodyBytes: 1.5}\nlog: [x]\ncookies: {secure: 1}\nshutdownTimeoutSeconds: x\nvalidation: {cacheCapacity: -1}"),
        ("name: App", "name: {a: 1}"),
        ("{id: 3", "{id: x3"),
    ];
    for (from, to) in cases {
        let text = base().replacen(from, to, 1);
        assert_ne!(text, base(), "{from}");
        let errors = parse_str(&text).expect_err(to).0;
        let mut paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for e in &errors {
            assert!(!wording::has_jargon(&e.message), "{to}: {e}");
            assert!(!e.message.contains("missing field"), "{to}: {e}");
            assert!(e.message.contains("(line "), "{to}: {e}");
        }
        paths.sort_unstable();
        let before = paths.len();
        paths.dedup();
        assert_eq!(before, paths.len(), "{to}: {errors:?}");
    }
    let errors = parse_str("listen: 18081\n").expect_err("listen").0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "listen: invalid type: expected an address such as 127.0.0.1:9011, found a whole number (line 1, column 1)"
    );
}

#[test]
fn the_api_section_sets_threads_and_bounds_within_their_ranges() {
    let defaults = parse_str(&base()).expect("valid").api;
    assert_eq!(defaults.threads, 1, "half of the default 2 threads");
    assert_eq!(defaults.time_limit, std::time::Duration::from_secs(10));
    assert_eq!(defaults.max_in_flight, 128);
    let set = parse_str(&format!(
        "{}threads: 8\napi: {{threads: 3, timeLimitSeconds: 30, maxInFlight: 16}}\n",
        base()
    ))
    .expect("valid")
    .api;
    assert_eq!(set.threads, 3);
    assert_eq!(set.time_limit, std::time::Duration::from_secs(30));
    assert_eq!(set.max_in_flight, 16);
    assert_eq!(
        parse_str(&format!("{}threads: 8\n", base()))
            .expect("valid")
            .api
            .threads,
        4
    );
    for (field, value) in [
        ("threads", "0"),
        ("timeLimitSeconds", "0"),
        ("timeLimitSeconds", "301"),
        ("maxInFlight", "0"),
    ] {
        let errors = parse_str(&format!("{}api: {{{field}: {value}}}\n", base()))
            .expect_err("refused")
            .to_string();
        assert!(
            errors.contains(&format!("api.{field}: must be")),
            "{errors}"
        );
    }
    let errors = parse_str(&format!("{}api: {{queue: 5}}\n", base()))
        .expect_err("refused")
        .to_string();
    assert!(errors.contains("queue"), "{errors}");
}

#[test]
fn a_non_url_issuer_is_a_warning() {
    let tenant = |issuer: &str| {
        serde_json::from_value::<Tenant>(
            serde_json::json!({"id": uuid::Uuid::new_v4(), "name": "t", "issuer": issuer}),
        )
        .expect("tenant")
    };
    let tenants = [
        tenant("https://auth.example.com"),
        tenant("acme.com"),
        tenant("http://127.0.0.1:9011"),
        tenant("https://"),
        tenant("urn:example"),
    ];
    let warnings = issuer_warnings(&tenants);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings[0].starts_with("tenants[1].issuer:"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with("tenants[3].issuer:"),
        "{warnings:?}"
    );
}

/// The problems of `text` as `path: message` lines (empty when it is valid).
#[test]
fn a_login_route_without_a_declared_provider_is_a_warning_naming_the_api() {
    let routes = format!(
        "  - path: /web\n    upstream: http://127.0.0.1:9\n    auth: {{applicationId: {APP}, login: true}}\n"
    );
    let login = "plugins: {identity-provider: {}}\nlogin: {publicOrigin: https://app.example}\n";
    let config = parse_str(&format!("{login}{}{routes}", base())).expect("valid: a warning only");
    let web = (config.routes.iter())
        .find(|r| r.index == 1)
        .expect("the /web route");
    assert_eq!(
        web.auth.login_path.as_deref(),
        Some(format!("/app/login/{APP}").as_str())
    );
    let warnings = login_warnings(&config);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("routes[1].auth.login: no enabled OpenIDConnect"),
        "{warnings:?}"
    );
    assert!(
        warnings[0].contains("created through the API are not seen"),
        "{warnings:?}"
    );
    // The store's documents (or the file's) with one for the application: no warning; one
    // disabled, or for another application, or of another type: still one.
    let provider = |enabled: bool, app: &str, kind: &str| {
        serde_json::json!({"type": kind, "enabled": enabled,
                           "applicationConfiguration": {app: {"enabled": true}}})
    };
    let served = [provider(true, APP, "OpenIDConnect")];
    assert!(login::routes_without_provider(&config.routes, &served).is_empty());
    for unserved in [
        provider(false, APP, "OpenIDConnect"),
        provider(true, TENANT, "OpenIDConnect"),
        provider(true, APP, "ExternalJWT"),
    ] {
        let found = login::routes_without_provider(&config.routes, &[unserved]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "routes[1].auth.login");
    }
}

fn problems_of(text: &str) -> Vec<String> {
    match parse_str(text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn forward_auth_is_read_with_its_trusted_proxies() {
    let text = format!(
        "{}forwardAuth: {{path: /_gatehouse/auth, trustedProxies: [127.0.0.1/32, '::1/128', 10.1.2.3]}}\n",
        base()
    );
    let config = parse_str(&text).expect("valid");
    let fa = config.forward_auth.expect("forwardAuth");
    assert_eq!(fa.path, "/_gatehouse/auth");
    let ranges: Vec<String> = fa.trusted_proxies.iter().map(ToString::to_string).collect();
    assert_eq!(ranges, ["127.0.0.1/32", "::1/128", "10.1.2.3/32"]);
    assert!(parse_str(&base()).expect("valid").forward_auth.is_none());
}

#[test]
fn forward_auth_paths_and_proxies_are_checked() {
    for (section, expected) in [
        (
            "{path: /, trustedProxies: [127.0.0.1]}",
            "forwardAuth.path: must name a path of its own",
        ),
        (
            "{path: /auth/, trustedProxies: [127.0.0.1]}",
            "forwardAuth.path: must name a path of its own",
        ),
        (
            "{path: auth, trustedProxies: [127.0.0.1]}",
            "forwardAuth.path: must start with /",
        ),
        (
            "{path: /a/../../b, trustedProxies: [127.0.0.1]}",
            "forwardAuth.path: has no canonical form",
        ),
        (
            "{path: /health, trustedProxies: [127.0.0.1]}",
            "forwardAuth.path: is a path the gateway serves itself",
        ),
        (
            "{path: /API/auth, trustedProxies: [127.0.0.1]}",
            "forwardAuth.path: is a path the gateway serves itself",
        ),
        (
            "{path: /.well-known/x, trustedProxies: [127.0.0.1]}",
            "forwardAuth.path: is a path the gateway serves itself",
        ),
        (
            "{path: /_gatehouse/auth}",
            "forwardAuth.trustedProxies: list the proxies",
        ),
        (
            "{path: /_gatehouse/auth, trustedProxies: [nginx]}",
            "forwardAuth.trustedProxies[0]: must be an IP address",
        ),
        (
            "{path: /_gatehouse/auth, trustedProxies: [127.0.0.1], extra: 1}",
            "forwardAuth.extra: unknown field `extra`",
        ),
    ] {
        let problems = problems_of(&format!("{}forwardAuth: {section}\n", base()));
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{section}: {problems:?}"
        );
    }
}

#[test]
fn a_route_may_leave_out_its_upstream_only_with_forward_auth() {
    let route = "  - path: /decided\n    auth: {required: true}\n";
    let without = problems_of(&format!("{}{route}", base()));
    assert!(
        without.iter().any(
            |p| p.starts_with("routes[1].upstream: a route needs an upstream")
                && p.contains("forwardAuth")
        ),
        "{without:?}"
    );
    let with = format!(
        "{}{route}forwardAuth: {{path: /_gatehouse/auth, trustedProxies: [127.0.0.1]}}\n",
        base()
    );
    let config = parse_str(&with).expect("valid");
    let decided = config
        .routes
        .iter()
        .find(|r| r.path == "/decided")
        .expect("route");
    assert!(decided.upstreams.is_empty());
}

#[test]
fn with_forward_auth_no_claim_may_speak_for_the_decision_and_no_route_hides_under_it() {
    let forward_auth = "forwardAuth: {path: /_gatehouse/auth, trustedProxies: [127.0.0.1]}\n";
    for (route, expected) in [
        (
            "  - {path: /a, upstream: 'http://127.0.0.1:9', identityHeaders: {Set-Cookie: sub}}\n",
            "routes[1].identityHeaders.Set-Cookie: this header is part of the forward-auth answer",
        ),
        (
            "  - {path: /a, upstream: 'http://127.0.0.1:9', identityHeaders: {X-Gatehouse-Set-Cookie-Access: email}}\n",
            "routes[1].identityHeaders.X-Gatehouse-Set-Cookie-Access: this header is part of the forward-auth answer",
        ),
        (
            "  - {path: /a, upstream: 'http://127.0.0.1:9', identityHeaders: {location: sub}}\n",
            "routes[1].identityHeaders.location: this header is part of the forward-auth answer",
        ),
        (
            "  - {path: /_gatehouse/auth/x, upstream: 'http://127.0.0.1:9'}\n",
            "routes[1].path: is at or under forwardAuth.path (/_gatehouse/auth)",
        ),
        (
            "  - {path: /_gatehouse/auth, upstream: 'http://127.0.0.1:9'}\n",
            "routes[1].path: is at or under forwardAuth.path (/_gatehouse/auth)",
        ),
    ] {
        let problems = problems_of(&format!("{}{route}{forward_auth}", base()));
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{route}: {problems:?}"
        );
        // Without forward-auth these are a request header and a route like any other.
        assert_eq!(problems_of(&format!("{}{route}", base())), Vec::<String>::new());
    }
    // A route beside the endpoint, and one judged in decisions only under it, are fine.
    for route in [
        "  - {path: /_gatehouse, upstream: 'http://127.0.0.1:9'}\n",
        "  - {path: /_gatehouse/authx, upstream: 'http://127.0.0.1:9'}\n",
        "  - {path: /_gatehouse/auth/x}\n",
    ] {
        let problems = problems_of(&format!("{}{route}{forward_auth}", base()));
        assert_eq!(problems, Vec::<String>::new(), "{route}");
    }
}

#[test]
fn past_the_cap_on_shape_problems_a_last_line_says_there_are_more() {
    let mut text = "listen: 127.0.0.1:1\nstore: sqlite://test.db\nroutes:\n".to_string();
    for i in 0..100 {
        text.push_str(&format!(
            "  - path: /p{i}\n    upstream: http://127.0.0.1:1\n    bogus{i}: 1\n"
        ));
    }
    let errors = parse_str(&text).unwrap_err();
    assert_eq!(errors.0.len(), 65);
    let last = errors.0.last().expect("a last line").to_string();
    assert!(
        last.starts_with("reading stopped after these 64 problems"),
        "{last}"
    );
}

#[test]
fn listeners_that_would_take_each_others_connections_are_refused() {
    let with = |extra: &str, listen: &str| {
        parse_str(&format!(
            "{}{extra}",
            base().replace("listen: 127.0.0.1:0", &format!("listen: \"{listen}\""))
        ))
    };
    for (extra, listen, field) in [
        (
            "admin: {listen: 127.0.0.1:7001}\ndemoUpstream: {listen: 127.0.0.1:7001}\n",
            "127.0.0.1:7000",
            "demoUpstream.listen",
        ),
        (
            "admin: {listen: 127.0.0.1:7000}\n",
            "0.0.0.0:7000",
            "admin.listen",
        ),
        (
            "admin: {listen: 127.0.0.1:7000}\n",
            "[::]:7000",
            "admin.listen",
        ),
        (
            "demoUpstream: {listen: 0.0.0.0:7000}\n",
            "127.0.0.1:7000",
            "demoUpstream.listen",
        ),
    ] {
        let errors = with(extra, listen).unwrap_err().to_string();
        assert!(
            errors.contains(&format!("{field}: must differ")),
            "{extra}: {errors}"
        );
    }
    // Another port, or the other family beside a specific address: fine.
    assert!(with("admin: {listen: 127.0.0.1:7001}\n", "0.0.0.0:7000").is_ok());
    assert!(with("admin: {listen: \"[::1]:7000\"}\n", "0.0.0.0:7000").is_ok());
}

#[test]
fn a_route_that_differs_from_another_by_a_trailing_slash_under_another_policy_is_a_warning() {
    let text = base().replace(
        "    identityHeaders: {X-User-Id: sub}\n",
        "    identityHeaders: {X-User-Id: sub}\n  - path: /admin\n    upstream: http://127.0.0.1:9\n    auth: {applicationId: APP, roles: [admin]}\n  - path: /admin/\n    upstream: http://127.0.0.1:9\n    auth: {enabled: false}\n",
    )
    .replace("applicationId: APP", &format!("applicationId: {APP}"));
    let config = parse_str(&text).expect("valid");
    let warnings = route_warnings(&config.routes);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .starts_with("routes[2].path: `/admin/` takes every path under routes[1]'s `/admin`"),
        "{warnings:?}"
    );
    // The same policy: no warning.
    let same = text.replace(
        "    auth: {enabled: false}\n",
        &format!("    auth: {{applicationId: {APP}, roles: [admin]}}\n"),
    );
    assert!(route_warnings(&parse_str(&same).expect("valid").routes).is_empty());
}

#[test]
fn a_claim_key_holding_a_glued_value_is_cut_like_any_key() {
    // A claim's name is a key like any other in messages: `name:value` written without
    // YAML's space is cut at the `:`, at the claim and inside its value alike.
    for claims in [
        "{\"pw:HUNTER2CLAIMNAME..x\": 1}",
        "{tier: {\"password:HUNTER2NESTED\": {1: x}}}",
    ] {
        let text = base().replace(
            "roles: [admin]}",
            &format!("roles: [admin], claims: {claims}}}"),
        );
        let errors = parse_str(&text).unwrap_err().to_string();
        assert!(errors.contains("routes[0].auth.claims."), "{errors}");
        assert!(!errors.contains("HUNTER2"), "{errors}");
        assert!(errors.contains("(line 18, column"), "{errors}");
    }
}

#[test]
fn syntax_errors_unknown_variants_and_cut_secrets_echo_nothing_written() {
    let cases = [
        base().replace(
            "routes:",
            "logx:\n  secret:HUNTER2DUP: 1\n  secret:HUNTER2DUP: 2\nroutes:",
        ),
        base().replace("routes:", "bogus: {pw:HUNTER2SYN: {a: 1, a: 2}}\nroutes:"),
        base().replace(
            "name: App",
            "name: App\n    jwtConfiguration: {refreshTokenExpirationPolicy: HUNTER2VARIANT}",
        ),
    ];
    for text in cases {
        let errors = parse_str(&text).unwrap_err().to_string();
        assert!(!errors.contains("HUNTER2"), "{errors}");
        assert!(errors.contains("(line "), "{errors}");
    }
    // A substituted secret in a key is scrubbed whole before the key is cut to 16 characters.
    let long = format!("SECRET{}", "A".repeat(74));
    let text = base().replace("  - key: ${API_KEY}", "  - {key: x, ${LONG}: 1}");
    let errors = parse(&text, Path::new("/tmp"), |name: &str| match name {
        "LONG" => Some(long.clone()),
        other => env(other),
    })
    .unwrap_err()
    .to_string();
    assert!(!errors.contains("SECRETAAAA"), "{errors}");
}

#[test]
fn every_number_has_an_upper_bound_named_with_its_path_and_line() {
    let huge = u64::MAX;
    let cases = [
        (
            format!("shutdownTimeoutSeconds: {huge}\n"),
            "shutdownTimeoutSeconds: must be at most 3600",
        ),
        (
            format!("limits: {{maxBodyBytes: {huge}}}\n"),
            "limits.maxBodyBytes: must be between 1 and 1073741824",
        ),
        (
            format!("limits: {{maxHeaderBytes: {huge}}}\n"),
            "limits.maxHeaderBytes: must be between 1024 and 1048575",
        ),
        (
            format!("validation: {{cacheCapacity: {huge}}}\n"),
            "validation.cacheCapacity: must be at most 100000000",
        ),
        (
            format!("validation: {{cacheMaxBytes: {huge}}}\n"),
            "validation.cacheMaxBytes: must be between 1048576 (1 MiB) and 1099511627776",
        ),
    ];
    for (extra, expected) in cases {
        let problems = problems_of(&format!("{}{extra}", base()));
        assert_eq!(problems.len(), 1, "{extra}: {problems:?}");
        assert!(problems[0].starts_with(expected), "{extra}: {problems:?}");
        assert!(problems[0].contains("(line 20, "), "{problems:?}");
    }
    let within = "shutdownTimeoutSeconds: 3600\nlimits: {maxBodyBytes: 1073741824, maxHeaderBytes: 1048575}\nvalidation: {cacheCapacity: 0, cacheMaxBytes: 1099511627776}\n";
    let config = parse_str(&format!("{}{within}", base())).expect("valid");
    assert_eq!(config.shutdown_timeout_seconds, 3600);
    assert_eq!(config.token_cache_capacity, 0);
}

#[test]
fn token_lifetimes_are_capped_as_the_api_caps_them() {
    let with = |jwt: &str| {
        problems_of(&base().replace(
            "issuer: acme.com}",
            &format!("issuer: acme.com, jwtConfiguration: {{{jwt}}}}}"),
        ))
    };
    let max = i32::MAX;
    assert_eq!(
        with(&format!("timeToLiveInSeconds: {max}")),
        Vec::<String>::new()
    );
    let cases = [
        ("timeToLiveInSeconds: 9223372036854775807", "timeToLiveInSeconds"),
        ("timeToLiveInSeconds: 2147483648", "timeToLiveInSeconds"),
        ("timeToLiveInSeconds: 0", "timeToLiveInSeconds"),
        (
            "refreshTokenTimeToLiveInMinutes: 9223372036854775807",
            "refreshTokenTimeToLiveInMinutes",
        ),
        (
            "refreshTokenSlidingWindowConfiguration: {maximumTimeToLiveInMinutes: 9223372036854775807}",
            "refreshTokenSlidingWindowConfiguration.maximumTimeToLiveInMinutes",
        ),
    ];
    for (jwt, field) in cases {
        let problems = with(jwt);
        let expected = format!(
            "tenants[0].jwtConfiguration.{field}: must be between 1 and 2147483647 (line 9"
        );
        assert_eq!(problems.len(), 1, "{jwt}: {problems:?}");
        assert!(problems[0].starts_with(&expected), "{jwt}: {problems:?}");
    }
    let app = base().replace(
        "    name: App\n",
        "    name: App\n    jwtConfiguration: {timeToLiveInSeconds: 9223372036854775807}\n",
    );
    let problems = problems_of(&app);
    assert!(
        problems[0].starts_with(
            "applications[0].jwtConfiguration.timeToLiveInSeconds: must be between 1 and 2147483647 (line 14"
        ),
        "{problems:?}"
    );
}

#[test]
fn the_log_level_is_a_level_or_directives_naming_one() {
    for level in [
        "info",
        "WARN",
        "off",
        "debug,gatehouse=trace",
        "gatehouse::access=off",
    ] {
        let text = format!("{}log: {{level: \"{level}\"}}\n", base());
        assert_eq!(parse_str(&text).expect(level).log_level, level);
    }
    for level in ["loud", "", "info,loud", "gatehouse=loud"] {
        let problems = problems_of(&format!("{}log: {{level: \"{level}\"}}\n", base()));
        assert_eq!(problems.len(), 1, "{level}: {problems:?}");
        assert!(
            problems[0]
                .starts_with("log.level: must be a level (trace, debug, info, warn, error or off)")
                && problems[0].contains("(line 20"),
            "{level}: {problems:?}"
        );
    }
}

#[test]
fn a_postgres_url_the_store_would_refuse_is_refused_with_its_line() {
    let with = |url: &str| problems_of(&base().replace("sqlite://test.db", url));
    let ok = "postgres://gatehouse:pw@127.0.0.1:5432/db?connect_timeout=5&sslmode=disable";
    assert_eq!(with(ok), Vec::<String>::new());
    let cases = [
        ("postgres://u:p@h/db?bogus=1", "unknown option `bogus`"),
        (
            "postgres://u:p@h/db?connect_timeout=abc",
            "invalid value for option `connect_timeout`",
        ),
        ("postgres://u:p@h:99999/db", "not a valid PostgreSQL URL"),
        (
            "postgres://u:secret-pw@[::1/db",
            "not a valid PostgreSQL URL",
        ),
        ("postgres://", "names no host"),
        ("postgres://u:p@:5432/db", "names an empty host"),
        ("\"sqlite://:memory:\"", "in-memory"),
        ("sqlite://data/g.db?mode=memory", "in-memory"),
        ("sqlite://data/g.db?cache=shared", "not URL options"),
        ("sqlite:///", "needs a file path"),
        ("sqlite://data/", "needs a file path"),
        ("postgres://u:p@h:0/db", "names port 0"),
        (
            "postgres://u:p@h/db?sslmode=require",
            "the store connects without TLS",
        ),
        (
            "postgresql://u:p@h/db?channel_binding=require",
            "channel binding needs TLS",
        ),
    ];
    for (url, expected) in cases {
        let problems = with(url);
        assert_eq!(problems.len(), 1, "{url}: {problems:?}");
        assert!(
            problems[0].starts_with("store: ")
                && problems[0].contains(expected)
                && problems[0].contains("(line 3, column 1)"),
            "{url}: {problems:?}"
        );
        assert!(!problems[0].contains("secret-pw"), "{problems:?}");
    }
    // No password: a warning (the server may let the user in without one).
    let config = parse_str(&base().replace("sqlite://test.db", "postgresql://u@127.0.0.1/db"))
        .expect("valid");
    assert_eq!(store_warnings(&config).len(), 1);
    let config = parse_str(&base().replace("sqlite://test.db", ok)).expect("valid");
    assert!(store_warnings(&config).is_empty());
}

#[test]
fn a_byte_order_mark_at_the_start_is_read_past() {
    let config = parse_str(&format!("\u{FEFF}{}", base())).expect("valid");
    assert_eq!(config.routes.len(), 1);
    let problems = problems_of(&format!("\u{FEFF}{}bogus: 1\n", base()));
    assert!(
        problems[0].starts_with("bogus: unknown field"),
        "{problems:?}"
    );
    assert!(problems[0].contains("(line 20, column 1)"), "{problems:?}");
}

#[test]
fn an_empty_variable_is_an_empty_string_and_a_trailing_comment_is_not_substituted() {
    let lookup = |name: &str| match name {
        "EMPTY" => Some(String::new()),
        other => env(other),
    };
    let text = base().replace("name: Default", "name: ${EMPTY}");
    let problems = match parse(&text, Path::new("/tmp"), lookup) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("tenants[0].name: must not be blank"),
        "{problems:?}"
    );
    let text = format!("{}threads: 2 # ${{NOT_SET_ANYWHERE}}\n", base());
    assert_eq!(parse_str(&text).expect("valid").threads, 2);
}

#[test]
fn cookies_are_secure_when_browsers_reach_the_gateway_over_https() {
    let login = |origin: &str| {
        format!("plugins: {{identity-provider: {{}}}}\nlogin: {{publicOrigin: {origin}}}\n")
    };
    for (extra, secure) in [
        (String::new(), false),
        (login("http://127.0.0.1:8080"), false),
        (login("https://app.example"), true),
        (login("HTTPS://app.example"), true),
        ("cookies: {secure: true}\n".to_string(), true),
    ] {
        let config = parse_str(&format!("{extra}{}", base())).expect("valid");
        assert_eq!(config.secure_cookies, secure, "{extra}");
    }
}

#[test]
fn api_keys_the_store_cannot_index_are_refused() {
    let with_key =
        |key: &str| base().replace("  - key: ${API_KEY}", &format!("  - key: \"{key}\""));
    assert!(parse_str(&with_key(&"k".repeat(1024))).is_ok());
    let errors = parse_str(&with_key(&"k".repeat(1025)))
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("apiKeys[0].key: must be at most 1024 bytes"),
        "{errors}"
    );
    let errors = parse_str(&with_key("an-api-key-with-a-\\0-in-it"))
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("apiKeys[0].key: must not hold control characters"),
        "{errors}"
    );
}
