//! Serving pieces to a peer that connected to us (it downloads, we serve).
//!
//! Sequence: the TLS handshake (the peer proves its link key; see
//! [`p2p_link::tls`]) → read the `Handshake` (both within [`OPENING_DEADLINE`]) → [`admit`]:
//! find what we can serve in the [`ServeIndex`] (a share of the logged-in
//! user: every piece; a download in progress: its verified pieces), then
//! check the ticket on our own: signed by the cluster, for the handshake's
//! user, group and file, on the link key the peer just proved ([`Lease`];
//! no tracker round trip) → `HandshakeOk` + `Bitfield`, or
//! `HandshakeReject` with a typed [`Refusal`] and close (also when every
//! serving place is taken: the place is taken only now). Then a reader
//! future queues `Request`s (drops `Cancel`led ones from the queue, renews
//! the lease with fresh `Ticket`s) and a writer future answers them in
//! order, one `Piece` frame read from disk straight into a reused buffer,
//! under the shared upload rate limit, plus `Have` for pieces a running
//! download verifies meanwhile and `Fetchers` when the set of others
//! fetching the same file from us changes ([`FetcherBook`](super::fetchers::FetcherBook)); both go out
//! between two blocks, so a busy pipeline does not hold them back.
//! Whichever future ends first ends the connection; so do the end of our
//! session and the end of the lease.

use super::context::SwarmContext;
use super::fetchers::{self, Fetching, FileKey};
use super::lease::{now_s, Lease};
use super::serve_index::{ServeIndex, Source};
use super::steering::Member;
use super::storage::{fill_piece_frame, fill_piece_frame_cached, PartFile, ServeError};
use super::wire::{
    read_payload, with_timeout, write_bytes, write_msg, ConnError, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT,
    KEEPALIVE_INTERVAL,
};
use crate::session::SessionStore;
use p2p_link::PublicKey;
use p2p_link::{LinkReader, LinkWriter};
use proto::peer::{
    decode, Bitfield, BlockRef, Handshake, Message, Refusal, RefusalReason, MAX_FETCHERS_LISTED,
    PEER_PROTOCOL_VERSION,
};
use proto::{ErrorCode, UserId, WireError};
use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

/// Requests a peer may have queued with us; more is a protocol violation
/// (a well-behaved downloader keeps at most `PIPELINE_DEPTH_BLOCKS`
/// outstanding).
pub const MAX_QUEUED_REQUESTS: usize = 64;

/// How long a connecting peer has for the TLS handshake and its
/// `Handshake` together, before it is admitted or refused.
pub const OPENING_DEADLINE: Duration = Duration::from_secs(10);

