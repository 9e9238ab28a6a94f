//! `upgradeSocket`: the Unix socket over which a running gateway hands its listening sockets
//! to the new process of a binary upgrade (see [`crate::server::upgrade`]). Whoever can bind
//! that path when the old process sends receives the listeners, so the socket must live in a
//! directory only the gateway's user can write. The default is beside the SQLite store (its
//! directory is the gateway's state directory), or beside the configuration file for
//! PostgreSQL.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::sections::Problems;
use crate::store::StoreLocation;

/// The file name of the default socket, in the store's (or the configuration file's) directory.
pub const DEFAULT_NAME: &str = "gatehouse-upgrade.sock";

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The upgrade socket's path: `raw` resolved against `base_dir`, checked with
/// [`socket_problem`] (each problem added at `upgradeSocket`); without `raw`, the default
/// beside the store, which is checked only when an upgrade uses it (so that a store in a
/// shared directory does not make an existing file invalid).
pub(super) fn upgrade_socket(
    p: &mut Problems,
    raw: Option<&str>,
    store: &StoreLocation,
    base_dir: &Path,
) -> PathBuf {
    let Some(raw) = raw else {
        return default_socket(store, base_dir);
    };
    if raw.trim().is_empty() {
        p.add(
            "upgradeSocket",
            "must be a file path, e.g. data/gatehouse-upgrade.sock",
        );
        return default_socket(store, base_dir);
    }
    let path = base_dir.join(raw);
    if let Some(problem) = socket_problem(&path) {
        p.add("upgradeSocket", problem);
    }
    path
}

/// The default socket: [`DEFAULT_NAME`] in the SQLite store's directory, or in `base_dir` (the
/// configuration file's directory) for PostgreSQL.
fn default_socket(store: &StoreLocation, base_dir: &Path) -> PathBuf {
    let dir = match store {
        StoreLocation::Sqlite(file) => file.parent().unwrap_or(base_dir),
        StoreLocation::Postgres(_) => base_dir,
    };
    dir.join(DEFAULT_NAME)
}

/// What is wrong with `path` as an upgrade socket, or `None` when it can be used: it must be
/// UTF-8, fit a Unix socket address, name a file in an existing directory that neither its
/// group nor other users can write, and not name anything but a socket (the new process
/// removes what is there before it binds).
pub fn socket_problem(path: &Path) -> Option<String> {
    let shown = path.display();
    let Some(text) = path.to_str() else {
        return Some(format!("{shown} is not UTF-8"));
    };
    if text.len() > MAX_SOCKET_PATH {
        return Some(format!(
            "{shown} is {} bytes long; a Unix socket path may have at most {MAX_SOCKET_PATH}",
            text.len()
        ));
    }
    if text.ends_with('/') || path.file_name().is_none() {
        return Some(format!("{shown} names a directory, not a socket file"));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let mode = match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => meta.permissions().mode(),
        Ok(_) => return Some(format!("{} is not a directory", dir.display())),
        Err(e) => return Some(format!("cannot use the directory {}: {e}", dir.display())),
    };
    if mode & 0o022 != 0 {
        return Some(format!(
            "the directory {} can be written by other users (mode {:o}), who could take the listeners; use a directory only the gateway's user can write",
            dir.display(),
            mode & 0o7777
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            Some(format!("{shown} exists and is not a socket"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        dir
    }

    #[test]
    fn a_file_in_a_private_directory_is_accepted() {
        let dir = private_dir();
        assert_eq!(socket_problem(&dir.path().join("up.sock")), None);
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let dir = private_dir();
        for mode in [0o777, 0o1777, 0o770, 0o702] {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
            let problem = socket_problem(&dir.path().join("up.sock")).expect("refused");
            assert!(
                problem.contains("can be written by other users"),
                "{problem}"
            );
        }
    }

    #[test]
    fn a_missing_directory_a_directory_and_a_regular_file_are_refused() {
        let dir = private_dir();
        let missing = socket_problem(&dir.path().join("nowhere/up.sock")).expect("refused");
        assert!(missing.contains("cannot use the directory"), "{missing}");
        let trailing = format!("{}/", dir.path().display());
        let directory = socket_problem(Path::new(&trailing)).expect("refused");
        assert!(directory.contains("names a directory"), "{directory}");
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "x").expect("write");
        let regular = socket_problem(&file).expect("refused");
        assert!(regular.contains("exists and is not a socket"), "{regular}");
        let not_dir = socket_problem(&file.join("up.sock")).expect("refused");
        assert!(not_dir.contains("is not a directory"), "{not_dir}");
    }

    #[test]
    fn a_path_too_long_for_a_socket_address_is_refused() {
        let dir = private_dir();
        let long = dir.path().join("s".repeat(120));
        let problem = socket_problem(&long).expect("refused");
        assert!(problem.contains("at most 107"), "{problem}");
    }

    #[test]
    fn the_default_is_beside_the_sqlite_store_or_the_configuration() {
        let base = Path::new("/etc/gatehouse");
        let sqlite = StoreLocation::Sqlite(PathBuf::from("/var/lib/gatehouse/g.db"));
        let mut p = Problems::default();
        assert_eq!(
            upgrade_socket(&mut p, None, &sqlite, base),
            PathBuf::from("/var/lib/gatehouse/gatehouse-upgrade.sock")
        );
        let postgres = StoreLocation::Postgres("postgres://h/db".into());
        assert_eq!(
            upgrade_socket(&mut p, None, &postgres, base),
            PathBuf::from("/etc/gatehouse/gatehouse-upgrade.sock")
        );
        assert!(p.0.is_empty());
        upgrade_socket(&mut p, Some(" "), &sqlite, base);
        assert_eq!(p.0.len(), 1);
        assert_eq!(p.0[0].path, "upgradeSocket");
    }
}
