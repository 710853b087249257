//! The control socket `HOME/p2pd.sock`: one task per p2pctl connection.
//!
//! Owns the local-socket listener (file-path name, mode 0600) and the
//! per-connection protocol: admit only a process of this daemon's own
//! effective uid (`SO_PEERCRED`, so a loosened socket mode is not enough to
//! drive another user's daemon), read one [`CtlHello`] frame under
//! [`HELLO_TIMEOUT`] (at most [`MAX_WAITING_FOR_REQUEST`] connections wait
//! for theirs, a newer one taking the oldest one's place; at most
//! [`MAX_CONNECTIONS`] are open in all, more are closed at once), check
//! its version, dispatch the request, and write
//! any number of [`CtlReply::Progress`] frames followed by one final reply.
//! Bad input (garbage, an oversized length, undecodable JSON, a hostile id,
//! another version) is answered with `invalid_argument` where the stream
//! still allows it, then the connection closes; it never ends the daemon.

use crate::commands::Commands;
use crate::progress::ProgressSink;
use interprocess::local_socket::tokio::{prelude::*, Stream};
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use proto::admission::{Admission, Admitted, Throttled, LOG_EVERY};
use proto::ctl::{CtlHello, CtlReply};
use proto::frame::{read_frame, write_json, FrameError, MAX_CTL_FRAME_BYTES};
use proto::{ErrorCode, PROTOCOL_VERSION};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client may take to send its request.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Control connections at once; more are closed as soon as accepted.
/// p2pctl is one-shot, so only commands that stream progress stay long.
pub const MAX_CONNECTIONS: usize = 256;
/// Of those, connections that have not sent their request yet.
pub const MAX_WAITING_FOR_REQUEST: usize = 32;
/// How long one reply frame may take to reach a client that stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Progress ticks buffered for a slow client; more are dropped (the next
/// tick carries the newer numbers anyway).
const PROGRESS_QUEUE: usize = 16;

pub type CtlListener = interprocess::local_socket::tokio::Listener;

/// Bind the control socket at `path` with mode 0600 (set before `bind`,
/// so there is no window where others could connect).
///
/// # Errors
/// The socket cannot be created.
pub fn bind(path: &Path) -> std::io::Result<CtlListener> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    ListenerOptions::new()
        .name(name)
        .mode(0o600)
        // The home lock guarantees no other daemon owns this path; a stale
        // file was already removed under it.
        .try_overwrite(false)
        .create_tokio()
}

/// Accepts control connections until `shutdown`; one task each on `tasks`.
pub async fn run(
    listener: CtlListener,
    commands: Arc<Commands>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let listener = Arc::new(listener);
    let owner = rustix::process::geteuid().as_raw();
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Every client is this uid's own process: one "address". When full,
    // the oldest silent connection makes room, so a pile of them cannot
    // keep the user's next p2pctl out.
    let waiting = Admission::evicting_oldest(
        "control (no request yet)",
        MAX_WAITING_FOR_REQUEST,
        usize::MAX, // one source: only the total applies
    );
    let local = IpAddr::from([0, 0, 0, 0]);
    let refused = Throttled::new(LOG_EVERY);
    proto::service::accept_loop(
        "control",
        &shutdown,
        &tasks,
        || {
            let l = listener.clone();
            async move { l.accept().await }
        },
        |stream| {
            let (commands, stop) = (commands.clone(), shutdown.clone());
            // Over a cap, the stream is dropped (closed) right here.
            let place = places
                .clone()
                .try_acquire_owned()
                .ok()
                .and_then(|p| Some((p, waiting.admit(local).ok()?)));
            if place.is_none() {
                if let Some(count) = refused.note() {
                    tracing::warn!(
                        "refused {count} control connection(s) in the last {} s: too many open",
                        LOG_EVERY.as_secs()
                    );
                }
            }
            async move {
                let Some((_place, waiting)) = place else {
                    return;
                };
                let evicted = waiting.eviction();
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = evicted.cancelled() => {}
                    _ = handle(stream, commands, owner, waiting) => {}
                }
            }
        },
    )
    .await;
}

/// One p2pctl connection: one request, progress ticks, one final reply.
/// `owner`: the only uid whose processes may drive this daemon. `waiting`
/// is its place among connections without a request, given back once the
/// request is read.
async fn handle(mut stream: Stream, commands: Arc<Commands>, owner: u32, waiting: Admitted) {
    if let Some(refusal) = peer_refusal(&stream, owner) {
        tracing::warn!("refused a control connection: {refusal}");
        // Take its request off the socket unread, so the client reads the
        // refusal rather than failing to send.
        let _ =
            tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut stream, MAX_CTL_FRAME_BYTES)).await;
        reply(&mut stream, &CtlReply::error(ErrorCode::Io, refusal)).await;
        return;
    }
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut stream)).await {
        Err(_) => {
            reply(
                &mut stream,
                &CtlReply::error(
                    ErrorCode::InvalidArgument,
                    format!("no request received within {} s", HELLO_TIMEOUT.as_secs()),
                ),
            )
            .await;
            return;
        }
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => return,
        Ok(Err(refusal)) => {
            tracing::debug!("refused a control request: {refusal:?}");
            reply(&mut stream, &refusal).await;
            return;
        }
    };
    drop(waiting);
    tracing::debug!(request = ?redacted(&hello.request), "control request");

    let (tx, mut rx) = mpsc::channel(PROGRESS_QUEUE);
    let sink = ProgressSink::from(tx);
    let command = commands.dispatch(hello.request, sink);
    tokio::pin!(command);
    // Interleave progress ticks with the running command; once it has its
    // final reply, flush the ticks already queued, then send it.
    let mut client_gone = false;
    let final_reply = loop {
        tokio::select! {
            r = &mut command => break r,
            Some(tick) = rx.recv(), if !client_gone => {
                if !reply(&mut stream, &CtlReply::Progress(tick)).await {
                    // Keep running the command: Ctrl-C in p2pctl detaches.
                    client_gone = true;
                    rx.close();
                }
            }
        }
    };
    if !client_gone {
        while let Ok(tick) = rx.try_recv() {
            if !reply(&mut stream, &CtlReply::Progress(tick)).await {
                return;
            }
        }
        reply(&mut stream, &final_reply).await;
    }
}

