//! Replication: every tracker of tracker_info.txt is one node of an openraft
//! cluster, and [`TrackerState`] is the replicated state machine.
//!
//! - [`log_store`]: Raft log, vote and snapshots in redb (fsynced).
//! - [`state_machine`]: `TrackerState` behind `RaftStateMachine`.
//! - [`network`]: RPCs between trackers over their ordinary TCP address.
//!
//! Membership = the lines of tracker_info.txt; tracker `k` is node `k`.
//! Formation, exactly once and without an operator: only tracker 1 ever
//! calls `initialize` (with the full membership), and only when its own
//! store is pristine *and* a majority of the cluster (itself included)
//! answered a [`PeerRequest::Probe`] saying "pristine" *and* no tracker
//! answered "I have state". Every other node, and a wiped node 1 whose
//! peers have state, starts empty and waits: the leader replicates the
//! membership and the log to it (or installs a snapshot once the log is
//! compacted), so it catches up as a follower and never founds a second
//! cluster. A single-line tracker_info.txt initialises at once.
//!
//! Writes ([`Cluster::submit`]): on the leader, `client_write` and answer
//! after the entry is committed by a majority and applied. On a follower,
//! forward to the leader over a fresh peer connection; the leader answers
//! after commit with the log index, and the follower waits until it has
//! applied that index too, so the daemon reads its own writes on whichever
//! tracker it uses. Retries happen only when the write certainly was not
//! appended (no leader yet, leader unreachable before sending, or
//! `ForwardToLeader`); a write whose outcome is unknown is reported
//! `tracker_unavailable`, never as success.
//!
//! Reads are answered from the local replica (possibly a few milliseconds
//! behind the leader on a follower).
//!
//! Presence: heartbeats are stamped with the receiving tracker's wall clock
//! and collected; every [`PRESENCE_FLUSH_INTERVAL`] the leader appends *one*
//! `Command::Presence` with everything collected cluster-wide (followers
//! send theirs to the leader). A heartbeat of a session not yet seen (a
//! login, a reconnect) is committed at once, so "online" shows without
//! delay. Online = reader's clock − stamp < `PRESENCE_TIMEOUT`.

// redb::Error is ~160 bytes; storage errors are rare and stop the node, so
// boxing them everywhere would buy nothing.
#![allow(clippy::result_large_err)]

pub mod batch;
pub mod log_store;
pub mod network;
pub mod state_machine;

use crate::state::{Applied, Command, TrackerState};
use batch::{Queued, Written};
use network::PeerError;
use network::{OutgoingRequest, PeerReply, PeerRequest};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use proto::raft::SeenPeer;
use proto::{ErrorCode, WireError};
use serde::{Deserialize, Serialize};
use state_machine::StateMachine;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Semaphore};
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

/// A write gives up (as `tracker_unavailable`) after this long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the leader appends one batch of collected heartbeats.
pub const PRESENCE_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Log entries between snapshots; older entries are then purged.
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 5000;
/// How long a follower waits to apply a write it forwarded before answering.
const APPLY_WAIT: Duration = Duration::from_secs(3);
/// How long tracker 1 waits for a peer's answer to a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between probe rounds while too few trackers answer.
const PROBE_PAUSE: Duration = Duration::from_millis(500);
/// Pause between attempts while there is no leader.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] log_store::OpenError),
    #[error("cannot read the stored Raft state: {0}")]
    Read(#[from] redb::Error),
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
}

/// One node: the Raft handle, the local replica and the presence batch.
pub struct Cluster {
    pub node: NodeId,
    pub raft: Raft,
    sm: StateMachine,
    trackers: Vec<SocketAddr>,
    /// Heartbeats heard (here or forwarded here) since the last flush.
    presence: Mutex<Vec<SeenPeer>>,
    /// Writes waiting for the next batch ([`batch`]).
    writes: mpsc::UnboundedSender<Queued>,
}

/// A read lock on the local replica's state; never hold it across `.await`.
pub struct StateRead<'a>(MutexGuard<'a, state_machine::Replica>);

impl std::ops::Deref for StateRead<'_> {
    type Target = TrackerState;
    fn deref(&self) -> &TrackerState {
        &self.0.state
    }
}

