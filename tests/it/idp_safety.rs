//! The identity-provider plugin's safety through the binary: pending links bounded in count
//! and bytes (a replayed login reuses one, a huge provider refresh token is refused, the
//! process does not grow); `verificationKeyIds` naming keys of the gateway's ring; a reconcile
//! lambda giving a user another user's email or username answered 400 at once, on SQLite and
//! PostgreSQL.

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use uuid::Uuid;

use super::identity_provider::{ext_claims, ExternalKey, Idp};
use super::kit::*;

/// The harness on a gateway started with `options`.
fn idp_with(options: Options) -> Idp {
    Idp {
        gw: TestGateway::start_with(options),
        http: client(),
    }
}

/// The gateway's resident memory, in bytes (Linux `/proc`).
fn rss_bytes(gw: &TestGateway) -> u64 {
    let pid = gw.pid().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number");
    kb * 1024
}

/// The pending link id of a `CreatePendingLink` login that answered 200.
fn pending_id(response: reqwest::blocking::Response) -> String {
    let body = check_status(response, 200);
    body["pendingIdPLinkId"]
        .as_str()
        .unwrap_or_else(|| panic!("no pending link id: {body}"))
        .to_string()
}

/// The statuses of `GET /api/identity-provider/link/pending/{id}` for `ids`.
fn pending_statuses(t: &Idp, ids: &[String]) -> Vec<u16> {
    ids.iter()
        .map(|id| {
            t.get(&format!("/api/identity-provider/link/pending/{id}"))
                .status()
                .as_u16()
        })
        .collect()
}

#[test]
fn pending_links_are_bounded_and_a_replayed_login_reuses_one() {
    let t = idp_with(Options {
        identity_provider: "maxPendingLinks: 5, maxPendingLinksPerProvider: 3, \
                            maxPendingLinkBytesPerProvider: 20000"
            .into(),
        max_body_bytes: 1 << 20,
        ..Default::default()
    });
    let key = ExternalKey::generate(Algorithm::HS256);
    let pending_provider = || {
        t.provider(json!({"keys": {"k": key.verifying}, "linkingStrategy": "CreatePendingLink"}))
    };
    let (idp, idp2, idp3) = (pending_provider(), pending_provider(), pending_provider());
    let token_of = |sub: &str| key.sign(Some("k"), None, &ext_claims(sub, None, json!({})));

    // One external JWT replayed, with a provider refresh token a pending link may keep: one
    // pending link, the same id every time, its token never shown.
    let replayed = token_of("ext-replayed");
    let refresh = "r".repeat(8_000);
    let first = pending_id(t.login(idp, &replayed, json!({"refresh_token": refresh})));
    for _ in 0..30 {
        let again = t.login(idp, &replayed, json!({"refresh_token": refresh}));
        assert_eq!(pending_id(again), first);
    }
    let shown = check_status(
        t.get(&format!("/api/identity-provider/link/pending/{first}")),
        200,
    );
    assert_eq!(
        shown["pendingIdPLink"]["identityProviderUserId"],
        "ext-replayed"
    );
    assert!(!shown.to_string().contains("rrrr"), "{shown}");

    // A 900 KB provider refresh token is refused, naming where it was given, echoing nothing;
    // replaying it does not grow the process.
    let huge = "h".repeat(900 * 1024);
    for (extra, field) in [
        (json!({"refresh_token": huge}), "refresh_token"),
        (
            json!({"data": {"refresh_token": huge}}),
            "data.refresh_token",
        ),
    ] {
        let body = check_status(t.login(idp, &token_of("ext-huge"), extra), 400);
        assert_eq!(
            body["fieldErrors"][field][0]["code"],
            format!("[tooLarge]{field}"),
            "{body}"
        );
        assert!(!body.to_string().contains("hhhh"));
    }
    let before = rss_bytes(&t.gw);
    for _ in 0..100 {
        let r = t.login(idp, &token_of("ext-huge"), json!({"refresh_token": huge}));
        assert_eq!(r.status().as_u16(), 400);
    }
    let grown = rss_bytes(&t.gw).saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "100 logins with a 900 KB token grew the gateway by {grown} bytes"
    );

    // Count per provider: of six provider users, the three newest pending links are kept.
    let ids: Vec<String> = (0..6)
        .map(|i| pending_id(t.login(idp, &token_of(&format!("ext-{i}")), json!({}))))
        .collect();
    assert_eq!(pending_statuses(&t, &ids), [404, 404, 404, 200, 200, 200]);
    assert_eq!(
        pending_statuses(&t, std::slice::from_ref(&first)),
        [404],
        "the oldest went first"
    );

    // Bytes per provider: 20000 bytes hold two links with an 8000-byte token, not three.
    let heavy: Vec<String> = (0..3)
        .map(|i| {
            let token = token_of(&format!("ext-heavy-{i}"));
            pending_id(t.login(idp2, &token, json!({"refresh_token": refresh})))
        })
        .collect();
    assert_eq!(pending_statuses(&t, &heavy), [404, 200, 200]);

    // In total five: a link of a third provider evicts the oldest of all (provider one's).
    let third = pending_id(t.login(idp3, &token_of("ext-third"), json!({})));
    assert_eq!(pending_statuses(&t, &ids[3..]), [404, 200, 200]);
    assert_eq!(pending_statuses(&t, std::slice::from_ref(&third)), [200]);

    // A kept link completes; an evicted one is answered as an expired one.
    let user = t.gw.login("linker@example.com", &["user"]);
    let complete = |id: &str| {
        t.post(
            "/api/identity-provider/link",
            &json!({"pendingIdPLinkId": id, "identityProviderLink": {"userId": user.user_id}}),
        )
    };
    let linked = check_status(complete(&third), 200);
    assert_eq!(
        linked["identityProviderLink"]["identityProviderUserId"],
        "ext-third"
    );
    let evicted = check_status(complete(&ids[0]), 400);
    assert!(
        evicted["fieldErrors"]["pendingIdPLinkId"].is_array(),
        "{evicted}"
    );
}

