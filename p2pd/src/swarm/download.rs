//! One download's task: from the tracker's `Locate` to the finished file.
//!
//! The task owns the download's [`PieceTracker`], [`Availability`],
//! [`PartFile`] and resume record; nothing else touches them. It reacts to
//! events on two channels (peer connections; its own background jobs:
//! piece verification, `Locate`) and to a housekeeping tick, and publishes
//! a [`Snapshot`] through the registry entry after each change. See the
//! `swarm` module header for the design.
//!
//! Peer lifecycle: known (from `Locate`) → connecting (a connection task,
//! `conn` set) → ready (bitfield received) → lost (closed, stalled, lied):
//! its requests are released to the others; it is dialled again after
//! `retry_at` if the tracker still lists it online. A peer that sent a
//! corrupt piece is banned for the rest of this download.

use super::peer_conn::{self, Dial, Out, PeerEvent, PeerMsg};
use super::picker::{pick_blocks, Availability, BlockPick, LiveView, PIPELINE_DEPTH_BLOCKS};
use super::pieces::{BlockOutcome, PeerId, PieceError, PieceTracker};
use super::pool::BufPool;
use super::prefix_hash::{verified_prefix, PrefixHasher};
use super::resume::{self, ResumeRecord, RESUME_SAVE_INTERVAL};
use super::storage::{self, PartFile, PartMode, StorageError};
use super::verifier::{Assembly, Verifier};
use super::wire::ConnError;
use crate::commands::RateMeter;
use crate::daemon::Daemon;
use crate::downloads::{Entry, Snapshot};
use crate::session::{self, Session};
use crate::shares::{FileStamp, ShareEntry};
use proto::ctl::{DownloadState, PeerBytes};
use proto::geometry;
use proto::peer::{Bitfield, BlockRef, Handshake, PEER_PROTOCOL_VERSION, PIECE_DATA_START};
use proto::tracker::{FileMeta, PeerEntry, TrackerReply, TrackerRequest};
use proto::{ErrorCode, UserId, WireError};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
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
/// connected, and while none is.
pub const RELOCATE_INTERVAL: Duration = Duration::from_secs(5);
pub const RELOCATE_IDLE_INTERVAL: Duration = Duration::from_secs(2);
/// Tickets live 10 minutes at the tracker; fetch a new one well before.
const TICKET_REFRESH: Duration = Duration::from_secs(5 * 60);
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(500);
/// Wait before dialling a peer again after it closed, stalled or refused.
/// Corrupt pieces shared with other contributors before a peer is banned.
const MAX_STRIKES: u32 = 3;
const RETRY_AFTER_CLOSE: Duration = Duration::from_secs(2);
const RETRY_AFTER_STALL: Duration = Duration::from_secs(10);
/// Peer events buffered per download (backpressure on the readers).
const PEER_EVENT_QUEUE: usize = 256;
/// Complete pieces waiting for the verifier (each up to 512 KiB in
/// memory); at this many, no new blocks are requested until one is done.
const MAX_VERIFY_QUEUE: u32 = 12;
/// Verified bytes the whole-file hash may lag behind before requests
/// pause. When the CPU is the limit (fast peers, loopback), transfer and
/// piece checks would otherwise take the cores first and leave the whole
/// file's hash to run alone at the end on one core; with this bound both
/// run side by side and the hash finishes with the last piece. A network
/// slower than the hash never reaches it.
const MAX_HASH_BACKLOG: u64 = 48 * 1024 * 1024;

/// Who runs a download, and how to stop it.
pub struct Job {
    pub daemon: Arc<Daemon>,
    pub entry: Arc<Entry>,
    pub session: Session,
    /// Cancelled on logout or daemon stop: save and pause.
    pub stop: CancellationToken,
}

/// How a download task starts.
pub enum Start {
    /// `download_file` located the file, found holders and created the
    /// `.part` file.
    New {
        meta: FileMeta,
        peers: Vec<PeerEntry>,
        part: PartFile,
    },
    /// A saved record (login, daemon start).
    Resume { record: ResumeRecord },
}

enum Outcome {
    Complete,
    Stopped,
}

