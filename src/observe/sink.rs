//! Where the lines [`super::line`] formats go: a buffer per thread, written to stderr when it
//! holds [`FLUSH_BYTES`], by a background thread at least every [`FLUSH_INTERVAL`], and when
//! the process exits (`exit`, which a graceful shutdown, a drained hand-over and the commands
//! end with) — so a busy worker makes one `write(2)` for many requests instead of one each, and
//! no line is lost when the process ends. Lines are only ever appended whole to a buffer, and a
//! buffer is written in one call under stderr's lock, so lines are never interleaved mid-line
//! with each other or with the other log lines; an access line may follow a line written after
//! it by at most the interval.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// The longest a line waits in its thread's buffer (the background thread's period).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// A thread's buffer is written as soon as it holds this many bytes.
pub const FLUSH_BYTES: usize = 16 * 1024;

/// One thread's buffer of whole lines.
type Buffer = Arc<Mutex<Vec<u8>>>;

/// Every thread's buffer, for the background thread and the exit.
static BUFFERS: Mutex<Vec<Buffer>> = Mutex::new(Vec::new());
/// Set once the background thread and the exit hook are in place.
static STARTED: OnceLock<()> = OnceLock::new();

thread_local! {
    /// This thread's buffer, registered on first use.
    static OWN: Buffer = register();
}

extern "C" {
    /// The C library's `atexit`: `std::process::exit` runs the hooks it registers.
    fn atexit(hook: extern "C" fn()) -> std::ffi::c_int;
}

/// Appends the whole `line` (ending with its newline) to this thread's buffer, writing the
/// buffer first when the line would take it over [`FLUSH_BYTES`]. A line longer than that, or
/// one written while the thread is ending, is written at once.
pub fn push(line: &[u8]) {
    let buffered = OWN.try_with(|own| append(&mut lock(own), line, &mut std::io::stderr()));
    if buffered.is_err() {
        let _ = std::io::stderr().write_all(line);
    }
}

/// [`push`] into `buffer`, writing to `out`.
fn append(buffer: &mut Vec<u8>, line: &[u8], out: &mut impl Write) {
    if buffer.len() + line.len() > FLUSH_BYTES {
        write_out(buffer, out);
    }
    if line.len() > FLUSH_BYTES {
        let _ = out.write_all(line);
    } else {
        buffer.extend_from_slice(line);
    }
}

/// Writes every thread's buffered lines now (each buffer in one call).
pub fn flush() {
    let buffers: Vec<Buffer> = lock(&BUFFERS).clone();
    for buffer in &buffers {
        write_out(&mut lock(buffer), &mut std::io::stderr());
    }
    drop(buffers);
    // The buffers of threads that ended (held by this list only), now empty, are forgotten.
    lock(&BUFFERS).retain(|b| Arc::strong_count(b) > 1 || !lock(b).is_empty());
}

/// Writes `buffer` to `out` in one call, then empties it; an error is ignored, as the logging
/// subscriber's writer ignores it.
fn write_out(buffer: &mut Vec<u8>, out: &mut impl Write) {
    if !buffer.is_empty() {
        let _ = out.write_all(buffer);
        buffer.clear();
    }
}

/// A new buffer for this thread, registered; the first one starts the background thread and
/// the exit hook.
fn register() -> Buffer {
    STARTED.get_or_init(start);
    let buffer = Arc::new(Mutex::new(Vec::with_capacity(FLUSH_BYTES)));
    lock(&BUFFERS).push(buffer.clone());
    buffer
}

/// Starts the thread that writes the buffers every [`FLUSH_INTERVAL`], and registers the exit
/// hook. Without the thread (it could not be started), each line is written at once.
fn start() {
    // SAFETY: `atexit` only stores the function pointer; the hook is an `extern "C" fn`.
    unsafe {
        atexit(flush_at_exit);
    }
    let started = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(|| loop {
            std::thread::sleep(FLUSH_INTERVAL);
            flush();
        });
    if started.is_err() {
        tracing::warn!("access log: no flushing thread, lines are written one by one");
    }
}

/// How long the exit hook waits for a lock another thread holds (the flushing thread in the
/// middle of a write, a worker appending a line) before it gives that buffer up.
const EXIT_WAIT: Duration = Duration::from_millis(500);

/// The exit hook: writes what is buffered. A lock another thread holds at that instant is
/// waited for (up to [`EXIT_WAIT`] in all): skipping it would lose that buffer's lines, or the
/// whole list's when the flushing thread held it, and cut short a write under way.
extern "C" fn flush_at_exit() {
    flush_within(&BUFFERS, &mut std::io::stderr(), EXIT_WAIT);
}