/// Serve one peer connection to its end. `opening` is held while the peer
/// secures the link and shows its handshake (at most [`OPENING_DEADLINE`]);
/// once the ticket checks out, `take_slot` gives the place it is served
/// in, held to the end, or `None` (every place taken: it is refused as
/// unavailable, to come back later). So a place is never held by a peer
/// that has not proved it may fetch.
///
/// # Errors
/// Why the connection ended (refused, closed, timed out, misbehaved).
pub async fn serve<H, S>(
    stream: TcpStream,
    ctx: Arc<SwarmContext>,
    opening: H,
    take_slot: impl FnOnce() -> Option<S>,
) -> Result<(), ConnError> {
    let _ = stream.set_nodelay(true);
    let step = "securing the link and reading the handshake";
    let (secured_peer, mut rd, mut wr, hs) = with_timeout(step, OPENING_DEADLINE, async {
        let secured = ctx
            .endpoint
            .accept(stream)
            .await
            .map_err(|e| ConnError::Protocol(format!("securing the link: {e}")))?;
        let (mut rd, wr) = p2p_link::tls::split(secured.link);
        let hs = read_handshake(&mut rd).await?;
        Ok((secured.peer, rd, wr, hs))
    })
    .await?;
    drop(opening);
    let mut buf = Vec::with_capacity(256);
    let step = "answering the handshake";
    let admitted = admit(&ctx, &hs, secured_peer).and_then(|admitted| match take_slot() {
        Some(slot) => Ok((admitted, slot)),
        None => Err(Refusal::new(
            RefusalReason::Unavailable,
            WireError::new(
                ErrorCode::Io,
                "this peer is serving as many downloaders as it can; try again later",
            ),
        )),
    });
    let ((source, serving_user, lease), _slot) = match admitted {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::info!(user = %hs.user, group = %hs.group, name = %hs.name,
                "refused a peer: {refusal}");
            let reject = Message::HandshakeReject(refusal.clone());
            write_msg(&mut wr, &reject, &mut buf, step).await?;
            return Err(ConnError::Rejected(refusal));
        }
    };
    tracing::debug!(user = %hs.user, name = %hs.name, "serving a peer");
    write_msg(&mut wr, &Message::HandshakeOk, &mut buf, step).await?;
    let key = FileKey {
        group: hs.group.clone(),
        name: hs.name.clone(),
        sha1: hs.sha1,
    };
    let (fetching, fetchers) = ctx.fetchers.join(key, hs.user.clone());
    let crowd = Crowd::join(&source, &fetching, &fetchers.borrow(), &hs);
    let mut announced = Announced::of(&source, fetchers, &hs);
    let shown = match &crowd {
        Crowd::Whole(m) => lock(m).shown().unwrap_or(&announced.have).clone(),
        Crowd::Unsteered => announced.have.clone(),
    };
    write_msg(
        &mut wr,
        &Message::Bitfield(shown.as_bytes()),
        &mut buf,
        step,
    )
    .await?;
    announced.tell_fetchers(&mut wr, &mut buf).await?;

    let requests = Requests::default();
    let writer = Writer {
        ctx: &ctx,
        source: &source,
        requests: &requests,
        crowd: &crowd,
        name: &hs.name,
    };
    tokio::select! {
        r = read_requests(&mut rd, &requests, &crowd, source.size(), &lease) => r,
        r = writer.run(&mut wr, &mut announced) => r,
        _ = session_over(ctx.client.sessions(), serving_user) => {
            Err(ConnError::Protocol("our session ended; no longer serving".into()))
        }
        () = lease.ended() => {
            tracing::info!(user = %hs.user, name = %hs.name,
                "a peer's ticket ran out without a fresh one; no longer serving it");
            Err(ConnError::Protocol("the ticket expired and no fresh one came".into()))
        }
    }
}

async fn read_handshake(rd: &mut LinkReader) -> Result<Handshake, ConnError> {
    let step = "reading the handshake";
    let p = read_payload(rd, step, HANDSHAKE_TIMEOUT).await?;
    match decode(&p).map_err(|source| ConnError::Decode { step, source })? {
        Message::Handshake(h) => Ok(h),
        _ => Err(ConnError::Unexpected(step)),
    }
}

/// Decides whether to serve `hs`, shown on a link keyed by `requester`:
/// the file must be served here and the ticket must be the cluster's word
/// that the handshake user, on this link, may fetch it. Returns what to
/// serve, as whom, and the lease the ticket grants.
///
/// # Errors
/// The typed refusal to send back.
fn admit(
    ctx: &SwarmContext,
    hs: &Handshake,
    requester: PublicKey,
) -> Result<(Source, UserId, Lease), Refusal> {
    if hs.version != PEER_PROTOCOL_VERSION {
        return Err(Refusal::new(
            RefusalReason::Version,
            WireError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "peer protocol version {} is not supported (this daemon speaks {})",
                    hs.version, PEER_PROTOCOL_VERSION
                ),
            ),
        ));
    }
    let client = ctx
        .client
        .current()
        .map_err(|e| Refusal::new(RefusalReason::Unavailable, e))?;
    let source = find(&ctx.serving, &client, hs)?;
    let Some(key) = ctx.client.link().ticket_key() else {
        return Err(Refusal::new(
            RefusalReason::Unavailable,
            WireError::new(
                ErrorCode::TrackerUnavailable,
                "this daemon has not reached a tracker yet, so it cannot check tickets",
            ),
        ));
    };
    let claim = (hs.user.clone(), hs.group.clone(), hs.name.clone());
    let lease = Lease::grant(key, &hs.ticket, claim, requester, now_s()).map_err(|e| {
        Refusal::new(
            RefusalReason::Ticket,
            WireError::new(ErrorCode::InvalidArgument, e.to_string()),
        )
    })?;
    Ok((source, client.user().clone(), lease))
}

