//! The event loop of one download, from an open `.part` to every piece
//! verified.
//!
//! The loop owns the download's [`PieceTracker`], [`Availability`],
//! [`PeerBook`], [`HashGate`], [`Saver`] and `.part` file; nothing else
//! touches them, so they need no lock. It reacts to events from its peer
//! connections, to its own background jobs (piece verdicts, `Locate`), to
//! the whole-file hash catching up, and to a housekeeping tick, and
//! publishes a status after each change. The swarm module header describes
//! pipelines, endgame and verification.

use super::error::DownloadError;
use super::hash_gate::HashGate;
use super::peer_book::{Conn, PeerBook};
use super::saver::Saver;
use super::{complete, Ended, Job, Opened, RELOCATE_IDLE_INTERVAL};
use crate::swarm::peer_conn::{self, Dial, Out, PeerEvent, PeerMsg};
use crate::swarm::picker::{pick_blocks, Availability, BlockPick, LiveView, PIPELINE_DEPTH_BLOCKS};
use crate::swarm::pieces::{BlockOutcome, PeerId, PieceError, PieceTracker};
use crate::swarm::pool::BufPool;
use crate::swarm::prefix_hash::PrefixHasher;
use crate::swarm::rate::RateMeter;
use crate::swarm::serve_index::Published;
use crate::swarm::storage::{self, PartFile};
use crate::swarm::verifier::{Assembly, Verifier};
use crate::swarm::wire::ConnError;
use crate::tracker_client::Located;
use proto::ctl::{DownloadState, PeerBytes};
use proto::geometry;
use proto::peer::{
    Bitfield, BlockRef, Handshake, RefusalReason, PEER_PROTOCOL_VERSION, PIECE_DATA_START,
};
use proto::tracker::{FileMeta, PeerEntry};
use proto::WireError;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Connections one download keeps open at most.
pub const MAX_PEERS_PER_DOWNLOAD: usize = 16;
/// A peer with requests outstanding that sends no block for this long is
/// dropped and its blocks go to the others.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the tracker is asked again for holders while peers are
/// connected (see [`RELOCATE_IDLE_INTERVAL`] while none is).
pub const RELOCATE_INTERVAL: Duration = Duration::from_secs(5);
/// Tickets live 10 minutes at the tracker; fetch a new one well before.
const TICKET_REFRESH: Duration = Duration::from_secs(5 * 60);
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(500);
/// Wait before dialling a peer again after it closed, stalled or refused.
const RETRY_AFTER_CLOSE: Duration = Duration::from_secs(2);
const RETRY_AFTER_STALL: Duration = Duration::from_secs(10);
/// A banned peer is not dialled again for this download.
const RETRY_AFTER_BAN: Duration = Duration::from_secs(3600);
/// Peer events buffered per download (backpressure on the readers).
const PEER_EVENT_QUEUE: usize = 256;
/// Complete pieces waiting for the verifier (each up to 512 KiB in
/// memory); at this many, no new blocks are requested until one is done.
const MAX_VERIFY_QUEUE: u32 = 12;

/// Results of the loop's own background jobs.
enum JobEvent {
    Verified {
        piece: u32,
        result: Result<bool, DownloadError>,
    },
    Located(Result<(Located, Option<String>), WireError>),
}

/// A ticket to show holders, and when it was issued.
struct Ticket {
    ticket: Option<String>,
    at: Instant,
}

pub(super) struct Swarm<'a> {
    job: &'a Job,
    meta: FileMeta,
    part: Arc<PartFile>,
    pieces: PieceTracker,
    avail: Availability,
    book: PeerBook,
    gate: HashGate<PrefixHasher>,
    /// Notified as the whole-file hash advances while requests pause for it.
    hash_wake: Arc<tokio::sync::Notify>,
    saver: Saver,
    ticket: Ticket,
    conn_seq: u64,
    picks: Vec<BlockPick>,
    rng: StdRng,
    peer_tx: mpsc::Sender<PeerMsg>,
    peer_rx: mpsc::Receiver<PeerMsg>,
    job_tx: mpsc::UnboundedSender<JobEvent>,
    job_rx: mpsc::UnboundedReceiver<JobEvent>,
    /// Complete pieces handed to the verifier and not reported back yet.
    verifying: u32,
    /// Received blocks of in-flight pieces (only verified pieces are
    /// written, by the verifier).
    assembly: Assembly,
    verifier: Verifier,
    /// Block buffers shared by this download's connections and verifier.
    pool: Arc<BufPool>,
    /// Verified pieces, as the seeder serves them.
    have_tx: watch::Sender<Bitfield>,
    /// Keeps the verified pieces servable while the loop runs.
    _published: Published,
    marked_partial: bool,
    locating: bool,
    last_locate: Instant,
    received: u64,
    meter: RateMeter,
    rate: u64,
    /// Parent of every connection's and background job's token.
    conns: CancellationToken,
}

