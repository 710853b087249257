//! What each user of this daemon shares: `HOME/shares.json`.
//!
//! Owns the list of shared files per user (group, name, absolute path, size,
//! mtime, [`FileMeta`]) and its persistence. Shares outlive a logout so the
//! next login re-announces them. Invariant: an entry is only served or
//! re-announced while the file on disk still has the recorded size and
//! mtime; one that vanished or changed is dropped (with a warning) and the
//! tracker is told `StopShare`, best effort ([`forget_stale`]).

use crate::tracker_client::SessionClient;
use proto::service::write_atomic;
use proto::tracker::FileMeta;
use proto::{FileName, GroupId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One shared file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareEntry {
    pub group: GroupId,
    pub name: FileName,
    /// Absolute path the file is served from (no copy is made).
    pub path: PathBuf,
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime: i64,
    pub meta: FileMeta,
}

/// Size and mtime of a file: what must not change for a share to stay valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    pub mtime: i64,
}

impl FileStamp {
    pub fn of(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            size: meta.len(),
            mtime: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
        }
    }

    /// Stamp of the regular file at `path` (following symlinks).
    pub fn read(path: &Path) -> std::io::Result<FileStamp> {
        std::fs::metadata(path).map(|m| FileStamp::of(&m))
    }
}

impl ShareEntry {
    /// Why this share is no longer valid, if it is not.
    pub fn staleness(&self) -> Option<String> {
        match FileStamp::read(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some(format!("{} vanished", self.path.display()))
            }
            Err(e) => Some(format!("{} cannot be read: {e}", self.path.display())),
            Ok(s) if s.size != self.size || s.mtime != self.mtime => Some(format!(
                "{} changed since it was shared",
                self.path.display()
            )),
            Ok(_) => None,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SharesFile {
    #[serde(default)]
    users: BTreeMap<UserId, Vec<ShareEntry>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SharesError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid shares file ({source}); move it aside to start afresh")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The shares of every user of this daemon, persisted on each change.
pub struct ShareSet {
    path: PathBuf,
    file: Mutex<SharesFile>,
}

impl std::fmt::Debug for ShareSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareSet")
            .field("path", &self.path)
            .finish()
    }
}

impl ShareSet {
    /// Load `path` (absent = no shares).
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed: refusing to start is
    /// better than silently forgetting what users shared.
    pub fn load(path: PathBuf) -> Result<ShareSet, SharesError> {
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| SharesError::Corrupt {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SharesFile::default(),
            Err(source) => return Err(SharesError::Read { path, source }),
        };
        Ok(ShareSet {
            path,
            file: Mutex::new(file),
        })
    }

    /// Every share of `user`.
    pub fn of_user(&self, user: &UserId) -> Vec<ShareEntry> {
        self.lock().users.get(user).cloned().unwrap_or_default()
    }

    pub fn count(&self, user: &UserId) -> usize {
        self.lock().users.get(user).map_or(0, Vec::len)
    }

    /// Add or replace (same group and name) a share of `user`, persisted.
    ///
    /// # Errors
    /// The shares file cannot be written; memory is then left unchanged.
    pub fn upsert(&self, user: &UserId, entry: ShareEntry) -> std::io::Result<()> {
        self.modify(|f| {
            let list = f.users.entry(user.clone()).or_default();
            list.retain(|e| !(e.group == entry.group && e.name == entry.name));
            list.push(entry);
            true
        })
    }

    /// Remove one share of `user`; `Ok(false)` if there was none.
    ///
    /// # Errors
    /// The shares file cannot be written.
    pub fn remove(&self, user: &UserId, group: &GroupId, name: &FileName) -> std::io::Result<bool> {
        let mut removed = false;
        self.modify(|f| {
            if let Some(list) = f.users.get_mut(user) {
                let before = list.len();
                list.retain(|e| !(&e.group == group && &e.name == name));
                removed = list.len() != before;
            }
            removed
        })?;
        Ok(removed)
    }

    /// Remove every share of `user` in `group` (after leaving it).
    ///
    /// # Errors
    /// The shares file cannot be written.
    pub fn remove_group(&self, user: &UserId, group: &GroupId) -> std::io::Result<usize> {
        let mut n = 0;
        self.modify(|f| {
            if let Some(list) = f.users.get_mut(user) {
                let before = list.len();
                list.retain(|e| &e.group != group);
                n = before - list.len();
            }
            n > 0
        })?;
        Ok(n)
    }

