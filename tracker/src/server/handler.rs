//! One call: a [`TrackerRequest`] becomes either a read of the local replica
//! or a [`Command`] submitted to the cluster, and then an answer.
//!
//! Writes are built into a [`Command`] here (password hashed, token drawn,
//! clock read; never in `apply`) and answered once a majority has them.
//! Reads lock the local replica briefly, in plain functions over
//! [`TrackerState`]; no lock is held across an `.await`.
//!
//! A login passes the throttle (`throttle.rs`) before argon2 runs, and
//! every password check holds one of its source address's slots; writes
//! that grow the state go in wrapped in [`Command::Capped`].
//!
//! A write stamped with a request id (`dedup`) is wrapped in
//! [`Command::Dedup`], so a daemon retrying it on another tracker gets the
//! first outcome instead of applying it twice.

use super::throttle::{LoginThrottle, Source, Throttled, SLOT_WAIT};
use super::Shared;
use crate::clock::{now_ms, now_s};
use crate::passwords::{self, check_password, PasswordError};
use crate::raft::Cluster;
use crate::state::{Applied, Command, TrackerState, BAD_CREDENTIALS};
use crate::tokens;
use p2p_link::ticket::{self, Claim};
use p2p_link::PublicKey;
use proto::raft::SeenPeer;
use proto::tracker::{
    PeerEntry, RequestId, SessionToken, TrackerAnswer, TrackerCall, TrackerReply, TrackerRequest,
    PRESENCE_TIMEOUT,
};
use proto::{ErrorCode, FileName, GroupId, UserId, WireError, PROTOCOL_VERSION};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// How long a call waits for a freshly started replica to catch up before
/// it is answered `tracker_unavailable` (the daemon retries elsewhere).
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Answers one call. A lagging replica must not end a daemon's session:
/// a `not_logged_in` for a token this replica does not know becomes "try
/// again" unless the leader confirms the session is gone. `from`: the
/// caller's source address, for login throttling.
pub(super) async fn answer(
    shared: &Shared,
    call: TrackerCall,
    caller: &PublicKey,
    from: IpAddr,
) -> TrackerAnswer {
    // Right after a start the replica may lack writes already acknowledged.
    if !shared.cluster.caught_up(CATCH_UP_WAIT).await {
        return TrackerAnswer {
            id: call.id,
            result: Err(WireError::new(
                ErrorCode::TrackerUnavailable,
                "this tracker is catching up with the cluster after a start; try again",
            )),
        };
    }
    let token = call.request.token().cloned();
    let mut result = handle(shared, call.request, call.dedup, (caller, from.into())).await;
    if let (Err(e), Some(token)) = (&result, token) {
        let cluster = &shared.cluster;
        let own_session_unknown = cluster.state().user_of(&token).is_err();
        if e.code == ErrorCode::NotLoggedIn
            && own_session_unknown
            && cluster.session_live_on_leader(&token).await != Some(false)
        {
            result = Err(WireError::new(
                ErrorCode::TrackerUnavailable,
                "this tracker is catching up with the cluster; try again",
            ));
        }
    }
    TrackerAnswer {
        id: call.id,
        result,
    }
}

/// The reply to a `Hello` of protocol `version`, from tracker `node`.
///
/// # Errors
/// `invalid_argument` for another protocol version.
pub(super) fn welcome(
    version: u32,
    node: u32,
    ticket_key: &PublicKey,
) -> Result<TrackerReply, WireError> {
    if version != PROTOCOL_VERSION {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!(
                "protocol version {version} is not supported: this tracker speaks version {PROTOCOL_VERSION}"
            ),
        ));
    }
    Ok(TrackerReply::Welcome {
        version: PROTOCOL_VERSION,
        node,
        ticket_key: ticket_key.to_string(),
    })
}

