//! The tracker's durable state and the only way to change it: [`TrackerState::apply`].
//!
//! Owns accounts (argon2 hashes), login sessions, groups (members in join
//! order, pending join requests) and the files shared in each group with
//! their holders.
//!
//! Invariants:
//! - `apply` is pure and deterministic: no I/O, clock, randomness or argon2.
//!   The handler hashes passwords and draws tokens *before* building the
//!   [`Command`], so replaying the same commands (write-ahead log, Raft)
//!   always yields the same state.
//! - A refused command changes nothing, so only accepted commands are logged
//!   and a replay never meets a refusal.
//! - A group's owner is its first member: members are kept in join order, so
//!   when the owner leaves, the longest-standing member inherits the group.
//!   A group never exists without members.
//! - A file is listed while at least one member holds it completely; holders
//!   (complete or partial) are always members of the group.
//! - A user has at most one session; `sessions` and `session_of` mirror each
//!   other.
//!
//! - Presence is replicated data, not a clock: [`Command::Presence`] records
//!   when a tracker heard each daemon (its wall-clock stamp, carried in the
//!   command), and a *reader* compares that stamp with its own clock
//!   ([`TrackerState::online_peer`]). A heartbeat counts only while its token
//!   is still the user's session; a new session or a logout drops it.
//! - The ticket secret is set once ([`Command::SetTicketSecret`]); later
//!   attempts are accepted but change nothing, so every tracker signs and
//!   checks tickets with the same key.
//!
//! Every container is ordered (`OrdMap`, `BTreeSet`, `Vec`, `Vector`,
//! `UserSet`), so listings come out in a stable order and serialised
//! snapshots are byte-for-byte reproducible. The large maps are `imbl`'s persistent ones,
//! which share their nodes between clones: a snapshot's cut of the whole
//! state is a handful of reference-count increments, taken under the lock
//! every write waits for, and later writes copy only the nodes they touch
//! while the snapshot is still being encoded.
//!
//! Files:
//! - this one: the state's types, and the reads (queries) the handler uses.
//! - `command`: [`Command`] and [`Applied`].
//! - `apply`: `apply`, dispatching each command to its own method.
//! - `dedup`: remembered request ids, for exactly-once retries.
//! - `caps`: [`Caps`], the limits a [`Command::Capped`] write must keep.
//! - `suspects`: copies reported corrupt, unlisted until re-hashed.
//! - `user_set`: [`UserSet`], a file's holders as a sorted `Vec`.

mod apply;
mod caps;
mod command;
mod dedup;
mod suspects;
mod user_set;

pub use caps::Caps;
pub use command::{Applied, Command};

use dedup::{outcomes_as_list, Outcome};
use imbl::{OrdMap, Vector};
use proto::ctl::{FileInfo, GroupInfo};
use proto::tracker::{FileMeta, RequestId, SessionToken, SharedRef};
use proto::{ErrorCode, FileName, GroupId, UserId, WireError};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use suspects::Suspects;
use user_set::UserSet;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Account {
    password_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Group {
    /// Join order; `members[0]` is the owner. Never empty.
    members: Vec<UserId>,
    /// Pending join requests, oldest first.
    requests: Vec<UserId>,
    files: OrdMap<FileName, SharedFile>,
}

impl Group {
    fn owner(&self) -> &UserId {
        self.members
            .first()
            .expect("a group is deleted when its last member leaves")
    }

    fn is_member(&self, user: &UserId) -> bool {
        self.members.contains(user)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SharedFile {
    /// Shared, so that cloning the state for a snapshot copies the maps
    /// but not the piece lists (most of its bytes); never changed once
    /// listed.
    meta: Arc<FileMeta>,
    /// Users holding the complete file. Never empty while the file is listed.
    holders: UserSet,
    /// Users serving verified pieces while still downloading; disjoint from
    /// `holders`.
    partial: UserSet,
}

/// The last heartbeat of a user: with which session, from where, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    token: SessionToken,
    /// As text in snapshots of either encoding ([`proto::as_text`]).
    #[serde(with = "proto::as_text")]
    addr: SocketAddr,
    at_ms: u64,
    /// The link key the heartbeat's connection proved (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

/// Where an online user serves peers, and the link key it proved there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnlinePeer<'a> {
    pub addr: SocketAddr,
    pub key: Option<&'a str>,
}

/// A peer that holds all or part of a file, before presence is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub user: UserId,
    pub complete: bool,
}

/// Accounts, sessions, groups and files. See the module docs for invariants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerState {
    users: OrdMap<UserId, Account>,
    sessions: OrdMap<SessionToken, UserId>,
    /// Reverse of `sessions`: one session per user.
    session_of: OrdMap<UserId, SessionToken>,
    groups: OrdMap<GroupId, Group>,
    /// Last heartbeat of each user with a live session.
    #[serde(default)]
    presence: OrdMap<UserId, Seen>,
    /// Key of the download tickets (hex); set once, by the first leader.
    #[serde(default)]
    ticket_secret: Option<String>,
    /// Outcomes of recent daemon writes by request id (exactly-once retries).
    /// A list on the wire: JSON map keys must be strings, and a `RequestId`
    /// is a struct, so as a map the snapshot would not serialise.
    #[serde(default, with = "outcomes_as_list")]
    outcomes: OrdMap<RequestId, Outcome>,
    /// The same ids in apply order with their stamps, oldest first, so
    /// expiry is cheap.
    #[serde(default)]
    outcome_order: Vector<(u64, RequestId)>,
    /// Copies reported corrupt (see `suspects`), unlisted until re-hashed.
    #[serde(default, skip_serializing_if = "Suspects::is_empty")]
    suspects: Suspects,
}

