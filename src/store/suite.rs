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

use gatehouse_plugin_identity_provider::store::{LinkInsert, LinkWrite, ProviderWrite};

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
            a_provider_user_id_is_linked_once_in_each_tenant,
            a_login_writes_its_link_only_as_it_found_it,
            a_link_over_the_indexed_limit_is_refused_and_found_nowhere,
            lambdas_are_stored_and_deleted_once,
            providers_and_lambdas_are_created_once_however_many_race,
            no_two_providers_manage_one_domain_however_many_race,
            a_provider_replaced_keeps_its_domains_unique,
            a_declared_provider_may_not_take_another_providers_domain,
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
    let written = store.insert_identity_provider(IDP, &document).await;
    assert_eq!(written, Ok(ProviderWrite::Written));
    assert_eq!(
        store.get_identity_provider(IDP).await.expect("get"),
        Some(document)
    );
    assert_eq!(
        store.list_identity_providers().await.expect("list").len(),
        1
    );
    put(store, &link(IDP, "ext-1")).await;
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
    let written = store
        .insert_identity_provider(IDP, &json!({"id": IDP}))
        .await;
    assert_eq!(written, Ok(ProviderWrite::Written));
    let first = link(IDP, "ext-1");
    put(store, &first).await;
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

/// One provider user id is linked once per tenant: a second tenant's link is a link of its
/// own, never a replacement of the first's; writing a tenant's link again replaces it; deleting
/// one tenant's link leaves the other's.
pub async fn a_provider_user_id_is_linked_once_in_each_tenant(store: &dyn GatewayStore) {
    let written = store
        .insert_identity_provider(IDP, &json!({"id": IDP}))
        .await;
    assert_eq!(written, Ok(ProviderWrite::Written));
    let first = link(IDP, "shared");
    let other_user = Uuid::from_u128(0x7777);
    let second = IdentityProviderLink {
        tenant_id: Uuid::from_u128(0x6666),
        user_id: other_user,
        token: Some("second tenant's".into()),
        ..link(IDP, "shared")
    };
    put(store, &first).await;
    put(store, &second).await;
    let both = store.find_links(Some(IDP), None, Some("shared")).await;
    assert_eq!(both.expect("find").len(), 2);
    // Linked in the tenant already: to the same user or another, nothing is written.
    let again = IdentityProviderLink {
        last_login_instant: 2,
        ..first.clone()
    };
    assert_eq!(store.insert_link(&again, None).await, Ok(LinkInsert::Taken));
    let hijack = IdentityProviderLink {
        user_id: Uuid::from_u128(0x5555),
        ..first.clone()
    };
    assert_eq!(
        store.insert_link(&hijack, None).await,
        Ok(LinkInsert::Taken)
    );
    // The user's links to the provider count against a limit.
    let another = link(IDP, "another");
    let limited = store.insert_link(&another, Some(1)).await;
    assert_eq!(limited, Ok(LinkInsert::LimitReached));
    assert_eq!(
        store.insert_link(&another, Some(2)).await,
        Ok(LinkInsert::Written)
    );
    let firsts = store.find_links(Some(IDP), Some(USER), None).await;
    assert_eq!(firsts.expect("find"), vec![another.clone(), first.clone()]);
    assert_eq!(
        store.delete_link(IDP, "shared", other_user).await,
        Ok(second)
    );
    let left = store.find_links(Some(IDP), None, Some("shared")).await;
    assert_eq!(left.expect("find"), vec![first]);
}

/// Inserts `link`, which must be new.
async fn put(store: &dyn GatewayStore, link: &IdentityProviderLink) {
    assert_eq!(store.insert_link(link, None).await, Ok(LinkInsert::Written));
}