/// Writes every buffer of `buffers` to `out`, waiting at most `wait` in all for locks held
/// elsewhere. Returns how many buffers had to be given up (0 when every line was written).
fn flush_within(buffers: &Mutex<Vec<Buffer>>, out: &mut impl Write, wait: Duration) -> usize {
    let deadline = std::time::Instant::now() + wait;
    let Some(buffers) = lock_until(buffers, deadline) else {
        return usize::MAX;
    };
    let mut given_up = 0;
    for buffer in buffers.iter() {
        match lock_until(buffer, deadline) {
            Some(mut buffer) => write_out(&mut buffer, out),
            None => given_up += 1,
        }
    }
    given_up
}

/// `mutex` locked (taken over if poisoned), trying until `deadline`; `None` past it.
fn lock_until<T>(mutex: &Mutex<T>, deadline: std::time::Instant) -> Option<MutexGuard<'_, T>> {
    loop {
        match mutex.try_lock() {
            Ok(guard) => return Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    }
}

/// `mutex` locked, taken over if a panic poisoned it (a buffer only ever holds whole lines).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each call's bytes.
    #[derive(Default)]
    struct Calls(Vec<Vec<u8>>);

    impl Write for Calls {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.push(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_whole_many_to_a_call_when_the_buffer_fills() {
        let (mut buffer, mut calls) = (Vec::new(), Calls::default());
        let line = [b"x".repeat(99), b"\n".to_vec()].concat();
        for _ in 0..FLUSH_BYTES / 100 {
            append(&mut buffer, &line, &mut calls);
        }
        assert!(
            calls.0.is_empty(),
            "nothing written before the buffer is full"
        );
        append(&mut buffer, &line, &mut calls);
        assert_eq!(calls.0.len(), 1);
        assert_eq!(calls.0[0].len(), (FLUSH_BYTES / 100) * 100);
        assert_eq!(
            buffer, line,
            "the line that did not fit waits for the next call"
        );
        write_out(&mut buffer, &mut calls);
        assert!(buffer.is_empty());
        write_out(&mut buffer, &mut calls);
        assert_eq!(calls.0.len(), 2, "an empty buffer makes no call");
        assert!(calls.0.concat().chunks(100).all(|l| l == line.as_slice()));
    }

    #[test]
    fn a_line_longer_than_the_buffer_is_written_at_once_after_the_others() {
        let (mut buffer, mut calls) = (b"before\n".to_vec(), Calls::default());
        let long = [vec![b'y'; FLUSH_BYTES + 1], b"\n".to_vec()].concat();
        append(&mut buffer, &long, &mut calls);
        assert_eq!(calls.0, vec![b"before\n".to_vec(), long]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_flush_writes_every_thread_s_lines_and_forgets_ended_threads() {
        let ended = std::thread::spawn(|| {
            push(b"");
            OWN.with(Arc::downgrade)
        })
        .join()
        .expect("thread");
        // The background flush may hold the list for an instant: a few tries.
        for _ in 0..5 {
            flush();
            if ended.strong_count() == 0 {
                break;
            }
        }
        assert_eq!(
            ended.strong_count(),
            0,
            "the ended thread's buffer is forgotten"
        );
        push(b"");
        assert!(OWN.with(|own| lock(&BUFFERS).iter().any(|b| Arc::ptr_eq(b, own))));
    }

    #[test]
    fn the_exit_waits_for_a_buffer_held_elsewhere_instead_of_losing_its_lines() {
        let held: Buffer = Arc::new(Mutex::new(b"held line\n".to_vec()));
        let free: Buffer = Arc::new(Mutex::new(b"free line\n".to_vec()));
        let list = Mutex::new(vec![held.clone(), free.clone()]);
        // Another thread is inside a write of `held` (the flushing thread, a worker) for a
        // moment when the process exits.
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let holder = {
            let (held, barrier) = (held.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut guard = held.lock().expect("lock");
                barrier.wait();
                std::thread::sleep(Duration::from_millis(50));
                guard.extend_from_slice(b"appended while held\n");
            })
        };
        barrier.wait();
        let mut calls = Calls::default();
        assert_eq!(flush_within(&list, &mut calls, Duration::from_secs(5)), 0);
        holder.join().expect("holder");
        assert_eq!(
            calls.0.concat(),
            b"held line\nappended while held\nfree line\n".to_vec()
        );
        // A lock held past the wait is given up, not waited for forever.
        let stuck = held.lock().expect("lock");
        let mut calls = Calls::default();
        assert_eq!(
            flush_within(&list, &mut calls, Duration::from_millis(20)),
            1
        );
        drop(stuck);
    }
}
