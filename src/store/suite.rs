//! The host's half of the storage test suite, for what only the host and the identity-provider
//! plugin store (key material, API keys, the health check, providers, links, lambdas, the event
//! log). The plugin ports' half is `gatehouse_plugin_api::store_suite`. Each backend generates
//! both with [`host_store_suite!`] and `store_port_suite!`, one named test per behaviour.

use gatehouse_plugin_api::clock::Clock;
use gatehouse_plugin_api::model::{ApiKey, Application, IdentityProviderLink, KeyMaterial, Tenant};
use gatehouse_plugin_api::store::{RevokeScope, StoreError};
use gatehouse_plugin_api::store_suite::{tenant, TENANT, USER};
use gatehouse_plugin_api::tokens::RevocationScope;
use serde_json::json;
use uuid::Uuid;

use super::{DirectoryStore, GatewayStore};

/// Generates the host suite's `#[tokio::test]` functions on fresh fixtures from
/// `$fixture: async fn() -> impl HostFixture` (a store on the wall clock), and the test of the
/// store's own instants on one from `$clocked: async fn(Arc<dyn Clock>) -> impl HostFixture`.
macro_rules! host_store_suite {
    ($fixture:path, $clocked:path) => {
        #[tokio::test]
        async fn the_store_dates_what_it_writes_by_its_clock() {
            let clock = std::sync::Arc::new($crate::store::suite::FixedClock);
            let fixture = $clocked(clock).await;
            $crate::store::suite::the_store_dates_what_it_writes_by_its_clock(
                fixture.gateway_store(),
            )
            .await;
        }

        $crate::store::suite::host_store_suite!(@each $fixture;
            the_store_answers_a_ping,
            the_first_key_material_wins,
            api_keys_are_replaced_as_a_set,
            declared_entities_are_written_all_or_nothing,
            identity_providers_are_stored_and_deleted_with_their_links,
            links_are_found_by_any_filter_and_deleted_once,
            lambdas_are_stored_and_deleted_once,
            the_event_log_lists_newest_first,
            the_login_state_key_is_created_once_and_states_are_used_once
        );
    };
    (@each $fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let fixture = $fixture().await;
                $crate::store::suite::$name(fixture.gateway_store()).await;
            }
        )*
    };
}
pub(crate) use host_store_suite;

/// A test fixture of the host suite: whatever it keeps alive, and the store on it.
pub trait HostFixture {
    /// The store under test.
    fn gateway_store(&self) -> &dyn GatewayStore;
}

/// Seeding through the host's directory writes, for every backend.
pub(crate) async fn seed(
    store: &dyn DirectoryStore,
    tenants: &[Tenant],
    applications: &[Application],
) {
    for tenant in tenants {
        store.upsert_tenant(tenant).await.expect("tenant");
    }
    for application in applications {
        store
            .upsert_application(application)
            .await
            .expect("application");
    }
}

/// Implements the port suite's seeding for a backend that has the host's directory writes.
macro_rules! suite_store_via_directory {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl gatehouse_plugin_api::store_suite::SuiteStore for $store {
            async fn seed(
                &self,
                tenants: &[gatehouse_plugin_api::model::Tenant],
                applications: &[gatehouse_plugin_api::model::Application],
            ) {
                $crate::store::suite::seed(self, tenants, applications).await
            }
        }
    };
}
pub(crate) use suite_store_via_directory;

const KEY: Uuid = Uuid::from_u128(0x4444);

/// `ping` answers on a healthy store.
pub async fn the_store_answers_a_ping(store: &dyn GatewayStore) {
    store.ping().await.expect("ping");
}

/// Two gateways generating a key at once keep the first material stored.
pub async fn the_first_key_material_wins(store: &dyn GatewayStore) {
    let material = KeyMaterial {
        id: KEY,
        algorithm: "RS256".into(),
        private_key: Some("first".into()),
        secret: None,
        insert_instant: 5,
    };
    let stored = store.insert_key_material(&material).await.expect("insert");
    assert_eq!(stored, material);
    let mut second = material.clone();
    second.private_key = Some("second".into());
    let stored = store.insert_key_material(&second).await.expect("insert");
    assert_eq!(stored, material);
    let read = store.get_key_material(KEY).await.expect("get");
    assert_eq!(read, Some(material));
    assert!(store
        .get_key_material(Uuid::from_u128(1))
        .await
        .expect("get")
        .is_none());
}

/// The configured API keys replace the stored set, idempotently.
pub async fn api_keys_are_replaced_as_a_set(store: &dyn GatewayStore) {
    let key = |n: u128, text: &str| ApiKey {
        id: Uuid::from_u128(n),
        key: text.repeat(20),
        tenant_id: Some(TENANT),
        description: None,
    };
    store.replace_api_keys(&[key(6, "j")]).await.expect("keys");
    let keys = vec![key(7, "k")];
    store.replace_api_keys(&keys).await.expect("keys");
    store.replace_api_keys(&keys).await.expect("keys again");
    assert_eq!(store.list_api_keys().await.expect("list"), keys);
}

