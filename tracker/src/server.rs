//! The tracker's network side: accept loop, one task per connection, one
//! task per call.
//!
//! Each connection task owns its socket. Its reader decodes
//! [`TrackerCall`] frames and spawns a task per call, so a slow argon2 login
//! never holds up a heartbeat; a writer task fed by an `mpsc` channel writes
//! the [`TrackerAnswer`]s in whatever order they finish. A bad frame ends that
//! connection only, after an `invalid_argument` answer where one can still be
//! written.
//!
//! The first frame of a connection tells a daemon (a `Hello` call) from a
//! peer tracker (a `PeerHello`); peer connections are handed to
//! [`crate::raft::network::serve_peer`]. Reads lock the local replica
//! briefly; no lock is held across an `.await`. Writes go through
//! [`Cluster::submit`] and are answered once a majority has them.
//!
//! Shutdown: the trigger stops the accept loop and every reader; calls already
//! read run to completion (a write is answered once durable), writers flush,
//! and [`run`] waits for all of it up to [`ServerOptions::shutdown_deadline`].

use crate::clock::{now_ms, now_s};
use crate::raft::Cluster;
use crate::state::{Applied, Command, BAD_CREDENTIALS};
use crate::{tickets, tokens};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use proto::frame::{read_frame, write_json, FrameError, MAX_TRACKER_FRAME_BYTES};
use proto::raft::SeenPeer;
use proto::tracker::{
    PeerEntry, RequestId, TrackerAnswer, TrackerCall, TrackerReply, TrackerRequest,
    PRESENCE_TIMEOUT,
};
use proto::{ErrorCode, UserId, WireError, PROTOCOL_VERSION};
use rand::rngs::OsRng;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest password accepted, in bytes: enough for any passphrase, small
/// enough that hashing it cannot be used to burn CPU.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Largest first frame: a hello is tiny, and a stranger should not make us
/// reserve the 64 MiB a registration may need.
const MAX_HELLO_FRAME_BYTES: u32 = 4096;
/// Calls of one connection handled at once; the reader waits beyond that,
/// which pushes back on a client that floods without reading answers.
const MAX_CALLS_IN_FLIGHT: usize = 64;
/// Answers queued for one connection's writer.
const ANSWER_QUEUE: usize = 64;
/// A client that does not read its answers for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest part of a decode error echoed back, so hostile input is not
/// mirrored by the megabyte.
const MAX_ECHOED_ERROR_CHARS: usize = 200;

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// This tracker's number (1-based line of tracker_info.txt), sent in
    /// `Welcome`.
    pub node: u32,
    /// How long a graceful stop may take before [`run`] gives up.
    pub shutdown_deadline: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            node: 1,
            shutdown_deadline: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("connections still busy {0:?} after the stop was requested")]
    ShutdownTimeout(Duration),
}

/// What every connection shares.
struct Shared {
    cluster: Arc<Cluster>,
    node: u32,
}

/// Serves tracker connections on `listener` until `shutdown` completes, then
/// stops gracefully.
///
/// # Errors
/// [`ServerError::ShutdownTimeout`] if connections are still busy after the
/// deadline (the caller should exit non-zero).
pub async fn run(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let shared = Arc::new(Shared {
        cluster,
        node: options.node,
    });
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    tokio::pin!(shutdown);
    // Compute the dummy hash now, so the first login of an unknown user is
    // not slower than a wrong password (and does not reveal itself).
    drop(tokio::spawn(on_hash_thread(dummy_hash)));

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let conn = Connection {
                        shared: Arc::clone(&shared),
                        peer,
                        cancel: cancel.child_token(),
                        tasks: tasks.clone(),
                    };
                    tasks.spawn(conn.serve(socket));
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of
                    // spinning, and keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }

    tracing::info!("stopping: no new connections; finishing calls in flight");
    drop(listener);
    cancel.cancel();
    tasks.close();
    drop(shared);
    tokio::time::timeout(options.shutdown_deadline, tasks.wait())
        .await
        .map_err(|_| ServerError::ShutdownTimeout(options.shutdown_deadline))
}

