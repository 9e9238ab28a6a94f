//! The login state, bound to the browser that started the login.
//!
//! `GET {base}/login/…` sends the provider a fresh random `state` and `nonce` and a PKCE S256
//! challenge, and keeps them, with the provider, the application and where to return, in the
//! `gatehouse_login` cookie: HttpOnly, `SameSite=Lax` (the provider's redirect back is a
//! top-level navigation, which Lax cookies follow), `Path={base}/callback`, ten minutes. The
//! cookie is `payload.mac`, the MAC an HMAC-SHA256 under a key drawn at random when the plugin
//! starts, checked in constant time: a browser cannot forge or alter it, and a `state` that is
//! not the one in this browser's cookie (an attacker's callback URL: login CSRF) is refused.
//! Each `state` completes one login ([`StateKey::use_once`]), so a replayed callback is refused
//! even with its cookie. The cookie is readable by no script; it holds the PKCE verifier, which
//! is worth nothing without the code the provider sends to this browser only.
//!
//! The key lives in this process: in a cluster, the callback must reach the node that started
//! the login (sticky sessions for `{base}/`), or the login starts over.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::{digest, hmac, rand};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The login-state cookie's name.
pub const STATE_COOKIE: &str = "gatehouse_login";

/// How long a login may take, from the redirect to the provider to the callback (seconds).
pub const STATE_TTL_SECONDS: i64 = 600;

/// The most completed states remembered (each for [`STATE_TTL_SECONDS`]); beyond it the
/// oldest are forgotten first (their codes are spent at the provider anyway).
pub const MAX_USED_STATES: usize = 100_000;

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

/// The key that signs login states, and the states already used.
pub struct StateKey {
    key: hmac::Key,
    used: Mutex<HashMap<String, i64>>,
}

impl Default for StateKey {
    fn default() -> Self {
        StateKey::generate()
    }
}

impl StateKey {
    /// A key of 32 random bytes.
    pub fn generate() -> StateKey {
        let mut bytes = [0u8; 32];
        // The system's random source failing is not recoverable; a fixed key would be worse.
        rand::fill(&mut bytes).expect("random bytes for the login-state key");
        StateKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            used: Mutex::new(HashMap::new()),
        }
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

    /// Marks `state` used; false when it already was (a replayed callback).
    pub fn use_once(&self, state: &str, expires: i64, now: i64) -> bool {
        // Entries are inserted whole: a panic while held leaves nothing half-changed.
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.contains_key(state) {
            return false;
        }
        if used.len() >= MAX_USED_STATES {
            used.retain(|_, until| *until > now);
        }
        if used.len() >= MAX_USED_STATES {
            if let Some(oldest) = used.iter().min_by_key(|(_, u)| **u).map(|(k, _)| k.clone()) {
                used.remove(&oldest);
            }
        }
        used.insert(state.to_string(), expires);
        true
    }
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

    #[test]
    fn a_state_is_used_once_and_the_memory_is_bounded() {
        let key = StateKey::generate();
        assert!(key.use_once("s", 10, 0));
        assert!(!key.use_once("s", 10, 5));
        for i in 0..MAX_USED_STATES + 5 {
            key.use_once(&format!("x{i}"), 10 + i as i64, 0);
        }
        assert!(key.used.lock().expect("lock").len() <= MAX_USED_STATES);
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