fn find(
    index: &ServeIndex,
    client: &crate::tracker_client::SessionClient,
    hs: &Handshake,
) -> Result<Source, Refusal> {
    index
        .find(client, &hs.group, &hs.name, &hs.sha1)
        .map_err(|e| {
            let reason = match e.code {
                ErrorCode::NoSuchFile => RefusalReason::NotServed,
                _ => RefusalReason::Unavailable,
            };
            Refusal::new(reason, e)
        })
}

/// What the peer has been told: our pieces, and who else fetches the file.
struct Announced {
    have: Bitfield,
    /// A running download's verified pieces, as they grow.
    updates: Option<watch::Receiver<Bitfield>>,
    /// Everyone fetching this file from us (the peer included).
    fetchers: watch::Receiver<Arc<[UserId]>>,
    /// The peer's user, left out of what it is told.
    peer: UserId,
    /// The peer understands `Fetchers` (see `Handshake::crowd`).
    tell: bool,
    /// Whether the peer was told of anyone (an empty list is sent only to
    /// say the others are gone).
    told_any: bool,
}

impl Announced {
    fn of(source: &Source, fetchers: watch::Receiver<Arc<[UserId]>>, hs: &Handshake) -> Announced {
        let (have, updates) = match source {
            Source::Share { have, .. } => (have.clone(), None),
            Source::Partial { have, .. } => {
                let mut rx = have.clone();
                let now = rx.borrow_and_update().clone();
                (now, Some(rx))
            }
        };
        Announced {
            have,
            updates,
            fetchers,
            peer: hs.user.clone(),
            tell: hs.crowd,
            told_any: false,
        }
    }

    /// Whether anything is left to announce right now.
    fn pending(&self) -> bool {
        (self.tell && self.fetchers.has_changed().unwrap_or(false))
            || self
                .updates
                .as_ref()
                .is_some_and(|rx| rx.has_changed().unwrap_or(false))
    }

    /// `Fetchers` with the current list, unless there is nothing new to say.
    async fn tell_fetchers(
        &mut self,
        wr: &mut LinkWriter,
        buf: &mut Vec<u8>,
    ) -> Result<(), ConnError> {
        let all = self.fetchers.borrow_and_update().clone();
        if !self.tell {
            return Ok(());
        }
        let others = fetchers::others(
            &all,
            &self.peer,
            MAX_FETCHERS_LISTED,
            &mut rand::thread_rng(),
        );
        if others.is_empty() && !self.told_any {
            return Ok(());
        }
        self.told_any = !others.is_empty();
        write_msg(wr, &Message::Fetchers(others), buf, "announcing fetchers").await
    }

    /// `Fetchers` if the list changed, and `Have` for every piece verified
    /// since the last announcement.
    async fn announce(&mut self, wr: &mut LinkWriter, buf: &mut Vec<u8>) -> Result<(), ConnError> {
        if self.tell && self.fetchers.has_changed().unwrap_or(false) {
            self.tell_fetchers(wr, buf).await?;
        }
        self.announce_pieces(wr, buf).await
    }