/// A key of the gateway's ring as an external provider would sign with it, under `algorithm`.
fn ring_signer(gw: &TestGateway, key: Algorithm, algorithm: Algorithm) -> (String, ExternalKey) {
    let (id, _, private) = gw.keys.get(key);
    let signer = ExternalKey {
        algorithm,
        signing: private.clone(),
        verifying: String::new(),
    };
    (id.to_string(), signer)
}

#[test]
fn verification_key_ids_name_keys_of_the_gateways_ring() {
    let t = Idp::start();
    let (rs_id, rs) = ring_signer(&t.gw, Algorithm::RS256, Algorithm::RS256);
    let (es_id, es) = ring_signer(&t.gw, Algorithm::ES256, Algorithm::ES256);
    let (ps_id, ps) = ring_signer(&t.gw, Algorithm::PS384, Algorithm::PS384);
    let (_, rs_as_rs384) = ring_signer(&t.gw, Algorithm::RS256, Algorithm::RS384);
    let hs_id = t.gw.keys.get(Algorithm::HS256).0.to_string();

    let idp = t.provider(json!({
        "linkingStrategy": "LinkAnonymously",
        "verificationKeyIds": [rs_id.to_uppercase(), es_id, rs_id],
    }));
    let got = check_status(t.get(&format!("/api/identity-provider/{idp}")), 200);
    assert_eq!(
        got["identityProvider"]["verificationKeyIds"],
        json!([rs_id, es_id]),
        "canonical ids, each once"
    );

    let n = std::cell::Cell::new(0);
    let claims = || {
        n.set(n.get() + 1);
        ext_claims(&format!("vk-{}", n.get()), None, json!({}))
    };
    let status = |token: String| t.login(idp, &token, json!({})).status().as_u16();
    assert_eq!(
        status(es.sign(Some(&es_id), None, &claims())),
        200,
        "kid names a listed key"
    );
    assert_eq!(status(rs.sign(Some(&rs_id), None, &claims())), 200);
    assert_eq!(
        status(rs.sign(None, None, &claims())),
        200,
        "no kid: the first listed key"
    );
    assert_eq!(
        status(es.sign(None, None, &claims())),
        401,
        "no kid: not the second key"
    );
    assert_eq!(
        status(rs_as_rs384.sign(Some(&rs_id), None, &claims())),
        401,
        "the key's own algorithm only"
    );
    assert_eq!(
        status(ps.sign(Some(&ps_id), None, &claims())),
        401,
        "not listed"
    );

    // PATCH appends a key; then it verifies.
    let patched = t.patch(
        &format!("/api/identity-provider/{idp}"),
        "application/json",
        &json!({"identityProvider": {"verificationKeyIds": [ps_id]}}),
    );
    let patched = check_status(patched, 200);
    assert_eq!(
        patched["identityProvider"]["verificationKeyIds"],
        json!([rs_id, es_id, ps_id])
    );
    assert_eq!(status(ps.sign(Some(&ps_id), None, &claims())), 200);

    // Every id must name a key of the gateway that can verify: on create, update and patch.
    let field = "identityProvider.verificationKeyIds";
    let refused = |response: reqwest::blocking::Response, code: &str| {
        let body = check_status(response, 400);
        assert_eq!(
            body["fieldErrors"][field][0]["code"],
            format!("[{code}]{field}"),
            "{body}"
        );
    };
    let doc = |ids: Value| {
        json!({"identityProvider": {"name": format!("vk {}", Uuid::new_v4()), "type": "ExternalJWT",
            "headerKeyParameter": "kid", "verificationKeyIds": ids}})
    };
    refused(
        t.post("/api/identity-provider", &doc(json!([hs_id]))),
        "cannotVerify",
    );
    refused(
        t.post("/api/identity-provider", &doc(json!([Uuid::new_v4()]))),
        "missing",
    );
    refused(
        t.post("/api/identity-provider", &doc(json!(["nope"]))),
        "invalid",
    );
    refused(
        t.post("/api/identity-provider", &doc(json!("x"))),
        "invalid",
    );
    let put = t
        .http
        .put(t.gw.url(&format!("/api/identity-provider/{idp}")))
        .header("Authorization", API_KEY)
        .json(&doc(json!([rs_id, hs_id])))
        .send()
        .expect("send");
    refused(put, "cannotVerify");
    let merge = t.patch(
        &format!("/api/identity-provider/{idp}"),
        "application/merge-patch+json",
        &json!({"identityProvider": {"verificationKeyIds": [Uuid::new_v4()]}}),
    );
    refused(merge, "missing");
    let kept = check_status(t.get(&format!("/api/identity-provider/{idp}")), 200);
    assert_eq!(
        kept["identityProvider"]["verificationKeyIds"],
        json!([rs_id, es_id, ps_id]),
        "a refused change writes nothing"
    );
}

