//! p2pd <-> tracker.
//!
//! A daemon keeps one TCP connection to a tracker and may have several calls
//! in flight on it: each [`TrackerCall`] carries an `id` that its
//! [`TrackerAnswer`] repeats. The first call on a connection is
//! [`TrackerRequest::Hello`]. Everything a logged-in user does carries the
//! session token the tracker handed out at [`TrackerRequest::Login`].
//!
//! Presence is heartbeat-based: a logged-in daemon sends
//! [`TrackerRequest::Heartbeat`] every [`HEARTBEAT_INTERVAL`]; a user not heard
//! from for [`PRESENCE_TIMEOUT`] is offline.

use crate::ctl::{FileInfo, GroupInfo};
use crate::{FileName, GroupId, Sha1Hash, UserId, WireError};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// How often a logged-in daemon tells the tracker it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// A user unheard of for this long is shown offline (SPEC: within 15 s).
pub const PRESENCE_TIMEOUT: Duration = Duration::from_secs(10);

/// An opaque login session handed out by the tracker (128 random bits, hex).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionToken(pub String);

/// What the tracker knows of a shared file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub name: FileName,
    pub size: u64,
    /// SHA-1 of the whole file.
    pub sha1: Sha1Hash,
    /// Always [`crate::geometry::PIECE_SIZE_BYTES`] today; carried so the
    /// wire says what the hashes mean.
    pub piece_size: u64,
    /// One SHA-1 per piece; `geometry::piece_count(size)` of them.
    pub pieces: Vec<Sha1Hash>,
}

impl FileMeta {
    /// True when the piece list is consistent with the size.
    pub fn is_consistent(&self) -> bool {
        self.piece_size == crate::geometry::PIECE_SIZE_BYTES
            && self.pieces.len() as u64 == crate::geometry::piece_count(self.size) as u64
    }
}

/// A peer that can serve (part of) a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    pub user: UserId,
    /// Where its daemon accepts peer connections.
    pub addr: SocketAddr,
    /// Holds the whole file (else: verified pieces of it, still downloading).
    pub complete: bool,
    /// The link key (hex ed25519) its daemon proved to the tracker: a
    /// downloader talks to `addr` only if it proves this key.
    pub key: String,
}

/// Names one shared file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SharedRef {
    pub group: GroupId,
    pub name: FileName,
}

/// One call from a daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerCall {
    pub id: u64,
    pub request: TrackerRequest,
    /// Set on writes the daemon may retry on another tracker: the trackers
    /// apply a given request id at most once and answer a repeat with the
    /// first outcome (Raft thesis §6.3). Absent on reads, hello, login and
    /// heartbeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<RequestId>,
}

/// Names one write across retries: a random id per daemon process plus a
/// sequence number within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub client: u64,
    pub seq: u64,
}

/// How long the trackers remember a request id (by the time stamped in the
/// write). A daemon retries one write for at most 10 s (SPEC), so a repeat
/// never arrives after its id was forgotten.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(120);

/// The answer to the call with the same `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerAnswer {
    pub id: u64,
    pub result: Result<TrackerReply, WireError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TrackerRequest {
    /// First call on each connection. Answered with [`TrackerReply::Welcome`].
    Hello {
        version: u32,
    },
    CreateUser {
        user: UserId,
        password: String,
    },
    /// Ends any other session of `user`. Answered with [`TrackerReply::LoggedIn`].
    Login {
        user: UserId,
        password: String,
    },
    /// Keeps the session's user online at `peer_addr`; also how a restarted
    /// daemon resumes its session. `not_logged_in` if the session has ended
    /// (logout, or a login elsewhere). Answered with [`TrackerReply::Alive`],
    /// which names the caller's copies a downloader reported corrupt.
    Heartbeat {
        token: SessionToken,
        peer_addr: SocketAddr,
    },
    Logout {
        token: SessionToken,
    },
    CreateGroup {
        token: SessionToken,
        group: GroupId,
    },
    JoinGroup {
        token: SessionToken,
        group: GroupId,
    },
    LeaveGroup {
        token: SessionToken,
        group: GroupId,
    },
    ListRequests {
        token: SessionToken,
        group: GroupId,
    },
    AcceptRequest {
        token: SessionToken,
        group: GroupId,
        user: UserId,
    },
    ListGroups {
        token: SessionToken,
    },
    ListFiles {
        token: SessionToken,
        group: GroupId,
    },
    /// Registers the file (or adds the caller as another holder of the same
    /// content); `name_taken` if the name holds other content.
    RegisterFile {
        token: SessionToken,
        group: GroupId,
        meta: FileMeta,
    },
    /// The caller no longer serves the file (complete or partial).
    StopShare {
        token: SessionToken,
        group: GroupId,
        name: FileName,
    },
    /// The file's metadata and the online peers (other than the caller) that
    /// hold all or part of it. Answered with [`TrackerReply::Located`].
    Locate {
        token: SessionToken,
        group: GroupId,
        name: FileName,
    },
    /// The caller holds verified pieces of the file and serves them.
    MarkPartial {
        token: SessionToken,
        group: GroupId,
        name: FileName,
    },
    /// `holder` sent the caller data of `name` that failed its SHA-1 (the
    /// caller's download banned it): the trackers stop listing that copy
    /// until `holder` registers the file again, which it does only after
    /// re-hashing it (see [`TrackerReply::Alive`]).
    ReportCorrupt {
        token: SessionToken,
        group: GroupId,
        name: FileName,
        holder: UserId,
    },
    /// A short-lived ticket the caller shows a peer to prove it may fetch
    /// the file: signed by the cluster, naming the caller's user, the file,
    /// and the link key the caller proved on this connection, so that it is
    /// worth nothing on any other link. Answered with [`TrackerReply::Ticket`].
    IssueTicket {
        token: SessionToken,
        group: GroupId,
        name: FileName,
    },
}

