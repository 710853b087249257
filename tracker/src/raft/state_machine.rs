//! The replicated state machine: [`TrackerState`] behind openraft's
//! `RaftStateMachine`, plus its snapshots.
//!
//! Invariants:
//! - Entries are applied in log order, each through the pure
//!   [`TrackerState::apply`]; a refused command is still "applied" (it
//!   changes nothing on every replica alike) and its refusal is the response.
//! - `last_applied` and `membership` change under the same lock as the
//!   state, so a snapshot is always a consistent cut.
//! - A snapshot is [`Replica`] (state + last applied log id + membership)
//!   in the trackers' binary encoding (`proto::codec`; JSON in stores and
//!   from leaders from before it, still read). Building or installing one
//!   stores it in its file (`snapshot_store`, fsynced) before openraft may
//!   purge the log it covers. The state machine itself is
//!   not persisted per entry: after a restart it is the last snapshot, and
//!   openraft re-applies the committed entries after it.
//! - Readers (the tracker's handlers) lock the same mutex briefly and never
//!   across an `.await`.

use super::background;
use super::snapshot_store::{SnapshotError, SnapshotStore, StoredSnapshot};
use super::{NodeId, Response, TypeConfig};
use crate::state::{Applied, TrackerState};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

/// The state plus what Raft needs to know about it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Replica {
    pub state: TrackerState,
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
}

/// The state machine; clones share the replica and the snapshot store.
#[derive(Clone)]
pub struct StateMachine {
    replica: Arc<Mutex<Replica>>,
    snapshots: SnapshotStore,
}

type StResult<T> = Result<T, StorageError<NodeId>>;

impl StateMachine {
    /// The state machine as of the stored snapshot (empty if none).
    ///
    /// # Errors
    /// The snapshot cannot be read or decoded.
    pub fn open(snapshots: SnapshotStore) -> Result<StateMachine, SnapshotError> {
        let replica = match snapshots.read()? {
            Some(snap) => decode_replica(&snap.data)?,
            None => Replica::default(),
        };
        Ok(StateMachine {
            replica: Arc::new(Mutex::new(replica)),
            snapshots,
        })
    }

    /// Stores a snapshot received from the leader, on a blocking thread: a
    /// large state's file takes a while to write and fsync, and the
    /// runtime's few threads serve everything else meanwhile.
    async fn store(&self, snapshot: StoredSnapshot) -> StResult<()> {
        let signature = snapshot.meta.signature();
        let snapshots = self.snapshots.clone();
        let failed = |e: AnyError| StorageIOError::write_snapshot(Some(signature.clone()), e);
        tokio::task::spawn_blocking(move || snapshots.write(&snapshot))
            .await
            .map_err(|e| failed(AnyError::new(&e)))?
            .map_err(|e| failed(AnyError::new(&e)))?;
        Ok(())
    }

    /// Locks the replica for a read. Never hold the guard across an `.await`.
    pub fn replica(&self) -> MutexGuard<'_, Replica> {
        lock(&self.replica)
    }
}

fn lock(m: &Mutex<Replica>) -> MutexGuard<'_, Replica> {
    // apply() does not panic; if it ever did, the state might be half
    // changed, and serving it would be worse than stopping.
    m.lock()
        .expect("replica lock poisoned by a panic inside apply")
}

fn noted(message: &str) -> Response {
    Response(Ok(Applied {
        message: message.into(),
        session_changed: None,
        results: Vec::new(),
    }))
}

fn decode_replica(data: &[u8]) -> Result<Replica, SnapshotError> {
    proto::codec::decode(data).map_err(|e| SnapshotError::Corrupt {
        path: super::snapshot_store::FILE.into(),
        why: e.to_string(),
    })
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StResult<Snapshot<TypeConfig>> {
        let started = std::time::Instant::now();
        // The consistent cut: the replica cloned under the lock, which every
        // apply and read waits for. The state's maps share their nodes
        // (`imbl`), so this copies a few pointers; deep-copying ordinary
        // maps here took 106-235 ms at 35,000-55,000 files under write load,
        // the whole of the write path's tail, and encoding under the lock
        // took 0.7-1.0 s before that.
        let cut = self.replica().clone();
        let cloned = started.elapsed();
        let snapshot_id = match cut.last_applied {
            Some(id) => format!("{}-{}", id.leader_id, id.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id: cut.last_applied,
            last_membership: cut.membership.clone(),
            snapshot_id,
        };
        // Encoded straight into the file, on a thread of its own at the
        // lowest CPU priority: all three trackers reach the threshold at
        // the same entry, and on a small machine their encoders (a few
        // hundred ms each at 50,000 files) otherwise take the cores the
        // write path needs.
        let snapshots = self.snapshots.clone();
        let file_meta = meta.clone();
        let written = background::run_low_priority("raft-snapshot", move || {
            snapshots.write_with(&file_meta, |w| {
                proto::codec::encode_into(w, &cut).map_err(std::io::Error::other)
            })
        })
        .await;
        let failed = |e: AnyError| StorageIOError::write_snapshot(Some(meta.signature()), e);
        let bytes = written
            .map_err(|e| failed(AnyError::new(&e)))?
            .map_err(|e| failed(AnyError::new(&e)))?;
        tracing::info!(
            index = ?meta.last_log_id.map(|l| l.index),
            bytes,
            clone_ms = cloned.as_millis(),
            total_ms = started.elapsed().as_millis(),
            "snapshot written"
        );
        // openraft 0.9 keeps only the metadata of a snapshot it had built
        // (core/sm/worker.rs, `build_snapshot`) and asks for the data with
        // `get_current_snapshot` when a follower needs it, which reads the
        // file; so the state is not read back into memory here.
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(Vec::new())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> StResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let r = self.replica();
        Ok((r.last_applied, r.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut r = self.replica();
        let mut out = Vec::new();
        for entry in entries {
            r.last_applied = Some(entry.log_id);
            out.push(match entry.payload {
                EntryPayload::Blank => noted("blank"),
                EntryPayload::Normal(cmd) => Response(r.state.apply(cmd)),
                EntryPayload::Membership(m) => {
                    r.membership = StoredMembership::new(Some(entry.log_id), m);
                    noted("membership changed")
                }
            });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StResult<()> {
        let data = snapshot.into_inner();
        let mut replica = decode_replica(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        replica.last_applied = meta.last_log_id;
        replica.membership = meta.last_membership.clone();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.store(stored).await?;
        *self.replica() = replica;
        tracing::info!(index = ?meta.last_log_id.map(|l| l.index), "snapshot installed from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StResult<Option<Snapshot<TypeConfig>>> {
        let snapshots = self.snapshots.clone();
        let stored = tokio::task::spawn_blocking(move || snapshots.read())
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