const STEALING_LAMBDA: &str = "function reconcile(user, registration, jwt) {\n  \
    if (jwt.take_email) { user.email = jwt.take_email; }\n  \
    if (jwt.take_username) { user.username = jwt.take_username; }\n}";

/// Logins whose lambda gives the user another user's email or username: a 400 at once naming
/// the field, nothing written, no start-over in the debug log.
fn a_taken_email_or_username_is_a_400_at_once(t: &Idp) {
    let key = ExternalKey::generate(Algorithm::ES256);
    let lambda = check_status(
        t.post(
            "/api/lambda",
            &json!({"lambda": {"name": "steal", "type": "ExternalJWTReconcile", "body": STEALING_LAMBDA}}),
        ),
        200,
    );
    let by_email = t.provider(json!({
        "keys": {"k": key.verifying}, "linkingStrategy": "LinkByEmail", "debug": true,
        "lambdaConfiguration": {"reconcileId": lambda["lambda"]["id"]},
    }));
    let by_username =
        t.provider(json!({"keys": {"k": key.verifying}, "linkingStrategy": "LinkByUsername"}));
    let login = |idp: Uuid, sub: &str, email: &str, extra: Value| {
        let token = key.sign(Some("k"), None, &ext_claims(sub, Some(email), extra));
        t.login(idp, &token, json!({}))
    };
    let bob = check_status(
        login(
            by_username,
            "ext-bob",
            "bob@example.com",
            json!({"preferred_username": "bob"}),
        ),
        200,
    );
    assert_eq!(bob["user"]["username"], "bob");
    check_status(
        login(by_email, "ext-ann", "ann@example.com", json!({})),
        200,
    );

    let cases = [
        (
            "ext-ann",
            "ann@example.com",
            json!({"take_email": "BOB@example.com"}),
            "user.email",
        ),
        (
            "ext-ann",
            "ann@example.com",
            json!({"take_username": "Bob"}),
            "user.username",
        ),
        // a new user, whose lambda-set email is taken
        (
            "ext-carol",
            "carol@example.com",
            json!({"take_email": "bob@example.com"}),
            "user.email",
        ),
    ];
    for (sub, email, extra, field) in cases {
        let body = check_status(login(by_email, sub, email, extra), 400);
        let code = &body["fieldErrors"][field][0]["code"];
        assert_eq!(code, &json!(format!("[duplicate]{field}")), "{body}");
        assert!(
            !body.to_string().to_lowercase().contains("bob"),
            "echoes nothing: {body}"
        );
    }
    // Nothing was written: ann keeps her email, carol does not exist, bob is unchanged.
    let ann = check_status(t.get("/api/user?email=ann@example.com"), 200);
    assert_eq!(ann["user"]["username"], Value::Null);
    assert_eq!(
        t.get("/api/user?email=carol@example.com").status().as_u16(),
        404
    );
    let bob_now = check_status(t.get("/api/user?email=bob@example.com"), 200);
    assert_eq!(bob_now["user"]["id"], bob["user"]["id"]);
    // No attempt started over.
    let retried = check_status(
        t.post(
            "/api/system/event-log/search",
            &json!({"search": {"message": "starting over"}}),
        ),
        200,
    );
    assert_eq!(retried["total"], 0, "{retried}");
    let answered = check_status(
        t.post(
            "/api/system/event-log/search",
            &json!({"search": {"message": "another user's; nothing was saved"}}),
        ),
        200,
    );
    assert_eq!(answered["total"], 3, "{answered}");
    // The same logins without the lambda's taking still work.
    check_status(
        login(by_email, "ext-ann", "ann@example.com", json!({})),
        200,
    );
}

