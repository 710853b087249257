//! The write path: every write of this tracker (a daemon's, a presence
//! batch, the ticket key, one forwarded by a follower) is queued, cut into
//! batches ([`batch`]: group commit) and committed through the
//! leader.
//!
//! 1. [`Cluster::submit`] queues the write as a [`Queued`] with a deadline
//!    and waits for its own result.
//! 2. `run_batches` takes the queue's head plus whatever else waits and
//!    commits that batch while the next one accumulates.
//! 3. On the leader, `client_write` the batch as one entry; it is answered
//!    once committed by a majority and applied. On a follower, `forward`
//!    it to the leader over a fresh peer connection; the leader answers
//!    after commit with the log index, and the follower waits until it has
//!    applied that index too, so the daemon reads its own writes on
//!    whichever tracker it uses.
//! 4. Retries happen only while the batch certainly was not appended (no
//!    leader yet, leader unreachable before sending, `ForwardToLeader`); a
//!    write whose outcome is unknown is reported `tracker_unavailable`,
//!    never as success. A batch a follower forwarded is never forwarded on:
//!    that follower retries with whoever it thinks leads.

use super::batch::{self, Queued, Written};
use super::network::{self, OutgoingRequest, PeerError, PeerReply};
use super::{Cluster, NodeId, Response};
use crate::state::{Applied, Command};
use openraft::error::{ClientWriteError, RaftError};
use proto::{ErrorCode, WireError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// A write gives up (as `tracker_unavailable`) after this long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a follower waits to apply a write it forwarded before answering.
const APPLY_WAIT: Duration = Duration::from_secs(3);
/// Pause between attempts while there is no leader.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The sending end of the queue [`run_batches`] takes batches from.
pub(super) struct WriteQueue(mpsc::UnboundedSender<Queued>);

impl WriteQueue {
    pub(super) fn new() -> (WriteQueue, mpsc::UnboundedReceiver<Queued>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (WriteQueue(tx), rx)
    }

    /// Queues `cmds`, to be given up if not sent to the leader by
    /// `deadline`; the receiver gets how it ended. `None`: the batch task
    /// has stopped.
    fn push(
        &self,
        cmds: Vec<Command>,
        forwarded: bool,
        deadline: Instant,
    ) -> Option<oneshot::Receiver<Written>> {
        let (done, answer) = oneshot::channel();
        let queued = Queued {
            cmds,
            forwarded,
            deadline,
            queued: Instant::now(),
            done,
        };
        self.0.send(queued).ok().map(|()| answer)
    }
}

impl Cluster {
    /// Commits `cmd` through the leader and returns its result once a
    /// majority has it and this node has applied it.
    ///
    /// # Errors
    /// The command's refusal; `tracker_unavailable` when there is no leader
    /// within [`WRITE_TIMEOUT`] or the outcome is unknown.
    pub async fn submit(&self, cmd: Command) -> Result<Applied, WireError> {
        self.submit_within(cmd, WRITE_TIMEOUT).await
    }

    /// [`Cluster::submit`], giving up after `limit`.
    pub(crate) async fn submit_within(
        &self,
        cmd: Command,
        limit: Duration,
    ) -> Result<Applied, WireError> {
        let Some(answer) = self.writes.push(vec![cmd], false, Instant::now() + limit) else {
            return Err(unavailable("this tracker is stopping; try again"));
        };
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

    /// Serves a write (or batch) forwarded by a follower: it joins this
    /// leader's next batch, kept whole, and is answered after commit.
    pub(crate) async fn write_as_leader(&self, cmd: Command) -> PeerReply {
        let (cmds, batched) = match cmd {
            Command::Batch { writes } => (writes, true),
            other => (vec![other], false),
        };
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let Some(answer) = self.writes.push(cmds, true, deadline) else {
            return leader_stopping();
        };
        match answer.await {
            Ok(Written::Applied { results, index }) => PeerReply::Written {
                result: Response(rejoin(results, batched)),
                index,
            },
            Ok(Written::NotLeader(leader)) => PeerReply::NotLeader { leader },
            Ok(Written::Failed(error)) => PeerReply::Failed {
                error: unavailable(format!(
                    "the leader could not commit the change: {}",
                    error.message
                )),
            },
            Err(_) => leader_stopping(),
        }
    }

    /// Commits one batch through the leader and answers each item.
    /// Retries only while the batch certainly was not appended; an item
    /// whose deadline passes before that is refused as "no majority".
    ///
    /// Logs at debug, per batch, where its time went (`RUST_LOG=
    /// tracker::raft::write=debug`): how long its oldest write waited in
    /// the queue, the commit itself (leader) or the forward (follower), and
    /// a follower's wait to apply what the leader committed.
    ///
    /// `slot` is this batch's place among those in flight; a follower gives
    /// it up as soon as the leader answered, before waiting to apply, so
    /// the next batch goes out meanwhile.
    async fn commit(&self, items: Vec<Queued>, slot: OwnedSemaphorePermit) {
        let mut slot = Some(slot);
        let started = Instant::now();
        let waited = items.iter().map(|q| started - q.queued).max();
        let mut timing = StageTiming {
            writes: items.iter().map(|q| q.cmds.len()).sum(),
            forwarded_in: items.iter().any(|q| q.forwarded),
            queue: waited.unwrap_or_default(),
            ..StageTiming::default()
        };
        self.commit_timed(items, &mut timing, &mut slot).await;
        timing.total = started.elapsed();
        tracing::debug!(
            writes = timing.writes,
            queue_ms = ms(timing.queue),
            commit_ms = ms(timing.commit),
            apply_wait_ms = ms(timing.apply_wait),
            total_ms = ms(timing.total),
            via = if timing.forwarded_out {
                "forward"
            } else {
                "leader"
            },
            forwarded_in = timing.forwarded_in,
            "batch done"
        );
    }

    async fn commit_timed(
        &self,
        mut items: Vec<Queued>,
        timing: &mut StageTiming,
        slot: &mut Option<OwnedSemaphorePermit>,
    ) {
        loop {
            let now = Instant::now();
            items = batch::drop_expired(items, now, &no_majority());
            let Some(deadline) = batch::latest_deadline(&items) else {
                return;
            };
            let left = deadline.saturating_duration_since(now);
            let leader = self.leader();
            if leader != Some(self.node) {
                items = batch::refuse_forwarded(items, leader);
                if items.is_empty() {
                    return;
                }
            }
            let cmd = batch::combine(items.iter().flat_map(|q| q.cmds.iter().cloned()).collect());
            let attempt = match leader {
                Some(l) if l == self.node => {
                    let t = Instant::now();
                    let a = self.commit_here(cmd, left).await;
                    timing.commit += t.elapsed();
                    a
                }
                Some(l) => {
                    timing.forwarded_out = true;
                    self.commit_via(l, &cmd, left, timing, slot).await
                }
                None => Attempt::Retry,
            };
            match attempt {
                Attempt::Committed(result, index) => return batch::settle(items, result, index),
                Attempt::Failed(error) => return batch::fail(items, &error),
                Attempt::Retry => tokio::time::sleep(RETRY_PAUSE.min(left)).await,
            }
        }
    }

    /// This node leads: append `cmd` and wait (at most `left`) until a
    /// majority has it and it is applied here.
    async fn commit_here(&self, cmd: Command, left: Duration) -> Attempt {
        match tokio::time::timeout(left, self.raft.client_write(cmd)).await {
            Ok(Ok(resp)) => Attempt::Committed(resp.data.0, resp.log_id.index),
            // Not appended (or truncated): safe to try again.
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => Attempt::Retry,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "write failed");
                Attempt::Failed(unknown_outcome())
            }
            Err(_) => Attempt::Failed(unknown_outcome()),
        }
    }

    /// `leader` leads: forward `cmd` to it and, once committed, wait until
    /// this node has applied it too (read-your-writes).
    async fn commit_via(
        &self,
        leader: NodeId,
        cmd: &Command,
        left: Duration,
        timing: &mut StageTiming,
        slot: &mut Option<OwnedSemaphorePermit>,
    ) -> Attempt {
        let Some(addr) = self.addr_of(leader) else {
            return Attempt::Retry;
        };
        let t = Instant::now();
        let forwarded = forward(&self.dialer, addr, cmd, left).await;
        timing.commit += t.elapsed();
        match forwarded {
            Ok(Forwarded::Written { result, index }) => {
                drop(slot.take());
                let t = Instant::now();
                if !self.wait_applied(index, APPLY_WAIT).await {
                    tracing::warn!(index, "forwarded write committed but not yet applied here");
                }
                timing.apply_wait += t.elapsed();
                Attempt::Committed(result, index)
            }
            // The leader refused the batch as a whole: its callers get that.
            Ok(Forwarded::Failed(error)) => Attempt::Committed(Err(error), 0),
            Ok(Forwarded::NotLeader) | Err(PeerError::Connect { .. }) => Attempt::Retry,
            // Certainly not sent, but it never will be: a bug, logged.
            Err(PeerError::Encode { .. }) => Attempt::Failed(WireError::new(
                ErrorCode::Io,
                "the tracker failed while encoding the write; see its log",
            )),
            Err(e @ PeerError::Lost { .. }) => {
                tracing::warn!(error = %e, "forwarded write lost");
                Attempt::Failed(unknown_outcome())
            }
        }
    }

    /// Waits (at most `within`) until this node has applied log `index`.
    /// `false`: it has not yet.
    async fn wait_applied(&self, index: u64, within: Duration) -> bool {
        self.raft
            .wait(Some(within))
            .applied_index_at_least(Some(index), "forwarded write")
            .await
            .is_ok()
    }
}