struct Connection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// Why a connection's reader stopped.
enum Ending {
    /// Clean end of stream, shutdown, or the writer went away.
    Quiet,
    /// A protocol violation: answer (where possible) and close.
    Refused { id: u64, error: WireError },
    /// The stream cannot be answered any more (i/o error).
    Broken(FrameError),
}

impl Connection {
    async fn serve(self, socket: TcpStream) {
        tracing::debug!(peer = %self.peer, "connection opened");
        // Answers are small and latency matters more than packet count.
        let _ = socket.set_nodelay(true);
        let (mut reader, writer) = socket.into_split();
        let first = tokio::select! {
            () = self.cancel.cancelled() => return,
            frame = read_frame(&mut reader, MAX_HELLO_FRAME_BYTES) => frame,
        };
        if let Some(hello) = first
            .as_ref()
            .ok()
            .and_then(|f| f.as_deref())
            .and_then(crate::raft::network::is_peer_hello)
        {
            if hello.version != PROTOCOL_VERSION {
                tracing::warn!(peer = %self.peer, version = hello.version, "peer tracker speaks another protocol version");
                return;
            }
            tracing::debug!(peer = %self.peer, node = hello.from, "peer tracker connected");
            let cluster = Arc::clone(&self.shared.cluster);
            crate::raft::network::serve_peer(
                cluster,
                hello.from,
                reader,
                writer,
                self.cancel.clone(),
            )
            .await;
            return;
        }
        let (tx, rx) = mpsc::channel(ANSWER_QUEUE);
        let writer = self.tasks.spawn(write_answers(writer, rx, self.peer));

        match self.read_calls(&mut reader, &tx, Some(first)).await {
            Ending::Quiet => {}
            Ending::Refused { id, error } => {
                tracing::warn!(peer = %self.peer, error = %error.message, "closing connection");
                let _ = tx
                    .send(TrackerAnswer {
                        id,
                        result: Err(error),
                    })
                    .await;
            }
            Ending::Broken(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "closing connection");
            }
        }
        // The writer ends once this and every in-flight call's sender are
        // gone, after writing what they sent.
        drop(tx);
        let _ = writer.await;
        tracing::debug!(peer = %self.peer, "connection closed");
    }

    async fn read_calls(
        &self,
        reader: &mut OwnedReadHalf,
        tx: &mpsc::Sender<TrackerAnswer>,
        mut first: Option<Result<Option<Vec<u8>>, FrameError>>,
    ) -> Ending {
        let permits = Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT));
        let mut greeted = false;
        loop {
            let frame = match first.take() {
                Some(frame) => frame,
                None => tokio::select! {
                    () = self.cancel.cancelled() => return Ending::Quiet,
                    () = tx.closed() => return Ending::Quiet,
                    frame = read_frame(reader, if greeted { MAX_TRACKER_FRAME_BYTES } else { MAX_HELLO_FRAME_BYTES }) => frame,
                },
            };
            let bytes = match frame {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return Ending::Quiet,
                Err(e @ FrameError::TooLarge { .. }) => {
                    return Ending::Refused {
                        id: 0,
                        error: WireError::new(ErrorCode::InvalidArgument, e.to_string()),
                    }
                }
                Err(e) => return Ending::Broken(e),
            };
            let call: TrackerCall = match serde_json::from_slice(&bytes) {
                Ok(call) => call,
                Err(e) => {
                    return Ending::Refused {
                        id: call_id(&bytes),
                        error: WireError::new(
                            ErrorCode::InvalidArgument,
                            format!("malformed call: {}", shorten(&e.to_string())),
                        ),
                    }
                }
            };

            if !greeted {
                match call.request {
                    TrackerRequest::Hello { version } => match welcome(version, self.shared.node) {
                        Ok(reply) => {
                            greeted = true;
                            let answer = TrackerAnswer {
                                id: call.id,
                                result: Ok(reply),
                            };
                            if tx.send(answer).await.is_err() {
                                return Ending::Quiet;
                            }
                            continue;
                        }
                        Err(error) => return Ending::Refused { id: call.id, error },
                    },
                    _ => {
                        return Ending::Refused {
                            id: call.id,
                            error: WireError::new(
                                ErrorCode::InvalidArgument,
                                "the first call on a connection must be hello",
                            ),
                        }
                    }
                }
            }

            let permit = tokio::select! {
                () = self.cancel.cancelled() => return Ending::Quiet,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return Ending::Quiet, // never closed; be safe
                },
            };
            let shared = Arc::clone(&self.shared);
            let tx = tx.clone();
            self.tasks.spawn(async move {
                let token = call.request.token().cloned();
                let mut result = handle(&shared, call.request, call.dedup).await;
                // A lagging replica must not end a daemon's session: unless
                // the leader confirms the session is gone, say "try again".
                if let (Err(e), Some(token)) = (&result, token) {
                    let own_session_unknown = shared.cluster.state().user_of(&token).is_err();
                    if e.code == ErrorCode::NotLoggedIn
                        && own_session_unknown
                        && shared.cluster.session_live_on_leader(&token).await != Some(false)
                    {
                        result = Err(WireError::new(
                            ErrorCode::TrackerUnavailable,
                            "this tracker is catching up with the cluster; try again",
                        ));
                    }
                }
                let _ = tx
                    .send(TrackerAnswer {
                        id: call.id,
                        result,
                    })
                    .await;
                drop(permit);
            });
        }
    }
}