#[test]
fn a_taken_email_or_username_is_a_400_at_once_on_sqlite() {
    a_taken_email_or_username_is_a_400_at_once(&Idp::start());
}

#[test]
fn a_taken_email_or_username_is_a_400_at_once_on_postgres() {
    let db = super::postgres::Database::create();
    let t = idp_with(Options {
        store_url: Some(db.url.clone()),
        ..Default::default()
    });
    a_taken_email_or_username_is_a_400_at_once(&t);
}

/// The harness on a gateway whose second application ([`OTHER_APP`]) is in the other tenant,
/// the one [`TENANT_API_KEY`] is locked to.
fn idp_across_tenants() -> Idp {
    let options = Options::default();
    let mut gw = TestGateway::start_with(options.clone());
    let (in_first, in_other) = (
        format!("  - id: {OTHER_APP}\n    tenantId: {TENANT}\n"),
        format!("  - id: {OTHER_APP}\n    tenantId: {OTHER_TENANT}\n"),
    );
    let text = gw.config_text(&options);
    assert!(text.contains(&in_first), "{text}");
    std::fs::write(&gw.config_path, text.replace(&in_first, &in_other)).expect("config");
    gw.restart();
    Idp { gw, http: client() }
}

/// `GET path` with the API key `key`: status and JSON body (`Null` when empty).
fn get_with(t: &Idp, key: &str, path: &str) -> (u16, Value) {
    let response = (t.http.get(t.gw.url(path)).header("Authorization", key))
        .send()
        .expect("send");
    let status = response.status().as_u16();
    let text = response.text().expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Links `user` to `idp` as `external` with the provider refresh token `secret`, by `key`.
fn link(t: &Idp, key: &str, idp: Uuid, external: &str, user: &str, secret: &str) {
    let link = json!({"identityProviderLink": {"identityProviderId": idp,
        "identityProviderUserId": external, "userId": user, "token": secret}});
    let response = (t.http.post(t.gw.url("/api/identity-provider/link")))
        .header("Authorization", key)
        .json(&link)
        .send()
        .expect("send");
    check_status(response, 200);
}

#[test]
fn a_tenants_key_reads_no_other_tenants_links_and_one_external_id_is_never_guessed() {
    let t = idp_across_tenants();
    let key = ExternalKey::generate(Algorithm::HS256);
    let both = json!({"enabled": true, "createRegistration": true});
    let idp = t.provider(json!({"keys": {"k": key.verifying},
        "linkingStrategy": "CreatePendingLink",
        "applicationConfiguration": {APP: both, OTHER_APP: both}}));
    // Ann, of the first tenant, linked to the global provider with its refresh token.
    let ann = t.gw.login("ann-links@example.com", &[]).user_id;
    link(&t, API_KEY, idp, "shared-id", &ann, "FIRST-TENANT-SECRET");
    // A login to the other tenant's application: a pending link of that tenant, which its
    // key may read.
    let token = key.sign(Some("k"), None, &ext_claims("shared-id", None, json!({})));
    let login = json!({"applicationId": OTHER_APP, "identityProviderId": idp,
        "encodedJWT": token});
    let response = (t.http.post(t.gw.url("/api/identity-provider/login")))
        .json(&login)
        .send()
        .expect("send");
    let pending = pending_id(response);
    let path = format!("/api/identity-provider/link/pending/{pending}?userId={ann}");
    let (status, seen) = get_with(&t, TENANT_API_KEY, &path);
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["linkCount"], 0, "{seen}");
    assert_eq!(seen["pendingIdPLink"]["identityProviderLinks"], json!([]));
    assert!(!seen.to_string().contains("FIRST-TENANT-SECRET"), "{seen}");
    assert!(!seen.to_string().contains(&ann), "{seen}");
    // The global key sees Ann's link there.
    let (status, seen) = get_with(&t, API_KEY, &path);
    assert_eq!(
        (status, seen["linkCount"].clone()),
        (200, json!(1)),
        "{seen}"
    );

    // Bob, of the other tenant, linked to the same provider with the same external id.
    let bob =
        t.gw.login_to(OTHER_APP, "bob-links@example.com", &[])
            .user_id;
    link(
        &t,
        TENANT_API_KEY,
        idp,
        "shared-id",
        &bob,
        "OTHER-TENANT-SECRET",
    );
    let one =
        |key: &str, query: &str| get_with(&t, key, &format!("/api/identity-provider/link?{query}"));
    // Without the provider an external id names no single link (the TypeScript client's
    // `retrieveUserLink(null, id, null)`): a 400, nothing guessed.
    for query in [
        "identityProviderUserId=shared-id".to_string(),
        "identityProviderId=null&identityProviderUserId=shared-id&userId=null".to_string(),
    ] {
        let (status, body) = one(API_KEY, &query);
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(
            body["fieldErrors"]["identityProviderId"][0]["code"],
            "[blank]identityProviderId"
        );
    }
    // Linked in both tenants: the global key must say which user (or tenant) it means.
    let both_tenants = format!("identityProviderId={idp}&identityProviderUserId=shared-id");
    let (status, body) = one(API_KEY, &both_tenants);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["generalErrors"][0]["code"], "[AmbiguousRequest]");
    let (status, body) = one(API_KEY, &format!("{both_tenants}&userId={ann}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["identityProviderLink"]["userId"], ann.as_str());
    // Each tenant's key finds its own.
    let (status, body) = one(TENANT_API_KEY, &both_tenants);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["identityProviderLink"]["userId"], bob.as_str());
}

