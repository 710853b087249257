//! One download's whole life, behind one entry point: [`run`].
//!
//! ```text
//! run ── start ──► locate (a saved download waits out an absent tracker)
//!          │       open DEST.part (new: must not exist; saved: resumed if
//!          │       its record matches the file, else started over)
//!          │       (an empty file is created and finished right here;
//!          │       a saved one whose final file is there and correct,
//!          │       after a crash while finishing, is completed here)
//!          ▼
//!        engine::Swarm::run ── peers, pieces, verification, resume saves
//!          │
//!          ├─ every piece verified ─► whole-file check, rename, share,
//!          │                          register (we are a holder)
//!          ├─ stopped (logout, daemon stop) ─► record saved: paused
//!          ├─ disk full ─► record saved, paused with the reason; when
//!          │               there is room again, back to start (saved)
//!          └─ failed ─► abandon: no .part, no record, no partial holding
//! ```
//!
//! New and saved downloads take the same path; they differ only in how
//! `start` treats an absent tracker and an existing `.part`. A new download
//! reports the end of `start` through `started`, so `download_file` can
//! refuse (`no_holders_online`, an existing `.part`, ...) before anything
//! is left behind.
//!
//! The parts: [`peer_book`] (who we know, talk to, ban), [`hash_gate`] (the
//! whole-file hash and the pause that keeps it fed), [`saver`] (the resume
//! record and its schedule), [`status`] (what `show_downloads` sees),
//! [`error`] (why it failed, typed), `engine` (the event loop).

mod engine;
pub mod error;
pub mod hash_gate;
pub mod peer_book;
pub mod saver;
pub mod status;

use super::context::SwarmContext;
use super::resume::ResumeRecord;
use super::storage::{self, PartFile, PartMode, StorageError};
use crate::hashing::hash_file;
use crate::shares::{FileStamp, ShareEntry};
use crate::tracker_client::{Located, SessionClient};
use error::DownloadError;
use proto::geometry;
use proto::peer::Bitfield;
use proto::tracker::FileMeta;
use proto::units::{Bytes, Rate};
use proto::{FileName, GroupId};
use saver::{record_path, RecordKey};
use status::StatusHandle;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// How often a saved download asks the tracker again while it cannot
/// start (tracker unreachable), and how often a running one re-locates
/// while no peer is connected.
pub const RELOCATE_IDLE_INTERVAL: Duration = Duration::from_secs(2);
/// How often a download paused on a full disk looks for room again.
pub const DISK_FULL_RETRY: Duration = Duration::from_secs(10);
/// Free space that is worth resuming for (or the rest of the file, if less).
const DISK_FULL_RESUME_BYTES: u64 = 4 * 1024 * 1024;

/// Which file goes where.
#[derive(Debug, Clone)]
pub struct Target {
    pub group: GroupId,
    pub name: FileName,
    /// Absolute final path; the data is in its `.part` sibling meanwhile.
    pub path: PathBuf,
}

/// Everything one download runs with.
pub struct Job {
    pub ctx: Arc<SwarmContext>,
    /// The tracker, as the session the download was started under.
    pub client: SessionClient,
    pub target: Target,
    pub status: StatusHandle,
    /// Cancelled on logout or daemon stop: save and pause.
    pub stop: CancellationToken,
}

/// Where a download starts from.
pub enum Origin {
    /// `download_file`: told through the sender when it has started (or
    /// why it was refused).
    New(oneshot::Sender<Result<(), DownloadError>>),
    /// A saved record (login, daemon start).
    Saved(ResumeRecord),
}

/// How [`run`] ended. The status says the same to users.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Complete,
    /// Paused: the record is saved; the next login resumes it.
    Stopped,
    Failed,
    /// A new download refused before it created anything; the refusal
    /// went to `download_file`.
    Refused,
}

/// What `start` leaves for the swarm.
struct Opened {
    meta: FileMeta,
    located: Vec<proto::tracker::PeerEntry>,
    part: PartFile,
    verified: Bitfield,
}

impl Job {
    fn record_key(&self) -> RecordKey {
        RecordKey {
            user: self.client.user().clone(),
            group: self.target.group.clone(),
            name: self.target.name.clone(),
            path: self.target.path.clone(),
        }
    }
}