/// Why the process at the other end of `stream` may not use this daemon,
/// if it may not: its effective uid is not `owner` (root's included, unless
/// the daemon runs as root), or it cannot be told.
fn peer_refusal(stream: &Stream, owner: u32) -> Option<String> {
    match stream.peer_creds().map(|c| c.euid()) {
        Ok(Some(uid)) if uid == owner => None,
        Ok(Some(uid)) => Some(format!(
            "this p2pd belongs to uid {owner}; connections from uid {uid} are refused (run your own p2pd with --home DIR)"
        )),
        Ok(None) => Some("the connecting process's uid is unknown".to_owned()),
        Err(e) => Some(format!("cannot read the connecting process's uid: {e}")),
    }
}

/// Read and validate the one request frame. `Ok(None)`: the client left
/// without sending anything. `Err(reply)`: the refusal to send back.
async fn read_hello(stream: &mut Stream) -> Result<Option<CtlHello>, CtlReply> {
    let bytes = match read_frame(stream, MAX_CTL_FRAME_BYTES).await {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(FrameError::TooLarge { len, max }) => {
            return Err(CtlReply::error(
                ErrorCode::InvalidArgument,
                format!("request frame of {len} bytes exceeds the limit of {max}"),
            ))
        }
        Err(e) => {
            return Err(CtlReply::error(
                ErrorCode::InvalidArgument,
                format!("bad request frame: {e}"),
            ))
        }
    };
    parse_hello(&bytes).map(Some)
}

/// Decode a request: the version first, so a p2pctl of another version
/// gets a clear sentence rather than a decode error about a new command.
pub fn parse_hello(bytes: &[u8]) -> Result<CtlHello, CtlReply> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| {
        CtlReply::error(
            ErrorCode::InvalidArgument,
            "malformed request: not a JSON document",
        )
    })?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(CtlReply::error(
                ErrorCode::InvalidArgument,
                format!(
                    "p2pctl speaks protocol version {v} but this p2pd speaks version {PROTOCOL_VERSION}; use a p2pctl and p2pd from the same release"
                ),
            ))
        }
        None => {
            return Err(CtlReply::error(
                ErrorCode::InvalidArgument,
                "malformed request: no protocol version",
            ))
        }
    }
    serde_json::from_value::<CtlHello>(value)
        .map_err(|e| CtlReply::error(ErrorCode::InvalidArgument, format!("invalid request: {e}")))
}

/// Write one reply frame; false if the client is gone.
async fn reply(stream: &mut Stream, msg: &CtlReply) -> bool {
    match tokio::time::timeout(WRITE_TIMEOUT, write_json(stream, msg, MAX_CTL_FRAME_BYTES)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!("writing a control reply: {e}");
            false
        }
        Err(_) => {
            tracing::debug!("a control client stopped reading");
            false
        }
    }
}

/// The request as logged: passwords never reach the log.
fn redacted(req: &proto::ctl::CtlRequest) -> proto::ctl::CtlRequest {
    use proto::ctl::CtlRequest;
    match req {
        CtlRequest::CreateUser { user, .. } => CtlRequest::CreateUser {
            user: user.clone(),
            password: "***".into(),
        },
        CtlRequest::Login { user, .. } => CtlRequest::Login {
            user: user.clone(),
            password: "***".into(),
        },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<CtlHello, CtlReply>) -> (ErrorCode, String) {
        match r {
            Err(CtlReply::Error(e)) => (e.code, e.message),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn only_the_daemons_own_uid_is_admitted() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("s.sock");
        let listener = bind(&path).unwrap();
        let name = path.to_fs_name::<GenericFilePath>().unwrap();
        let (client, server) = tokio::join!(Stream::connect(name), listener.accept());
        let (_client, server) = (client.unwrap(), server.unwrap());
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(peer_refusal(&server, me), None);
        let other = me.wrapping_add(1000);
        let why = peer_refusal(&server, other).expect("another owner refuses us");
        assert!(
            why.contains(&format!("belongs to uid {other}"))
                && why.contains(&format!("from uid {me}")),
            "{why}"
        );
    }

    #[test]
    fn hostile_requests_are_refused_clearly() {
        let (c, m) = code(parse_hello(b"\x00\x01garbage"));
        assert_eq!(c, ErrorCode::InvalidArgument);
        assert!(m.contains("not a JSON"), "{m}");
        let (_, m) = code(parse_hello(
            br#"{"version":99,"request":{"cmd":"whatever"}}"#,
        ));
        assert!(m.contains("version 99"), "{m}");
        let (_, m) = code(parse_hello(
            br#"{"version":1,"request":{"cmd":"create_group","group":"../x"}}"#,
        ));
        assert!(m.contains("group id"), "{m}");
        let (_, m) = code(parse_hello(br#"{"version":1,"request":{"cmd":"nope"}}"#));
        assert!(m.starts_with("invalid request"), "{m}");
        let (_, m) = code(parse_hello(br#"[1,2]"#));
        assert!(m.contains("version"), "{m}");
        assert!(parse_hello(br#"{"version":1,"request":{"cmd":"status"}}"#).is_ok());
    }
}