fn no_such_group(group: &GroupId) -> WireError {
    WireError::new(
        ErrorCode::NoSuchGroup,
        format!("group {group} does not exist"),
    )
}

fn not_member(group: &GroupId) -> WireError {
    WireError::new(
        ErrorCode::NotMember,
        format!(
            "you are not a member of group {group}; ask to join with: p2pctl join_group {group} (its owner then accepts)"
        ),
    )
}

fn no_such_file(group: &GroupId, name: &FileName) -> WireError {
    WireError::new(
        ErrorCode::NoSuchFile,
        format!("no file named {name} is shared in group {group}"),
    )
}

/// The sentence for an unknown user and for a wrong password alike, so a
/// caller cannot tell which accounts exist.
pub const BAD_CREDENTIALS: &str = "unknown user or wrong password";

impl TrackerState {
    /// Where `user` serves peers, if they are online at `now_ms` (the
    /// reader's wall clock): heard from within `timeout`, with the session
    /// that is still theirs.
    pub fn online_peer(
        &self,
        user: &UserId,
        now_ms: u64,
        timeout: std::time::Duration,
    ) -> Option<OnlinePeer<'_>> {
        let seen = self.presence.get(user)?;
        let live = self.session_of.get(user) == Some(&seen.token);
        let age = u128::from(now_ms.saturating_sub(seen.at_ms));
        (live && age < timeout.as_millis()).then_some(OnlinePeer {
            addr: seen.addr,
            key: seen.key.as_deref(),
        })
    }

    /// The stamp of `user`'s last recorded heartbeat with `token`, if any.
    pub fn last_seen_ms(&self, user: &UserId, token: &SessionToken) -> Option<u64> {
        self.presence
            .get(user)
            .filter(|s| &s.token == token)
            .map(|s| s.at_ms)
    }

    /// The cluster's ticket key, once the first leader has set it.
    pub fn ticket_secret(&self) -> Option<&str> {
        self.ticket_secret.as_deref()
    }

    /// The user a live session belongs to.
    ///
    /// # Errors
    /// `not_logged_in` for an unknown or ended session.
    pub fn user_of(&self, token: &SessionToken) -> Result<&UserId, WireError> {
        self.sessions.get(token).ok_or_else(|| {
            WireError::new(
                ErrorCode::NotLoggedIn,
                "not logged in: the session is unknown or has ended",
            )
        })
    }

    /// The live session of `user`, if they are logged in.
    pub fn session_of(&self, user: &UserId) -> Option<&SessionToken> {
        self.session_of.get(user)
    }

    /// The stored argon2 hash of `user`, if the account exists.
    pub fn password_hash(&self, user: &UserId) -> Option<&str> {
        self.users.get(user).map(|a| a.password_hash.as_str())
    }

    pub fn user_exists(&self, user: &UserId) -> bool {
        self.users.contains_key(user)
    }

    /// True when `user` is a member of `group` (false if the group is gone).
    pub fn is_member(&self, user: &UserId, group: &GroupId) -> bool {
        self.groups.get(group).is_some_and(|g| g.is_member(user))
    }

    /// Every group, sorted by id.
    pub fn list_groups(&self) -> Vec<GroupInfo> {
        self.groups
            .iter()
            .map(|(id, g)| GroupInfo {
                group: id.clone(),
                owner: g.owner().clone(),
                members: u32::try_from(g.members.len()).unwrap_or(u32::MAX),
            })
            .collect()
    }

    /// Pending join requests of `group`, oldest first; only for its owner.
    ///
    /// # Errors
    /// `no_such_group`, `not_owner`.
    pub fn list_requests(&self, user: &UserId, group: &GroupId) -> Result<Vec<UserId>, WireError> {
        let g = self.groups.get(group).ok_or_else(|| no_such_group(group))?;
        if g.owner() != user {
            return Err(not_owner(group));
        }
        Ok(g.requests.clone())
    }

    /// Files of `group` sorted by name; `online` counts the complete holders
    /// for which `is_online` says yes, except copies reported corrupt.
    ///
    /// # Errors
    /// `no_such_group`, `not_member`.
    pub fn list_files<'s>(
        &'s self,
        user: &UserId,
        group: &GroupId,
        mut is_online: impl FnMut(&'s UserId) -> bool,
    ) -> Result<Vec<FileInfo>, WireError> {
        let g = self.member_group(user, group)?;
        Ok(g.files
            .values()
            .map(|f| {
                let file = SharedRef {
                    group: group.clone(),
                    name: f.meta.name.clone(),
                };
                let listed = |h: &&'s UserId| !self.suspects.contains(h, &file);
                FileInfo {
                    name: f.meta.name.clone(),
                    size: f.meta.size,
                    sha1: f.meta.sha1,
                    holders: count(f.holders.len()),
                    online: count(
                        f.holders
                            .iter()
                            .filter(listed)
                            .filter(|h| is_online(h))
                            .count(),
                    ),
                }
            })
            .collect())
    }

    /// The file's metadata and everyone but `user` who holds it, except
    /// copies reported corrupt: complete holders first, then partial ones,
    /// each sorted by user id. Presence is the caller's business.
    ///
    /// # Errors
    /// `no_such_group`, `not_member`, `no_such_file`.
    pub fn locate(
        &self,
        user: &UserId,
        group: &GroupId,
        name: &FileName,
    ) -> Result<(FileMeta, Vec<Holder>), WireError> {
        let f = self.member_file(user, group, name)?;
        let complete = f.holders.iter().map(|u| Holder {
            user: u.clone(),
            complete: true,
        });
        let partial = f.partial.iter().map(|u| Holder {
            user: u.clone(),
            complete: false,
        });
        let file = SharedRef {
            group: group.clone(),
            name: name.clone(),
        };
        let holders = complete
            .chain(partial)
            .filter(|h| &h.user != user && !self.suspects.contains(&h.user, &file))
            .collect();
        Ok((FileMeta::clone(&f.meta), holders))
    }

    /// `user`'s copies reported corrupt, for it to re-hash.
    pub fn rechecks_of(&self, user: &UserId) -> Vec<SharedRef> {
        self.suspects.of(user)
    }

    /// Checks that `user` may ask for a ticket for `name` in `group`.
    ///
    /// # Errors
    /// `no_such_group`, `not_member`, `no_such_file`.
    pub fn check_file_access(
        &self,
        user: &UserId,
        group: &GroupId,
        name: &FileName,
    ) -> Result<(), WireError> {
        self.member_file(user, group, name).map(|_| ())
    }

    fn member_group(&self, user: &UserId, group: &GroupId) -> Result<&Group, WireError> {
        let g = self.groups.get(group).ok_or_else(|| no_such_group(group))?;
        if !g.is_member(user) {
            return Err(not_member(group));
        }
        Ok(g)
    }

    fn member_group_mut(
        &mut self,
        user: &UserId,
        group: &GroupId,
    ) -> Result<&mut Group, WireError> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| no_such_group(group))?;
        if !g.is_member(user) {
            return Err(not_member(group));
        }
        Ok(g)
    }

    fn member_file(
        &self,
        user: &UserId,
        group: &GroupId,
        name: &FileName,
    ) -> Result<&SharedFile, WireError> {
        self.member_group(user, group)?
            .files
            .get(name)
            .ok_or_else(|| no_such_file(group, name))
    }
}

