//! Keeps this gateway's in-memory revocation set in step with the store, where every gateway
//! sharing it records revocations. The revocations table is read from a cursor in commit order:
//! as soon as the store says a revocation committed (PostgreSQL, see [`crate::store::feed`]),
//! every second while it cannot say so (SQLite, or a PostgreSQL listener reconnecting), once
//! after every (re)connection, and every [`SAFETY_POLL_TICKS`] seconds anyway. Also the store's upkeep: pruning revocations
//! no unexpired token can match and rotation records past their time.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_plugin_api::{Clock, SystemClock};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::auth::tokens::RevocationSet;
use crate::store::feed::{FeedEvent, RevocationCursor};
use crate::store::GatewayStore;

/// The period of the loop's clock: polls while nothing is pushed, upkeep.
const TICK: Duration = Duration::from_secs(1);
/// While revocations are pushed, the table is still read this often (in ticks), in case.
const SAFETY_POLL_TICKS: u64 = 30;
/// How often (in ticks) the in-memory set drops revocations no token can match any more.
const PRUNE_REVOCATIONS_TICKS: u64 = 60;
/// How often (in ticks) rotation records are pruned.
const PRUNE_ROTATIONS_TICKS: u64 = 5;
/// The most prune batches one tick runs (each changes at most a thousand rows per kind).
const PRUNE_BATCHES_PER_TICK: usize = 50;

/// The loop's state.
pub struct RevocationSync {
    revocations: Arc<RevocationSet>,
    store: Arc<dyn GatewayStore>,
    feed: Option<UnboundedReceiver<FeedEvent>>,
    /// True while the store's listener reports it is listening.
    listening: bool,
    /// Where the next read of the revocations table starts (commit order).
    cursor: RevocationCursor,
}

impl RevocationSync {
    /// The loop for this gateway, subscribed to the store's pushed revocations when it has any.
    pub fn new(revocations: Arc<RevocationSet>, store: Arc<dyn GatewayStore>) -> RevocationSync {
        RevocationSync {
            cursor: RevocationCursor::default(),
            feed: store.revocation_feed(),
            listening: false,
            revocations,
            store,
        }
    }

    /// Runs forever.
    pub async fn run(mut self) {
        let mut clock = tokio::time::interval(TICK);
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                event = next_event(&mut self.feed) => self.apply(event).await,
                _ = clock.tick() => {
                    ticks += 1;
                    self.on_tick(ticks).await;
                }
            }
        }
    }

    /// Applies one event of the feed (`None`: the feed ended; polling alone from now on).
    async fn apply(&mut self, event: Option<FeedEvent>) {
        match event {
            Some(FeedEvent::Changed) => {
                self.drain_wake_ups();
                self.poll().await;
            }
            Some(FeedEvent::Connected) => {
                self.listening = true;
                self.poll().await;
            }
            Some(FeedEvent::Disconnected) => self.listening = false,
            None => {
                self.feed = None;
                self.listening = false;
            }
        }
    }

    /// Polls when nothing is pushed (or for the periodic safety poll), and does the upkeep.
    async fn on_tick(&mut self, ticks: u64) {
        if !self.listening || ticks.is_multiple_of(SAFETY_POLL_TICKS) {
            self.poll().await;
        }
        if ticks.is_multiple_of(PRUNE_REVOCATIONS_TICKS) {
            self.revocations.prune();
        }
        if ticks.is_multiple_of(PRUNE_ROTATIONS_TICKS) {
            self.prune_rotations().await;
        }
    }

    /// Takes the wake-ups already queued behind the one being handled: one read serves them.
    fn drain_wake_ups(&mut self) {
        let Some(feed) = self.feed.as_mut() else {
            return;
        };
        while let Ok(event) = feed.try_recv() {
            match event {
                FeedEvent::Changed => {}
                FeedEvent::Connected => self.listening = true,
                FeedEvent::Disconnected => self.listening = false,
            }
        }
    }

    /// Reads the revocations committed since the last read (of those that can still matter).
    async fn poll(&mut self) {
        let horizon = self.revocations.horizon();
        match self.store.revocations_since(&self.cursor, horizon).await {
            Ok((revocations, cursor)) => {
                for (scope, at) in revocations {
                    self.revocations.record(scope, at);
                }
                self.cursor = cursor;
            }
            Err(e) => tracing::warn!(error = %e, "cannot read revocations from the store"),
        }
    }

    /// Clears rotation outcomes past their time and deletes old retired values, batch after
    /// batch until none is left (or the tick's bound), so the store keeps up with any rotation
    /// rate.
    async fn prune_rotations(&self) {
        for _ in 0..PRUNE_BATCHES_PER_TICK {
            match self.store.prune_rotations(SystemClock.now_millis()).await {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot prune rotated refresh tokens");
                    return;
                }
            }
        }
    }
}

/// The next event of the feed; never ready when there is no feed.
async fn next_event(feed: &mut Option<UnboundedReceiver<FeedEvent>>) -> Option<FeedEvent> {
    match feed {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}
