//! The event loop of one download, from an open `.part` to every piece
//! verified.
//!
//! The loop owns the download's [`PieceTracker`], [`Availability`],
//! [`PeerBook`], [`HashGate`], [`Saver`] and `.part` file; nothing else
//! touches them, so they need no lock. It reacts to events from its peer
//! connections, to its own background jobs (piece verdicts, `Locate`), to
//! the whole-file hash catching up, and to a housekeeping tick, and
//! publishes a status after each change. The swarm module header describes
//! pipelines, endgame and verification. `tracker` has the loop's tracker
//! side (locate, tickets, dialling), `peers` its peer side (events,
//! pipelines, blocks, verdicts).

mod peers;
mod tracker;

use super::error::DownloadError;
use super::hash_gate::HashGate;
use super::peer_book::PeerBook;
use super::saver::Saver;
use super::{complete, Ended, Job, Opened, RELOCATE_IDLE_INTERVAL};
use crate::swarm::peer_conn::PeerMsg;
use crate::swarm::picker::{self, Availability, BlockPick};
use crate::swarm::pieces::PieceTracker;
use crate::swarm::pool::BufPool;
use crate::swarm::prefix_hash::PrefixHasher;
use crate::swarm::rate::RateMeter;
use crate::swarm::serve_index::Published;
use crate::swarm::storage::{self, PartFile};
use crate::swarm::verifier::{Assembly, Verifier};
use crate::tracker_client::Located;
use proto::ctl::{DownloadState, PeerBytes};
use proto::peer::Bitfield;
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
// At most this many peers, each given at least the least pipeline depth,
// stay within the download's budget of outstanding blocks (its memory).
const _: () = assert!(
    MAX_PEERS_PER_DOWNLOAD * picker::MIN_PIPELINE_DEPTH_BLOCKS <= picker::DOWNLOAD_DEPTH_BLOCKS
);
/// A peer with requests outstanding that sends no block for this long is
/// dropped and its blocks go to the others.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the tracker is asked again for holders while peers are
/// connected (see [`RELOCATE_IDLE_INTERVAL`] while none is).
pub const RELOCATE_INTERVAL: Duration = Duration::from_secs(5);
/// Tickets live 45 s ([`p2p_link::ticket::TICKET_LIFETIME`]); a fresh one is
/// fetched this often and sent on every open connection, well before.
const TICKET_REFRESH: Duration = Duration::from_secs(15);
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
/// Room for one batch of the SHA-1 lane kernel (8 pieces) being hashed and
/// two more arriving.
const MAX_VERIFY_QUEUE: u32 = 10;

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
    /// A source told us others fetch this file from it too: equally rare
    /// pieces are drawn from the whole file (see `picker`).
    spread: bool,
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
        if result.as_ref().is_err_and(|e| e.disk_full().is_some()) {
            // The download pauses and resumes from this record: keep every
            // piece verified so far (on a failed save the last one stands).
            if let Err(e) = swarm.save().await {
                tracing::warn!(name = %job.target.name, "saving progress on a full disk: {e}");
            }
        }
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
            spread: false,
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
        let waiting = self.book.why_idle();
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
            s.waiting = waiting;
        });
    }

    async fn save(&mut self) -> Result<(), DownloadError> {
        self.saver.save(&self.part, self.pieces.have()).await
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
        self.locate_for_hints(now);
        self.dial_due();
        if self.saver.due(now) {
            self.save().await?;
        }
        self.rate = self.meter.update(self.received);
        self.publish();
        if tracing::enabled!(tracing::Level::TRACE) {
            self.trace_peers();
        }
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
        crate::fault::point(crate::fault::Point::AfterFinish);
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
