//! The pending links of the `CreatePendingLink` strategy: in memory, keyed by a 256-bit random
//! id, for a limited time (one hour by default). They are short-lived hand-offs between a login
//! and the Link API call that completes it ([`crate::links`]), so they are not written to the
//! store and do not survive a restart (the user simply logs in again).
//!
//! They are bounded ([`PendingLinkLimits`]): in count and in bytes, per provider and in total,
//! the oldest evicted first when a bound is reached (a login always gets its pending link; an
//! evicted one is answered like an expired one). Each link keeps only what completing it needs
//! (provider, provider user id, display name, email, username, tenant, and the provider's refresh
//! token), within [`MAX_PENDING_TOKEN_BYTES`] for the token and [`MAX_PENDING_IDENTITY_BYTES`]
//! for the rest, or the login is refused ([`PendingLink::check_size`]). The same provider user
//! logging in again (same provider and tenant) reuses its pending link, under the same id.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gatehouse_plugin_api::ApiError;
use serde::Serialize;
use uuid::Uuid;

/// A login that found no link under the `CreatePendingLink` strategy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingLink {
    /// The provider.
    pub identity_provider_id: Uuid,
    /// Its name.
    pub identity_provider_name: String,
    /// Always `ExternalJWT`.
    pub identity_provider_type: &'static str,
    /// The provider's user id.
    pub identity_provider_user_id: String,
    /// Display name for the link.
    pub display_name: String,
    /// The token's email, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The token's username, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The tenant of the application the login was for.
    #[serde(skip)]
    pub tenant_id: Uuid,
    /// The provider's refresh token, stored on the link when it is made.
    #[serde(skip)]
    pub token: Option<String>,
}

/// The most bytes of the provider's refresh token a pending link keeps (FusionAuth stores it on
/// the link it completes); a login bringing a larger one is refused.
pub const MAX_PENDING_TOKEN_BYTES: usize = 8 * 1024;

/// The most bytes of identity (provider user id, email, username, display name, provider name)
/// a pending link keeps; a login whose identity is larger is refused.
pub const MAX_PENDING_IDENTITY_BYTES: usize = 4 * 1024;

/// What a pending link costs besides its strings: its id, the map entries and their indexes.
const ENTRY_OVERHEAD_BYTES: usize = 512;

/// The most bytes one pending link can count for; byte bounds are at least this.
pub const MAX_PENDING_LINK_BYTES: usize =
    MAX_PENDING_TOKEN_BYTES + MAX_PENDING_IDENTITY_BYTES + ENTRY_OVERHEAD_BYTES;

impl PendingLink {
    /// The identity's bytes: every string the link keeps but the token.
    fn identity_bytes(&self) -> usize {
        self.identity_provider_name.len()
            + self.identity_provider_user_id.len()
            + self.display_name.len()
            + self.email.as_ref().map_or(0, String::len)
            + self.username.as_ref().map_or(0, String::len)
    }

    /// The bytes this link counts for in the bounds.
    pub fn size(&self) -> usize {
        self.identity_bytes() + self.token.as_ref().map_or(0, String::len) + ENTRY_OVERHEAD_BYTES
    }

    /// Checks the link is small enough to keep: a 400 naming `token_field` (where the request
    /// gave the provider's refresh token) when the token is over [`MAX_PENDING_TOKEN_BYTES`], a
    /// 400 `[tooLarge]pendingIdPLink` when the identity is over
    /// [`MAX_PENDING_IDENTITY_BYTES`]. Neither message contains what the client sent.
    pub fn check_size(&self, token_field: &str) -> Result<(), ApiError> {
        if self.token.as_ref().map_or(0, String::len) > MAX_PENDING_TOKEN_BYTES {
            return Err(ApiError::field(
                token_field,
                "tooLarge",
                format!(
                    "The identity provider's refresh token is over the {MAX_PENDING_TOKEN_BYTES} bytes a pending link keeps."
                ),
            ));
        }
        if self.identity_bytes() > MAX_PENDING_IDENTITY_BYTES {
            return Err(ApiError::general(
                "[tooLarge]pendingIdPLink",
                format!(
                    "The JWT's identity (unique id, email, username) is over the {MAX_PENDING_IDENTITY_BYTES} bytes a pending link keeps."
                ),
            ));
        }
        Ok(())
    }