    /// `Have` for every piece verified since the last announcement. It
    /// compares with what was announced rather than asking the watch
    /// whether it changed: a `changed().await` that woke the writer has
    /// already marked the new value seen.
    async fn announce_pieces(
        &mut self,
        wr: &mut LinkWriter,
        buf: &mut Vec<u8>,
    ) -> Result<(), ConnError> {
        let Some(rx) = self.updates.as_mut() else {
            return Ok(());
        };
        // Closed: the download ended. What it verified stays valid, and
        // its last value may not have been announced yet.
        let ended = rx.has_changed().is_err();
        let now = rx.borrow_and_update().clone();
        if ended {
            self.updates = None;
        }
        for p in now.ones() {
            if !self.have.has(p) {
                write_msg(wr, &Message::Have(p), buf, "announcing pieces").await?;
            }
        }
        self.have = now;
        Ok(())
    }
}

/// This connection's part in steering the file's crowd (see `steering`).
enum Crowd {
    /// We serve part of the file (nothing to steer), or the peer does not
    /// tell us what it holds (an older daemon): shown all we have.
    Unsteered,
    /// We serve the whole file to a crowd member.
    Whole(Mutex<Member>),
}

impl Crowd {
    /// A crowd member fetching a whole file is steered if others fetch the
    /// file from us too as it comes (`fetchers`: everyone, itself
    /// included); alone, it is shown everything but still counts.
    fn join(source: &Source, fetching: &Fetching, fetchers: &[UserId], hs: &Handshake) -> Crowd {
        let Source::Share { have, .. } = source else {
            return Crowd::Unsteered;
        };
        if !hs.crowd {
            return Crowd::Unsteered;
        }
        let steering = fetching.steering(have.len());
        let member = if fetchers.iter().all(|u| *u == hs.user) {
            Member::plain(steering, have.len())
        } else {
            Member::steered(steering, have.len(), &mut rand::thread_rng())
        };
        Crowd::Whole(Mutex::new(member))
    }

    /// The peer asked for `piece`.
    fn requested(&self, piece: u32) {
        if let Crowd::Whole(m) = self {
            lock(m).requested(piece);
        }
    }

    /// The peer says it holds `piece`; true if that gives it something
    /// new to be shown.
    fn holds(&self, piece: u32) -> bool {
        match self {
            Crowd::Whole(m) => {
                let mut m = lock(m);
                m.holds(piece, &mut rand::thread_rng());
                m.pending()
            }
            Crowd::Unsteered => false,
        }
    }

    fn pending(&self) -> bool {
        match self {
            Crowd::Whole(m) => lock(m).pending(),
            Crowd::Unsteered => false,
        }
    }