/// Forms the cluster with `members`; "already initialised" is fine.
async fn initialize(raft: &Raft, members: BTreeMap<NodeId, BasicNode>) -> Result<(), StartError> {
    tracing::info!(
        members = members.len(),
        "forming the cluster of tracker_info.txt"
    );
    match raft.initialize(members).await {
        Ok(()) => Ok(()),
        Err(RaftError::APIError(e)) => {
            tracing::info!("cluster already formed: {e}");
            Ok(())
        }
        Err(RaftError::Fatal(e)) => Err(e.into()),
    }
}

fn unavailable(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::TrackerUnavailable, message)
}

fn no_majority() -> WireError {
    unavailable(
        "no leader: a majority of the trackers is not reachable, so writes are paused; try again",
    )
}

fn unknown_outcome() -> WireError {
    unavailable(
        "the trackers did not confirm this change in time; it may or may not have been saved. Check, then retry",
    )
}

impl Cluster {
    /// Opens the node's store in `data_dir`, starts Raft, forms the cluster
    /// if this store is pristine, and starts the background tasks (leader
    /// log, ticket key, presence flush) until `stop`.
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
        let pristine = logs.is_pristine()?;
        let sm = StateMachine::open(Arc::clone(&db))?;
        let config = Config {
            cluster_name: "p2pshare".into(),
            heartbeat_interval: 200,
            election_timeout_min: 1000,
            election_timeout_max: 2000,
            install_snapshot_timeout: 5000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_every.max(1)),
            // Keep a tail of the log so a briefly lagging follower catches up
            // by replication rather than a whole snapshot.
            max_in_snapshot_log_to_keep: (options.snapshot_every / 10).min(500),
            ..Config::default()
        }
        .validate()?;
        let network = network::NetworkFactory { from: options.node };
        let raft = Raft::new(options.node, Arc::new(config), network, logs, sm.clone()).await?;
        let members: BTreeMap<NodeId, BasicNode> = options
            .trackers
            .iter()
            .enumerate()
            .map(|(i, a)| (i as NodeId + 1, BasicNode::new(a.to_string())))
            .collect();
        let single = members.len() == 1;
        if pristine && single {
            initialize(&raft, members.clone()).await?;
        } else if pristine {
            tracing::info!(
                members = members.len(),
                "empty data directory: waiting to be replicated to (tracker 1 forms a new cluster)"
            );
        } else if single {
            // Alone, there is nobody to wait for: take over at once instead
            // of after an election timeout.
            let _ = raft.trigger().elect().await;
        }
        let (writes, queue) = mpsc::unbounded_channel();
        let cluster = Arc::new(Cluster {
            node: options.node,
            raft,
            sm,
            trackers: options.trackers,
            presence: Mutex::new(Vec::new()),
            writes,
        });
        tokio::spawn(Arc::clone(&cluster).run_batches(queue, stop.clone()));
        if pristine && !single && options.node == 1 {
            tokio::spawn(Arc::clone(&cluster).form_cluster(members, stop.clone()));
        }
        tokio::spawn(Arc::clone(&cluster).watch_leadership(stop.clone()));
        tokio::spawn(Arc::clone(&cluster).flush_presence(stop));
        Ok(cluster)
    }

    /// Tracker 1 with a pristine store: probes every peer until a majority
    /// is known pristine (then initialises) or any peer has state (then
    /// waits to be replicated to), or this node got state from a leader.
    async fn form_cluster(
        self: Arc<Self>,
        members: BTreeMap<NodeId, BasicNode>,
        stop: CancellationToken,
    ) {
        let majority = members.len() / 2 + 1;
        loop {
            if self.raft.is_initialized().await.unwrap_or(true) {
                return;
            }
            let mut pristine = 1; // this node
            let mut formed = false;
            for (&id, node) in &members {
                let Ok(addr) = node.addr.parse::<SocketAddr>() else {
                    continue;
                };
                if id == self.node {
                    continue;
                }
                match network::send_once(addr, self.node, &PeerRequest::Probe, PROBE_TIMEOUT).await
                {
                    Ok(PeerReply::Probed { pristine: true }) => pristine += 1,
                    Ok(PeerReply::Probed { pristine: false }) => formed = true,
                    _ => {}
                }
            }
            if formed {
                tracing::info!(
                    "another tracker already has cluster state: joining it as a follower"
                );
                return;
            }
            if pristine >= majority {
                if let Err(e) = initialize(&self.raft, members.clone()).await {
                    tracing::error!(error = %e, "cannot form the cluster");
                }
                return;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(PROBE_PAUSE) => {}
            }
        }
    }

    /// The local replica's state, for reads.
    pub fn state(&self) -> StateRead<'_> {
        StateRead(self.sm.replica())
    }

    fn addr_of(&self, node: NodeId) -> Option<SocketAddr> {
        let i = usize::try_from(node).ok()?.checked_sub(1)?;
        self.trackers.get(i).copied()
    }

    /// Whether the leader knows `token` as a live session. A follower's
    /// "no such session" may only mean "not replicated here yet" (just
    /// restarted, wiped, catching up), so it asks before a daemon is told
    /// `not_logged_in`. `None`: no leader answered.
    pub async fn session_live_on_leader(
        &self,
        token: &proto::tracker::SessionToken,
    ) -> Option<bool> {
        let leader = self.leader()?;
        if leader == self.node {
            return Some(self.state().user_of(token).is_ok());
        }
        let addr = self.addr_of(leader)?;
        let req = PeerRequest::CheckSession {
            token: token.clone(),
        };
        match network::send_once(addr, self.node, &req, PROBE_TIMEOUT).await {
            Ok(PeerReply::Session { live }) => Some(live),
            _ => None,
        }
    }

    fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Commits `cmd` through the leader and returns its result once a
    /// majority has it and this node has applied it.
    ///
    /// # Errors
    /// The command's refusal; `tracker_unavailable` when there is no leader
    /// within [`WRITE_TIMEOUT`] or the outcome is unknown.
    pub async fn submit(&self, cmd: Command) -> Result<Applied, WireError> {
        self.submit_within(cmd, WRITE_TIMEOUT).await
    }

    async fn submit_within(&self, cmd: Command, limit: Duration) -> Result<Applied, WireError> {
        let (done, answer) = oneshot::channel();
        let queued = Queued {
            cmds: vec![cmd],
            forwarded: false,
            deadline: Instant::now() + limit,
            done,
        };
        if self.writes.send(queued).is_err() {
            return Err(unavailable("this tracker is stopping; try again"));
        }
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(Written::Applied { mut results, .. })) => {
                results.pop().unwrap_or_else(|| Err(unknown_outcome()))
            }
            Ok(Ok(Written::Failed(e))) => Err(e),
            // Only forwarded writes are refused as "not leader".
            Ok(Ok(Written::NotLeader(_))) => Err(no_majority()),
            // The batch task stopped (shutdown) or the wait ran out: the
            // write may still be committed.
            Ok(Err(_)) | Err(_) => Err(unknown_outcome()),
        }
    }

    /// Cuts the queued writes into batches ([`batch`]) and commits each,
    /// at most [`batch::MAX_BATCHES_IN_FLIGHT`] at once, until `stop`.
    async fn run_batches(
        self: Arc<Self>,
        mut queue: mpsc::UnboundedReceiver<Queued>,
        stop: CancellationToken,
    ) {
        let slots = Arc::new(Semaphore::new(batch::MAX_BATCHES_IN_FLIGHT));
        let mut carried: Option<Queued> = None;
        loop {
            // Wait for a free slot first: meanwhile writes pile up in the
            // queue and go out together.
            let slot = tokio::select! {
                () = stop.cancelled() => return,
                slot = Arc::clone(&slots).acquire_owned() => match slot {
                    Ok(s) => s,
                    Err(_) => return,
                },
            };
            let first = match carried.take() {
                Some(q) => q,
                None => tokio::select! {
                    () = stop.cancelled() => return,
                    q = queue.recv() => match q {
                        Some(q) => q,
                        None => return,
                    },
                },
            };
            let mut items = vec![first];
            carried = batch::fill(&mut items, || queue.try_recv().ok());
            let me = Arc::clone(&self);
            tokio::spawn(async move {
                me.commit(items).await;
                drop(slot);
            });
        }
    }

    /// Commits one batch through the leader and answers each item.
    /// Retries only while the batch certainly was not appended (no leader
    /// yet, leader unreachable before sending, `ForwardToLeader`); an item
    /// whose deadline passes before that is refused as "no majority".
    async fn commit(&self, mut items: Vec<Queued>) {
        loop {
            let now = Instant::now();
            let (expired, live): (Vec<_>, Vec<_>) =
                items.into_iter().partition(|q| q.deadline <= now);
            batch::fail(expired, &no_majority());
            items = live;
            let Some(deadline) = items.iter().map(|q| q.deadline).max() else {
                return;
            };
            let left = deadline.saturating_duration_since(now);
            let leader = self.leader();
            if leader != Some(self.node) {
                // A follower's batch is never forwarded on: its sender
                // retries with whoever it thinks leads.
                let (forwarded, local): (Vec<_>, Vec<_>) =
                    items.into_iter().partition(|q| q.forwarded);
                for q in forwarded {
                    let _ = q.done.send(Written::NotLeader(leader));
                }
                items = local;
                if items.is_empty() {
                    return;
                }
            }
            let total: usize = items.iter().map(|q| q.cmds.len()).sum();
            let cmd = batch::combine(items.iter().flat_map(|q| q.cmds.iter().cloned()).collect());
            match leader {
                Some(leader) if leader == self.node => {
                    match tokio::time::timeout(left, self.raft.client_write(cmd)).await {
                        Ok(Ok(resp)) => {
                            let index = resp.log_id.index;
                            match batch::split(total, resp.data.0) {
                                Ok(results) => batch::distribute(items, results, index),
                                Err(e) => batch::fail(items, &e),
                            }
                            return;
                        }
                        // Not appended (or truncated): safe to try again.
                        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {}
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "write failed");
                            return batch::fail(items, &unknown_outcome());
                        }
                        Err(_) => return batch::fail(items, &unknown_outcome()),
                    }
                }
                Some(leader) => match self.forward(leader, &cmd, left).await {
                    Ok(Some((result, index))) => {
                        match batch::split(total, result) {
                            Ok(results) => batch::distribute(items, results, index),
                            Err(e) => batch::fail(items, &e),
                        }
                        return;
                    }
                    Ok(None) => {} // not sent, or not the leader: retry
                    Err(e) => {
                        tracing::warn!(error = %e, "forwarded write lost");
                        return batch::fail(items, &unknown_outcome());
                    }
                },
                None => {}
            }
            tokio::time::sleep(RETRY_PAUSE.min(left)).await;
        }
    }

    /// Forwards `cmd` (one write or a batch) to `leader`. `Ok(None)`:
    /// certainly not applied, retry. Otherwise the entry's result and index,
    /// once this tracker has applied it too (read-your-writes).
    async fn forward(
        &self,
        leader: NodeId,
        cmd: &Command,
        ttl: Duration,
    ) -> Result<Option<(Result<Applied, WireError>, u64)>, PeerError> {
        let Some(addr) = self.addr_of(leader) else {
            return Ok(None);
        };
        let request = OutgoingRequest::Write { command: cmd };
        let reply = match network::send_once(addr, self.node, &request, ttl).await {
            Ok(r) => r,
            Err(PeerError::Connect { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        match reply {
            PeerReply::Written {
                result: response,
                index,
            } => {
                // Read-your-writes on this tracker: answer once applied here.
                let waited = self
                    .raft
                    .wait(Some(APPLY_WAIT))
                    .applied_index_at_least(Some(index), "forwarded write")
                    .await;
                if waited.is_err() {
                    tracing::warn!(index, "forwarded write committed but not yet applied here");
                }
                Ok(Some((response.0, index)))
            }
            PeerReply::NotLeader { .. } => Ok(None),
            PeerReply::Failed { error } => Ok(Some((Err(error), 0))),
            other => Err(PeerError::Lost {
                addr,
                reason: format!("unexpected reply {other:?}"),
            }),
        }
    }

    /// Serves a write (or batch) forwarded by a follower: it joins this
    /// leader's next batch, kept whole, and is answered after commit.
    pub(crate) async fn write_as_leader(&self, cmd: Command) -> PeerReply {
        let (cmds, batched) = match cmd {
            Command::Batch { writes } => (writes, true),
            other => (vec![other], false),
        };
        let (done, answer) = oneshot::channel();
        let queued = Queued {
            cmds,
            forwarded: true,
            deadline: Instant::now() + WRITE_TIMEOUT,
            done,
        };
        if self.writes.send(queued).is_err() {
            return PeerReply::Failed {
                error: unavailable("the leader is stopping"),
            };
        }
        match answer.await {
            Ok(Written::Applied { mut results, index }) => {
                let result = if batched {
                    Ok(Applied {
                        message: format!("{} writes applied", results.len()),
                        session_changed: None,
                        results,
                    })
                } else {
                    results.pop().unwrap_or_else(|| Err(unknown_outcome()))
                };
                PeerReply::Written {
                    result: Response(result),
                    index,
                }
            }
            Ok(Written::NotLeader(leader)) => PeerReply::NotLeader { leader },
            Ok(Written::Failed(error)) => PeerReply::Failed {
                error: unavailable(format!(
                    "the leader could not commit the change: {}",
                    error.message
                )),
            },
            Err(_) => PeerReply::Failed {
                error: unavailable("the leader is stopping"),
            },
        }
    }

    /// Records a daemon's heartbeat. A session not seen before (login,
    /// reconnect to this cluster, new address) is committed before this
    /// returns, so it reads as online at once; otherwise it joins the next
    /// batch.
    pub async fn heartbeat(&self, seen: SeenPeer) {
        let known = self.state().last_seen_ms(&seen.user, &seen.token).is_some();
        if known {
            self.note_presence(vec![seen]);
            return;
        }
        let cmd = Command::Presence {
            seen: vec![seen.clone()],
        };
        if self
            .submit_within(cmd, proto::tracker::HEARTBEAT_INTERVAL)
            .await
            .is_err()
        {
            self.note_presence(vec![seen]);
        }
    }

    /// Adds heartbeats to the next presence batch.
    pub(crate) fn note_presence(&self, seen: Vec<SeenPeer>) {
        let mut batch = self
            .presence
            .lock()
            .expect("presence lock poisoned: a panic while holding it");
        batch.extend(seen);
        // Bounded: one entry per user is enough (the newest wins in apply).
        if batch.len() > 100_000 {
            batch.drain(..50_000);
        }
    }

    fn take_presence(&self) -> Vec<SeenPeer> {
        std::mem::take(
            &mut *self
                .presence
                .lock()
                .expect("presence lock poisoned: a panic while holding it"),
        )
    }

    /// Every [`PRESENCE_FLUSH_INTERVAL`]: the leader appends what was
    /// collected as one command; a follower sends it to the leader.
    async fn flush_presence(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(PRESENCE_FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut seen = self.take_presence();
            if seen.is_empty() {
                continue;
            }
            // Keep the newest stamp per user: one batch, one entry each.
            seen.sort_by(|a, b| a.user.cmp(&b.user).then(b.at_ms.cmp(&a.at_ms)));
            seen.dedup_by(|a, b| a.user == b.user);
            match self.leader() {
                Some(l) if l == self.node => {
                    let cmd = Command::Presence { seen };
                    if let Err(e) = self.submit_within(cmd, PRESENCE_FLUSH_INTERVAL * 2).await {
                        tracing::debug!(error = %e.message, "presence batch not committed");
                    }
                }
                Some(l) => {
                    if let Some(addr) = self.addr_of(l) {
                        let req = PeerRequest::Presence { seen };
                        if let Err(e) =
                            network::send_once(addr, self.node, &req, PRESENCE_FLUSH_INTERVAL).await
                        {
                            tracing::debug!(error = %e, "presence not sent to the leader");
                        }
                    }
                }
                // No leader: these heartbeats are lost; the daemons send
                // new ones every few seconds.
                None => {}
            }
        }
    }

    /// Logs leader and membership changes; the leader installs the ticket
    /// key once.
    async fn watch_leadership(self: Arc<Self>, stop: CancellationToken) {
        let mut metrics = self.raft.metrics();
        let mut last_leader: Option<(Option<NodeId>, u64)> = None;
        let mut last_members = String::new();
        let mut secret_asked = false;
        loop {
            let (leader, term, state, members) = {
                let m = metrics.borrow_and_update();
                let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
                (
                    m.current_leader,
                    m.current_term,
                    m.state,
                    format!("{voters:?}"),
                )
            };
            if last_leader != Some((leader, term)) {
                match leader {
                    Some(l) => tracing::info!("node {l} is leader (term {term})"),
                    None => tracing::info!("no leader known (term {term})"),
                }
                last_leader = Some((leader, term));
            }
            if members != last_members && members != "[]" {
                tracing::info!("membership: voters {members}");
                last_members = members;
            }
            if state == ServerState::Leader
                && !secret_asked
                && self.state().ticket_secret().is_none()
            {
                secret_asked = true;
                let me = Arc::clone(&self);
                tokio::spawn(async move {
                    let secret = crate::tokens::random_hex();
                    if let Err(e) = me.submit(Command::SetTicketSecret { secret }).await {
                        tracing::warn!(error = %e.message, "cannot set the ticket key yet");
                    }
                });
            }
            if state != ServerState::Leader {
                secret_asked = false;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                changed = metrics.changed() => if changed.is_err() { return },
            }
        }
    }
}
