//! Locks a panic poisoned: taken over, reported once.
//!
//! A panic while a lock was held poisons it. Where every update under the lock leaves the data
//! consistent (or a transaction rolls it back), failing every later caller would turn one bug
//! into an outage, and reporting it as anything else ("store unavailable") would send operators
//! after the wrong cause. So the lock is taken over and the poison cleared, with one error line
//! naming the lock: an internal fault, logged as what it is.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`; when a panic poisoned it, logs one error line naming `what`, clears the
/// poison and returns the guard all the same. The guard is the caller's to use as usual.
pub fn lock_or_take_over<'a, T>(mutex: &'a Mutex<T>, what: &str) -> MutexGuard<'a, T> {
    mutex.lock().unwrap_or_else(|poisoned| {
        tracing::error!(
            lock = what,
            "internal error: a panic poisoned this lock; its state is consistent, so it is taken over"
        );
        mutex.clear_poison();
        poisoned.into_inner()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_taken_over_and_cleared() {
        let mutex = Mutex::new(1);
        let poisoned = std::thread::scope(|s| {
            s.spawn(|| {
                let _guard = mutex.lock().expect("lock");
                panic!("panicked while holding the lock");
            })
            .join()
        });
        assert!(poisoned.is_err());
        assert!(mutex.is_poisoned());
        *lock_or_take_over(&mutex, "test") += 1;
        assert!(!mutex.is_poisoned(), "the poison is cleared: one report");
        assert_eq!(*lock_or_take_over(&mutex, "test"), 2);
    }
}
