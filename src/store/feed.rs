//! Revocations pushed by the store as other gateways commit them.
//!
//! On PostgreSQL a revocation's transaction also runs `pg_notify` on [`CHANNEL`], so it is
//! announced exactly when it commits, to every gateway listening. Each gateway keeps one
//! connection of its own (outside the pool) on `LISTEN`; a notification is only a wake-up call
//! ([`FeedEvent::Changed`]): the gateway then reads the revocations table from its
//! [`RevocationCursor`], so what it applies is what the table holds, never what a notification
//! says (any database login may `NOTIFY`). A burst of notifications is one read.
//!
//! A notification reaches only the listeners connected at commit time, so after every
//! (re)connection the listener reports [`FeedEvent::Connected`] *after* its `LISTEN` took
//! effect, and the consumer reads the table: nothing committed while it was away is missed. The
//! connection is checked every [`PING_EVERY`]; a dead one is reported
//! ([`FeedEvent::Disconnected`]) and replaced, and the consumer polls every second meanwhile.
//!
//! The cursor follows the order rows were committed, not the writers' clocks, so a revocation
//! whose commit was delayed (or written by a node whose clock is behind) is still read.
//!
//! SQLite has no such channel (and its gateways share one machine): there the consumer polls
//! every second.

use std::time::Duration;

use async_trait::async_trait;
use gatehouse_plugin_api::store::StoreResult;
use gatehouse_plugin_api::tokens::RevocationScope;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_postgres::{AsyncMessage, NoTls};

/// The notification channel revocations are announced on.
pub const CHANNEL: &str = "gatehouse_revocations";

/// How often the listening connection is checked.
pub const PING_EVERY: Duration = Duration::from_secs(2);

/// How long a check or `LISTEN` may take before the connection counts as dead.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest wait between two attempts to connect again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What the store's listener reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// Listening (again): read the revocations table once to catch up.
    Connected,
    /// A revocation was committed: read the table.
    Changed,
    /// The listening connection is gone: poll until [`FeedEvent::Connected`].
    Disconnected,
}

/// Where a reader of the revocations table got to, in the order rows were committed; the
/// default reads from the start. Opaque: each backend writes its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationCursor(pub String);

/// The revocations table as a stream: read in commit order, pushed where the backend can.
#[async_trait]
pub trait RevocationFeed {
    /// Starts listening and returns the events, or `None` when this backend cannot push (the
    /// caller polls).
    fn revocation_feed(&self) -> Option<UnboundedReceiver<FeedEvent>>;

    /// The revocations dated at or after `horizon_seconds` that were committed after `cursor`
    /// was taken (possibly some read before, too), and the cursor to read from next.
    async fn revocations_since(
        &self,
        cursor: &RevocationCursor,
        horizon_seconds: i64,
    ) -> StoreResult<(Vec<(RevocationScope, i64)>, RevocationCursor)>;
}

/// Listens on [`CHANNEL`] through connections made from `config`, reconnecting forever, until
/// the receiver of `events` is dropped.
pub async fn listen(config: tokio_postgres::Config, events: UnboundedSender<FeedEvent>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let reached = match listen_once(&config, &events).await {
            Listened::ReceiverGone => return,
            Listened::Lost { reached, reason } => {
                tracing::warn!(reason = %reason, "revocation listener: connection lost");
                reached
            }
        };
        if events.send(FeedEvent::Disconnected).is_err() {
            return;
        }
        if reached {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How one listening connection ended.
enum Listened {
    /// Nobody consumes the events any more.
    ReceiverGone,
    /// The connection failed; `reached` when it had been listening.
    Lost { reached: bool, reason: String },
}

fn lost(reached: bool, reason: impl ToString) -> Listened {
    Listened::Lost {
        reached,
        reason: reason.to_string(),
    }
}

/// One connection: connect, `LISTEN`, report `Connected`, then forward notifications and check
/// the connection until it fails.
async fn listen_once(
    config: &tokio_postgres::Config,
    events: &UnboundedSender<FeedEvent>,
) -> Listened {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(pair) => pair,
        Err(e) => return lost(false, e),
    };
    // One pending wake-up is enough: a flood of notifications is one read, never a queue.
    let (forward, mut notifications) = tokio::sync::mpsc::channel::<()>(1);
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(_)) => match forward.try_send(()) {
                    Ok(()) | Err(tokio::sync::mpsc::error::TrySendError::Full(())) => {}
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => return,
                },
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let listening = tokio::time::timeout(
        CALL_TIMEOUT,
        client.batch_execute(&format!("LISTEN {CHANNEL}")),
    )
    .await;
    let ended = match listening {
        Ok(Ok(())) if events.send(FeedEvent::Connected).is_err() => Listened::ReceiverGone,
        Ok(Ok(())) => forward_until_lost(&client, &mut notifications, events).await,
        Ok(Err(e)) => lost(false, e),
        Err(_) => lost(false, "LISTEN timed out"),
    };
    driver.abort();
    ended
}

/// Forwards notifications as [`FeedEvent::Changed`] and checks the connection every
/// [`PING_EVERY`], until the connection fails or nobody listens.
async fn forward_until_lost(
    client: &tokio_postgres::Client,
    notifications: &mut tokio::sync::mpsc::Receiver<()>,
    events: &UnboundedSender<FeedEvent>,
) -> Listened {
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            woken = notifications.recv() => {
                if woken.is_none() {
                    return lost(true, "connection closed");
                }
                if events.send(FeedEvent::Changed).is_err() {
                    return Listened::ReceiverGone;
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(CALL_TIMEOUT, client.simple_query("")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return lost(true, e),
                    Err(_) => return lost(true, "check timed out"),
                }
                if events.is_closed() {
                    return Listened::ReceiverGone;
                }
            }
        }
    }
}
