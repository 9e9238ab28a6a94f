//! The shared test suite of the plugin API's storage ports ([`Directory`] reads, [`UserStore`],
//! [`RefreshTokenStore`]): one named async test per behaviour, generated for a backend with
//! [`store_port_suite!`](crate::store_port_suite). Every implementation runs it: SQLite,
//! PostgreSQL, and the in-memory store of the plugin tests, so the fake behaves as the real
//! ones do.
//!
//! Compiled only with the `store-suite` feature (test builds).

use async_trait::async_trait;

use crate::model::{Application, RefreshToken, Registration, Tenant, User};
use crate::store::{Directory, RefreshTokenStore, RevokeScope, Rotation, Store, StoreError};
use crate::tokens::RevocationScope;
use uuid::Uuid;

/// A store under test: the ports, and a way to put tenants and applications in its directory
/// (written by the host from configuration, so not part of the plugin ports).
#[async_trait]
pub trait SuiteStore: Store {
    /// Inserts or replaces these tenants and applications.
    async fn seed(&self, tenants: &[Tenant], applications: &[Application]);
}

/// What a test keeps alive while it runs (a temporary file or database, say) and the store on it.
pub trait SuiteFixture {
    /// The store under test.
    fn store(&self) -> &dyn SuiteStore;
}

/// Generates `#[tokio::test]` functions, one per suite test, each on a fresh fixture from the
/// given `async fn() -> impl SuiteFixture`.
#[macro_export]
macro_rules! store_port_suite {
    ($fixture:path) => {
        $crate::store_port_suite!(@each $fixture;
            directory_reads_seeded_tenants_and_applications,
            users_are_unique_per_tenant_ignoring_case,
            users_are_found_by_email_and_username,
            updating_a_user_replaces_it_and_a_missing_one_is_not_found,
            updating_a_user_to_a_taken_email_is_a_conflict,
            user_keys_over_the_indexed_limits_are_refused_and_found_nowhere,
            users_are_found_by_email_across_tenants,
            registrations_are_kept_per_user_and_application,
            refresh_tokens_are_found_by_their_exact_value,
            a_token_made_beside_another_is_stored_only_while_its_source_is,
            a_touch_records_the_use,
            a_refresh_subject_is_read_with_its_token,
            a_value_is_rotated_once_and_later_callers_get_the_outcome,
            rotating_an_unknown_value_is_not_found,
            retired_values_are_found_as_rotations,
            revoking_by_value_then_by_user_and_application,
            revoking_refresh_tokens_records_edge_revocations,
            revocations_keep_the_latest_instant_and_drop_old_ones,
            rotation_outcomes_and_retired_values_are_pruned,
            concurrent_refresh_writes_keep_each_outcome
        );
    };
    (@each $fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let fixture = $fixture().await;
                $crate::store_suite::$name($crate::store_suite::SuiteFixture::store(&fixture)).await;
            }
        )*
    };
}

/// The tenant every test uses.
pub const TENANT: Uuid = Uuid::from_u128(0x1111);
/// The application every test uses.
pub const APP: Uuid = Uuid::from_u128(0x2222);
/// The user every test uses.
pub const USER: Uuid = Uuid::from_u128(0x3333);

/// The suite's tenant.
pub fn tenant() -> Tenant {
    Tenant {
        id: TENANT,
        name: "Default".into(),
        issuer: "acme.com".into(),
        jwt_configuration: Default::default(),
        data: None,
    }
}

/// The suite's application.
pub fn application() -> Application {
    Application {
        id: APP,
        tenant_id: TENANT,
        name: "App".into(),
        roles: vec![],
        login_configuration: Default::default(),
        jwt_configuration: Default::default(),
        active: true,
        data: None,
    }
}

/// A live refresh token of the suite's user and application.
pub fn token(id: Uuid, value: &str) -> RefreshToken {
    RefreshToken {
        id,
        token: value.into(),
        user_id: USER,
        application_id: Some(APP),
        tenant_id: TENANT,
        insert_instant: 1,
        start_instant: 1,
        first_issued_instant: 1,
        expiration_instant: 10_000,
        meta_data: Default::default(),
    }
}