/// Dispatches one request to its function. `caller`: the link key the
/// caller proved and its source.
async fn handle(
    shared: &Shared,
    request: TrackerRequest,
    dedup: Option<RequestId>,
    (caller, source): (&PublicKey, Source),
) -> Result<TrackerReply, WireError> {
    use TrackerRequest as R;
    let cluster = &*shared.cluster;
    let capped = |write| Command::Capped {
        caps: shared.caps,
        write: Box::new(write),
    };
    match request {
        R::Hello { version } => welcome(version, shared.node, &cluster.ticket_key().public()),
        R::CreateUser { user, password } => {
            let slot = HashSlot::take(shared, source).await?;
            let created = create_user(cluster, user, password, dedup).await;
            drop(slot);
            created
        }
        R::Login { user, password } => {
            let mut attempt = LoginAttempt::begin(shared, source, user).await?;
            login(cluster, &mut attempt, password).await
        }
        R::Heartbeat { token, peer_addr } => heartbeat(cluster, token, peer_addr, caller).await,
        R::Logout { token } => write(cluster, Command::EndSession { token }, dedup).await,
        R::CreateGroup { token, group } => {
            write(
                cluster,
                capped(Command::CreateGroup { token, group }),
                dedup,
            )
            .await
        }
        R::JoinGroup { token, group } => {
            write(cluster, capped(Command::JoinGroup { token, group }), dedup).await
        }
        R::LeaveGroup { token, group } => {
            write(cluster, Command::LeaveGroup { token, group }, dedup).await
        }
        R::AcceptRequest { token, group, user } => {
            let cmd = Command::AcceptRequest { token, group, user };
            write(cluster, cmd, dedup).await
        }
        R::RegisterFile { token, group, meta } => {
            let cmd = capped(Command::RegisterFile { token, group, meta });
            write(cluster, cmd, dedup).await
        }
        R::StopShare { token, group, name } => {
            write(cluster, Command::StopShare { token, group, name }, dedup).await
        }
        R::MarkPartial { token, group, name } => {
            write(cluster, Command::MarkPartial { token, group, name }, dedup).await
        }
        R::ReportCorrupt {
            token,
            group,
            name,
            holder,
        } => {
            let cmd = Command::ReportCorrupt {
                token,
                group,
                name,
                holder,
            };
            write(cluster, cmd, dedup).await
        }
        R::ListRequests { token, group } => list_requests(&cluster.state(), &token, &group),
        R::ListGroups { token } => list_groups(&cluster.state(), &token),
        R::ListFiles { token, group } => {
            let now = now_ms();
            list_files(&cluster.state(), &token, &group, now)
        }
        R::Locate { token, group, name } => {
            let now = now_ms();
            locate(&cluster.state(), &token, &group, &name, now)
        }
        R::IssueTicket { token, group, name } => {
            let claim = (group, name, *caller);
            issue_ticket(
                &cluster.state(),
                cluster.ticket_key(),
                &token,
                claim,
                now_s(),
            )
        }
    }
}

// ------------------------------------------------------------------ writes

/// Submits `cmd` (stamped with `dedup`, if any) and answers once durable.
async fn write(
    cluster: &Cluster,
    cmd: Command,
    dedup: Option<RequestId>,
) -> Result<TrackerReply, WireError> {
    let applied = cluster.submit(stamp(cmd, dedup)).await?;
    Ok(done(applied))
}

/// `cmd`, wrapped with its request id and this tracker's clock if stamped.
fn stamp(cmd: Command, dedup: Option<RequestId>) -> Command {
    match dedup {
        Some(request) => Command::Dedup {
            request,
            at_ms: now_ms(),
            write: Box::new(cmd),
        },
        None => cmd,
    }
}

fn done(applied: Applied) -> TrackerReply {
    TrackerReply::Done {
        message: applied.message,
    }
}

async fn create_user(
    cluster: &Cluster,
    user: UserId,
    password: String,
    dedup: Option<RequestId>,
) -> Result<TrackerReply, WireError> {
    check_password(&password)?;
    // Cheap early refusal; apply() checks again, atomically. Not for a
    // stamped call: it may be the retry of our own success.
    if dedup.is_none() && cluster.state().user_exists(&user) {
        return Err(WireError::new(
            ErrorCode::UserExists,
            format!("user {user} already exists"),
        ));
    }
    let password_hash = passwords::hash_password(password)
        .await
        .map_err(|e| password_failed(&e, "hashing the password"))?;
    let cmd = Command::CreateUser {
        user,
        password_hash,
    };
    write(cluster, cmd, dedup).await
}

/// A login the throttle admitted; `attempt` learns whether the password
/// was right.
async fn login(
    cluster: &Cluster,
    attempt: &mut LoginAttempt<'_>,
    password: String,
) -> Result<TrackerReply, WireError> {
    check_password(&password)?;
    let user = attempt.user.clone();
    let stored = cluster.state().password_hash(&user).map(str::to_owned);
    let matches = passwords::verify_password(password, stored)
        .await
        .map_err(|e| password_failed(&e, "checking the password"))?;
    attempt.judged = Some(matches);
    if !matches {
        return Err(WireError::new(ErrorCode::BadCredentials, BAD_CREDENTIALS));
    }
    let token = tokens::session_token();
    let cmd = Command::StartSession {
        user,
        token: token.clone(),
    };
    cluster.submit(cmd).await?;
    Ok(TrackerReply::LoggedIn { token })
}

