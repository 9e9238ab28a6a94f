//! Where the CPU-heavy synchronous steps of API handlers run (applying a JSON Patch to a large
//! document, …): on the Tokio runtime's blocking pool, at most [`CpuPool::size`] at once. So a
//! heavy step never stalls the async threads that serve the other API requests, and never
//! takes more cores than the host gives the API, however many requests bring one.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Why a step did not return: the pool is closed, or the step panicked (its message). An
/// internal error for the API ([`crate::error::ApiError`] converts it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuPoolError {
    /// The pool no longer takes steps.
    Closed,
    /// The step panicked or could not run: the runtime's message.
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

/// A bound on the CPU-heavy steps running at once (see the module documentation).
#[derive(Debug, Clone)]
pub struct CpuPool {
    slots: Arc<Semaphore>,
    size: usize,
}

impl CpuPool {
    /// A pool running at most `size` steps at once (at least one).
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        CpuPool {
            slots: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    /// How many steps may run at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `work` on the blocking pool of the current Tokio runtime once a slot is free (steps
    /// wait their turn in order). Returns what `work` returned; a [`CpuPoolError`] when it
    /// panicked or the pool is closed. The slot is held until `work` has returned, even when
    /// the caller stopped waiting, so abandoned steps still count against the bound.
    pub async fn run<T, F>(&self, work: F) -> Result<T, CpuPoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CpuPoolError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await
        .map_err(|e| CpuPoolError::Failed(e.to_string()))
    }
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

    #[tokio::test]
    async fn an_abandoned_step_keeps_its_slot_until_it_ends() {
        let pool = CpuPool::new(1);
        let (started, wait) = std::sync::mpsc::channel();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let abandoned = {
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
        abandoned.abort();
        let next = tokio::time::timeout(Duration::from_millis(100), pool.run(|| 1)).await;
        assert!(next.is_err(), "the slot is still held by the running step");
        release.send(()).expect("release");
        assert_eq!(pool.run(|| 2).await.expect("ran"), 2);
    }
}
