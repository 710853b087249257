//! The one framing of every link: a `u32` big-endian length, then that many
//! payload bytes.
//!
//! The length is checked against the link's maximum *before* any memory is
//! reserved; a bad length ends the connection, since the stream cannot be
//! resynchronised. JSON messages ride inside frames via [`read_json`] and
//! [`write_json`]; piece data uses its own binary payload (the `peer` module).

use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// p2pctl <-> p2pd: small commands and listings.
pub const MAX_CTL_FRAME_BYTES: u32 = 16 * 1024 * 1024;
/// p2pd <-> tracker: a 1 TiB file's piece list is ~84 MiB of hex; we cap
/// registrations at 64 MiB frames.
pub const MAX_TRACKER_FRAME_BYTES: u32 = 64 * 1024 * 1024;
/// p2pd <-> p2pd: one block plus a small header.
pub const MAX_PEER_FRAME_BYTES: u32 = 256 * 1024;

/// Memory reserved up front for a frame; larger frames grow as they arrive.
const INITIAL_FRAME_CAPACITY: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u32, max: u32 },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("malformed message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("no frame for {0:?}")]
    Idle(Duration),
    #[error("a frame of {len} bytes took longer than {limit:?} to arrive")]
    Slow { len: u32, limit: Duration },
}

/// How fast frames must come on a link whose other end could stall on
/// purpose: a silent link is closed after `idle`, and a frame once started
/// must be whole within [`Pace::frame_deadline`] (a sender trickling a byte
/// a second cannot hold a connection, or the bytes it sent, for long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Longest silence between frames.
    pub idle: Duration,
    /// Time every frame gets, whatever its length.
    pub frame: Duration,
    /// The slowest rate a long frame may arrive at: it gets `frame` plus
    /// its length at this rate.
    pub min_bytes_per_sec: u32,
}

impl Pace {
    /// How long a frame of `len` bytes may take from its first byte.
    pub fn frame_deadline(&self, len: u32) -> Duration {
        self.frame + Duration::from_secs(u64::from(len / self.min_bytes_per_sec.max(1)))
    }
}

/// Read one frame. `Ok(None)` on a clean end of stream between frames.
///
/// # Errors
/// [`FrameError::TooLarge`] before allocating if the prefix exceeds `max`,
/// [`FrameError::Truncated`] if the stream ends inside a frame.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: u32,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut buf = Vec::new();
    Ok(read_frame_into(r, max, &mut buf).await?.then_some(buf))
}

/// Like [`read_frame`], into `buf` (cleared first), so a caller can reuse
/// buffers: `Ok(false)` on a clean end of stream. At most
/// `INITIAL_FRAME_CAPACITY` is reserved before the bytes arrive.
///
/// # Errors
/// As [`read_frame`].
pub async fn read_frame_into<R: AsyncRead + Unpin>(
    r: &mut R,
    max: u32,
    buf: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    buf.clear();
    let Some(len) = read_len(r).await? else {
        return Ok(false);
    };
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    read_body(r, len, buf).await?;
    Ok(true)
}

/// Reads a frame's length prefix: `Ok(None)` on a clean end of stream. The
/// caller checks it against its limit, then reads the payload with
/// [`read_body`].
///
/// # Errors
/// [`FrameError::Truncated`] if the stream ends inside the prefix.
pub async fn read_len<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<u32>, FrameError> {
    let mut len_buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len_buf[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    Ok(Some(u32::from_be_bytes(len_buf)))
}

/// Reads a payload of `len` bytes (already checked against the link's
/// limit) into `buf`, appended. At most `INITIAL_FRAME_CAPACITY` is
/// reserved before the bytes arrive.
///
/// # Errors
/// [`FrameError::Truncated`] if the stream ends first.
pub async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    len: u32,
    buf: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let start = buf.len();
    // Grow the buffer as bytes arrive rather than trusting the prefix: a
    // client announcing a maximal frame and then stalling costs us nothing.
    buf.reserve((len as usize).min(INITIAL_FRAME_CAPACITY));
    (&mut *r).take(u64::from(len)).read_to_end(buf).await?;
    if buf.len() - start != len as usize {
        return Err(FrameError::Truncated);
    }
    Ok(())
}

/// [`read_frame`] at `pace`: [`FrameError::Idle`] if no frame starts
/// within `pace.idle`, [`FrameError::Slow`] if a started one is not whole
/// within its deadline.
///
/// # Errors
/// As [`read_frame`], plus those two.
pub async fn read_frame_paced<R: AsyncRead + Unpin>(
    r: &mut R,
    max: u32,
    pace: Pace,
) -> Result<Option<Vec<u8>>, FrameError> {
    let len = match tokio::time::timeout(pace.idle, read_len(r)).await {
        Err(_) => return Err(FrameError::Idle(pace.idle)),
        Ok(len) => match len? {
            None => return Ok(None),
            Some(len) => len,
        },
    };
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut buf = Vec::new();
    read_body_within(r, len, &mut buf, pace.frame_deadline(len)).await?;
    Ok(Some(buf))
}