async fn heartbeat(
    cluster: &Cluster,
    token: SessionToken,
    peer_addr: SocketAddr,
    caller: &PublicKey,
) -> Result<TrackerReply, WireError> {
    let user = cluster.state().user_of(&token)?.clone();
    // A heartbeat racing with a logout may land after it; presence only
    // counts it while `token` is still the user's session.
    let seen = SeenPeer {
        user: user.clone(),
        token,
        addr: peer_addr,
        at_ms: now_ms(),
        key: Some(caller.to_string()),
    };
    cluster.heartbeat(seen).await;
    let recheck = cluster.state().rechecks_of(&user);
    Ok(TrackerReply::Alive { user, recheck })
}

// -------------------------------------------------------------- throttling

fn locked(throttle: &Mutex<LoginThrottle>) -> MutexGuard<'_, LoginThrottle> {
    // The throttle's counts stay coherent whatever panicked while holding
    // it (each change is one small step): keep using them.
    throttle.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `take` on the throttle until it admits the call or refuses it for
/// a reason other than [`Throttled::Busy`]; while the address's slots are
/// all taken, waits for one to be given back, at most [`SLOT_WAIT`]. So an
/// honest burst from one host queues briefly instead of being refused,
/// while a flood holds no more than its address's slots.
async fn admitted(
    shared: &Shared,
    mut take: impl FnMut(&mut LoginThrottle) -> Result<(), Throttled>,
) -> Result<(), WireError> {
    let deadline = tokio::time::Instant::now() + SLOT_WAIT;
    loop {
        // Registered before trying, so a slot freed in between still wakes
        // us.
        let freed = shared.slot_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        match take(&mut locked(&shared.throttle)) {
            Err(Throttled::Busy) => {}
            other => return other.map_err(WireError::from),
        }
        if tokio::time::timeout_at(deadline, freed).await.is_err() {
            return Err(Throttled::Busy.into());
        }
    }
}

/// A login admitted by the throttle. Dropping it reports the outcome, so a
/// call that fails or is cancelled midway still gives its slot back.
struct LoginAttempt<'a> {
    shared: &'a Shared,
    source: Source,
    user: UserId,
    /// Whether the password was right, once argon2 has said.
    judged: Option<bool>,
}

impl<'a> LoginAttempt<'a> {
    /// # Errors
    /// `rate_limited`, with the time to retry.
    async fn begin(shared: &'a Shared, source: Source, user: UserId) -> Result<Self, WireError> {
        admitted(shared, |t| t.begin_login(&user, source, Instant::now())).await?;
        Ok(LoginAttempt {
            shared,
            source,
            user,
            judged: None,
        })
    }
}

impl Drop for LoginAttempt<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        locked(&self.shared.throttle).finish_login(&self.user, self.source, self.judged, now);
        self.shared.slot_freed.notify_waiters();
    }
}

/// One of an address's argon2 slots, for `create_user`; given back on drop.
struct HashSlot<'a> {
    shared: &'a Shared,
    source: Source,
}

impl<'a> HashSlot<'a> {
    /// # Errors
    /// `rate_limited` when the address's slots stay taken.
    async fn take(shared: &'a Shared, source: Source) -> Result<Self, WireError> {
        admitted(shared, |t| t.begin_hash(source)).await?;
        Ok(HashSlot { shared, source })
    }
}

impl Drop for HashSlot<'_> {
    fn drop(&mut self) {
        locked(&self.shared.throttle).end_hash(self.source);
        self.shared.slot_freed.notify_waiters();
    }
}

// ------------------------------------------------------------------- reads

fn list_requests(
    st: &TrackerState,
    token: &SessionToken,
    group: &GroupId,
) -> Result<TrackerReply, WireError> {
    let user = st.user_of(token)?;
    Ok(TrackerReply::Users {
        users: st.list_requests(user, group)?,
    })
}

fn list_groups(st: &TrackerState, token: &SessionToken) -> Result<TrackerReply, WireError> {
    st.user_of(token)?;
    Ok(TrackerReply::Groups {
        groups: st.list_groups(),
    })
}

/// `now_ms`: this tracker's clock, against which presence stamps are aged.
fn list_files(
    st: &TrackerState,
    token: &SessionToken,
    group: &GroupId,
    now_ms: u64,
) -> Result<TrackerReply, WireError> {
    let user = st.user_of(token)?;
    // The same few members hold most files: look each up once.
    let mut online: HashMap<&UserId, bool> = HashMap::new();
    let files = st.list_files(user, group, |holder| {
        *online
            .entry(holder)
            .or_insert_with(|| st.online_peer(holder, now_ms, PRESENCE_TIMEOUT).is_some())
    })?;
    Ok(TrackerReply::Files { files })
}

