//! The login state, bound to the browser that started the login.
//!
//! `GET {base}/login/…` sends the provider a fresh random `state` and `nonce` and a PKCE S256
//! challenge, and keeps them, with the provider, the application and where to return, in the
//! `gatehouse_login` cookie: HttpOnly, `SameSite=Lax` (the provider's redirect back is a
//! top-level navigation, which Lax cookies follow), `Path={base}/callback`, ten minutes. The
//! cookie is `payload.mac`, the MAC an HMAC-SHA256 checked in constant time: a browser cannot
//! forge or alter it, and a `state` that is not the one in this browser's cookie (an attacker's
//! callback URL: login CSRF) is refused. The cookie is readable by no script; it holds the PKCE
//! verifier, which is worth nothing without the code the provider sends to this browser only.
//!
//! **Shared through the store, so a cluster needs no sticky sessions.** The key is 32 random
//! bytes created once, by the first gateway that starts with the store
//! ([`LoginStateStore::login_state_key`]: insert-if-absent), read by every gateway at start
//! ([`SharedStateKey::load`]) and kept in memory, across reloads too (a reload reads the same
//! key). Each `state` completes one login: its SHA-256 is recorded in the store with one
//! insert-if-absent ([`use_once`]), so a replayed callback is refused on whichever gateway it
//! reaches, and two gateways cannot both accept the same state.

use aws_lc_rs::{digest, hmac, rand};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gatehouse_plugin_api::store::{StoreError, StoreResult};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::LoginStateStore;

/// The login-state cookie's name.
pub const STATE_COOKIE: &str = "gatehouse_login";

/// How long a login may take, from the redirect to the provider to the callback (seconds).
pub const STATE_TTL_SECONDS: i64 = 600;

/// The length of the login-state key created for a store (bytes).
pub const KEY_BYTES: usize = 32;

/// What a login keeps between the redirect to the provider and the callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    /// The `state` sent to the provider.
    pub state: String,
    /// The `nonce` sent to the provider; the ID token must carry it.
    pub nonce: String,
    /// The PKCE verifier whose S256 challenge was sent.
    pub verifier: String,
    /// The provider.
    pub provider: Uuid,
    /// The application.
    pub application: Uuid,
    /// Where to send the browser afterwards (an allowed target, see [`super::redirect`]).
    pub redirect: String,
    /// The app's own `state`, handed back on the redirect.
    pub app_state: Option<String>,
    /// Until when (seconds since the epoch) the state is accepted.
    pub expires: i64,
}

/// The key that signs login states.
pub struct StateKey {
    key: hmac::Key,
}

impl StateKey {
    /// The key of `bytes` (the store's shared key).
    pub fn from_bytes(bytes: &[u8]) -> StateKey {
        StateKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// A key of [`KEY_BYTES`] random bytes, kept nowhere (tests).
    pub fn generate() -> StateKey {
        StateKey::from_bytes(&random_key())
    }

    /// The cookie value of `state`: `base64url(JSON).base64url(HMAC)`.
    pub fn seal(&self, state: &LoginState) -> String {
        let json = serde_json::to_vec(state).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The state of a cookie value this key sealed and that has not expired at `now`
    /// (seconds); `None` for anything else (altered, forged, expired, malformed).
    pub fn open(&self, value: &str, now: i64) -> Option<LoginState> {
        let (payload, tag) = value.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        // Constant time (aws-lc's verify).
        hmac::verify(&self.key, payload.as_bytes(), &tag).ok()?;
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let state: LoginState = serde_json::from_slice(&json).ok()?;
        (state.expires > now).then_some(state)
    }
}

/// The store's login-state key, read once and kept for the plugin's life.
#[derive(Default)]
pub struct SharedStateKey {
    loaded: tokio::sync::OnceCell<StateKey>,
}

impl SharedStateKey {
    /// The key, read from `store` the first time (storing a new random one when the store has
    /// none), from memory afterwards. An `Err` when the store cannot be read: nothing is kept,
    /// and the next call tries again.
    pub async fn load(&self, store: &dyn LoginStateStore) -> StoreResult<&StateKey> {
        self.loaded
            .get_or_try_init(|| async {
                let bytes = store.login_state_key(&random_key()).await?;
                if bytes.len() < 16 {
                    return Err(StoreError::Backend(
                        "the stored login-state key is shorter than 16 bytes".into(),
                    ));
                }
                Ok(StateKey::from_bytes(&bytes))
            })
            .await
    }
}

/// Marks `state` (kept as its SHA-256, Base64) used until `expires` in the store shared by
/// every gateway: `Ok(false)` when it already was (a replayed callback, on any gateway).
pub async fn use_once(
    store: &dyn LoginStateStore,
    state: &str,
    expires: i64,
    now: i64,
) -> StoreResult<bool> {
    let digest = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, state.as_bytes()));
    store.use_login_state(&digest, expires, now).await
}

