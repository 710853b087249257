//! Reads wait, after a start, until the replica has applied what its own log
//! held when it started.
//!
//! A write is acknowledged once a majority has it and the leader applied it,
//! but the commit index is saved lazily: a tracker killed right after an
//! acknowledgement restarts with the entry in its log and not yet applied.
//! The entry is committed again as soon as the leader hears a majority, but
//! until then the replica is behind what a daemon was already told. Reads
//! served in that window would "lose" an acknowledged write (seen when every
//! tracker is killed and restarted). So the replica counts as caught up
//! once it applied up to its last log index at start, or after
//! [`CATCH_UP_LIMIT`] (entries a new leader overwrites are never applied).

use super::{NodeId, Raft};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The longest a tracker waits to catch up before answering reads anyway.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(5);

/// Whether this replica has caught up with its own log since the start.
#[derive(Clone, Debug)]
pub struct CatchUp(watch::Receiver<bool>);

impl CatchUp {
    /// Starts watching `raft` until it applied `target`, the last index its
    /// log held at start (read from the store: Raft's metrics do not have
    /// it yet).
    pub fn start(raft: &Raft, target: Option<u64>, stop: CancellationToken) -> CatchUp {
        let mut metrics = raft.metrics();
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            let applied = |m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>| {
                m.last_applied.map(|l| l.index)
            };
            let deadline = tokio::time::sleep(CATCH_UP_LIMIT);
            tokio::pin!(deadline);
            loop {
                if applied(&metrics.borrow_and_update()) >= target {
                    break;
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = &mut deadline => {
                        tracing::warn!(?target, "not caught up with the own log in time; answering reads anyway");
                        break;
                    }
                    changed = metrics.changed() => if changed.is_err() { break },
                }
            }
            let _ = tx.send(true);
        });
        CatchUp(rx)
    }

    /// Waits up to `max` for the replica to catch up; whether it has.
    pub async fn wait(&self, max: Duration) -> bool {
        let mut rx = self.0.clone();
        let caught_up = tokio::time::timeout(max, rx.wait_for(|done| *done)).await;
        matches!(caught_up, Ok(Ok(_)))
    }
}