/// The file and its online holders (complete ones first), as of `now_ms`,
/// each with the link key it proved (one heard of only through a log older
/// than keys is left out until its next heartbeat).
fn locate(
    st: &TrackerState,
    token: &SessionToken,
    group: &GroupId,
    name: &FileName,
    now_ms: u64,
) -> Result<TrackerReply, WireError> {
    let user = st.user_of(token)?;
    let (meta, holders) = st.locate(user, group, name)?;
    let peers = holders
        .into_iter()
        .filter_map(|h| {
            let online = st.online_peer(&h.user, now_ms, PRESENCE_TIMEOUT)?;
            Some(PeerEntry {
                user: h.user,
                addr: online.addr,
                complete: h.complete,
                key: online.key?.to_owned(),
            })
        })
        .collect();
    Ok(TrackerReply::Located { meta, peers })
}

/// A ticket for the caller's user to fetch `name` over links keyed by
/// `requester` (the key the caller proved on this connection).
fn issue_ticket(
    st: &TrackerState,
    key: &p2p_link::KeyPairDoc,
    token: &SessionToken,
    (group, name, requester): (GroupId, FileName, PublicKey),
    now_s: u64,
) -> Result<TrackerReply, WireError> {
    let user = st.user_of(token)?;
    st.check_file_access(user, &group, &name)?;
    let claim = Claim {
        user,
        group: &group,
        file: &name,
        requester: &requester,
    };
    Ok(TrackerReply::Ticket {
        ticket: ticket::issue(key, &claim, now_s),
    })
}

// ------------------------------------------------------------------ errors

