//! Replication: every tracker of tracker_info.txt is one node of an openraft
//! cluster, and [`TrackerState`] is the replicated state machine.
//!
//! Membership = the lines of tracker_info.txt; tracker `k` is node `k`.
//! Reads are answered from the local replica (possibly a few milliseconds
//! behind the leader on a follower); every write goes through the leader
//! and is answered once a majority has it.
//!
//! - [`formation`]: forming the cluster exactly once, without an operator
//!   (probe, pristine, initialize).
//! - [`write`](mod@write): the write path: submit, group commit, commit on the leader
//!   or forward to it, read-your-writes. [`batch`] is its pure half.
//! - [`presence`]: heartbeats collected, committed once per second by the
//!   leader; followers forward theirs.
//! - [`leadership`]: watching who leads (logs), and asking the leader
//!   whether a session is live.
//! - [`catch_up`]: after a start, reads wait until the replica applied
//!   what its own log held.
//! - [`network`]: tracker → tracker requests: openraft's RPCs, forwarded
//!   writes, probes and presence.
//! - [`serve`]: the serving side of a peer tracker's connection.
//! - [`log_store`]: Raft log and vote in redb (fsynced).
//! - [`snapshot_store`]: the latest snapshot, in a file of its own.
//! - [`state_machine`]: `TrackerState` behind `RaftStateMachine`.
//!
//! Everything a tracker stores or sends another tracker is in the binary
//! encoding of `proto::codec`; JSON from before it is still read.
//!
//! This file holds the [`Cluster`] type that ties them together, and the
//! Raft type configuration. Each part lives in its own file, as an
//! `impl Cluster` block plus free functions, and owns its own field of
//! `Cluster` (the write queue, the collected heartbeats). The parts import
//! [`network`] (and the write path [`batch`]), never each other: presence
//! and leadership commit through [`Cluster::submit`], and [`serve`]
//! dispatches a peer's requests to the write path, presence and formation.

// redb::Error is ~160 bytes; storage errors are rare and stop the node, so
// boxing them everywhere would buy nothing.
#![allow(clippy::result_large_err)]

pub mod background;
pub mod batch;
pub mod catch_up;
pub mod formation;
pub mod leadership;
pub mod link_pool;
pub mod log_store;
pub mod network;
pub mod presence;
pub mod serve;
pub mod snapshot_schedule;
pub mod snapshot_store;
pub mod state_machine;
#[cfg(test)]
mod testing;
pub mod write;

pub use presence::PRESENCE_FLUSH_INTERVAL;
pub use write::WRITE_TIMEOUT;

use crate::state::{Applied, Command, TrackerState};
use openraft::{BasicNode, Config, SnapshotPolicy};
use p2p_link::{ClusterKey, Endpoint, KeyPairDoc};
use proto::WireError;
use serde::{Deserialize, Serialize};
use state_machine::StateMachine;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, MutexGuard};
use tokio_util::sync::CancellationToken;

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The tracker's Raft types: commands in, [`Response`]s out.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;

/// What applying one log entry gave: the command's result or refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response(pub Result<Applied, WireError>);

/// Log entries between snapshots; older entries are then purged.
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 5000;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] log_store::OpenError),
    #[error("cannot read the stored Raft state: {0}")]
    Read(#[from] redb::Error),
    #[error("cannot read the latest snapshot: {0}")]
    Snapshot(#[from] snapshot_store::SnapshotError),
    #[error("bad Raft configuration: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("Raft could not start: {0}")]
    Fatal(#[from] openraft::error::Fatal<NodeId>),
}

/// Where and who this node is.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// This node's id: its 1-based line of tracker_info.txt.
    pub node: NodeId,
    /// Every tracker, in file order (node k = `trackers[k - 1]`).
    pub trackers: Vec<SocketAddr>,
    /// Log entries between snapshots ([`SNAPSHOT_EVERY_ENTRIES`] by default).
    pub snapshot_every: u64,
    /// The cluster's one secret: its identity and ticket keys derive from it.
    pub cluster_key: Arc<ClusterKey>,
}

/// One node: the Raft handle, the local replica, the write queue and the
/// heartbeats collected for the next presence batch.
pub struct Cluster {
    pub node: NodeId,
    pub raft: Raft,
    sm: StateMachine,
    trackers: Vec<SocketAddr>,
    /// Links to peer trackers, presenting the cluster identity.
    dialer: network::Dialer,
    /// Signs download tickets (derived from the cluster key).
    ticket_key: KeyPairDoc,
    /// Heartbeats heard (here or forwarded here) since the last flush.
    presence: presence::Collected,
    /// Writes waiting for the next batch.
    writes: write::WriteQueue,
    /// Whether the replica applied what its log held at start.
    caught_up: catch_up::CatchUp,
}

/// A read lock on the local replica's state; never hold it across `.await`.
pub struct StateRead<'a>(MutexGuard<'a, state_machine::Replica>);

