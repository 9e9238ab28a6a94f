//! The lambda worker: the process side of [`crate::sandbox`], and the protocol both sides speak.
//!
//! The host starts a worker as a separate OS process (the gatehouse binary with a hidden
//! subcommand) whose main calls [`serve`]. The protocol is line-delimited JSON over the
//! worker's stdin and stdout: the gateway writes one [`Job`] per line, the worker answers each
//! with one [`Reply`] line, in order, and exits at the end of its input. The worker runs the
//! in-process evaluator ([`crate::engine`]); before each job it moves its CPU-time limit
//! (`RLIMIT_CPU`) to what it has used so far plus the job's time limit and two seconds, a
//! backstop the kernel enforces even if the gateway's own timer never fires.

use std::io::{BufRead, Read, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::{check, run_reconcile, LambdaError, Limits, Reconciled};

/// The longest job line a worker reads (a lambda body plus a user, a registration and claims,
/// each within the 1 MiB document limit, fit easily).
pub const MAX_JOB_BYTES: u64 = 16 << 20;

/// The longest reply line the gateway reads; a longer answer is a worker failure.
pub const MAX_REPLY_BYTES: u64 = 64 << 20;

/// The limits of one job, as they travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireLimits {
    /// The wall-clock limit in milliseconds.
    pub time_millis: u64,
    /// QuickJS's heap limit in bytes.
    pub memory_bytes: usize,
}

impl From<Limits> for WireLimits {
    fn from(limits: Limits) -> Self {
        WireLimits {
            time_millis: u64::try_from(limits.time.as_millis()).unwrap_or(u64::MAX),
            memory_bytes: limits.memory_bytes,
        }
    }
}

impl From<WireLimits> for Limits {
    fn from(wire: WireLimits) -> Self {
        Limits {
            time: Duration::from_millis(wire.time_millis),
            memory_bytes: wire.memory_bytes,
        }
    }
}

/// One request to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Job {
    /// Compile `body` and check it defines `reconcile` (saving a lambda).
    Check {
        /// The lambda body.
        body: String,
        /// The run's limits.
        limits: WireLimits,
    },
    /// Run `reconcile(user, registration, jwt, ...rest)` from `body` (a login).
    Reconcile {
        /// The lambda body.
        body: String,
        /// The user object.
        user: Value,
        /// The registration object.
        registration: Value,
        /// The verified claims of the external JWT (OpenID Connect: the userinfo answer).
        jwt: Value,
        /// The arguments after `jwt`: none for ExternalJWT, `[id_token, tokens]` for OpenID
        /// Connect.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rest: Vec<Value>,
        /// The run's limits.
        limits: WireLimits,
    },
}

/// A worker's answer to one [`Job`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reply {
    /// The body compiles and defines `reconcile`.
    Checked,
    /// `reconcile` ran; the objects as it left them.
    Reconciled(Reconciled),
    /// The job failed.
    Failed(LambdaError),
}

impl Job {
    /// The job's limits.
    pub fn limits(&self) -> Limits {
        match self {
            Job::Check { limits, .. } | Job::Reconcile { limits, .. } => (*limits).into(),
        }
    }

    /// Runs the job in this process (what the worker does with it); returns the answer.
    pub fn run(&self) -> Reply {
        let limits = self.limits();
        match self {
            Job::Check { body, .. } => match check(body, limits) {
                Ok(()) => Reply::Checked,
                Err(e) => Reply::Failed(e),
            },
            Job::Reconcile {
                body,
                user,
                registration,
                jwt,
                rest,
                ..
            } => match run_reconcile(body, user, registration, jwt, rest, limits) {
                Ok(r) => Reply::Reconciled(r),
                Err(e) => Reply::Failed(e),
            },
        }
    }

    /// The job as one protocol line (JSON and a newline); an error when it cannot be encoded.
    pub fn to_line(&self) -> Result<Vec<u8>, LambdaError> {
        let mut line = serde_json::to_vec(self)
            .map_err(|e| LambdaError::Engine(format!("cannot encode the job: {e}")))?;
        line.push(b'\n');
        Ok(line)
    }
}

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// The input ended before the first byte of a line.
    End,
    /// The input ended in the middle of a line.
    Truncated,
    /// The line is longer than allowed.
    TooLong,
    /// Reading failed.
    Io(String),
}

/// Reads one line of at most `max` bytes (without its newline). Returns the line, or why there
/// is none.
pub fn read_line(reader: &mut impl BufRead, max: u64) -> Result<Vec<u8>, LineError> {
    let mut line = Vec::new();
    let read = reader
        .by_ref()
        .take(max + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| LineError::Io(e.to_string()))?;
    finish_line(line, read, max)
}