async fn write_answers(
    mut writer: OwnedWriteHalf,
    mut rx: mpsc::Receiver<TrackerAnswer>,
    peer: SocketAddr,
) {
    while let Some(answer) = rx.recv().await {
        match tokio::time::timeout(
            WRITE_TIMEOUT,
            write_json(&mut writer, &answer, MAX_TRACKER_FRAME_BYTES),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "writing an answer failed");
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, "client has not read its answers for {WRITE_TIMEOUT:?}; dropping it");
                return;
            }
        }
    }
    let _ = writer.shutdown().await;
}

/// The `id` of an undecodable call, if the frame is JSON with one, so the
/// error answer reaches the right caller.
fn call_id(bytes: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
        .unwrap_or(0)
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_ECHOED_ERROR_CHARS).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn welcome(version: u32, node: u32) -> Result<TrackerReply, WireError> {
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
    })
}

fn done(applied: Applied) -> TrackerReply {
    TrackerReply::Done {
        message: applied.message,
    }
}

/// Answers one call. Writes are built into a [`Command`] (hash, token and
/// clock read here, never in `apply`) and returned once durable.
///
/// A write stamped with a request id (`dedup`) is wrapped in
/// [`Command::Dedup`], so a daemon retrying it on another tracker gets the
/// first outcome instead of applying it twice.
async fn handle(
    shared: &Shared,
    request: TrackerRequest,
    dedup: Option<RequestId>,
) -> Result<TrackerReply, WireError> {
    use TrackerRequest as R;
    let store = &*shared.cluster;
    let write = |cmd: Command| store.submit(stamp(cmd, dedup));
    match request {
        R::Hello { version } => welcome(version, shared.node),
        R::CreateUser { user, password } => {
            check_password(&password)?;
            // Cheap early refusal; apply() checks again, atomically. Not
            // for a stamped call: it may be the retry of our own success.
            if dedup.is_none() && store.state().user_exists(&user) {
                return Err(WireError::new(
                    ErrorCode::UserExists,
                    format!("user {user} already exists"),
                ));
            }
            let password_hash = hash_password(password).await?;
            Ok(done(
                write(Command::CreateUser {
                    user,
                    password_hash,
                })
                .await?,
            ))
        }
        R::Login { user, password } => {
            check_password(&password)?;
            let stored = store.state().password_hash(&user).map(str::to_owned);
            if !verify_password(password, stored).await? {
                return Err(WireError::new(ErrorCode::BadCredentials, BAD_CREDENTIALS));
            }
            let token = tokens::session_token();
            store
                .submit(Command::StartSession {
                    user,
                    token: token.clone(),
                })
                .await?;
            Ok(TrackerReply::LoggedIn { token })
        }
        R::Heartbeat { token, peer_addr } => {
            let user = store.state().user_of(&token)?.clone();
            // A heartbeat racing with a logout may land after it; presence
            // only counts it while `token` is still the user's session.
            store
                .heartbeat(SeenPeer {
                    user: user.clone(),
                    token,
                    addr: peer_addr,
                    at_ms: now_ms(),
                })
                .await;
            Ok(TrackerReply::Alive { user })
        }
        R::Logout { token } => Ok(done(write(Command::EndSession { token }).await?)),
        R::CreateGroup { token, group } => {
            Ok(done(write(Command::CreateGroup { token, group }).await?))
        }
        R::JoinGroup { token, group } => {
            Ok(done(write(Command::JoinGroup { token, group }).await?))
        }
        R::LeaveGroup { token, group } => {
            Ok(done(write(Command::LeaveGroup { token, group }).await?))
        }
        R::AcceptRequest { token, group, user } => Ok(done(
            write(Command::AcceptRequest { token, group, user }).await?,
        )),
        R::RegisterFile { token, group, meta } => Ok(done(
            write(Command::RegisterFile { token, group, meta }).await?,
        )),
        R::StopShare { token, group, name } => Ok(done(
            write(Command::StopShare { token, group, name }).await?,
        )),
        R::MarkPartial { token, group, name } => Ok(done(
            write(Command::MarkPartial { token, group, name }).await?,
        )),
        R::ListRequests { token, group } => {
            let st = store.state();
            let user = st.user_of(&token)?;
            Ok(TrackerReply::Users {
                users: st.list_requests(user, &group)?,
            })
        }
        R::ListGroups { token } => {
            let st = store.state();
            st.user_of(&token)?;
            Ok(TrackerReply::Groups {
                groups: st.list_groups(),
            })
        }
        R::ListFiles { token, group } => {
            let now = now_ms();
            let st = store.state();
            let user = st.user_of(&token)?;
            // The same few members hold most files: look each up once.
            let mut online: HashMap<&UserId, bool> = HashMap::new();
            let files = st.list_files(user, &group, |holder| {
                *online
                    .entry(holder)
                    .or_insert_with(|| st.online_addr(holder, now, PRESENCE_TIMEOUT).is_some())
            })?;
            Ok(TrackerReply::Files { files })
        }
        R::Locate { token, group, name } => {
            let now = now_ms();
            let st = store.state();
            let user = st.user_of(&token)?;
            let (meta, holders) = st.locate(user, &group, &name)?;
            let peers = holders
                .into_iter()
                .filter_map(|h| {
                    let addr = st.online_addr(&h.user, now, PRESENCE_TIMEOUT)?;
                    Some(PeerEntry {
                        user: h.user,
                        addr,
                        complete: h.complete,
                    })
                })
                .collect();
            Ok(TrackerReply::Located { meta, peers })
        }
        R::IssueTicket { token, group, name } => {
            let st = store.state();
            let user = st.user_of(&token)?;
            st.check_file_access(user, &group, &name)?;
            let secret = st.ticket_secret().ok_or_else(no_ticket_key)?;
            let ticket = tickets::issue(secret, user, &group, &name, now_s());
            Ok(TrackerReply::Ticket { ticket })
        }
        R::CheckTicket {
            token,
            ticket,
            group,
            name,
        } => {
            let st = store.state();
            st.user_of(&token)?;
            let secret = st.ticket_secret().ok_or_else(no_ticket_key)?;
            let holder =
                tickets::check(secret, &ticket, &group, &name, now_s()).ok_or_else(|| {
                    WireError::new(ErrorCode::InvalidArgument, "unknown or expired ticket")
                })?;
            if st.session_of(&holder).is_none() {
                return Err(WireError::new(
                    ErrorCode::NotLoggedIn,
                    format!("{holder} is no longer logged in"),
                ));
            }
            if !st.is_member(&holder, &group) {
                return Err(WireError::new(
                    ErrorCode::NotMember,
                    format!("{holder} is not a member of group {group}"),
                ));
            }
            Ok(TrackerReply::TicketValid { user: holder })
        }
    }
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

fn no_ticket_key() -> WireError {
    WireError::new(
        ErrorCode::TrackerUnavailable,
        "the trackers are still starting (no ticket key yet); try again",
    )
}

fn check_password(password: &str) -> Result<(), WireError> {
    if password.is_empty() {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            "the password must not be empty",
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!(
                "the password is {} bytes long; at most {MAX_PASSWORD_BYTES} are allowed",
                password.len()
            ),
        ));
    }
    Ok(())
}

