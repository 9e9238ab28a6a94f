//! Untrusted lambda code runs here: in worker processes, never in the gateway's own threads.
//!
//! A [`Sandbox`] keeps a small pool of warm workers (OS processes started from the host's
//! [`WorkerCommand`], speaking [`crate::worker`]'s protocol). Each run borrows one worker, sends
//! it a job and waits, without blocking a Tokio thread, for the answer. The limits are enforced
//! from outside the interpreter:
//!
//! - **time**: a worker that has not answered within the lambda's time limit plus
//!   [`KILL_GRACE`] is killed with `SIGKILL` and reaped; the run is a [`LambdaError::Timeout`];
//! - **memory**: every worker starts with `RLIMIT_AS` (address space) at twice the heap limit
//!   plus [`ADDRESS_SPACE_OVERHEAD`] and no core dumps, set in the child before `exec`;
//!   QuickJS's own heap limit stays the first line;
//! - **CPU**: the worker keeps its `RLIMIT_CPU` a little above each job's time limit
//!   ([`crate::worker`]), a backstop the kernel enforces.
//!
//! A worker that answered is reused; one that was killed, died or answered garbage is
//! discarded (and reaped) and the next run starts a fresh one. At most `workers` runs happen at
//! once; a run that finds them all busy waits up to [`QUEUE_WAIT`], then fails with
//! [`LambdaError::Busy`]. Workers get an empty environment, and on Linux die with the gateway
//! (`PR_SET_PDEATHSIG`).

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Semaphore;

use crate::engine::{LambdaError, Limits, Reconciled};
use crate::worker::{finish_line, read_line, Job, LineError, Reply, MAX_REPLY_BYTES};

/// How many lambda runs may happen at once when the settings do not say (`lambdaWorkers`).
pub const DEFAULT_WORKERS: usize = 4;

/// How long a run waits for a free worker before it fails with [`LambdaError::Busy`].
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// Time on top of the lambda's limit before its worker is killed: starting a process, setting
/// up the engine and writing the answer.
pub const KILL_GRACE: Duration = Duration::from_millis(500);

/// Address space a worker may use besides twice the heap limit: the binary, its stacks and the
/// allocator's reservations.
pub const ADDRESS_SPACE_OVERHEAD: u64 = 512 << 20;

/// How the host starts a worker: a program and its arguments (for Gatehouse, its own executable
/// and a hidden subcommand). The worker must call [`crate::worker::serve`] on its stdin and
/// stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
}

impl WorkerCommand {
    /// A command running `program` with `args`.
    pub fn new(program: impl Into<PathBuf>, args: &[&str]) -> Self {
        WorkerCommand {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
        }
    }

    /// The process to start, confined to `limits` (see the module documentation).
    fn process(&self, limits: Limits) -> std::process::Command {
        let mut command = std::process::Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let address_space = (limits.memory_bytes as u64)
            .saturating_mul(2)
            .saturating_add(ADDRESS_SPACE_OVERHEAD);
        // SAFETY: `confine` makes only async-signal-safe system calls and allocates nothing.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                confine(address_space)
            });
        }
        command
    }
}

/// In the child, before `exec`: caps the address space, turns core dumps off and (Linux) asks
/// for `SIGKILL` when the parent dies. Returns the first failure.
fn confine(address_space: u64) -> io::Result<()> {
    set_limit(libc::RLIMIT_AS, address_space)?;
    set_limit(libc::RLIMIT_CORE, 0)?;
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and reads no memory.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The type of `setrlimit`'s resource argument.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
/// The type of `setrlimit`'s resource argument.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

/// Sets both the soft and the hard limit of `resource` to `value`.
fn set_limit(resource: Resource, value: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct passed to it.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Why a worker that did not answer properly ended: a timeout when the kernel's CPU backstop
/// (`SIGXCPU`) stopped it, else a crash described by `what` and its exit status.
fn ended(what: &str, status: Option<ExitStatus>) -> LambdaError {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) if s.signal() == Some(libc::SIGXCPU) => LambdaError::Timeout,
        Some(s) => LambdaError::Crashed(format!("{what} ({s})")),
        None => LambdaError::Crashed(what.to_string()),
    }
}

/// What a reply line that could not be read means.
fn line_problem(error: LineError) -> &'static str {
    match error {
        LineError::End => "the worker ended without answering",
        LineError::Truncated => "the worker ended in the middle of its answer",
        LineError::TooLong => "the worker's answer is too large",
        LineError::Io(_) => "the worker's answer could not be read",
    }
}

