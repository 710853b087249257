//! Serving pieces to a peer that connected to us (it downloads, we serve).
//!
//! Sequence: read the `Handshake` (under [`HANDSHAKE_TIMEOUT`]) → find what
//! we can serve: a share of the logged-in user (every piece) or a download
//! in progress (its verified pieces) → [`authorize_peer`] asks the tracker
//! → `HandshakeOk` + `Bitfield`, or `HandshakeReject` and close. Then a
//! reader future queues `Request`s (and drops `Cancel`led ones from the
//! queue) and a writer future answers them in order, one `Piece` frame
//! read from disk straight into a reused buffer on a blocking thread, under
//! the shared upload rate limit, plus `Have` for pieces a running download
//! verifies meanwhile. Whichever future ends first ends the connection.

use super::storage::{fill_piece_frame, fill_piece_frame_cached, PartFile, ServeError};
use super::wire::{
    read_payload, write_bytes, write_msg, ConnError, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT,
    KEEPALIVE_INTERVAL,
};
use crate::daemon::Daemon;
use proto::geometry;
use proto::peer::{decode, Bitfield, BlockRef, Handshake, Message, PEER_PROTOCOL_VERSION};
use proto::tracker::{TrackerReply, TrackerRequest};
use proto::{ErrorCode, WireError};
use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

/// Requests a peer may have queued with us; more is a protocol violation
/// (a well-behaved downloader keeps `PIPELINE_DEPTH_BLOCKS` outstanding).
pub const MAX_QUEUED_REQUESTS: usize = 64;

/// The one place that decides who may fetch: the tracker must vouch that
/// the ticket belongs to the handshake's user, a logged-in member of the
/// file's group.
// TODO(#5): signed tickets replace the round trip to the tracker.
///
/// # Errors
/// `not_logged_in` if we are not; the tracker's refusal (`not_logged_in`,
/// `not_member`, `invalid_argument` for an unknown or expired ticket); a
/// ticket of another user is `invalid_argument`.
pub async fn authorize_peer(daemon: &Daemon, hs: &Handshake) -> Result<(), WireError> {
    let session = daemon.require_session()?;
    let reply = daemon
        .tracker
        .call(TrackerRequest::CheckTicket {
            token: session.token,
            ticket: hs.ticket.clone(),
            group: hs.group.clone(),
            name: hs.name.clone(),
        })
        .await?;
    match reply {
        TrackerReply::TicketValid { user } if user == hs.user => Ok(()),
        TrackerReply::TicketValid { user } => Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!("the ticket belongs to {user}, not {}", hs.user),
        )),
        other => {
            tracing::error!(?other, "unexpected answer to check_ticket");
            Err(WireError::new(
                ErrorCode::TrackerUnavailable,
                "the tracker gave an unexpected answer",
            ))
        }
    }
}

/// What a connection serves from.
enum Source {
    Share {
        file: Arc<File>,
        size: u64,
        have: Bitfield,
    },
    Partial {
        part: Arc<PartFile>,
        have: watch::Receiver<Bitfield>,
    },
}

impl Source {
    fn size(&self) -> u64 {
        match self {
            Source::Share { size, .. } => *size,
            Source::Partial { part, .. } => part.size(),
        }
    }
}

fn find_source(daemon: &Daemon, hs: &Handshake) -> Result<Source, WireError> {
    let session = daemon.require_session()?;
    if let Some(entry) = daemon.shares.lookup(&hs.group, &hs.name) {
        if entry.meta.sha1 == hs.sha1 {
            let file = File::open(&entry.path).map_err(|e| {
                WireError::new(
                    ErrorCode::Io,
                    format!("cannot open the shared file {}: {e}", hs.name),
                )
            })?;
            return Ok(Source::Share {
                file: Arc::new(file),
                size: entry.size,
                have: Bitfield::full(geometry::piece_count(entry.size)),
            });
        }
    }
    if let Some((part, have)) =
        daemon
            .downloads
            .serving(&session.user, &hs.group, &hs.name, &hs.sha1)
    {
        return Ok(Source::Partial { part, have });
    }
    Err(WireError::new(
        ErrorCode::NoSuchFile,
        format!("{} in {} is not served here", hs.name, hs.group),
    ))
}