    /// What makes two pending links the same provider user's: provider, tenant, user id.
    fn owner(&self) -> (Uuid, Uuid, String) {
        (
            self.identity_provider_id,
            self.tenant_id,
            self.identity_provider_user_id.clone(),
        )
    }
}

/// The bounds of the pending links (`plugins.identity-provider` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLinkLimits {
    /// How long a pending link lives.
    pub ttl: Duration,
    /// Pending links at most, all providers together.
    pub max_links: usize,
    /// Pending links at most per provider.
    pub max_links_per_provider: usize,
    /// Bytes at most ([`PendingLink::size`]), all providers together.
    pub max_bytes: usize,
    /// Bytes at most per provider.
    pub max_bytes_per_provider: usize,
}

impl Default for PendingLinkLimits {
    fn default() -> Self {
        PendingLinkLimits {
            ttl: Duration::from_secs(3600),
            max_links: 10_000,
            max_links_per_provider: 1_000,
            max_bytes: 32 << 20,
            max_bytes_per_provider: 8 << 20,
        }
    }
}

/// One stored pending link.
#[derive(Debug)]
struct Entry {
    /// When it expires.
    expires: Instant,
    /// Its place in the insertion order (the oldest has the smallest).
    order: u64,
    /// Its bytes in the bounds.
    size: usize,
    /// The link.
    link: PendingLink,
}

/// What one provider holds.
#[derive(Debug, Default)]
struct Usage {
    /// Its links, by insertion order.
    order: BTreeMap<u64, String>,
    /// Their bytes.
    bytes: usize,
}

/// The map and its indexes, under one lock.
#[derive(Debug, Default)]
struct Table {
    /// Links by id.
    entries: HashMap<String, Entry>,
    /// Ids by insertion order, every provider together (also the expiry order: one TTL).
    order: BTreeMap<u64, String>,
    /// Ids by provider user.
    owners: HashMap<(Uuid, Uuid, String), String>,
    /// What each provider holds.
    providers: HashMap<Uuid, Usage>,
    /// Bytes of all links.
    bytes: usize,
    /// The next insertion's order.
    next: u64,
}

impl Table {
    /// Removes link `id`; returns it.
    fn remove(&mut self, id: &str) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        self.order.remove(&entry.order);
        self.owners.remove(&entry.link.owner());
        self.bytes -= entry.size;
        let provider = entry.link.identity_provider_id;
        if let Some(usage) = self.providers.get_mut(&provider) {
            usage.order.remove(&entry.order);
            usage.bytes -= entry.size;
            if usage.order.is_empty() {
                self.providers.remove(&provider);
            }
        }
        Some(entry)
    }

    /// Removes the expired links (the oldest ones).
    fn prune(&mut self, now: Instant) {
        while let Some((_, id)) = self.order.first_key_value() {
            let id = id.clone();
            if self.entries.get(&id).is_some_and(|e| e.expires > now) {
                break;
            }
            self.remove(&id);
        }
    }

    /// Evicts the oldest links until one of `size` bytes fits `limits` for `provider`.
    fn make_room(&mut self, provider: Uuid, size: usize, limits: &PendingLinkLimits) {
        loop {
            let usage = self.providers.get(&provider);
            let (count, bytes) = usage.map_or((0, 0), |u| (u.order.len(), u.bytes));
            if count > 0
                && (count >= limits.max_links_per_provider
                    || bytes + size > limits.max_bytes_per_provider)
            {
                let oldest = usage.and_then(|u| u.order.first_key_value());
                if let Some(id) = oldest.map(|(_, id)| id.clone()) {
                    self.remove(&id);
                    continue;
                }
            }
            if !self.entries.is_empty()
                && (self.entries.len() >= limits.max_links || self.bytes + size > limits.max_bytes)
            {
                if let Some(id) = self.order.first_key_value().map(|(_, id)| id.clone()) {
                    self.remove(&id);
                    continue;
                }
            }
            return;
        }
    }

    /// Adds `link` under `id`, expiring at `expires`.
    fn add(&mut self, id: String, link: PendingLink, expires: Instant) {
        let (order, size) = (self.next, link.size());
        self.next += 1;
        self.order.insert(order, id.clone());
        self.owners.insert(link.owner(), id.clone());
        self.bytes += size;
        let usage = self.providers.entry(link.identity_provider_id).or_default();
        usage.order.insert(order, id.clone());
        usage.bytes += size;
        let entry = Entry {
            expires,
            order,
            size,
            link,
        };
        self.entries.insert(id, entry);
    }
}