fn internal(what: &str) -> WireError {
    WireError::new(
        ErrorCode::Io,
        format!("the tracker failed while {what}; see its log"),
    )
}

/// Threads that run argon2id. Each hash takes ~19 MiB and tens of ms of
/// CPU; on tokio's blocking pool (up to 512 threads) a burst of logins ran
/// many at once, and the allocator kept a 19 MiB block in each thread's
/// arena afterwards (hundreds of MiB of RSS). A few dedicated threads bound
/// both the memory and the CPU a login burst can take; logins queue.
fn hash_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

type HashJob = Box<dyn FnOnce() + Send>;

/// Runs `f` on one of the [`hash_threads`] argon2 threads.
async fn on_hash_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::sync::oneshot::error::RecvError> {
    static JOBS: OnceLock<std::sync::mpsc::Sender<HashJob>> = OnceLock::new();
    let jobs = JOBS.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..hash_threads() {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start an argon2 thread");
            }
        }
        tx
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    // If no thread runs, the job is dropped and `rx` reports it.
    let _ = jobs.send(Box::new(move || {
        let _ = tx.send(f());
    }));
    rx.await
}

/// argon2id with a fresh random salt, off the async threads (tens of ms).
async fn hash_password(password: String) -> Result<String, WireError> {
    on_hash_thread(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|_| internal("hashing the password"))?
    .map_err(|e| {
        tracing::error!(error = %e, "argon2 hashing failed");
        internal("hashing the password")
    })
}

