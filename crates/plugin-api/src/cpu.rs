//! Where the CPU-heavy synchronous steps run (an RSA signature, applying a JSON Patch to a large
//! document, …): on the pool's own threads, at most [`CpuPool::size`] at once, in the order
//! they were submitted. So a heavy step never stalls the async threads that serve the other
//! requests, and never takes more cores than the pool was given, however many requests bring
//! one.
//!
//! A thread of the pool takes the next step from the queue as soon as it has finished one, so
//! a busy pool runs its steps back to back: between two steps no async thread is woken, and a
//! step costs one wake-up of its caller when it is done. (Behind a semaphore on Tokio's blocking
//! pool, each step needed the async thread to take the slot a step freed and hand the next step
//! to a blocking thread: two more wake-ups a step, and a gap in the pool's work between steps.)

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

/// Why a step did not return: the pool is closed, or the step panicked (its message). An
/// internal error for the API ([`crate::error::ApiError`] converts it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuPoolError {
    /// The pool no longer takes steps (its threads could not be started).
    Closed,
    /// The step panicked: its message.
    Failed(String),
}

impl std::fmt::Display for CpuPoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CpuPoolError::Closed => f.write_str("the CPU pool is closed"),
            CpuPoolError::Failed(message) => write!(f, "a CPU-heavy step failed: {message}"),
        }
    }
}

/// A step as the pool's threads run it.
type Step = Box<dyn FnOnce() + Send>;

/// A bound on the CPU-heavy steps running at once, and the threads that run them (see the
/// module documentation). Clones share the pool; its threads end when the last clone is
/// dropped (after the steps already queued).
#[derive(Debug, Clone)]
pub struct CpuPool {
    shared: Arc<Shared>,
    size: usize,
}

#[derive(Debug)]
struct Shared {
    queue: Sender<Step>,
    steps: Receiver<Step>,
    /// How many threads run (started on the first step, so an unused pool has none).
    started: Mutex<usize>,
}

impl CpuPool {
    /// A pool running at most `size` steps at once (at least one).
    pub fn new(size: usize) -> Self {
        let (queue, steps) = crossbeam_channel::unbounded();
        CpuPool {
            shared: Arc::new(Shared {
                queue,
                steps,
                started: Mutex::new(0),
            }),
            size: size.max(1),
        }
    }

    /// How many steps may run at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `work` on one of the pool's threads once one is free (steps wait their turn in
    /// order). Returns what `work` returned; a [`CpuPoolError`] when it panicked or the pool's
    /// threads could not be started. A step whose caller stopped waiting before it began is
    /// skipped; one that began runs to its end, holding its thread, so abandoned steps still
    /// count against the bound.
    pub async fn run<T, F>(&self, work: F) -> Result<T, CpuPoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.start_threads()?;
        let (answer, answered) = oneshot::channel();
        let step: Step = Box::new(move || {
            if answer.is_closed() {
                return;
            }
            let outcome = catch_unwind(AssertUnwindSafe(work))
                .map_err(|panic| CpuPoolError::Failed(panic_message(panic.as_ref())));
            let _ = answer.send(outcome);
        });
        self.shared
            .queue
            .send(step)
            .map_err(|_| CpuPoolError::Closed)?;
        answered.await.map_err(|_| CpuPoolError::Closed)?
    }

    /// Starts the pool's threads if they are not running. `Closed` when not one could start.
    fn start_threads(&self) -> Result<(), CpuPoolError> {
        let mut started = self
            .shared
            .started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while *started < self.size {
            let steps = self.shared.steps.clone();
            let spawned = std::thread::Builder::new()
                .name("gatehouse-cpu".to_string())
                .spawn(move || {
                    // Ends when every sender is gone: the last clone of the pool was dropped.
                    while let Ok(step) = steps.recv() {
                        step();
                    }
                });
            match spawned {
                Ok(_) => *started += 1,
                Err(_) if *started > 0 => break,
                Err(_) => return Err(CpuPoolError::Closed),
            }
        }
        Ok(())
    }
}

/// The message a panic carried (a `&str` or `String` payload); for any other payload, a fixed
/// text saying it had none.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|message| (*message).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

impl Default for CpuPool {
    /// One slot per available core.
    fn default() -> Self {
        CpuPool::new(std::thread::available_parallelism().map_or(1, usize::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_steps_run_at_once_than_the_pool_has_slots() {
        let pool = CpuPool::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let steps: Vec<_> = (0..8)
            .map(|i| {
                let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                        i * 2
                    })
                    .await
                })
            })
            .collect();
        let mut results = Vec::new();
        for step in steps {
            results.push(step.await.expect("join").expect("ran"));
        }
        assert_eq!(results, (0..8).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(pool.size(), 2);
        assert_eq!(CpuPool::new(0).size(), 1, "at least one slot");
    }

    #[tokio::test]
    async fn a_panicking_step_is_an_internal_error_and_frees_its_slot() {
        let pool = CpuPool::new(1);
        let failed: Result<(), CpuPoolError> = pool.run(|| panic!("boom")).await;
        let failed = failed.expect_err("failed");
        assert!(matches!(failed, CpuPoolError::Failed(_)), "{failed:?}");
        assert_eq!(crate::error::ApiError::from(failed).status(), 500);
        assert_eq!(pool.run(|| 7).await.expect("ran"), 7);
    }

    /// A step holding `pool`'s one thread until the sender returned is sent to: returned once
    /// it has begun, with its task.
    async fn occupied(
        pool: &CpuPool,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<(), CpuPoolError>>,
    ) {
        let (started, wait) = std::sync::mpsc::channel();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move || {
                    started.send(()).expect("started");
                    gate.recv().expect("released");
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || wait.recv().expect("the step started"))
            .await
            .expect("join");
        (release, busy)
    }

    #[tokio::test]
    async fn a_step_abandoned_before_it_began_is_skipped() {
        let pool = CpuPool::new(1);
        let (release, busy) = occupied(&pool).await;
        let ran = Arc::new(AtomicUsize::new(0));
        let queued = {
            let (pool, ran) = (pool.clone(), ran.clone());
            tokio::spawn(async move { pool.run(move || ran.fetch_add(1, Ordering::SeqCst)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        queued.abort();
        let _ = queued.await;
        release.send(()).expect("release");
        busy.await.expect("join").expect("ran");
        assert_eq!(pool.run(|| 3).await.expect("ran"), 3);
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "the abandoned step never ran"
        );
    }

    #[test]
    fn a_step_runs_without_a_multi_threaded_runtime_and_reports_a_panic_message() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let pool = CpuPool::new(2);
        assert_eq!(runtime.block_on(pool.run(|| 5)).expect("ran"), 5);
        let failed: Result<(), _> = runtime.block_on(pool.run(|| panic!("the step broke")));
        assert_eq!(
            failed,
            Err(CpuPoolError::Failed("the step broke".to_string()))
        );
    }

    #[tokio::test]
    async fn an_abandoned_step_keeps_its_slot_until_it_ends() {
        let pool = CpuPool::new(1);
        let (release, abandoned) = occupied(&pool).await;
        abandoned.abort();
        let next = tokio::time::timeout(Duration::from_millis(100), pool.run(|| 1)).await;
        assert!(next.is_err(), "the slot is still held by the running step");
        release.send(()).expect("release");
        assert_eq!(pool.run(|| 2).await.expect("ran"), 2);
    }
}