/// One running worker process.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    /// Sends one job line and reads the reply; the error says what went wrong.
    async fn exchange(&mut self, line: &[u8]) -> Result<Reply, &'static str> {
        self.stdin
            .write_all(line)
            .await
            .map_err(|_| "the worker did not take the job")?;
        self.stdin
            .flush()
            .await
            .map_err(|_| "the worker did not take the job")?;
        let mut reply = Vec::new();
        let read = (&mut self.stdout)
            .take(MAX_REPLY_BYTES + 1)
            .read_until(b'\n', &mut reply)
            .await
            .map_err(|e| line_problem(LineError::Io(e.to_string())))?;
        let reply = finish_line(reply, read, MAX_REPLY_BYTES).map_err(line_problem)?;
        serde_json::from_slice(&reply).map_err(|_| "the worker's answer is not a reply")
    }

    /// Kills the worker (`SIGKILL`) unless it already ended, and reaps it; returns its status.
    async fn end(mut self) -> Option<ExitStatus> {
        let _ = self.child.start_kill();
        self.child.wait().await.ok()
    }
}

/// The pool of lambda workers (see the module documentation).
pub struct Sandbox {
    command: WorkerCommand,
    limits: Limits,
    slots: Semaphore,
    idle: Mutex<Vec<Worker>>,
    queue_wait: Duration,
    started: AtomicU64,
}

impl Sandbox {
    /// A pool starting workers with `command`, running lambdas within `limits`, at most
    /// `workers` at once (at least one). No worker starts before the first run.
    pub fn new(command: WorkerCommand, limits: Limits, workers: usize) -> Self {
        let workers = workers.max(1);
        Sandbox {
            command,
            limits,
            slots: Semaphore::new(workers),
            idle: Mutex::new(Vec::with_capacity(workers)),
            queue_wait: QUEUE_WAIT,
            started: AtomicU64::new(0),
        }
    }

    /// The same pool with another queueing time than [`QUEUE_WAIT`].
    pub fn with_queue_wait(mut self, wait: Duration) -> Self {
        self.queue_wait = wait;
        self
    }

    /// The limits of every run.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How many worker processes this pool has started so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Checks that `body` compiles and defines `reconcile`; the error says why not.
    pub async fn check(&self, body: &str) -> Result<(), LambdaError> {
        let job = Job::Check {
            body: body.to_string(),
            limits: self.limits.into(),
        };
        match self.run(&job).await? {
            Reply::Checked => Ok(()),
            Reply::Failed(e) => Err(e),
            Reply::Reconciled(_) => Err(LambdaError::Crashed("an unexpected answer".into())),
        }
    }

    /// Runs `reconcile(user, registration, jwt, ...rest)` from `body` (`rest`: nothing for
    /// ExternalJWT, `[id_token, tokens]` for OpenID Connect); returns the objects as the
    /// lambda left them, or why it failed.
    pub async fn reconcile(
        &self,
        body: &str,
        user: &Value,
        registration: &Value,
        jwt: &Value,
        rest: &[Value],
    ) -> Result<Reconciled, LambdaError> {
        let job = Job::Reconcile {
            body: body.to_string(),
            user: user.clone(),
            registration: registration.clone(),
            jwt: jwt.clone(),
            rest: rest.to_vec(),
            limits: self.limits.into(),
        };
        match self.run(&job).await? {
            Reply::Reconciled(r) => Ok(r),
            Reply::Failed(e) => Err(e),
            Reply::Checked => Err(LambdaError::Crashed("an unexpected answer".into())),
        }
    }

    /// Runs `job` on a worker: waits for a free slot (bounded), borrows a warm worker or starts
    /// one, and kills the worker when it overruns or misbehaves. Returns the worker's reply.
    async fn run(&self, job: &Job) -> Result<Reply, LambdaError> {
        let line = job.to_line()?;
        let _slot = tokio::time::timeout(self.queue_wait, self.slots.acquire())
            .await
            .map_err(|_| LambdaError::Busy)?
            .map_err(|_| LambdaError::Busy)?;
        let mut worker = match self.take_idle() {
            Some(worker) => worker,
            None => self.start()?,
        };
        let deadline = self.limits.time + KILL_GRACE;
        match tokio::time::timeout(deadline, worker.exchange(&line)).await {
            Ok(Ok(reply)) => {
                self.give_back(worker);
                Ok(reply)
            }
            Ok(Err(what)) => Err(ended(what, worker.end().await)),
            Err(_) => {
                worker.end().await;
                Err(LambdaError::Timeout)
            }
        }
    }