/// Runs `count` calls of `call` at once; their statuses and bodies.
fn at_once(
    count: usize,
    call: &(dyn Fn(usize) -> reqwest::blocking::Response + Sync),
) -> Vec<(u16, Value)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .map(|i| {
                s.spawn(move || {
                    let response = call(i);
                    let status = response.status().as_u16();
                    (status, response.json().unwrap_or(Value::Null))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect()
    })
}

#[test]
fn racing_logins_and_link_creates_for_one_provider_user_leave_one_link() {
    let t = Idp::start();
    let key = ExternalKey::generate(Algorithm::HS256);
    let anonymous = t.provider(json!({"keys": {"k": key.verifying},
        "linkingStrategy": "LinkAnonymously"}));
    // Logins racing for one new provider user: one user, every login logged in as it.
    let token = key.sign(Some("k"), None, &ext_claims("ext-race", None, json!({})));
    let answers = at_once(10, &|_| t.login(anonymous, &token, json!({})));
    let users: std::collections::BTreeSet<String> = (answers.iter())
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["user"]["id"].as_str().expect("user id").to_string()
        })
        .collect();
    assert_eq!(users.len(), 1, "{users:?}");
    let links = check_status(
        t.get(&format!(
            "/api/identity-provider/link?identityProviderId={anonymous}&identityProviderUserId=ext-race"
        )),
        200,
    );
    assert!(users.contains(
        links["identityProviderLink"]["userId"]
            .as_str()
            .expect("user")
    ));

    // Link creates racing for one provider user, each for another user: one is linked, the
    // others are told so; never a 200 whose link another one replaced.
    let linkable = t.provider(json!({"keys": {"k": key.verifying},
        "linkingStrategy": "CreatePendingLink",
        "tenantConfiguration": {TENANT: {"limitUserLinkCount":
            {"enabled": true, "maximumLinks": 2}}}}));
    let people: Vec<String> = (0..8)
        .map(|i| t.gw.login(&format!("racer-{i}@example.com"), &[]).user_id)
        .collect();
    let create = |external: String, user: &str| {
        t.post(
            "/api/identity-provider/link",
            &json!({"identityProviderLink": {"identityProviderId": linkable,
                "identityProviderUserId": external, "userId": user}}),
        )
    };
    let answers = at_once(8, &|i| create("ext-shared".into(), &people[i]));
    let won: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 400, "{body}");
        assert_eq!(
            body["generalErrors"][0]["code"],
            "[duplicate]identityProviderLink"
        );
    }
    let stored = check_status(
        t.get(&format!(
            "/api/identity-provider/link?identityProviderId={linkable}&identityProviderUserId=ext-shared"
        )),
        200,
    );
    assert_eq!(
        stored["identityProviderLink"]["userId"],
        won[0]["identityProviderLink"]["userId"]
    );

    // Creates racing for one user, each another provider user: the limit holds.
    let answers = at_once(8, &|i| create(format!("ext-many-{i}"), &people[1]));
    let written = answers.iter().filter(|(s, _)| *s == 200).count();
    let mine = check_status(
        t.get(&format!(
            "/api/identity-provider/link?identityProviderId={linkable}&userId={}",
            people[1]
        )),
        200,
    );
    let held = mine["identityProviderLinks"]
        .as_array()
        .expect("links")
        .len();
    assert!(
        held <= 2
            && held
                == written
                    + usize::from(won[0]["identityProviderLink"]["userId"] == people[1].as_str()),
        "{answers:?} {mine}"
    );
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 400, "{body}");
        assert_eq!(body["generalErrors"][0]["code"], "[LinkLimitReached]");
    }
}