/// The declared entities are written in one transaction: when one write fails (here two API
/// keys with the same value, which the table refuses), the tenant, application, lambda and
/// provider written before it are rolled back and the stored API keys are kept.
pub async fn declared_entities_are_written_all_or_nothing(store: &dyn GatewayStore) {
    let key = |n: u128, text: &str| ApiKey {
        id: Uuid::from_u128(n),
        key: text.repeat(20),
        tenant_id: None,
        description: None,
    };
    let mut renamed = tenant();
    renamed.name = "Renamed".into();
    let lambda_id = Uuid::from_u128(21);
    let provider_id = Uuid::from_u128(22);
    let mut declared = super::Declared {
        tenants: vec![tenant()],
        applications: Vec::new(),
        api_keys: vec![key(8, "a")],
        lambdas: Vec::new(),
        identity_providers: Vec::new(),
    };
    store.apply_declared(&declared).await.expect("first");
    declared.tenants = vec![renamed.clone()];
    declared.lambdas = vec![(lambda_id, json!({"id": lambda_id.to_string(), "body": "x"}))];
    declared.identity_providers = vec![(provider_id, json!({"id": provider_id.to_string()}))];
    declared.api_keys = vec![key(9, "b"), key(10, "b")];
    assert!(store.apply_declared(&declared).await.is_err());
    let stored = store
        .get_tenant(TENANT)
        .await
        .expect("get")
        .expect("tenant");
    assert_eq!(
        stored.name,
        tenant().name,
        "the failed write's tenant was kept"
    );
    assert_eq!(
        store.list_api_keys().await.expect("keys"),
        vec![key(8, "a")]
    );
    assert!(store.get_lambda(lambda_id).await.expect("lambda").is_none());
    let provider = store.get_identity_provider(provider_id).await;
    assert!(provider.expect("provider").is_none());
    // The same entities without the failing write are written, all of them.
    declared.api_keys = vec![key(9, "b")];
    store.apply_declared(&declared).await.expect("second");
    let stored = store
        .get_tenant(TENANT)
        .await
        .expect("get")
        .expect("tenant");
    assert_eq!(stored.name, "Renamed");
    assert!(store.get_lambda(lambda_id).await.expect("lambda").is_some());
    assert_eq!(
        store.list_api_keys().await.expect("keys"),
        vec![key(9, "b")]
    );
}

fn link(idp: Uuid, user_id: &str) -> IdentityProviderLink {
    IdentityProviderLink {
        data: Default::default(),
        display_name: None,
        identity_provider_id: idp,
        identity_provider_name: Some("Corp".into()),
        identity_provider_type: Some("ExternalJWT".into()),
        identity_provider_user_id: user_id.into(),
        insert_instant: 1,
        last_login_instant: 1,
        tenant_id: TENANT,
        token: None,
        user_id: USER,
    }
}

const IDP: Uuid = Uuid::from_u128(0x8888);

/// Provider documents are listed; deleting one deletes its links, and a second delete is
/// `NotFound`.
pub async fn identity_providers_are_stored_and_deleted_with_their_links(store: &dyn GatewayStore) {
    let document = json!({"id": IDP, "name": "Corp"});
    store
        .put_identity_provider(IDP, &document)
        .await
        .expect("idp");
    assert_eq!(
        store.get_identity_provider(IDP).await.expect("get"),
        Some(document)
    );
    assert_eq!(
        store.list_identity_providers().await.expect("list").len(),
        1
    );
    store.put_link(&link(IDP, "ext-1")).await.expect("link");
    store
        .delete_identity_provider(IDP)
        .await
        .expect("delete idp");
    let links = store.find_links(Some(IDP), None, None).await.expect("find");
    assert!(links.is_empty());
    let again = store.delete_identity_provider(IDP).await;
    assert_eq!(again, Err(StoreError::NotFound));
}

/// Links match every given filter; a link is deleted once.
pub async fn links_are_found_by_any_filter_and_deleted_once(store: &dyn GatewayStore) {
    store
        .put_identity_provider(IDP, &json!({"id": IDP}))
        .await
        .expect("idp");
    let first = link(IDP, "ext-1");
    store.put_link(&first).await.expect("link");
    let by_provider = store.find_links(Some(IDP), None, None).await.expect("find");
    assert_eq!(by_provider, vec![first.clone()]);
    let by_user = store.find_links(None, Some(USER), Some("ext-1")).await;
    assert_eq!(by_user.expect("find").len(), 1);
    let other = store
        .find_links(None, None, Some("ext-2"))
        .await
        .expect("find");
    assert!(other.is_empty());
    assert_eq!(
        store.delete_link(IDP, "ext-1", USER).await.expect("delete"),
        first
    );
    let again = store.delete_link(IDP, "ext-1", USER).await;
    assert_eq!(again, Err(StoreError::NotFound));
}