impl std::ops::Deref for StateRead<'_> {
    type Target = TrackerState;
    fn deref(&self) -> &TrackerState {
        &self.0.state
    }
}

impl Cluster {
    /// Opens the node's store in `data_dir`, starts Raft, forms the cluster
    /// if this store is pristine, and starts the background tasks (batches
    /// of writes, formation, leadership, presence flush) until `stop`.
    ///
    /// # Errors
    /// The store cannot be opened or read, or Raft does not start.
    pub async fn start(
        options: ClusterOptions,
        data_dir: &Path,
        stop: CancellationToken,
    ) -> Result<Arc<Cluster>, StartError> {
        let db = log_store::open(data_dir)?;
        let logs = log_store::LogStore::new(Arc::clone(&db));
        let snapshots = snapshot_store::SnapshotStore::new(data_dir, Arc::clone(&db));
        // Asked without reading the snapshot: `StateMachine::open` reads it.
        let pristine = logs.is_empty()? && !snapshots.exists()?;
        let last_index = logs.last_index()?;
        let sm = StateMachine::open(snapshots)?;
        let config = raft_config(options.snapshot_every)?;
        let dialer = network::Dialer {
            from: options.node,
            endpoint: Endpoint::new(&options.cluster_key.identity()),
            codecs: Default::default(),
            pool: Default::default(),
        };
        let network = network::NetworkFactory {
            dialer: dialer.clone(),
        };
        let raft = Raft::new(options.node, Arc::new(config), network, logs, sm.clone()).await?;
        let members = formation::members(&options.trackers);
        let must_probe = formation::begin(&raft, &members, pristine, options.node).await?;
        let (writes, queue) = write::WriteQueue::new();
        let caught_up = catch_up::CatchUp::start(&raft, last_index, stop.clone());
        let cluster = Arc::new(Cluster {
            node: options.node,
            raft,
            sm,
            trackers: options.trackers,
            dialer,
            ticket_key: options.cluster_key.ticket_key(),
            presence: presence::Collected::default(),
            writes,
            caught_up,
        });
        tokio::spawn(write::run_batches(
            Arc::clone(&cluster),
            queue,
            stop.clone(),
        ));
        if must_probe {
            let (raft, dialer) = (cluster.raft.clone(), cluster.dialer.clone());
            tokio::spawn(formation::form_cluster(raft, dialer, members, stop.clone()));
        }
        tokio::spawn(leadership::watch(Arc::clone(&cluster), stop.clone()));
        let every = options.snapshot_every.max(1);
        let nodes = u64::try_from(cluster.trackers.len()).unwrap_or(1);
        tokio::spawn(snapshot_schedule::run(
            cluster.raft.clone(),
            snapshot_schedule::offset(options.node, nodes, every),
            every,
            stop.clone(),
        ));
        tokio::spawn(presence::flush_every_interval(Arc::clone(&cluster), stop));
        Ok(cluster)
    }

    /// The cluster identity, as presented on every link of this tracker.
    pub fn endpoint(&self) -> &Endpoint {
        &self.dialer.endpoint
    }

    /// Waits (up to `max`) until the replica has applied what its own log
    /// held at start; whether it has. See [`catch_up`].
    pub async fn caught_up(&self, max: std::time::Duration) -> bool {
        self.caught_up.wait(max).await
    }

    /// The key download tickets are signed with.
    pub fn ticket_key(&self) -> &KeyPairDoc {
        &self.ticket_key
    }

    /// Whether `node` is another tracker of tracker_info.txt.
    pub fn is_peer_node(&self, node: NodeId) -> bool {
        node != self.node && self.addr_of(node).is_some()
    }

    /// The local replica's state, for reads.
    pub fn state(&self) -> StateRead<'_> {
        StateRead(self.sm.replica())
    }

    /// Where node `node` listens (its line of tracker_info.txt).
    fn addr_of(&self, node: NodeId) -> Option<SocketAddr> {
        let i = usize::try_from(node).ok()?.checked_sub(1)?;
        self.trackers.get(i).copied()
    }

    /// The leader as this node last heard of it.
    fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }
}

/// The Raft timings and snapshot policy of every tracker.
fn raft_config(snapshot_every: u64) -> Result<Config, openraft::ConfigError> {
    Config {
        cluster_name: "p2pshare".into(),
        heartbeat_interval: 200,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        install_snapshot_timeout: 5000,
        // Asked for by `snapshot_schedule`, at points staggered per node.
        snapshot_policy: SnapshotPolicy::Never,
        // Keep a tail of the log so a briefly lagging follower catches up
        // by replication rather than a whole snapshot.
        max_in_snapshot_log_to_keep: (snapshot_every / 10).min(500),
        ..Config::default()
    }
    .validate()
}