    /// A warm worker that is still running, if any (ended ones are reaped and dropped).
    fn take_idle(&self) -> Option<Worker> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut worker) = idle.pop() {
            if matches!(worker.child.try_wait(), Ok(None)) {
                return Some(worker);
            }
        }
        None
    }

    fn give_back(&self, worker: Worker) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(worker);
    }

    /// Starts a worker process; an error when it cannot be started.
    fn start(&self) -> Result<Worker, LambdaError> {
        let mut command = tokio::process::Command::from(self.command.process(self.limits));
        command.kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| LambdaError::Crashed(format!("cannot start a worker: {e}")))?;
        self.started.fetch_add(1, Ordering::Relaxed);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(LambdaError::Crashed("the worker has no pipes".into()));
        };
        Ok(Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }
}

/// Checks `body` in a one-off worker started with `command`, blocking the calling thread (for
/// validating a configuration file before any runtime exists). Returns `Ok` when the body
/// compiles and defines `reconcile`, else why not; the worker is killed and reaped in any case.
pub fn check_blocking(
    command: &WorkerCommand,
    body: &str,
    limits: Limits,
) -> Result<(), LambdaError> {
    let line = Job::Check {
        body: body.to_string(),
        limits: limits.into(),
    }
    .to_line()?;
    let mut child = command
        .process(limits)
        .spawn()
        .map_err(|e| LambdaError::Crashed(format!("cannot start a worker: {e}")))?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(LambdaError::Crashed("the worker has no pipes".into()));
    };
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = io::BufReader::new(stdout);
        let _ = sender.send(read_line(&mut stdout, MAX_REPLY_BYTES));
    });
    // A worker that died at once makes this write fail; its (missing) answer says the rest.
    let _ = stdin.write_all(&line).and_then(|()| stdin.flush());
    drop(stdin);
    let answer = receiver.recv_timeout(limits.time + KILL_GRACE);
    let _ = child.kill();
    let status = child.wait().ok();
    match answer {
        Err(_) => Err(LambdaError::Timeout),
        Ok(Err(e)) => Err(ended(line_problem(e), status)),
        Ok(Ok(reply)) => match serde_json::from_slice(&reply) {
            Ok(Reply::Checked) => Ok(()),
            Ok(Reply::Failed(e)) => Err(e),
            Ok(Reply::Reconciled(_)) => Err(LambdaError::Crashed("an unexpected answer".into())),
            Err(_) => Err(ended("the worker's answer is not a reply", status)),
        },
    }
}

#[cfg(test)]
mod tests {
    //! The pool against stand-in workers (shell scripts): the real worker is tested in
    //! [`crate::worker`] and, through the gatehouse binary, by the integration tests.
    use super::*;
    use serde_json::json;
    use std::time::Instant;

