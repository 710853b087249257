//! Caps on what one user can make the state hold, and on listings: groups
//! owned, pending join requests, groups in all (so `list_groups`, sent to
//! every user, stays far below a frame limit), requests per group and
//! files per group (so `list_requests` and `list_files` do too).
//!
//! Caps travel in the log: the handler wraps a write that could grow the
//! state in [`Command::Capped`] with the caps in force, and `apply` refuses
//! it if applying it would go past them. So every replica agrees, and an
//! old log, whose commands carry no caps, replays exactly as it was
//! acknowledged: a state that already exceeds a cap stays as is, and only
//! new creations are refused.
//!
//! A refusal is `invalid_argument` with a sentence saying the limit and
//! what to do about it.

use super::{Command, TrackerState};
use proto::{ErrorCode, GroupId, UserId, WireError};
use serde::{Deserialize, Serialize};

/// The limits a capped write is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caps {
    /// Groups one user may own (only creating counts: a group inherited
    /// when its owner leaves is never refused).
    pub groups_owned: u32,
    /// Join requests one user may have pending, across groups.
    pub pending_requests: u32,
    /// Groups in all: a `list_groups` entry is at most ~180 bytes of JSON,
    /// so 10,000 of them are under 2 MiB.
    pub groups: u32,
    /// Pending join requests of one group.
    pub requests_per_group: u32,
    /// Files listed in one group (an entry of `list_files` is at most
    /// ~400 bytes).
    pub files_per_group: u32,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            groups_owned: 64,
            pending_requests: 64,
            groups: 10_000,
            requests_per_group: 10_000,
            files_per_group: 10_000,
        }
    }
}