/// A login writes its link only as it found it: a new link only while the provider user is
/// still unlinked in the tenant, the user's own only while it still links that user; else a
/// `Conflict`, and nothing of the login (user included) is written.
pub async fn a_login_writes_its_link_only_as_it_found_it(store: &dyn GatewayStore) {
    use gatehouse_plugin_api::model::User;
    let written = store
        .insert_identity_provider(IDP, &json!({"id": IDP}))
        .await;
    assert_eq!(written, Ok(ProviderWrite::Written));
    let user = User {
        id: USER,
        tenant_id: TENANT,
        ..Default::default()
    };
    let ours = link(IDP, "ext");
    // Linked meanwhile (to someone else): the login's insert is a conflict.
    let theirs = IdentityProviderLink {
        user_id: Uuid::from_u128(0x5555),
        ..ours.clone()
    };
    put(store, &theirs).await;
    let saved = store
        .save_login(&user, None, None, &ours, LinkWrite::Insert { limit: None })
        .await;
    assert!(matches!(saved, Err(StoreError::Conflict(_))), "{saved:?}");
    assert_eq!(store.get_user(USER).await.expect("get"), None);
    // The login read its own link, but it now links someone else: a conflict too.
    let saved = store
        .save_login(&user, None, None, &ours, LinkWrite::ReplaceOwn)
        .await;
    assert!(matches!(saved, Err(StoreError::Conflict(_))), "{saved:?}");
    assert_eq!(store.get_user(USER).await.expect("get"), None);
    // Unlinked meanwhile: the login's rewrite of its link is a conflict, never a relink.
    store
        .delete_link(IDP, "ext", theirs.user_id)
        .await
        .expect("unlink");
    let saved = store
        .save_login(&user, None, None, &ours, LinkWrite::ReplaceOwn)
        .await;
    assert!(matches!(saved, Err(StoreError::Conflict(_))), "{saved:?}");
    assert_eq!(store.find_links(Some(IDP), None, None).await, Ok(vec![]));
    // As found: written.
    let saved = store
        .save_login(&user, None, None, &ours, LinkWrite::Insert { limit: None })
        .await;
    assert_eq!(saved, Ok(true));
    let next = User {
        last_update_instant: user.last_update_instant + 1,
        ..user.clone()
    };
    let relogged = IdentityProviderLink {
        last_login_instant: 9,
        ..ours
    };
    let saved = store
        .save_login(&next, Some(&user), None, &relogged, LinkWrite::ReplaceOwn)
        .await;
    assert_eq!(saved, Ok(true));
    assert_eq!(
        store.find_links(Some(IDP), None, None).await,
        Ok(vec![relogged.clone()])
    );
    // A new link past the user's limit of links to the provider: a conflict, nothing written.
    let later = User {
        last_update_instant: next.last_update_instant + 1,
        ..next.clone()
    };
    let second = link(IDP, "ext-2");
    let limited = LinkWrite::Insert { limit: Some(1) };
    let saved = (store.save_login(&later, Some(&next), None, &second, limited)).await;
    assert!(matches!(saved, Err(StoreError::Conflict(_))), "{saved:?}");
    assert_eq!(
        store.find_links(Some(IDP), None, None).await,
        Ok(vec![relogged])
    );
    assert_eq!(store.get_user(USER).await.expect("get"), Some(next));
}

/// A link whose provider user id is at its limit ([`gatehouse_plugin_api::indexed`]) is stored
/// and found; one byte more, or a NUL, is refused on every backend, alone or in a login's
/// transaction, and nothing is written.
pub async fn a_link_over_the_indexed_limit_is_refused_and_found_nowhere(store: &dyn GatewayStore) {
    use gatehouse_plugin_api::indexed::MAX_PROVIDER_USER_ID_BYTES;
    use gatehouse_plugin_api::model::User;
    use gatehouse_plugin_api::store_suite::incompressible;
    let declared = super::Declared {
        identity_providers: vec![(IDP, json!({"id": IDP}))],
        ..Default::default()
    };
    store.apply_declared(&declared).await.expect("idp");
    let longest = incompressible(MAX_PROVIDER_USER_ID_BYTES, 7);
    put(store, &link(IDP, &longest)).await;
    let found = store.find_links(Some(IDP), None, Some(&longest)).await;
    assert_eq!(found.expect("find").len(), 1);
    let user = User {
        id: USER,
        tenant_id: TENANT,
        ..Default::default()
    };
    for over in [
        format!("{longest}x"),
        incompressible(9000, 8),
        "a\0b".into(),
    ] {
        let refused = store.insert_link(&link(IDP, &over), None).await;
        assert!(
            matches!(refused, Err(StoreError::Backend(_))),
            "{refused:?}"
        );
        let over_link = link(IDP, &over);
        let login = (store.save_login(
            &user,
            None,
            None,
            &over_link,
            LinkWrite::Insert { limit: None },
        ))
        .await;
        assert!(matches!(login, Err(StoreError::Backend(_))), "{login:?}");
        assert_eq!(store.get_user(USER).await.expect("get"), None);
        if !over.contains('\0') {
            let found = store.find_links(Some(IDP), None, Some(&over)).await;
            assert_eq!(found.expect("find"), Vec::new());
        }
    }
    let all = store.find_links(Some(IDP), None, None).await.expect("find");
    assert_eq!(all.len(), 1);
}