/// Runs one download to completion, failure or a stop; the status says
/// which. See the module header.
pub async fn run(job: Job, origin: Origin) -> Ended {
    let (mut started, mut saved) = match origin {
        Origin::New(tx) => (Some(tx), None),
        Origin::Saved(record) => (None, Some(record)),
    };
    loop {
        let opened = start(&job, saved.is_some(), saved.take()).await;
        let opened = match (opened, started.take()) {
            (Ok(o), started) => {
                if let Some(tx) = started {
                    let _ = tx.send(Ok(()));
                }
                o
            }
            (Err(e), Some(tx)) => {
                let _ = tx.send(Err(e));
                return Ended::Refused;
            }
            (Err(e), None) => Start::Failed(e),
        };
        let began = Began::now(&job, &opened);
        let result = match opened {
            Start::Empty(meta) => complete(&job, &meta).await.map(|()| {
                job.status.complete(0);
                Ended::Complete
            }),
            Start::Finished(meta) => finish_found(&job, &meta).await,
            Start::Stopped => Ok(Ended::Stopped),
            Start::Swarm(o) => engine::Swarm::run(&job, o).await,
            Start::Failed(e) => Err(e),
        };
        match result {
            Ok(Ended::Stopped) => {
                job.status.stopped();
                return Ended::Stopped;
            }
            Ok(ended) => {
                began.log_finished(&job);
                return ended;
            }
            Err(e) => match e.disk_full() {
                Some(path) => {
                    if !wait_for_space(&job, path).await {
                        job.status.stopped();
                        return Ended::Stopped;
                    }
                    saved = Some(saved_record(&job));
                }
                None => return fail(&job, e).await,
            },
        }
    }
}

/// The resume record to restart from after a pause for disk space; if
/// none could be saved, one that matches nothing (so it starts over).
fn saved_record(job: &Job) -> ResumeRecord {
    let path = record_path(&job.ctx.records_dir, &job.record_key());
    super::resume::load(&path).unwrap_or_else(|e| {
        tracing::warn!(name = %job.target.name, "no saved progress to resume from: {e}");
        let t = &job.target;
        ResumeRecord::new(
            job.client.user().clone(),
            t.group.clone(),
            t.name.clone(),
            proto::Sha1Hash([0; 20]),
            0,
            t.path.clone(),
        )
    })
}

/// The disk is full: paused with the reason, the `.part` and its verified
/// pieces kept. Every [`DISK_FULL_RETRY`] it looks whether there is room
/// again. False if stopped (logout, daemon stop) meanwhile.
async fn wait_for_space(job: &Job, path: PathBuf) -> bool {
    tracing::warn!(name = %job.target.name, "disk full: {}; paused", path.display());
    let remaining = {
        let s = job.status.get();
        s.size.saturating_sub(s.bytes_done)
    };
    let dir = path.parent().map(PathBuf::from).unwrap_or_default();
    let reason = Arc::new(DownloadError::DiskFull { path });
    job.status.update(|s| {
        s.state = proto::ctl::DownloadState::Paused;
        s.error = Some(reason);
        s.connected = 0;
        s.rate = 0;
    });
    loop {
        tokio::select! {
            _ = job.stop.cancelled() => return false,
            _ = tokio::time::sleep(DISK_FULL_RETRY) => {}
        }
        if has_room(&dir, remaining) {
            break;
        }
    }
    tracing::info!(name = %job.target.name, "there is room again; resuming");
    job.status.update(|s| s.error = None);
    true
}

/// Whether `dir`'s file system has room for the rest of the file, or at
/// least for [`DISK_FULL_RESUME_BYTES`] of it (it pauses again if not).
fn has_room(dir: &std::path::Path, remaining: u64) -> bool {
    match rustix::fs::statvfs(dir) {
        Ok(st) => st.f_bavail.saturating_mul(st.f_frsize) >= remaining.min(DISK_FULL_RESUME_BYTES),
        // Cannot tell: try, and pause again if it is still full.
        Err(_) => true,
    }
}

async fn fail(job: &Job, e: DownloadError) -> Ended {
    tracing::warn!(name = %job.target.name, "download failed: {e}");
    abandon(job).await;
    job.status.failed(e);
    Ended::Failed
}

/// When a run of a download began and how much it had then, for the one
/// "finished" log line (size, time, average rate, who sent what).
struct Began {
    at: std::time::Instant,
    had: u64,
}

