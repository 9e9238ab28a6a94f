//! Binary upgrades by Pingora's socket hand-over. The new binary is started with
//! `gatehouse serve --upgrade`: it opens its store and builds its gateway as at any start, then
//! binds the upgrade socket (`upgradeSocket`) and waits there for the listeners (proxy, admin,
//! demo upstream) instead of binding their addresses. `SIGQUIT` to the running gateway makes it
//! send its listening sockets there; it goes on accepting for Pingora's close timeout (5 s,
//! both processes accept from the same sockets then), stops accepting, and drains what it
//! has under way for `shutdownTimeoutSeconds` before it exits.
//!
//! [`Signals`] replaces Pingora's signal watch so that a `SIGQUIT` nobody can receive does not
//! end the gateway: without a new process waiting on a socket that is safe to use, the
//! running gateway logs why and keeps serving. `SIGTERM` (drain) and `SIGINT` (fast) are as
//! Pingora has them; `SIGHUP` stays the configuration reload (see [`super::reload`]).

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::upgrade::socket_problem;
use crate::server::drain::Drain;
use crate::server::StartError;

/// How long the new process waits for the listeners (Pingora's 5 tries a second apart).
pub const RECEIVE_SECONDS: u64 = 5;

/// The signal watch of the running gateway, which hands its listeners over on `socket`.
pub struct Signals {
    /// The upgrade socket a new process listens on.
    pub socket: PathBuf,
    /// Started at the hand-over: the proxy's connections are not kept alive any more.
    pub drain: Arc<Drain>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    /// The next shutdown asked for: `SIGTERM` a graceful one, `SIGINT` a fast one, `SIGQUIT`
    /// a hand-over when [`handover_problem`] finds none (otherwise it is logged and ignored).
    async fn recv(&self) -> ShutdownSignal {
        let (mut quit, mut terminate, mut interrupt) = match (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(q), Ok(t), Ok(i)) => (q, t, i),
            _ => {
                tracing::error!("cannot listen for SIGQUIT, SIGTERM and SIGINT; stopping");
                return ShutdownSignal::FastShutdown;
            }
        };
        loop {
            tokio::select! {
                _ = terminate.recv() => return ShutdownSignal::GracefulTerminate,
                _ = interrupt.recv() => return ShutdownSignal::FastShutdown,
                _ = quit.recv() => match handover_problem(&self.socket) {
                    None => {
                        tracing::info!(socket = %self.socket.display(),
                            "SIGQUIT received: handing the listeners over to the new process, then draining");
                        self.drain.start();
                        return ShutdownSignal::GracefulUpgrade;
                    }
                    Some(problem) => tracing::error!(
                        "SIGQUIT received but the listeners cannot be handed over: {problem}; still serving"
                    ),
                },
            }
        }
    }
}

/// Why the listeners cannot be handed over on `socket` now, or `None` when a new process is
/// waiting on it: the socket must be safe ([`socket_problem`]) and exist (the new process
/// binds it once it is ready to receive).
pub fn handover_problem(socket: &Path) -> Option<String> {
    if let Some(problem) = socket_problem(socket) {
        return Some(problem);
    }
    match std::fs::symlink_metadata(socket) {
        Ok(meta) if meta.file_type().is_socket() => None,
        _ => Some(format!(
            "no new process is waiting on {}; start `gatehouse serve --upgrade` first",
            socket.display()
        )),
    }
}

/// Checks, before the new process waits for the listeners, that it can bind `socket`: safe
/// ([`socket_problem`]) and in a directory it can write. `Err` says what to fix.
pub fn check_receivable(socket: &Path) -> Result<(), StartError> {
    let setup = |message: String| StartError::Setup {
        path: "upgradeSocket".into(),
        message,
    };
    if let Some(problem) = socket_problem(socket) {
        return Err(setup(problem));
    }
    let dir = socket.parent().filter(|d| !d.as_os_str().is_empty());
    let probe = dir
        .unwrap_or(Path::new("."))
        .join(format!(".gatehouse-upgrade-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            setup(format!(
                "cannot create the upgrade socket {}: {e}",
                socket.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        dir
    }

    #[test]
    fn a_handover_needs_a_process_waiting_on_the_socket() {
        let dir = private_dir();
        let socket = dir.path().join("up.sock");
        let absent = handover_problem(&socket).expect("nobody waits");
        assert!(absent.contains("no new process is waiting"), "{absent}");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        assert_eq!(handover_problem(&socket), None);
    }

    #[test]
    fn a_handover_on_an_unsafe_socket_is_refused() {
        let dir = private_dir();
        let socket = dir.path().join("up.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let problem = handover_problem(&socket).expect("refused");
        assert!(problem.contains("other users"), "{problem}");
    }

    #[test]
    fn receiving_needs_a_writable_private_directory() {
        let dir = private_dir();
        assert!(check_receivable(&dir.path().join("up.sock")).is_ok());
        // Nothing is left behind by the check.
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o500))
            .expect("chmod");
        // Root may write anyway; the check is only meaningful for other users.
        let writable_anyway = std::fs::write(dir.path().join("x"), "x").is_ok();
        let result = check_receivable(&dir.path().join("up.sock"));
        assert_eq!(result.is_ok(), writable_anyway, "{:?}", result.err());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
    }
}
