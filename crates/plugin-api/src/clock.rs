//! Time, behind a trait so tests can fix it.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current instant.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch (FusionAuth's "instant").
    fn now_millis(&self) -> i64;

    /// Seconds since the Unix epoch (JWT `iat`/`exp` units).
    fn now_seconds(&self) -> i64 {
        self.now_millis() / 1000
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}