fn not_owner(group: &GroupId) -> WireError {
    WireError::new(
        ErrorCode::NotOwner,
        format!("only the owner of group {group} can do that"),
    )
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::geometry::{piece_count, PIECE_SIZE_BYTES};
    use proto::raft::SeenPeer;
    use proto::tracker::DEDUP_WINDOW;

    fn u(s: &str) -> UserId {
        s.parse().unwrap()
    }
    fn g(s: &str) -> GroupId {
        s.parse().unwrap()
    }
    fn n(s: &str) -> FileName {
        s.parse().unwrap()
    }
    fn tok(user: &str) -> SessionToken {
        SessionToken(format!("tok-{user}"))
    }
    fn meta(name: &str, content: &[u8]) -> FileMeta {
        let size = content.len() as u64;
        FileMeta {
            name: n(name),
            size,
            sha1: p2p_sha1::of(content),
            piece_size: PIECE_SIZE_BYTES,
            pieces: vec![p2p_sha1::of(content); piece_count(size) as usize],
        }
    }

    fn code(r: Result<Applied, WireError>) -> ErrorCode {
        r.expect_err("command should be refused").code
    }

    #[test]
    fn a_repeated_request_id_is_applied_once_and_forgotten_after_the_window() {
        let mut s = with_users(&["a"]);
        let id = RequestId { client: 7, seq: 1 };
        let stamped = |at_ms, group: &str| Command::Dedup {
            request: id,
            at_ms,
            write: Box::new(Command::CreateGroup {
                token: tok("a"),
                group: g(group),
            }),
        };
        let first = s.apply(stamped(1_000, "g")).unwrap();
        // The repeat gets the first outcome, not group_exists.
        assert_eq!(s.apply(stamped(2_000, "g")).unwrap(), first);
        assert_eq!(s.remembered_requests(), 1);
        let window = u64::try_from(DEDUP_WINDOW.as_millis()).unwrap();
        let other = Command::Dedup {
            request: RequestId { client: 8, seq: 1 },
            at_ms: 1_001 + window,
            write: Box::new(Command::CreateGroup {
                token: tok("a"),
                group: g("h"),
            }),
        };
        s.apply(other).unwrap();
        assert_eq!(s.remembered_requests(), 1, "the old id expired");
        assert_eq!(
            code(s.apply(stamped(1_002 + window, "g"))),
            ErrorCode::GroupExists
        );
    }

    #[test]
    fn a_state_with_remembered_requests_survives_a_snapshot_round_trip() {
        // Snapshots are this state, binary (JSON before); struct-keyed maps
        // must not break either.
        let mut s = with_users(&["a"]);
        s.apply(Command::Dedup {
            request: RequestId { client: 7, seq: 1 },
            at_ms: 1_000,
            write: Box::new(Command::CreateGroup {
                token: tok("a"),
                group: g("g"),
            }),
        })
        .unwrap();
        // Presence too: socket addresses and optional keys.
        s.apply(Command::Presence {
            seen: vec![SeenPeer {
                user: u("a"),
                token: tok("a"),
                addr: "[::1]:4000".parse().unwrap(),
                at_ms: 1_500,
                key: Some("ab".into()),
            }],
        })
        .unwrap();
        let online = s.online_peer(&u("a"), 1_600, std::time::Duration::from_secs(60));
        assert!(online.is_some(), "presence applied");
        round_trips(&s);
    }

    /// A snapshot's cut is a clone: it must share the maps (so it is
    /// cheap under the lock) and never see the writes made after it.
    #[test]
    fn a_clone_shares_the_maps_and_later_writes_do_not_show_through() {
        let mut s = with_users(&["a", "b"]);
        create(&mut s, "a", "g");
        join_and_accept(&mut s, "a", "b", "g");
        for i in 0..200 {
            register(&mut s, "a", "g", meta(&format!("f{i}"), &[i as u8])).unwrap();
        }
        let cut = s.clone();
        assert!(cut.groups.ptr_eq(&s.groups) && cut.users.ptr_eq(&s.users));
        let files = |st: &TrackerState| st.groups[&g("g")].files.len();

        register(&mut s, "b", "g", meta("new", b"new")).unwrap();
        stop(&mut s, "a", "g", "f7").unwrap();
        s.apply(Command::LeaveGroup {
            token: tok("b"),
            group: g("g"),
        })
        .unwrap();
        s.apply(Command::CreateUser {
            user: u("c"),
            password_hash: "h".into(),
        })
        .unwrap();
        assert_eq!((files(&s), files(&cut)), (199, 200));
        assert!(cut.is_member(&u("b"), &g("g")) && !s.is_member(&u("b"), &g("g")));
        assert!(cut.user_exists(&u("a")) && !cut.user_exists(&u("c")));
        let f7 = cut.locate(&u("b"), &g("g"), &n("f7")).unwrap();
        assert_eq!(f7.1.len(), 1, "the cut still lists a's f7");
        // b's copy of "new" left with b: delisted in the state, never in the cut.
        assert_eq!(
            s.locate(&u("a"), &g("g"), &n("new")).unwrap_err().code,
            ErrorCode::NoSuchFile
        );
        assert_eq!(
            cut.locate(&u("a"), &g("g"), &n("new")).unwrap_err().code,
            ErrorCode::NoSuchFile
        );
    }

    /// `v` comes back equal from JSON and from the binary encoding.
    fn round_trips<T>(v: &T)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let json = serde_json::to_vec(v).expect("serialises to JSON");
        assert_eq!(&serde_json::from_slice::<T>(&json).expect("from JSON"), v);
        let bin = proto::codec::encode(v).expect("serialises to binary");
        assert_eq!(&proto::codec::decode::<T>(&bin).expect("from binary"), v);
    }

    /// A state with the given users created and logged in (token `tok-<user>`).
    fn with_users(users: &[&str]) -> TrackerState {
        let mut s = TrackerState::default();
        for name in users {
            s.apply(Command::CreateUser {
                user: u(name),
                password_hash: format!("hash-{name}"),
            })
            .unwrap();
            s.apply(Command::StartSession {
                user: u(name),
                token: tok(name),
            })
            .unwrap();
        }
        s
    }

    fn create(s: &mut TrackerState, user: &str, group: &str) {
        s.apply(Command::CreateGroup {
            token: tok(user),
            group: g(group),
        })
        .unwrap();
    }

    fn join_and_accept(s: &mut TrackerState, owner: &str, user: &str, group: &str) {
        s.apply(Command::JoinGroup {
            token: tok(user),
            group: g(group),
        })
        .unwrap();
        s.apply(Command::AcceptRequest {
            token: tok(owner),
            group: g(group),
            user: u(user),
        })
        .unwrap();
    }

    fn register(
        s: &mut TrackerState,
        user: &str,
        group: &str,
        m: FileMeta,
    ) -> Result<Applied, WireError> {
        s.apply(Command::RegisterFile {
            token: tok(user),
            group: g(group),
            meta: m,
        })
    }

    fn stop(
        s: &mut TrackerState,
        user: &str,
        group: &str,
        name: &str,
    ) -> Result<Applied, WireError> {
        s.apply(Command::StopShare {
            token: tok(user),
            group: g(group),
            name: n(name),
        })
    }

    fn leave(s: &mut TrackerState, user: &str, group: &str) -> Result<Applied, WireError> {
        s.apply(Command::LeaveGroup {
            token: tok(user),
            group: g(group),
        })
    }

    #[test]
    fn create_user_twice_is_user_exists() {
        let mut s = with_users(&["alice"]);
        let r = s.apply(Command::CreateUser {
            user: u("alice"),
            password_hash: "x".into(),
        });
        assert_eq!(code(r), ErrorCode::UserExists);
        assert_eq!(s.password_hash(&u("alice")), Some("hash-alice"));
    }

    #[test]
    fn a_new_session_ends_the_previous_one() {
        let mut s = with_users(&["alice"]);
        let applied = s
            .apply(Command::StartSession {
                user: u("alice"),
                token: SessionToken("second".into()),
            })
            .unwrap();
        assert_eq!(applied.message, "logged in as alice");
        assert_eq!(applied.session_changed, Some(u("alice")));
        assert_eq!(
            s.user_of(&tok("alice")).unwrap_err().code,
            ErrorCode::NotLoggedIn
        );
        assert_eq!(
            s.user_of(&SessionToken("second".into())).unwrap(),
            &u("alice")
        );
        assert_eq!(
            s.session_of(&u("alice")),
            Some(&SessionToken("second".into()))
        );
    }

    #[test]
    fn session_for_unknown_user_or_reused_token_is_refused() {
        let mut s = with_users(&["alice", "bob"]);
        let r = s.apply(Command::StartSession {
            user: u("nobody"),
            token: SessionToken("t".into()),
        });
        assert_eq!(code(r), ErrorCode::BadCredentials);
        let r = s.apply(Command::StartSession {
            user: u("bob"),
            token: tok("alice"),
        });
        assert_eq!(code(r), ErrorCode::InvalidArgument);
        assert_eq!(s.user_of(&tok("alice")).unwrap(), &u("alice"));
    }

    #[test]
    fn logout_ends_the_session_and_every_token_call_then_refuses() {
        let mut s = with_users(&["alice"]);
        let applied = s
            .apply(Command::EndSession {
                token: tok("alice"),
            })
            .unwrap();
        assert_eq!(applied.message, "logged out");
        assert_eq!(s.session_of(&u("alice")), None);
        let again = s.apply(Command::EndSession {
            token: tok("alice"),
        });
        assert_eq!(code(again), ErrorCode::NotLoggedIn);
        let token = tok("alice");
        let calls = [
            Command::CreateGroup {
                token: token.clone(),
                group: g("g"),
            },
            Command::JoinGroup {
                token: token.clone(),
                group: g("g"),
            },
            Command::LeaveGroup {
                token: token.clone(),
                group: g("g"),
            },
            Command::AcceptRequest {
                token: token.clone(),
                group: g("g"),
                user: u("bob"),
            },
            Command::RegisterFile {
                token: token.clone(),
                group: g("g"),
                meta: meta("f", b"x"),
            },
            Command::StopShare {
                token: token.clone(),
                group: g("g"),
                name: n("f"),
            },
            Command::MarkPartial {
                token,
                group: g("g"),
                name: n("f"),
            },
        ];
        for cmd in calls {
            assert_eq!(code(s.apply(cmd)), ErrorCode::NotLoggedIn);
        }
    }

    #[test]
    fn create_group_makes_the_caller_owner_and_refuses_duplicates() {
        let mut s = with_users(&["alice", "bob"]);
        create(&mut s, "alice", "g1");
        let r = s.apply(Command::CreateGroup {
            token: tok("bob"),
            group: g("g1"),
        });
        assert_eq!(code(r), ErrorCode::GroupExists);
        assert_eq!(
            s.list_groups(),
            vec![GroupInfo {
                group: g("g1"),
                owner: u("alice"),
                members: 1
            }]
        );
    }

    #[test]
    fn join_requests_are_idempotent_and_ordered() {
        let mut s = with_users(&["alice", "bob", "carol"]);
        create(&mut s, "alice", "g1");
        for who in ["carol", "bob", "carol"] {
            let a = s
                .apply(Command::JoinGroup {
                    token: tok(who),
                    group: g("g1"),
                })
                .unwrap();
            assert_eq!(a.message, "join request sent to group g1");
        }
        assert_eq!(
            s.list_requests(&u("alice"), &g("g1")).unwrap(),
            vec![u("carol"), u("bob")]
        );
        let r = s.apply(Command::JoinGroup {
            token: tok("alice"),
            group: g("g1"),
        });
        assert_eq!(code(r), ErrorCode::AlreadyMember);
        let r = s.apply(Command::JoinGroup {
            token: tok("bob"),
            group: g("nope"),
        });
        assert_eq!(code(r), ErrorCode::NoSuchGroup);
    }

    #[test]
    fn list_requests_is_for_the_owner_only() {
        let mut s = with_users(&["alice", "bob"]);
        create(&mut s, "alice", "g1");
        assert_eq!(
            s.list_requests(&u("bob"), &g("g1")).unwrap_err().code,
            ErrorCode::NotOwner
        );
        assert_eq!(
            s.list_requests(&u("bob"), &g("g2")).unwrap_err().code,
            ErrorCode::NoSuchGroup
        );
    }

    #[test]
    fn accept_request_refusals_and_success() {
        let mut s = with_users(&["alice", "bob", "carol"]);
        create(&mut s, "alice", "g1");
        s.apply(Command::JoinGroup {
            token: tok("bob"),
            group: g("g1"),
        })
        .unwrap();
        let accept = |s: &mut TrackerState, by: &str, group: &str, user: &str| {
            s.apply(Command::AcceptRequest {
                token: tok(by),
                group: g(group),
                user: u(user),
            })
        };
        assert_eq!(
            code(accept(&mut s, "alice", "g2", "bob")),
            ErrorCode::NoSuchGroup
        );
        assert_eq!(
            code(accept(&mut s, "carol", "g1", "bob")),
            ErrorCode::NotOwner
        );
        assert_eq!(
            code(accept(&mut s, "alice", "g1", "carol")),
            ErrorCode::NoSuchRequest
        );
        let a = accept(&mut s, "alice", "g1", "bob").unwrap();
        assert_eq!(a.message, "bob is now a member of g1");
        assert!(s.is_member(&u("bob"), &g("g1")));
        assert!(s.list_requests(&u("alice"), &g("g1")).unwrap().is_empty());
        assert_eq!(
            code(accept(&mut s, "alice", "g1", "bob")),
            ErrorCode::NoSuchRequest
        );
    }

    #[test]
    fn owner_leaving_hands_over_to_the_longest_standing_member() {
        let mut s = with_users(&["alice", "bob", "carol", "dave"]);
        create(&mut s, "alice", "g1");
        join_and_accept(&mut s, "alice", "carol", "g1");
        join_and_accept(&mut s, "alice", "bob", "g1");
        join_and_accept(&mut s, "alice", "dave", "g1");
        // carol joined before bob, so she inherits despite sorting after him.
        assert_eq!(
            leave(&mut s, "alice", "g1").unwrap().message,
            "left group g1"
        );
        assert_eq!(s.list_groups()[0].owner, u("carol"));
        assert_eq!(s.list_groups()[0].members, 3);
        // A non-owner leaving keeps the owner.
        leave(&mut s, "dave", "g1").unwrap();
        assert_eq!(s.list_groups()[0].owner, u("carol"));
        s.apply(Command::JoinGroup {
            token: tok("alice"),
            group: g("g1"),
        })
        .unwrap();
        assert_eq!(
            s.list_requests(&u("carol"), &g("g1")).unwrap(),
            vec![u("alice")]
        );
    }

    #[test]
    fn leave_refusals() {
        let mut s = with_users(&["alice", "bob"]);
        create(&mut s, "alice", "g1");
        assert_eq!(code(leave(&mut s, "bob", "g1")), ErrorCode::NotMember);
        assert_eq!(code(leave(&mut s, "bob", "g9")), ErrorCode::NoSuchGroup);
    }

    #[test]
    fn an_empty_group_is_deleted_with_its_files_and_requests() {
        let mut s = with_users(&["alice", "bob"]);
        create(&mut s, "alice", "g1");
        register(&mut s, "alice", "g1", meta("f", b"abc")).unwrap();
        s.apply(Command::JoinGroup {
            token: tok("bob"),
            group: g("g1"),
        })
        .unwrap();
        leave(&mut s, "alice", "g1").unwrap();
        assert!(s.list_groups().is_empty());
        // The name is free again, with no leftovers.
        create(&mut s, "bob", "g1");
        assert!(s
            .list_files(&u("bob"), &g("g1"), |_| true)
            .unwrap()
            .is_empty());
        assert!(s.list_requests(&u("bob"), &g("g1")).unwrap().is_empty());
    }

    #[test]
    fn leaving_drops_holdings_and_delists_orphaned_files() {
        let mut s = with_users(&["alice", "bob"]);
        create(&mut s, "alice", "g1");
        join_and_accept(&mut s, "alice", "bob", "g1");
        register(&mut s, "alice", "g1", meta("a", b"a")).unwrap();
        register(&mut s, "alice", "g1", meta("both", b"b")).unwrap();
        register(&mut s, "bob", "g1", meta("both", b"b")).unwrap();
        s.apply(Command::MarkPartial {
            token: tok("bob"),
            group: g("g1"),
            name: n("a"),
        })
        .unwrap();
        leave(&mut s, "alice", "g1").unwrap();
        let files = s.list_files(&u("bob"), &g("g1"), |_| true).unwrap();
        // "a" had only a partial holder left: delisted.
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, n("both"));
        assert_eq!(files[0].holders, 1);
    }

    #[test]
    fn member_only_operations_refuse_outsiders() {
        let mut s = with_users(&["alice", "eve"]);
        create(&mut s, "alice", "g1");
        register(&mut s, "alice", "g1", meta("f", b"x")).unwrap();
        assert_eq!(
            code(register(&mut s, "eve", "g1", meta("f", b"x"))),
            ErrorCode::NotMember
        );
        assert_eq!(
            code(register(&mut s, "eve", "g2", meta("f", b"x"))),
            ErrorCode::NoSuchGroup
        );
        let r = s.apply(Command::MarkPartial {
            token: tok("eve"),
            group: g("g1"),
            name: n("f"),
        });
        assert_eq!(code(r), ErrorCode::NotMember);
        let r = s.apply(Command::StopShare {
            token: tok("eve"),
            group: g("g1"),
            name: n("f"),
        });
        assert_eq!(code(r), ErrorCode::NotMember);
        assert_eq!(
            s.list_files(&u("eve"), &g("g1"), |_| true)
                .unwrap_err()
                .code,
            ErrorCode::NotMember
        );
        assert_eq!(
            s.list_files(&u("eve"), &g("g2"), |_| true)
                .unwrap_err()
                .code,
            ErrorCode::NoSuchGroup
        );
        assert_eq!(
            s.locate(&u("eve"), &g("g1"), &n("f")).unwrap_err().code,
            ErrorCode::NotMember
        );
        assert_eq!(
            s.check_file_access(&u("eve"), &g("g1"), &n("f"))
                .unwrap_err()
                .code,
            ErrorCode::NotMember
        );
    }

    #[test]
    fn register_file_checks_consistency_and_content() {
        let mut s = with_users(&["alice", "bob"]);
        create(&mut s, "alice", "g1");
        join_and_accept(&mut s, "alice", "bob", "g1");
        let mut bad = meta("f", b"x");
        bad.pieces.clear();
        assert_eq!(
            code(register(&mut s, "alice", "g1", bad)),
            ErrorCode::InvalidArgument
        );

        let a = register(&mut s, "alice", "g1", meta("f", b"x")).unwrap();
        assert_eq!(a.message, "f shared in g1");
        assert_eq!(
            code(register(&mut s, "bob", "g1", meta("f", b"y"))),
            ErrorCode::NameTaken
        );
        // Same content: another holder; again: idempotent.
        register(&mut s, "bob", "g1", meta("f", b"x")).unwrap();
        register(&mut s, "bob", "g1", meta("f", b"x")).unwrap();
        let files = s
            .list_files(&u("alice"), &g("g1"), |who| who.as_str() == "bob")
            .unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!((files[0].holders, files[0].online), (2, 1));
        // The empty file is a valid file with zero pieces.
        register(&mut s, "alice", "g1", meta("empty", b"")).unwrap();
    }

    #[test]
    fn files_and_groups_are_listed_sorted() {
        let mut s = with_users(&["alice"]);
        for group in ["zeta", "alpha", "mid"] {
            create(&mut s, "alice", group);
        }
        let groups: Vec<_> = s
            .list_groups()
            .into_iter()
            .map(|gi| gi.group.to_string())
            .collect();
        assert_eq!(groups, ["alpha", "mid", "zeta"]);
        for name in ["c.txt", "a.txt", "b.txt"] {
            register(&mut s, "alice", "mid", meta(name, name.as_bytes())).unwrap();
        }
        let names: Vec<_> = s
            .list_files(&u("alice"), &g("mid"), |_| false)
            .unwrap()
            .into_iter()
            .map(|f| f.name.to_string())
            .collect();
        assert_eq!(names, ["a.txt", "b.txt", "c.txt"]);
    }

    #[test]
    fn stop_share_refusals_and_delisting() {
        let mut s = with_users(&["alice", "bob"]);
        create(&mut s, "alice", "g1");
        join_and_accept(&mut s, "alice", "bob", "g1");
        register(&mut s, "alice", "g1", meta("f", b"x")).unwrap();
        let stop = |s: &mut TrackerState, who: &str, group: &str, name: &str| {
            s.apply(Command::StopShare {
                token: tok(who),
                group: g(group),
                name: n(name),
            })
        };
        assert_eq!(code(stop(&mut s, "bob", "g9", "f")), ErrorCode::NoSuchGroup);
        assert_eq!(
            code(stop(&mut s, "bob", "g1", "nope")),
            ErrorCode::NoSuchFile
        );
        assert_eq!(code(stop(&mut s, "bob", "g1", "f")), ErrorCode::NotHolder);
        // A partial holder may stop too; the file stays while alice holds it.
        s.apply(Command::MarkPartial {
            token: tok("bob"),
            group: g("g1"),
            name: n("f"),
        })
        .unwrap();
        stop(&mut s, "bob", "g1", "f").unwrap();
        assert_eq!(
            s.list_files(&u("bob"), &g("g1"), |_| true).unwrap().len(),
            1
        );
        let a = stop(&mut s, "alice", "g1", "f").unwrap();
        assert_eq!(a.message, "stopped sharing f in g1");
        assert!(s
            .list_files(&u("bob"), &g("g1"), |_| true)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_copy_reported_corrupt_is_unlisted_until_its_holder_registers_it_again() {
        let mut s = with_users(&["alice", "bob", "carol", "eve"]);
        create(&mut s, "alice", "g1");
        join_and_accept(&mut s, "alice", "bob", "g1");
        join_and_accept(&mut s, "alice", "carol", "g1");
        register(&mut s, "alice", "g1", meta("f", b"x")).unwrap();
        register(&mut s, "bob", "g1", meta("f", b"x")).unwrap();
        let report = |s: &mut TrackerState, who: &str, holder: &str| {
            s.apply(Command::ReportCorrupt {
                token: tok(who),
                group: g("g1"),
                name: n("f"),
                holder: u(holder),
            })
        };
        let located = |s: &TrackerState| -> Vec<String> {
            let (_, holders) = s.locate(&u("carol"), &g("g1"), &n("f")).unwrap();
            holders.iter().map(|h| h.user.to_string()).collect()
        };
        let online =
            |s: &TrackerState| s.list_files(&u("carol"), &g("g1"), |_| true).unwrap()[0].online;
        // Only a member can report, only a holder can be reported, and
        // nobody reports themselves.
        assert_eq!(code(report(&mut s, "eve", "bob")), ErrorCode::NotMember);
        assert_eq!(code(report(&mut s, "carol", "carol")), ErrorCode::NotHolder);
        assert_eq!(code(report(&mut s, "bob", "bob")), ErrorCode::NotHolder);
        assert_eq!(located(&s), ["alice", "bob"]);

        report(&mut s, "carol", "bob").unwrap();
        report(&mut s, "carol", "bob").unwrap();
        assert_eq!(located(&s), ["alice"]);
        assert_eq!(online(&s), 1, "the unlisted copy is not counted online");
        assert_eq!(
            s.list_files(&u("carol"), &g("g1"), |_| true).unwrap()[0].holders,
            2
        );
        let f1 = SharedRef {
            group: g("g1"),
            name: n("f"),
        };
        assert_eq!(s.rechecks_of(&u("bob")), std::slice::from_ref(&f1));
        assert!(s.rechecks_of(&u("alice")).is_empty());

        // A snapshot keeps the marks.
        round_trips(&s);

        // Registering again (after re-hashing) lists the copy again.
        register(&mut s, "bob", "g1", meta("f", b"x")).unwrap();
        assert_eq!(located(&s), ["alice", "bob"]);
        assert!(s.rechecks_of(&u("bob")).is_empty());

        // Stopping the share, or leaving the group, takes the mark along.
        report(&mut s, "carol", "bob").unwrap();
        stop(&mut s, "bob", "g1", "f").unwrap();
        assert!(s.rechecks_of(&u("bob")).is_empty());
        register(&mut s, "bob", "g1", meta("f", b"x")).unwrap();
        report(&mut s, "carol", "bob").unwrap();
        report(&mut s, "carol", "alice").unwrap();
        leave(&mut s, "bob", "g1").unwrap();
        assert!(s.rechecks_of(&u("bob")).is_empty());
        assert_eq!(s.rechecks_of(&u("alice")), [f1]);
        // A delisted file takes every mark of it along, partial holders' too.
        s.apply(Command::MarkPartial {
            token: tok("carol"),
            group: g("g1"),
            name: n("f"),
        })
        .unwrap();
        report(&mut s, "alice", "carol").unwrap();
        stop(&mut s, "alice", "g1", "f").unwrap();
        assert!(s.rechecks_of(&u("carol")).is_empty() && s.rechecks_of(&u("alice")).is_empty());
    }

    #[test]
    fn locate_lists_other_holders_complete_first() {
        let mut s = with_users(&["alice", "bob", "carol"]);
        create(&mut s, "alice", "g1");
        join_and_accept(&mut s, "alice", "bob", "g1");
        join_and_accept(&mut s, "alice", "carol", "g1");
        register(&mut s, "bob", "g1", meta("f", b"x")).unwrap();
        let mark = |s: &mut TrackerState, who: &str, name: &str| {
            s.apply(Command::MarkPartial {
                token: tok(who),
                group: g("g1"),
                name: n(name),
            })
        };
        assert_eq!(code(mark(&mut s, "alice", "nope")), ErrorCode::NoSuchFile);
        mark(&mut s, "alice", "f").unwrap();
        mark(&mut s, "carol", "f").unwrap();
        // A complete holder marking partial stays complete.
        mark(&mut s, "bob", "f").unwrap();
        let (m, holders) = s.locate(&u("carol"), &g("g1"), &n("f")).unwrap();
        assert_eq!(m, meta("f", b"x"));
        assert_eq!(
            holders,
            vec![
                Holder {
                    user: u("bob"),
                    complete: true
                },
                Holder {
                    user: u("alice"),
                    complete: false
                },
            ]
        );
        assert_eq!(
            s.locate(&u("carol"), &g("g1"), &n("nope"))
                .unwrap_err()
                .code,
            ErrorCode::NoSuchFile
        );
        // Finishing the download turns the partial holder into a complete one.
        register(&mut s, "alice", "g1", meta("f", b"x")).unwrap();
        let (_, holders) = s.locate(&u("carol"), &g("g1"), &n("f")).unwrap();
        assert!(holders.iter().all(|h| h.complete));
        assert_eq!(holders.len(), 2);
    }

    #[test]
    fn refused_commands_change_nothing() {
        let mut s = with_users(&["alice", "bob"]);
        create(&mut s, "alice", "g1");
        let before = s.clone();
        let refused = [
            Command::CreateGroup {
                token: tok("bob"),
                group: g("g1"),
            },
            Command::LeaveGroup {
                token: tok("bob"),
                group: g("g1"),
            },
            Command::AcceptRequest {
                token: tok("alice"),
                group: g("g1"),
                user: u("bob"),
            },
            Command::RegisterFile {
                token: tok("bob"),
                group: g("g1"),
                meta: meta("f", b"x"),
            },
        ];
        for cmd in refused {
            assert!(s.apply(cmd).is_err());
        }
        assert_eq!(s, before);
    }

    #[test]
    fn presence_is_stamped_data_and_follows_the_session() {
        let mut s = with_users(&["alice"]);
        let seen = |at_ms| SeenPeer {
            user: u("alice"),
            token: tok("alice"),
            addr: "127.0.0.1:7".parse().unwrap(),
            at_ms,
            key: None,
        };
        let timeout = std::time::Duration::from_secs(10);
        s.apply(Command::Presence {
            seen: vec![seen(1_000)],
        })
        .unwrap();
        assert!(s.online_peer(&u("alice"), 10_999, timeout).is_some());
        assert!(s.online_peer(&u("alice"), 11_000, timeout).is_none());
        // An older stamp arriving late does not move the clock back.
        s.apply(Command::Presence {
            seen: vec![seen(5_000), seen(2_000)],
        })
        .unwrap();
        assert_eq!(s.last_seen_ms(&u("alice"), &tok("alice")), Some(5_000));
        // Logout drops presence; a heartbeat of the ended session is ignored.
        s.apply(Command::EndSession {
            token: tok("alice"),
        })
        .unwrap();
        s.apply(Command::Presence {
            seen: vec![seen(6_000)],
        })
        .unwrap();
        assert!(s.online_peer(&u("alice"), 6_001, timeout).is_none());
    }

    #[test]
    fn the_ticket_secret_is_set_once() {
        let mut s = TrackerState::default();
        assert_eq!(s.ticket_secret(), None);
        for secret in ["first", "second"] {
            s.apply(Command::SetTicketSecret {
                secret: secret.into(),
            })
            .unwrap();
        }
        assert_eq!(s.ticket_secret(), Some("first"));
    }

    #[test]
    fn commands_round_trip_through_both_encodings() {
        let register = Command::RegisterFile {
            token: tok("a"),
            group: g("g1"),
            meta: meta("f", b"x"),
        };
        let json = serde_json::to_string(&register).unwrap();
        assert!(json.contains("\"cmd\":\"register_file\""), "{json}");
        let seen = |key: Option<&str>| SeenPeer {
            user: u("a"),
            token: tok("a"),
            addr: "127.0.0.1:9".parse().unwrap(),
            at_ms: 5,
            key: key.map(str::to_owned),
        };
        // Every shape a log entry takes: nested, batched, optional fields
        // left out.
        let batch = Command::Batch {
            writes: vec![
                Command::Dedup {
                    request: RequestId { client: 1, seq: 2 },
                    at_ms: 3,
                    write: Box::new(Command::Capped {
                        caps: Caps::default(),
                        write: Box::new(register.clone()),
                    }),
                },
                Command::Presence {
                    seen: vec![seen(None), seen(Some("ab"))],
                },
                Command::EndSession { token: tok("a") },
            ],
        };
        round_trips(&register);
        round_trips(&batch);
    }

    #[test]
    fn replaying_the_same_commands_gives_the_same_state() {
        let cmds = vec![
            Command::CreateUser {
                user: u("alice"),
                password_hash: "h".into(),
            },
            Command::StartSession {
                user: u("alice"),
                token: tok("alice"),
            },
            Command::CreateGroup {
                token: tok("alice"),
                group: g("g1"),
            },
            Command::RegisterFile {
                token: tok("alice"),
                group: g("g1"),
                meta: meta("f", b"x"),
            },
        ];
        let run = || {
            let mut s = TrackerState::default();
            for c in cmds.clone() {
                s.apply(c).unwrap();
            }
            serde_json::to_string(&s).unwrap()
        };
        assert_eq!(run(), run());
    }
}
