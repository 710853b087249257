//! What can change the state: [`Command`], as logged and replicated, and
//! [`Applied`], what an accepted command did.
//!
//! A command carries everything `apply` needs (hashes, tokens, clock
//! stamps), so applying it is pure. Adding a command is one variant here,
//! one arm in `apply`'s dispatch and one method in `state/apply.rs`.

use super::Caps;
use proto::raft::SeenPeer;
use proto::tracker::{FileMeta, RequestId, SessionToken};
use proto::{FileName, GroupId, UserId, WireError};
use serde::{Deserialize, Serialize};

/// One change to the state, as logged and (later) replicated.
///
/// Commands that act on behalf of a logged-in user carry the session token,
/// not the user: resolving it inside `apply` keeps the check and the change
/// atomic, even if the session ends between the request and its turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    CreateUser {
        user: UserId,
        /// argon2id PHC string; the password itself never reaches the state.
        password_hash: String,
    },
    /// Logs `user` in with a fresh `token`, ending their previous session.
    StartSession {
        user: UserId,
        token: SessionToken,
    },
    EndSession {
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
    AcceptRequest {
        token: SessionToken,
        group: GroupId,
        user: UserId,
    },
    RegisterFile {
        token: SessionToken,
        group: GroupId,
        meta: FileMeta,
    },
    StopShare {
        token: SessionToken,
        group: GroupId,
        name: FileName,
    },
    MarkPartial {
        token: SessionToken,
        group: GroupId,
        name: FileName,
    },
    /// `holder`'s copy of `name` sent the caller's download corrupt data.
    ReportCorrupt {
        token: SessionToken,
        group: GroupId,
        name: FileName,
        holder: UserId,
    },
    /// A batch of heartbeats, each stamped by the tracker that heard it.
    Presence {
        seen: Vec<SeenPeer>,
    },
    /// Installs the cluster's ticket key, unless one is set already.
    SetTicketSecret {
        secret: String,
    },
    /// `cmd` on behalf of a daemon's write `request`, which may arrive more
    /// than once (retried on another tracker): applied the first time, and
    /// every repeat gets the first outcome. `at_ms` is the wall clock of the
    /// tracker that built it; ids older than
    /// [`DEDUP_WINDOW`](proto::tracker::DEDUP_WINDOW) by the stamp of a later
    /// `Dedup` are forgotten.
    Dedup {
        request: RequestId,
        at_ms: u64,
        write: Box<Command>,
    },
    /// `write`, refused if it would take the state past `caps` (see
    /// `state/caps.rs`). Commands logged before caps existed are bare, so
    /// they replay unchanged.
    Capped {
        caps: Caps,
        write: Box<Command>,
    },
    /// Several writes committed as one log entry (group commit, see the Raft
    /// write path): each is applied in order exactly as if it were its own
    /// entry, and the
    /// answer lists their results in [`Applied::results`]. One entry costs
    /// one append (one fsync) on each tracker instead of one per write.
    Batch {
        writes: Vec<Command>,
    },
}

impl Command {
    /// A rough upper bound of the command's JSON size in bytes, for cutting
    /// batches: a registration is dominated by its piece list.
    pub fn approx_bytes(&self) -> usize {
        match self {
            Command::RegisterFile { meta, .. } => 512 + 45 * meta.pieces.len(),
            Command::Presence { seen } => 256 + 160 * seen.len(),
            Command::Dedup { write, .. } => 96 + write.approx_bytes(),
            Command::Capped { write, .. } => 160 + write.approx_bytes(),
            Command::Batch { writes } => {
                32 + writes.iter().map(Command::approx_bytes).sum::<usize>()
            }
            _ => 512,
        }
    }
}

/// What an accepted command did, for the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// A short sentence for people ("group g1 created").
    pub message: String,
    /// The user whose session was started or ended by this command, so the
    /// caller can drop their presence at once.
    pub session_changed: Option<UserId>,
    /// For a [`Command::Batch`]: the result of each of its writes, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<Result<Applied, WireError>>,
}

impl Applied {
    pub(super) fn done(message: impl Into<String>) -> Self {
        Applied {
            message: message.into(),
            session_changed: None,
            results: Vec::new(),
        }
    }
}