/// [`read_body`] within `limit`, else [`FrameError::Slow`].
///
/// # Errors
/// As [`read_body`], plus [`FrameError::Slow`].
pub async fn read_body_within<R: AsyncRead + Unpin>(
    r: &mut R,
    len: u32,
    buf: &mut Vec<u8>,
    limit: Duration,
) -> Result<(), FrameError> {
    tokio::time::timeout(limit, read_body(r, len, buf))
        .await
        .map_err(|_| FrameError::Slow { len, limit })?
}

/// Write one frame (length prefix and payload) and flush.
///
/// # Errors
/// [`FrameError::TooLarge`] if `payload` exceeds `max`; nothing is written.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    payload: &[u8],
    max: u32,
) -> Result<(), FrameError> {
    let len =
        u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge { len: u32::MAX, max })?;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Read one frame and decode it as JSON. `Ok(None)` on clean end of stream.
pub async fn read_json<T: DeserializeOwned, R: AsyncRead + Unpin>(
    r: &mut R,
    max: u32,
) -> Result<Option<T>, FrameError> {
    match read_frame(r, max).await? {
        None => Ok(None),
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
    }
}

/// Encode `msg` as JSON and write it as one frame.
pub async fn write_json<T: Serialize, W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &T,
    max: u32,
) -> Result<(), FrameError> {
    let bytes = serde_json::to_vec(msg)?;
    write_frame(w, &bytes, max).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_clean_eof() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello", 100).await.unwrap();
        write_frame(&mut buf, b"", 100).await.unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r, 100).await.unwrap().unwrap(), b"hello");
        assert_eq!(read_frame(&mut r, 100).await.unwrap().unwrap(), b"");
        assert!(read_frame(&mut r, 100).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn huge_length_is_refused_before_allocating() {
        let bytes = [0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3];
        let mut r = &bytes[..];
        match read_frame(&mut r, MAX_CTL_FRAME_BYTES).await {
            Err(FrameError::TooLarge { len, .. }) => assert_eq!(len, u32::MAX),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn reading_into_a_reused_buffer() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"first frame", 100).await.unwrap();
        write_frame(&mut wire, b"2nd", 100).await.unwrap();
        let mut r = &wire[..];
        let mut buf = b"old contents".to_vec();
        assert!(read_frame_into(&mut r, 100, &mut buf).await.unwrap());
        assert_eq!(buf, b"first frame");
        assert!(read_frame_into(&mut r, 100, &mut buf).await.unwrap());
        assert_eq!(buf, b"2nd");
        assert!(!read_frame_into(&mut r, 100, &mut buf).await.unwrap());
        let mut big = &[0u8, 0, 1, 0][..];
        assert!(matches!(
            read_frame_into(&mut big, 100, &mut buf).await,
            Err(FrameError::TooLarge { len: 256, max: 100 })
        ));
    }

    #[tokio::test]
    async fn a_silent_link_is_idle_and_a_trickled_frame_is_slow() {
        let long = Pace {
            idle: Duration::from_secs(60),
            frame: Duration::from_secs(30),
            min_bytes_per_sec: 1024,
        };
        assert_eq!(long.frame_deadline(10 * 1024), Duration::from_secs(40));
        let pace = Pace {
            idle: Duration::from_millis(200),
            frame: Duration::from_millis(300),
            min_bytes_per_sec: u32::MAX,
        };
        let (mut client, mut server) = tokio::io::duplex(1024);
        assert!(matches!(
            read_frame_paced(&mut server, 100, pace).await,
            Err(FrameError::Idle(_))
        ));
        // A frame announced, then a byte at a time far below the pace.
        let trickle = tokio::spawn(async move {
            client.write_all(&[0, 0, 0, 50]).await.unwrap();
            for _ in 0..50 {
                if client.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            client
        });
        assert!(matches!(
            read_frame_paced(&mut server, 100, pace).await,
            Err(FrameError::Slow { len: 50, .. })
        ));
        drop(trickle.await.unwrap());
        let mut wire = Vec::new();
        write_frame(&mut wire, b"on time", 100).await.unwrap();
        let mut r = &wire[..];
        assert_eq!(
            read_frame_paced(&mut r, 100, pace).await.unwrap().unwrap(),
            b"on time"
        );
    }

    #[tokio::test]
    async fn truncation_is_an_error() {
        let mut r = &[0u8, 0][..];
        assert!(matches!(
            read_frame(&mut r, 10).await,
            Err(FrameError::Truncated)
        ));
        let mut r = &[0u8, 0, 0, 5, 1][..];
        assert!(matches!(
            read_frame(&mut r, 10).await,
            Err(FrameError::Truncated)
        ));
    }

    #[tokio::test]
    async fn oversized_write_is_refused() {
        let mut buf = Vec::new();
        assert!(write_frame(&mut buf, &[0u8; 11], 10).await.is_err());
        assert!(buf.is_empty());
    }

    #[tokio::test]
    async fn garbage_json_is_a_decode_error() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"\x00\x01not json", 100)
            .await
            .unwrap();
        let mut r = &buf[..];
        let res: Result<Option<serde_json::Value>, _> = read_json(&mut r, 100).await;
        assert!(matches!(res, Err(FrameError::Decode(_))));
    }
}