fn refused(message: String) -> WireError {
    WireError::new(ErrorCode::InvalidArgument, message)
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl TrackerState {
    /// Refuses `write` if applying it would go past `caps`. A write that
    /// will be refused for another reason (not logged in, no such group,
    /// a group that exists) passes here and meets that refusal in `apply`.
    ///
    /// # Errors
    /// `invalid_argument`, naming the limit.
    pub(super) fn check_caps(&self, caps: &Caps, write: &Command) -> Result<(), WireError> {
        match write {
            Command::CreateGroup { token, group } => {
                let Ok(user) = self.user_of(token) else {
                    return Ok(());
                };
                if self.groups.contains_key(group) {
                    return Ok(());
                }
                self.check_group_caps(caps, user)
            }
            Command::JoinGroup { token, group } => {
                let Ok(user) = self.user_of(token) else {
                    return Ok(());
                };
                self.check_request_caps(caps, user, group)
            }
            Command::RegisterFile { group, meta, .. } => {
                let Some(g) = self.groups.get(group) else {
                    return Ok(());
                };
                if g.files.contains_key(&meta.name)
                    || count(g.files.len()) < u64::from(caps.files_per_group)
                {
                    return Ok(());
                }
                Err(refused(format!(
                    "group {group} already lists {} files, the most allowed; stop sharing some first",
                    caps.files_per_group
                )))
            }
            _ => Ok(()),
        }
    }

    fn check_group_caps(&self, caps: &Caps, user: &UserId) -> Result<(), WireError> {
        // A scan: creating a group is rare, and at most `groups` long.
        let owned = self.groups.values().filter(|g| g.owner() == user).count();
        if count(owned) >= u64::from(caps.groups_owned) {
            return Err(refused(format!(
                "you own {owned} groups, the most allowed ({}); leave one you own before creating another",
                caps.groups_owned
            )));
        }
        if count(self.groups.len()) >= u64::from(caps.groups) {
            return Err(refused(format!(
                "the tracker holds {} groups, the most allowed; join an existing group instead",
                caps.groups
            )));
        }
        Ok(())
    }

    fn check_request_caps(
        &self,
        caps: &Caps,
        user: &UserId,
        group: &GroupId,
    ) -> Result<(), WireError> {
        let Some(g) = self.groups.get(group) else {
            return Ok(());
        };
        // Already a member (refused in apply) or already asked (a repeat
        // changes nothing): no new request.
        if g.is_member(user) || g.requests.contains(user) {
            return Ok(());
        }
        let pending = self
            .groups
            .values()
            .filter(|g| g.requests.contains(user))
            .count();
        if count(pending) >= u64::from(caps.pending_requests) {
            return Err(refused(format!(
                "you have {pending} pending join requests, the most allowed ({}); wait for some to be accepted",
                caps.pending_requests
            )));
        }
        if count(g.requests.len()) >= u64::from(caps.requests_per_group) {
            return Err(refused(format!(
                "group {group} has {} pending join requests, the most allowed; ask its owner to accept some",
                caps.requests_per_group
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::geometry::{piece_count, PIECE_SIZE_BYTES};
    use proto::tracker::{FileMeta, SessionToken};

    const SMALL: Caps = Caps {
        groups_owned: 2,
        pending_requests: 2,
        groups: 4,
        requests_per_group: 2,
        files_per_group: 2,
    };

    fn tok(user: &str) -> SessionToken {
        SessionToken(format!("tok-{user}"))
    }

    /// A state where each of `users` has an account and a session.
    fn with_users(users: &[&str]) -> TrackerState {
        let mut st = TrackerState::default();
        for user in users {
            let user: UserId = user.parse().unwrap();
            let password_hash = "h".into();
            st.apply(Command::CreateUser {
                user: user.clone(),
                password_hash,
            })
            .unwrap();
            st.apply(Command::StartSession {
                token: tok(user.as_str()),
                user,
            })
            .unwrap();
        }
        st
    }

    fn capped(write: Command) -> Command {
        Command::Capped {
            caps: SMALL,
            write: Box::new(write),
        }
    }

    fn create(user: &str, group: &str) -> Command {
        Command::CreateGroup {
            token: tok(user),
            group: group.parse().unwrap(),
        }
    }

    fn join(user: &str, group: &str) -> Command {
        Command::JoinGroup {
            token: tok(user),
            group: group.parse().unwrap(),
        }
    }

    fn register(user: &str, group: &str, name: &str) -> Command {
        Command::RegisterFile {
            token: tok(user),
            group: group.parse().unwrap(),
            meta: FileMeta {
                name: name.parse().unwrap(),
                size: 1,
                sha1: p2p_sha1::of(b"x"),
                piece_size: PIECE_SIZE_BYTES,
                pieces: vec![p2p_sha1::of(b"x"); piece_count(1) as usize],
            },
        }
    }

    fn refusal(st: &mut TrackerState, cmd: Command) -> String {
        let before = st.clone();
        let e = st.apply(cmd).expect_err("over the cap");
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert_eq!(*st, before, "a refused command changes nothing");
        e.message
    }

    #[test]
    fn groups_owned_are_capped_and_old_commands_replay_uncapped() {
        let mut st = with_users(&["alice"]);
        st.apply(capped(create("alice", "g1"))).unwrap();
        st.apply(capped(create("alice", "g2"))).unwrap();
        let msg = refusal(&mut st, capped(create("alice", "g3")));
        assert!(
            msg.starts_with("you own 2 groups, the most allowed"),
            "{msg}"
        );
        // A bare command, as logged before caps existed, is applied as it
        // was acknowledged then: the state may exceed the cap...
        st.apply(create("alice", "g3")).unwrap();
        // ... and stays as is, while new creations are still refused.
        let msg = refusal(&mut st, capped(create("alice", "g4")));
        assert!(msg.starts_with("you own 3 groups"), "{msg}");
        // Other refusals keep their own codes.
        let e = st.apply(capped(create("alice", "g1"))).unwrap_err();
        assert_eq!(e.code, ErrorCode::GroupExists);
        let e = st.apply(capped(create("nobody", "g9"))).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotLoggedIn);
    }

    #[test]
    fn groups_in_all_are_capped() {
        let mut st = with_users(&["a", "b", "c"]);
        for (user, group) in [("a", "g1"), ("a", "g2"), ("b", "g3"), ("b", "g4")] {
            st.apply(capped(create(user, group))).unwrap();
        }
        let msg = refusal(&mut st, capped(create("c", "g5")));
        assert!(
            msg.starts_with("the tracker holds 4 groups, the most allowed"),
            "{msg}"
        );
    }

    #[test]
    fn pending_requests_are_capped_per_user_and_per_group() {
        let mut st = with_users(&["owner", "bob", "carol", "dave"]);
        st.apply(create("owner", "g1")).unwrap();
        st.apply(create("owner", "g2")).unwrap();
        st.apply(create("owner", "g3")).unwrap();
        st.apply(capped(join("bob", "g1"))).unwrap();
        st.apply(capped(join("bob", "g2"))).unwrap();
        // Asking again is no new request.
        st.apply(capped(join("bob", "g2"))).unwrap();
        let msg = refusal(&mut st, capped(join("bob", "g3")));
        assert!(
            msg.starts_with("you have 2 pending join requests, the most allowed"),
            "{msg}"
        );
        // An accepted request frees a place.
        let accept = Command::AcceptRequest {
            token: tok("owner"),
            group: "g1".parse().unwrap(),
            user: "bob".parse().unwrap(),
        };
        st.apply(accept).unwrap();
        st.apply(capped(join("bob", "g3"))).unwrap();
        // g3 now has bob's request; carol's fills it.
        st.apply(capped(join("carol", "g3"))).unwrap();
        let msg = refusal(&mut st, capped(join("dave", "g3")));
        assert!(
            msg.starts_with("group g3 has 2 pending join requests"),
            "{msg}"
        );
    }

    #[test]
    fn files_per_group_are_capped() {
        let mut st = with_users(&["alice", "bob"]);
        st.apply(create("alice", "g")).unwrap();
        st.apply(capped(register("alice", "g", "f1"))).unwrap();
        st.apply(capped(register("alice", "g", "f2"))).unwrap();
        // The same file again (another holder, a re-announce) is no new
        // entry.
        st.apply(capped(register("alice", "g", "f2"))).unwrap();
        let msg = refusal(&mut st, capped(register("alice", "g", "f3")));
        assert!(msg.starts_with("group g already lists 2 files"), "{msg}");
    }

    #[test]
    fn capped_commands_travel_in_the_log() {
        let cmd = Command::Dedup {
            request: proto::tracker::RequestId { client: 1, seq: 2 },
            at_ms: 3,
            write: Box::new(capped(create("alice", "g1"))),
        };
        let json = serde_json::to_string(&cmd).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), cmd);
        // An entry written before caps existed still decodes, bare.
        let old = r#"{"cmd":"create_group","token":"tok-alice","group":"g1"}"#;
        assert_eq!(
            serde_json::from_str::<Command>(old).unwrap(),
            create("alice", "g1")
        );
    }
}
