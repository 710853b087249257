//! One connection: who is on the other end, its reader and its writer.
//!
//! Every connection is first a TLS handshake (at most
//! [`p2p_link::tls::HANDSHAKE_DEADLINE`]) in which the other end proves the
//! key it presents. Then the first frame (at most [`MAX_HELLO_FRAME_BYTES`],
//! within [`HELLO_DEADLINE`]) tells a daemon (a `Hello` call) from a peer
//! tracker (a `PeerHello`). A peer's connection is handed to
//! [`crate::raft::serve::serve_peer`] only if its key is the cluster
//! identity — proof that it holds the cluster key — and it names another
//! tracker of tracker_info.txt; anything else claiming to be a tracker is
//! dropped before it can reach Raft or the state. A daemon's connection is split in
//! two tasks: the reader decodes [`TrackerCall`] frames and spawns a task per
//! call (at most [`MAX_CALLS_IN_FLIGHT`] at once), so a slow argon2 login
//! never holds up a heartbeat; the writer, fed by an `mpsc` channel, writes
//! the [`TrackerAnswer`]s in whatever order they finish. A bad frame ends
//! that connection only, after an `invalid_argument` answer where one can
//! still be written.
//!
//! Until a call proves a session (or the peer tracker proves the cluster
//! key), the connection also holds an *unproven* place ([`Proof`]), which
//! a newcomer may take when all are held (see `server::run`).
//!
//! Stop: the connection's token ends the reader; calls already read run to
//! completion; the writer ends once every sender is gone, after writing
//! what they sent.

use super::handler::{self, welcome};
use super::Shared;
use p2p_link::{LinkReader, LinkWriter, PublicKey};
use proto::admission::Admitted;
use proto::frame::{
    read_body_within, read_frame, read_len, write_json, FrameError, Pace, MAX_TRACKER_FRAME_BYTES,
};
use proto::tracker::{TrackerAnswer, TrackerCall, TrackerRequest};
use proto::{ErrorCode, WireError, PROTOCOL_VERSION};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Largest first frame: a hello is tiny, and a stranger should not make us
/// reserve the 64 MiB a registration may need.
const MAX_HELLO_FRAME_BYTES: u32 = 4096;
/// How long a new link may take, TLS handshake included, to say who it is.
const HELLO_DEADLINE: Duration = Duration::from_secs(10);
/// Largest frame of a daemon's connection before a call on it proved a
/// session (a login or a call with a live token): enough for every call
/// but a registration of a file of thousands of pieces, and too little for
/// strangers to make the tracker hold their bytes by the megabyte.
pub(super) const MAX_UNTRUSTED_FRAME_BYTES: u32 = 64 * 1024;
/// Time any frame gets from its first byte to its last ...
const FRAME_DEADLINE: Duration = Duration::from_secs(30);
/// ... plus a second per this many bytes, so a 64 MiB registration over a
/// slow link still arrives while a trickle cannot hold a connection.
const MIN_FRAME_BYTES_PER_SEC: u32 = 64 * 1024;

/// Bytes of frames over [`MAX_UNTRUSTED_FRAME_BYTES`] the tracker holds at
/// once, over all connections, from the length prefix until the call is
/// decoded: one maximal registration. Anyone may make an account, so a
/// session alone must not let a few connections each hold 64 MiB.
pub(super) const LARGE_FRAME_BUDGET_BYTES: u32 = MAX_TRACKER_FRAME_BYTES;

/// How fast a daemon's frames must come, for an idle timeout of `idle`.
pub(super) fn pace(idle: Duration) -> Pace {
    Pace {
        idle,
        frame: FRAME_DEADLINE,
        min_bytes_per_sec: MIN_FRAME_BYTES_PER_SEC,
    }
}
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

/// A frame as read: bytes, a clean end of stream, or a framing error.
type Frame = Result<Option<Vec<u8>>, FrameError>;
/// A large frame's share of [`LARGE_FRAME_BUDGET_BYTES`], held until its
/// call is decoded.
type Budget = Option<OwnedSemaphorePermit>;

/// Whether a call on this connection has proved a session. Until one has,
/// the connection holds an unproven place, given back at the proof.
pub(super) struct Proof {
    trusted: AtomicBool,
    unproven: Mutex<Option<Admitted>>,
}

impl Proof {
    pub(super) fn new(unproven: Admitted) -> Arc<Proof> {
        Arc::new(Proof {
            trusted: AtomicBool::new(false),
            unproven: Mutex::new(Some(unproven)),
        })
    }

    fn is_set(&self) -> bool {
        self.trusted.load(Ordering::Acquire)
    }

