//! A token whose claims are decided and whose signature is still to be made
//! ([`PendingToken`]), so that an async caller signs where the signature should run: a cheap one
//! (ECDSA, Ed25519, HMAC: tens of µs, less than a hop to another thread) at once, an expensive
//! one (RSA: hundreds of µs) on a [`CpuPool`], awaited, so that the thread serving requests
//! keeps serving the others meanwhile.
//!
//! The token service decides which by the key's type when it prepares the token
//! ([`TokenService::prepare_access_token`](crate::tokens::TokenService::prepare_access_token)),
//! never by a timer; the caller only awaits [`PendingToken::sign`].

use std::fmt;

use super::{IssuedToken, TokenError};
use crate::cpu::CpuPool;

/// The signing step of a prepared token: owned, runs once, on any thread.
type SignStep = Box<dyn FnOnce() -> Result<IssuedToken, TokenError> + Send + 'static>;

/// A prepared token: signed already, or with its signature to be made on a pool.
pub struct PendingToken(Pending);

enum Pending {
    /// Signed while it was prepared (a cheap signature).
    Signed(IssuedToken),
    /// To be signed on `pool` (an expensive signature).
    OnPool { pool: CpuPool, sign: SignStep },
}

impl fmt::Debug for PendingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a token.
        f.debug_struct("PendingToken")
            .field("on_pool", &self.is_on_pool())
            .finish()
    }
}

impl PendingToken {
    /// A token signed already: [`PendingToken::sign`] returns it at once.
    pub fn signed(token: IssuedToken) -> Self {
        PendingToken(Pending::Signed(token))
    }

    /// A token `sign` signs on `pool` when awaited. `sign` must leave nothing half-done if its
    /// result is never collected (the caller may stop waiting: it then still runs to its end).
    pub fn on_pool(
        pool: CpuPool,
        sign: impl FnOnce() -> Result<IssuedToken, TokenError> + Send + 'static,
    ) -> Self {
        PendingToken(Pending::OnPool {
            pool,
            sign: Box::new(sign),
        })
    }

    /// True when the signature is still to be made on a pool.
    pub fn is_on_pool(&self) -> bool {
        matches!(self.0, Pending::OnPool { .. })
    }

    /// The signed token: at once when it is signed already, else signed on its pool (waiting
    /// for a free slot first) while the calling task yields its thread. Outside a Tokio
    /// runtime the signature is made here. `CannotSign` when signing failed, also when the
    /// pool could not run the step (its thread panicked, the pool is closed): an internal
    /// error for the caller, never a panic. Dropping the future before it is ready while the
    /// step runs lets the step finish on its own; its token is then dropped.
    pub async fn sign(self) -> Result<IssuedToken, TokenError> {
        match self.0 {
            Pending::Signed(token) => Ok(token),
            Pending::OnPool { sign, .. } if tokio::runtime::Handle::try_current().is_err() => {
                sign()
            }
            Pending::OnPool { pool, sign } => {
                pool.run(sign).await.unwrap_or(Err(TokenError::CannotSign))
            }
        }
    }

    /// The signed token, signed on this thread if it is not yet (for synchronous callers: the
    /// command line, tests). What [`PendingToken::sign`] returns, without the pool.
    pub fn sign_here(self) -> Result<IssuedToken, TokenError> {
        match self.0 {
            Pending::Signed(token) => Ok(token),
            Pending::OnPool { sign, .. } => sign(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use uuid::Uuid;

    fn token(text: &str) -> IssuedToken {
        IssuedToken {
            token: text.into(),
            expiration_instant: 1_000,
            jti: Uuid::nil(),
        }
    }

    #[tokio::test]
    async fn a_signed_token_is_returned_as_it_is() {
        let pending = PendingToken::signed(token("a.b.c"));
        assert!(!pending.is_on_pool());
        assert_eq!(pending.sign().await, Ok(token("a.b.c")));
        assert_eq!(
            PendingToken::signed(token("d.e.f")).sign_here(),
            Ok(token("d.e.f"))
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_pool_signature_runs_off_the_calling_thread_and_the_caller_keeps_running() {
        let caller = std::thread::current().id();
        let (started, wait) = std::sync::mpsc::channel();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let pending = PendingToken::on_pool(CpuPool::new(1), move || {
            assert_ne!(std::thread::current().id(), caller, "signed on the pool");
            started.send(()).expect("started");
            gate.recv().expect("released");
            Ok(token("x.y.z"))
        });
        assert!(pending.is_on_pool());
        let signing = tokio::spawn(pending.sign());
        // The one thread of this runtime is free while the step is blocked: this task runs,
        // sees the step started, and releases it.
        tokio::task::yield_now().await;
        while wait.try_recv().is_err() {
            tokio::task::yield_now().await;
        }
        release.send(()).expect("release");
        assert_eq!(signing.await.expect("join"), Ok(token("x.y.z")));
    }

    #[tokio::test]
    async fn a_failed_step_is_cannot_sign_never_a_panic() {
        let failing = PendingToken::on_pool(CpuPool::new(1), || Err(TokenError::CannotSign));
        assert_eq!(failing.sign().await, Err(TokenError::CannotSign));
        let panicking = PendingToken::on_pool(CpuPool::new(1), || panic!("the signer broke"));
        assert_eq!(panicking.sign().await, Err(TokenError::CannotSign));
    }

    #[test]
    fn without_a_runtime_the_step_runs_here() {
        let ran = Arc::new(AtomicBool::new(false));
        let seen = ran.clone();
        let pending = PendingToken::on_pool(CpuPool::new(1), move || {
            seen.store(true, Ordering::SeqCst);
            Ok(token("s.i.g"))
        });
        let signed = block_on_here(pending.sign());
        assert_eq!(signed, Ok(token("s.i.g")));
        assert!(ran.load(Ordering::SeqCst));
        let here = PendingToken::on_pool(CpuPool::new(1), || Ok(token("h.e.re")));
        assert_eq!(here.sign_here(), Ok(token("h.e.re")));
    }

    #[tokio::test]
    async fn an_abandoned_signature_still_runs_to_its_end() {
        let finished = Arc::new(AtomicBool::new(false));
        let (started, wait) = std::sync::mpsc::channel();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let done = finished.clone();
        let pending = PendingToken::on_pool(CpuPool::new(1), move || {
            started.send(()).expect("started");
            gate.recv().expect("released");
            done.store(true, Ordering::SeqCst);
            Ok(token("a.b.c"))
        });
        let signing = tokio::spawn(pending.sign());
        tokio::task::spawn_blocking(move || wait.recv().expect("the step started"))
            .await
            .expect("join");
        signing.abort();
        assert!(signing.await.expect_err("aborted").is_cancelled());
        release.send(()).expect("release");
        for _ in 0..200 {
            if finished.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the abandoned step did not finish");
    }

    /// Polls `future` to completion on this thread, outside any Tokio runtime.
    fn block_on_here<F: std::future::Future>(future: F) -> F::Output {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let mut future = std::pin::pin!(future);
        loop {
            if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
        }
    }
}
