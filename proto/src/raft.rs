//! tracker <-> tracker: Raft RPCs, forwarded writes and presence batches.
//!
//! A peer tracker connects to another tracker's ordinary address (the one in
//! `tracker_info.txt`, shared with the daemons) and sends a [`PeerHello`] as
//! its first frame instead of a daemon's `Hello` call; the two are told apart
//! by their shape (`{"peer": ...}` versus `{"id": .., "request": ..}`).
//! After the hello the connection carries strictly alternating
//! [`PeerRequest`] / [`PeerReply`] frames, one request in flight at a time.
//!
//! Raft's own messages (openraft's `AppendEntriesRequest` and friends) are
//! carried as opaque JSON values: this crate does not depend on openraft;
//! only the tracker encodes and decodes them.

use crate::WireError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Largest frame between trackers: an append batch or a snapshot chunk.
pub const MAX_PEER_FRAME_BYTES: u32 = 512 * 1024 * 1024;

/// First frame of a tracker-to-tracker connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHello {
    pub peer: PeerHelloBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHelloBody {
    /// [`crate::PROTOCOL_VERSION`] of the connecting tracker.
    pub version: u32,
    /// Node id (1-based line of tracker_info.txt) of the connecting tracker.
    pub from: u64,
}

/// One heartbeat a tracker received from a daemon, stamped with the
/// receiving tracker's wall clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenPeer {
    pub user: crate::UserId,
    pub token: crate::tracker::SessionToken,
    pub addr: SocketAddr,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PeerRequest {
    /// openraft `AppendEntriesRequest`, as JSON.
    AppendEntries { rpc: serde_json::Value },
    /// openraft `VoteRequest`, as JSON.
    Vote { rpc: serde_json::Value },
    /// openraft `InstallSnapshotRequest` (one chunk), as JSON.
    InstallSnapshot { rpc: serde_json::Value },
    /// A write a follower forwards to the leader: the tracker's `Command`,
    /// as JSON. Answered once committed by a majority and applied.
    Write { command: serde_json::Value },
    /// Asks whether the receiving tracker has ever joined a cluster; only
    /// tracker 1 asks, before forming the cluster. Answered with
    /// [`PeerReply::Probed`].
    Probe,
    /// Asks the leader whether a session token is live (a lagging follower
    /// checks before telling a daemon `not_logged_in`). Answered with
    /// [`PeerReply::Session`].
    CheckSession { token: crate::tracker::SessionToken },
    /// Heartbeats collected by a follower, for the leader's next presence
    /// batch. Answered at once.
    Presence { seen: Vec<SeenPeer> },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum PeerReply {
    /// The openraft result (`Result<Response, RaftError>`), as JSON.
    Raft { result: serde_json::Value },
    /// A forwarded write's outcome: the applied result (JSON) and the log
    /// index it was committed at, so the forwarding tracker can wait until
    /// it has applied it too (read-your-writes on every tracker).
    Written {
        result: serde_json::Value,
        index: u64,
    },
    /// This tracker is not the leader (any more); `leader` is its best
    /// guess of who is.
    NotLeader { leader: Option<u64> },
    /// Presence accepted.
    Noted,
    /// Whether the asked-about session is live on the leader.
    Session { live: bool },
    /// `pristine`: this tracker has no Raft state at all (never joined).
    Probed { pristine: bool },
    /// The request could not be served.
    Failed { error: WireError },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::TrackerCall;

    #[test]
    fn a_peer_hello_is_not_a_tracker_call_and_back() {
        let hello = PeerHello {
            peer: PeerHelloBody {
                version: 1,
                from: 2,
            },
        };
        let json = serde_json::to_vec(&hello).unwrap();
        assert!(serde_json::from_slice::<TrackerCall>(&json).is_err());
        assert_eq!(serde_json::from_slice::<PeerHello>(&json).unwrap(), hello);
        let call = br#"{"id":0,"request":{"op":"hello","version":1}}"#;
        assert!(serde_json::from_slice::<PeerHello>(call).is_err());
    }

    #[test]
    fn requests_round_trip() {
        let req = PeerRequest::Presence {
            seen: vec![SeenPeer {
                user: "alice".parse().unwrap(),
                token: crate::tracker::SessionToken("t".into()),
                addr: "127.0.0.1:9".parse().unwrap(),
                at_ms: 5,
            }],
        };
        let json = serde_json::to_string(&req).unwrap();
        let back: PeerRequest = serde_json::from_str(&json).unwrap();
        assert!(matches!(back, PeerRequest::Presence { seen } if seen.len() == 1));
    }
}