/// Where one batch's time went (see [`Cluster::commit`]).
#[derive(Debug, Default)]
struct StageTiming {
    writes: usize,
    /// It holds a batch a follower forwarded (this node leads).
    forwarded_in: bool,
    /// This node forwarded it to the leader.
    forwarded_out: bool,
    /// The oldest write's wait in the queue before the batch formed.
    queue: Duration,
    /// `client_write` here, or the forward to the leader and its answer.
    commit: Duration,
    /// A follower's wait to apply the index the leader committed at.
    apply_wait: Duration,
    total: Duration,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// What one attempt to commit a batch gave.
enum Attempt {
    /// Committed at log `index` (or refused as a whole by the leader, index
    /// 0); the entry's result, to be split among the batch's writes.
    Committed(Result<Applied, WireError>, u64),
    /// Certainly not appended: try again while time is left.
    Retry,
    /// Not committed, or the outcome is unknown: every write gets this.
    Failed(WireError),
}

/// Cuts the queued writes into batches ([`batch::fill`]) and commits each,
/// at most [`batch::MAX_BATCHES_IN_FLIGHT`] at once, until `stop`.
pub(super) async fn run_batches(
    cluster: Arc<Cluster>,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(batch::MAX_BATCHES_IN_FLIGHT));
    let mut carried: Option<Queued> = None;
    loop {
        // Wait for a free slot first: meanwhile writes pile up in the queue
        // and go out together.
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
        let cluster = Arc::clone(&cluster);
        tokio::spawn(async move {
            cluster.commit(items, slot).await;
        });
    }
}