/// Runs the download to completion, failure, or a stop; the entry shows
/// which.
pub async fn run(job: Job, start: Start) {
    let outcome = drive(&job, start).await;
    let entry = &job.entry;
    match outcome {
        Ok(Outcome::Complete) => {
            tracing::info!(name = %entry.name, path = %entry.path.display(), "download complete")
        }
        Ok(Outcome::Stopped) => {
            entry.update(|s| {
                if s.state == DownloadState::Downloading {
                    s.state = DownloadState::Paused;
                }
                s.connected = 0;
                s.rate = 0;
            });
        }
        Err(e) => {
            tracing::warn!(name = %entry.name, "download failed: {e}");
            abandon(&job).await;
            entry.update(|s| {
                s.state = DownloadState::Failed;
                s.error = Some(e);
                s.connected = 0;
                s.rate = 0;
            });
        }
    }
    entry.clear_serving();
    entry.set_running(None);
}

/// A failed download leaves nothing behind: no `.part`, no record, no
/// partial holding at the tracker.
async fn abandon(job: &Job) {
    let entry = job.entry.clone();
    let record = record_path(&job.daemon, &job.entry);
    let _ = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_file(storage::part_path(&entry.path));
        let _ = resume::remove(&record);
    })
    .await;
    let req = TrackerRequest::StopShare {
        token: job.session.token.clone(),
        group: job.entry.group.clone(),
        name: job.entry.name.clone(),
    };
    if let Err(e) = job.daemon.tracker.call(req).await {
        tracing::debug!("stop_share after a failed download: {e}");
    }
}

/// `HOME/downloads/`.
pub fn records_dir(daemon: &Daemon) -> PathBuf {
    daemon.home.dir().join("downloads")
}

fn record_path(daemon: &Daemon, entry: &Entry) -> PathBuf {
    records_dir(daemon).join(resume::resume_file_name(
        &entry.user,
        &entry.group,
        &entry.name,
    ))
}

fn io_error(e: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::Io, e.to_string())
}

/// Runs a blocking closure off the reactor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, WireError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(io_error),
        Err(e) => Err(io_error(format!("disk task failed: {e}"))),
    }
}

/// What one `Locate` (and maybe `IssueTicket`) gave.
pub struct Located {
    pub meta: FileMeta,
    pub peers: Vec<PeerEntry>,
    pub ticket: Option<String>,
}

/// `Locate`, then `IssueTicket` if `want_ticket`. `not_logged_in` ends
/// the local session too.
///
/// # Errors
/// The tracker's refusal, or an inconsistent meta (`invalid_argument`).
pub async fn locate(
    daemon: &Daemon,
    session: &Session,
    group: &proto::GroupId,
    name: &proto::FileName,
    want_ticket: bool,
) -> Result<Located, WireError> {
    let call = |req| async {
        let r = daemon.tracker.call(req).await;
        if let Err(e) = &r {
            if e.code == ErrorCode::NotLoggedIn {
                session::session_ended_elsewhere(daemon, session);
            }
        }
        r
    };
    let (meta, peers) = match call(TrackerRequest::Locate {
        token: session.token.clone(),
        group: group.clone(),
        name: name.clone(),
    })
    .await?
    {
        TrackerReply::Located { meta, peers } => (meta, peers),
        other => return Err(unexpected(other)),
    };
    if !meta.is_consistent() || &meta.name != name {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!("the tracker's description of {name} is inconsistent"),
        ));
    }
    let ticket = if want_ticket && !peers.is_empty() {
        match call(TrackerRequest::IssueTicket {
            token: session.token.clone(),
            group: group.clone(),
            name: name.clone(),
        })
        .await?
        {
            TrackerReply::Ticket { ticket } => Some(ticket),
            other => return Err(unexpected(other)),
        }
    } else {
        None
    };
    Ok(Located {
        meta,
        peers,
        ticket,
    })
}

fn unexpected(reply: TrackerReply) -> WireError {
    tracing::error!(?reply, "unexpected tracker reply");
    WireError::new(
        ErrorCode::TrackerUnavailable,
        "the tracker gave an unexpected answer",
    )
}

/// Refusals after which retrying cannot help.
fn is_permanent(e: &WireError) -> bool {
    matches!(
        e.code,
        ErrorCode::NoSuchFile | ErrorCode::NoSuchGroup | ErrorCode::NotMember
    )
}

