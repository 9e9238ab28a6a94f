//! Revocations pushed by the store as other gateways commit them.
//!
//! On PostgreSQL a revocation's transaction also runs `pg_notify` on [`CHANNEL`], so it is
//! announced exactly when it commits, to every gateway listening. Each gateway keeps one
//! connection of its own (outside the pool) on `LISTEN`, and applies what arrives to its
//! in-memory revocation set within milliseconds. A notification is delivered only to listeners
//! connected at commit time, so after every (re)connection the listener reports
//! [`FeedEvent::Connected`] *after* its `LISTEN` took effect, and the consumer reads the
//! revocations table again: nothing committed while it was away is missed. The connection is
//! checked every [`PING_EVERY`]; a dead one is reported ([`FeedEvent::Disconnected`]) and
//! replaced, and the consumer polls every second meanwhile.
//!
//! SQLite has no such channel (and its gateways share one machine): there the consumer polls
//! every second, as before.

use std::time::Duration;

use gatehouse_plugin_api::tokens::RevocationScope;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_postgres::{AsyncMessage, NoTls};

use super::rows::revocation_from_payload;

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
    /// A revocation another gateway (or this one) committed.
    Revoked(RevocationScope, i64),
    /// The listening connection is gone: poll until [`FeedEvent::Connected`].
    Disconnected,
}

/// A store that can push revocations as they commit.
pub trait RevocationFeed {
    /// Starts listening and returns the events, or `None` when this backend cannot push (the
    /// caller polls).
    fn revocation_feed(&self) -> Option<UnboundedReceiver<FeedEvent>>;
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
    let (forward, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if forward.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
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

/// Forwards each notification as a [`FeedEvent::Revoked`] and checks the connection every
/// [`PING_EVERY`], until the connection fails or nobody listens.
async fn forward_until_lost(
    client: &tokio_postgres::Client,
    notifications: &mut UnboundedReceiver<String>,
    events: &UnboundedSender<FeedEvent>,
) -> Listened {
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            payload = notifications.recv() => {
                let Some(payload) = payload else {
                    return lost(true, "connection closed");
                };
                let Some((scope, at)) = revocation_from_payload(&payload) else {
                    continue;
                };
                if events.send(FeedEvent::Revoked(scope, at)).is_err() {
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
