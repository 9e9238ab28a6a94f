//! One node's memory of its one-time-use rotations, which the refresh rules consult when a
//! retired value comes back: which values this node is rotating right now (a request that
//! overlaps such a rotation gets its outcome), and which rotations it attempted without a
//! confirmed answer from the store (the client got a 503 and may retry once with the old value).
//!
//! Only in memory, only on this node: a retired value presented to another node is judged by
//! the configured grace period and race window alone. Values are kept as given (they are
//! secrets: nothing here prints or logs them) and never longer than the bound they were stored
//! with.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

/// The most unconfirmed rotations remembered at once; beyond it new ones are not remembered
/// (their retry is then judged by the grace period and race window alone).
pub const MAX_UNCONFIRMED: usize = 10_000;

#[derive(Default)]
struct State {
    /// Exchanges of a value under way on this node, between "found live, rotating" and their
    /// answer: how many.
    rotating: HashMap<String, usize>,
    /// Values whose rotation's answer from the store was an error (it may have committed): until
    /// when (ms) one retry may be answered with the rotation's outcome.
    unconfirmed: HashMap<String, i64>,
}

/// This node's in-progress and unconfirmed one-time-use rotations (see the module docs).
#[derive(Default)]
pub struct RotationLedger {
    state: Mutex<State>,
}

impl fmt::Debug for RotationLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("RotationLedger")
            .field("rotating", &state.rotating.len())
            .field("unconfirmed", &state.unconfirmed.len())
            .finish()
    }
}

/// Marks one rotation of a value as under way on this node until it is dropped.
#[must_use = "the rotation counts as under way only while this guard lives"]
pub struct Rotating<'a> {
    ledger: &'a RotationLedger,
    value: String,
}

impl Drop for Rotating<'_> {
    fn drop(&mut self) {
        let mut state = self.ledger.lock();
        if let Some(count) = state.rotating.get_mut(&self.value) {
            *count -= 1;
            if *count == 0 {
                state.rotating.remove(&self.value);
            }
        }
    }
}

/// A rotation sent to the store whose answer has not come back yet: dropped before
/// [`Unanswered::answered`] (the request was abandoned, e.g. its handler aborted at the API's
/// time limit), it marks the value unconfirmed, as an error from the store does, since the
/// rotation may have committed unseen.
#[must_use = "the value is marked unconfirmed when this is dropped unanswered"]
pub struct Unanswered<'a> {
    ledger: &'a RotationLedger,
    value: String,
    until_ms: i64,
    now_ms: i64,
    armed: bool,
}

impl Unanswered<'_> {
    /// The store answered: nothing is marked.
    pub fn answered(mut self) {
        self.armed = false;
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.ledger
                .mark_unconfirmed(&self.value, self.until_ms, self.now_ms);
        }
    }
}