/// What the leader said about a forwarded write.
#[derive(Debug)]
pub(super) enum Forwarded {
    /// Committed at `index`; the entry's result.
    Written {
        result: Result<Applied, WireError>,
        index: u64,
    },
    /// The receiver does not lead (any more): certainly not appended.
    NotLeader,
    /// The leader could not commit it.
    Failed(WireError),
}

/// Forwards `cmd` (one write or a batch) to the leader at `addr`.
///
/// # Errors
/// [`PeerError::Encode`] or [`PeerError::Connect`]: certainly not sent;
/// [`PeerError::Lost`]: the outcome is unknown.
pub(super) async fn forward(
    dialer: &network::Dialer,
    addr: SocketAddr,
    cmd: &Command,
    ttl: Duration,
) -> Result<Forwarded, PeerError> {
    let request = OutgoingRequest::Write { command: cmd };
    match network::send_once(dialer, addr, &request, ttl).await? {
        PeerReply::Written { result, index } => Ok(Forwarded::Written {
            result: result.0,
            index,
        }),
        PeerReply::NotLeader { .. } => Ok(Forwarded::NotLeader),
        PeerReply::Failed { error } => Ok(Forwarded::Failed(error)),
        other => Err(PeerError::Lost {
            addr,
            reason: format!("unexpected reply {other:?}"),
        }),
    }
}

/// The answer to a forwarded write from its `results`: a batch answers as
/// a batch (one result per write), a single write as itself.
fn rejoin(
    mut results: Vec<Result<Applied, WireError>>,
    batched: bool,
) -> Result<Applied, WireError> {
    if batched {
        Ok(Applied {
            message: format!("{} writes applied", results.len()),
            session_changed: None,
            results,
        })
    } else {
        results.pop().unwrap_or_else(|| Err(unknown_outcome()))
    }
}