/// Lambda documents are read back and deleted once.
pub async fn lambdas_are_stored_and_deleted_once(store: &dyn GatewayStore) {
    let lambda = Uuid::from_u128(0x9999);
    let document = json!({"id": lambda, "name": "reconcile"});
    store.put_lambda(lambda, &document).await.expect("lambda");
    let read = store.get_lambda(lambda).await.expect("get");
    assert_eq!(read.map(|l| l["name"].clone()), Some(json!("reconcile")));
    assert_eq!(store.list_lambdas().await.expect("list").len(), 1);
    store.delete_lambda(lambda).await.expect("delete");
    assert_eq!(store.delete_lambda(lambda).await, Err(StoreError::NotFound));
}

/// The first login-state key stored wins and is read back by every later caller; a state is
/// recorded once (a second use is refused until it expires and is pruned).
pub async fn the_login_state_key_is_created_once_and_states_are_used_once(
    store: &dyn GatewayStore,
) {
    let first = store.login_state_key(&[1u8; 32]).await.expect("key");
    assert_eq!(first, vec![1u8; 32]);
    let again = store.login_state_key(&[2u8; 32]).await.expect("key");
    assert_eq!(again, first, "the stored key wins");

    assert!(store.use_login_state("s1", 100, 10).await.expect("use"));
    assert!(!store.use_login_state("s1", 100, 20).await.expect("reuse"));
    assert!(store.use_login_state("s2", 100, 20).await.expect("another"));
    // Once expired, the record is pruned by a later call (and a state that old would be
    // refused before reaching the store: its cookie has expired).
    assert!(store.use_login_state("s3", 300, 200).await.expect("prunes"));
    assert!(store.use_login_state("s1", 300, 200).await.expect("pruned"));
    assert!(!store
        .use_login_state("s1", 300, 201)
        .await
        .expect("reused again"));
}

/// Events get increasing ids and are listed newest first, at most `limit`.
pub async fn the_event_log_lists_newest_first(store: &dyn GatewayStore) {
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

/// The instant (ms) a [`FixedClock`] stands at: long past, so no wall clock reads it.
pub const FIXED_INSTANT_MS: i64 = 1_234_567_890_123;

/// A clock standing at [`FIXED_INSTANT_MS`].
pub struct FixedClock;

impl Clock for FixedClock {
    fn now_millis(&self) -> i64 {
        FIXED_INSTANT_MS
    }
}

/// A store on a [`FixedClock`] writes that clock's instants, not the wall clock's: an event
/// logged is dated by it, and so is the revocation a revoke records for the edge.
pub async fn the_store_dates_what_it_writes_by_its_clock(store: &dyn GatewayStore) {
    store
        .add_event("Information", "dated")
        .await
        .expect("event");
    let events = store.list_events(1).await.expect("events");
    assert_eq!(events[0].insert_instant, FIXED_INSTANT_MS);
    store
        .revoke_refresh_tokens(&RevokeScope::User(USER))
        .await
        .expect("revoke");
    let revocations = store.list_revocations(0).await.expect("revocations");
    assert_eq!(
        revocations,
        vec![(RevocationScope::User(USER), FIXED_INSTANT_MS / 1000)]
    );
}

/// Writes a little of everything, for [`check_persisted`] after a reopen.
pub async fn write_for_reopen(store: &dyn GatewayStore) {
    let mut renamed = tenant();
    renamed.name = "Renamed".into();
    seed(store, &[renamed], &[]).await;
    the_first_key_material_wins(store).await;
    the_event_log_lists_newest_first(store).await;
}

/// After [`write_for_reopen`] and a reopen, what was written is still there.
pub async fn check_persisted(store: &dyn GatewayStore) {
    let tenant = store.get_tenant(TENANT).await.expect("get");
    assert_eq!(tenant.map(|t| t.name).as_deref(), Some("Renamed"));
    let material = store.get_key_material(KEY).await.expect("get");
    let private_key = material.and_then(|m| m.private_key);
    assert_eq!(private_key.as_deref(), Some("first"));
    assert_eq!(store.list_events(10).await.expect("events").len(), 2);
}

/// How many `Reusable` touches [`write_concurrent_refreshes`] makes at once.
const CONCURRENT_TOUCHES: usize = 32;

/// Refreshes' writes made at once (touches, a failing touch, a rotation race, an unknown
/// rotation; see [`gatehouse_plugin_api::store_suite::concurrent_refresh_writes`]), each
/// answered as if it had run alone, for [`check_concurrent_refreshes_persisted`] through
/// another connection or after a reopen.
pub async fn write_concurrent_refreshes(store: &dyn GatewayStore) {
    use gatehouse_plugin_api::store_suite::{
        check_concurrent_refresh_writes, concurrent_refresh_writes,
    };
    let outcomes = concurrent_refresh_writes(store, CONCURRENT_TOUCHES).await;
    check_concurrent_refresh_writes(store, CONCURRENT_TOUCHES, Some(&outcomes)).await;
}

/// After [`write_concurrent_refreshes`] was answered: every write it answered is committed,
/// as another connection (or the reopened store) reads it.
pub async fn check_concurrent_refreshes_persisted(store: &dyn GatewayStore) {
    gatehouse_plugin_api::store_suite::check_concurrent_refresh_writes(
        store,
        CONCURRENT_TOUCHES,
        None,
    )
    .await;
}