impl Began {
    /// Logs the start of a transfer (a new or resumed download that has
    /// something to fetch).
    fn now(job: &Job, opened: &Start) -> Began {
        let had = job.status.get().bytes_done;
        let t = &job.target;
        let size = match opened {
            Start::Swarm(o) => Some(o.meta.size),
            Start::Empty(meta) => Some(meta.size),
            _ => None,
        };
        if let Some(size) = size {
            let resumed = if had > 0 {
                format!(", resumed with {} here", Bytes(had))
            } else {
                String::new()
            };
            tracing::info!(
                "download started: {} in group {}, {}{resumed}, into {}",
                t.name,
                t.group,
                Bytes(size),
                t.path.display()
            );
        }
        Began {
            at: std::time::Instant::now(),
            had,
        }
    }

    fn log_finished(&self, job: &Job) {
        let s = job.status.get();
        let took = self.at.elapsed();
        let fetched = s.size.saturating_sub(self.had);
        let rate =
            u64::try_from(u128::from(fetched) * 1000 / took.as_millis().max(1)).unwrap_or(u64::MAX);
        let peers = if s.peers.is_empty() {
            "no peer".to_string()
        } else {
            s.peers
                .iter()
                .map(|p| format!("{} {}", p.user, Bytes(p.bytes)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        tracing::info!(
            "download finished: {} in group {}, {} in {:.2} s ({}), from {peers}; saved as {}",
            job.target.name,
            job.target.group,
            Bytes(s.size),
            took.as_secs_f64(),
            Rate(rate),
            job.target.path.display()
        );
    }
}

enum Start {
    Swarm(Opened),
    /// A file of zero bytes: nothing to fetch.
    Empty(FileMeta),
    /// A saved download whose final file is already there and correct: a
    /// crash came between linking it and forgetting the download.
    Finished(FileMeta),
    /// Stopped while waiting for the tracker.
    Stopped,
    /// A saved download that cannot start.
    Failed(DownloadError),
}

/// Locate the file and open `DEST.part`: the part where new and saved
/// downloads differ. `patient`: wait out an unreachable tracker (saved
/// downloads; a new one is answered at once).
async fn start(
    job: &Job,
    patient: bool,
    saved: Option<ResumeRecord>,
) -> Result<Start, DownloadError> {
    let Some(located) = locate_first(job, patient).await? else {
        return Ok(Start::Stopped);
    };
    let Located { meta, peers } = located;
    job.status.update(|s| s.size = meta.size);
    let part_path = storage::part_path(&job.target.path);
    let (mode, verified) = match saved {
        None => {
            if std::fs::symlink_metadata(&part_path).is_ok() {
                return Err(StorageError::Exists(part_path).into());
            }
            if meta.size == 0 {
                create_empty(job, &meta).await?;
                return Ok(Start::Empty(meta));
            }
            if peers.is_empty() {
                return Err(DownloadError::NoHolders {
                    name: job.target.name.clone(),
                    group: job.target.group.clone(),
                });
            }
            (
                PartMode::New,
                Bitfield::new(geometry::piece_count(meta.size)),
            )
        }
        Some(record) => {
            if finished_before(job, &meta).await? {
                return Ok(Start::Finished(meta));
            }
            let part_ok = std::fs::symlink_metadata(&part_path).is_ok_and(|m| m.is_file());
            if part_ok && record.matches(&meta.sha1, meta.size) {
                (PartMode::Resume, record.verified)
            } else {
                tracing::warn!(name = %job.target.name,
                    "the saved progress does not match the file any more; starting over");
                (
                    PartMode::Fresh,
                    Bitfield::new(geometry::piece_count(meta.size)),
                )
            }
        }
    };
    let size = meta.size;
    let part = blocking(move || PartFile::open(&part_path, size, mode)).await?;
    Ok(Start::Swarm(Opened {
        meta,
        located: peers,
        part,
        verified,
    }))
}

/// The first `Locate`. `Ok(None)`: stopped while waiting for the tracker.
async fn locate_first(job: &Job, patient: bool) -> Result<Option<Located>, DownloadError> {
    loop {
        let t = &job.target;
        let e = match job.client.locate(t.group.clone(), t.name.clone()).await {
            Ok(l) => return Ok(Some(l)),
            Err(e) => DownloadError::from(e),
        };
        if !patient || e.is_permanent() {
            return Err(e);
        }
        tracing::debug!(name = %t.name, "cannot resume yet: {e}");
        job.status.update(|s| {
            s.state = proto::ctl::DownloadState::Paused;
            s.waiting = Some(format!("cannot resume yet: {e}; retrying"));
        });
        tokio::select! {
            _ = job.stop.cancelled() => return Ok(None),
            _ = tokio::time::sleep(RELOCATE_IDLE_INTERVAL) => {}
        }
    }
}

/// Whether the final file of a saved download is already there, complete
/// and correct (size, then whole-file and piece SHA-1s): the download was
/// finished when the daemon died.
///
/// # Errors
/// Something else is at the final path: [`StorageError::Exists`], and it
/// is left as it is.
async fn finished_before(job: &Job, meta: &FileMeta) -> Result<bool, DownloadError> {
    let path = job.target.path.clone();
    let found = match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(DownloadError::Finished { path, source: e }),
        Ok(m) => m,
    };
    if !found.is_file() || found.len() != meta.size {
        return Err(StorageError::Exists(path).into());
    }
    let checked = path.clone();
    let hashes = tokio::task::spawn_blocking(move || {
        hash_file(&checked, &AtomicBool::new(false), &mut |_| {})
    })
    .await
    .map_err(|e| DownloadError::Internal(format!("hashing task failed: {e}")))?;
    match hashes {
        Ok(h) if h.sha1 == meta.sha1 && h.pieces == meta.pieces => {
            tracing::info!(name = %job.target.name, path = %path.display(),
                "the download had finished before the daemon stopped; completing it");
            Ok(true)
        }
        _ => Err(StorageError::Exists(path).into()),
    }
}

/// Completes a download [`finished_before`]: the leftover `.part` and
/// record go, the file is shared and registered.
async fn finish_found(job: &Job, meta: &FileMeta) -> Result<Ended, DownloadError> {
    let part = storage::part_path(&job.target.path);
    let record = record_path(&job.ctx.records_dir, &job.record_key());
    complete(job, meta).await?;
    let _ = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_file(part);
        let _ = super::resume::remove(&record);
    })
    .await;
    job.status.complete(0);
    Ok(Ended::Complete)
}

