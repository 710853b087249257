//! One download's whole life, behind one entry point: [`run`].
//!
//! ```text
//! run ── start ──► locate (a saved download waits out an absent tracker)
//!          │       open DEST.part (new: must not exist; saved: resumed if
//!          │       its record matches the file, else started over)
//!          │       (an empty file is created and finished right here)
//!          ▼
//!        engine::Swarm::run ── peers, pieces, verification, resume saves
//!          │
//!          ├─ every piece verified ─► whole-file check, rename, share,
//!          │                          register (we are a holder)
//!          ├─ stopped (logout, daemon stop) ─► record saved: paused
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
use crate::shares::{FileStamp, ShareEntry};
use crate::tracker_client::{Located, SessionClient};
use error::DownloadError;
use proto::geometry;
use proto::peer::Bitfield;
use proto::tracker::FileMeta;
use proto::{FileName, GroupId};
use saver::{record_path, RecordKey};
use status::StatusHandle;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// How often a saved download asks the tracker again while it cannot
/// start (tracker unreachable), and how often a running one re-locates
/// while no peer is connected.
pub const RELOCATE_IDLE_INTERVAL: Duration = Duration::from_secs(2);

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
    let (started, saved) = match origin {
        Origin::New(tx) => (Some(tx), None),
        Origin::Saved(record) => (None, Some(record)),
    };
    let opened = start(&job, saved.is_some(), saved).await;
    let opened = match (opened, started) {
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
        (Err(e), None) => return fail(&job, e).await,
    };
    let result = match opened {
        Start::Empty(meta) => complete(&job, &meta).await.map(|()| {
            job.status.complete(0);
            Ended::Complete
        }),
        Start::Stopped => Ok(Ended::Stopped),
        Start::Swarm(o) => engine::Swarm::run(&job, o).await,
    };
    match result {
        Ok(Ended::Stopped) => {
            job.status.stopped();
            Ended::Stopped
        }
        Ok(ended) => {
            tracing::info!(name = %job.target.name, path = %job.target.path.display(), "download complete");
            ended
        }
        Err(e) => fail(&job, e).await,
    }
}

async fn fail(job: &Job, e: DownloadError) -> Ended {
    tracing::warn!(name = %job.target.name, "download failed: {e}");
    abandon(job).await;
    job.status.failed(e);
    Ended::Failed
}

enum Start {
    Swarm(Opened),
    /// A file of zero bytes: nothing to fetch.
    Empty(FileMeta),
    /// Stopped while waiting for the tracker.
    Stopped,
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
        job.status
            .update(|s| s.state = proto::ctl::DownloadState::Paused);
        tokio::select! {
            _ = job.stop.cancelled() => return Ok(None),
            _ = tokio::time::sleep(RELOCATE_IDLE_INTERVAL) => {}
        }
    }
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
