//! Durability of [`TrackerState`]: a write-ahead log plus snapshots, and the
//! single writer that commits changes in groups.
//!
//! Files in the data directory:
//! - `wal.log`: records `u32` BE payload length, 20-byte SHA-1 of the payload,
//!   payload = JSON `{"index": n, "cmd": Command}`. Self-delimiting and
//!   checksummed, so a record torn by a crash is recognised and dropped.
//! - `snapshot.json`: `{"last_index": n, "state": TrackerState}`, written
//!   tmp + fsync + rename + fsync(dir), after which the log starts afresh.
//!
//! Invariants:
//! - A change is answered only after its record is fsynced: `kill -9` at
//!   any moment loses nothing acknowledged.
//! - Only commands that `apply` accepted are logged, so a replay never meets
//!   a refusal.
//! - Record indexes increase by one; the snapshot names the last index it
//!   contains, and recovery skips records up to it. A crash between writing
//!   a snapshot and emptying the log therefore never applies a command twice.
//!
//! Group commit: every write goes through one writer thread (fsync blocks, so
//! it is a plain thread, not a tokio task). It drains whatever is queued,
//! applies it all to the in-memory state, appends the accepted records with
//! one `write` and one fsync, and only then answers every caller. Readers
//! may see a change a few milliseconds before it is durable; no one is ever
//! *told* it succeeded before it is.

use crate::state::{Applied, Command, TrackerState};
use proto::{ErrorCode, WireError};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, oneshot};

pub const WAL_FILE: &str = "wal.log";
pub const SNAPSHOT_FILE: &str = "snapshot.json";
const SNAPSHOT_TMP_FILE: &str = "snapshot.json.tmp";
/// Held with an exclusive lock while a tracker uses the directory: two
/// writers interleaving records would corrupt the log.
pub const LOCK_FILE: &str = "tracker.lock";

/// Records in the log before a snapshot replaces it.
pub const SNAPSHOT_EVERY_RECORDS: u64 = 10_000;

/// Length prefix plus SHA-1.
const RECORD_HEADER_BYTES: usize = 4 + 20;
/// No record can be larger than the largest request that produced it (plus
/// the token and envelope); a bigger length prefix is garbage, refused before
/// allocating.
const MAX_RECORD_BYTES: u32 = proto::frame::MAX_TRACKER_FRAME_BYTES + 64 * 1024;
/// Most commands committed with one fsync.
const MAX_BATCH: usize = 512;
/// Writes waiting for the writer; callers wait beyond that (back-pressure).
const QUEUE_DEPTH: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("{path} is locked: another tracker is using this data directory")]
    InUse { path: PathBuf },
    #[error("cannot read snapshot {path}: {source}")]
    ReadSnapshot { path: PathBuf, source: io::Error },
    #[error("snapshot {path} is corrupt: {source}")]
    DecodeSnapshot {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot open write-ahead log {path}: {source}")]
    OpenLog { path: PathBuf, source: io::Error },
    #[error("cannot read write-ahead log {path}: {source}")]
    ReadLog { path: PathBuf, source: io::Error },
    #[error("cannot write to write-ahead log {path}: {source}")]
    WriteLog { path: PathBuf, source: io::Error },
    #[error("cannot write snapshot {path}: {source}")]
    WriteSnapshot { path: PathBuf, source: io::Error },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
}

#[derive(Serialize)]
struct RecordOut<'a> {
    index: u64,
    cmd: &'a Command,
}

#[derive(Deserialize)]
struct RecordIn {
    index: u64,
    cmd: Command,
}

#[derive(Serialize)]
struct SnapshotOut<'a> {
    last_index: u64,
    state: &'a TrackerState,
}

#[derive(Deserialize)]
struct SnapshotIn {
    last_index: u64,
    state: TrackerState,
}

/// The files of one tracker's data directory. Synchronous; see [`spawn`] for
/// the async front.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    wal: File,
    /// Index of the last record written (or contained in the snapshot).
    last_index: u64,
    records_in_wal: u64,
    snapshot_every: u64,
    /// Holds the directory's exclusive lock until the store is dropped.
    _lock: File,
}

/// What recovery found, for the startup log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    pub snapshot_index: u64,
    pub replayed: u64,
    /// Bytes of a torn or corrupt tail that were cut off.
    pub discarded_bytes: u64,
}