#[test]
fn a_lambda_deleted_while_a_provider_names_it_leaves_no_dangling_reference() {
    let t = Idp::start();
    let body = "function reconcile(user, registration, jwt) { user.data.x = 1; }";
    for round in 0..6 {
        let created = check_status(
            t.post(
                "/api/lambda",
                &json!({"lambda": {"name": format!("race {round}"),
                    "type": "ExternalJWTReconcile", "body": body}}),
            ),
            200,
        );
        let lambda = created["lambda"]["id"].as_str().expect("id").to_string();
        let idp = t.provider(json!({"keys": {"k": "secret"}}));
        let naming = json!({"identityProvider": {"lambdaConfiguration": {"reconcileId": lambda}}});
        let answers = at_once(2, &|i| match i {
            0 => t.patch(
                &format!("/api/identity-provider/{idp}"),
                "application/json",
                &naming,
            ),
            _ => t.delete(&format!("/api/lambda/{lambda}")),
        });
        let (patched, deleted) = (answers[0].0, answers[1].0);
        // One of the two wins: a provider never names a lambda that is gone.
        assert!(
            (patched, deleted) == (200, 400) || (patched, deleted) == (400, 200),
            "{answers:?}"
        );
        let provider = check_status(t.get(&format!("/api/identity-provider/{idp}")), 200);
        let named = provider["identityProvider"]["lambdaConfiguration"]["reconcileId"].clone();
        let exists = t.get(&format!("/api/lambda/{lambda}")).status().as_u16() == 200;
        assert_eq!(
            named.as_str() == Some(lambda.as_str()),
            exists,
            "{provider}"
        );
    }
}