/// An argon2 failure, logged here and answered as the tracker's fault; a
/// full queue is answered `rate_limited`.
fn password_failed(error: &PasswordError, what: &str) -> WireError {
    if let PasswordError::Busy = error {
        return WireError::new(
            ErrorCode::RateLimited,
            "the tracker is busy checking passwords; retry in 1 s",
        );
    }
    if let PasswordError::Argon2(e) = error {
        tracing::error!(error = %e, "argon2 failed while {what}");
    }
    WireError::new(
        ErrorCode::Io,
        format!("the tracker failed while {what}; see its log"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::geometry::{piece_count, PIECE_SIZE_BYTES};
    use proto::tracker::FileMeta;

    #[test]
    fn hello_checks_the_version() {
        assert!(matches!(
            welcome(PROTOCOL_VERSION, 2, &PublicKey([1; 32])),
            Ok(TrackerReply::Welcome { node: 2, .. })
        ));
        let err = welcome(PROTOCOL_VERSION + 1, 1, &PublicKey([1; 32])).unwrap_err();
        assert!(err.message.contains("not supported"), "{}", err.message);
    }

    #[test]
    fn a_stamped_write_is_wrapped_with_its_request_id() {
        let cmd = Command::SetTicketSecret { secret: "k".into() };
        assert_eq!(stamp(cmd.clone(), None), cmd);
        let id = RequestId { client: 1, seq: 2 };
        match stamp(cmd.clone(), Some(id)) {
            Command::Dedup {
                request,
                at_ms,
                write,
            } => {
                assert_eq!((request, *write), (id, cmd));
                assert!(at_ms > 0);
            }
            other => panic!("{other:?}"),
        }
    }

    fn tok(user: &str) -> SessionToken {
        SessionToken(format!("tok-{user}"))
    }

    /// alice owns g with file f; bob is a member holding it; carol is not
    /// a member. Everyone is logged in; bob was heard at t=1000 ms.
    fn state() -> TrackerState {
        let mut st = TrackerState::default();
        let ok = |st: &mut TrackerState, cmd| st.apply(cmd).unwrap();
        for user in ["alice", "bob", "carol"] {
            let user: UserId = user.parse().unwrap();
            let password_hash = "h".into();
            ok(
                &mut st,
                Command::CreateUser {
                    user: user.clone(),
                    password_hash,
                },
            );
            ok(
                &mut st,
                Command::StartSession {
                    token: tok(user.as_str()),
                    user,
                },
            );
        }
        let g: GroupId = "g".parse().unwrap();
        ok(
            &mut st,
            Command::CreateGroup {
                token: tok("alice"),
                group: g.clone(),
            },
        );
        ok(
            &mut st,
            Command::JoinGroup {
                token: tok("bob"),
                group: g.clone(),
            },
        );
        let (token, group, user) = (tok("alice"), g.clone(), "bob".parse().unwrap());
        ok(&mut st, Command::AcceptRequest { token, group, user });
        let meta = FileMeta {
            name: "f".parse().unwrap(),
            size: 10,
            sha1: p2p_sha1::of(b"x"),
            piece_size: PIECE_SIZE_BYTES,
            pieces: vec![p2p_sha1::of(b"x"); piece_count(10) as usize],
        };
        ok(
            &mut st,
            Command::RegisterFile {
                token: tok("bob"),
                group: g,
                meta,
            },
        );
        let seen = vec![SeenPeer {
            user: "bob".parse().unwrap(),
            token: tok("bob"),
            addr: "127.0.0.1:7000".parse().unwrap(),
            at_ms: 1000,
            key: Some("b0".repeat(32)),
        }];
        ok(&mut st, Command::Presence { seen });
        st
    }

    #[test]
    fn a_holder_without_a_proved_key_is_not_located() {
        // Presence replayed from a log older than link keys: bob is online
        // but no downloader could check him, so he is left out.
        let mut st = state();
        let seen = vec![SeenPeer {
            user: "bob".parse().unwrap(),
            token: tok("bob"),
            addr: "127.0.0.1:7000".parse().unwrap(),
            at_ms: 1001,
            key: None,
        }];
        st.apply(Command::Presence { seen }).unwrap();
        let (g, f) = ("g".parse().unwrap(), "f".parse().unwrap());
        match locate(&st, &tok("alice"), &g, &f, 1001).unwrap() {
            TrackerReply::Located { peers, .. } => assert!(peers.is_empty(), "{peers:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_age_presence_by_the_given_clock() {
        let (st, g, f) = (state(), "g".parse().unwrap(), "f".parse().unwrap());
        let online = |now| match list_files(&st, &tok("alice"), &g, now).unwrap() {
            TrackerReply::Files { files } => (files[0].holders, files[0].online),
            other => panic!("{other:?}"),
        };
        assert_eq!(online(1000), (1, 1));
        let timeout = u64::try_from(PRESENCE_TIMEOUT.as_millis()).unwrap();
        assert_eq!(online(1000 + timeout), (1, 0));
        match locate(&st, &tok("alice"), &g, &f, 1000).unwrap() {
            TrackerReply::Located { peers, .. } => {
                assert_eq!(peers.len(), 1);
                assert_eq!(peers[0].addr, "127.0.0.1:7000".parse().unwrap());
                assert_eq!(peers[0].key, "b0".repeat(32), "the key bob proved");
            }
            other => panic!("{other:?}"),
        }
        let err = locate(&st, &tok("carol"), &g, &f, 1000).unwrap_err();
        assert_eq!(err.code, ErrorCode::NotMember);
        let err = list_groups(&st, &tok("nobody")).unwrap_err();
        assert_eq!(err.code, ErrorCode::NotLoggedIn);
        assert!(matches!(
            list_requests(&st, &tok("alice"), &g),
            Ok(TrackerReply::Users { users }) if users.is_empty()
        ));
    }

    #[test]
    fn a_ticket_names_the_member_the_file_and_the_callers_link_key() {
        let (mut st, g, f): (_, GroupId, FileName) =
            (state(), "g".parse().unwrap(), "f".parse().unwrap());
        let cluster_key = p2p_link::ClusterKey::generate().unwrap();
        let key = cluster_key.ticket_key();
        let link = p2p_link::KeyPairDoc::generate().unwrap().public();
        let ask = |st: &TrackerState, user| {
            issue_ticket(st, &key, &tok(user), (g.clone(), f.clone(), link), 100)
        };
        let ticket = match ask(&st, "alice").unwrap() {
            TrackerReply::Ticket { ticket } => ticket,
            other => panic!("{other:?}"),
        };
        let alice: UserId = "alice".parse().unwrap();
        let claim = Claim {
            user: &alice,
            group: &g,
            file: &f,
            requester: &link,
        };
        assert!(ticket::check(&key.public(), &ticket, &claim, 100).is_ok());
        let other_link = p2p_link::KeyPairDoc::generate().unwrap().public();
        let elsewhere = Claim {
            requester: &other_link,
            ..claim
        };
        assert!(ticket::check(&key.public(), &ticket, &elsewhere, 100).is_err());
        assert_eq!(ask(&st, "carol").unwrap_err().code, ErrorCode::NotMember);
        st.apply(Command::EndSession {
            token: tok("alice"),
        })
        .unwrap();
        assert_eq!(ask(&st, "alice").unwrap_err().code, ErrorCode::NotLoggedIn);
    }
}