/// Checks `password` against `stored`. An unknown user is checked against a
/// dummy hash, so the answer takes as long as for a wrong password and does
/// not reveal which accounts exist.
async fn verify_password(password: String, stored: Option<String>) -> Result<bool, WireError> {
    on_hash_thread(move || {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&phc) else {
            tracing::error!("a stored password hash is unreadable");
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        known && matches
    })
    .await
    .map_err(|_| internal("checking the password"))
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"no such user", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_bounded() {
        assert_eq!(
            check_password("").unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert!(check_password(&"x".repeat(MAX_PASSWORD_BYTES)).is_ok());
        let err = check_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument);
    }

    #[tokio::test]
    async fn hashing_and_verifying() {
        let hash = hash_password("s3cret".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("s3cret".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!verify_password("wrong".into(), Some(hash)).await.unwrap());
        assert!(!verify_password("s3cret".into(), None).await.unwrap());
    }

    #[test]
    fn hello_checks_the_version() {
        assert!(matches!(
            welcome(PROTOCOL_VERSION, 2),
            Ok(TrackerReply::Welcome { node: 2, .. })
        ));
        let err = welcome(PROTOCOL_VERSION + 1, 1).unwrap_err();
        assert!(err.message.contains("not supported"), "{}", err.message);
    }

    #[test]
    fn call_ids_are_recovered_from_bad_calls() {
        assert_eq!(call_id(br#"{"id": 7, "request": {"op": "nope"}}"#), 7);
        assert_eq!(call_id(b"\x00garbage"), 0);
        assert!(shorten(&"x".repeat(10_000)).chars().count() <= MAX_ECHOED_ERROR_CHARS + 1);
    }
}
