//! A cluster on PostgreSQL: two gateways sharing one database see each other's logins,
//! one-time-use rotations (the grace period answers on either node) and revocations, and a
//! restarted gateway keeps everything. Three-node behaviour is in `cluster.rs`.
//!
//! The server comes from `GATEHOUSE_TEST_POSTGRES_URL`, else `scripts/bootstrap`'s
//! (`postgres://gatehouse:gatehouse@127.0.0.1:5432/postgres`) when it answers; without either
//! the tests fail and say how to start one. Each test creates its own database and drops it.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_postgres::NoTls;
use uuid::Uuid;

use super::kit::*;

/// The server the tests use when `GATEHOUSE_TEST_POSTGRES_URL` is unset.
const DEFAULT_URL: &str = "postgres://gatehouse:gatehouse@127.0.0.1:5432/postgres";

/// How to get a server, for failure messages.
const HOW_TO: &str = "the PostgreSQL tests need a server: run `bash scripts/bootstrap` \
     (installs PostgreSQL, starts it on 127.0.0.1:5432 and creates the role gatehouse/gatehouse \
     with CREATEDB), or set GATEHOUSE_TEST_POSTGRES_URL=postgres://USER:PASSWORD@HOST:PORT/postgres \
     for a role that may create databases";

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// The test server's URL: `GATEHOUSE_TEST_POSTGRES_URL`, else the bootstrap default when
/// something answers on its port; fails the test otherwise.
fn server_url() -> String {
    if let Ok(url) = std::env::var("GATEHOUSE_TEST_POSTGRES_URL") {
        if !url.trim().is_empty() {
            return url;
        }
    }
    let answers = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], 5432)),
        Duration::from_secs(2),
    )
    .is_ok();
    assert!(
        answers,
        "GATEHOUSE_TEST_POSTGRES_URL is unset and nothing answers on 127.0.0.1:5432; {HOW_TO}"
    );
    DEFAULT_URL.to_string()
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, params) = match url.split_once('?') {
        Some((base, params)) => (base, format!("?{params}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{server}/{name}{params}")
}

/// A database of its own on the test server, dropped when this is dropped.
pub struct Database {
    admin_url: String,
    name: String,
    /// The `store:` URL of the database.
    pub url: String,
}

impl Database {
    pub fn create() -> Database {
        let admin_url = server_url();
        let name = format!("gh_test_{}", Uuid::new_v4().simple());
        block_on(async {
            let (client, connection) = tokio_postgres::connect(&admin_url, NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to the test server ({e}); {HOW_TO}"));
            tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e:?}; {HOW_TO}"));
        });
        Database {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
        }
    }

    /// Runs one query returning a count in the database.
    pub fn count(&self, sql: &str, id: Uuid) -> i64 {
        block_on(async {
            let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
                .await
                .expect("connect to the test database");
            tokio::spawn(connection);
            client
                .query_one(sql, &[&id])
                .await
                .expect("count")
                .get::<_, i64>(0)
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let dropped = block_on(async {
            let (client, connection) = tokio_postgres::connect(&self.admin_url, NoTls).await?;
            tokio::spawn(connection);
            client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await
        });
        if let Err(e) = dropped {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}

/// Options for a gateway on `db`, with a refreshing `/app` route and `app_jwt` settings.
pub fn options(db: &Database, app_jwt: &str) -> Options {
    Options {
        app_jwt: app_jwt.into(),
        extra_routes: format!(
            "  - path: /app\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, refresh: true, loginUrl: /login}}\n    identityHeaders: {{X-User-Id: sub}}\n"
        ),
        store_url: Some(db.url.clone()),
        ..Default::default()
    }
}

fn refresh(node: &TestGateway, refresh_token: &str) -> reqwest::blocking::Response {
    client()
        .post(node.url("/api/jwt/refresh"))
        .json(&json!({ "refreshToken": refresh_token }))
        .send()
        .expect("send")
}

pub fn status_with_token(node: &TestGateway, token: &str) -> u16 {
    node.get_as("/x", token).status().as_u16()
}

pub fn cookie_value(response: &reqwest::blocking::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let (k, v) = c.split(';').next()?.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

#[test]
fn two_gateways_on_one_postgres_database_share_rotations_and_revocations() {
    let db = Database::create();
    let jwt = "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse, \
               refreshTokenOneTimeUseConfiguration: {gracePeriodInSeconds: 60}";
    let node_a = TestGateway::start_with(options(&db, jwt));
    let node_b = node_a.start_peer(&options(&db, jwt));

    // A login (stored in PostgreSQL by `gatehouse token --refresh` on node A's config).
    let session = node_a.login("pg-cluster@example.com", &["user"]);
    for node in [&node_a, &node_b] {
        assert_eq!(status_with_token(node, &session.token), 200);
    }

    // A one-time-use refresh through node A rotates the value.
    let rotated = check_status(refresh(&node_a, &session.refresh_token), 200);
    let successor = rotated["refreshToken"].as_str().expect("refreshToken");
    let successor_access = rotated["token"].as_str().expect("token");
    assert_ne!(successor, session.refresh_token, "OneTimeUse rotates");

    // Inside the grace period, node B answers the retired value with the same pair: through
    // the API and at the edge.
    let late = check_status(refresh(&node_b, &session.refresh_token), 200);
    assert_eq!(late["refreshToken"].as_str(), Some(successor));
    assert_eq!(late["token"].as_str(), Some(successor_access));
    let edge = client()
        .get(node_b.url("/app/late"))
        .header("Cookie", format!("refresh_token={}", session.refresh_token))
        .send()
        .expect("send");
    assert_eq!(edge.status().as_u16(), 200);
    assert_eq!(
        cookie_value(&edge, "refresh_token").as_deref(),
        Some(successor)
    );
    assert_eq!(
        cookie_value(&edge, "access_token").as_deref(),
        Some(successor_access)
    );
    // The database holds exactly one rotation of the token.
    let token_id = Uuid::parse_str(&session.refresh_token_id).expect("refresh token id");
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM rotated_refresh_tokens WHERE token_id = $1",
            token_id
        ),
        1
    );
    // The successor is live on node B.
    let again = check_status(refresh(&node_b, successor), 200);
    let latest = again["refreshToken"].as_str().expect("refreshToken");

    // Revoking the user's tokens on node A: refused there at once, on node B within 2 s.
    let revoked = client()
        .delete(node_a.url(&format!("/api/jwt/refresh?userId={}", session.user_id)))
        .header("Authorization", API_KEY)
        .send()
        .expect("send");
    assert_eq!(revoked.status().as_u16(), 200);
    assert_eq!(status_with_token(&node_a, &session.token), 401);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if status_with_token(&node_b, &session.token) == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node B still accepts the revoked token after 2 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status_with_token(&node_b, successor_access), 401);
    // And the refresh token is gone for both nodes.
    for node in [&node_a, &node_b] {
        check_status(refresh(node, latest), 400);
    }
}

#[test]
fn a_gateway_on_postgres_keeps_its_data_across_a_restart() {
    let db = Database::create();
    let mut gw = TestGateway::start_with(options(
        &db,
        "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: Reusable",
    ));
    let kept = gw.login("pg-kept@example.com", &["user"]);
    let gone = gw.login("pg-gone@example.com", &["user"]);
    let revoked = client()
        .delete(gw.url(&format!("/api/jwt/refresh?userId={}", gone.user_id)))
        .header("Authorization", API_KEY)
        .send()
        .expect("send");
    assert_eq!(revoked.status().as_u16(), 200);

    gw.restart();

    // Users, refresh tokens and revocations are still there.
    let user = check_status(
        client()
            .get(gw.url("/api/user?email=PG-KEPT@example.com"))
            .header("Authorization", API_KEY)
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(user["user"]["id"], kept.user_id.as_str());
    assert_eq!(status_with_token(&gw, &kept.token), 200);
    let refreshed = check_status(refresh(&gw, &kept.refresh_token), 200);
    assert_eq!(
        status_with_token(&gw, refreshed["token"].as_str().expect("token")),
        200
    );
    assert_eq!(status_with_token(&gw, &gone.token), 401);
    check_status(refresh(&gw, &gone.refresh_token), 400);
}

#[test]
fn the_database_name_of_a_url_is_replaced() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres", "x"),
        "postgres://u:p@h:5432/x"
    );
    assert_eq!(
        with_database("postgresql://u:p@h/postgres?connect_timeout=3", "x"),
        "postgresql://u:p@h/x?connect_timeout=3"
    );
    assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
}