fn internal(what: &str, e: impl std::fmt::Display) -> DownloadError {
    DownloadError::Internal(format!("{what}: {e}"))
}

impl<'a> Swarm<'a> {
    /// Sets the swarm up on `opened` and runs it to its end.
    pub(super) async fn run(job: &'a Job, opened: Opened) -> Result<Ended, DownloadError> {
        let Opened {
            meta,
            located,
            part,
            verified,
        } = opened;
        let mut swarm = Swarm::new(job, meta, part, &verified)?;
        let result = swarm.event_loop(located).await;
        swarm.conns.cancel();
        result
    }

    fn new(
        job: &'a Job,
        meta: FileMeta,
        part: PartFile,
        verified: &Bitfield,
    ) -> Result<Swarm<'a>, DownloadError> {
        let pieces = PieceTracker::with_verified(meta.size, verified)
            .map_err(|e| internal("saved progress", e))?;
        let (have_tx, have_rx) = watch::channel(pieces.have().clone());
        let part = Arc::new(part);
        // The whole-file SHA-1 runs alongside, over the verified prefix; a
        // resumed download re-reads its saved prefix from byte 0.
        let hasher = PrefixHasher::start(part.clone())
            .map_err(|e| internal("starting the whole-file hash", e))?;
        let hash_wake = hasher.progress();
        let gate = HashGate::new(hasher, pieces.have(), meta.size);
        let published = job.ctx.serving.publish(
            (
                job.client.user().clone(),
                job.target.group.clone(),
                job.target.name.clone(),
            ),
            meta.sha1,
            part.clone(),
            have_rx,
        );
        let (peer_tx, peer_rx) = mpsc::channel(PEER_EVENT_QUEUE);
        let (job_tx, job_rx) = mpsc::unbounded_channel();
        let verdicts = job_tx.clone();
        let pool = Arc::new(BufPool::default());
        let verifier = Verifier::start(part.clone(), pool.clone(), move |piece, result| {
            let result = result.map_err(DownloadError::from);
            let _ = verdicts.send(JobEvent::Verified { piece, result });
        })
        .map_err(|e| internal("starting the piece verifier", e))?;
        let now = Instant::now();
        let saver = Saver::new(
            job.ctx.records_dir.clone(),
            job.record_key(),
            meta.sha1,
            meta.size,
            now,
        );
        Ok(Swarm {
            job,
            avail: Availability::new(pieces.piece_count()),
            pieces,
            meta,
            part,
            book: PeerBook::default(),
            gate,
            hash_wake,
            saver,
            ticket: Ticket {
                ticket: None,
                at: now,
            },
            conn_seq: 0,
            picks: Vec::new(),
            rng: StdRng::from_entropy(),
            peer_tx,
            peer_rx,
            job_tx,
            job_rx,
            verifying: 0,
            assembly: Assembly::default(),
            verifier,
            pool,
            have_tx,
            _published: published,
            marked_partial: false,
            locating: false,
            last_locate: now,
            received: 0,
            meter: RateMeter::default(),
            rate: 0,
            conns: job.stop.child_token(),
        })
    }

    async fn event_loop(&mut self, peers: Vec<PeerEntry>) -> Result<Ended, DownloadError> {
        // Nothing verified may be lost to a pause before the first save.
        self.save().await?;
        if self.pieces.have().count() > 0 {
            self.mark_partial();
        }
        self.start_locate(true);
        self.learn_peers(peers);
        self.publish();
        let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.pieces.is_complete() && self.verifying == 0 {
                return self.finish().await;
            }
            tokio::select! {
                _ = self.job.stop.cancelled() => {
                    self.conns.cancel();
                    // A pause must never discard progress: on a failed
                    // save the previous record (and the .part) stand.
                    if let Err(e) = self.save().await {
                        tracing::warn!(name = %self.job.target.name, "saving progress: {e}");
                    }
                    return Ok(Ended::Stopped);
                }
                Some(m) = self.peer_rx.recv() => self.on_peer(m)?,
                _ = self.hash_wake.notified(), if self.gate.throttled() => {
                    if !self.gate.lags() {
                        self.top_up_all();
                    }
                }
                Some(ev) = self.job_rx.recv() => self.on_job(ev)?,
                _ = tick.tick() => self.housekeeping().await?,
            }
        }
    }

    fn publish(&mut self) {
        let peers: Vec<PeerBytes> = self
            .pieces
            .verified_by_peer()
            .into_iter()
            .filter_map(|(id, bytes)| {
                Some(PeerBytes {
                    user: self.book.user_of(id)?.clone(),
                    bytes,
                })
            })
            .collect();
        let ready = self.book.ready().len() as u32;
        let active = self.book.connected() > 0;
        let (done, size, rate) = (self.pieces.verified_bytes(), self.meta.size, self.rate);
        self.job.status.update(|s| {
            s.state = if active {
                DownloadState::Downloading
            } else {
                DownloadState::Paused
            };
            s.bytes_done = done;
            s.size = size;
            s.peers = peers;
            s.rate = rate;
            s.connected = ready;
        });
    }

    async fn save(&mut self) -> Result<(), DownloadError> {
        self.saver.save(&self.part, self.pieces.have()).await
    }

    // ------------------------------------------------------------ tracker

    /// Asks the tracker for holders (and a ticket if `want_ticket`) in the
    /// background; the answer comes back as [`JobEvent::Located`].
    fn start_locate(&mut self, want_ticket: bool) {
        if self.locating {
            return;
        }
        self.locating = true;
        self.last_locate = Instant::now();
        let client = self.job.client.clone();
        let (group, name) = (self.job.target.group.clone(), self.job.target.name.clone());
        let tx = self.job_tx.clone();
        let stop = self.conns.clone();
        self.job.ctx.tasks.spawn(async move {
            let located = async {
                let l = client.locate(group.clone(), name.clone()).await?;
                let ticket = match want_ticket && !l.peers.is_empty() {
                    true => Some(client.issue_ticket(group, name).await?),
                    false => None,
                };
                Ok((l, ticket))
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                r = located => { let _ = tx.send(JobEvent::Located(r)); }
            }
        });
    }

    fn mark_partial(&mut self) {
        if self.marked_partial {
            return;
        }
        self.marked_partial = true;
        let client = self.job.client.clone();
        let (group, name) = (self.job.target.group.clone(), self.job.target.name.clone());
        self.job.ctx.tasks.spawn(async move {
            if let Err(e) = client.mark_partial(group, name).await {
                tracing::debug!("mark_partial: {e}");
            }
        });
    }

    fn on_located(
        &mut self,
        r: Result<(Located, Option<String>), WireError>,
    ) -> Result<(), DownloadError> {
        self.locating = false;
        let (located, ticket) = match r.map_err(DownloadError::from) {
            Ok(l) => l,
            Err(e) if e.is_permanent() && self.book.connected() == 0 => return Err(e),
            Err(e) => {
                tracing::debug!(name = %self.job.target.name, "locate: {e}");
                return Ok(());
            }
        };
        if located.meta.sha1 != self.meta.sha1 {
            tracing::warn!(name = %self.job.target.name,
                "the tracker now lists other content under this name; ignoring its holders");
            return Ok(());
        }
        if let Some(t) = ticket {
            self.ticket = Ticket {
                ticket: Some(t),
                at: Instant::now(),
            };
        }
        self.learn_peers(located.peers);
        Ok(())
    }

    /// Learn who is online, then dial whoever is due.
    fn learn_peers(&mut self, peers: Vec<PeerEntry>) {
        self.book
            .learn(peers, self.job.client.user(), Instant::now());
        self.dial_due();
    }

    fn dial_due(&mut self) {
        let Some(ticket) = self.ticket.ticket.clone() else {
            // Connect once a ticket arrives.
            if self.book.any_online() {
                self.start_locate(true);
            }
            return;
        };
        for id in self.book.due(Instant::now(), MAX_PEERS_PER_DOWNLOAD) {
            self.dial(id, ticket.clone());
        }
    }

    fn dial(&mut self, peer: PeerId, ticket: String) {
        let Some(addr) = self.book.get(peer).map(|s| s.addr) else {
            return;
        };
        self.conn_seq += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = self.conns.child_token();
        let t = &self.job.target;
        let dial = Dial {
            addr,
            handshake: Handshake {
                version: PEER_PROTOCOL_VERSION,
                group: t.group.clone(),
                name: t.name.clone(),
                sha1: self.meta.sha1,
                ticket,
                user: self.job.client.user().clone(),
            },
            peer,
            conn: self.conn_seq,
            events: self.peer_tx.clone(),
            out: rx,
            limiter: self.job.ctx.download_limit.clone(),
            stop: stop.clone(),
            pool: self.pool.clone(),
        };
        let conn = Conn {
            no: self.conn_seq,
            tx,
            stop,
        };
        self.book.attach(peer, conn, Instant::now());
        self.job.ctx.tasks.spawn(peer_conn::run(dial));
    }

    // ------------------------------------------------------------ peers

    fn on_peer(&mut self, m: PeerMsg) -> Result<(), DownloadError> {
        let peer = m.peer;
        if !self.book.is_current(peer, m.conn) {
            return Ok(()); // a late event of an earlier connection
        }
        match m.event {
            PeerEvent::Ready(bits) => self.on_ready(peer, &bits),
            PeerEvent::Have(i) => self.on_have(peer, i),
            PeerEvent::Reject(b) => self.on_reject(peer, b),
            PeerEvent::Block {
                piece,
                offset,
                payload,
            } => self.on_block(peer, piece, offset, payload)?,
            PeerEvent::Closed(e) => {
                if let ConnError::Rejected(r) = &e {
                    if r.reason == RefusalReason::Ticket {
                        self.ticket.ticket = None; // the tracker forgot it (restart)
                    }
                }
                if let Some(user) = self.book.user_of(peer) {
                    tracing::info!(%user, name = %self.job.target.name, "peer lost: {e}");
                }
                self.drop_peer(peer, "", RETRY_AFTER_CLOSE);
            }
        }
        Ok(())
    }

    fn on_ready(&mut self, peer: PeerId, bits: &[u8]) {
        match Bitfield::from_bytes(bits, self.pieces.piece_count()) {
            Ok(bf) => {
                self.avail.add_peer(&bf);
                if let Some(slot) = self.book.get_mut(peer) {
                    slot.bitfield = Some(bf);
                    slot.last_block = Instant::now();
                }
                self.top_up(peer);
                self.publish();
            }
            Err(e) => self.drop_peer(peer, &format!("bad bitfield: {e}"), RETRY_AFTER_STALL),
        }
    }

    fn on_have(&mut self, peer: PeerId, piece: u32) {
        if piece >= self.pieces.piece_count() {
            self.drop_peer(peer, "announced a piece past the end", RETRY_AFTER_STALL);
            return;
        }
        let bf = self.book.get_mut(peer).and_then(|s| s.bitfield.as_mut());
        if bf.is_some_and(|bf| bf.set(piece) == Ok(true)) {
            self.avail.add_have(piece);
        }
        self.top_up(peer);
    }

    fn on_reject(&mut self, peer: PeerId, b: BlockRef) {
        if let Some(block) = geometry::block_index(b.offset) {
            self.pieces.release_block(peer, b.piece, block);
        }
        // It does not have the piece (any more): stop asking it.
        let bf = self.book.get_mut(peer).and_then(|s| s.bitfield.as_mut());
        if bf.is_some_and(|bf| bf.unset(b.piece)) {
            self.avail.remove_have(b.piece);
        }
        self.top_up(peer);
        self.top_up_all();
    }

    /// Ends `peer`'s connection (if any), releases its requests and gives
    /// them to the others.
    fn drop_peer(&mut self, peer: PeerId, why: &str, retry: Duration) {
        if !why.is_empty() {
            if let Some(user) = self.book.user_of(peer) {
                tracing::info!(%user, name = %self.job.target.name, "dropping peer: {why}");
            }
        }
        if let Some(bf) = self.book.detach(peer, retry, Instant::now()) {
            self.avail.remove_peer(&bf);
        }
        self.pieces.release_peer(peer);
        self.top_up_all();
        self.publish();
    }

    fn top_up_all(&mut self) {
        for id in self.book.ready() {
            self.top_up(id);
        }
    }

    /// Fill `peer`'s pipeline up to [`PIPELINE_DEPTH_BLOCKS`].
    fn top_up(&mut self, peer: PeerId) {
        if self.verifying >= MAX_VERIFY_QUEUE {
            return; // resumed when a verdict comes back
        }
        if self.gate.lags() {
            return; // resumed as the hash catches up
        }
        let Some(slot) = self.book.get_mut(peer) else {
            return;
        };
        let (Some(conn), Some(bf)) = (&slot.conn, &slot.bitfield) else {
            return;
        };
        let outstanding = self.pieces.peer_outstanding(peer);
        let max = PIPELINE_DEPTH_BLOCKS.saturating_sub(outstanding);
        if max == 0 {
            return;
        }
        self.picks.clear();
        let view = LiveView {
            pieces: &self.pieces,
            peer,
            peer_has: bf,
            availability: &self.avail,
        };
        pick_blocks(&view, &mut self.rng, max, &mut self.picks);
        if outstanding == 0 && !self.picks.is_empty() {
            slot.last_block = Instant::now();
        }
        for pick in &self.picks {
            match self.pieces.reserve_block(peer, pick.piece, pick.block) {
                Ok(b) => {
                    if conn.tx.send(Out::Request(b)).is_err() {
                        self.pieces.release_block(peer, pick.piece, pick.block);
                    }
                }
                Err(e) => tracing::debug!("picker chose an unusable block: {e}"),
            }
        }
    }

    fn on_block(
        &mut self,
        peer: PeerId,
        piece: u32,
        offset: u32,
        payload: Vec<u8>,
    ) -> Result<(), DownloadError> {
        let len = (payload.len() - PIECE_DATA_START) as u32;
        match self.pieces.block_received(peer, piece, offset, len) {
            // Released or cancelled meanwhile.
            Err(PieceError::NotRequested { .. }) => self.pool.put(payload),
            Err(e) => {
                self.drop_peer(peer, &format!("sent a bad block: {e}"), RETRY_AFTER_STALL);
                return Ok(());
            }
            Ok(BlockOutcome::Duplicate) => self.pool.put(payload),
            Ok(BlockOutcome::Accepted {
                cancel,
                piece_complete,
            }) => {
                let b = BlockRef { piece, offset, len };
                for &c in &cancel {
                    if let Some(conn) = self.book.get(c).and_then(|s| s.conn.as_ref()) {
                        let _ = conn.tx.send(Out::Cancel(b));
                    }
                }
                self.received += u64::from(len);
                if let Some(s) = self.book.get_mut(peer) {
                    s.last_block = Instant::now();
                }
                let block = geometry::block_index(offset).unwrap_or(u32::MAX);
                let blocks = self.pieces.blocks_of(piece);
                self.assembly.insert(piece, block, blocks, payload);
                if piece_complete {
                    self.submit_piece(piece)?;
                }
                for c in cancel {
                    self.top_up(c);
                }
            }
        }
        self.top_up(peer);
        Ok(())
    }

    /// Hands a complete piece to the verifier; the verdict comes back as
    /// a [`JobEvent::Verified`].
    fn submit_piece(&mut self, piece: u32) -> Result<(), DownloadError> {
        let (Some(&expected), Some(blocks)) = (
            self.meta.pieces.get(piece as usize),
            self.assembly.take(piece),
        ) else {
            return Err(internal(
                "verifying",
                format!("piece {piece} complete but its blocks are missing"),
            ));
        };
        if !self.verifier.submit(piece, expected, blocks) {
            return Err(internal("verifying", "the piece verifier stopped"));
        }
        self.verifying += 1;
        Ok(())
    }

    fn on_job(&mut self, ev: JobEvent) -> Result<(), DownloadError> {
        match ev {
            JobEvent::Located(r) => self.on_located(r),
            JobEvent::Verified { piece, result } => {
                self.verifying = self.verifying.saturating_sub(1);
                match result? {
                    true => self.on_verified(piece),
                    false => self.on_corrupt(piece),
                }
                // Also lifts the pause of a full verify queue.
                self.top_up_all();
                self.publish();
                Ok(())
            }
        }
    }

    fn on_verified(&mut self, piece: u32) {
        if let Err(e) = self.pieces.mark_verified(piece) {
            tracing::warn!("verified piece {piece}: {e}");
        }
        self.saver.mark_dirty();
        self.gate.advance(self.pieces.have());
        self.have_tx.send_replace(self.pieces.have().clone());
        self.mark_partial();
    }

    /// A corrupt piece: fetched again elsewhere; its contributors blamed.
    fn on_corrupt(&mut self, piece: u32) {
        let culprits = self.pieces.mark_corrupt(piece).unwrap_or_default();
        self.assembly.discard(piece);
        for b in self.book.blame(&culprits) {
            let name = &self.job.target.name;
            if b.banned {
                tracing::warn!(user = %b.user, %name, piece,
                    "peer sent a corrupt piece; dropped for this download");
                self.drop_peer(b.peer, "", RETRY_AFTER_BAN);
            } else {
                tracing::warn!(user = %b.user, %name, piece,
                    "a corrupt piece had blocks from this peer and others");
            }
        }
    }

    // ------------------------------------------------------------ upkeep

    async fn housekeeping(&mut self) -> Result<(), DownloadError> {
        let now = Instant::now();
        let pieces = &self.pieces;
        let stalled = self
            .book
            .stalled(now, STALL_TIMEOUT, |id| pieces.peer_outstanding(id));
        for id in stalled {
            self.drop_peer(id, "no block for 10 s", RETRY_AFTER_STALL);
        }
        let every = match self.book.connected() {
            0 => RELOCATE_IDLE_INTERVAL,
            _ => RELOCATE_INTERVAL,
        };
        if now.duration_since(self.last_locate) >= every {
            let stale_ticket = self.ticket.ticket.is_none()
                || now.duration_since(self.ticket.at) >= TICKET_REFRESH;
            self.start_locate(stale_ticket);
        }
        self.dial_due();
        if self.saver.due(now) {
            self.save().await?;
        }
        self.rate = self.meter.update(self.received);
        self.publish();
        Ok(())
    }

    /// Every piece verified: whole-file check, rename, register, share.
    async fn finish(&mut self) -> Result<Ended, DownloadError> {
        self.conns.cancel();
        let part = self.part.clone();
        let hasher = self.gate.take().expect("finish runs once");
        let left = self.meta.size - hasher.hashed().min(self.meta.size);
        let waited = Instant::now();
        // Every piece is verified, so the prefix is the whole file: only
        // its tail is left to hash, alongside the sync.
        let ((synced, sync_ms), (sha1, hash_ms)) = tokio::join!(
            timed(super::blocking(move || part.sync_data()), waited),
            timed(hasher.finish(), waited)
        );
        synced?;
        let sha1 = sha1?;
        let t = &self.job.target;
        tracing::debug!(name = %t.name, tail_bytes = left, sync_ms, hash_ms,
            "whole-file hash: tail hashed and data synced");
        if sha1 != self.meta.sha1 {
            return Err(DownloadError::WholeFile {
                name: t.name.clone(),
                got: sha1,
                want: self.meta.sha1,
            });
        }
        let final_path = t.path.clone();
        let part_path = storage::part_path(&final_path);
        super::blocking(move || storage::finish(&part_path, &final_path)).await?;
        complete(self.job, &self.meta).await?;
        let _ = crate::swarm::resume::remove(&self.saver.path());
        self.publish();
        let sources = self.pieces.verified_by_peer().len() as u32;
        self.job.status.complete(sources);
        Ok(Ended::Complete)
    }
}

/// `f`'s output and the milliseconds from `since` to its end (for logs).
async fn timed<T>(f: impl std::future::Future<Output = T>, since: Instant) -> (T, u64) {
    let r = f.await;
    (r, since.elapsed().as_millis() as u64)
}
