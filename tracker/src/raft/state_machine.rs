//! The replicated state machine: [`TrackerState`] behind openraft's
//! `RaftStateMachine`, plus its snapshots.
//!
//! Invariants:
//! - Entries are applied in log order, each through the pure
//!   [`TrackerState::apply`]; a refused command is still "applied" (it
//!   changes nothing on every replica alike) and its refusal is the response.
//! - `last_applied` and `membership` change under the same lock as the
//!   state, so a snapshot is always a consistent cut.
//! - A snapshot is the JSON of [`Replica`] (state + last applied log id +
//!   membership). Building or installing one stores it in redb (fsynced)
//!   before openraft may purge the log it covers. The state machine itself is
//!   not persisted per entry: after a restart it is the last snapshot, and
//!   openraft re-applies the committed entries after it.
//! - Readers (the tracker's handlers) lock the same mutex briefly and never
//!   across an `.await`.

use super::log_store::{self, StoredSnapshot};
use super::{NodeId, Response, TypeConfig};
use crate::state::{Applied, TrackerState};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::Database;
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

/// The state machine; clones share the replica and the database.
#[derive(Clone)]
pub struct StateMachine {
    replica: Arc<Mutex<Replica>>,
    db: Arc<Database>,
}

type StResult<T> = Result<T, StorageError<NodeId>>;

impl StateMachine {
    /// The state machine as of the stored snapshot (empty if none).
    ///
    /// # Errors
    /// The snapshot cannot be read or decoded.
    pub fn open(db: Arc<Database>) -> Result<StateMachine, redb::Error> {
        let replica = match log_store::read_snapshot(&db)? {
            Some(snap) => serde_json::from_slice(&snap.data)
                .map_err(|e| redb::Error::Corrupted(format!("snapshot: {e}")))?,
            None => Replica::default(),
        };
        Ok(StateMachine {
            replica: Arc::new(Mutex::new(replica)),
            db,
        })
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

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StResult<Snapshot<TypeConfig>> {
        let (data, last_applied, membership) = {
            let r = self.replica();
            let data =
                serde_json::to_vec(&*r).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
            (data, r.last_applied, r.membership.clone())
        };
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}", id.leader_id, id.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        log_store::write_snapshot(&self.db, &stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(index = ?last_applied.map(|l| l.index), "snapshot written");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
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
        let mut replica: Replica = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        replica.last_applied = meta.last_log_id;
        replica.membership = meta.last_membership.clone();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        log_store::write_snapshot(&self.db, &stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        *self.replica() = replica;
        tracing::info!(index = ?meta.last_log_id.map(|l| l.index), "snapshot installed from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StResult<Option<Snapshot<TypeConfig>>> {
        let stored = log_store::read_snapshot(&self.db)
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
