//! When this node snapshots: every `every` applied entries, at points
//! staggered across the cluster, so that no two trackers build a snapshot
//! at the same time.
//!
//! openraft's own policy (`LogsSinceLast`) had every tracker reach the
//! threshold at the same entry, so all of them encoded and flushed a
//! snapshot at once, and every commit in that window waited for a tracker
//! busy with one. Node k of n snapshots when its applied index passes
//! `j * every + (k - 1) * every / n` (j ≥ 1): one node at a time, and a
//! majority free of it whenever n ≥ 3. The points are fixed by the index,
//! not by when the last snapshot happened, so they stay staggered after
//! restarts and snapshots installed from the leader.

use super::{NodeId, Raft};
use tokio_util::sync::CancellationToken;

/// This node's offset in the stagger: node k of `nodes` (1-based).
pub fn offset(node: NodeId, nodes: u64, every: u64) -> u64 {
    let nodes = nodes.max(1);
    let slot = node.saturating_sub(1) % nodes;
    slot * every / nodes
}

/// The first snapshot point after index `last` (the last snapshot's, or 0):
/// the smallest `j * every + offset` above it, with j ≥ 1.
pub fn next_point(last: u64, every: u64, offset: u64) -> u64 {
    let every = every.max(1);
    if last < offset + every {
        return offset + every;
    }
    ((last - offset) / every + 1) * every + offset
}

/// Asks openraft for a snapshot each time the applied index reaches this
/// node's next point, until `stop`. Each point is asked for once; one whose
/// build failed is left for the next.
pub async fn run(raft: Raft, offset: u64, every: u64, stop: CancellationToken) {
    let mut metrics = raft.metrics();
    let mut asked_for = 0;
    loop {
        let (applied, last) = {
            let m = metrics.borrow_and_update();
            let index = |l: Option<openraft::LogId<NodeId>>| l.map_or(0, |l| l.index);
            (index(m.last_applied), index(m.snapshot))
        };
        let point = next_point(last, every, offset);
        if applied >= point && point > asked_for {
            asked_for = point;
            tracing::debug!(applied, point, "snapshot point reached");
            if let Err(e) = raft.trigger().snapshot().await {
                tracing::warn!(error = %e, "cannot ask for a snapshot");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_nodes_snapshot_at_distinct_points_every_time() {
        let every = 5000;
        let offsets: Vec<u64> = (1..=3).map(|k| offset(k, 3, every)).collect();
        assert_eq!(offsets, [0, 1666, 3333]);
        // Each node's points from the start, as if each snapshot landed
        // exactly on its point.
        let mut points = Vec::new();
        for &off in &offsets {
            let mut last = 0;
            for _ in 0..4 {
                last = next_point(last, every, off);
                points.push(last);
            }
        }
        points.sort_unstable();
        points.dedup();
        assert_eq!(points.len(), 12, "no two nodes share a point: {points:?}");
        let gaps = points.windows(2).map(|w| w[1] - w[0]);
        assert!(gaps.clone().all(|g| g >= 1666), "{points:?}");
    }

    #[test]
    fn the_points_do_not_drift_when_a_snapshot_lands_late() {
        // A snapshot built a few hundred entries past its point (a batch
        // applied at once), or installed from the leader at any index: the
        // next point is still on this node's grid.
        let (every, off) = (5000, 1666);
        assert_eq!(next_point(0, every, off), 6666);
        assert_eq!(next_point(6666, every, off), 11666);
        assert_eq!(next_point(6900, every, off), 11666);
        assert_eq!(next_point(11665, every, off), 11666);
        assert_eq!(next_point(40_123, every, off), 41666);
        // One node: openraft's old behaviour, every `every` entries.
        assert_eq!(next_point(0, 50, offset(1, 1, 50)), 50);
        assert_eq!(next_point(50, 50, 0), 100);
        assert_eq!(next_point(75, 50, 0), 100);
    }
}
