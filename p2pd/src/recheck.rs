//! Re-hashing our shares that a downloader reported corrupt.
//!
//! A downloader that banned us for data failing its SHA-1 tells the
//! tracker, which stops listing our copy and names it in each heartbeat's
//! answer until we register it again. A file can change on disk without its
//! size or mtime changing (a tool that restores mtimes, a bad disk), so the
//! report is the only sign. For each named share we re-hash the file:
//!
//! - it still matches what we shared: register it again (listed again; the
//!   report was about something else, e.g. a flaky link or a liar);
//! - it does not: stop sharing it, locally and at the tracker.
//!
//! One file is hashed at a time, each at most once while named, and a copy
//! that passed keeps passing for [`TRUST_PASSED`] while its size and mtime
//! stay as they were, so a member who keeps filing false reports costs us
//! one hash per file per period, not one per report.
//!
//! A named file we do not share completely (a download still in progress)
//! is left alone: the download registers it, whole and verified, when it
//! finishes, which lists it again.

use crate::hashing::{hash_file, CancelOnDrop, FileHashes};
use crate::shares::{forget_stale, FileStamp, ShareEntry, ShareSet};
use crate::tracker_client::SessionClient;
use proto::tracker::SharedRef;
use proto::{ErrorCode, UserId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a copy that re-hashed intact is trusted without hashing again.
pub const TRUST_PASSED: Duration = Duration::from_secs(600);

type Key = (UserId, SharedRef);

/// Re-hashes reported shares in the background, one at a time.
#[derive(Debug)]
pub struct Rechecker {
    shares: Arc<ShareSet>,
    tasks: TaskTracker,
    stop: CancellationToken,
    /// Named and not yet done (queued or hashing).
    pending: Mutex<HashSet<Key>>,
    /// Copies that re-hashed intact: their stamp then, and when.
    passed: Mutex<HashMap<Key, (FileStamp, Instant)>>,
    /// One hash at a time: a rare, disk-heavy job must not starve serving.
    one_at_a_time: tokio::sync::Semaphore,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What re-checking one share found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Intact: register it again.
    Intact,
    /// Changed, vanished or unreadable: stop sharing it, for this reason.
    Drop(String),
}

impl Rechecker {
    pub fn new(shares: Arc<ShareSet>, tasks: TaskTracker, stop: CancellationToken) -> Rechecker {
        Rechecker {
            shares,
            tasks,
            stop,
            pending: Mutex::default(),
            passed: Mutex::default(),
            one_at_a_time: tokio::sync::Semaphore::new(1),
        }
    }

    /// True when `file` is ours and named for re-checking: announcing it
    /// again must wait for the re-check.
    pub fn is_pending(&self, user: &UserId, file: &SharedRef) -> bool {
        lock(&self.pending).contains(&(user.clone(), file.clone()))
    }

    /// Starts re-checking each of `files` that we share completely and that
    /// is not being re-checked already.
    pub fn start(self: &Arc<Self>, session: &SessionClient, files: Vec<SharedRef>) {
        let user = session.user().clone();
        for file in files {
            let Some(entry) = self.shares.find(&user, &file.group, &file.name) else {
                continue;
            };
            let key = (user.clone(), file);
            if !lock(&self.pending).insert(key.clone()) {
                continue;
            }
            tracing::warn!(group = %entry.group, name = %entry.name,
                "a downloader reported our copy corrupt; the tracker no longer lists it; re-hashing it");
            let (me, session) = (self.clone(), session.clone());
            self.tasks.spawn(async move {
                tokio::select! {
                    _ = me.stop.cancelled() => {}
                    _ = me.recheck(&session, &key, entry) => {}
                }
                lock(&me.pending).remove(&key);
            });
        }
    }

    async fn recheck(&self, session: &SessionClient, key: &Key, entry: ShareEntry) {
        let Ok(_turn) = self.one_at_a_time.acquire().await else {
            return;
        };
        // A pass is dated by its hash, not renewed by reports trusting it,
        // so reports arriving every few minutes still re-hash every 10.
        let hashed = !self.recently_passed(key, &entry);
        let verdict = match hashed {
            true => verify(&entry).await,
            false => Verdict::Intact,
        };
        match verdict {
            Verdict::Intact => {
                if let Some(stamp) = hashed.then(|| FileStamp::read(&entry.path).ok()).flatten() {
                    lock(&self.passed).insert(key.clone(), (stamp, Instant::now()));
                }
                let group = entry.group.clone();
                match session.register_file(group, entry.meta.clone()).await {
                    Ok(()) => tracing::info!(group = %entry.group, name = %entry.name,
                        "re-hashed our copy: intact; the tracker lists it again"),
                    Err(e) if e.code == ErrorCode::TrackerUnavailable => {}
                    Err(e) => tracing::warn!(group = %entry.group, name = %entry.name,
                        "re-hashed our copy: intact, but the tracker refused it: {e}"),
                }
            }
            Verdict::Drop(why) => {
                lock(&self.passed).remove(key);
                forget_stale(&self.shares, session, &entry, &why);
            }
        }
    }

    fn recently_passed(&self, key: &Key, entry: &ShareEntry) -> bool {
        let now = FileStamp::read(&entry.path).ok();
        lock(&self.passed)
            .get(key)
            .is_some_and(|(stamp, at)| Some(*stamp) == now && at.elapsed() < TRUST_PASSED)
    }
}

/// Re-hashes `entry`'s file on a blocking thread, cancelled if dropped.
async fn verify(entry: &ShareEntry) -> Verdict {
    if let Some(why) = entry.staleness() {
        return Verdict::Drop(why);
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = CancelOnDrop(cancel.clone());
    let path = entry.path.clone();
    let hashed = tokio::task::spawn_blocking(move || hash_file(&path, &cancel, &mut |_| {})).await;
    match hashed {
        Ok(Ok(h)) => judge(entry, &h),
        Ok(Err(e)) => Verdict::Drop(e.to_string()),
        Err(e) => Verdict::Drop(format!("re-hashing failed: {e}")),
    }
}

fn judge(entry: &ShareEntry, h: &FileHashes) -> Verdict {
    let m = &entry.meta;
    if h.size == m.size && h.sha1 == m.sha1 && h.pieces == m.pieces {
        return Verdict::Intact;
    }
    let bad = h
        .pieces
        .iter()
        .zip(&m.pieces)
        .filter(|(a, b)| a != b)
        .count();
    Verdict::Drop(format!(
        "{} no longer holds what was shared ({bad} of {} pieces differ, though its size and \
         mtime did not change); a downloader reported it corrupt",
        entry.path.display(),
        m.pieces.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::geometry::PIECE_SIZE_BYTES;
    use proto::tracker::FileMeta;

    fn shared(path: &std::path::Path, content: &[u8]) -> ShareEntry {
        std::fs::write(path, content).unwrap();
        let h = hash_file(path, &AtomicBool::new(false), &mut |_| {}).unwrap();
        let stamp = FileStamp::read(path).unwrap();
        ShareEntry {
            group: "g".parse().unwrap(),
            name: "f".parse().unwrap(),
            path: path.to_path_buf(),
            size: stamp.size,
            mtime: stamp.mtime,
            meta: FileMeta {
                name: "f".parse().unwrap(),
                size: h.size,
                sha1: h.sha1,
                piece_size: PIECE_SIZE_BYTES,
                pieces: h.pieces,
            },
        }
    }

    /// Rewrites one byte in place and puts the mtime back, as the
    /// reported holder's disk did.
    fn corrupt_keeping_mtime(path: &std::path::Path, at: u64) {
        use std::io::{Seek, SeekFrom, Write};
        let before = std::fs::metadata(path).unwrap().modified().unwrap();
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(b"X").unwrap();
        f.set_modified(before).unwrap();
    }

    #[tokio::test]
    async fn an_intact_copy_passes_and_a_silently_changed_one_is_dropped() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("f");
        let content = vec![7u8; (PIECE_SIZE_BYTES + 10) as usize];
        let entry = shared(&path, &content);
        assert_eq!(verify(&entry).await, Verdict::Intact);

        corrupt_keeping_mtime(&path, PIECE_SIZE_BYTES + 1);
        assert_eq!(entry.staleness(), None, "size and mtime are unchanged");
        match verify(&entry).await {
            Verdict::Drop(why) => assert!(why.contains("1 of 2 pieces differ"), "{why}"),
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(verify(&entry).await, Verdict::Drop(w) if w.contains("vanished")));
    }

    #[test]
    fn a_recent_pass_is_trusted_only_while_the_stamp_holds() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("f");
        let entry = shared(&path, b"hello");
        let shares = Arc::new(ShareSet::load(t.path().join("shares.json")).unwrap());
        let r = Rechecker::new(shares, TaskTracker::new(), CancellationToken::new());
        let key: Key = (
            "alice".parse().unwrap(),
            SharedRef {
                group: entry.group.clone(),
                name: entry.name.clone(),
            },
        );
        assert!(!r.recently_passed(&key, &entry));
        let stamp = FileStamp::read(&path).unwrap();
        lock(&r.passed).insert(key.clone(), (stamp, Instant::now()));
        assert!(r.recently_passed(&key, &entry));
        std::fs::write(&path, b"hello, changed").unwrap();
        assert!(
            !r.recently_passed(&key, &entry),
            "a new stamp means a new hash"
        );
        let old = Instant::now().checked_sub(TRUST_PASSED + Duration::from_secs(1));
        if let Some(old) = old {
            let stamp = FileStamp::read(&path).unwrap();
            lock(&r.passed).insert(key.clone(), (stamp, old));
            assert!(!r.recently_passed(&key, &entry), "a pass expires");
        }
    }
}