async fn drive(job: &Job, start: Start) -> Result<Outcome, WireError> {
    let entry = &job.entry;
    let (meta, peers, part, verified) = match start {
        Start::New { meta, peers, part } => {
            let count = geometry::piece_count(meta.size);
            (meta, peers, part, Bitfield::new(count))
        }
        Start::Resume { record } => {
            let located = loop {
                match locate(&job.daemon, &job.session, &entry.group, &entry.name, false).await {
                    Ok(l) => break l,
                    Err(e) if is_permanent(&e) => return Err(e),
                    Err(e) => {
                        tracing::debug!(name = %entry.name, "cannot resume yet: {e}");
                        entry.update(|s| s.state = DownloadState::Paused);
                        tokio::select! {
                            _ = job.stop.cancelled() => return Ok(Outcome::Stopped),
                            _ = tokio::time::sleep(RELOCATE_IDLE_INTERVAL) => {}
                        }
                    }
                }
            };
            let meta = located.meta;
            let part_path = storage::part_path(&record.path);
            let part_ok = std::fs::symlink_metadata(&part_path).is_ok_and(|m| m.is_file());
            let keep = part_ok && record.matches(&meta.sha1, meta.size);
            if !keep {
                tracing::warn!(name = %entry.name,
                    "the saved progress does not match the file any more; starting over");
            }
            let verified = if keep {
                record.verified
            } else {
                Bitfield::new(geometry::piece_count(meta.size))
            };
            let mode = if keep {
                PartMode::Resume
            } else {
                PartMode::Fresh
            };
            let size = meta.size;
            let part = blocking(move || PartFile::open(&part_path, size, mode)).await?;
            (meta, located.peers, part, verified)
        }
    };
    let pieces = PieceTracker::with_verified(meta.size, &verified)
        .map_err(|e| io_error(format!("saved progress: {e}")))?;
    let (have_tx, have_rx) = watch::channel(pieces.have().clone());
    let part = Arc::new(part);
    // The whole-file SHA-1 runs alongside, over the verified prefix; a
    // resumed download re-reads its saved prefix from byte 0.
    let mut prefix = PrefixHasher::start(part.clone())
        .map_err(|e| io_error(format!("starting the whole-file hash: {e}")))?;
    let (prefix_pieces, prefix_bytes) = verified_prefix(pieces.have(), meta.size, 0);
    prefix.advance(prefix_bytes);
    let hash_wake = prefix.progress();
    entry.set_serving(part.clone(), have_rx, meta.sha1);
    let (peer_tx, peer_rx) = mpsc::channel(PEER_EVENT_QUEUE);
    let (job_tx, job_rx) = mpsc::unbounded_channel();
    let verdicts = job_tx.clone();
    let pool = Arc::new(BufPool::default());
    let verifier = Verifier::start(part.clone(), pool.clone(), move |piece, result| {
        let result = result.map_err(io_error);
        let _ = verdicts.send(JobEvent::Verified { piece, result });
    })
    .map_err(|e| io_error(format!("starting the piece verifier: {e}")))?;
    let count = pieces.piece_count();
    let now = Instant::now();
    let mut dl = Dl {
        job,
        record: record_path(&job.daemon, entry),
        avail: Availability::new(count),
        pieces,
        meta,
        part,
        prefix: Some(prefix),
        prefix_pieces,
        resumed_prefix: prefix_bytes,
        hash_wake,
        hash_throttled: false,
        peers: HashMap::new(),
        ids: HashMap::new(),
        banned: HashSet::new(),
        strikes: HashMap::new(),
        online: HashSet::new(),
        ticket: None,
        ticket_at: now,
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
        marked_partial: false,
        dirty: false,
        last_save: now,
        locating: false,
        last_locate: now,
        received: 0,
        meter: RateMeter::default(),
        rate: 0,
        conns: job.stop.child_token(),
    };
    let result = dl.run(peers).await;
    dl.conns.cancel();
    result
}

struct Conn {
    no: u64,
    tx: mpsc::UnboundedSender<Out>,
    stop: CancellationToken,
}

struct Slot {
    user: UserId,
    addr: SocketAddr,
    conn: Option<Conn>,
    /// Set once the handshake succeeded.
    bitfield: Option<Bitfield>,
    /// Last block received (or when the pipeline last became non-empty).
    last_block: Instant,
    retry_at: Instant,
}

