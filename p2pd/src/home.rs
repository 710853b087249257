//! The daemon's state directory `HOME` and the files in it.
//!
//! Owns: creating HOME (0700), refusing a HOME that is not this user's
//! alone (owned by another uid, or writable by group or others: whoever can
//! write there can plant a socket that captures passwords, or replace the
//! state files), the exclusive lock on `HOME/p2pd.lock` (one daemon per
//! home), removing a stale `HOME/p2pd.sock` (only while holding the lock, so
//! a running daemon's socket is never touched), and where the state files
//! live. Invariant: while a [`Home`] exists, this process is the only daemon
//! using the directory, and only this uid (and root) can change what is in it.

pub use proto::dirs::SOCKET_FILE;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
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
    #[error("cannot check home {path}: {source}")]
    Inspect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("home {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("home {path} belongs to uid {owner}, but this p2pd runs as uid {uid}; give each user a home of their own (--home DIR)")]
    NotOwned { path: PathBuf, owner: u32, uid: u32 },
    #[error("home {path} is writable by {who} (mode {mode:04o}), so another user could replace the daemon's socket and files; refusing to start. Fix it with: chmod 700 {path}")]
    Insecure {
        path: PathBuf,
        mode: u32,
        who: &'static str,
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
    /// Create (0700, parents too) or check `dir`, lock it, then remove a
    /// stale socket file.
    ///
    /// # Errors
    /// [`HomeError::PathTooLong`] before touching the disk if the socket path
    /// would not fit; [`HomeError::NotOwned`] / [`HomeError::Insecure`] if
    /// the directory is another uid's or writable by group or others;
    /// [`HomeError::AlreadyRunning`] if another daemon holds the lock.
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
        check_private(&dir, rustix::process::geteuid().as_raw())?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
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

/// Refuse a home that is not private to `uid`: the directory (a symlink
/// followed) must be owned by `uid` and not writable by group or others,
/// and a symlink naming it must be `uid`'s or root's (anyone else could
/// point it elsewhere later).
///
/// # Errors
/// [`HomeError::NotOwned`], [`HomeError::Insecure`],
/// [`HomeError::NotADirectory`], or [`HomeError::Inspect`] if it cannot be
/// examined.
pub fn check_private(dir: &Path, uid: u32) -> Result<(), HomeError> {
    let inspect = |source| HomeError::Inspect {
        path: dir.to_path_buf(),
        source,
    };
    let link = std::fs::symlink_metadata(dir).map_err(inspect)?;
    if link.file_type().is_symlink() && link.uid() != uid && link.uid() != 0 {
        return Err(HomeError::NotOwned {
            path: dir.to_path_buf(),
            owner: link.uid(),
            uid,
        });
    }
    let meta = std::fs::metadata(dir).map_err(inspect)?;
    if !meta.is_dir() {
        return Err(HomeError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    if meta.uid() != uid {
        return Err(HomeError::NotOwned {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    let mode = meta.mode() & 0o7777;
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => return Ok(()),
        (true, false) => "its group",
        (false, true) => "others",
        (true, true) => "its group and others",
    };
    Err(HomeError::Insecure {
        path: dir.to_path_buf(),
        mode,
        who,
    })
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

    fn tmp() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("p2h")
            .tempdir_in("/tmp")
            .unwrap()
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn home_writable_by_group_or_others_is_refused_with_the_fix() {
        let t = tmp();
        let dir = t.path().join("h");
        std::fs::create_dir(&dir).unwrap();
        for (mode, who) in [
            (0o777, "its group and others"),
            (0o770, "its group"),
            (0o703, "others"),
        ] {
            chmod(&dir, mode);
            let err = Home::open(&dir).unwrap_err();
            assert!(matches!(err, HomeError::Insecure { .. }), "{mode:o}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(&dir.display().to_string()), "{msg}");
            assert!(msg.contains(who), "{msg}");
            assert!(
                msg.contains(&format!("chmod 700 {}", dir.display())),
                "{msg}"
            );
            assert!(!dir.join(LOCK_FILE).exists(), "nothing created in it");
        }
        for mode in [0o700, 0o750, 0o755] {
            chmod(&dir, mode);
            let home = Home::open(&dir).unwrap_or_else(|e| panic!("{mode:o}: {e}"));
            drop(home);
        }
    }

    #[test]
    fn home_of_another_uid_is_refused_even_through_a_symlink() {
        let t = tmp();
        let dir = t.path().join("h");
        std::fs::create_dir(&dir).unwrap();
        let me = rustix::process::geteuid().as_raw();
        let other = me.wrapping_add(4242);
        assert!(check_private(&dir, me).is_ok());
        let err = check_private(&dir, other).unwrap_err();
        assert!(
            matches!(err, HomeError::NotOwned { owner, uid, .. } if owner == me && uid == other)
        );
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(
            check_private(&link, me).is_ok(),
            "my own link to my own dir"
        );
        let err = check_private(&link, other).unwrap_err();
        assert!(err.to_string().contains(&format!("uid {me}")), "{err}");
        let file = t.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            check_private(&file, me),
            Err(HomeError::NotADirectory { .. })
        ));
    }

    #[test]
    fn a_symlink_planted_at_the_lock_file_is_not_followed() {
        let t = tmp();
        let dir = t.path().join("h");
        std::fs::create_dir(&dir).unwrap();
        let victim = t.path().join("victim");
        std::os::unix::fs::symlink(&victim, dir.join(LOCK_FILE)).unwrap();
        assert!(matches!(Home::open(&dir), Err(HomeError::OpenLock { .. })));
        assert!(!victim.exists());
    }

    #[test]
    fn new_home_and_its_new_parents_are_private() {
        let t = tmp();
        let dir = t.path().join("a").join("b");
        let _home = Home::open(&dir).unwrap();
        for d in [t.path().join("a"), dir.clone()] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", d.display());
        }
        let lock = std::fs::metadata(dir.join(LOCK_FILE)).unwrap();
        assert_eq!(lock.permissions().mode() & 0o777, 0o600);
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
