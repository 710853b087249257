//! The control socket `HOME/p2pd.sock`: one task per p2pctl connection.
//!
//! Owns the local-socket listener (file-path name, mode 0600) and the
//! per-connection protocol: read one [`CtlHello`] frame under
//! [`HELLO_TIMEOUT`], check its version, dispatch the request, and write
//! any number of [`CtlReply::Progress`] frames followed by one final reply.
//! Bad input (garbage, an oversized length, undecodable JSON, a hostile id,
//! another version) is answered with `invalid_argument` where the stream
//! still allows it, then the connection closes; it never ends the daemon.

use crate::daemon::Daemon;
use interprocess::local_socket::tokio::{prelude::*, Stream};
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use proto::ctl::{CtlHello, CtlReply, Progress};
use proto::frame::{read_frame, write_json, FrameError, MAX_CTL_FRAME_BYTES};
use proto::{ErrorCode, PROTOCOL_VERSION};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a client may take to send its request.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
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

/// Where a command sends its progress ticks; the connection task writes
/// them before the final reply. Sending never blocks the command.
#[derive(Debug, Clone)]
pub struct ProgressSink(mpsc::Sender<Progress>);

impl ProgressSink {
    pub fn send(&self, tick: Progress) {
        // Full (slow client) or closed (client gone): drop the tick; the
        // command carries on either way.
        let _ = self.0.try_send(tick);
    }

    /// A sink whose ticks go nowhere (detached commands, tests).
    pub fn detached() -> ProgressSink {
        ProgressSink(mpsc::channel(1).0)
    }

    /// True once the client is gone (it stopped waiting).
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// Accept control connections until `shutdown`.
pub async fn run(listener: CtlListener, daemon: Arc<Daemon>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accepting a control connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let daemon = daemon.clone();
        let shutdown = shutdown.clone();
        daemon.clone().tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = handle(stream, daemon) => {}
            }
        });
    }
}

/// One p2pctl connection: one request, progress ticks, one final reply.
async fn handle(mut stream: Stream, daemon: Arc<Daemon>) {
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
    tracing::debug!(request = ?redacted(&hello.request), "control request");

    let (tx, mut rx) = mpsc::channel(PROGRESS_QUEUE);
    let sink = ProgressSink(tx);
    let command = crate::commands::dispatch(&daemon, hello.request, sink);
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