    /// Trusted from now on: the unproven place goes back, so a newcomer can
    /// no longer take this connection's place.
    fn set(&self) {
        self.trusted.store(true, Ordering::Release);
        let place = self.unproven.lock().map(|mut p| p.take());
        drop(place);
    }
}

pub(super) struct Connection {
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
    pub(super) fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        cancel: CancellationToken,
        tasks: TaskTracker,
    ) -> Connection {
        Connection {
            shared,
            peer,
            cancel,
            tasks,
        }
    }

    pub(super) async fn serve(self, socket: TcpStream, proof: Arc<Proof>) {
        tracing::debug!(peer = %self.peer, "connection opened");
        // Answers are small and latency matters more than packet count.
        let _ = socket.set_nodelay(true);
        let opening = async {
            let secured = self.shared.cluster.endpoint().accept(socket).await;
            let secured = match secured {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "no TLS link");
                    return None;
                }
            };
            let key = secured.peer;
            let (mut reader, writer) = p2p_link::tls::split(secured.link);
            let first = read_frame(&mut reader, MAX_HELLO_FRAME_BYTES).await;
            Some((key, reader, writer, first))
        };
        let opened = tokio::select! {
            () = self.cancel.cancelled() => return,
            opened = tokio::time::timeout(HELLO_DEADLINE, opening) => opened,
        };
        let (key, reader, writer, first) = match opened {
            Ok(Some(opened)) => opened,
            Ok(None) => return,
            Err(_) => {
                tracing::debug!(peer = %self.peer, "no TLS link and hello in time");
                return;
            }
        };
        if let Some(hello) = first
            .as_ref()
            .ok()
            .and_then(|f| f.as_deref())
            .and_then(crate::raft::serve::is_peer_hello)
        {
            if !self.is_cluster_peer(&key, hello.from) {
                return;
            }
            proof.set();
            if hello.version != PROTOCOL_VERSION {
                tracing::warn!(peer = %self.peer, version = hello.version, "peer tracker speaks another protocol version");
                return;
            }
            tracing::debug!(peer = %self.peer, node = hello.from, "peer tracker connected");
            let cluster = Arc::clone(&self.shared.cluster);
            crate::raft::serve::serve_peer(cluster, hello, reader, writer, self.cancel.clone())
                .await;
            return;
        }
        self.serve_daemon(reader, writer, first, (key, proof)).await;
    }

    /// Whether a connection whose hello claims to be tracker `from` may
    /// reach Raft: it proved the cluster key, and `from` is another line of
    /// tracker_info.txt.
    fn is_cluster_peer(&self, key: &PublicKey, from: u64) -> bool {
        let cluster = &self.shared.cluster;
        if *key != cluster.endpoint().key() {
            tracing::warn!(peer = %self.peer, claimed = from,
                "refused a tracker-to-tracker connection: it does not hold the cluster key");
            return false;
        }
        if !cluster.is_peer_node(from) {
            tracing::warn!(peer = %self.peer, claimed = from,
                "refused a tracker-to-tracker connection: no such other tracker in tracker_info.txt");
            return false;
        }
        true
    }

    /// Reads calls until the stream ends or is refused, then lets the
    /// writer flush what the calls in flight answer. `key` is the link key
    /// the daemon proved: the tickets it asks for name it.
    async fn serve_daemon(
        self,
        mut reader: LinkReader,
        writer: LinkWriter,
        first: Frame,
        (key, proof): (PublicKey, Arc<Proof>),
    ) {
        let (tx, rx) = mpsc::channel(ANSWER_QUEUE);
        let writer = self.tasks.spawn(write_answers(writer, rx, self.peer));
        match self.read_calls(&mut reader, &tx, first, (key, proof)).await {
            Ending::Quiet => {}
            Ending::Refused { id, error } => {
                // Throttled: a flood of bad frames must not fill the log.
                if let Some(count) = self.shared.refusals.note() {
                    tracing::warn!(peer = %self.peer, error = %error.message,
                        "closing a connection that broke the protocol ({count} since the last such line)");
                }
                let _ = tx
                    .send(TrackerAnswer {
                        id,
                        result: Err(error),
                    })
                    .await;
            }
            Ending::Broken(e) => {
                // Debug only: resets are the other end's business, and a
                // flood of them must not fill the log.
                tracing::debug!(peer = %self.peer, error = %e, "closing connection");
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
        reader: &mut LinkReader,
        tx: &mpsc::Sender<TrackerAnswer>,
        first: Frame,
        (key, trusted): (PublicKey, Arc<Proof>),
    ) -> Ending {
        let permits = Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT));
        // `trusted` is set by the first call that proves a session (see
        // `proves_session`).
        let mut first = Some(first);
        let mut greeted = false;
        loop {
            let (frame, budget) = match first.take() {
                Some(frame) => (frame, None),
                None => tokio::select! {
                    () = self.cancel.cancelled() => return Ending::Quiet,
                    () = tx.closed() => return Ending::Quiet,
                    read = self.read_frame(reader, greeted, &trusted, &permits) => read,
                },
            };
            let call = match decode_call(frame) {
                Ok(call) => call,
                Err(ending) => return ending,
            };
            drop(budget);
            if !greeted {
                if let Err(ending) = self.greet(call, tx).await {
                    return ending;
                }
                greeted = true;
                continue;
            }
            let permit = tokio::select! {
                () = self.cancel.cancelled() => return Ending::Quiet,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return Ending::Quiet, // never closed; be safe
                },
            };
            let (shared, tx, peer) = (Arc::clone(&self.shared), tx.clone(), self.peer);
            let trusted = trusted.clone();
            self.tasks.spawn(async move {
                let proving = proves_session(&call.request);
                let answer = handler::answer(&shared, call, &key, peer.ip()).await;
                if proving && answer.result.is_ok() {
                    trusted.set();
                }
                let _ = tx.send(answer).await;
                drop(permit);
            });
        }
    }

    /// Reads one frame of a daemon's connection at the tracker's pace. The
    /// limit is [`MAX_HELLO_FRAME_BYTES`] before the hello,
    /// [`MAX_UNTRUSTED_FRAME_BYTES`] until a call proved a session, then
    /// [`MAX_TRACKER_FRAME_BYTES`]. A larger frame before that proof waits
    /// for the calls in flight first: the login or heartbeat a daemon sends
    /// ahead of a big registration may still be running.
    async fn read_frame(
        &self,
        reader: &mut LinkReader,
        greeted: bool,
        trusted: &Proof,
        permits: &Arc<Semaphore>,
    ) -> (Frame, Budget) {
        let pace = self.shared.pace;
        let len = match tokio::time::timeout(pace.idle, read_len(reader)).await {
            Err(_) => return (Err(FrameError::Idle(pace.idle)), None),
            Ok(Err(e)) => return (Err(e), None),
            Ok(Ok(None)) => return (Ok(None), None),
            Ok(Ok(Some(len))) => len,
        };
        let limit = if !greeted {
            MAX_HELLO_FRAME_BYTES
        } else if len > MAX_UNTRUSTED_FRAME_BYTES && len <= MAX_TRACKER_FRAME_BYTES {
            if !trusted.is_set() {
                // Every permit back = every call read so far has answered.
                let all = u32::try_from(MAX_CALLS_IN_FLIGHT).unwrap_or(u32::MAX);
                drop(permits.acquire_many(all).await);
            }
            if trusted.is_set() {
                MAX_TRACKER_FRAME_BYTES
            } else {
                MAX_UNTRUSTED_FRAME_BYTES
            }
        } else {
            MAX_TRACKER_FRAME_BYTES
        };
        if len > limit {
            return (Err(FrameError::TooLarge { len, max: limit }), None);
        }
        let deadline = pace.frame_deadline(len);
        let budget = if len > MAX_UNTRUSTED_FRAME_BYTES {
            // Waiting for the budget counts against the frame's deadline.
            let budget = Arc::clone(&self.shared.large_frames).acquire_many_owned(len);
            match tokio::time::timeout(deadline, budget).await {
                Ok(Ok(permit)) => Some(permit),
                _ => {
                    return (
                        Err(FrameError::Slow {
                            len,
                            limit: deadline,
                        }),
                        None,
                    )
                }
            }
        } else {
            None
        };
        // A budgeted frame may have its memory at once: growing by doubling
        // would hold two copies (and more in the allocator's caches).
        // Room for the reader's final probe too, so nothing reallocates.
        let mut buf = match budget {
            Some(_) => Vec::with_capacity(len as usize + 64),
            None => Vec::new(),
        };
        let read = read_body_within(reader, len, &mut buf, deadline).await;
        (read.map(|()| Some(buf)), budget)
    }

    /// The first call must be a `Hello` of our protocol version.
    async fn greet(
        &self,
        call: TrackerCall,
        tx: &mpsc::Sender<TrackerAnswer>,
    ) -> Result<(), Ending> {
        let TrackerRequest::Hello { version } = call.request else {
            return Err(Ending::Refused {
                id: call.id,
                error: WireError::new(
                    ErrorCode::InvalidArgument,
                    "the first call on a connection must be hello",
                ),
            });
        };
        let reply = welcome(
            version,
            self.shared.node,
            &self.shared.cluster.ticket_key().public(),
        )
        .map_err(|error| Ending::Refused { id: call.id, error })?;
        let answer = TrackerAnswer {
            id: call.id,
            result: Ok(reply),
        };
        tx.send(answer).await.map_err(|_| Ending::Quiet)
    }
}

