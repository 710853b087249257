//! Cluster formation: exactly once, and without an operator.
//!
//! Only tracker 1 ever calls `initialize` (with the full membership), and
//! only when its own store is pristine *and* a majority of the cluster
//! (itself included) answered a [`Probe`](proto::raft::PeerRequest::Probe)
//! saying "pristine" *and* no tracker answered "I have state". Every other
//! node, and a wiped node 1 whose peers have state, starts empty and waits:
//! the leader replicates the membership and the log to it (or installs a
//! snapshot once the log is compacted), so it catches up as a follower and
//! never founds a second cluster. A single-line tracker_info.txt
//! initialises at once.

use super::network::{self, PeerReply, PeerRequest};
use super::{NodeId, Raft, StartError};
use openraft::error::RaftError;
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long tracker 1 waits for a peer's answer to a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between probe rounds while too few trackers answer.
const PROBE_PAUSE: Duration = Duration::from_millis(500);

/// The membership of tracker_info.txt: node `k` at line `k`.
pub(super) fn members(trackers: &[SocketAddr]) -> BTreeMap<NodeId, BasicNode> {
    trackers
        .iter()
        .enumerate()
        .map(|(i, a)| (i as NodeId + 1, BasicNode::new(a.to_string())))
        .collect()
}

/// What a starting node does about formation: a pristine single tracker
/// forms at once; a single tracker with state takes over at once. `true`:
/// this is tracker 1 of several with a pristine store, so it must probe its
/// peers ([`form_cluster`]).
///
/// # Errors
/// Raft failed fatally while initialising.
pub(super) async fn begin(
    raft: &Raft,
    members: &BTreeMap<NodeId, BasicNode>,
    pristine: bool,
    node: NodeId,
) -> Result<bool, StartError> {
    let single = members.len() == 1;
    if pristine && single {
        initialize(raft, members.clone()).await?;
    } else if pristine {
        tracing::info!(
            members = members.len(),
            "empty data directory: waiting to be replicated to (tracker 1 forms a new cluster)"
        );
    } else if single {
        // Alone, there is nobody to wait for: take over at once instead of
        // after an election timeout.
        let _ = raft.trigger().elect().await;
    }
    Ok(pristine && !single && node == 1)
}

/// Whether this node has never joined a cluster (the answer to a probe).
pub(super) async fn is_pristine(raft: &Raft) -> bool {
    !raft.is_initialized().await.unwrap_or(true)
}

/// Tracker 1 with a pristine store: probes every peer until a majority is
/// known pristine (then initialises) or any peer has state (then waits to
/// be replicated to), or this node got state from a leader.
pub(super) async fn form_cluster(
    raft: Raft,
    dialer: network::Dialer,
    members: BTreeMap<NodeId, BasicNode>,
    stop: CancellationToken,
) {
    loop {
        if !is_pristine(&raft).await {
            return;
        }
        let answers = probe_peers(&dialer, &members).await;
        match tally(&answers, members.len()) {
            Verdict::Join => {
                tracing::info!(
                    "another tracker already has cluster state: joining it as a follower"
                );
                return;
            }
            Verdict::Form => {
                if let Err(e) = initialize(&raft, members).await {
                    tracing::error!(error = %e, "cannot form the cluster");
                }
                return;
            }
            Verdict::Wait => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PROBE_PAUSE) => {}
        }
    }
}

/// What tracker 1 does after a probe round.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// A majority (this node included) is pristine and nobody has state.
    Form,
    /// Some tracker has state: wait to be replicated to.
    Join,
    /// Too few answers yet: probe again.
    Wait,
}

/// `answers`: per peer, `Some(pristine)` or `None` if it did not answer.
fn tally(answers: &[Option<bool>], members: usize) -> Verdict {
    if answers.contains(&Some(false)) {
        return Verdict::Join;
    }
    let pristine = 1 + answers.iter().filter(|a| **a == Some(true)).count();
    if pristine > members / 2 {
        Verdict::Form
    } else {
        Verdict::Wait
    }
}

