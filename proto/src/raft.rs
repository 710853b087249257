//! tracker <-> tracker: Raft RPCs, forwarded writes and presence batches.
//!
//! A peer tracker connects to another tracker's ordinary address (the one in
//! `tracker_info.txt`, shared with the daemons) and sends a [`PeerHello`] as
//! its first frame instead of a daemon's `Hello` call; the two are told apart
//! by their shape (`{"peer": ...}` versus `{"id": .., "request": ..}`).
//! After the hello the connection carries strictly alternating
//! [`PeerRequest`] / [`PeerReply`] frames, one request in flight at a time,
//! each in JSON or in the trackers' binary encoding (`codec`, feature
//! `binary`; [`PeerHelloBody::binary`] says who reads it). The hello itself
//! is always JSON.
//!
//! Typed payloads: this crate does not depend on openraft, so the two
//! messages are generic over what only the tracker knows: its Raft RPCs
//! (`Rpc`, answered with an `RpcReply`) and its replicated write (`W`,
//! answered with its result `R`). Each frame is therefore serialised once,
//! straight from the tracker's types, and a value that cannot be encoded is
//! an error for the sender (never a placeholder). The tag is adjacent
//! (`{"op": .., "body": ..}`) and written first, so decoding reads the body
//! straight into its type instead of buffering it.

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
    /// The connecting tracker reads replies in the binary encoding
    /// (`proto::codec`). Trackers from before it neither send nor read the
    /// field, and are answered in JSON.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub binary: bool,
}

/// One heartbeat a tracker received from a daemon, stamped with the
/// receiving tracker's wall clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenPeer {
    pub user: crate::UserId,
    pub token: crate::tracker::SessionToken,
    /// As text in the binary encoding too: this is logged inside a tagged
    /// `Command` (see [`crate::as_text`]).
    #[serde(with = "crate::as_text")]
    pub addr: SocketAddr,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The link key (hex ed25519) the daemon proved on the connection the
    /// heartbeat came on: the only key downloaders accept at `addr`.
    /// Absent in logs written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A request from one tracker to another. `Rpc`: the tracker's Raft RPCs
/// (openraft's `AppendEntriesRequest` and friends); `W`: its replicated
/// write (a `Command`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", content = "body", rename_all = "snake_case")]
pub enum PeerRequest<Rpc, W> {
    /// One Raft RPC (append entries, vote, one snapshot chunk). Answered
    /// with [`PeerReply::Raft`].
    Raft { rpc: Rpc },
    /// A write (or a batch of writes) a follower forwards to the leader.
    /// Answered with [`PeerReply::Written`] once committed by a majority
    /// and applied.
    Write { command: W },
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

/// A reply to one [`PeerRequest`]. `RpcReply`: the outcome of a Raft RPC;
/// `R`: the result of an applied write.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", content = "body", rename_all = "snake_case")]
pub enum PeerReply<RpcReply, R> {
    /// The outcome of a Raft RPC.
    Raft { result: RpcReply },
    /// A forwarded write's outcome: the applied result and the log index it
    /// was committed at, so the forwarding tracker can wait until it has
    /// applied it too (read-your-writes on every tracker).
    Written { result: R, index: u64 },
    /// This tracker is not the leader (any more); `leader` is its best
    /// guess of who is.
    NotLeader { leader: Option<u64> },
    /// Presence accepted.
    Noted,
    /// Whether the asked-about session is live on the leader.
    Session { live: bool },
    /// `pristine`: this tracker has no Raft state at all (never joined).
    Probed { pristine: bool },
    /// The request could not be served (or its reply could not be encoded).
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
                binary: true,
            },
        };
        let json = serde_json::to_vec(&hello).unwrap();
        assert!(serde_json::from_slice::<TrackerCall>(&json).is_err());
        assert_eq!(serde_json::from_slice::<PeerHello>(&json).unwrap(), hello);
        let call = br#"{"id":0,"request":{"op":"hello","version":1}}"#;
        assert!(serde_json::from_slice::<PeerHello>(call).is_err());
        // A tracker from before the binary encoding: no `binary`, read as false.
        let old: PeerHello = serde_json::from_slice(br#"{"peer":{"version":1,"from":2}}"#).unwrap();
        assert!(!old.peer.binary);
    }

    /// Stand-ins for the tracker's payload types.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Cmd {
        group: String,
    }
    type Request = PeerRequest<Vec<u64>, Cmd>;
    type Reply = PeerReply<Result<u64, String>, Result<Cmd, WireError>>;

    #[test]
    fn typed_payloads_are_encoded_once_inside_the_frame() {
        let req = Request::Write {
            command: Cmd { group: "g1".into() },
        };
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(json, r#"{"op":"write","body":{"command":{"group":"g1"}}}"#);
        match serde_json::from_str::<Request>(&json).unwrap() {
            Request::Write { command } => assert_eq!(command.group, "g1"),
            other => panic!("{other:?}"),
        }
        let reply = Reply::Written {
            result: Ok(Cmd { group: "g1".into() }),
            index: 7,
        };
        let json = serde_json::to_string(&reply).unwrap();
        assert!(matches!(
            serde_json::from_str::<Reply>(&json).unwrap(),
            Reply::Written { result: Ok(c), index: 7 } if c.group == "g1"
        ));
        let probe = serde_json::to_string(&Request::Probe).unwrap();
        assert_eq!(probe, r#"{"op":"probe"}"#);
        assert!(matches!(
            serde_json::from_str::<Request>(&probe).unwrap(),
            Request::Probe
        ));
    }

    #[test]
    fn a_payload_that_cannot_be_encoded_is_an_error_not_null() {
        /// JSON object keys must be strings: a map keyed by a struct fails.
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        struct Key(u8, u8);
        let rpc = std::collections::BTreeMap::from([(Key(1, 2), 3)]);
        let req = PeerRequest::<_, Cmd>::Raft { rpc };
        assert!(serde_json::to_vec(&req).is_err());
    }

    #[test]
    fn a_body_of_the_wrong_type_is_refused() {
        let json = r#"{"op":"raft","body":{"rpc":"not a list"}}"#;
        assert!(serde_json::from_str::<Request>(json).is_err());
    }

    #[test]
    fn requests_round_trip() {
        let req = Request::Presence {
            seen: vec![SeenPeer {
                user: "alice".parse().unwrap(),
                token: crate::tracker::SessionToken("t".into()),
                addr: "127.0.0.1:9".parse().unwrap(),
                at_ms: 5,
                key: Some("ab".repeat(32)),
            }],
        };
        let json = serde_json::to_string(&req).unwrap();
        let back: Request = serde_json::from_str(&json).unwrap();
        assert!(matches!(back, Request::Presence { seen } if seen.len() == 1));
    }
}
