//! The daemon's state directory `HOME` and the files in it.
//!
//! Owns: creating HOME (0700), the exclusive lock on `HOME/p2pd.lock` (one
//! daemon per home), removing a stale `HOME/p2pd.sock` (only while holding
//! the lock, so a running daemon's socket is never touched), and where the
//! state files live. Invariant: while a [`Home`] exists, this process is the
//! only daemon using the directory.

pub use proto::dirs::SOCKET_FILE;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// `sun_path` holds 108 bytes including the terminating NUL.
pub const MAX_SOCKET_PATH_BYTES: usize = 107;
pub const LOCK_FILE: &str = "p2pd.lock";

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("home {home} is too long: the control socket path {socket} is {len} bytes, a Unix socket path may have at most {max}; use a shorter --home")]
    PathTooLong {
        home: PathBuf,
        socket: PathBuf,
        len: usize,
        max: usize,
    },
    #[error("cannot create home {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open lock file {path}: {source}")]
    OpenLock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another p2pd is already running on {0}")]
    AlreadyRunning(PathBuf),
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove stale socket {path}: {source}")]
    RemoveStale {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An opened, locked HOME. Dropping it releases the lock (the OS does that
/// when the file closes).
#[derive(Debug)]
pub struct Home {
    dir: PathBuf,
    _lock: File,
}

impl Home {
    /// Create (0700) and lock `dir`, then remove a stale socket file.
    ///
    /// # Errors
    /// [`HomeError::PathTooLong`] before touching the disk if the socket path
    /// would not fit; [`HomeError::AlreadyRunning`] if another daemon holds
    /// the lock.
    pub fn open(dir: &Path) -> Result<Home, HomeError> {
        // Absolute, so the socket path we check is the one we bind whatever
        // the working directory.
        let dir = std::path::absolute(dir).map_err(|source| HomeError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
        check_socket_path(&dir)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| HomeError::Create {
                path: dir.clone(),
                source,
            })?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| HomeError::OpenLock {
                path: lock_path.clone(),
                source,
            })?;
        // flock(2) semantics: released by the OS when the process dies, so a
        // crash never leaves a home locked.
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(HomeError::AlreadyRunning(dir.clone()))
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(HomeError::Lock {
                    path: lock_path,
                    source,
                })
            }
        }
        let sock = dir.join(SOCKET_FILE);
        match std::fs::remove_file(&sock) {
            Ok(()) => tracing::info!(path = %sock.display(), "removed stale control socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(HomeError::RemoveStale { path: sock, source }),
        }
        Ok(Home { dir, _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn socket_path(&self) -> PathBuf {
        proto::dirs::socket_path(&self.dir)
    }

    pub fn session_path(&self) -> PathBuf {
        self.dir.join("session.json")
    }

    /// The cluster identity trusted on first use (when tracker_info.txt
    /// names no fingerprint).
    pub fn known_cluster_path(&self) -> PathBuf {
        self.dir.join("known_cluster")
    }

    pub fn shares_path(&self) -> PathBuf {
        self.dir.join("shares.json")
    }

    /// Resume records of downloads in progress.
    pub fn downloads_dir(&self) -> PathBuf {
        self.dir.join("downloads")
    }
}

/// Refuse a home whose socket path does not fit a `sockaddr_un`.
///
/// # Errors
/// [`HomeError::PathTooLong`] naming the limit.
pub fn check_socket_path(dir: &Path) -> Result<(), HomeError> {
    let socket = dir.join(SOCKET_FILE);
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH_BYTES {
        return Err(HomeError::PathTooLong {
            home: dir.to_path_buf(),
            socket,
            len,
            max: MAX_SOCKET_PATH_BYTES,
        });
    }
    Ok(())
}

/// Removes the control socket file when dropped, however the daemon stops.
#[derive(Debug)]
pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %self.0.display(), "cannot remove control socket: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn too_long_home_is_refused_with_the_limit() {
        let long = PathBuf::from(format!("/tmp/{}", "h".repeat(100)));
        let err = Home::open(&long).unwrap_err();
        assert!(matches!(err, HomeError::PathTooLong { .. }));
        assert!(err.to_string().contains("107"), "{err}");
        assert!(!long.exists(), "nothing created for a refused home");
        assert!(check_socket_path(Path::new("/tmp/short")).is_ok());
    }

    #[test]
    fn second_open_is_refused_and_stale_socket_removed() {
        let t = tempfile::Builder::new()
            .prefix("p2h")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = t.path().join("home");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(SOCKET_FILE), b"stale").unwrap();
        let home = Home::open(&dir).unwrap();
        assert!(!dir.join(SOCKET_FILE).exists());
        match Home::open(&dir) {
            Err(HomeError::AlreadyRunning(p)) => assert_eq!(p, home.dir()),
            other => panic!("{other:?}"),
        }
        drop(home);
        assert!(Home::open(&dir).is_ok(), "lock released on drop");
    }

    #[test]
    fn new_home_is_private() {
        let t = tempfile::Builder::new()
            .prefix("p2h")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = t.path().join("new");
        let _home = Home::open(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
