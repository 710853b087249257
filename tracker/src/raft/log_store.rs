//! The durable half of a Raft node: log entries, vote, commit hint and the
//! latest snapshot, in one redb database, `DATA/raft.redb`.
//!
//! Tables:
//! - `logs`: log index → the openraft `Entry` (our `Command` inside).
//! - `meta`: `vote`, `committed`, `last_purged` (`LogId`s / `Vote`). Stores
//!   written before also hold the latest snapshot here (read by
//!   `snapshot_store`, which now keeps it in a file of its own).
//!
//! Values are written in the trackers' binary encoding (`proto::codec`)
//! and read in either it or JSON, which stores written before it hold: a
//! tracker upgraded in place reads its old log and writes new entries in
//! binary next to the old ones.
//!
//! Invariants:
//! - `append` reports completion to openraft only after its redb transaction
//!   committed with `Durability::Immediate` (fsync): an entry acknowledged to
//!   the leader, and hence any write acknowledged to a client, is on disk.
//!   redb is copy-on-write with checksummed commits, so a crash at any point
//!   leaves the last committed transaction intact (no torn tail to repair).
//! - The vote is saved with an fsync before openraft acts on it.
//! - `committed` is only a hint (saved without fsync): a stale one makes a
//!   restart re-apply fewer entries at once; the leader re-sends the rest.
//! - `last_purged` is written (fsynced) before the entries it covers are
//!   deleted, and nothing at or below it is ever read again: the reads clamp
//!   to it and the log state takes the larger of it and the last entry. So
//!   the deletion itself runs in the background ([`Purger`]), a few entries
//!   per transaction, and a crash part-way leaves only unreachable entries,
//!   deleted with the next purge. Deleting 5,000 entries in one transaction
//!   held redb's single writer, and so every append, for ~260 ms.
//! - The database file is locked by redb: a second tracker on the same data
//!   directory is refused.

use super::{NodeId, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const DB_FILE: &str = "raft.redb";
const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
/// redb's page cache. Its default (1 GiB) is most of a tracker's memory
/// once the log and a few snapshots have gone through it; the hot part is
/// the tail of the log being replicated, so a small cache is enough:
/// 16 MiB instead of 32 took ~20 MiB off each tracker's peak RSS at
/// 2,000 writes/s with no worse p99 (README, performance).
const CACHE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {path} or make it private (0700): {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is in use: another tracker is using this data directory")]
    InUse { path: PathBuf },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: Box<redb::Error>,
    },
}

/// Opens (creating if needed) the database of `dir`, first making `dir`
/// private ([`crate::data_dir::prepare`]).
///
/// # Errors
/// The directory cannot be created or made private, the database is held
/// by another process, or it is unreadable.
pub fn open(dir: &Path) -> Result<Arc<Database>, OpenError> {
    crate::data_dir::prepare(dir).map_err(|source| OpenError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(DB_FILE);
    let open_error = |path: &Path, source: redb::Error| OpenError::Open {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    // A new database is made under another name and renamed into place
    // once its tables are committed: killed while redb writes its first
    // pages, a tracker would otherwise leave a file it cannot open again.
    let fresh = !path.try_exists().unwrap_or(true);
    let made_at = match fresh {
        true => dir.join(format!("{DB_FILE}.new")),
        false => path.clone(),
    };
    if fresh {
        // A leftover of such a kill: never committed, nothing to keep.
        let _ = std::fs::remove_file(&made_at);
    }
    // Opened here rather than by redb: 0600, and never through a symlink.
    let file =
        crate::data_dir::open_private(&made_at).map_err(|e| open_error(&made_at, e.into()))?;
    let db = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create_file(file)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => OpenError::InUse { path: path.clone() },
            other => open_error(&made_at, other.into()),
        })?;
    // Create both tables once, so readers never meet a missing table.
    let init = || -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(LOGS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(())
    };
    init().map_err(|e| open_error(&made_at, e))?;
    if fresh {
        // redb has the file open; the name is all that changes.
        let placed =
            std::fs::rename(&made_at, &path).and_then(|()| std::fs::File::open(dir)?.sync_all());
        placed.map_err(|e| open_error(&path, e.into()))?;
    }
    Ok(Arc::new(db))
}

