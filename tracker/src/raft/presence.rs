//! Presence: who is online, replicated without a write per heartbeat.
//!
//! Heartbeats are stamped with the receiving tracker's wall clock and
//! collected here; every [`PRESENCE_FLUSH_INTERVAL`] the leader commits
//! *one* `Command::Presence` with everything collected cluster-wide, the
//! newest stamp per user (followers send theirs to the leader, which adds
//! them to its own collection). A heartbeat of a session not yet seen (a
//! login, a reconnect) is committed at once, so "online" shows without
//! delay. Online = reader's clock − stamp < `PRESENCE_TIMEOUT`.
//!
//! Heartbeats collected while nobody leads are lost: daemons send new ones
//! every few seconds.

use super::network::{self, PeerRequest};
use super::{Cluster, NodeId};
use crate::state::Command;
use proto::raft::SeenPeer;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the leader appends one batch of collected heartbeats.
pub const PRESENCE_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Most heartbeats kept between two flushes; beyond, the oldest
/// [`DROPPED_WHEN_FULL`] go. One per user is enough (the newest wins).
const MAX_COLLECTED: usize = 100_000;
const DROPPED_WHEN_FULL: usize = 50_000;

/// Heartbeats heard (here or forwarded here) since the last flush.
#[derive(Default)]
pub(super) struct Collected(Mutex<Vec<SeenPeer>>);

impl Collected {
    fn add(&self, seen: Vec<SeenPeer>) {
        let mut batch = self
            .0
            .lock()
            .expect("presence lock poisoned: a panic while holding it");
        batch.extend(seen);
        if batch.len() > MAX_COLLECTED {
            batch.drain(..DROPPED_WHEN_FULL);
        }
    }

    /// Everything collected, newest stamp per user, sorted by user; empties
    /// the collection.
    pub(super) fn take(&self) -> Vec<SeenPeer> {
        let mut seen = std::mem::take(
            &mut *self
                .0
                .lock()
                .expect("presence lock poisoned: a panic while holding it"),
        );
        // Keep the newest stamp per user: one batch, one entry each.
        seen.sort_by(|a, b| a.user.cmp(&b.user).then(b.at_ms.cmp(&a.at_ms)));
        seen.dedup_by(|a, b| a.user == b.user);
        seen
    }
}

impl Cluster {
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

    /// Adds heartbeats (this tracker's, or a follower's) to the next batch.
    pub(crate) fn note_presence(&self, seen: Vec<SeenPeer>) {
        self.presence.add(seen);
    }

    /// Sends what was collected where it goes: committed if this node is
    /// `leader`, else sent to `leader`; dropped if nobody leads.
    async fn flush_presence(&self, leader: Option<NodeId>) {
        let seen = self.presence.take();
        if seen.is_empty() {
            return;
        }
        match leader {
            Some(l) if l == self.node => {
                let cmd = Command::Presence { seen };
                if let Err(e) = self.submit_within(cmd, PRESENCE_FLUSH_INTERVAL * 2).await {
                    tracing::debug!(error = %e.message, "presence batch not committed");
                }
            }
            Some(l) => {
                let Some(addr) = self.addr_of(l) else {
                    return;
                };
                let req = PeerRequest::Presence { seen };
                if let Err(e) =
                    network::send_once(&self.dialer, addr, &req, PRESENCE_FLUSH_INTERVAL).await
                {
                    tracing::debug!(error = %e, "presence not sent to the leader");
                }
            }
            None => {}
        }
    }
}

/// Every [`PRESENCE_FLUSH_INTERVAL`] until `stop`: flushes the collected
/// heartbeats towards the current leader.
pub(super) async fn flush_every_interval(cluster: Arc<Cluster>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PRESENCE_FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        cluster.flush_presence(cluster.leader()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::network::PeerReply;
    use super::super::testing::{self, FakePeer};
    use super::*;
    use proto::tracker::SessionToken;
    use proto::UserId;

    fn seen(user: &str, at_ms: u64) -> SeenPeer {
        SeenPeer {
            user: user.parse().unwrap(),
            token: SessionToken(format!("tok-{user}")),
            addr: "127.0.0.1:7000".parse().unwrap(),
            at_ms,
            key: None,
        }
    }

    #[test]
    fn a_flush_takes_the_newest_stamp_per_user_once() {
        let c = Collected::default();
        c.add(vec![seen("b", 5), seen("a", 1)]);
        c.add(vec![seen("a", 3), seen("b", 4)]);
        let taken: Vec<_> = c
            .take()
            .iter()
            .map(|s| (s.user.to_string(), s.at_ms))
            .collect();
        assert_eq!(taken, [("a".to_owned(), 3), ("b".to_owned(), 5)]);
        assert!(c.take().is_empty(), "taking empties the collection");
    }

    #[test]
    fn the_collection_is_bounded() {
        let c = Collected::default();
        c.add((0..=MAX_COLLECTED as u64).map(|i| seen("a", i)).collect());
        let kept = c.0.lock().unwrap().len();
        assert_eq!(kept, MAX_COLLECTED + 1 - DROPPED_WHEN_FULL);
        assert_eq!(c.take()[0].at_ms, MAX_COLLECTED as u64, "the newest stays");
    }

    /// alice, logged in on the cluster of `node`.
    async fn log_in_alice(node: &testing::Node) {
        let alice: UserId = "alice".parse().unwrap();
        let password_hash = "h".into();
        let cmd = Command::CreateUser {
            user: alice.clone(),
            password_hash,
        };
        node.cluster.submit(cmd).await.unwrap();
        let token = SessionToken("tok-alice".into());
        node.cluster
            .submit(Command::StartSession { user: alice, token })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_new_session_is_online_at_once_later_beats_at_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let node = testing::one_node(dir.path()).await;
        log_in_alice(&node).await;
        let (alice, token) = ("alice".parse().unwrap(), SessionToken("tok-alice".into()));
        node.cluster.heartbeat(seen("alice", 1_000)).await;
        assert_eq!(
            node.cluster.state().last_seen_ms(&alice, &token),
            Some(1_000)
        );
        node.cluster.heartbeat(seen("alice", 2_000)).await;
        assert_eq!(
            node.cluster.state().last_seen_ms(&alice, &token),
            Some(1_000),
            "a known session waits for the batch"
        );
        node.cluster.flush_presence(Some(1)).await;
        assert_eq!(
            node.cluster.state().last_seen_ms(&alice, &token),
            Some(2_000)
        );
        node.stop().await;
    }

    #[tokio::test]
    async fn a_follower_sends_its_batch_to_the_leader_and_none_without_one() {
        let leader = FakePeer::start(|_| PeerReply::Noted).await;
        let dir = tempfile::tempdir().unwrap();
        let trackers = vec![leader.addr, testing::unused_addr().await];
        let node = testing::start(dir.path(), 2, trackers).await;
        node.cluster
            .note_presence(vec![seen("a", 1), seen("a", 2), seen("b", 1)]);
        node.cluster.flush_presence(Some(1)).await;
        match &leader.requests()[..] {
            [PeerRequest::Presence { seen }] => {
                let users: Vec<_> = seen.iter().map(|s| (s.user.to_string(), s.at_ms)).collect();
                assert_eq!(users, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
            }
            other => panic!("{other:?}"),
        }
        // Nobody leads: the batch is dropped, nothing is sent.
        node.cluster.note_presence(vec![seen("c", 1)]);
        node.cluster.flush_presence(None).await;
        assert_eq!(leader.requests().len(), 1);
        assert!(node.cluster.presence.take().is_empty());
        node.stop().await;
    }
}
