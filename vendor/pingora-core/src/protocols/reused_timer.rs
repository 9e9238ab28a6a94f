// Copyright 2026 Gatehouse contributors
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! A timer a connection keeps for its timed reads, reused from one read to the next.
//!
//! A timed read that has to wait arms a timer; [`pingora_timeout::timeout`] arms a new one for
//! every such read (allocated, registered in the runtime's timer wheel, then deregistered and
//! freed), which a keep-alive connection pays on every request: the wait for the next request,
//! the wait for an upstream's answer. A stream that keeps a [`TimerSlot`] ([`ReusedTimer`])
//! instead arms one timer the first time and leaves it registered: each later read only moves
//! its own deadline, and when the timer fires before that deadline (it was set for an earlier
//! read) it is set again, once. A timer registered with the waiting task's waker and not yet
//! fired is not polled again (polling it only registers the same waker once more). The reads
//! are timed exactly as before: never cut before their own deadline, and woken at it. The
//! gateway's tests of it are in its `src/proxy/upstream.rs`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Poll, Waker};
use std::time::Duration;

use pingora_timeout::Elapsed;
use tokio::time::{Instant, Sleep};

/// A connection's reusable timer: empty until a timed read first had to wait. (Boxed: the slot
/// is moved in and out of every read's future, one pointer.)
pub type TimerSlot = Option<Box<KeptTimer>>;

/// The timer a connection keeps, and the waker it was last registered with.
#[derive(Debug)]
pub struct KeptTimer {
    sleep: Pin<Box<Sleep>>,
    /// The waker of the task that last polled the timer (and got `Pending`): it stays
    /// registered until the timer fires. Kept until another task polls it, so an idle pooled
    /// connection keeps its last task's allocation alive, as the armed timer itself does.
    registered: Option<Waker>,
}

/// A stream that keeps a [`TimerSlot`] for its timed reads (see the module's documentation).
pub trait ReusedTimer {
    /// Takes the stream's timer out for one timed read, to be given back with
    /// [`Self::return_read_timer`]. `None` when the stream keeps none (the default): each timed
    /// read then arms a timer of its own.
    fn take_read_timer(&mut self) -> Option<TimerSlot> {
        None
    }

    /// Gives back the timer [`Self::take_read_timer`] took (a stream that keeps none drops it).
    fn return_read_timer(&mut self, _slot: TimerSlot) {}
}

/// Runs `operation`, cut after `duration` of waiting: `Err(Elapsed)` when it was. With a
/// stream's `slot` the wait reuses the stream's timer; without one it arms a timer of its own
/// ([`pingora_timeout::timeout`]). The deadline is taken when the operation first has to wait,
/// so an operation ready at once reads no clock.
pub async fn timed<F: Future>(
    slot: Option<&mut TimerSlot>,
    duration: Duration,
    operation: F,
) -> Result<F::Output, Elapsed> {
    let Some(slot) = slot else {
        return pingora_timeout::timeout(duration, operation).await;
    };
    let mut operation = std::pin::pin!(operation);
    let mut deadline = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = operation.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let deadline = *deadline.get_or_insert_with(|| Instant::now() + duration);
        let timer = slot.get_or_insert_with(|| {
            Box::new(KeptTimer {
                sleep: Box::pin(tokio::time::sleep_until(deadline)),
                registered: None,
            })
        });
        if timer.sleep.deadline() > deadline {
            // Set for a longer timeout than this read's. Polled again below: Tokio's default
            // timer keeps the registered waker through a reset, but its alternative one
            // (`enable_alt_timer`) starts a new entry without one.
            timer.sleep.as_mut().reset(deadline);
            timer.registered = None;
        }
        let waker = cx.waker();
        let armed_for_this_task = timer.registered.as_ref().is_some_and(|w| w.will_wake(waker));
        if armed_for_this_task && !timer.sleep.is_elapsed() {
            // Armed, not fired, and it wakes this task (its deadline is this read's or
            // earlier): nothing to do until it fires.
            return Poll::Pending;
        }
        loop {
            // Polled outside the task's budget, as Tokio's own `Timeout` polls its timer: a
            // timer poll refused for want of budget would return `Pending` without
            // registering the waker (or arming the timer), and the check above would then
            // wait on a timer that never wakes this task.
            let poll = std::pin::pin!(tokio::task::coop::unconstrained(timer.sleep.as_mut()))
                .poll(cx);
            match poll {
                Poll::Pending => {
                    if !armed_for_this_task {
                        timer.registered = Some(waker.clone());
                    }
                    return Poll::Pending;
                }
                Poll::Ready(()) if Instant::now() >= deadline => return Poll::Ready(Err(Elapsed)),
                // It fired for an earlier read's deadline: set it for this one's.
                Poll::Ready(()) => timer.sleep.as_mut().reset(deadline),
            }
        }
    })
    .await
}