    /// `Have` for each piece the peer is newly shown.
    async fn announce(&self, wr: &mut LinkWriter, buf: &mut Vec<u8>) -> Result<(), ConnError> {
        let Crowd::Whole(m) = self else {
            return Ok(());
        };
        let mut shown = Vec::new();
        lock(m).take_announcements(&mut shown);
        for p in shown {
            write_msg(wr, &Message::Have(p), buf, "announcing pieces").await?;
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Requests read and not answered yet.
#[derive(Default)]
struct Requests {
    queue: Mutex<VecDeque<BlockRef>>,
    wake: Notify,
}

impl Requests {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<BlockRef>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Queues the peer's requests (each checked against the file's size),
/// forgets cancelled ones and renews the lease with fresh tickets; ends on
/// the first bad or unexpected message.
async fn read_requests(
    rd: &mut LinkReader,
    requests: &Requests,
    crowd: &Crowd,
    size: u64,
    lease: &Lease,
) -> Result<(), ConnError> {
    let step = "reading requests";
    loop {
        let p = read_payload(rd, step, IDLE_TIMEOUT).await?;
        match decode(&p).map_err(|source| ConnError::Decode { step, source })? {
            Message::Request(b) => {
                b.check(size)
                    .map_err(|e| ConnError::Protocol(format!("bad request: {e}")))?;
                let mut q = requests.lock();
                if q.len() >= MAX_QUEUED_REQUESTS {
                    return Err(ConnError::Protocol(format!(
                        "more than {MAX_QUEUED_REQUESTS} requests queued"
                    )));
                }
                q.push_back(b);
                drop(q);
                crowd.requested(b.piece);
                requests.wake.notify_one();
            }
            Message::Cancel(b) => requests.lock().retain(|&q| q != b),
            Message::Ticket(t) => lease
                .renew(t, now_s())
                .map_err(|e| ConnError::Protocol(format!("a fresh ticket was refused: {e}")))?,
            // A downloader tells us what it holds, so a steered one can be
            // shown a new piece.
            Message::Have(p) => {
                if crowd.holds(p) {
                    requests.wake.notify_one();
                }
            }
            Message::KeepAlive => {}
            _ => return Err(ConnError::Unexpected(step)),
        }
    }
}

/// The sending half of a served connection.
struct Writer<'a> {
    ctx: &'a SwarmContext,
    source: &'a Source,
    requests: &'a Requests,
    crowd: &'a Crowd,
    name: &'a proto::FileName,
}

impl Writer<'_> {
    /// Answers requests in order, announces newly verified pieces and
    /// fetchers, and keeps the connection alive when idle.
    async fn run(&self, wr: &mut LinkWriter, announced: &mut Announced) -> Result<(), ConnError> {
        let step = "sending pieces";
        let mut buf = Vec::with_capacity(256);
        let mut frame: Vec<u8> = Vec::new();
        loop {
            self.answer_queued(wr, announced, &mut frame, &mut buf)
                .await?;
            let have_changed = async {
                match announced.updates.as_mut() {
                    Some(rx) => {
                        // Ok or not (the download ended), `announce` sorts it out.
                        let _ = rx.changed().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let fetchers_changed = async {
                if announced.fetchers.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = self.requests.wake.notified() => {}
                () = have_changed => announced.announce_pieces(wr, &mut buf).await?,
                () = fetchers_changed => announced.tell_fetchers(wr, &mut buf).await?,
                _ = tokio::time::sleep(KEEPALIVE_INTERVAL) => {
                    write_msg(wr, &Message::KeepAlive, &mut buf, step).await?;
                }
            }
        }
    }

    /// Answers everything queued, in order: a `Piece` for what we have, a
    /// `Reject` for what we do not (or cannot read).
    async fn answer_queued(
        &self,
        wr: &mut LinkWriter,
        announced: &mut Announced,
        frame: &mut Vec<u8>,
        buf: &mut Vec<u8>,
    ) -> Result<(), ConnError> {
        let step = "sending pieces";
        loop {
            if announced.pending() {
                announced.announce(wr, buf).await?;
            }
            if self.crowd.pending() {
                self.crowd.announce(wr, buf).await?;
            }
            let next = self.requests.lock().pop_front();
            let Some(b) = next else { return Ok(()) };
            if !announced.have.has(b.piece) {
                write_msg(wr, &Message::Reject(b), buf, step).await?;
                continue;
            }
            self.ctx.upload_limit.acquire(u64::from(b.len)).await;
            let (back, read) = read_block(self.source, b, std::mem::take(frame)).await;
            *frame = back;
            match read {
                Ok(()) => {
                    write_bytes(wr, frame, step).await?;
                    self.ctx
                        .uploaded
                        .fetch_add(u64::from(b.len), Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(name = %self.name, "cannot serve a block: {e}");
                    write_msg(wr, &Message::Reject(b), buf, step).await?;
                }
            }
        }
    }
}

/// Resolves when the session we serve as ends or changes: logout (or a
/// login elsewhere) stops sharing.
async fn session_over(sessions: &SessionStore, serving: UserId) {
    let mut rx = sessions.subscribe();
    loop {
        let user = rx.borrow_and_update().as_ref().map(|s| s.user.clone());
        if user.as_ref() != Some(&serving) || rx.changed().await.is_err() {
            return;
        }
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