/// Results of the task's own background jobs.
enum JobEvent {
    Verified {
        piece: u32,
        result: Result<bool, WireError>,
    },
    Located(Result<Located, WireError>),
}

struct Dl<'a> {
    job: &'a Job,
    record: PathBuf,
    meta: FileMeta,
    part: Arc<PartFile>,
    /// The whole-file hash of the verified prefix `0..prefix_pieces`;
    /// taken by [`Dl::finish`].
    prefix: Option<PrefixHasher>,
    prefix_pieces: u32,
    /// Verified bytes at the start (a resumed download re-hashes them;
    /// that does not count as lagging).
    resumed_prefix: u64,
    /// Notified as the whole-file hash advances while requests are paused
    /// for it ([`MAX_HASH_BACKLOG`]).
    hash_wake: Arc<tokio::sync::Notify>,
    hash_throttled: bool,
    pieces: PieceTracker,
    avail: Availability,
    peers: HashMap<PeerId, Slot>,
    /// One id per remote user for the whole download.
    ids: HashMap<UserId, PeerId>,
    banned: HashSet<UserId>,
    /// Corrupt pieces each user contributed to, along with others.
    strikes: HashMap<UserId, u32>,
    /// Users the last `Locate` listed online.
    online: HashSet<UserId>,
    ticket: Option<String>,
    ticket_at: Instant,
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
    have_tx: watch::Sender<Bitfield>,
    marked_partial: bool,
    dirty: bool,
    last_save: Instant,
    locating: bool,
    last_locate: Instant,
    received: u64,
    meter: RateMeter,
    rate: u64,
    /// Parent of every connection's token.
    conns: CancellationToken,
}