/// Asks every other member, one after the other, whether it is pristine.
async fn probe_peers(
    dialer: &network::Dialer,
    members: &BTreeMap<NodeId, BasicNode>,
) -> Vec<Option<bool>> {
    let mut answers = Vec::with_capacity(members.len());
    for (&id, node) in members {
        let Ok(addr) = node.addr.parse::<SocketAddr>() else {
            continue;
        };
        if id == dialer.from {
            continue;
        }
        let answer =
            match network::send_once(dialer, addr, &PeerRequest::Probe, PROBE_TIMEOUT).await {
                Ok(PeerReply::Probed { pristine }) => Some(pristine),
                _ => None,
            };
        answers.push(answer);
    }
    answers
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

#[cfg(test)]
mod tests {
    use super::super::testing::{self, FakePeer};
    use super::*;

    #[test]
    fn tracker_1_forms_only_with_a_pristine_majority_and_nobody_formed() {
        assert_eq!(tally(&[], 1), Verdict::Form);
        assert_eq!(tally(&[Some(true), None], 3), Verdict::Form);
        assert_eq!(tally(&[None, None], 3), Verdict::Wait);
        assert_eq!(tally(&[Some(true), None, None, None], 5), Verdict::Wait);
        assert_eq!(
            tally(&[Some(true), Some(true), None, None], 5),
            Verdict::Form
        );
        assert_eq!(tally(&[Some(true), Some(false)], 3), Verdict::Join);
        assert_eq!(tally(&[Some(false), None], 3), Verdict::Join);
        // Two trackers: both must be pristine.
        assert_eq!(tally(&[None], 2), Verdict::Wait);
        assert_eq!(tally(&[Some(true)], 2), Verdict::Form);
    }

    #[test]
    fn members_are_the_lines_of_tracker_info() {
        let a: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:7002".parse().unwrap();
        let m = members(&[a, b]);
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(m[&2].addr, b.to_string());
    }

    #[tokio::test]
    async fn probes_ask_every_other_member_and_tell_silence_apart() {
        let pristine = FakePeer::start(|_| PeerReply::Probed { pristine: true }).await;
        let formed = FakePeer::start(|_| PeerReply::Probed { pristine: false }).await;
        let silent = testing::unused_addr().await;
        let me: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let m = members(&[me, pristine.addr, formed.addr, silent]);
        assert_eq!(
            probe_peers(&testing::dialer(1), &m).await,
            [Some(true), Some(false), None]
        );
        assert!(matches!(pristine.requests()[..], [PeerRequest::Probe]));
        assert_eq!(
            tally(&probe_peers(&testing::dialer(1), &m).await, m.len()),
            Verdict::Join
        );
    }

    #[tokio::test]
    async fn a_single_tracker_forms_at_once_and_is_not_pristine_after() {
        let dir = tempfile::tempdir().unwrap();
        let node = testing::one_node(dir.path()).await;
        assert!(!is_pristine(&node.cluster.raft).await);
        node.stop().await;
        // Restarted with state: it takes over again without anyone to ask.
        let node = testing::one_node(dir.path()).await;
        assert_eq!(node.cluster.leader(), Some(1));
        node.stop().await;
    }

    #[tokio::test]
    async fn tracker_1_of_several_forms_once_a_majority_is_pristine() {
        let peer = FakePeer::start(|_| PeerReply::Probed { pristine: true }).await;
        let silent = testing::unused_addr().await;
        let dir = tempfile::tempdir().unwrap();
        let me = testing::unused_addr().await;
        let node = testing::start(dir.path(), 1, vec![me, peer.addr, silent]).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while is_pristine(&node.cluster.raft).await {
            assert!(tokio::time::Instant::now() < deadline, "never formed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let voters: Vec<NodeId> = node
            .cluster
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        assert_eq!(voters, [1, 2, 3]);
        node.stop().await;
    }

    #[tokio::test]
    async fn tracker_1_waits_when_a_peer_has_state() {
        let peer = FakePeer::start(|_| PeerReply::Probed { pristine: false }).await;
        let dir = tempfile::tempdir().unwrap();
        let me = testing::unused_addr().await;
        let node = testing::start(dir.path(), 1, vec![me, peer.addr]).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while peer.requests().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "never probed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(PROBE_PAUSE * 2).await;
        assert!(
            is_pristine(&node.cluster.raft).await,
            "formed a second cluster"
        );
        assert_eq!(peer.requests().len(), 1, "stopped probing");
        node.stop().await;
    }
}