/// The Raft log and vote of one node; cheap to clone (it is also the log
/// reader openraft hands to replication tasks).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    purger: Purger,
}

/// Entries deleted per transaction by the [`Purger`]: small enough that an
/// append waiting for redb's writer waits a millisecond or two, not for the
/// whole purge.
const PURGE_CHUNK: usize = 32;

/// Deletes purged entries on a thread of its own, [`PURGE_CHUNK`] per
/// transaction, pausing between transactions so appends get the writer.
/// One thread at a time per store; a purge asked for while it runs raises
/// its target.
#[derive(Clone)]
struct Purger {
    db: Arc<Database>,
    state: Arc<Mutex<PurgeState>>,
}

#[derive(Default)]
struct PurgeState {
    /// Delete every entry with an index up to this one (set before the
    /// thread starts).
    upto: u64,
    running: bool,
}

impl Purger {
    fn new(db: Arc<Database>) -> Purger {
        Purger {
            db,
            state: Arc::default(),
        }
    }

    /// Deletes every entry up to `index` (inclusive), soon.
    fn request(&self, index: u64) {
        let mut st = self.lock();
        st.upto = st.upto.max(index);
        if st.running {
            return;
        }
        st.running = true;
        drop(st);
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("raft-log-purge".into())
            .spawn(move || me.run());
        if let Err(e) = spawned {
            // The entries stay, unreachable, until the next purge.
            tracing::warn!(error = %e, "cannot start the log purge thread");
            self.lock().running = false;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PurgeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        let started = std::time::Instant::now();
        let (mut deleted, mut busy) = (0usize, std::time::Duration::ZERO);
        loop {
            let upto = self.lock().upto;
            let t = std::time::Instant::now();
            let chunk = self.delete_chunk(upto);
            busy += t.elapsed();
            match chunk {
                Ok(n) if n > 0 => {
                    deleted += n;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Ok(_) => {
                    let mut st = self.lock();
                    // Done, unless a purge raised the target meanwhile.
                    if st.upto == upto {
                        st.running = false;
                        tracing::debug!(
                            upto,
                            deleted,
                            busy_ms = busy.as_millis(),
                            total_ms = started.elapsed().as_millis(),
                            "purged log entries deleted"
                        );
                        return;
                    }
                }
                Err(e) => {
                    // Unreachable entries take space, nothing else; the
                    // next purge tries again.
                    tracing::warn!(error = %e, "deleting purged log entries failed");
                    self.lock().running = false;
                    return;
                }
            }
        }
    }

    /// Deletes up to [`PURGE_CHUNK`] entries at or below `upto`; how many
    /// (0 when none was left).
    fn delete_chunk(&self, upto: u64) -> Result<usize, redb::Error> {
        let mut txn = self.db.begin_write()?;
        // Losing this commit in a crash loses nothing: the entries are
        // unreachable either way. The next append's commit makes it durable.
        txn.set_durability(Durability::None);
        let deleted = {
            let mut table = txn.open_table(LOGS)?;
            let keys: Vec<u64> = table
                .range::<u64>(..=upto)?
                .take(PURGE_CHUNK)
                .map(|item| item.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            for k in &keys {
                table.remove(*k)?;
            }
            keys.len()
        };
        txn.commit()?;
        Ok(deleted)
    }
}

type StResult<T> = Result<T, StorageError<NodeId>>;

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, redb::Error> {
    proto::codec::encode(v).map_err(|e| redb::Error::Corrupted(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, redb::Error> {
    proto::codec::decode(bytes).map_err(|e| redb::Error::Corrupted(e.to_string()))
}

/// Reads one `meta` key.
pub fn read_meta<T: DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, redb::Error> {
    let txn = db.begin_read()?;
    let table = txn.open_table(META)?;
    let value = table.get(key)?;
    value.map(|v| decode(v.value())).transpose()
}

/// Writes one `meta` key in its own transaction; fsynced when `durable`.
pub fn write_meta<T: Serialize>(
    db: &Database,
    key: &str,
    value: &T,
    durable: bool,
) -> Result<(), redb::Error> {
    let bytes = encode(value)?;
    let mut txn = db.begin_write()?;
    if !durable {
        txn.set_durability(Durability::None);
    }
    {
        let mut table = txn.open_table(META)?;
        table.insert(key, bytes.as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// One `meta` key's bytes as stored.
pub fn read_meta_raw(db: &Database, key: &str) -> Result<Option<Vec<u8>>, redb::Error> {
    let txn = db.begin_read()?;
    let table = txn.open_table(META)?;
    let value = table.get(key)?;
    Ok(value.map(|v| v.value().to_vec()))
}

/// Writes one `meta` key's bytes as given (fsynced).
#[cfg(test)]
pub fn write_meta_raw(db: &Database, key: &str, bytes: &[u8]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(META)?.insert(key, bytes)?;
    txn.commit()?;
    Ok(())
}

/// Removes `keys` from `meta` in one transaction, if any is there.
pub fn remove_meta(db: &Database, keys: &[&str]) -> Result<(), redb::Error> {
    {
        let txn = db.begin_read()?;
        let table = txn.open_table(META)?;
        let mut present = false;
        for k in keys {
            present |= table.get(*k)?.is_some();
        }
        if !present {
            return Ok(());
        }
    }
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(META)?;
        for k in keys {
            table.remove(*k)?;
        }
    }
    txn.commit()?;
    Ok(())
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> LogStore {
        let purger = Purger::new(Arc::clone(&db));
        LogStore { db, purger }
    }

    /// Index of the last entry the log holds (purged ones included).
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn last_index(&self) -> Result<Option<u64>, redb::Error> {
        Ok(self.log_state()?.last_log_id.map(|l| l.index))
    }

    /// The last purged log id, and the last log id: the last entry's, or
    /// the last purged one when no entry above it is left.
    fn log_state(&self) -> Result<LogState<TypeConfig>, redb::Error> {
        let last_purged_log_id: Option<LogId<NodeId>> = read_meta(&self.db, LAST_PURGED)?;
        let last_log_id = self.last_entry_id()?.max(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    /// True when the log holds nothing: no vote, no entry, none purged.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn is_empty(&self) -> Result<bool, redb::Error> {
        let vote: Option<Vote<NodeId>> = read_meta(&self.db, VOTE)?;
        let purged: Option<LogId<NodeId>> = read_meta(&self.db, LAST_PURGED)?;
        let txn = self.db.begin_read()?;
        let empty = txn.open_table(LOGS)?.is_empty()?;
        Ok(vote.is_none() && purged.is_none() && empty)
    }

    /// The entries in `range` above the last purged one (entries at or
    /// below it may still be stored, waiting for the [`Purger`]).
    fn entries(
        &self,
        range: (Bound<u64>, Bound<u64>),
    ) -> Result<Vec<Entry<TypeConfig>>, redb::Error> {
        let txn = self.db.begin_read()?;
        let purged = match txn.open_table(META)?.get(LAST_PURGED)? {
            Some(v) => Some(decode::<LogId<NodeId>>(v.value())?.index),
            None => None,
        };
        let start = match (range.0, purged) {
            (Bound::Unbounded, Some(p)) => Bound::Excluded(p),
            (Bound::Included(s), Some(p)) if s <= p => Bound::Excluded(p),
            (Bound::Excluded(s), Some(p)) if s < p => Bound::Excluded(p),
            (start, _) => start,
        };
        let table = txn.open_table(LOGS)?;
        let mut out = Vec::new();
        for item in table.range::<u64>((start, range.1))? {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn last_entry_id(&self) -> Result<Option<LogId<NodeId>>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOGS)?;
        let last = table.last()?;
        match last {
            Some((_, v)) => {
                let e: Entry<TypeConfig> = decode(v.value())?;
                Ok(Some(e.log_id))
            }
            None => Ok(None),
        }
    }

    /// Removes every entry from `index` on, in one transaction (a
    /// truncation is a few conflicting entries at the tail).
    fn remove_from(&self, index: u64) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(LOGS)?;
            let keys: Vec<u64> = table
                .range::<u64>(index..)?
                .map(|item| item.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            for k in keys {
                table.remove(k)?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StResult<Vec<Entry<TypeConfig>>> {
        self.entries(bounds(&range))
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StResult<LogState<TypeConfig>> {
        self.log_state()
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StResult<()> {
        write_meta(&self.db, VOTE, vote, true).map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> StResult<Option<Vote<NodeId>>> {
        read_meta(&self.db, VOTE).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StResult<()> {
        write_meta(&self.db, COMMITTED, &committed, false)
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> StResult<Option<LogId<NodeId>>> {
        let c: Option<Option<LogId<NodeId>>> =
            read_meta(&self.db, COMMITTED).map_err(|e| StorageIOError::read(&e))?;
        Ok(c.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let write = || -> Result<(), redb::Error> {
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(LOGS)?;
                for entry in entries {
                    let bytes = encode(&entry)?;
                    table.insert(entry.log_id.index, bytes.as_slice())?;
                }
            }
            // Durability::Immediate (the default): fsynced before returning.
            txn.commit()?;
            Ok(())
        };
        match write() {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StResult<()> {
        self.remove_from(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    /// Records `log_id` as purged (fsynced), which makes the entries up to
    /// it unreachable at once; the [`Purger`] deletes them afterwards.
    async fn purge(&mut self, log_id: LogId<NodeId>) -> StResult<()> {
        write_meta(&self.db, LAST_PURGED, &log_id, true)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.purger.request(log_id.index);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::snapshot_store::SnapshotStore;
    use crate::raft::state_machine::StateMachine;
    use openraft::testing::{StoreBuilder, Suite};

    /// A fresh redb store in a temp dir; the dir lives as long as the guard.
    struct RedbBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbBuilder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
            let dir = tempfile::tempdir().map_err(|e| StorageIOError::read(&e))?;
            let db = open(dir.path()).map_err(|e| StorageIOError::read(&e))?;
            let snapshots = SnapshotStore::new(dir.path(), Arc::clone(&db));
            let sm = StateMachine::open(snapshots).map_err(|e| StorageIOError::read(&e))?;
            Ok((dir, LogStore::new(db), sm))
        }
    }

    /// What a tracker upgraded in place finds: a log, vote and snapshot
    /// written in JSON. It reads them, and its new entries (binary) sit
    /// next to the old ones.
    #[tokio::test]
    async fn a_store_written_in_json_is_read_and_extended_in_binary() {
        use crate::raft::state_machine::Replica;
        use crate::state::Command;
        use openraft::{CommittedLeaderId, EntryPayload};
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path()).unwrap();
        let entry = |index: u64, user: &str| Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), index),
            payload: EntryPayload::Normal(Command::CreateUser {
                user: user.parse().unwrap(),
                password_hash: "h".into(),
            }),
        };
        let vote = Vote::new_committed(2, 1);
        let replica = Replica {
            last_applied: Some(LogId::new(CommittedLeaderId::new(2, 1), 1)),
            ..Replica::default()
        };
        {
            let txn = db.begin_write().unwrap();
            {
                let mut logs = txn.open_table(LOGS).unwrap();
                for (i, user) in [(2, "old1"), (3, "old2")] {
                    let json = serde_json::to_vec(&entry(i, user)).unwrap();
                    logs.insert(i, json.as_slice()).unwrap();
                }
                let mut meta = txn.open_table(META).unwrap();
                meta.insert(VOTE, serde_json::to_vec(&vote).unwrap().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        // The snapshot as such a store keeps it: in redb, metadata and state
        // both JSON.
        let meta = openraft::SnapshotMeta::<NodeId, openraft::BasicNode> {
            last_log_id: replica.last_applied,
            last_membership: Default::default(),
            snapshot_id: "2-1-1".into(),
        };
        write_meta_raw(&db, "snapshot_meta", &serde_json::to_vec(&meta).unwrap()).unwrap();
        write_meta_raw(&db, "snapshot_data", &serde_json::to_vec(&replica).unwrap()).unwrap();
        let snapshots = SnapshotStore::new(dir.path(), Arc::clone(&db));
        let sm = StateMachine::open(snapshots).expect("a JSON snapshot is read");
        assert_eq!(sm.replica().last_applied, replica.last_applied);
        let mut store = LogStore::new(Arc::clone(&db));
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        // A new entry, written as the tracker writes them now.
        {
            let txn = db.begin_write().unwrap();
            let bytes = encode(&entry(4, "new")).unwrap();
            assert!(proto::codec::is_binary(&bytes));
            txn.open_table(LOGS)
                .unwrap()
                .insert(4, bytes.as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let read = store.try_get_log_entries(2..5).await.unwrap();
        let indexes: Vec<u64> = read.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, [2, 3, 4]);
        assert_eq!(read[2].payload, entry(4, "new").payload);
        assert_eq!(read[0].payload, entry(2, "old1").payload);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(4));
    }

    #[test]
    fn a_new_database_appears_only_whole_and_a_half_made_one_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        // What a kill while redb wrote its first pages leaves: garbage
        // under the temporary name, nothing under the real one.
        let half = dir.path().join(format!("{DB_FILE}.new"));
        std::fs::write(&half, b"half a header").unwrap();
        let db = open(dir.path()).unwrap();
        write_meta(&db, "k", &7u32, true).unwrap();
        drop(db);
        assert!(!half.exists(), "renamed into place");
        let db = open(dir.path()).unwrap();
        assert_eq!(read_meta::<u32>(&db, "k").unwrap(), Some(7));
        drop(db);
        // An existing database is opened where it is, never replaced.
        std::fs::write(&half, b"stray").unwrap();
        let db = open(dir.path()).unwrap();
        assert_eq!(read_meta::<u32>(&db, "k").unwrap(), Some(7));
    }

    fn stored_indexes(db: &Database) -> Vec<u64> {
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(LOGS).unwrap();
        let keys = table.iter().unwrap().map(|i| i.unwrap().0.value());
        keys.collect()
    }

    /// A purge answers at once; the entries it covers are never read again
    /// and are deleted in the background, leftovers of a crash included.
    #[tokio::test]
    async fn purged_entries_vanish_at_once_and_are_deleted_in_the_background() {
        use crate::state::Command;
        use openraft::{CommittedLeaderId, EntryPayload};
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path()).unwrap();
        let id = |index: u64| LogId::new(CommittedLeaderId::new(1, 1), index);
        let put = |range: std::ops::Range<u64>| {
            let txn = db.begin_write().unwrap();
            {
                let mut logs = txn.open_table(LOGS).unwrap();
                for i in range {
                    let e = Entry::<TypeConfig> {
                        log_id: id(i),
                        payload: EntryPayload::Normal(Command::SetTicketSecret {
                            secret: format!("{i}"),
                        }),
                    };
                    logs.insert(i, encode(&e).unwrap().as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        };
        put(1..301);
        let mut store = LogStore::new(Arc::clone(&db));
        store.purge(id(250)).await.unwrap();
        let seen = store.try_get_log_entries(0..1000).await.unwrap();
        assert_eq!(seen.first().map(|e| e.log_id.index), Some(251));
        assert_eq!(seen.len(), 50);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(id(250)));
        assert_eq!(state.last_log_id, Some(id(300)));
        let deleted = || stored_indexes(&db).first() == Some(&251);
        for _ in 0..500 {
            if deleted() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(stored_indexes(&db), (251..301).collect::<Vec<_>>());

        // Purged beyond every entry (a snapshot installed from the leader),
        // then "crashed" before the deletion: the log is empty up to the
        // purge, and the next purge deletes the leftovers too.
        put(1..11);
        store.purge(id(400)).await.unwrap();
        assert!(store.try_get_log_entries(0..1000).await.unwrap().is_empty());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(id(400)));
        assert_eq!(store.last_index().unwrap(), Some(400));
        for _ in 0..500 {
            if stored_indexes(&db).is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(stored_indexes(&db).is_empty());
    }

    /// openraft's own conformance suite for log storage and state machines:
    /// vote persistence, append/truncate/purge, log state, snapshots.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(RedbBuilder).expect("the redb store meets openraft's storage contract");
    }
}