    /// The tests count this process's children, so they run one at a time.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn limits() -> Limits {
        Limits {
            time: Duration::from_millis(200),
            memory_bytes: 8 << 20,
        }
    }

    fn shell(script: &str) -> WorkerCommand {
        WorkerCommand::new("/bin/sh", &["-c", script])
    }

    /// A stand-in that answers every job with `reply`.
    fn answering(reply: &str) -> WorkerCommand {
        shell(&format!("while read -r line; do echo '{reply}'; done"))
    }

    /// True once no child process of this one runs a command line containing `marker`,
    /// waiting up to 3 s for it to be reaped. Other tests of this crate start and keep their
    /// own workers meanwhile, so only the marked children are this test's.
    fn no_child_runs(marker: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let running = child_pids().into_iter().any(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|line| String::from_utf8_lossy(&line).contains(marker))
            });
            if !running {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pids of this process's children (all its threads).
    fn child_pids() -> Vec<u32> {
        std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
            .flat_map(|list| {
                list.split_whitespace()
                    .filter_map(|pid| pid.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    }

    /// The live child processes of this process (all its threads).
    fn children() -> usize {
        let mut count = 0;
        for task in std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .flatten()
        {
            let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            count += list.split_whitespace().count();
        }
        count
    }

    #[tokio::test]
    async fn warm_workers_are_reused() {
        let _serial = SERIAL.lock().await;
        let sandbox = Sandbox::new(answering("\"checked\""), limits(), 2);
        for _ in 0..5 {
            assert_eq!(sandbox.check("function reconcile() {}").await, Ok(()));
        }
        assert_eq!(sandbox.started(), 1);
        let failing = Sandbox::new(answering(r#"{"failed":{"Thrown":"nope"}}"#), limits(), 1);
        let out = failing
            .reconcile("b", &json!({}), &json!({}), &json!({}), &[])
            .await;
        assert_eq!(out, Err(LambdaError::Thrown("nope".into())));
        // a clean failure keeps the worker
        assert!(failing.check("b").await.is_err());
        assert_eq!(failing.started(), 1);
    }

    #[tokio::test]
    async fn a_hanging_worker_is_killed_and_reaped() {
        let _serial = SERIAL.lock().await;
        let sandbox = Sandbox::new(shell("read -r line; sleep 30"), limits(), 1);
        let before = children();
        let start = Instant::now();
        assert_eq!(sandbox.check("x").await, Err(LambdaError::Timeout));
        let took = start.elapsed();
        assert!(took >= limits().time, "{took:?}");
        assert!(
            took < limits().time + KILL_GRACE + Duration::from_secs(1),
            "{took:?}"
        );
        assert!(children() <= before, "a worker is left running");
        // the next run starts a fresh worker
        assert_eq!(sandbox.check("x").await, Err(LambdaError::Timeout));
        assert_eq!(sandbox.started(), 2);
    }

    #[tokio::test]
    async fn crashes_and_garbage_are_errors() {
        let _serial = SERIAL.lock().await;
        let cases = [
            ("read -r line; kill -9 $$", "signal: 9"),
            ("read -r line; exit 3", "exit status: 3"),
            ("read -r line; echo garbage; sleep 30", "not a reply"),
            ("read -r line; printf '\"chec'", "middle of its answer"),
        ];
        for (script, expected) in cases {
            let sandbox = Sandbox::new(shell(script), limits(), 1);
            let before = children();
            match sandbox.check("x").await {
                Err(LambdaError::Crashed(m)) => assert!(m.contains(expected), "{script}: {m}"),
                other => panic!("{script}: {other:?}"),
            }
            assert!(children() <= before, "{script}: a worker is left running");
        }
        let missing = Sandbox::new(WorkerCommand::new("/nonexistent/worker", &[]), limits(), 1);
        assert!(matches!(
            missing.check("x").await,
            Err(LambdaError::Crashed(_))
        ));
        // an answer of the wrong kind
        let wrong = Sandbox::new(answering("\"checked\""), limits(), 1);
        assert!(matches!(
            wrong
                .reconcile("b", &json!({}), &json!({}), &json!({}), &[])
                .await,
            Err(LambdaError::Crashed(_))
        ));
    }

    #[tokio::test]
    async fn busy_workers_make_a_bounded_wait() {
        let _serial = SERIAL.lock().await;
        let sandbox = std::sync::Arc::new(
            Sandbox::new(shell("read -r line; sleep 30"), limits(), 1)
                .with_queue_wait(Duration::from_millis(50)),
        );
        let first = {
            let sandbox = sandbox.clone();
            tokio::spawn(async move { sandbox.check("x").await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let start = Instant::now();
        assert_eq!(sandbox.check("y").await, Err(LambdaError::Busy));
        assert!(start.elapsed() < Duration::from_millis(150));
        assert_eq!(first.await.expect("task"), Err(LambdaError::Timeout));
    }

    #[tokio::test]
    async fn workers_are_confined_before_exec() {
        let _serial = SERIAL.lock().await;
        // `ulimit -v` (KiB) and `ulimit -c` as the worker sees them, and its environment.
        let script = r#"read -r line; echo "{\"failed\":{\"Engine\":\"$(ulimit -v) $(ulimit -c) ${HOME:-none}\"}}""#;
        let sandbox = Sandbox::new(shell(script), limits(), 1);
        let expected = (limits().memory_bytes as u64 * 2 + ADDRESS_SPACE_OVERHEAD) / 1024;
        assert_eq!(
            sandbox.check("x").await,
            Err(LambdaError::Engine(format!("{expected} 0 none")))
        );
    }

    #[test]
    fn the_blocking_check_kills_and_reports() {
        let _serial = SERIAL.blocking_lock();
        assert_eq!(
            check_blocking(&answering("\"checked\""), "x", limits()),
            Ok(())
        );
        let start = Instant::now();
        assert_eq!(
            check_blocking(&shell("read -r line; sleep 31"), "x", limits()),
            Err(LambdaError::Timeout)
        );
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(matches!(
            check_blocking(&shell("kill -9 $$"), "x", limits()),
            Err(LambdaError::Crashed(m)) if m.contains("signal: 9")
        ));
        assert_eq!(
            check_blocking(&answering(r#"{"failed":"MissingFunction"}"#), "x", limits()),
            Err(LambdaError::MissingFunction)
        );
        assert!(
            no_child_runs("sleep 31"),
            "the hanging worker was left running"
        );
    }
}