impl RotationLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        RotationLedger::default()
    }

    /// The state; a poisoned lock is taken over (every update leaves the maps consistent).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that this node is rotating `value` (it found the value live): the returned guard
    /// keeps it recorded until the exchange has produced its answer.
    pub fn begin_rotation(&self, value: &str) -> Rotating<'_> {
        *self.lock().rotating.entry(value.to_string()).or_insert(0) += 1;
        Rotating {
            ledger: self,
            value: value.to_string(),
        }
    }

    /// True when an exchange on this node is rotating `value` right now.
    pub fn is_rotating(&self, value: &str) -> bool {
        self.lock().rotating.contains_key(value)
    }

    /// Remembers that the store's answer to rotating `value` was an error, so whether the
    /// rotation committed is unknown: one retry with `value` until `until_ms` may get the
    /// rotation's outcome. Returns false when the ledger is full (nothing is remembered).
    pub fn mark_unconfirmed(&self, value: &str, until_ms: i64, now_ms: i64) -> bool {
        let mut state = self.lock();
        if state.unconfirmed.len() >= MAX_UNCONFIRMED {
            state.unconfirmed.retain(|_, until| *until >= now_ms);
        }
        if state.unconfirmed.len() >= MAX_UNCONFIRMED && !state.unconfirmed.contains_key(value) {
            return false;
        }
        state.unconfirmed.insert(value.to_string(), until_ms);
        true
    }

    /// Records that the rotation of `value` was sent to the store at `now_ms`: unless the
    /// returned guard is told the store [answered](Unanswered::answered), dropping it marks the
    /// value unconfirmed until `until_ms` (see [`Self::mark_unconfirmed`]).
    pub fn await_rotation(&self, value: &str, until_ms: i64, now_ms: i64) -> Unanswered<'_> {
        Unanswered {
            ledger: self,
            value: value.to_string(),
            until_ms,
            now_ms,
            armed: true,
        }
    }

    /// Takes the unconfirmed mark of `value`: true (once) when one was set and has not lapsed
    /// at `now_ms`. A lapsed mark is dropped.
    pub fn take_unconfirmed(&self, value: &str, now_ms: i64) -> bool {
        self.lock()
            .unconfirmed
            .remove(value)
            .is_some_and(|until| now_ms <= until)
    }

    /// Forgets the unconfirmed mark of `value` (its rotation turned out not to have committed).
    pub fn clear_unconfirmed(&self, value: &str) {
        self.lock().unconfirmed.remove(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_is_under_way_while_its_guards_live() {
        let ledger = RotationLedger::new();
        assert!(!ledger.is_rotating("a"));
        let first = ledger.begin_rotation("a");
        let second = ledger.begin_rotation("a");
        assert!(ledger.is_rotating("a"));
        assert!(!ledger.is_rotating("b"));
        drop(first);
        assert!(ledger.is_rotating("a"), "one exchange still under way");
        drop(second);
        assert!(!ledger.is_rotating("a"));
    }

    #[test]
    fn an_unconfirmed_mark_is_taken_once_and_only_before_it_lapses() {
        let ledger = RotationLedger::new();
        assert!(!ledger.take_unconfirmed("a", 0));
        assert!(ledger.mark_unconfirmed("a", 1_000, 0));
        assert!(
            ledger.take_unconfirmed("a", 1_000),
            "the bound is inclusive"
        );
        assert!(!ledger.take_unconfirmed("a", 1_000), "once");
        assert!(ledger.mark_unconfirmed("b", 1_000, 0));
        assert!(!ledger.take_unconfirmed("b", 1_001), "lapsed");
        assert!(ledger.mark_unconfirmed("c", 1_000, 0));
        ledger.clear_unconfirmed("c");
        assert!(!ledger.take_unconfirmed("c", 0));
    }

    #[test]
    fn a_rotation_abandoned_before_the_store_answered_is_unconfirmed() {
        let ledger = RotationLedger::new();
        ledger.await_rotation("answered", 1_000, 0).answered();
        assert!(!ledger.take_unconfirmed("answered", 0));
        drop(ledger.await_rotation("abandoned", 1_000, 0));
        assert!(ledger.take_unconfirmed("abandoned", 500));
        assert!(!ledger.take_unconfirmed("abandoned", 500), "once");
    }

    #[test]
    fn the_ledger_is_bounded_and_makes_room_from_lapsed_marks() {
        let ledger = RotationLedger::new();
        for i in 0..MAX_UNCONFIRMED {
            assert!(ledger.mark_unconfirmed(&i.to_string(), 10, 0));
        }
        assert!(!ledger.mark_unconfirmed("one more", 10, 0), "full");
        assert!(
            ledger.mark_unconfirmed("0", 20, 0),
            "an existing mark is renewed"
        );
        assert!(
            ledger.mark_unconfirmed("later", 100, 11),
            "lapsed marks make room"
        );
        assert!(ledger.take_unconfirmed("later", 50));
        assert!(
            !format!("{ledger:?}").contains("later"),
            "values are never printed"
        );
    }
}