/// Serve one peer connection to its end.
pub async fn serve(stream: TcpStream, daemon: Arc<Daemon>) -> Result<(), ConnError> {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = Vec::with_capacity(256);
    let step = "reading the handshake";
    let p = read_payload(&mut rd, step, HANDSHAKE_TIMEOUT).await?;
    let hs = match decode(&p).map_err(|source| ConnError::Decode { step, source })? {
        Message::Handshake(h) => h,
        _ => return Err(ConnError::Unexpected(step)),
    };
    let admitted = if hs.version != PEER_PROTOCOL_VERSION {
        Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!(
                "peer protocol version {} is not supported (this daemon speaks {})",
                hs.version, PEER_PROTOCOL_VERSION
            ),
        ))
    } else {
        match find_source(&daemon, &hs) {
            Ok(src) => authorize_peer(&daemon, &hs).await.map(|()| src),
            Err(e) => Err(e),
        }
    };
    let step = "answering the handshake";
    let source = match admitted {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(user = %hs.user, group = %hs.group, name = %hs.name,
                "refused a peer: {e}");
            write_msg(
                &mut wr,
                &Message::HandshakeReject(e.clone()),
                &mut buf,
                step,
            )
            .await?;
            return Err(ConnError::Rejected(e));
        }
    };
    tracing::debug!(user = %hs.user, name = %hs.name, "serving a peer");
    write_msg(&mut wr, &Message::HandshakeOk, &mut buf, step).await?;
    let (mut have, mut have_rx) = match &source {
        Source::Share { have, .. } => (have.clone(), None),
        Source::Partial { have, .. } => {
            let mut rx = have.clone();
            let now = rx.borrow_and_update().clone();
            (now, Some(rx))
        }
    };
    write_msg(&mut wr, &Message::Bitfield(have.as_bytes()), &mut buf, step).await?;

    let size = source.size();
    let queue: Mutex<VecDeque<BlockRef>> = Mutex::new(VecDeque::new());
    let wake = Notify::new();
    let lock = || queue.lock().unwrap_or_else(|p| p.into_inner());

    let reader = async {
        let step = "reading requests";
        loop {
            let p = read_payload(&mut rd, step, IDLE_TIMEOUT).await?;
            match decode(&p).map_err(|source| ConnError::Decode { step, source })? {
                Message::Request(b) => {
                    b.check(size)
                        .map_err(|e| ConnError::Protocol(format!("bad request: {e}")))?;
                    let mut q = lock();
                    if q.len() >= MAX_QUEUED_REQUESTS {
                        return Err(ConnError::Protocol(format!(
                            "more than {MAX_QUEUED_REQUESTS} requests queued"
                        )));
                    }
                    q.push_back(b);
                    drop(q);
                    wake.notify_one();
                }
                Message::Cancel(b) => lock().retain(|&q| q != b),
                // Harmless from a peer that also serves: nothing to do.
                Message::KeepAlive | Message::Have(_) => {}
                _ => return Err(ConnError::Unexpected(step)),
            }
        }
    };

    let writer = async {
        let step = "sending pieces";
        let mut frame: Vec<u8> = Vec::new();
        loop {
            // Answer everything queued, in order.
            loop {
                let next = lock().pop_front();
                let Some(b) = next else { break };
                if !have.has(b.piece) {
                    write_msg(&mut wr, &Message::Reject(b), &mut buf, step).await?;
                    continue;
                }
                daemon
                    .downloads
                    .upload_limit
                    .acquire(u64::from(b.len))
                    .await;
                let (back, read) = read_block(&source, b, std::mem::take(&mut frame)).await;
                frame = back;
                match read {
                    Ok(()) => {
                        write_bytes(&mut wr, &frame, step).await?;
                        daemon
                            .uploaded
                            .fetch_add(u64::from(b.len), Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(name = %hs.name, "cannot serve a block: {e}");
                        write_msg(&mut wr, &Message::Reject(b), &mut buf, step).await?;
                    }
                }
            }
            let changed = async {
                match have_rx.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = wake.notified() => {}
                ok = changed => {
                    if !ok {
                        // The download ended; what it verified stays valid.
                        have_rx = None;
                        continue;
                    }
                    let Some(rx) = have_rx.as_mut() else { continue };
                    let now = rx.borrow_and_update().clone();
                    for p in now.ones() {
                        if !have.has(p) {
                            write_msg(&mut wr, &Message::Have(p), &mut buf, step).await?;
                        }
                    }
                    have = now;
                }
                _ = tokio::time::sleep(KEEPALIVE_INTERVAL) => {
                    write_msg(&mut wr, &Message::KeepAlive, &mut buf, step).await?;
                }
            }
        }
    };
    // Logout (or a login elsewhere) stops sharing: end the connection.
    let mut session_rx = daemon.session.subscribe();
    let serving_user = session_rx
        .borrow_and_update()
        .as_ref()
        .map(|s| s.user.clone());
    let session_over = async move {
        loop {
            if session_rx.changed().await.is_err() {
                return;
            }
            let user = session_rx
                .borrow_and_update()
                .as_ref()
                .map(|s| s.user.clone());
            if user != serving_user {
                return;
            }
        }
    };
    tokio::select! {
        r = reader => r,
        r = writer => r,
        _ = session_over => Err(ConnError::Protocol("our session ended; no longer serving".into())),
    }
}

/// Reads one block's `Piece` frame: at once if it is in the page cache,
/// else on a blocking thread; gives the buffer back for reuse.
async fn read_block(
    source: &Source,
    b: BlockRef,
    mut buf: Vec<u8>,
) -> (Vec<u8>, Result<(), ServeError>) {
    enum Handle {
        File(Arc<File>, u64),
        Part(Arc<PartFile>),
    }
    let h = match source {
        Source::Share { file, size, .. } => Handle::File(file.clone(), *size),
        Source::Partial { part, .. } => Handle::Part(part.clone()),
    };
    let cached = match &h {
        Handle::File(f, size) => fill_piece_frame_cached(f, *size, b, &mut buf),
        Handle::Part(p) => fill_piece_frame_cached(p.file(), p.size(), b, &mut buf),
    };
    match cached {
        Ok(true) => return (buf, Ok(())),
        Ok(false) => {}
        Err(e) => return (buf, Err(e)),
    }
    let job = tokio::task::spawn_blocking(move || {
        let r = match &h {
            Handle::File(f, size) => fill_piece_frame(f, *size, b, &mut buf),
            Handle::Part(p) => fill_piece_frame(p.file(), p.size(), b, &mut buf),
        };
        (buf, r)
    });
    match job.await {
        Ok(r) => r,
        Err(e) => (
            Vec::new(),
            Err(ServeError::Read(std::io::Error::other(format!(
                "reading task failed: {e}"
            )))),
        ),
    }
}
