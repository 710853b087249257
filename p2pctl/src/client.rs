//! The p2pctl end of the control socket: connect to `HOME/p2pd.sock`, send one
//! [`CtlHello`], read [`CtlReply`] frames until a final one.
//!
//! Progress frames go to a callback and never to stdout. A non-streaming
//! request gets [`REPLY_TIMEOUT`]; a streaming one (upload hashing, a waiting
//! download) has no overall deadline, since a big file may take hours.

use interprocess::local_socket::tokio::{prelude::*, Stream};
use interprocess::local_socket::GenericFilePath;
use proto::ctl::{CtlHello, CtlReply, CtlRequest, Progress};
use proto::frame::{read_json, write_json, FrameError, MAX_CTL_FRAME_BYTES};
use proto::{ErrorCode, WireError, PROTOCOL_VERSION};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Connecting and sending the request: a live daemon accepts at once.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting for the answer to a non-streaming request. Generous: the daemon
/// itself gives up on an unreachable tracker after a few seconds.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request got no answer from the daemon. A refusal by the daemon is
/// not one of these: it is a [`CtlReply::Error`].
#[derive(Debug)]
pub enum ClientError {
    /// Nothing listens on the socket (no file, connection refused).
    NoDaemon { socket: PathBuf, source: io::Error },
    /// Connected, but the exchange failed at `step`.
    Transport { step: &'static str, detail: String },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NoDaemon { socket, source } => {
                write!(f, "no p2pd answers on {}: {source}", socket.display())
            }
            ClientError::Transport { step, detail } => write!(f, "{step}: {detail}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// As a refusal, for the `--json` document and the `error:` line.
    pub fn to_wire(&self) -> WireError {
        WireError::new(ErrorCode::Io, self.to_string())
    }
}

fn transport(step: &'static str, e: impl fmt::Display) -> ClientError {
    ClientError::Transport {
        step,
        detail: e.to_string(),
    }
}

/// True for connect errors that mean "no daemon here", as opposed to a daemon
/// we may not talk to (permissions) or a path that cannot be a socket.
fn means_no_daemon(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut
    )
}

/// Send `request` to the daemon at `socket` and return its final reply,
/// passing every progress tick to `on_progress`.
///
/// # Errors
/// [`ClientError::NoDaemon`] when nothing listens; [`ClientError::Transport`]
/// when the exchange breaks, times out, or the reply is not understood.
pub async fn request(
    socket: &Path,
    request: CtlRequest,
    streaming: bool,
    mut on_progress: impl FnMut(&Progress),
) -> Result<CtlReply, ClientError> {
    let connect = async {
        let name = socket
            .to_fs_name::<GenericFilePath>()
            .map_err(|e| transport("naming the control socket", e))?;
        Stream::connect(name).await.map_err(|source| {
            if means_no_daemon(&source) {
                ClientError::NoDaemon {
                    socket: socket.to_path_buf(),
                    source,
                }
            } else {
                transport(
                    "connecting to p2pd",
                    format!("{}: {source}", socket.display()),
                )
            }
        })
    };
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| ClientError::NoDaemon {
            socket: socket.to_path_buf(),
            source: io::Error::new(io::ErrorKind::TimedOut, "connection timed out"),
        })??;

    let hello = CtlHello {
        version: PROTOCOL_VERSION,
        request,
    };
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        write_json(&mut stream, &hello, MAX_CTL_FRAME_BYTES),
    )
    .await
    .map_err(|_| transport("sending the request", "p2pd does not read it"))?
    .map_err(|e| transport("sending the request", e))?;

    let read_all = async {
        loop {
            match read_json::<CtlReply, _>(&mut stream, MAX_CTL_FRAME_BYTES).await {
                Ok(Some(CtlReply::Progress(p))) => on_progress(&p),
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) | Err(FrameError::Truncated) => {
                    return Err(transport(
                        "reading the reply",
                        "p2pd closed the connection before answering",
                    ))
                }
                Err(FrameError::Decode(e)) => {
                    return Err(transport(
                        "reading the reply",
                        format!("p2pd sent a reply this p2pctl does not understand (are both the same version?): {e}"),
                    ))
                }
                Err(e) => return Err(transport("reading the reply", e)),
            }
        }
    };
    if streaming {
        read_all.await
    } else {
        tokio::time::timeout(REPLY_TIMEOUT, read_all)
            .await
            .map_err(|_| {
                transport(
                    "reading the reply",
                    format!("p2pd did not answer within {} s", REPLY_TIMEOUT.as_secs()),
                )
            })?
    }
}