/// Lambda documents are read back and deleted once.
pub async fn lambdas_are_stored_and_deleted_once(store: &dyn GatewayStore) {
    let lambda = Uuid::from_u128(0x9999);
    let document = json!({"id": lambda, "name": "reconcile"});
    assert_eq!(store.insert_lambda(lambda, &document).await, Ok(true));
    let read = store.get_lambda(lambda).await.expect("get");
    assert_eq!(read.map(|l| l["name"].clone()), Some(json!("reconcile")));
    assert_eq!(store.list_lambdas().await.expect("list").len(), 1);
    // A provider naming it keeps it; a provider naming a lambda that is gone is not written.
    let naming =
        |id: Uuid, lambda: Uuid| json!({"id": id, "lambdaConfiguration": {"reconcileId": lambda}});
    let user = naming(IDP, lambda);
    let written = store.insert_identity_provider(IDP, &user).await;
    assert_eq!(written, Ok(ProviderWrite::Written));
    assert_eq!(store.delete_lambda(lambda).await, Ok(vec![IDP]));
    let unused = store
        .replace_identity_provider(IDP, &user, &json!({"id": IDP}))
        .await;
    assert_eq!(unused, Ok(ProviderWrite::Written));
    assert_eq!(store.delete_lambda(lambda).await, Ok(vec![]));
    assert_eq!(store.delete_lambda(lambda).await, Err(StoreError::NotFound));
    let other = Uuid::from_u128(0x8889);
    let missing = store
        .insert_identity_provider(other, &naming(other, lambda))
        .await;
    assert_eq!(missing, Ok(ProviderWrite::LambdaMissing));
    let replaced = store
        .replace_identity_provider(IDP, &json!({"id": IDP}), &naming(IDP, lambda))
        .await;
    assert_eq!(replaced, Ok(ProviderWrite::LambdaMissing));
    assert_eq!(store.get_identity_provider(other).await, Ok(None));
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

/// Eight calls of `call(i)` at once (one task, interleaved at every await: on PostgreSQL each
/// has its own connection).
async fn eight_at_once<F, Fut, T>(call: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let (a, b, c, d, e, f, g, h) = tokio::join!(
        call(0),
        call(1),
        call(2),
        call(3),
        call(4),
        call(5),
        call(6),
        call(7)
    );
    vec![a, b, c, d, e, f, g, h]
}

/// A provider document named `name` managing `domains`.
fn provider(id: Uuid, name: &str, domains: &[&str]) -> serde_json::Value {
    json!({"id": id, "name": name, "domains": domains})
}

/// Creates are inserts: of concurrent creates with one id exactly one is written (the others
/// told the id is taken), and the first stays; a create of an existing id writes nothing.
pub async fn providers_and_lambdas_are_created_once_however_many_race(store: &dyn GatewayStore) {
    let outcomes = eight_at_once(|i| {
        let doc = provider(IDP, &format!("race{i}"), &[]);
        async move { store.insert_identity_provider(IDP, &doc).await }
    })
    .await;
    let written: Vec<usize> = (outcomes.iter().enumerate())
        .filter(|(_, o)| **o == Ok(ProviderWrite::Written))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(written.len(), 1, "{outcomes:?}");
    assert!(
        (outcomes.iter()).all(|o| matches!(o, Ok(ProviderWrite::Written | ProviderWrite::IdTaken))),
        "{outcomes:?}"
    );
    let stored = store.get_identity_provider(IDP).await.expect("get");
    assert_eq!(stored.expect("idp")["name"], format!("race{}", written[0]));

    let lambda = Uuid::from_u128(0x9998);
    let outcomes = eight_at_once(|i| {
        let doc = json!({"id": lambda, "name": i});
        async move { store.insert_lambda(lambda, &doc).await }
    })
    .await;
    let inserted: Vec<usize> = (outcomes.iter().enumerate())
        .filter(|(_, o)| **o == Ok(true))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(inserted.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let stored = store
        .get_lambda(lambda)
        .await
        .expect("get")
        .expect("lambda");
    assert_eq!(stored["name"], json!(inserted[0]));
}

/// Of concurrent creates of different providers with one domain exactly one is written; a
/// provider whose domains are all free is written beside it.
pub async fn no_two_providers_manage_one_domain_however_many_race(store: &dyn GatewayStore) {
    let outcomes = eight_at_once(|i| {
        let id = Uuid::from_u128(0x7000 + i as u128);
        let doc = provider(id, "p", &["other.example", "shared.example"]);
        async move { store.insert_identity_provider(id, &doc).await }
    })
    .await;
    let written = (outcomes.iter()).filter(|o| **o == Ok(ProviderWrite::Written));
    assert_eq!(written.count(), 1, "{outcomes:?}");
    assert!(
        (outcomes.iter())
            .all(|o| matches!(o, Ok(ProviderWrite::Written | ProviderWrite::DomainTaken))),
        "{outcomes:?}"
    );
    let free = Uuid::from_u128(0x7100);
    let outcome = store
        .insert_identity_provider(free, &provider(free, "free", &["free.example"]))
        .await;
    assert_eq!(outcome, Ok(ProviderWrite::Written));
    let claiming = |domain: &str| {
        let providers = store.list_identity_providers();
        let domain = json!(domain);
        async move {
            let providers = providers.await.expect("list");
            (providers.iter())
                .filter(|p| p["domains"].as_array().is_some_and(|d| d.contains(&domain)))
                .count()
        }
    };
    assert_eq!(claiming("shared.example").await, 1);
    assert_eq!(claiming("free.example").await, 1);
}

/// A replacement is written only while no other provider manages one of its domains (its own
/// are its own to keep); concurrent replacements taking one domain leave one owner.
pub async fn a_provider_replaced_keeps_its_domains_unique(store: &dyn GatewayStore) {
    let ids: Vec<Uuid> = (0..8).map(|i| Uuid::from_u128(0x7200 + i)).collect();
    let originals: Vec<serde_json::Value> = (ids.iter().enumerate())
        .map(|(i, id)| provider(*id, "p", &[&format!("own{i}.example")]))
        .collect();
    for (id, doc) in ids.iter().zip(&originals) {
        let written = store.insert_identity_provider(*id, doc).await;
        assert_eq!(written, Ok(ProviderWrite::Written));
    }
    let taking = provider(ids[1], "p", &["own1.example", "own0.example"]);
    let outcome = store
        .replace_identity_provider(ids[1], &originals[1], &taking)
        .await;
    assert_eq!(outcome, Ok(ProviderWrite::DomainTaken));
    let keeping = provider(ids[1], "renamed", &["own1.example"]);
    let outcome = store
        .replace_identity_provider(ids[1], &originals[1], &keeping)
        .await;
    assert_eq!(outcome, Ok(ProviderWrite::Written));
    let outcome = store
        .replace_identity_provider(ids[1], &originals[1], &keeping)
        .await;
    assert_eq!(
        outcome,
        Ok(ProviderWrite::Changed),
        "the expected version is gone"
    );
    let gone = Uuid::from_u128(0x72ff);
    let outcome = store
        .replace_identity_provider(gone, &keeping, &keeping)
        .await;
    assert_eq!(outcome, Err(StoreError::NotFound));

    let outcomes = eight_at_once(|i| {
        let expected = if i == 1 { &keeping } else { &originals[i] };
        let domains = [format!("own{i}.example"), "contested.example".to_string()];
        let id = ids[i];
        let doc = json!({"id": id, "name": "p", "domains": domains});
        async move { store.replace_identity_provider(id, expected, &doc).await }
    })
    .await;
    let written = (outcomes.iter()).filter(|o| **o == Ok(ProviderWrite::Written));
    assert_eq!(written.count(), 1, "{outcomes:?}");
}

/// A declared provider managing a domain another provider manages refuses the whole
/// declaration, naming `identityProviders[i].domains[j]`; nothing of it is written.
pub async fn a_declared_provider_may_not_take_another_providers_domain(store: &dyn GatewayStore) {
    let api = Uuid::from_u128(0x7300);
    let written = store
        .insert_identity_provider(api, &provider(api, "api", &["conflict.example"]))
        .await;
    assert_eq!(written, Ok(ProviderWrite::Written));
    let (first, second) = (Uuid::from_u128(0x7301), Uuid::from_u128(0x7302));
    let mut declared = super::Declared {
        tenants: vec![tenant()],
        identity_providers: vec![
            (first, provider(first, "one", &["one.example"])),
            (
                second,
                provider(second, "two", &["two.example", "conflict.example"]),
            ),
        ],
        ..Default::default()
    };
    let refused = store.apply_declared(&declared).await.expect_err("refused");
    let (path, message) = super::declared_problem(&refused).expect("a declared problem");
    assert_eq!(path, "identityProviders[1].domains[1]");
    assert!(message.contains(&api.to_string()), "{message}");
    assert!(store
        .get_identity_provider(first)
        .await
        .expect("get")
        .is_none());
    // Two declared providers sharing a domain are refused too; apart, both are written.
    declared.identity_providers[1].1 = provider(second, "two", &["one.example"]);
    let refused = store.apply_declared(&declared).await.expect_err("refused");
    let (path, _) = super::declared_problem(&refused).expect("a declared problem");
    assert!(path.starts_with("identityProviders["), "{path}");
    declared.identity_providers[1].1 = provider(second, "two", &["two.example"]);
    store.apply_declared(&declared).await.expect("applied");
    // Applied again (a reload), a declared provider's own domains are its own.
    store
        .apply_declared(&declared)
        .await
        .expect("applied again");
    assert!(store
        .get_identity_provider(second)
        .await
        .expect("get")
        .is_some());
}