impl Dl<'_> {
    async fn run(&mut self, peers: Vec<PeerEntry>) -> Result<Outcome, WireError> {
        // Nothing verified may be lost to a pause before the first save.
        self.save_record().await?;
        if self.pieces.have().count() > 0 {
            self.mark_partial();
        }
        self.start_locate(true);
        self.apply_peers(peers);
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
                    if let Err(e) = self.save_record().await {
                        tracing::warn!(name = %self.job.entry.name, "saving progress: {e}");
                    }
                    return Ok(Outcome::Stopped);
                }
                Some(m) = self.peer_rx.recv() => self.on_peer(m).await?,
                _ = self.hash_wake.notified(), if self.hash_throttled => {
                    if !self.hash_lags() {
                        self.top_up_all();
                    }
                }
                Some(ev) = self.job_rx.recv() => self.on_job(ev)?,
                _ = tick.tick() => self.housekeeping().await?,
            }
        }
    }

    fn user_of(&self, peer: PeerId) -> Option<&UserId> {
        self.peers.get(&peer).map(|s| &s.user)
    }

    fn connected(&self) -> usize {
        self.peers.values().filter(|s| s.conn.is_some()).count()
    }

    fn publish(&mut self) {
        let peers: Vec<PeerBytes> = self
            .pieces
            .verified_by_peer()
            .into_iter()
            .filter_map(|(id, bytes)| {
                Some(PeerBytes {
                    user: self.user_of(id)?.clone(),
                    bytes,
                })
            })
            .collect();
        let ready = self.peers.values().filter(|s| s.bitfield.is_some()).count();
        let active = self.connected() > 0;
        let (done, size, rate) = (self.pieces.verified_bytes(), self.meta.size, self.rate);
        self.job.entry.update(|s: &mut Snapshot| {
            s.state = if active {
                DownloadState::Downloading
            } else {
                DownloadState::Paused
            };
            s.bytes_done = done;
            s.size = size;
            s.peers = peers;
            s.rate = rate;
            s.connected = ready as u32;
        });
    }

    // ------------------------------------------------------------ tracker

    fn start_locate(&mut self, want_ticket: bool) {
        if self.locating {
            return;
        }
        self.locating = true;
        self.last_locate = Instant::now();
        let daemon = self.job.daemon.clone();
        let session = self.job.session.clone();
        let (group, name) = (self.job.entry.group.clone(), self.job.entry.name.clone());
        let tx = self.job_tx.clone();
        let stop = self.conns.clone();
        self.job.daemon.tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                r = locate(&daemon, &session, &group, &name, want_ticket) => {
                    let _ = tx.send(JobEvent::Located(r));
                }
            }
        });
    }

    fn mark_partial(&mut self) {
        if self.marked_partial {
            return;
        }
        self.marked_partial = true;
        let daemon = self.job.daemon.clone();
        let req = TrackerRequest::MarkPartial {
            token: self.job.session.token.clone(),
            group: self.job.entry.group.clone(),
            name: self.job.entry.name.clone(),
        };
        self.job.daemon.tasks.spawn(async move {
            if let Err(e) = daemon.tracker.call(req).await {
                tracing::debug!("mark_partial: {e}");
            }
        });
    }

    fn on_located(&mut self, r: Result<Located, WireError>) -> Result<(), WireError> {
        self.locating = false;
        let located = match r {
            Ok(l) => l,
            Err(e) if is_permanent(&e) && self.connected() == 0 => return Err(e),
            Err(e) => {
                tracing::debug!(name = %self.job.entry.name, "locate: {e}");
                return Ok(());
            }
        };
        if located.meta.sha1 != self.meta.sha1 {
            tracing::warn!(name = %self.job.entry.name,
                "the tracker now lists other content under this name; ignoring its holders");
            return Ok(());
        }
        if let Some(t) = located.ticket {
            self.ticket = Some(t);
            self.ticket_at = Instant::now();
        }
        self.apply_peers(located.peers);
        Ok(())
    }

    /// Learn who is online, then dial whoever is due.
    fn apply_peers(&mut self, peers: Vec<PeerEntry>) {
        self.online.clear();
        let now = Instant::now();
        for p in peers {
            if p.user == self.job.session.user || self.banned.contains(&p.user) {
                continue;
            }
            self.online.insert(p.user.clone());
            let next = PeerId(self.ids.len() as u32);
            let id = *self.ids.entry(p.user.clone()).or_insert(next);
            self.peers
                .entry(id)
                .and_modify(|s| s.addr = p.addr)
                .or_insert(Slot {
                    user: p.user,
                    addr: p.addr,
                    conn: None,
                    bitfield: None,
                    last_block: now,
                    retry_at: now,
                });
        }
        self.dial_due();
    }

    fn dial_due(&mut self) {
        let Some(ticket) = self.ticket.clone() else {
            // Connect once a ticket arrives.
            if !self.online.is_empty() {
                self.start_locate(true);
            }
            return;
        };
        let now = Instant::now();
        let mut due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, s)| {
                s.conn.is_none()
                    && s.retry_at <= now
                    && self.online.contains(&s.user)
                    && !self.banned.contains(&s.user)
            })
            .map(|(&id, _)| id)
            .collect();
        due.sort_unstable();
        for id in due {
            if self.connected() >= MAX_PEERS_PER_DOWNLOAD {
                break;
            }
            self.dial(id, ticket.clone());
        }
    }

    fn dial(&mut self, peer: PeerId, ticket: String) {
        let Some(slot) = self.peers.get_mut(&peer) else {
            return;
        };
        self.conn_seq += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = self.conns.child_token();
        let entry = &self.job.entry;
        let dial = Dial {
            addr: slot.addr,
            handshake: Handshake {
                version: PEER_PROTOCOL_VERSION,
                group: entry.group.clone(),
                name: entry.name.clone(),
                sha1: self.meta.sha1,
                ticket,
                user: self.job.session.user.clone(),
            },
            peer,
            conn: self.conn_seq,
            events: self.peer_tx.clone(),
            out: rx,
            limiter: self.job.daemon.downloads.download_limit.clone(),
            stop: stop.clone(),
            pool: self.pool.clone(),
        };
        slot.conn = Some(Conn {
            no: self.conn_seq,
            tx,
            stop,
        });
        slot.bitfield = None;
        slot.last_block = Instant::now();
        self.job.daemon.tasks.spawn(peer_conn::run(dial));
    }

    // ------------------------------------------------------------ peers

    async fn on_peer(&mut self, m: PeerMsg) -> Result<(), WireError> {
        let peer = m.peer;
        let count = self.pieces.piece_count();
        let Some(slot) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        if slot.conn.as_ref().map(|c| c.no) != Some(m.conn) {
            return Ok(()); // a late event of an earlier connection
        }
        match m.event {
            PeerEvent::Ready(bits) => match Bitfield::from_bytes(&bits, count) {
                Ok(bf) => {
                    self.avail.add_peer(&bf);
                    slot.bitfield = Some(bf);
                    slot.last_block = Instant::now();
                    self.top_up(peer);
                    self.publish();
                }
                Err(e) => self.drop_peer(peer, &format!("bad bitfield: {e}"), RETRY_AFTER_STALL),
            },
            PeerEvent::Have(i) => {
                if i >= count {
                    self.drop_peer(peer, "announced a piece past the end", RETRY_AFTER_STALL);
                    return Ok(());
                }
                if let Some(bf) = slot.bitfield.as_mut() {
                    if bf.set(i) == Ok(true) {
                        self.avail.add_have(i);
                    }
                }
                self.top_up(peer);
            }
            PeerEvent::Reject(b) => {
                if let Some(block) = geometry::block_index(b.offset) {
                    self.pieces.release_block(peer, b.piece, block);
                }
                // It does not have the piece (any more): stop asking it.
                if let Some(bf) = slot.bitfield.as_mut() {
                    if bf.unset(b.piece) {
                        self.avail.remove_have(b.piece);
                    }
                }
                self.top_up(peer);
                self.top_up_all();
            }
            PeerEvent::Block {
                piece,
                offset,
                payload,
            } => self.on_block(peer, piece, offset, payload)?,
            PeerEvent::Closed(e) => {
                if let ConnError::Rejected(w) = &e {
                    if w.code == ErrorCode::InvalidArgument && w.message.contains("ticket") {
                        self.ticket = None; // the tracker forgot it (restart)
                    }
                }
                let user = slot.user.clone();
                tracing::info!(%user, name = %self.job.entry.name, "peer lost: {e}");
                self.drop_peer(peer, "", RETRY_AFTER_CLOSE);
            }
        }
        Ok(())
    }

    /// Ends `peer`'s connection (if any), releases its requests and gives
    /// them to the others.
    fn drop_peer(&mut self, peer: PeerId, why: &str, retry: Duration) {
        let Some(slot) = self.peers.get_mut(&peer) else {
            return;
        };
        if !why.is_empty() {
            tracing::info!(user = %slot.user, name = %self.job.entry.name, "dropping peer: {why}");
        }
        if let Some(c) = slot.conn.take() {
            c.stop.cancel();
        }
        if let Some(bf) = slot.bitfield.take() {
            self.avail.remove_peer(&bf);
        }
        slot.retry_at = Instant::now() + retry;
        self.pieces.release_peer(peer);
        self.top_up_all();
        self.publish();
    }

    fn top_up_all(&mut self) {
        let ids: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, s)| s.bitfield.is_some())
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.top_up(id);
        }
    }

    /// Fill `peer`'s pipeline up to [`PIPELINE_DEPTH_BLOCKS`].
    fn top_up(&mut self, peer: PeerId) {
        if self.verifying >= MAX_VERIFY_QUEUE {
            return; // resumed when a verdict comes back
        }
        if self.hash_lags() {
            return; // resumed as the hash catches up
        }
        let Some(slot) = self.peers.get_mut(&peer) else {
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
    ) -> Result<(), WireError> {
        let len = (payload.len() - PIECE_DATA_START) as u32;
        match self.pieces.block_received(peer, piece, offset, len) {
            Err(PieceError::NotRequested { .. }) => self.pool.put(payload), // released or cancelled meanwhile
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
                for c in &cancel {
                    if let Some(conn) = self.peers.get(c).and_then(|s| s.conn.as_ref()) {
                        let _ = conn.tx.send(Out::Cancel(b));
                    }
                }
                self.received += u64::from(len);
                if let Some(s) = self.peers.get_mut(&peer) {
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
    fn submit_piece(&mut self, piece: u32) -> Result<(), WireError> {
        let (Some(&expected), Some(blocks)) = (
            self.meta.pieces.get(piece as usize),
            self.assembly.take(piece),
        ) else {
            return Err(io_error(format!(
                "piece {piece} complete but its blocks are missing"
            )));
        };
        if !self.verifier.submit(piece, expected, blocks) {
            return Err(io_error("the piece verifier stopped"));
        }
        self.verifying += 1;
        Ok(())
    }

    fn on_job(&mut self, ev: JobEvent) -> Result<(), WireError> {
        match ev {
            JobEvent::Located(r) => self.on_located(r)?,
            JobEvent::Verified { piece, result } => {
                self.verifying = self.verifying.saturating_sub(1);
                match result? {
                    true => {
                        if let Err(e) = self.pieces.mark_verified(piece) {
                            tracing::warn!("verified piece {piece}: {e}");
                        }
                        self.dirty = true;
                        self.advance_prefix();
                        self.have_tx.send_replace(self.pieces.have().clone());
                        self.mark_partial();
                    }
                    false => {
                        let culprits = self.pieces.mark_corrupt(piece).unwrap_or_default();
                        self.assembly.discard(piece);
                        self.blame(piece, &culprits);
                    }
                }
                // Also lifts the pause of a full verify queue.
                self.top_up_all();
                self.publish();
            }
        }
        Ok(())
    }

    /// Whether the whole-file hash lags too far behind the verified prefix
    /// (then requests pause); keeps the hasher's wake-ups on exactly while
    /// it does.
    fn hash_lags(&mut self) -> bool {
        let Some(p) = self.prefix.as_ref() else {
            return false;
        };
        let hashed = p.hashed().max(self.resumed_prefix);
        let lags = p.reported().saturating_sub(hashed) > MAX_HASH_BACKLOG;
        if lags != self.hash_throttled {
            self.hash_throttled = lags;
            p.set_waiting(lags);
        }
        lags
    }

    /// Lets the whole-file hasher go on to the end of the verified prefix.
    fn advance_prefix(&mut self) {
        let (k, bytes) = verified_prefix(self.pieces.have(), self.meta.size, self.prefix_pieces);
        self.prefix_pieces = k;
        if let Some(p) = self.prefix.as_mut() {
            p.advance(bytes);
        }
    }

    /// A corrupt piece: a sole contributor is certainly lying and is
    /// banned. With several, a contributor already banned explains it;
    /// otherwise each gets a strike, and [`MAX_STRIKES`] strikes ban, so
    /// an honest peer whose blocks were mixed with a liar's is not lost.
    fn blame(&mut self, piece: u32, culprits: &[PeerId]) {
        let users: Vec<(PeerId, UserId)> = culprits
            .iter()
            .filter_map(|&c| Some((c, self.user_of(c)?.clone())))
            .collect();
        if users.len() > 1 && users.iter().any(|(_, u)| self.banned.contains(u)) {
            return;
        }
        for (c, user) in users.iter().cloned() {
            let strikes = self.strikes.entry(user.clone()).or_default();
            *strikes += 1;
            if culprits.len() == 1 || *strikes >= MAX_STRIKES {
                tracing::warn!(%user, name = %self.job.entry.name, piece,
                    "peer sent a corrupt piece; dropped for this download");
                self.banned.insert(user.clone());
                self.online.remove(&user);
                self.drop_peer(c, "", Duration::from_secs(3600));
            } else {
                tracing::warn!(%user, name = %self.job.entry.name, piece,
                    "a corrupt piece had blocks from this peer and others");
            }
        }
    }

    // ------------------------------------------------------------ upkeep

    async fn housekeeping(&mut self) -> Result<(), WireError> {
        let now = Instant::now();
        let stalled: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(&id, s)| {
                s.conn.is_some()
                    && self.pieces.peer_outstanding(id) > 0
                    && now.duration_since(s.last_block) > STALL_TIMEOUT
            })
            .map(|(&id, _)| id)
            .collect();
        for id in stalled {
            self.drop_peer(id, "no block for 10 s", RETRY_AFTER_STALL);
        }
        let idle = self.connected() == 0;
        let every = if idle {
            RELOCATE_IDLE_INTERVAL
        } else {
            RELOCATE_INTERVAL
        };
        if now.duration_since(self.last_locate) >= every {
            let stale_ticket =
                self.ticket.is_none() || now.duration_since(self.ticket_at) >= TICKET_REFRESH;
            self.start_locate(stale_ticket);
        }
        self.dial_due();
        if self.dirty && now.duration_since(self.last_save) >= RESUME_SAVE_INTERVAL {
            self.save_record().await?;
        }
        self.rate = self.meter.update(self.received);
        self.publish();
        Ok(())
    }

    /// `sync_data` first, then the record: it never claims unsynced bytes.
    async fn save_record(&mut self) -> Result<(), WireError> {
        let entry = &self.job.entry;
        let rec = ResumeRecord {
            user: entry.user.clone(),
            group: entry.group.clone(),
            name: entry.name.clone(),
            sha1: self.meta.sha1,
            size: self.meta.size,
            path: entry.path.clone(),
            verified: self.pieces.have().clone(),
        };
        let part = self.part.clone();
        let dir = records_dir(&self.job.daemon);
        blocking(move || {
            part.sync_data()?;
            resume::save(&dir, &rec).map_err(|e| StorageError::Io {
                step: "saving progress",
                path: dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            Ok(())
        })
        .await?;
        self.dirty = false;
        self.last_save = Instant::now();
        Ok(())
    }

    /// Every piece verified: whole-file check, rename, register, share.
    async fn finish(&mut self) -> Result<Outcome, WireError> {
        self.conns.cancel();
        let entry = self.job.entry.clone();
        let part = self.part.clone();
        let expected = self.meta.sha1;
        let prefix = self.prefix.take().expect("finish runs once");
        let left = self.meta.size - prefix.hashed().min(self.meta.size);
        let waited = Instant::now();
        // Every piece is verified, so the prefix is the whole file: only
        // its tail is left to hash, alongside the sync.
        let ((synced, sync_ms), (sha1, hash_ms)) = tokio::join!(
            timed(blocking(move || part.sync_data()), waited),
            timed(prefix.finish(), waited)
        );
        synced?;
        let sha1 = sha1.map_err(io_error)?;
        tracing::debug!(name = %entry.name, tail_bytes = left, sync_ms, hash_ms,
            "whole-file hash: tail hashed and data synced");
        if sha1 != expected {
            return Err(WireError::new(
                ErrorCode::Integrity,
                format!(
                    "{}: every piece matched but the whole file's SHA-1 is {}, not {}",
                    entry.name,
                    sha1.to_hex(),
                    expected.to_hex()
                ),
            ));
        }
        let final_path = entry.path.clone();
        let part_path = storage::part_path(&final_path);
        blocking(move || storage::finish(&part_path, &final_path)).await?;
        complete_download(self.job, &self.meta).await?;
        let peers = self.pieces.verified_by_peer().len();
        let _ = resume::remove(&self.record);
        self.publish();
        entry.update(|s| {
            s.state = DownloadState::Complete;
            s.bytes_done = s.size;
            s.connected = 0;
            s.rate = 0;
            s.sources = peers as u32;
        });
        Ok(Outcome::Complete)
    }
}

/// The file is at its final path: share it (served and re-announced at
/// every login) and register it (we become a holder).
///
/// # Errors
/// `io` if the finished file cannot be read or the shares file written.
pub async fn complete_download(job: &Job, meta: &FileMeta) -> Result<(), WireError> {
    let entry = &job.entry;
    let stamp = FileStamp::read(&entry.path)
        .map_err(|e| io_error(format!("{}: {e}", entry.path.display())))?;
    job.daemon
        .shares
        .upsert(
            &job.session.user,
            ShareEntry {
                group: entry.group.clone(),
                name: entry.name.clone(),
                path: entry.path.clone(),
                size: stamp.size,
                mtime: stamp.mtime,
                meta: meta.clone(),
            },
        )
        .map_err(|e| io_error(format!("downloaded, but cannot save the shares file: {e}")))?;
    let req = TrackerRequest::RegisterFile {
        token: job.session.token.clone(),
        group: entry.group.clone(),
        meta: meta.clone(),
    };
    // Unreachable tracker: the share is re-announced on reconnection.
    if let Err(e) = job.daemon.tracker.call(req).await {
        tracing::warn!(name = %entry.name, "registering the finished download: {e}");
    }
    Ok(())
}

/// `f`'s output and the milliseconds from `since` to its end (for logs).
async fn timed<T>(f: impl std::future::Future<Output = T>, since: Instant) -> (T, u64) {
    let r = f.await;
    (r, since.elapsed().as_millis() as u64)
}