/// The line `read_until` left in `line` after reading `read` bytes, checked: the line without
/// its newline, or why it is not a whole line within `max` bytes.
pub fn finish_line(mut line: Vec<u8>, read: usize, max: u64) -> Result<Vec<u8>, LineError> {
    if read == 0 {
        return Err(LineError::End);
    }
    if line.last() != Some(&b'\n') {
        return Err(if read as u64 > max {
            LineError::TooLong
        } else {
            LineError::Truncated
        });
    }
    line.pop();
    Ok(line)
}

/// Serves jobs from `input`, one reply line each on `output`, until the input ends. Returns the
/// process exit code: 0 at the end of the input, 2 for a malformed job or a broken output.
pub fn serve(mut input: impl BufRead, mut output: impl Write) -> i32 {
    loop {
        let line = match read_line(&mut input, MAX_JOB_BYTES) {
            Ok(line) => line,
            Err(LineError::End) => return 0,
            Err(_) => return 2,
        };
        let Ok(job) = serde_json::from_slice::<Job>(&line) else {
            return 2;
        };
        cpu_backstop(job.limits().time);
        let reply = job.run();
        let Ok(mut text) = serde_json::to_vec(&reply) else {
            return 2;
        };
        text.push(b'\n');
        if output
            .write_all(&text)
            .and_then(|()| output.flush())
            .is_err()
        {
            return 2;
        }
    }
}

/// Moves this process's soft `RLIMIT_CPU` to the CPU time used so far plus `time` plus two
/// seconds (never above the hard limit): the kernel stops a job that outruns every other limit
/// with `SIGXCPU`.
fn cpu_backstop(time: Duration) {
    // SAFETY: getrusage and get/setrlimit only write the structs passed to them.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return;
        }
        let used = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + 1).max(0) as u64;
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_CPU, &mut limit) != 0 {
            return;
        }
        let soft = used + time.as_secs() + 2;
        limit.rlim_cur = if limit.rlim_max == libc::RLIM_INFINITY {
            soft as libc::rlim_t
        } else {
            (soft as libc::rlim_t).min(limit.rlim_max)
        };
        libc::setrlimit(libc::RLIMIT_CPU, &limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> WireLimits {
        Limits {
            time: Duration::from_millis(300),
            memory_bytes: 8 << 20,
        }
        .into()
    }

    fn lines(jobs: &[Job]) -> Vec<u8> {
        jobs.iter()
            .flat_map(|j| j.to_line().expect("line"))
            .collect()
    }

    fn replies(output: &[u8]) -> Vec<Reply> {
        output
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("reply"))
            .collect()
    }

    #[test]
    fn a_worker_answers_every_job_in_order() {
        let body = "function reconcile(u, r, j) { u.firstName = j.name; console.log('hi'); }";
        let input = lines(&[
            Job::Check {
                body: body.into(),
                limits: limits(),
            },
            Job::Check {
                body: "function nope( {".into(),
                limits: limits(),
            },
            Job::Reconcile {
                body: body.into(),
                user: json!({"email": "a@b.c"}),
                registration: json!({}),
                jwt: json!({"name": "Ann"}),
                rest: vec![],
                limits: limits(),
            },
            Job::Check {
                body: "while (true) {}".into(),
                limits: limits(),
            },
        ]);
        let mut output = Vec::new();
        assert_eq!(serve(&input[..], &mut output), 0);
        let replies = replies(&output);
        assert_eq!(replies.len(), 4);
        assert_eq!(replies[0], Reply::Checked);
        assert!(matches!(replies[1], Reply::Failed(LambdaError::Compile(_))));
        let Reply::Reconciled(r) = &replies[2] else {
            panic!("{:?}", replies[2]);
        };
        assert_eq!(r.user["firstName"], "Ann");
        assert_eq!(r.logs, vec!["hi".to_string()]);
        assert_eq!(replies[3], Reply::Failed(LambdaError::Timeout));
    }

    #[test]
    fn malformed_input_ends_the_worker() {
        let mut output = Vec::new();
        assert_eq!(serve(&b"not json\n"[..], &mut output), 2);
        assert!(output.is_empty());
        let mut cut = lines(&[Job::Check {
            body: "function reconcile() {}".into(),
            limits: limits(),
        }]);
        cut.pop();
        assert_eq!(serve(&cut[..], &mut output), 2);
        assert_eq!(serve(&b""[..], &mut output), 0);
    }

    #[test]
    fn lines_are_bounded() {
        let mut input = &b"abcdef\nxy"[..];
        assert_eq!(read_line(&mut input, 3), Err(LineError::TooLong));
        let mut input = &b"abc\nxy"[..];
        assert_eq!(read_line(&mut input, 3), Ok(b"abc".to_vec()));
        assert_eq!(read_line(&mut input, 3), Err(LineError::Truncated));
        assert_eq!(read_line(&mut input, 3), Err(LineError::End));
    }

    #[test]
    fn limits_travel_unchanged() {
        let l = Limits {
            time: Duration::from_millis(1234),
            memory_bytes: 5 << 20,
        };
        assert_eq!(Limits::from(WireLimits::from(l)), l);
    }
}