/// Whether `request` succeeding proves the connection's other end has a
/// session: a login, or any call made with a token.
fn proves_session(request: &TrackerRequest) -> bool {
    matches!(request, TrackerRequest::Login { .. }) || request.token().is_some()
}

/// The call in `frame`, or how the connection ends because of it.
fn decode_call(frame: Frame) -> Result<TrackerCall, Ending> {
    let bytes = match frame {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(Ending::Quiet),
        Err(FrameError::TooLarge { len, max }) if max == MAX_UNTRUSTED_FRAME_BYTES => {
            return Err(Ending::Refused {
                id: 0,
                error: WireError::new(
                    ErrorCode::InvalidArgument,
                    format!("frame of {len} bytes exceeds the limit of {max} for a connection without a session (log in first)"),
                ),
            })
        }
        Err(e @ FrameError::TooLarge { .. }) => {
            return Err(Ending::Refused {
                id: 0,
                error: WireError::new(ErrorCode::InvalidArgument, e.to_string()),
            })
        }
        Err(e @ (FrameError::Idle(_) | FrameError::Slow { .. })) => {
            // Debug only: a flood of these must not fill the log.
            tracing::debug!(error = %e, "closing an idle or slow connection");
            return Err(Ending::Quiet);
        }
        Err(e) => return Err(Ending::Broken(e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| Ending::Refused {
        id: call_id(&bytes),
        error: WireError::new(
            ErrorCode::InvalidArgument,
            format!("malformed call: {}", shorten(&e.to_string())),
        ),
    })
}

async fn write_answers(
    mut writer: LinkWriter,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_are_recovered_from_bad_calls() {
        assert_eq!(call_id(br#"{"id": 7, "request": {"op": "nope"}}"#), 7);
        assert_eq!(call_id(b"\x00garbage"), 0);
        assert!(shorten(&"x".repeat(10_000)).chars().count() <= MAX_ECHOED_ERROR_CHARS + 1);
    }

    #[test]
    fn only_a_login_or_a_call_with_a_token_proves_a_session() {
        let call = |json: &str| serde_json::from_str::<TrackerRequest>(json).unwrap();
        assert!(proves_session(&call(
            r#"{"op": "login", "user": "u", "password": "p"}"#
        )));
        assert!(proves_session(&call(
            r#"{"op": "list_groups", "token": "t"}"#
        )));
        assert!(!proves_session(&call(r#"{"op": "hello", "version": 1}"#)));
        assert!(!proves_session(&call(
            r#"{"op": "create_user", "user": "u", "password": "p"}"#
        )));
    }

    #[test]
    fn an_untrusted_oversized_frame_says_to_log_in() {
        let too_large = Err(FrameError::TooLarge {
            len: 1 << 20,
            max: MAX_UNTRUSTED_FRAME_BYTES,
        });
        assert!(matches!(
            decode_call(too_large),
            Err(Ending::Refused { error, .. }) if error.message.contains("log in first")
        ));
        assert!(matches!(
            decode_call(Err(FrameError::Idle(Duration::from_secs(60)))),
            Err(Ending::Quiet)
        ));
    }

    #[test]
    fn frames_that_end_a_connection() {
        assert!(matches!(decode_call(Ok(None)), Err(Ending::Quiet)));
        let too_large = Err(FrameError::TooLarge { len: 9, max: 1 });
        assert!(matches!(
            decode_call(too_large),
            Err(Ending::Refused { id: 0, error }) if error.code == ErrorCode::InvalidArgument
        ));
        assert!(matches!(
            decode_call(Err(FrameError::Truncated)),
            Err(Ending::Broken(_))
        ));
        let bad = br#"{"id": 3, "request": {"op": "nope"}}"#.to_vec();
        assert!(matches!(
            decode_call(Ok(Some(bad))),
            Err(Ending::Refused { id: 3, error }) if error.message.starts_with("malformed call")
        ));
        let hello = br#"{"id": 1, "request": {"op": "hello", "version": 1}}"#.to_vec();
        assert!(decode_call(Ok(Some(hello))).is_ok());
    }
}