impl Store {
    /// Opens (creating if needed) the data directory and recovers the state:
    /// snapshot, then every complete record of the log after it.
    ///
    /// # Errors
    /// The directory cannot be created or read, or the snapshot is corrupt
    /// (never silently: it holds acknowledged writes).
    pub fn open(dir: &Path) -> Result<(Store, TrackerState, Recovery), StoreError> {
        Self::open_with(dir, SNAPSHOT_EVERY_RECORDS)
    }

    /// [`Store::open`] with a custom snapshot period (tests).
    pub fn open_with(
        dir: &Path,
        snapshot_every: u64,
    ) -> Result<(Store, TrackerState, Recovery), StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let lock = lock_dir(dir)?;
        let (snapshot_index, mut state) = read_snapshot(dir)?;

        let wal_path = dir.join(WAL_FILE);
        let existed = wal_path.exists();
        let mut wal = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&wal_path)
            .map_err(|source| StoreError::OpenLog {
                path: wal_path.clone(),
                source,
            })?;
        if !existed {
            // Make the new file's directory entry durable too.
            sync_dir(dir).map_err(|source| StoreError::OpenLog {
                path: wal_path.clone(),
                source,
            })?;
        }

        let read_err = |source| StoreError::ReadLog {
            path: wal_path.clone(),
            source,
        };
        let file_len = wal.metadata().map_err(read_err)?.len();
        let mut last_index = snapshot_index;
        let mut replayed = 0;
        let mut records_in_wal = 0;
        let mut good_len = 0u64;
        {
            let mut reader = BufReader::new(&mut wal);
            while let Some((payload, record_len)) = read_record(&mut reader).map_err(read_err)? {
                let record: RecordIn = match serde_json::from_slice(&payload) {
                    Ok(r) => r,
                    Err(e) => {
                        // The checksum matched, so this is not a torn write
                        // but a record this build cannot read. Stop here
                        // rather than skip a change and diverge.
                        tracing::warn!(offset = good_len, error = %e, "undecodable log record; ignoring the rest of the log");
                        break;
                    }
                };
                good_len += record_len;
                records_in_wal += 1;
                if record.index <= snapshot_index {
                    continue; // already in the snapshot
                }
                if record.index != last_index + 1 {
                    tracing::warn!(
                        expected = last_index + 1,
                        found = record.index,
                        "gap in log indexes"
                    );
                }
                if let Err(e) = state.apply(record.cmd) {
                    // Only accepted commands are logged, so this means a bug
                    // or a hand-edited log; keep going with what is sound.
                    tracing::warn!(index = record.index, error = %e, "logged command refused on replay");
                }
                last_index = record.index;
                replayed += 1;
            }
        }
        let discarded_bytes = file_len - good_len;
        if discarded_bytes > 0 {
            tracing::warn!(
                path = %wal_path.display(),
                discarded_bytes,
                "discarding a torn or corrupt tail of the write-ahead log"
            );
            wal.set_len(good_len).map_err(read_err)?;
            wal.sync_all().map_err(read_err)?;
        }
        wal.seek(SeekFrom::Start(good_len)).map_err(read_err)?;

        let store = Store {
            dir: dir.to_owned(),
            wal,
            last_index,
            records_in_wal,
            snapshot_every: snapshot_every.max(1),
            _lock: lock,
        };
        let recovery = Recovery {
            snapshot_index,
            replayed,
            discarded_bytes,
        };
        Ok((store, state, recovery))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `cmds` as consecutive records with one write and one fsync.
    ///
    /// # Errors
    /// The write or the fsync failed; what reached the disk is unknown (a
    /// later recovery keeps a complete prefix).
    pub fn append(&mut self, cmds: &[Command]) -> Result<(), StoreError> {
        if cmds.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut index = self.last_index;
        for cmd in cmds {
            index += 1;
            let payload = serde_json::to_vec(&RecordOut { index, cmd }).map_err(|source| {
                StoreError::Encode {
                    what: "log record",
                    source,
                }
            })?;
            encode_record(&mut buf, &payload);
        }
        let write_err = |source| StoreError::WriteLog {
            path: self.dir.join(WAL_FILE),
            source,
        };
        self.wal.write_all(&buf).map_err(write_err)?;
        // fdatasync also persists the new length, which is all an append needs.
        self.wal.sync_data().map_err(write_err)?;
        self.last_index = index;
        self.records_in_wal += cmds.len() as u64;
        Ok(())
    }

    /// True once the log has grown enough to be replaced by a snapshot.
    pub fn wants_snapshot(&self) -> bool {
        self.records_in_wal >= self.snapshot_every
    }

    /// Writes `state` (which must include every appended record) as the new
    /// snapshot, then empties the log.
    ///
    /// Order: tmp file, fsync, rename, fsync dir, truncate log, fsync log. A
    /// crash after the rename leaves records the snapshot already holds;
    /// recovery skips them by index.
    ///
    /// # Errors
    /// Any step failed; the previous snapshot and the log are still valid.
    pub fn snapshot(&mut self, state: &TrackerState) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(&SnapshotOut {
            last_index: self.last_index,
            state,
        })
        .map_err(|source| StoreError::Encode {
            what: "snapshot",
            source,
        })?;
        let path = self.dir.join(SNAPSHOT_FILE);
        let tmp = self.dir.join(SNAPSHOT_TMP_FILE);
        let snap_err = |source| StoreError::WriteSnapshot {
            path: path.clone(),
            source,
        };
        {
            let mut f = File::create(&tmp).map_err(snap_err)?;
            f.write_all(&bytes).map_err(snap_err)?;
            f.sync_all().map_err(snap_err)?;
        }
        fs::rename(&tmp, &path).map_err(snap_err)?;
        sync_dir(&self.dir).map_err(snap_err)?;

        let wal_err = |source| StoreError::WriteLog {
            path: self.dir.join(WAL_FILE),
            source,
        };
        self.wal.set_len(0).map_err(wal_err)?;
        self.wal.seek(SeekFrom::Start(0)).map_err(wal_err)?;
        self.wal.sync_all().map_err(wal_err)?;
        self.records_in_wal = 0;
        Ok(())
    }
}

fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| StoreError::Lock {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::InUse { path }),
        Err(fs::TryLockError::Error(source)) => Err(StoreError::Lock { path, source }),
    }
}

fn read_snapshot(dir: &Path) -> Result<(u64, TrackerState), StoreError> {
    let path = dir.join(SNAPSHOT_FILE);
    // A leftover tmp file is a snapshot that never got renamed: not valid.
    let _ = fs::remove_file(dir.join(SNAPSHOT_TMP_FILE));
    match fs::read(&path) {
        Ok(bytes) => {
            let snap: SnapshotIn = serde_json::from_slice(&bytes)
                .map_err(|source| StoreError::DecodeSnapshot { path, source })?;
            Ok((snap.last_index, snap.state))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((0, TrackerState::default())),
        Err(source) => Err(StoreError::ReadSnapshot { path, source }),
    }
}

fn encode_record(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&Sha1::digest(payload));
    buf.extend_from_slice(payload);
}

/// Reads one record: `Ok(Some((payload, bytes consumed)))`, or `Ok(None)` at
/// the end of the log *or* at a torn/corrupt record (both end the replay).
fn read_record(r: &mut impl Read) -> io::Result<Option<(Vec<u8>, u64)>> {
    let mut header = [0u8; RECORD_HEADER_BYTES];
    if !read_full(r, &mut header)? {
        return Ok(None);
    }
    let (len_bytes, sum) = header.split_at(4);
    let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    if len > MAX_RECORD_BYTES {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    if !read_full(r, &mut payload)? {
        return Ok(None);
    }
    if Sha1::digest(&payload).as_slice() != sum {
        return Ok(None);
    }
    let consumed = (RECORD_HEADER_BYTES + payload.len()) as u64;
    Ok(Some((payload, consumed)))
}

/// Fills `buf`, or returns false if the stream ends first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

struct Pending {
    cmd: Command,
    reply: oneshot::Sender<Result<Applied, WireError>>,
}

/// A cheap handle on the state: reads lock it briefly, writes go through
/// the writer thread.
#[derive(Clone)]
pub struct StoreHandle {
    state: Arc<Mutex<TrackerState>>,
    tx: mpsc::Sender<Pending>,
}

/// The writer thread; [`StoreWriter::join`] waits until every handle is
/// dropped and the last batch is on disk.
pub struct StoreWriter {
    thread: std::thread::JoinHandle<()>,
}

/// Starts the writer thread over a recovered store and state.
///
/// # Errors
/// The OS refused to start a thread.
pub fn spawn(store: Store, state: TrackerState) -> io::Result<(StoreHandle, StoreWriter)> {
    let state = Arc::new(Mutex::new(state));
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let writer_state = Arc::clone(&state);
    let thread = std::thread::Builder::new()
        .name("tracker-store".into())
        .spawn(move || write_loop(store, writer_state, rx))?;
    Ok((StoreHandle { state, tx }, StoreWriter { thread }))
}

impl StoreHandle {
    /// Applies `cmd` and returns once it is durable.
    ///
    /// # Errors
    /// The command's refusal, or `io` if the store has failed or stopped.
    pub async fn submit(&self, cmd: Command) -> Result<Applied, WireError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || WireError::new(ErrorCode::Io, "the tracker's store has stopped");
        self.tx
            .send(Pending { cmd, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Locks the state for a read. Never hold the guard across an `.await`.
    pub fn state(&self) -> MutexGuard<'_, TrackerState> {
        lock(&self.state)
    }
}

impl StoreWriter {
    /// Waits for the writer to finish its last batch (all handles dropped).
    pub async fn join(self) {
        let res = tokio::task::spawn_blocking(move || self.thread.join()).await;
        if !matches!(res, Ok(Ok(()))) {
            tracing::error!("the store writer thread panicked");
        }
    }
}

fn lock(state: &Mutex<TrackerState>) -> MutexGuard<'_, TrackerState> {
    // apply() does not panic; if it ever did, the state might be half
    // changed, and serving it would be worse than stopping.
    state
        .lock()
        .expect("tracker state lock poisoned by a panic inside apply")
}

fn write_loop(mut store: Store, state: Arc<Mutex<TrackerState>>, mut rx: mpsc::Receiver<Pending>) {
    // Once a write or fsync failed, memory and disk may disagree: refuse
    // every further write rather than acknowledge what may not be on disk.
    let mut failed = false;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        if failed {
            for p in batch {
                let _ = p.reply.send(Err(store_failed()));
            }
            continue;
        }

        let mut accepted = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        {
            let mut st = lock(&state);
            for p in batch {
                let result = st.apply(p.cmd.clone());
                if result.is_ok() {
                    accepted.push(p.cmd);
                }
                answers.push((p.reply, result));
            }
        }

        if let Err(e) = store.append(&accepted) {
            tracing::error!(error = %e, "write-ahead log failed; refusing further writes");
            failed = true;
            for (reply, result) in answers {
                let _ = reply.send(result.and(Err(store_failed())));
            }
            continue;
        }
        // Durable: now (and only now) the callers may hear about it.
        for (reply, result) in answers {
            let _ = reply.send(result);
        }

        if store.wants_snapshot() {
            let st = lock(&state);
            match store.snapshot(&st) {
                Ok(()) => tracing::info!(index = store.last_index, "snapshot written"),
                // The log is still complete; try again after the next batch.
                Err(e) => tracing::warn!(error = %e, "snapshot failed"),
            }
        }
    }
}