    /// `user`'s share of `name` in `group`, as recorded (valid on disk or
    /// not: see [`ShareEntry::staleness`]).
    pub fn find(&self, user: &UserId, group: &GroupId, name: &FileName) -> Option<ShareEntry> {
        self.lock()
            .users
            .get(user)?
            .iter()
            .find(|e| &e.group == group && &e.name == name)
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SharesFile> {
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply `change` to a copy; if it reports a change, persist the copy
    /// then install it. The lock is held across the (small, synchronous)
    /// write so concurrent changes reach the disk in order.
    fn modify(&self, change: impl FnOnce(&mut SharesFile) -> bool) -> std::io::Result<()> {
        let mut guard = self.lock();
        let mut next = SharesFile {
            users: guard.users.clone(),
        };
        if !change(&mut next) {
            return Ok(());
        }
        next.users.retain(|_, l| !l.is_empty());
        let bytes = serde_json::to_vec_pretty(&next).map_err(std::io::Error::other)?;
        write_atomic(&self.path, &bytes, 0o600)?;
        *guard = next;
        Ok(())
    }
}

/// Forgets a share whose file vanished or changed (`why`), and tells the
/// tracker in the background, best effort.
pub fn forget_stale(shares: &ShareSet, client: &SessionClient, entry: &ShareEntry, why: &str) {
    tracing::warn!(group = %entry.group, name = %entry.name, "no longer sharing: {why}");
    if let Err(e) = shares.remove(client.user(), &entry.group, &entry.name) {
        tracing::warn!("cannot update {}: {e}", shares.path.display());
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (client, group, name) = (client.clone(), entry.group.clone(), entry.name.clone());
    rt.spawn(async move {
        if let Err(e) = client.stop_share(group, name).await {
            tracing::debug!("stop_share of a stale file: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(group: &str, name: &str, path: &Path) -> ShareEntry {
        let stamp = FileStamp::read(path).unwrap();
        ShareEntry {
            group: group.parse().unwrap(),
            name: name.parse().unwrap(),
            path: path.to_path_buf(),
            size: stamp.size,
            mtime: stamp.mtime,
            meta: FileMeta {
                name: name.parse().unwrap(),
                size: stamp.size,
                sha1: p2p_sha1::of(b"x"),
                piece_size: proto::geometry::PIECE_SIZE_BYTES,
                pieces: vec![p2p_sha1::of(b"x")],
            },
        }
    }

    fn set(path: PathBuf) -> ShareSet {
        ShareSet::load(path).unwrap()
    }

    #[tokio::test]
    async fn round_trip_replace_remove() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("my file.bin");
        std::fs::write(&data, b"hello").unwrap();
        let path = t.path().join("shares.json");
        let alice: UserId = "alice".parse().unwrap();
        {
            let s = set(path.clone());
            s.upsert(&alice, entry("g1", "my file.bin", &data)).unwrap();
            s.upsert(&alice, entry("g1", "my file.bin", &data)).unwrap();
            s.upsert(&alice, entry("g2", "my file.bin", &data)).unwrap();
            assert_eq!(s.count(&alice), 2);
        }
        let s = set(path.clone());
        assert_eq!(s.of_user(&alice).len(), 2);
        assert_eq!(s.of_user(&alice)[0], entry("g1", "my file.bin", &data));
        let g1: GroupId = "g1".parse().unwrap();
        let name: FileName = "my file.bin".parse().unwrap();
        assert!(s.find(&alice, &g1, &name).is_some());
        assert!(s.find(&"bob".parse().unwrap(), &g1, &name).is_none());
        assert_eq!(s.remove_group(&alice, &"g2".parse().unwrap()).unwrap(), 1);
        assert!(s.remove(&alice, &g1, &name).unwrap());
        assert!(!s.remove(&alice, &g1, &name).unwrap());
        assert_eq!(set(path).count(&alice), 0);
    }

    #[test]
    fn staleness_says_why() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("f");
        std::fs::write(&data, b"hello").unwrap();
        let e = entry("g1", "f", &data);
        assert_eq!(e.staleness(), None);
        std::fs::write(&data, b"hello, changed").unwrap();
        assert!(e.staleness().unwrap().contains("changed"));
        std::fs::remove_file(&data).unwrap();
        assert!(e.staleness().unwrap().contains("vanished"));
    }

    #[test]
    fn corrupt_file_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("shares.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            ShareSet::load(path),
            Err(SharesError::Corrupt { .. })
        ));
    }
}