fn ann() -> User {
    User {
        id: USER,
        tenant_id: TENANT,
        email: Some("Ann@Example.com".into()),
        username: Some("ann".into()),
        ..Default::default()
    }
}

async fn seeded(store: &dyn SuiteStore) {
    store.seed(&[tenant()], &[application()]).await;
}

/// Seeded tenants and applications are read back; unknown ids are `None`.
pub async fn directory_reads_seeded_tenants_and_applications(store: &dyn SuiteStore) {
    seeded(store).await;
    let mut renamed = tenant();
    renamed.name = "Renamed".into();
    store.seed(&[renamed.clone()], &[]).await;
    assert_eq!(store.get_tenant(TENANT).await.expect("get"), Some(renamed));
    assert_eq!(store.list_tenants().await.expect("list").len(), 1);
    assert!(store
        .get_tenant(Uuid::from_u128(9))
        .await
        .expect("get")
        .is_none());
    assert_eq!(
        store.get_application(APP).await.expect("get"),
        Some(application())
    );
    assert_eq!(
        Directory::list_applications(store).await.expect("list"),
        vec![application()]
    );
    assert!(store
        .get_application(Uuid::from_u128(9))
        .await
        .expect("get")
        .is_none());
}

/// A second user with the same email in the tenant (in any case) is a conflict.
pub async fn users_are_unique_per_tenant_ignoring_case(store: &dyn SuiteStore) {
    seeded(store).await;
    store.create_user(&ann()).await.expect("user");
    let mut clash = ann();
    clash.id = Uuid::from_u128(0x3334);
    clash.username = None;
    clash.email = Some("ANN@example.com".into());
    assert!(matches!(
        store.create_user(&clash).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.get_user(clash.id).await.expect("get").is_none());
}

/// Email and username lookups ignore case and stay within their tenant.
pub async fn users_are_found_by_email_and_username(store: &dyn SuiteStore) {
    seeded(store).await;
    store.create_user(&ann()).await.expect("user");
    let by_email = store.find_user_by_email(TENANT, "ann@example.COM").await;
    assert_eq!(by_email.expect("find").map(|u| u.id), Some(USER));
    let by_username = store.find_user_by_username(TENANT, "ANN").await;
    assert_eq!(by_username.expect("find").map(|u| u.id), Some(USER));
    let elsewhere = store
        .find_user_by_email(Uuid::from_u128(1), "ann@example.com")
        .await;
    assert!(elsewhere.expect("find").is_none());
}

/// `update_user` replaces the stored user; a user never created is `NotFound`.
pub async fn updating_a_user_replaces_it_and_a_missing_one_is_not_found(store: &dyn SuiteStore) {
    seeded(store).await;
    store.create_user(&ann()).await.expect("user");
    let mut updated = ann();
    updated.first_name = Some("Ann".into());
    store.update_user(&updated).await.expect("update");
    assert_eq!(store.get_user(USER).await.expect("get"), Some(updated));
    let mut stranger = ann();
    stranger.id = Uuid::from_u128(0x3335);
    assert_eq!(
        store.update_user(&stranger).await,
        Err(StoreError::NotFound)
    );
}

/// An update cannot take another user's email (in any case); the user is left as it was.
pub async fn updating_a_user_to_a_taken_email_is_a_conflict(store: &dyn SuiteStore) {
    seeded(store).await;
    store.create_user(&ann()).await.expect("user");
    let mut bob = ann();
    bob.id = Uuid::from_u128(0x3336);
    bob.email = Some("bob@example.com".into());
    bob.username = None;
    store.create_user(&bob).await.expect("user");
    let mut taking = bob.clone();
    taking.email = Some("ANN@example.com".into());
    assert!(matches!(
        store.update_user(&taking).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_user(bob.id).await.expect("get"), Some(bob));
}

/// Text of exactly `bytes` bytes that no compression shrinks much and that grows when
/// lower-cased (a third of its characters are `İ`, which becomes `i̇`), from `seed`: the worst
/// case for an index entry of the lower-cased value.
pub fn incompressible(bytes: usize, seed: u64) -> String {
    const ASCII: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut text = String::with_capacity(bytes);
    while text.len() < bytes {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let pick = (state >> 33) as usize;
        if pick.is_multiple_of(3) && bytes - text.len() >= 2 {
            text.push('İ');
        } else {
            text.push(char::from(ASCII[pick % ASCII.len()]));
        }
    }
    text
}

/// An email or username at its limit ([`crate::indexed`]), however it lower-cases, is stored
/// and found; one byte more, or a NUL, is refused on every backend and nothing is written; a
/// lookup of a value no row can hold finds nothing.
pub async fn user_keys_over_the_indexed_limits_are_refused_and_found_nowhere(
    store: &dyn SuiteStore,
) {
    use crate::indexed::{MAX_EMAIL_BYTES, MAX_USERNAME_BYTES};
    seeded(store).await;
    let mut longest = ann();
    longest.email = Some(format!(
        "{}@{}",
        incompressible(64, 1),
        incompressible(MAX_EMAIL_BYTES - 65, 2)
    ));
    longest.username = Some(incompressible(MAX_USERNAME_BYTES, 3));
    store.create_user(&longest).await.expect("at the limits");
    let email = longest.email.clone().unwrap_or_default();
    let found = store.find_user_by_email(TENANT, &email).await;
    assert_eq!(found.expect("find").map(|u| u.id), Some(USER));
    let username = longest.username.clone().unwrap_or_default();
    let found = store.find_user_by_username(TENANT, &username).await;
    assert_eq!(found.expect("find").map(|u| u.id), Some(USER));

    let over = [
        (Some(format!("{email}x")), None),
        (Some("a\0b@example.com".to_string()), None),
        (None, Some(format!("{username}x"))),
        (None, Some(incompressible(3000, 4))),
        (None, Some("a\0b".to_string())),
    ];
    for (i, (email, username)) in over.into_iter().enumerate() {
        let user = User {
            id: Uuid::from_u128(0x4000 + i as u128),
            email,
            username,
            ..ann()
        };
        let created = store.create_user(&user).await;
        assert!(
            matches!(created, Err(StoreError::Backend(_))),
            "{i}: {created:?}"
        );
        assert_eq!(store.get_user(user.id).await.expect("get"), None);
        let updated = store.update_user(&User { id: USER, ..user }).await;
        assert!(
            matches!(updated, Err(StoreError::Backend(_))),
            "{i}: {updated:?}"
        );
    }
    assert_eq!(store.get_user(USER).await.expect("get"), Some(longest));

    for value in [
        "a\0b".to_string(),
        incompressible(3000, 5),
        format!("{email}x"),
    ] {
        assert_eq!(store.find_user_by_email(TENANT, &value).await, Ok(None));
        assert_eq!(store.find_user_by_username(TENANT, &value).await, Ok(None));
        let anywhere = store.find_users_by_email_any_tenant(&value).await;
        assert_eq!(anywhere, Ok(Vec::new()));
    }
}

/// Users are found by email whatever their tenant.
pub async fn users_are_found_by_email_across_tenants(store: &dyn SuiteStore) {
    seeded(store).await;
    store.create_user(&ann()).await.expect("user");
    let found = store
        .find_users_by_email_any_tenant("ANN@example.com")
        .await;
    assert_eq!(found.expect("find").len(), 1);
    let none = store
        .find_users_by_email_any_tenant("bob@example.com")
        .await;
    assert!(none.expect("find").is_empty());
}

/// Ann's registration to [`APP`] with the role `user`.
fn ann_registration() -> Registration {
    Registration {
        id: Uuid::from_u128(0x5555),
        application_id: APP,
        user_id: Some(USER),
        roles: vec!["user".into()],
        ..Default::default()
    }
}

/// A registration is stored per user and application, and replaced on upsert.
pub async fn registrations_are_kept_per_user_and_application(store: &dyn SuiteStore) {
    seeded(store).await;
    store.create_user(&ann()).await.expect("user");
    let mut registration = ann_registration();
    store
        .upsert_registration(&registration)
        .await
        .expect("registration");
    registration.roles = vec!["admin".into()];
    store
        .upsert_registration(&registration)
        .await
        .expect("registration");
    assert_eq!(
        store.get_registration(USER, APP).await.expect("get"),
        Some(registration.clone())
    );
    assert_eq!(
        store.list_registrations(USER).await.expect("list"),
        vec![registration]
    );
    let other_app = store.get_registration(USER, Uuid::from_u128(9)).await;
    assert!(other_app.expect("get").is_none());
}

/// A token is found by its whole value, never by a prefix, and listed for its user.
pub async fn refresh_tokens_are_found_by_their_exact_value(store: &dyn SuiteStore) {
    seeded(store).await;
    let first = token(Uuid::from_u128(0x6666), "value-one");
    store.insert_refresh_token(&first).await.expect("insert");
    assert_eq!(
        store.find_refresh_token("value-one").await.expect("find"),
        Some(first.clone())
    );
    assert_eq!(
        store.find_refresh_token("value-on").await.expect("find"),
        None
    );
    assert_eq!(
        store.find_refresh_token("value-one ").await.expect("find"),
        None
    );
    assert_eq!(
        store.get_refresh_token(first.id).await.expect("get"),
        Some(first)
    );
    assert_eq!(
        store.list_refresh_tokens(USER).await.expect("list").len(),
        1
    );
}

/// A token made beside another is stored only while that source is: after the source's
/// revocation nothing is written.
pub async fn a_token_made_beside_another_is_stored_only_while_its_source_is(
    store: &dyn SuiteStore,
) {
    seeded(store).await;
    let source = token(Uuid::from_u128(0x6666), "value-source");
    store.insert_refresh_token(&source).await.expect("insert");
    let beside = token(Uuid::from_u128(0x6667), "value-beside");
    let stored = store.insert_refresh_token_beside(&beside, source.id).await;
    assert_eq!(stored, Ok(true));
    let by_user = RevokeScope::User(USER);
    let revoked = store.revoke_refresh_tokens(&by_user).await.expect("revoke");
    assert_eq!(revoked.tokens.len(), 2);
    let late = token(Uuid::from_u128(0x6668), "value-late");
    let stored = store.insert_refresh_token_beside(&late, source.id).await;
    assert_eq!(stored, Ok(false));
    assert_eq!(store.find_refresh_token("value-late").await, Ok(None));
}

/// A touch stores the use's address and the new expiry; a revoked token is `NotFound`.
pub async fn a_touch_records_the_use(store: &dyn SuiteStore) {
    seeded(store).await;
    let first = token(Uuid::from_u128(0x6666), "value-one");
    store.insert_refresh_token(&first).await.expect("insert");
    let mut touched = first.clone();
    touched.meta_data.device.last_accessed_address = Some("10.0.0.1".into());
    touched.expiration_instant = 20_000;
    store.touch_refresh_token(&touched).await.expect("touch");
    assert_eq!(
        store.get_refresh_token(first.id).await.expect("get"),
        Some(touched.clone())
    );
    store
        .revoke_refresh_tokens(&RevokeScope::Id(first.id))
        .await
        .expect("revoke");
    assert_eq!(
        store.touch_refresh_token(&touched).await,
        Err(StoreError::NotFound)
    );
}

/// `find_refresh_subject` finds the live token by its exact value with its user, the user's
/// tenant, its application and the registration, each what the single reads return; without
/// an application neither application nor registration; a retired or unknown value is `None`.
pub async fn a_refresh_subject_is_read_with_its_token(store: &dyn SuiteStore) {
    seeded(store).await;
    store.create_user(&ann()).await.expect("user");
    let first = token(Uuid::from_u128(0x6666), "value-one");
    store.insert_refresh_token(&first).await.expect("insert");
    // not registered yet
    let subject = store.find_refresh_subject("value-one").await.expect("find");
    let subject = subject.expect("live");
    assert_eq!(subject.token, first);
    let user = store.get_user(USER).await.expect("user");
    assert!(user.is_some());
    assert_eq!(subject.user, user);
    assert_eq!(subject.tenant, Some(tenant()));
    assert_eq!(subject.application, Some(application()));
    assert_eq!(subject.registration, None);
    let registration = ann_registration();
    store
        .upsert_registration(&registration)
        .await
        .expect("registration");
    let subject = store.find_refresh_subject("value-one").await.expect("find");
    assert_eq!(subject.expect("live").registration, Some(registration));
    // a token of no application
    let mut bare = token(Uuid::from_u128(0x7777), "value-bare");
    bare.application_id = None;
    store.insert_refresh_token(&bare).await.expect("insert");
    let subject = store
        .find_refresh_subject("value-bare")
        .await
        .expect("find");
    let subject = subject.expect("live");
    assert_eq!(
        (subject.token, subject.application, subject.registration),
        (bare, None, None)
    );
    assert!(subject.user.is_some() && subject.tenant == Some(tenant()));
    // a prefix, an unknown value, a retired one
    for value in ["value-on", "value-one ", "nothing"] {
        assert!(
            store
                .find_refresh_subject(value)
                .await
                .expect("find")
                .is_none(),
            "{value}"
        );
    }
    let next = token(first.id, "value-two");
    let rotation = store.rotate_refresh_token("value-one", &next, None).await;
    assert_eq!(rotation.expect("rotate"), Rotation::Rotated(next.clone()));
    assert!(store
        .find_refresh_subject("value-one")
        .await
        .expect("find")
        .is_none());
    let subject = store.find_refresh_subject("value-two").await.expect("find");
    assert_eq!(subject.expect("live").token, next);
}

/// Rotates `value-one` to `value-two` (at 50, outcome `access-one`) on a fresh token.
async fn rotated_once(store: &dyn SuiteStore) -> RefreshToken {
    seeded(store).await;
    let first = token(Uuid::from_u128(0x6666), "value-one");
    store.insert_refresh_token(&first).await.expect("insert");
    let mut next = token(first.id, "value-two");
    next.insert_instant = 50;
    let rotation = store
        .rotate_refresh_token("value-one", &next, Some(("access-one", i64::MAX)))
        .await;
    assert_eq!(rotation.expect("rotate"), Rotation::Rotated(next.clone()));
    next
}

/// The first rotation wins; a later one of the same value gets what replaced it, when, and the
/// access token issued with it.
pub async fn a_value_is_rotated_once_and_later_callers_get_the_outcome(store: &dyn SuiteStore) {
    let next = rotated_once(store).await;
    let mut late = token(next.id, "value-three");
    late.insert_instant = 60;
    match store.rotate_refresh_token("value-one", &late, None).await {
        Ok(Rotation::AlreadyRotated {
            current,
            rotated_at,
            access_token,
        }) => {
            assert_eq!(current.token, "value-two");
            assert_eq!(rotated_at, 50);
            assert_eq!(access_token.as_deref(), Some("access-one"));
        }
        other => panic!("expected AlreadyRotated, got {other:?}"),
    }
    assert_eq!(
        store.find_refresh_token("value-one").await.expect("find"),
        None
    );
    assert_eq!(
        store.find_refresh_token("value-two").await.expect("find"),
        Some(next)
    );
    assert_eq!(
        store.list_refresh_tokens(USER).await.expect("list").len(),
        1
    );
}

/// A value that was never issued cannot be rotated.
pub async fn rotating_an_unknown_value_is_not_found(store: &dyn SuiteStore) {
    seeded(store).await;
    let next = token(Uuid::from_u128(0x6666), "value-two");
    assert_eq!(
        store
            .rotate_refresh_token("never-issued", &next, None)
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.get_refresh_token(next.id).await.expect("get"), None);
}

/// A retired value is known as a rotation; a live or unknown value is not.
pub async fn retired_values_are_found_as_rotations(store: &dyn SuiteStore) {
    rotated_once(store).await;
    let retired = store.find_rotated_refresh_token("value-one").await;
    assert!(matches!(
        retired.expect("find"),
        Some(Rotation::AlreadyRotated { .. })
    ));
    let live = store.find_rotated_refresh_token("value-two").await;
    assert_eq!(live.expect("find"), None);
    let unknown = store.find_rotated_refresh_token("value-zero").await;
    assert_eq!(unknown.expect("find"), None);
}

/// Revoking by value returns the token once; by user and application returns the rest.
pub async fn revoking_by_value_then_by_user_and_application(store: &dyn SuiteStore) {
    let next = rotated_once(store).await;
    let other = token(Uuid::from_u128(0x7777), "value-other");
    store.insert_refresh_token(&other).await.expect("insert");
    let by_value = RevokeScope::Token("value-two".into());
    let revoked = store
        .revoke_refresh_tokens(&by_value)
        .await
        .expect("revoke");
    assert_eq!(
        revoked.tokens.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![next.id]
    );
    let again = store
        .revoke_refresh_tokens(&by_value)
        .await
        .expect("revoke");
    assert!(
        again.tokens.is_empty() && again.edge.is_empty(),
        "{again:?}"
    );
    let by_pair = RevokeScope::UserApplication(USER, APP);
    let revoked = store.revoke_refresh_tokens(&by_pair).await.expect("revoke");
    assert_eq!(
        revoked.tokens.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![other.id]
    );
    assert!(store
        .list_refresh_tokens(USER)
        .await
        .expect("list")
        .is_empty());
}

/// Revoking refresh tokens records, in the same transaction, what the edge must refuse: the
/// sessions of tokens revoked by id or value, the scope itself otherwise.
/// Each revocation returns what it recorded and the instant it dated it, as the store holds
/// them: a second revocation of a user in the same second is dated one second later, and it
/// says so (a node records the store's instant, not its own clock's).
pub async fn revoking_refresh_tokens_records_edge_revocations(store: &dyn SuiteStore) {
    let next = rotated_once(store).await;
    let by_value = RevokeScope::Token("value-two".into());
    let by_session = store
        .revoke_refresh_tokens(&by_value)
        .await
        .expect("revoke");
    assert_eq!(by_session.edge, [RevocationScope::Session(next.id)]);
    let by_pair = RevokeScope::UserApplication(USER, APP);
    let pair = store.revoke_refresh_tokens(&by_pair).await.expect("revoke");
    assert_eq!(pair.edge, [RevocationScope::UserApplication(USER, APP)]);
    let first = store
        .revoke_refresh_tokens(&RevokeScope::User(USER))
        .await
        .expect("revoke");
    let second = store
        .revoke_refresh_tokens(&RevokeScope::User(USER))
        .await
        .expect("revoke");
    assert_eq!(second.edge, [RevocationScope::User(USER)]);
    assert!(second.at > first.at, "{first:?} then {second:?}");
    let edge = store.list_revocations(0).await.expect("list");
    let dated = |scope: RevocationScope| {
        edge.iter()
            .filter(|(s, _)| *s == scope)
            .map(|(_, at)| *at)
            .collect::<Vec<_>>()
    };
    assert_eq!(dated(RevocationScope::Session(next.id)), [by_session.at]);
    assert_eq!(
        dated(RevocationScope::UserApplication(USER, APP)),
        [pair.at]
    );
    // One row a scope: the later date.
    assert_eq!(dated(RevocationScope::User(USER)), [second.at]);
}

/// The latest instant per scope wins; revocations older than the horizon are not listed.
pub async fn revocations_keep_the_latest_instant_and_drop_old_ones(store: &dyn SuiteStore) {
    seeded(store).await;
    let session = RevocationScope::Session(Uuid::from_u128(0xaaaa));
    store.add_revocation(&session, 100).await.expect("revoke");
    store.add_revocation(&session, 50).await.expect("revoke");
    let pair = RevocationScope::UserApplication(USER, APP);
    store.add_revocation(&pair, 10).await.expect("revoke");
    let all = store.list_revocations(0).await.expect("list");
    assert!(all.contains(&(session, 100)), "{all:?}");
    assert!(all.contains(&(pair, 10)), "{all:?}");
    assert!(!all.contains(&(session, 50)), "{all:?}");
    let since = store.list_revocations(60).await.expect("list");
    assert_eq!(since.len(), 1, "{since:?}");
    let future = store.list_revocations(i64::MAX / 2).await.expect("list");
    assert!(future.is_empty());
}

/// Rotation outcomes are kept until their `outcome_until`, retired values for a day; pruning
/// clears and deletes past those, and leaves the live token alone.
pub async fn rotation_outcomes_and_retired_values_are_pruned(store: &dyn SuiteStore) {
    seeded(store).await;
    let id = Uuid::from_u128(0x5555);
    store
        .insert_refresh_token(&token(id, "prune-one"))
        .await
        .expect("insert");
    let mut next = token(id, "prune-two");
    next.insert_instant = 1_000;
    let kept = Some(("access-kept", 5_000));
    store
        .rotate_refresh_token("prune-one", &next, kept)
        .await
        .expect("rotate");
    let mut last = token(id, "prune-three");
    last.insert_instant = 2_000;
    store
        .rotate_refresh_token("prune-two", &last, None)
        .await
        .expect("rotate");
    assert_eq!(
        outcome(store, "prune-one").await,
        Some(Some("access-kept".into()))
    );
    assert_eq!(
        outcome(store, "prune-two").await,
        Some(None),
        "no outcome was given"
    );
    store.prune_rotations(4_999).await.expect("prune");
    assert_eq!(
        outcome(store, "prune-one").await,
        Some(Some("access-kept".into()))
    );
    assert!(store.prune_rotations(5_001).await.expect("prune") >= 1);
    assert_eq!(
        outcome(store, "prune-one").await,
        Some(None),
        "still known as retired"
    );
    store
        .prune_rotations(2_000 + 86_400_001)
        .await
        .expect("prune");
    assert_eq!(outcome(store, "prune-one").await, None);
    assert_eq!(outcome(store, "prune-two").await, None);
    let live = store.find_refresh_token("prune-three").await.expect("find");
    assert_eq!(live.map(|t| t.id), Some(id), "the live token is untouched");
}

/// `None`: the value is not known as retired; `Some(outcome)`: it is, with this access token.
async fn outcome(store: &dyn SuiteStore, value: &str) -> Option<Option<String>> {
    match RefreshTokenStore::find_rotated_refresh_token(store, value).await {
        Ok(Some(Rotation::AlreadyRotated { access_token, .. })) => Some(access_token),
        Ok(_) => None,
        Err(e) => panic!("find_rotated_refresh_token: {e}"),
    }
}

/// The refresh path's writes of several refreshes at once (which a store may commit together):
/// `touches` `Reusable` uses of distinct live tokens (value `c-i`, address `10.0.0.i`, expiry
/// `20_000 + i`), one of a revoked token, two rotations of the same value `c-rot` (to `c-rot-a`
/// and `c-rot-b`) and one of an unknown value. Returns the outcomes in that order: the touches',
/// the revoked one's, the two rotations', the unknown one's.
pub async fn concurrent_refresh_writes(store: &dyn Store, touches: usize) -> ConcurrentOutcomes {
    let used: Vec<RefreshToken> = (0..touches)
        .map(|i| {
            let mut t = token(Uuid::from_u128(0x7000 + i as u128), &format!("c-{i}"));
            t.meta_data.device.last_accessed_address = Some(format!("10.0.0.{i}"));
            t.expiration_instant = 20_000 + i as i64;
            t
        })
        .collect();
    for t in &used {
        let mut fresh = t.clone();
        fresh.meta_data = Default::default();
        fresh.expiration_instant = 10_000;
        store.insert_refresh_token(&fresh).await.expect("insert");
    }
    let gone = token(Uuid::from_u128(0x7fff), "c-gone");
    store.insert_refresh_token(&gone).await.expect("insert");
    store
        .revoke_refresh_tokens(&RevokeScope::Id(gone.id))
        .await
        .expect("revoke");
    let rotating = token(Uuid::from_u128(0x7ffe), "c-rot");
    store.insert_refresh_token(&rotating).await.expect("insert");
    let (next_a, next_b) = (token(rotating.id, "c-rot-a"), token(rotating.id, "c-rot-b"));
    let never = token(Uuid::from_u128(0x7ffd), "c-x");
    // Every write is started before any is answered.
    let (touches_done, gone_done, rot_a, rot_b, unknown) = tokio::join!(
        join_all(used.iter().map(|t| store.touch_refresh_token(t)).collect()),
        store.touch_refresh_token(&gone),
        store.rotate_refresh_token("c-rot", &next_a, Some(("access-a", i64::MAX))),
        store.rotate_refresh_token("c-rot", &next_b, Some(("access-b", i64::MAX))),
        store.rotate_refresh_token("c-never", &never, None),
    );
    (touches_done, gone_done, [rot_a, rot_b], unknown)
}

/// Polls every future of `futures` until all are ready; their outputs in order.
async fn join_all<T>(
    mut futures: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + '_>>>,
) -> Vec<T> {
    use std::task::Poll;
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, out) in futures.iter_mut().zip(out.iter_mut()) {
            if out.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *out = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Checks the outcomes of [`concurrent_refresh_writes`] — each write answered as if it had run
/// alone — and that the store holds exactly what they answered: every touch, the winning
/// rotation (the other one got its outcome), nothing of the failed writes.
pub async fn check_concurrent_refresh_writes(
    store: &dyn Store,
    touches: usize,
    outcomes: Option<&ConcurrentOutcomes>,
) {
    let winner = match outcomes {
        Some((touched, gone, [a, b], unknown)) => {
            assert!(touched.iter().all(|t| t.is_ok()), "{touched:?}");
            assert_eq!(gone, &Err(StoreError::NotFound));
            assert_eq!(unknown, &Err(StoreError::NotFound));
            let (winner, loser) = match (a, b) {
                (Ok(Rotation::Rotated(w)), loser) | (loser, Ok(Rotation::Rotated(w))) => {
                    (w.clone(), loser)
                }
                other => panic!("one rotation must win: {other:?}"),
            };
            match loser {
                Ok(Rotation::AlreadyRotated {
                    current,
                    access_token,
                    ..
                }) => {
                    assert_eq!(current, &winner);
                    let expected = if winner.token == "c-rot-a" {
                        "access-a"
                    } else {
                        "access-b"
                    };
                    assert_eq!(access_token.as_deref(), Some(expected));
                }
                other => panic!("the other rotation gets the winner's outcome: {other:?}"),
            }
            Some(winner.token)
        }
        None => None,
    };
    for i in 0..touches {
        let stored = store
            .find_refresh_token(&format!("c-{i}"))
            .await
            .expect("find")
            .expect("a touched token is live");
        assert_eq!(
            stored.meta_data.device.last_accessed_address,
            Some(format!("10.0.0.{i}"))
        );
        assert_eq!(stored.expiration_instant, 20_000 + i as i64);
    }
    assert_eq!(
        store.find_refresh_token("c-gone").await.expect("find"),
        None
    );
    assert_eq!(store.find_refresh_token("c-rot").await.expect("find"), None);
    let a = store.find_refresh_token("c-rot-a").await.expect("find");
    let b = store.find_refresh_token("c-rot-b").await.expect("find");
    assert!(a.is_some() != b.is_some(), "exactly one successor is live");
    if let Some(winner) = winner {
        assert_eq!(a.or(b).map(|t| t.token), Some(winner));
    }
    assert_eq!(
        store
            .get_refresh_token(Uuid::from_u128(0x7ffd))
            .await
            .expect("get"),
        None
    );
}

/// The outcomes [`concurrent_refresh_writes`] returns.
pub type ConcurrentOutcomes = (
    Vec<Result<(), StoreError>>,
    Result<(), StoreError>,
    [Result<Rotation, StoreError>; 2],
    Result<Rotation, StoreError>,
);

/// Refreshes' writes made at once (a store may commit them together) each keep their own
/// outcome — a failing one fails alone — and what was answered is what the store holds.
pub async fn concurrent_refresh_writes_keep_each_outcome(store: &dyn SuiteStore) {
    seeded(store).await;
    let outcomes = concurrent_refresh_writes(store, 16).await;
    check_concurrent_refresh_writes(store, 16, Some(&outcomes)).await;
}
