//! Leadership: who leads, as this node sees it.
//!
//! `watch` follows openraft's metrics: it logs each new leader (per term)
//! and each new membership, and once this node leads a cluster that has no
//! ticket key yet, it commits one (set once; later attempts change
//! nothing, so every tracker signs tickets with the same key).
//!
//! [`Cluster::session_live_on_leader`] asks the leader about a session
//! before a lagging follower tells a daemon `not_logged_in`.

use super::network::{self, PeerReply, PeerRequest};
use super::{Cluster, NodeId};
use proto::tracker::SessionToken;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a follower waits for the leader's answer about a session.
const ASK_LEADER_TIMEOUT: Duration = Duration::from_secs(1);

impl Cluster {
    /// Whether the leader knows `token` as a live session. A follower's
    /// "no such session" may only mean "not replicated here yet" (just
    /// restarted, wiped, catching up), so it asks before a daemon is told
    /// `not_logged_in`. `None`: no leader answered.
    pub async fn session_live_on_leader(&self, token: &SessionToken) -> Option<bool> {
        self.session_live_on(self.leader()?, token).await
    }

    async fn session_live_on(&self, leader: NodeId, token: &SessionToken) -> Option<bool> {
        if leader == self.node {
            return Some(self.state().user_of(token).is_ok());
        }
        let addr = self.addr_of(leader)?;
        let req = PeerRequest::CheckSession {
            token: token.clone(),
        };
        match network::send_once(&self.dialer, addr, &req, ASK_LEADER_TIMEOUT).await {
            Ok(PeerReply::Session { live }) => Some(live),
            _ => None,
        }
    }
}

/// Logs leader and membership changes until `stop`.
pub(super) async fn watch(cluster: Arc<Cluster>, stop: CancellationToken) {
    let mut metrics = cluster.raft.metrics();
    let mut watch = Watch::default();
    // "No leader" is news only once there was one (a leader lost); before
    // the first election it is the normal start.
    let mut had_leader = false;
    loop {
        let observed = {
            let m = metrics.borrow_and_update();
            Observed {
                leader: m.current_leader,
                term: m.current_term,
                voters: m.membership_config.membership().voter_ids().collect(),
            }
        };
        for noticed in watch.observe(&observed) {
            match noticed {
                Noticed::Leader(Some(l), term) => {
                    had_leader = true;
                    tracing::info!("node {l} is leader (term {term})")
                }
                Noticed::Leader(None, term) if had_leader => {
                    tracing::info!("no leader known (term {term})")
                }
                Noticed::Leader(None, term) => tracing::debug!("no leader yet (term {term})"),
                Noticed::Voters(voters) => tracing::info!("membership: voters {voters:?}"),
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}

/// What the metrics say, as far as [`Watch`] cares.
struct Observed {
    leader: Option<NodeId>,
    term: u64,
    voters: Vec<NodeId>,
}

/// Something worth acting on in a new [`Observed`].
#[derive(Debug, PartialEq, Eq)]
enum Noticed {
    /// A new (leader, term).
    Leader(Option<NodeId>, u64),
    /// A new, non-empty set of voters.
    Voters(Vec<NodeId>),
}

/// What [`watch`] has seen so far: changes are reported once.
#[derive(Default)]
struct Watch {
    last_leader: Option<(Option<NodeId>, u64)>,
    last_voters: Vec<NodeId>,
}

impl Watch {
    fn observe(&mut self, o: &Observed) -> Vec<Noticed> {
        let mut noticed = Vec::new();
        if self.last_leader != Some((o.leader, o.term)) {
            noticed.push(Noticed::Leader(o.leader, o.term));
            self.last_leader = Some((o.leader, o.term));
        }
        if o.voters != self.last_voters && !o.voters.is_empty() {
            noticed.push(Noticed::Voters(o.voters.clone()));
            self.last_voters.clone_from(&o.voters);
        }
        noticed
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{self, FakePeer};
    use super::*;

    fn observed(leader: Option<NodeId>, term: u64) -> Observed {
        Observed {
            leader,
            term,
            voters: vec![1, 2, 3],
        }
    }

    #[test]
    fn each_change_is_noticed_once() {
        let mut w = Watch::default();
        assert_eq!(
            w.observe(&observed(None, 1)),
            [Noticed::Leader(None, 1), Noticed::Voters(vec![1, 2, 3])]
        );
        assert_eq!(w.observe(&observed(None, 1)), []);
        assert_eq!(
            w.observe(&observed(Some(2), 2)),
            [Noticed::Leader(Some(2), 2)]
        );
        let mut empty = observed(Some(2), 2);
        empty.voters.clear();
        assert_eq!(w.observe(&empty), [], "an empty membership is not news");
    }

    #[tokio::test]
    async fn the_leader_answers_about_sessions_itself_a_follower_asks_it() {
        let dir = tempfile::tempdir().unwrap();
        let node = testing::one_node(dir.path()).await;
        let token = SessionToken("nobody".into());
        assert_eq!(
            node.cluster.session_live_on_leader(&token).await,
            Some(false)
        );
        node.stop().await;

        let leader = FakePeer::start(|_| PeerReply::Session { live: true }).await;
        let dir = tempfile::tempdir().unwrap();
        let trackers = vec![leader.addr, testing::unused_addr().await];
        let node = testing::start(dir.path(), 2, trackers).await;
        assert_eq!(
            node.cluster.session_live_on_leader(&token).await,
            None,
            "no leader known"
        );
        assert_eq!(node.cluster.session_live_on(1, &token).await, Some(true));
        assert!(matches!(
            &leader.requests()[..],
            [PeerRequest::CheckSession { token: t }] if *t == token
        ));
        node.stop().await;
    }
}