/// [`KEY_BYTES`] random bytes.
fn random_key() -> [u8; KEY_BYTES] {
    let mut bytes = [0u8; KEY_BYTES];
    // The system's random source failing is not recoverable; a fixed key would be worse.
    rand::fill(&mut bytes).expect("random bytes for the login-state key");
    bytes
}

/// 256 random bits, URL-safe Base64 (43 characters): a `state`, a `nonce` or a PKCE verifier
/// (RFC 7636 §4.1 allows 43 to 128 such characters).
pub fn random_value() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes).expect("random bytes");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref())
}

/// True when `a` and `b` are equal, compared in constant time.
pub fn same(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> LoginState {
        LoginState {
            state: random_value(),
            nonce: random_value(),
            verifier: random_value(),
            provider: Uuid::new_v4(),
            application: Uuid::new_v4(),
            redirect: "/".into(),
            app_state: None,
            expires: 1_000,
        }
    }

    #[test]
    fn a_sealed_state_opens_only_unaltered_unexpired_and_under_its_key() {
        let key = StateKey::generate();
        let s = state();
        let sealed = key.seal(&s);
        assert_eq!(key.open(&sealed, 999), Some(s.clone()));
        assert_eq!(key.open(&sealed, 1_000), None, "expired");
        assert_eq!(StateKey::generate().open(&sealed, 0), None, "another key");
        let (payload, tag) = sealed.split_once('.').expect("two parts");
        let mut other = s.clone();
        other.redirect = "https://evil.example/".into();
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).expect("json"));
        assert_eq!(key.open(&format!("{forged}.{tag}"), 0), None, "altered");
        assert_eq!(key.open(payload, 0), None, "no MAC");
        assert_eq!(key.open(&format!("{payload}."), 0), None, "empty MAC");
        assert_eq!(key.open("", 0), None);
    }

    /// A store that keeps the key and the used states in memory.
    #[derive(Default)]
    struct Memory {
        key: std::sync::Mutex<Option<Vec<u8>>>,
        used: std::sync::Mutex<std::collections::HashMap<String, i64>>,
        reads: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl LoginStateStore for Memory {
        async fn login_state_key(&self, candidate: &[u8]) -> StoreResult<Vec<u8>> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut key = self.key.lock().expect("lock");
            Ok(key.get_or_insert_with(|| candidate.to_vec()).clone())
        }
        async fn use_login_state(&self, state: &str, expires: i64, now: i64) -> StoreResult<bool> {
            let mut used = self.used.lock().expect("lock");
            used.retain(|_, until| *until > now);
            Ok(used.insert(state.to_string(), expires).is_none())
        }
    }

    #[tokio::test]
    async fn the_key_is_the_stores_read_once_and_shared_by_every_plugin_instance() {
        let store = Memory::default();
        let (a, b) = (SharedStateKey::default(), SharedStateKey::default());
        let sealed = a.load(&store).await.expect("key").seal(&state());
        // Another node, or the plugin after a reload, opens what this one sealed.
        assert!(b
            .load(&store)
            .await
            .expect("key")
            .open(&sealed, 0)
            .is_some());
        a.load(&store).await.expect("cached");
        assert_eq!(store.reads.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(StateKey::generate().open(&sealed, 0), None);
    }

    #[tokio::test]
    async fn a_state_is_used_once_and_kept_as_a_digest() {
        let store = Memory::default();
        assert!(use_once(&store, "s", 10, 0).await.expect("first"));
        assert!(!use_once(&store, "s", 10, 5).await.expect("replay"));
        assert!(use_once(&store, "t", 10, 5).await.expect("another"));
        let used = store.used.lock().expect("lock");
        assert!(used.keys().all(|k| k.len() == 43 && k != "s"), "{used:?}");
    }

    #[test]
    fn pkce_and_values() {
        // RFC 7636 Appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let v = random_value();
        assert_eq!(v.len(), 43);
        assert_ne!(v, random_value());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