/// Whether a call may be sent again after its tracker failed under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Idempotent read: retried as is.
    Read,
    /// Write: stamped with a [`RequestId`] and retried with the same id, so
    /// the trackers apply it once.
    Write,
    /// Hello, login (a repeat would start a second session; the user just
    /// logs in again) and heartbeats (the next one comes in 3 s).
    Never,
}

impl TrackerRequest {
    /// The session token the call acts under, if it needs one. The tracker
    /// checks it before anything else; the daemon ends its session when the
    /// tracker says the token is no longer live.
    pub fn token(&self) -> Option<&SessionToken> {
        use TrackerRequest as R;
        match self {
            R::Hello { .. } | R::CreateUser { .. } | R::Login { .. } => None,
            R::Heartbeat { token, .. }
            | R::Logout { token }
            | R::CreateGroup { token, .. }
            | R::JoinGroup { token, .. }
            | R::LeaveGroup { token, .. }
            | R::ListRequests { token, .. }
            | R::AcceptRequest { token, .. }
            | R::ListGroups { token }
            | R::ListFiles { token, .. }
            | R::RegisterFile { token, .. }
            | R::StopShare { token, .. }
            | R::Locate { token, .. }
            | R::MarkPartial { token, .. }
            | R::IssueTicket { token, .. }
            | R::ReportCorrupt { token, .. } => Some(token),
        }
    }

    /// How the call may be retried on another tracker (see [`Retry`]).
    pub fn retry(&self) -> Retry {
        use TrackerRequest as R;
        match self {
            R::Hello { .. } | R::Login { .. } | R::Heartbeat { .. } => Retry::Never,
            R::CreateUser { .. }
            | R::Logout { .. }
            | R::CreateGroup { .. }
            | R::JoinGroup { .. }
            | R::LeaveGroup { .. }
            | R::AcceptRequest { .. }
            | R::RegisterFile { .. }
            | R::StopShare { .. }
            | R::MarkPartial { .. }
            | R::ReportCorrupt { .. } => Retry::Write,
            R::ListRequests { .. }
            | R::ListGroups { .. }
            | R::ListFiles { .. }
            | R::Locate { .. }
            | R::IssueTicket { .. } => Retry::Read,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum TrackerReply {
    Welcome {
        version: u32,
        node: u32,
        /// The public key tickets are signed with (64 hex digits): seeders
        /// check tickets with it, without asking a tracker.
        ticket_key: String,
    },
    /// An action succeeded.
    Done {
        message: String,
    },
    LoggedIn {
        token: SessionToken,
    },
    Alive {
        user: UserId,
        /// The caller's copies reported corrupt and no longer listed: the
        /// daemon re-hashes each, then registers it again or stops sharing.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recheck: Vec<SharedRef>,
    },
    Users {
        users: Vec<UserId>,
    },
    Groups {
        groups: Vec<GroupInfo>,
    },
    Files {
        files: Vec<FileInfo>,
    },
    Located {
        meta: FileMeta,
        peers: Vec<PeerEntry>,
    },
    Ticket {
        ticket: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_and_answer_round_trip() {
        let call = TrackerCall {
            id: 7,
            request: TrackerRequest::Heartbeat {
                token: SessionToken("ab".into()),
                peer_addr: "127.0.0.1:9".parse().unwrap(),
            },
            dedup: None,
        };
        let json = serde_json::to_string(&call).unwrap();
        assert_eq!(serde_json::from_str::<TrackerCall>(&json).unwrap(), call);
        assert!(!json.contains("dedup"), "{json}");
        let stamped = TrackerCall {
            dedup: Some(RequestId { client: 3, seq: 9 }),
            ..call
        };
        let json = serde_json::to_string(&stamped).unwrap();
        assert_eq!(serde_json::from_str::<TrackerCall>(&json).unwrap(), stamped);

        let ans = TrackerAnswer {
            id: 7,
            result: Err(WireError::new(crate::ErrorCode::NotLoggedIn, "no session")),
        };
        let json = serde_json::to_string(&ans).unwrap();
        assert_eq!(serde_json::from_str::<TrackerAnswer>(&json).unwrap(), ans);
    }

    #[test]
    fn request_metadata() {
        let token = SessionToken("t".into());
        let login = TrackerRequest::Login {
            user: "a".parse().unwrap(),
            password: "p".into(),
        };
        assert_eq!(login.token(), None);
        assert_eq!(login.retry(), Retry::Never);
        let write = TrackerRequest::CreateGroup {
            token: token.clone(),
            group: "g".parse().unwrap(),
        };
        assert_eq!(write.token(), Some(&token));
        assert_eq!(write.retry(), Retry::Write);
        let read = TrackerRequest::ListGroups {
            token: token.clone(),
        };
        assert_eq!(read.token(), Some(&token));
        assert_eq!(read.retry(), Retry::Read);
        let beat = TrackerRequest::Heartbeat {
            token: token.clone(),
            peer_addr: "127.0.0.1:1".parse().unwrap(),
        };
        assert_eq!((beat.token(), beat.retry()), (Some(&token), Retry::Never));
    }

    #[test]
    fn meta_consistency() {
        let mut m = FileMeta {
            name: "f".parse().unwrap(),
            size: crate::geometry::PIECE_SIZE_BYTES + 1,
            sha1: Sha1Hash([0; 20]),
            piece_size: crate::geometry::PIECE_SIZE_BYTES,
            pieces: vec![Sha1Hash([0; 20]); 2],
        };
        assert!(m.is_consistent());
        m.pieces.pop();
        assert!(!m.is_consistent());
    }
}