/// Pending links in memory, each with an expiry, within [`PendingLinkLimits`].
#[derive(Debug)]
pub struct PendingLinks {
    limits: PendingLinkLimits,
    table: Mutex<Table>,
}

impl PendingLinks {
    /// An empty store with these bounds.
    pub fn new(limits: PendingLinkLimits) -> Self {
        PendingLinks {
            limits,
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every change of the table completes before the lock is released (no call inside can
        // panic half-way), so a poisoned lock is still consistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `link` and returns its id: the id the same provider user's live pending link
    /// already has (replaced by `link`, its life started anew), else `new_id`. Expired links go
    /// first, then the oldest links while a bound would be exceeded. The caller has checked the
    /// link's size ([`PendingLink::check_size`]).
    pub fn insert(&self, new_id: String, link: PendingLink) -> String {
        let now = Instant::now();
        let mut table = self.lock();
        table.prune(now);
        let id = match table.owners.get(&link.owner()).cloned() {
            Some(existing) => {
                table.remove(&existing);
                existing
            }
            None => new_id,
        };
        table.make_room(link.identity_provider_id, link.size(), &self.limits);
        table.add(id.clone(), link, now + self.limits.ttl);
        id
    }

    /// The live pending link `id`.
    pub fn get(&self, id: &str) -> Option<PendingLink> {
        let now = Instant::now();
        self.lock()
            .entries
            .get(id)
            .filter(|e| e.expires > now)
            .map(|e| e.link.clone())
    }

    /// Removes and returns the live pending link `id`.
    pub fn take(&self, id: &str) -> Option<PendingLink> {
        let now = Instant::now();
        self.lock()
            .remove(id)
            .filter(|e| e.expires > now)
            .map(|e| e.link)
    }

    /// How many pending links are kept, and their bytes ([`PendingLink::size`]), expired ones
    /// included until they are pruned.
    pub fn usage(&self) -> (usize, usize) {
        let table = self.lock();
        (table.entries.len(), table.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::EXTERNAL_JWT;

    fn link_of(provider: Uuid, user: &str, token_bytes: usize) -> PendingLink {
        PendingLink {
            identity_provider_id: provider,
            identity_provider_name: "p".into(),
            identity_provider_type: EXTERNAL_JWT,
            identity_provider_user_id: user.into(),
            display_name: user.into(),
            email: None,
            username: None,
            tenant_id: Uuid::nil(),
            token: (token_bytes > 0).then(|| "t".repeat(token_bytes)),
        }
    }

    fn link() -> PendingLink {
        let mut link = link_of(Uuid::new_v4(), "u", 0);
        link.token = Some("secret".into());
        link
    }

    fn limits() -> PendingLinkLimits {
        PendingLinkLimits {
            ttl: Duration::from_secs(60),
            ..PendingLinkLimits::default()
        }
    }

    #[test]
    fn pending_links_expire_and_are_taken_once() {
        let store = PendingLinks::new(limits());
        assert_eq!(store.insert("a".into(), link()), "a");
        assert!(store.get("a").is_some());
        assert!(store.take("a").is_some());
        assert!(store.take("a").is_none());
        assert_eq!(store.usage(), (0, 0));
        let short = PendingLinks::new(PendingLinkLimits {
            ttl: Duration::from_millis(1),
            ..limits()
        });
        short.insert("b".into(), link());
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.get("b").is_none());
        // the next insert prunes it
        short.insert("c".into(), link());
        assert_eq!(short.usage().0, 1);
        // the provider's token never appears in the JSON of a pending link
        let text = serde_json::to_string(&link()).expect("json");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn the_same_provider_user_reuses_one_pending_link() {
        let store = PendingLinks::new(limits());
        let provider = Uuid::new_v4();
        let first = store.insert("id-1".into(), link_of(provider, "ann", 100));
        for i in 2..50 {
            let id = store.insert(format!("id-{i}"), link_of(provider, "ann", 100 + i));
            assert_eq!(id, first);
        }
        let kept = store.get(&first).expect("kept");
        assert_eq!(
            kept.token.map(|t| t.len()),
            Some(149),
            "the latest login's token"
        );
        assert_eq!(store.usage(), (1, link_of(provider, "ann", 149).size()));
        // another tenant or another provider user is another pending link
        let mut other_tenant = link_of(provider, "ann", 0);
        other_tenant.tenant_id = Uuid::new_v4();
        assert_eq!(store.insert("t".into(), other_tenant), "t");
        assert_eq!(store.insert("b".into(), link_of(provider, "bob", 0)), "b");
        assert_eq!(store.usage().0, 3);
    }

    #[test]
    fn counts_are_bounded_per_provider_and_in_total_oldest_first() {
        let store = PendingLinks::new(PendingLinkLimits {
            max_links: 5,
            max_links_per_provider: 3,
            ..limits()
        });
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for i in 0..10 {
            store.insert(format!("a{i}"), link_of(a, &format!("a{i}"), 0));
        }
        let live = |prefix: &str, n: usize| -> Vec<String> {
            (0..n)
                .map(|i| format!("{prefix}{i}"))
                .filter(|id| store.get(id).is_some())
                .collect()
        };
        assert_eq!(live("a", 10), ["a7", "a8", "a9"]);
        for i in 0..3 {
            store.insert(format!("b{i}"), link_of(b, &format!("b{i}"), 0));
        }
        // five in total: provider a's oldest went first
        assert_eq!(live("a", 10), ["a8", "a9"]);
        assert_eq!(live("b", 3), ["b0", "b1", "b2"]);
        assert_eq!(store.usage().0, 5);
    }

    #[test]
    fn bytes_are_bounded_per_provider_and_in_total() {
        let per_link = link_of(Uuid::nil(), "u0", 5_000).size();
        let store = PendingLinks::new(PendingLinkLimits {
            max_bytes: 3 * per_link,
            max_bytes_per_provider: 2 * per_link,
            ..limits()
        });
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for i in 0..6 {
            store.insert(format!("a{i}"), link_of(a, &format!("u{i}"), 5_000));
            let (count, bytes) = store.usage();
            assert!(bytes <= 2 * per_link, "{count} links, {bytes} bytes");
        }
        assert!(store.get("a4").is_some() && store.get("a5").is_some());
        assert!(store.get("a3").is_none());
        for i in 0..2 {
            store.insert(format!("b{i}"), link_of(b, &format!("u{i}"), 5_000));
        }
        let (count, bytes) = store.usage();
        assert_eq!((count, bytes), (3, 3 * per_link));
        assert!(store.get("a4").is_none() && store.get("a5").is_some());
    }

    #[test]
    fn what_a_pending_link_keeps_is_bounded() {
        let ok = link_of(Uuid::nil(), "u", MAX_PENDING_TOKEN_BYTES);
        assert!(ok.check_size("refresh_token").is_ok());
        assert!(ok.size() <= MAX_PENDING_LINK_BYTES);
        let big = link_of(Uuid::nil(), "u", MAX_PENDING_TOKEN_BYTES + 1);
        let err = big.check_size("data.refresh_token").expect_err("too large");
        let body: serde_json::Value =
            serde_json::from_slice(&err.to_response().body).expect("json");
        assert_eq!(err.status(), 400);
        assert_eq!(
            body["fieldErrors"]["data.refresh_token"][0]["code"],
            "[tooLarge]data.refresh_token"
        );
        assert!(!body.to_string().contains("ttttt"), "{body}");
        let mut identity = link_of(Uuid::nil(), "u", 0);
        identity.email = Some("e".repeat(MAX_PENDING_IDENTITY_BYTES));
        let err = identity.check_size("refresh_token").expect_err("too large");
        let body: serde_json::Value =
            serde_json::from_slice(&err.to_response().body).expect("json");
        assert_eq!(body["generalErrors"][0]["code"], "[tooLarge]pendingIdPLink");
    }
}
