//! The storage test suite every backend runs: the same calls, the same expectations.

use gatehouse_plugin_api::model::{
    ApiKey, Application, IdentityProviderLink, KeyMaterial, RefreshToken, Registration, Tenant,
    User,
};
use gatehouse_plugin_api::store::{RevokeScope, Rotation, Store, StoreError};
use gatehouse_plugin_api::tokens::RevocationScope;
use serde_json::json;
use uuid::Uuid;

const TENANT: Uuid = Uuid::from_u128(0x1111);
const APP: Uuid = Uuid::from_u128(0x2222);
const USER: Uuid = Uuid::from_u128(0x3333);
const KEY: Uuid = Uuid::from_u128(0x4444);

fn tenant() -> Tenant {
    Tenant {
        id: TENANT,
        name: "Default".into(),
        issuer: "acme.com".into(),
        jwt_configuration: Default::default(),
        data: None,
    }
}

fn token(id: Uuid, value: &str) -> RefreshToken {
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

/// Exercises every method; panics (test failure) on any deviation.
pub async fn run(store: &dyn Store) {
    store.ping().await.expect("ping");

    // Tenants and applications: upsert replaces.
    store.upsert_tenant(&tenant()).await.expect("tenant");
    let mut renamed = tenant();
    renamed.name = "Renamed".into();
    store.upsert_tenant(&renamed).await.expect("tenant");
    assert_eq!(
        store
            .get_tenant(TENANT)
            .await
            .expect("get")
            .expect("some")
            .name,
        "Renamed"
    );
    assert_eq!(store.list_tenants().await.expect("list").len(), 1);
    assert!(store
        .get_tenant(Uuid::from_u128(9))
        .await
        .expect("get")
        .is_none());
    let app = Application {
        id: APP,
        tenant_id: TENANT,
        name: "App".into(),
        roles: vec![],
        login_configuration: Default::default(),
        jwt_configuration: Default::default(),
        active: true,
        data: None,
    };
    store.upsert_application(&app).await.expect("app");
    assert_eq!(
        store.get_application(APP).await.expect("get"),
        Some(app.clone())
    );
    assert_eq!(store.list_applications().await.expect("list"), vec![app]);

    // Key material: the first insert wins.
    let material = KeyMaterial {
        id: KEY,
        algorithm: "RS256".into(),
        private_key: Some("first".into()),
        secret: None,
        insert_instant: 5,
    };
    assert_eq!(
        store.insert_key_material(&material).await.expect("insert"),
        material
    );
    let mut second = material.clone();
    second.private_key = Some("second".into());
    assert_eq!(
        store.insert_key_material(&second).await.expect("insert"),
        material
    );
    assert_eq!(
        store.get_key_material(KEY).await.expect("get"),
        Some(material)
    );

    // API keys: replaced as a set.
    let keys = vec![ApiKey {
        id: Uuid::from_u128(7),
        key: "k".repeat(20),
        tenant_id: Some(TENANT),
        description: None,
    }];
    store.replace_api_keys(&keys).await.expect("keys");
    store.replace_api_keys(&keys).await.expect("keys again");
    assert_eq!(store.list_api_keys().await.expect("list"), keys);

    // Users: unique email/username per tenant, case-insensitive.
    let user = User {
        id: USER,
        tenant_id: TENANT,
        email: Some("Ann@Example.com".into()),
        username: Some("ann".into()),
        ..Default::default()
    };
    store.create_user(&user).await.expect("user");
    let mut clash = user.clone();
    clash.id = Uuid::from_u128(0x3334);
    clash.username = None;
    assert!(matches!(
        store.create_user(&clash).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .find_user_by_email(TENANT, "ann@example.COM")
            .await
            .expect("find")
            .map(|u| u.id),
        Some(USER)
    );
    assert_eq!(
        store
            .find_user_by_username(TENANT, "ANN")
            .await
            .expect("find")
            .map(|u| u.id),
        Some(USER)
    );
    assert!(store
        .find_user_by_email(Uuid::from_u128(1), "ann@example.com")
        .await
        .expect("find")
        .is_none());
    let mut updated = user.clone();
    updated.first_name = Some("Ann".into());
    store.update_user(&updated).await.expect("update");
    assert_eq!(store.get_user(USER).await.expect("get"), Some(updated));
    assert_eq!(store.update_user(&clash).await, Err(StoreError::NotFound));

    // Registrations.
    let registration = Registration {
        id: Uuid::from_u128(0x5555),
        application_id: APP,
        user_id: Some(USER),
        roles: vec!["admin".into()],
        ..Default::default()
    };
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

    // Refresh tokens: insert, find by value, touch, rotate once, revoke.
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
    let mut touched = first.clone();
    touched.meta_data.device.last_accessed_address = Some("10.0.0.1".into());
    touched.expiration_instant = 20_000;
    store.touch_refresh_token(&touched).await.expect("touch");
    assert_eq!(
        store.get_refresh_token(first.id).await.expect("get"),
        Some(touched.clone())
    );

    let mut next = token(first.id, "value-two");
    next.insert_instant = 50;
    assert_eq!(
        store
            .rotate_refresh_token("value-one", &next, Some(("access-one", i64::MAX)))
            .await
            .expect("rotate"),
        Rotation::Rotated(next.clone())
    );
    let mut late = token(first.id, "value-three");
    late.insert_instant = 60;
    match store
        .rotate_refresh_token("value-one", &late, None)
        .await
        .expect("rotate again")
    {
        Rotation::AlreadyRotated {
            current,
            rotated_at,
            access_token,
        } => {
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
        store
            .rotate_refresh_token("never-issued", &late, None)
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.list_refresh_tokens(USER).await.expect("list").len(),
        1
    );
    assert!(matches!(
        store
            .find_rotated_refresh_token("value-one")
            .await
            .expect("find"),
        Some(Rotation::AlreadyRotated { .. })
    ));
    assert_eq!(
        store
            .find_rotated_refresh_token("value-two")
            .await
            .expect("find"),
        None
    );

    let other = token(Uuid::from_u128(0x7777), "value-other");
    store.insert_refresh_token(&other).await.expect("insert");
    let revoked = store
        .revoke_refresh_tokens(&RevokeScope::Token("value-two".into()))
        .await
        .expect("revoke");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].id, first.id);
    assert!(store
        .revoke_refresh_tokens(&RevokeScope::Token("value-two".into()))
        .await
        .expect("revoke")
        .is_empty());
    let revoked = store
        .revoke_refresh_tokens(&RevokeScope::UserApplication(USER, APP))
        .await
        .expect("revoke");
    assert_eq!(revoked.len(), 1);
    assert!(store
        .list_refresh_tokens(USER)
        .await
        .expect("list")
        .is_empty());
    // Revoking refresh tokens records the edge revocations in the same transaction.
    let edge = store.list_revocations(0).await.expect("list");
    assert!(
        edge.iter()
            .any(|(s, _)| *s == RevocationScope::Session(first.id)),
        "{edge:?}"
    );
    assert!(
        edge.iter()
            .any(|(s, _)| *s == RevocationScope::UserApplication(USER, APP)),
        "{edge:?}"
    );

    // Identity providers and links.
    let idp = Uuid::from_u128(0x8888);
    store
        .put_identity_provider(idp, &json!({"id": idp, "name": "Corp"}))
        .await
        .expect("idp");
    assert_eq!(
        store.list_identity_providers().await.expect("list").len(),
        1
    );
    let link = IdentityProviderLink {
        data: Default::default(),
        display_name: None,
        identity_provider_id: idp,
        identity_provider_name: Some("Corp".into()),
        identity_provider_type: Some("ExternalJWT".into()),
        identity_provider_user_id: "ext-1".into(),
        insert_instant: 1,
        last_login_instant: 1,
        tenant_id: TENANT,
        token: None,
        user_id: USER,
    };
    store.put_link(&link).await.expect("link");
    assert_eq!(
        store.find_links(Some(idp), None, None).await.expect("find"),
        vec![link.clone()]
    );
    assert_eq!(
        store
            .find_links(None, Some(USER), Some("ext-1"))
            .await
            .expect("find")
            .len(),
        1
    );
    assert!(store
        .find_links(None, None, Some("ext-2"))
        .await
        .expect("find")
        .is_empty());
    assert_eq!(
        store.delete_link(idp, "ext-1", USER).await.expect("delete"),
        link
    );
    assert_eq!(
        store.delete_link(idp, "ext-1", USER).await,
        Err(StoreError::NotFound)
    );
    store.put_link(&link).await.expect("link");
    store
        .delete_identity_provider(idp)
        .await
        .expect("delete idp");
    assert!(store
        .find_links(Some(idp), None, None)
        .await
        .expect("find")
        .is_empty());
    assert_eq!(
        store.delete_identity_provider(idp).await,
        Err(StoreError::NotFound)
    );

    // Lambdas.
    let lambda = Uuid::from_u128(0x9999);
    store
        .put_lambda(lambda, &json!({"id": lambda, "name": "reconcile"}))
        .await
        .expect("lambda");
    assert_eq!(
        store
            .get_lambda(lambda)
            .await
            .expect("get")
            .map(|l| l["name"].clone()),
        Some(json!("reconcile"))
    );
    assert_eq!(store.list_lambdas().await.expect("list").len(), 1);
    store.delete_lambda(lambda).await.expect("delete");
    assert_eq!(store.delete_lambda(lambda).await, Err(StoreError::NotFound));

    // Revocations: the latest instant per scope wins; old ones are filtered out.
    let session = Uuid::from_u128(0xaaaa);
    store
        .add_revocation(&RevocationScope::Session(session), 100)
        .await
        .expect("revoke");
    store
        .add_revocation(&RevocationScope::Session(session), 50)
        .await
        .expect("revoke");
    store
        .add_revocation(&RevocationScope::UserApplication(USER, APP), 10)
        .await
        .expect("revoke");
    let all = store.list_revocations(0).await.expect("list");
    assert!(
        all.contains(&(RevocationScope::Session(session), 100)),
        "{all:?}"
    );
    // (USER, APP) was revoked "now" by the refresh-token revocation above: later than 10.
    assert!(all
        .iter()
        .any(|(s, at)| *s == RevocationScope::UserApplication(USER, APP) && *at > 10));
    assert!(store
        .list_revocations(i64::MAX / 2)
        .await
        .expect("list")
        .is_empty());

    // Users by email across tenants.
    assert_eq!(
        store
            .find_users_by_email_any_tenant("ANN@example.com")
            .await
            .expect("find")
            .len(),
        1
    );

    // Event log: newest first.
    let a = store.add_event("Debug", "first").await.expect("event");
    let b = store
        .add_event("Information", "second")
        .await
        .expect("event");
    assert!(b > a);
    let events = store.list_events(10).await.expect("events");
    assert_eq!(events[0].message, "second");
    assert_eq!(store.list_events(1).await.expect("events").len(), 1);
}

/// After [`run`] and a reopen, what was written is still there.
pub async fn check_persisted(store: &dyn Store) {
    assert_eq!(
        store
            .get_tenant(TENANT)
            .await
            .expect("get")
            .map(|t| t.name)
            .as_deref(),
        Some("Renamed")
    );
    assert!(store.get_user(USER).await.expect("get").is_some());
    assert_eq!(
        store
            .get_key_material(KEY)
            .await
            .expect("get")
            .and_then(|m| m.private_key)
            .as_deref(),
        Some("first")
    );
    assert_eq!(store.list_events(10).await.expect("events").len(), 2);
}

/// Rotation outcomes are kept until their `outcome_until`, retired values for the backend's
/// memory of them; pruning clears and deletes past those, in bounded batches.
pub async fn rotations_are_pruned(store: &dyn Store) {
    let id = Uuid::from_u128(0x5555);
    store
        .insert_refresh_token(&token(id, "prune-one"))
        .await
        .expect("insert");
    let mut next = token(id, "prune-two");
    next.insert_instant = 1_000;
    store
        .rotate_refresh_token("prune-one", &next, Some(("access-kept", 5_000)))
        .await
        .expect("rotate");
    let mut last = token(id, "prune-three");
    last.insert_instant = 2_000;
    store
        .rotate_refresh_token("prune-two", &last, None)
        .await
        .expect("rotate without an outcome");
    let outcome = |value: &'static str| async move {
        match store.find_rotated_refresh_token(value).await.expect("find") {
            Some(Rotation::AlreadyRotated { access_token, .. }) => Some(access_token),
            _ => None,
        }
    };
    assert_eq!(outcome("prune-one").await, Some(Some("access-kept".into())));
    assert_eq!(
        outcome("prune-two").await,
        Some(None),
        "no outcome was given"
    );
    // Before outcome_until nothing changes; after it, the access token is gone but the retired
    // value is still known (a replay is still recognised as one).
    store.prune_rotations(4_999).await.expect("prune");
    assert_eq!(outcome("prune-one").await, Some(Some("access-kept".into())));
    assert!(store.prune_rotations(5_001).await.expect("prune") >= 1);
    assert_eq!(outcome("prune-one").await, Some(None));
    // A day later, the retired values are forgotten.
    store
        .prune_rotations(2_000 + 86_400_001)
        .await
        .expect("prune");
    assert_eq!(outcome("prune-one").await, None);
    assert_eq!(outcome("prune-two").await, None);
    assert_eq!(
        store
            .find_refresh_token("prune-three")
            .await
            .expect("find")
            .map(|t| t.id),
        Some(id),
        "the live token is untouched"
    );
}
