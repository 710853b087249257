//! Frame-level helpers shared by both ends of a peer connection: named
//! timeouts, reading one peer message, writing one.
//!
//! Every read and write on a peer socket goes through [`with_timeout`], so
//! a stall is reported with the step it happened in.

use proto::frame::{read_frame, read_frame_into, FrameError, MAX_PEER_FRAME_BYTES};
use proto::peer::Refusal;
use proto::peer::{encode_frame, Message, PeerError};
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Opening the TCP connection to a peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshake and its answer (the seeder asks the tracker in between).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// One frame written to a peer that stopped reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Silence after which a connection is considered dead; both sides send a
/// keep-alive every [`KEEPALIVE_INTERVAL`] when they have nothing else.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Why a peer connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("{step}: {source}")]
    Frame {
        step: &'static str,
        source: FrameError,
    },
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        source: std::io::Error,
    },
    #[error("{step}: {source}")]
    Decode {
        step: &'static str,
        source: PeerError,
    },
    #[error("the peer closed the connection while {0}")]
    Closed(&'static str),
    #[error("unexpected message while {0}")]
    Unexpected(&'static str),
    #[error("the peer refused: {0}")]
    Rejected(Refusal),
    #[error("protocol violation: {0}")]
    Protocol(String),
}

/// Runs `fut` under `limit`; a timeout becomes [`ConnError::Timeout`]
/// naming `step`.
pub async fn with_timeout<T>(
    step: &'static str,
    limit: Duration,
    fut: impl Future<Output = Result<T, ConnError>>,
) -> Result<T, ConnError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ConnError::Timeout(step))?
}

/// Reads one frame's payload (length checked before allocating) under
/// `limit`. A clean end of stream is [`ConnError::Closed`].
pub async fn read_payload<R: AsyncRead + Unpin>(
    r: &mut R,
    step: &'static str,
    limit: Duration,
) -> Result<Vec<u8>, ConnError> {
    with_timeout(step, limit, async {
        read_frame(r, MAX_PEER_FRAME_BYTES)
            .await
            .map_err(|source| ConnError::Frame { step, source })?
            .ok_or(ConnError::Closed(step))
    })
    .await
}

/// [`read_payload`] into a caller's buffer (recycled block buffers).
pub async fn read_payload_into<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    step: &'static str,
    limit: Duration,
) -> Result<(), ConnError> {
    with_timeout(step, limit, async {
        match read_frame_into(r, MAX_PEER_FRAME_BYTES, buf).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ConnError::Closed(step)),
            Err(source) => Err(ConnError::Frame { step, source }),
        }
    })
    .await
}

/// Encodes `msg` as one frame into `buf` (cleared first) and writes it.
pub async fn write_msg<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &Message<'_>,
    buf: &mut Vec<u8>,
    step: &'static str,
) -> Result<(), ConnError> {
    buf.clear();
    encode_frame(msg, buf).map_err(|source| ConnError::Decode { step, source })?;
    write_bytes(w, buf, step).await
}

/// Writes already-framed bytes under [`WRITE_TIMEOUT`].
pub async fn write_bytes<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    step: &'static str,
) -> Result<(), ConnError> {
    with_timeout(step, WRITE_TIMEOUT, async {
        w.write_all(bytes)
            .await
            .map_err(|source| ConnError::Io { step, source })
    })
    .await
}
