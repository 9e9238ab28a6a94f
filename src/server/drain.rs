//! Draining the proxy before the process ends. Pingora stops accepting on a graceful
//! shutdown, sleeps its grace period and then drops whatever still runs; [`Draining`] wraps
//! the proxy so that the grace period (`shutdownTimeoutSeconds`) ends as soon as nothing is
//! under way ([`spawn_exit_when_drained`]), and so that once draining starts (a binary
//! upgrade's hand-over, or a shutdown) every answer says `Connection: close` and no keep-alive
//! connection is used again: its client opens a new one, which the new process accepts.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::{ExecutionPhase, ShutdownWatch};

/// How long, after a hand-over, connections waiting for a request stay open once this process
/// stopped accepting.
pub const LINGER: Duration = Duration::from_secs(1);

/// What the proxy has under way, and whether it is draining.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

impl Drain {
    /// From now on no connection is kept alive after its current request.
    pub fn start(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// True once [`Drain::start`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The HTTP sessions under way: requests being served, and keep-alive connections waiting
    /// for their next request (Pingora closes those when it stops accepting).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Waits until nothing is under way or `limit` has passed; true when nothing is. A limit
    /// beyond what the clock can count waits until nothing is under way.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now().checked_add(limit);
        while self.in_flight() > 0 {
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

/// Counts one session under way while it lives.
struct InFlight(Arc<Drain>);

impl InFlight {
    fn new(drain: &Arc<Drain>) -> InFlight {
        drain.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(drain.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A session's future, counted in a [`Drain`] while it lives (until it is done or dropped).
struct Counted<F: ?Sized> {
    inner: Pin<Box<F>>,
    _counted: InFlight,
}

impl<F: Future + ?Sized> Future for Counted<F> {
    type Output = F::Output;

    /// The inner future's poll.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.get_mut().inner.as_mut().poll(cx)
    }
}

/// An HTTP application (the proxy) whose sessions are counted in a [`Drain`].
pub struct Draining<A> {
    inner: Arc<A>,
    drain: Arc<Drain>,
}

impl<A> Draining<A> {
    /// `inner`, counted in `drain`.
    pub fn new(inner: A, drain: Arc<Drain>) -> Draining<A> {
        Draining {
            inner: Arc::new(inner),
            drain,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for Draining<A> {
    /// The inner application's answer; once draining, the connection is not used again.
    /// Not an `async fn`: the inner application's future (already boxed) is returned with the
    /// session's count beside it, so the session is not moved into a second future of its own.
    fn process_new_http<'life0, 'life1, 'async_trait>(
        self: &'life0 Arc<Self>,
        mut session: ServerSession,
        shutdown: &'life1 ShutdownWatch,
    ) -> Pin<Box<dyn Future<Output = Option<ReusedHttpStream>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let counted = InFlight::new(&self.drain);
        if self.drain.is_draining() {
            // Read by the answer's `Connection` header; the client's own wish cannot undo it.
            session.set_keepalive_reuses_remaining(Some(0));
        }
        Box::pin(Counted {
            inner: self.inner.process_new_http(session, shutdown),
            _counted: counted,
        })
    }

    fn h2_options(&self) -> Option<pingora::protocols::http::v2::server::H2Options> {
        self.inner.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    /// Closes the keep-alive connections waiting for a request; after a hand-over, only
    /// [`LINGER`] later, so that a client which connected just before this process stopped
    /// accepting is still answered (with `Connection: close`).
    async fn http_cleanup(&self) {
        if self.drain.is_draining() {
            tokio::time::sleep(LINGER).await;
        }
        self.inner.http_cleanup().await;
    }

    async fn process_custom_session(
        self: Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.inner
            .clone()
            .process_custom_session(stream, shutdown)
            .await
    }
}

/// Starts the thread that ends the process with status 0 as soon as, in a graceful shutdown's
/// grace period (`phases` says when it starts), nothing is under way in `drain` any more; when
/// something still is after `grace`, Pingora's own end of the grace period applies. `Err` when
/// the thread cannot be started.
pub fn spawn_exit_when_drained(
    mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
    drain: Arc<Drain>,
    grace: Duration,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("drain".into())
        .spawn(move || loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => {
                    drain.start();
                    if drain.wait_idle(grace) {
                        tracing::info!("drained: nothing under way; gatehouse stopped");
                        std::process::exit(0);
                    }
                    tracing::warn!(
                        in_flight = drain.in_flight(),
                        "requests still under way at the end of the grace period are dropped"
                    );
                    return;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_counted_while_they_live() {
        let drain = Arc::new(Drain::default());
        let first = InFlight::new(&drain);
        let second = InFlight::new(&drain);
        assert_eq!(drain.in_flight(), 2);
        drop(first);
        assert_eq!(drain.in_flight(), 1);
        assert!(!drain.wait_idle(Duration::from_millis(30)));
        drop(second);
        assert!(drain.wait_idle(Duration::ZERO));
        // A limit no clock can count (no deadline) waits for the last session, never panics.
        let third = InFlight::new(&drain);
        let ends = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(third);
        });
        assert!(drain.wait_idle(Duration::MAX));
        ends.join().expect("joined");
    }

    #[test]
    fn waiting_ends_when_the_last_session_does() {
        let drain = Arc::new(Drain::default());
        let session = InFlight::new(&drain);
        let ender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(session);
        });
        let started = Instant::now();
        assert!(drain.wait_idle(Duration::from_secs(5)));
        assert!(started.elapsed() < Duration::from_secs(2));
        ender.join().expect("join");
    }

    /// A session's future is counted from its start until it ends or is dropped, and its
    /// output is the inner future's.
    #[tokio::test]
    async fn a_counted_future_is_counted_until_it_ends_or_is_dropped() {
        type Boxed = Pin<Box<dyn Future<Output = Option<u8>> + Send>>;
        let drain = Arc::new(Drain::default());
        let (answer, answered) = tokio::sync::oneshot::channel::<u8>();
        let inner: Boxed = Box::pin(async move { answered.await.ok() });
        let task = tokio::spawn(Counted {
            inner,
            _counted: InFlight::new(&drain),
        });
        tokio::task::yield_now().await;
        assert_eq!(drain.in_flight(), 1);
        answer.send(7).expect("sent");
        assert_eq!(task.await.expect("joined"), Some(7));
        assert_eq!(drain.in_flight(), 0);
        let (_answer, answered) = tokio::sync::oneshot::channel::<u8>();
        let inner: Boxed = Box::pin(async move { answered.await.ok() });
        let abandoned = Counted {
            inner,
            _counted: InFlight::new(&drain),
        };
        assert_eq!(drain.in_flight(), 1);
        drop(abandoned);
        assert!(drain.wait_idle(Duration::ZERO));
    }

    #[test]
    fn draining_is_off_until_started() {
        let drain = Drain::default();
        assert!(!drain.is_draining());
        drain.start();
        assert!(drain.is_draining());
    }
}