fn unavailable(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::TrackerUnavailable, message)
}

fn leader_stopping() -> PeerReply {
    PeerReply::Failed {
        error: unavailable("the leader is stopping"),
    }
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

#[cfg(test)]
mod tests {
    use super::super::network::PeerRequest;
    use super::super::testing::{self, FakePeer};
    use super::*;

    fn create_user(name: &str) -> Command {
        Command::CreateUser {
            user: name.parse().unwrap(),
            password_hash: "h".into(),
        }
    }

    fn applied(message: &str) -> Applied {
        Applied {
            message: message.into(),
            session_changed: None,
            results: Vec::new(),
        }
    }

    fn last_log_index(cluster: &Cluster) -> u64 {
        cluster.raft.metrics().borrow().last_log_index.unwrap_or(0)
    }

    /// One thread: the 20 submits all queue before the batch task runs, so
    /// group commit puts them in one log entry (one fsync).
    #[tokio::test(flavor = "current_thread")]
    async fn writes_queued_together_are_committed_as_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let node = testing::one_node(dir.path()).await;
        let before = last_log_index(&node.cluster);
        let mut submits = tokio::task::JoinSet::new();
        for i in 0..20 {
            let cluster = Arc::clone(&node.cluster);
            submits.spawn(async move { cluster.submit(create_user(&format!("u{i}"))).await });
        }
        let mut answered = 0;
        while let Some(result) = submits.join_next().await {
            let applied = result.unwrap().expect("each write is applied");
            assert!(applied.message.ends_with(" created"), "{}", applied.message);
            answered += 1;
        }
        assert_eq!(answered, 20);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(last_log_index(&node.cluster), before + 1);
        assert!(node.cluster.state().user_exists(&"u19".parse().unwrap()));
        node.stop().await;
    }

    #[tokio::test]
    async fn a_forwarded_batch_is_answered_per_write_and_a_single_write_as_itself() {
        let dir = tempfile::tempdir().unwrap();
        let node = testing::one_node(dir.path()).await;
        let batch = Command::Batch {
            writes: vec![create_user("a"), create_user("a"), create_user("b")],
        };
        let PeerReply::Written {
            result: Response(Ok(entry)),
            index,
        } = node.cluster.write_as_leader(batch).await
        else {
            panic!("a batch is answered as a batch");
        };
        assert!(index > 0);
        let codes: Vec<_> = entry
            .results
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.code))
            .collect();
        assert_eq!(codes, [None, Some(ErrorCode::UserExists), None]);
        let reply = node.cluster.write_as_leader(create_user("c")).await;
        assert!(matches!(
            reply,
            PeerReply::Written { result: Response(Ok(a)), .. } if a.message == "user c created"
        ));
        let reply = node.cluster.write_as_leader(create_user("c")).await;
        assert!(matches!(
            reply,
            PeerReply::Written { result: Response(Err(e)), .. } if e.code == ErrorCode::UserExists
        ));
        node.stop().await;
    }

    #[tokio::test]
    async fn without_a_leader_a_write_fails_at_its_deadline_and_a_forwarded_one_at_once() {
        // Node 2 of two, pristine: nobody leads.
        let dir = tempfile::tempdir().unwrap();
        let trackers = vec![testing::unused_addr().await, testing::unused_addr().await];
        let node = testing::start(dir.path(), 2, trackers).await;
        let started = Instant::now();
        let limit = Duration::from_millis(300);
        let err = node
            .cluster
            .submit_within(create_user("a"), limit)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::TrackerUnavailable);
        assert!(started.elapsed() >= limit);
        assert!(matches!(
            node.cluster.write_as_leader(create_user("b")).await,
            PeerReply::NotLeader { leader: None }
        ));
        node.stop().await;
    }

    #[tokio::test]
    async fn forward_sends_the_command_once_typed_and_reads_each_answer() {
        let leader = FakePeer::start(|req| match req {
            PeerRequest::Write { .. } => PeerReply::Written {
                result: Response(Ok(applied("done"))),
                index: 42,
            },
            _ => PeerReply::Noted,
        })
        .await;
        let cmd = create_user("a");
        let ttl = Duration::from_secs(2);
        match forward(&testing::dialer(2), leader.addr, &cmd, ttl)
            .await
            .unwrap()
        {
            Forwarded::Written {
                result: Ok(a),
                index: 42,
            } => assert_eq!(a.message, "done"),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&leader.requests()[..], [PeerRequest::Write { command }] if *command == cmd)
        );

        let moved = FakePeer::start(|_| PeerReply::NotLeader { leader: Some(3) }).await;
        let out = forward(&testing::dialer(2), moved.addr, &cmd, ttl)
            .await
            .unwrap();
        assert!(matches!(out, Forwarded::NotLeader));
        let refused = WireError::new(ErrorCode::TrackerUnavailable, "stopping");
        let failing = {
            let refused = refused.clone();
            FakePeer::start(move |_| PeerReply::Failed {
                error: refused.clone(),
            })
            .await
        };
        let out = forward(&testing::dialer(2), failing.addr, &cmd, ttl)
            .await
            .unwrap();
        assert!(matches!(out, Forwarded::Failed(e) if e == refused));
        let confused = FakePeer::start(|_| PeerReply::Noted).await;
        let out = forward(&testing::dialer(2), confused.addr, &cmd, ttl).await;
        assert!(matches!(out, Err(PeerError::Lost { .. })), "{out:?}");
        let nobody = testing::unused_addr().await;
        let out = forward(&testing::dialer(2), nobody, &cmd, ttl).await;
        assert!(matches!(out, Err(PeerError::Connect { .. })), "{out:?}");
    }

    /// A follower's write committed by a (fake) leader at an index this
    /// node never applies: answered anyway once [`APPLY_WAIT`] is over.
    #[tokio::test]
    async fn a_follower_commits_through_the_leader_then_waits_to_apply() {
        let leader = FakePeer::start(|_| PeerReply::Written {
            result: Response(Ok(applied("user a created"))),
            index: 7,
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let trackers = vec![leader.addr, testing::unused_addr().await];
        let node = testing::start(dir.path(), 2, trackers).await;
        let started = Instant::now();
        let mut timing = StageTiming::default();
        // The batch's in-flight slot is given back once the leader has
        // answered, not after the wait to apply: the next batch may go.
        let slots = Arc::new(Semaphore::new(1));
        let mut slot = Some(Arc::clone(&slots).acquire_owned().await.unwrap());
        let write = create_user("a");
        let commit =
            node.cluster
                .commit_via(1, &write, Duration::from_secs(2), &mut timing, &mut slot);
        let next_batch = async {
            let _s = slots.acquire().await.unwrap();
            started.elapsed()
        };
        let (attempt, next_went_after) = tokio::join!(commit, next_batch);
        assert!(next_went_after < APPLY_WAIT / 2, "{next_went_after:?}");
        assert!(matches!(attempt, Attempt::Committed(Ok(a), 7) if a.message == "user a created"));
        assert!(started.elapsed() >= APPLY_WAIT);
        // The timing log says where the time went: waiting to apply.
        assert!(timing.apply_wait >= APPLY_WAIT, "{timing:?}");
        assert!(timing.commit < APPLY_WAIT, "{timing:?}");
        node.stop().await;
    }

    #[tokio::test]
    async fn read_your_writes_waits_for_the_local_apply() {
        let dir = tempfile::tempdir().unwrap();
        let node = testing::one_node(dir.path()).await;
        let applied = node.cluster.submit(create_user("a")).await;
        assert!(applied.is_ok());
        let index = last_log_index(&node.cluster);
        assert!(
            node.cluster
                .wait_applied(index, Duration::from_secs(1))
                .await
        );
        let short = Duration::from_millis(100);
        assert!(!node.cluster.wait_applied(index + 100, short).await);
        node.stop().await;
    }

    #[test]
    fn a_forwarded_batch_answers_as_a_batch_and_a_write_as_itself() {
        let results = vec![Ok(applied("a")), Ok(applied("b"))];
        let whole = rejoin(results.clone(), true).unwrap();
        assert_eq!(whole.message, "2 writes applied");
        assert_eq!(whole.results, results);
        assert_eq!(rejoin(vec![Ok(applied("a"))], false), Ok(applied("a")));
        let empty = rejoin(Vec::new(), false).unwrap_err();
        assert_eq!(empty.code, ErrorCode::TrackerUnavailable);
    }
}