/// A zero-byte file: created through its `.part` like any other, checked
/// against the registered SHA-1, then linked to its final name.
async fn create_empty(job: &Job, meta: &FileMeta) -> Result<(), DownloadError> {
    if meta.sha1 != p2p_sha1::of(b"") {
        return Err(DownloadError::EmptyFile(meta.name.clone()));
    }
    let final_path = job.target.path.clone();
    let part_path = storage::part_path(&final_path);
    blocking(move || {
        drop(PartFile::open(&part_path, 0, PartMode::New)?);
        storage::finish(&part_path, &final_path)
    })
    .await
}

/// The file is at its final path: share it (served and re-announced at
/// every login) and register it (we become a holder).
///
/// # Errors
/// `io` if the finished file cannot be read or the shares file written.
async fn complete(job: &Job, meta: &FileMeta) -> Result<(), DownloadError> {
    let t = &job.target;
    let stamp = FileStamp::read(&t.path).map_err(|source| DownloadError::Finished {
        path: t.path.clone(),
        source,
    })?;
    let share = ShareEntry {
        group: t.group.clone(),
        name: t.name.clone(),
        path: t.path.clone(),
        size: stamp.size,
        mtime: stamp.mtime,
        meta: meta.clone(),
    };
    job.ctx
        .shares
        .upsert(job.client.user(), share)
        .map_err(DownloadError::SaveShare)?;
    // Unreachable tracker: the share is re-announced on reconnection.
    if let Err(e) = job
        .client
        .register_file(t.group.clone(), meta.clone())
        .await
    {
        tracing::warn!(name = %t.name, "registering the finished download: {e}");
    }
    Ok(())
}

/// A failed download leaves nothing behind: no `.part`, no record, no
/// partial holding at the tracker.
async fn abandon(job: &Job) {
    let part = storage::part_path(&job.target.path);
    let record = record_path(&job.ctx.records_dir, &job.record_key());
    let _ = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_file(part);
        let _ = super::resume::remove(&record);
    })
    .await;
    let t = &job.target;
    if let Err(e) = job.client.stop_share(t.group.clone(), t.name.clone()).await {
        tracing::debug!("stop_share after a failed download: {e}");
    }
}

/// Runs a blocking storage step off the reactor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, DownloadError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(DownloadError::from),
        Err(e) => Err(DownloadError::Internal(format!("disk task failed: {e}"))),
    }
}