fn store_failed() -> WireError {
    WireError::new(
        ErrorCode::Io,
        "the tracker could not save this change to disk; see its log",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::tracker::SessionToken;
    use proto::UserId;

    fn create_user(name: &str) -> Command {
        Command::CreateUser {
            user: name.parse().unwrap(),
            password_hash: format!("hash-{name}"),
        }
    }

    fn users(state: &TrackerState, names: &[&str]) -> Vec<bool> {
        names
            .iter()
            .map(|n| state.user_exists(&n.parse::<UserId>().unwrap()))
            .collect()
    }

    /// Applies and appends, as the writer does.
    fn commit(store: &mut Store, state: &mut TrackerState, cmds: Vec<Command>) {
        for c in &cmds {
            state.apply(c.clone()).unwrap();
        }
        store.append(&cmds).unwrap();
    }

    #[test]
    fn reopening_recovers_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut state, rec) = Store::open(dir.path()).unwrap();
        assert_eq!(
            rec,
            Recovery {
                snapshot_index: 0,
                replayed: 0,
                discarded_bytes: 0
            }
        );
        commit(
            &mut store,
            &mut state,
            vec![create_user("a"), create_user("b")],
        );
        commit(
            &mut store,
            &mut state,
            vec![Command::StartSession {
                user: "a".parse().unwrap(),
                token: SessionToken("t".into()),
            }],
        );
        drop(store);
        let (_store, recovered, rec) = Store::open(dir.path()).unwrap();
        assert_eq!(rec.replayed, 3);
        assert_eq!(recovered, state);
    }

    #[test]
    fn a_torn_tail_is_discarded_and_appending_continues() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut state, _) = Store::open(dir.path()).unwrap();
        commit(&mut store, &mut state, vec![create_user("a")]);
        commit(&mut store, &mut state, vec![create_user("b")]);
        drop(store);

        let wal = dir.path().join(WAL_FILE);
        let full = fs::read(&wal).unwrap();
        // Every cut inside the second record loses exactly that record.
        let first_len = {
            let mut r = &full[..];
            read_record(&mut r).unwrap().unwrap().1 as usize
        };
        for cut in [
            first_len + 1,
            first_len + RECORD_HEADER_BYTES,
            full.len() - 1,
        ] {
            fs::write(&wal, &full[..cut]).unwrap();
            let (_s, st, rec) = Store::open(dir.path()).unwrap();
            assert_eq!(users(&st, &["a", "b"]), [true, false], "cut at {cut}");
            assert_eq!(rec.discarded_bytes, (cut - first_len) as u64);
            assert_eq!(fs::metadata(&wal).unwrap().len(), first_len as u64);
        }

        // After the repair, new records follow the good prefix.
        let (mut store, mut state, _) = Store::open(dir.path()).unwrap();
        commit(&mut store, &mut state, vec![create_user("c")]);
        drop(store);
        let (_s, st, _) = Store::open(dir.path()).unwrap();
        assert_eq!(users(&st, &["a", "b", "c"]), [true, false, true]);
    }

    #[test]
    fn a_corrupt_checksum_or_garbage_length_ends_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut state, _) = Store::open(dir.path()).unwrap();
        commit(
            &mut store,
            &mut state,
            vec![create_user("a"), create_user("b")],
        );
        drop(store);
        let wal = dir.path().join(WAL_FILE);
        let mut bytes = fs::read(&wal).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0xFF; // flip a byte in the second record's payload
        fs::write(&wal, &bytes).unwrap();
        let (s, st, rec) = Store::open(dir.path()).unwrap();
        drop(s);
        assert_eq!(users(&st, &["a", "b"]), [true, false]);
        assert!(rec.discarded_bytes > 0);

        let mut garbage = fs::read(&wal).unwrap();
        garbage.extend_from_slice(&[0xFF; 64]);
        fs::write(&wal, &garbage).unwrap();
        let (_s, st, rec) = Store::open(dir.path()).unwrap();
        assert_eq!(users(&st, &["a", "b"]), [true, false]);
        assert_eq!(rec.discarded_bytes, 64);
    }

    #[test]
    fn snapshot_then_log_recovers_both() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut state, _) = Store::open_with(dir.path(), 2).unwrap();
        commit(
            &mut store,
            &mut state,
            vec![create_user("a"), create_user("b")],
        );
        assert!(store.wants_snapshot());
        store.snapshot(&state).unwrap();
        assert_eq!(fs::metadata(dir.path().join(WAL_FILE)).unwrap().len(), 0);
        commit(&mut store, &mut state, vec![create_user("c")]);
        drop(store);
        let (_s, st, rec) = Store::open(dir.path()).unwrap();
        assert_eq!(rec.snapshot_index, 2);
        assert_eq!(rec.replayed, 1);
        assert_eq!(st, state);
    }

    #[test]
    fn records_already_in_the_snapshot_are_not_replayed() {
        // Simulates a crash after the snapshot's rename but before the log
        // was emptied: the log still holds records 1 and 2.
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut state, _) = Store::open(dir.path()).unwrap();
        commit(
            &mut store,
            &mut state,
            vec![create_user("a"), create_user("b")],
        );
        let wal_before = fs::read(dir.path().join(WAL_FILE)).unwrap();
        store.snapshot(&state).unwrap();
        drop(store);
        fs::write(dir.path().join(WAL_FILE), &wal_before).unwrap();
        let (mut store, mut st, rec) = Store::open(dir.path()).unwrap();
        assert_eq!(rec.replayed, 0);
        assert_eq!(st, state);
        // And numbering continues after the snapshot.
        commit(&mut store, &mut st, vec![create_user("c")]);
        drop(store);
        let (_s, st2, rec) = Store::open(dir.path()).unwrap();
        assert_eq!(rec.replayed, 1);
        assert_eq!(st2, st);
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _, _) = Store::open(dir.path()).unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::InUse { .. })
        ));
        drop(first);
        assert!(Store::open(dir.path()).is_ok());
    }

    #[tokio::test]
    async fn the_writer_commits_concurrent_writes_and_refuses_without_logging() {
        let dir = tempfile::tempdir().unwrap();
        let (store, state, _) = Store::open(dir.path()).unwrap();
        let (handle, writer) = spawn(store, state).unwrap();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let h = handle.clone();
            tasks.push(tokio::spawn(async move {
                h.submit(create_user(&format!("u{i}"))).await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        let refused = handle.submit(create_user("u0")).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::UserExists);
        let expected = handle.state().clone();
        drop(handle);
        writer.join().await;
        let (_s, st, rec) = Store::open(dir.path()).unwrap();
        assert_eq!(rec.replayed, 50);
        assert_eq!(st, expected);
    }
}
