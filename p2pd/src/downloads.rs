//! The downloads of this daemon: `download_file`, `show_downloads`, and
//! following the session (logout pauses, login resumes).
//!
//! [`Downloads`] is the registry: one [`Entry`] per download this daemon
//! knows in this run (running, paused, complete or failed), each published
//! by its task (`swarm::download`) as a [`Snapshot`] in a `watch` channel.
//! It also holds what every transfer shares: the upload and download rate
//! limits and the cap on incoming peer connections.
//!
//! Session rule: a download task runs only under the session it was
//! started with. [`run`] follows the session: when it ends or changes, the
//! tasks of the old one are stopped (each saves its record: paused); when a
//! user is logged in, every record of theirs in `HOME/downloads/` that is
//! not running is resumed.

use crate::daemon::Daemon;
use crate::ipc::ProgressSink;
use crate::options::Options;
use crate::session::Session;
use crate::swarm::download::{self, Job, Start};
use crate::swarm::rate::RateLimiter;
use crate::swarm::resume::{self, ResumeRecord};
use crate::swarm::storage::{self, PartFile, PartMode, StorageError};
use proto::ctl::{CtlReply, DownloadInfo, DownloadState, PeerBytes, Progress};
use proto::peer::Bitfield;
use proto::tracker::SessionToken;
use proto::{geometry, ErrorCode, FileName, GroupId, Sha1Hash, UserId, WireError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

/// Incoming peer connections served at once; more are closed at once.
pub const MAX_PEER_CONNECTIONS: usize = 64;
/// Progress ticks sent to a waiting p2pctl.
const PROGRESS_EVERY: Duration = Duration::from_millis(150);
/// How long a session change waits for the old session's tasks to save.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// What `show_downloads` and the progress bar show of one download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub state: DownloadState,
    /// Verified bytes.
    pub bytes_done: u64,
    pub size: u64,
    /// Verified bytes per peer.
    pub peers: Vec<PeerBytes>,
    /// Bytes per second received recently.
    pub rate: u64,
    /// Peers connected now.
    pub connected: u32,
    /// Peers the finished file came from.
    pub sources: u32,
    pub error: Option<WireError>,
}

type Serving = (Arc<PartFile>, watch::Receiver<Bitfield>, Sha1Hash);

/// One download known to this daemon.
pub struct Entry {
    pub user: UserId,
    pub group: GroupId,
    pub name: FileName,
    /// Absolute final path.
    pub path: PathBuf,
    status: watch::Sender<Snapshot>,
    /// The session its task runs under and how to stop it; `None` when no
    /// task runs.
    running: Mutex<Option<(SessionToken, CancellationToken)>>,
    /// Verified pieces the seeder may serve while the task runs.
    serving: Mutex<Option<Serving>>,
}

impl Entry {
    fn new(user: UserId, group: GroupId, name: FileName, path: PathBuf, snap: Snapshot) -> Entry {
        Entry {
            user,
            group,
            name,
            path,
            status: watch::channel(snap).0,
            running: Mutex::new(None),
            serving: Mutex::new(None),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.status.borrow().clone()
    }

    /// Change the published snapshot (the download task does).
    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        self.status.send_modify(f);
    }

    fn is_active(&self) -> bool {
        !matches!(
            self.status.borrow().state,
            DownloadState::Complete | DownloadState::Failed
        )
    }

    fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }

    pub(crate) fn set_running(&self, r: Option<(SessionToken, CancellationToken)>) {
        *lock(&self.running) = r;
    }

    pub(crate) fn set_serving(
        &self,
        part: Arc<PartFile>,
        have: watch::Receiver<Bitfield>,
        sha1: Sha1Hash,
    ) {
        *lock(&self.serving) = Some((part, have, sha1));
    }

    pub(crate) fn clear_serving(&self) {
        *lock(&self.serving) = None;
    }

    fn is(&self, user: &UserId, group: &GroupId, name: &FileName) -> bool {
        &self.user == user && &self.group == group && &self.name == name
    }

    fn info(&self) -> DownloadInfo {
        let s = self.snapshot();
        DownloadInfo {
            group: self.group.clone(),
            name: self.name.clone(),
            state: s.state,
            bytes_done: s.bytes_done,
            size: s.size,
            path: self.path.clone(),
            peers: s.peers,
            rate: s.rate,
            error: s.error.map(|e| e.message),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every download of this daemon run, and the limits transfers share.
pub struct Downloads {
    entries: Mutex<Vec<Arc<Entry>>>,
    pub upload_limit: RateLimiter,
    pub download_limit: RateLimiter,
    /// Permits for incoming peer connections.
    pub peer_slots: Arc<Semaphore>,
}

impl Downloads {
    pub fn new(options: &Options) -> Downloads {
        Downloads {
            entries: Mutex::new(Vec::new()),
            upload_limit: RateLimiter::new(options.max_upload_rate),
            download_limit: RateLimiter::new(options.max_download_rate),
            peer_slots: Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS)),
        }
    }

    fn of_user(&self, user: &UserId) -> Vec<Arc<Entry>> {
        lock(&self.entries)
            .iter()
            .filter(|e| &e.user == user)
            .cloned()
            .collect()
    }

    fn find(&self, user: &UserId, group: &GroupId, name: &FileName) -> Option<Arc<Entry>> {
        lock(&self.entries)
            .iter()
            .find(|e| e.is(user, group, name))
            .cloned()
    }

    /// The `.part` file and verified pieces of `user`'s running download of
    /// this file, for the seeder.
    pub fn serving(
        &self,
        user: &UserId,
        group: &GroupId,
        name: &FileName,
        sha1: &Sha1Hash,
    ) -> Option<(Arc<PartFile>, watch::Receiver<Bitfield>)> {
        let e = self.find(user, group, name)?;
        let s = lock(&e.serving);
        let (part, have, sha) = s.as_ref()?;
        (sha == sha1).then(|| (part.clone(), have.clone()))
    }

    /// Registers a new download, refusing one already in progress (same
    /// file, or same final path). A finished entry of the same file is
    /// replaced.
    fn claim(
        &self,
        user: &UserId,
        group: &GroupId,
        name: &FileName,
        path: &Path,
    ) -> Result<Arc<Entry>, WireError> {
        let mut list = lock(&self.entries);
        if list
            .iter()
            .any(|e| e.is(user, group, name) && e.is_active())
        {
            return Err(already(name, group));
        }
        if list.iter().any(|e| e.path == path && e.is_active()) {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                format!("another download already writes {}", path.display()),
            ));
        }
        list.retain(|e| !e.is(user, group, name));
        let entry = Arc::new(Entry::new(
            user.clone(),
            group.clone(),
            name.clone(),
            path.to_owned(),
            Snapshot {
                state: DownloadState::Downloading,
                bytes_done: 0,
                size: 0,
                peers: Vec::new(),
                rate: 0,
                connected: 0,
                sources: 0,
                error: None,
            },
        ));
        list.push(entry.clone());
        Ok(entry)
    }

    fn unclaim(&self, entry: &Arc<Entry>) {
        lock(&self.entries).retain(|e| !Arc::ptr_eq(e, entry));
    }
}

fn already(name: &FileName, group: &GroupId) -> WireError {
    WireError::new(
        ErrorCode::InvalidArgument,
        format!("{name} in {group} is already being downloaded; see p2pctl show_downloads"),
    )
}

fn storage_error(e: StorageError) -> WireError {
    let code = match e {
        StorageError::NotAbsolute(_) => ErrorCode::InvalidArgument,
        _ => ErrorCode::Io,
    };
    WireError::new(code, e.to_string())
}

fn spawn_task(daemon: &Arc<Daemon>, entry: Arc<Entry>, session: Session, start: Start) {
    let stop = daemon.shutdown.child_token();
    entry.set_running(Some((session.token.clone(), stop.clone())));
    let job = Job {
        daemon: daemon.clone(),
        entry,
        session,
        stop,
    };
    daemon.tasks.spawn(download::run(job, start));
}

/// `download_file GROUP NAME DEST [--detach]`.
pub async fn download_file(
    daemon: &Arc<Daemon>,
    group: GroupId,
    name: FileName,
    dest: PathBuf,
    detach: bool,
    progress: &ProgressSink,
) -> CtlReply {
    let entry = match start_download(daemon, group, name, dest).await {
        Ok(e) => e,
        Err(e) => return CtlReply::Error(e),
    };
    if detach {
        return CtlReply::Ok {
            message: format!(
                "downloading {} to {}; see p2pctl show_downloads",
                entry.name,
                entry.path.display()
            ),
        };
    }
    wait_for(&entry, progress).await
}

/// Validate, locate, create the `.part` file and start the task. The
/// refusals SPEC names are decided here, before anything is created.
async fn start_download(
    daemon: &Arc<Daemon>,
    group: GroupId,
    name: FileName,
    dest: PathBuf,
) -> Result<Arc<Entry>, WireError> {
    let session = daemon.require_session()?;
    if daemon
        .downloads
        .find(&session.user, &group, &name)
        .is_some_and(|e| e.is_active())
    {
        return Err(already(&name, &group));
    }
    let path = {
        let (dest, name) = (dest.clone(), name.clone());
        tokio::task::spawn_blocking(move || storage::resolve_destination(&dest, &name))
            .await
            .map_err(|e| WireError::new(ErrorCode::Io, format!("checking the destination: {e}")))?
            .map_err(storage_error)?
    };
    let entry = daemon
        .downloads
        .claim(&session.user, &group, &name, &path)?;
    match prepare(daemon, &session, &entry).await {
        Ok(Some(start)) => {
            spawn_task(daemon, entry.clone(), session, start);
            Ok(entry)
        }
        Ok(None) => Ok(entry),
        Err(e) => {
            daemon.downloads.unclaim(&entry);
            Err(e)
        }
    }
}

/// The first `Locate` and the `.part` file. `Ok(None)`: an empty file,
/// already complete.
async fn prepare(
    daemon: &Arc<Daemon>,
    session: &Session,
    entry: &Arc<Entry>,
) -> Result<Option<Start>, WireError> {
    let located = download::locate(daemon, session, &entry.group, &entry.name, false).await?;
    let meta = located.meta;
    entry.update(|s| s.size = meta.size);
    let part_path = storage::part_path(&entry.path);
    if std::fs::symlink_metadata(&part_path).is_ok() {
        return Err(WireError::new(
            ErrorCode::Io,
            format!(
                "{} already exists; download_file never overwrites",
                part_path.display()
            ),
        ));
    }
    if meta.size == 0 {
        let final_path = entry.path.clone();
        let made = tokio::task::spawn_blocking(move || {
            let part = PartFile::open(&part_path, 0, PartMode::Fresh)?;
            let sha1 = part.whole_sha1()?;
            drop(part);
            if sha1 != Sha1Hash::of(b"") {
                return Ok(Some(sha1));
            }
            storage::finish(&part_path, &final_path).map(|()| None)
        })
        .await
        .map_err(|e| WireError::new(ErrorCode::Io, format!("creating the file: {e}")))?
        .map_err(storage_error)?;
        if made.is_some() || meta.sha1 != Sha1Hash::of(b"") {
            return Err(WireError::new(
                ErrorCode::Integrity,
                format!("{}: the empty file does not match its SHA-1", entry.name),
            ));
        }
        let job = Job {
            daemon: daemon.clone(),
            entry: entry.clone(),
            session: session.clone(),
            stop: CancellationToken::new(),
        };
        download::complete_download(&job, &meta).await?;
        entry.update(|s| s.state = DownloadState::Complete);
        return Ok(None);
    }
    if located.peers.is_empty() {
        return Err(WireError::new(
            ErrorCode::NoHoldersOnline,
            format!(
                "no holder of {} in {} is online; try again later",
                entry.name, entry.group
            ),
        ));
    }
    let size = meta.size;
    let part =
        tokio::task::spawn_blocking(move || PartFile::open(&part_path, size, PartMode::Fresh))
            .await
            .map_err(|e| WireError::new(ErrorCode::Io, format!("creating the .part file: {e}")))?
            .map_err(storage_error)?;
    Ok(Some(Start::New {
        meta,
        peers: located.peers,
        part,
    }))
}

/// Stream progress until the download completes or fails; the download
/// goes on if the client leaves.
async fn wait_for(entry: &Arc<Entry>, progress: &ProgressSink) -> CtlReply {
    let mut rx = entry.status.subscribe();
    let mut every = tokio::time::interval(PROGRESS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let s = rx.borrow_and_update().clone();
        match s.state {
            DownloadState::Complete => {
                let n = s.sources;
                return CtlReply::Ok {
                    message: format!(
                        "downloaded {} to {} ({} bytes from {n} peer{})",
                        entry.name,
                        entry.path.display(),
                        s.size,
                        if n == 1 { "" } else { "s" }
                    ),
                };
            }
            DownloadState::Failed => {
                return CtlReply::Error(s.error.unwrap_or_else(|| {
                    WireError::new(ErrorCode::Io, format!("downloading {} failed", entry.name))
                }))
            }
            DownloadState::Downloading | DownloadState::Paused => {}
        }
        if progress.is_closed() {
            // The client left: the download carries on without it.
            return CtlReply::Ok {
                message: format!("downloading {} in the background", entry.name),
            };
        }
        tokio::select! {
            _ = every.tick() => progress.send(Progress {
                bytes_done: s.bytes_done,
                size: s.size,
                peers: s.connected,
                rate: s.rate,
                paused: s.state == DownloadState::Paused,
            }),
            r = rx.changed() => if r.is_err() {
                return CtlReply::error(ErrorCode::Io, "the download ended unexpectedly");
            },
        }
    }
}

/// `show_downloads`: every download of the logged-in user this daemon
/// knows, in the order they were started.
pub async fn show_downloads(daemon: &Arc<Daemon>) -> CtlReply {
    let Some(session) = daemon.session.current() else {
        return CtlReply::Downloads { downloads: vec![] };
    };
    let downloads = daemon
        .downloads
        .of_user(&session.user)
        .iter()
        .map(|e| e.info())
        .collect();
    CtlReply::Downloads { downloads }
}

/// Downloads counted by `status`: every one `show_downloads` lists for the
/// logged-in user (running, paused, complete and failed).
pub fn download_count(daemon: &Daemon) -> u32 {
    daemon.session.current().map_or(0, |s| {
        u32::try_from(daemon.downloads.of_user(&s.user).len()).unwrap_or(u32::MAX)
    })
}

/// Follow the session until shutdown: stop the tasks of a session that
/// ended, resume the saved downloads of the one logged in.
pub async fn run(daemon: Arc<Daemon>) {
    let mut rx = daemon.session.subscribe();
    loop {
        let current = rx.borrow_and_update().clone();
        follow_session(&daemon, current).await;
        tokio::select! {
            _ = daemon.shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

async fn follow_session(daemon: &Arc<Daemon>, current: Option<Session>) {
    let token = current.as_ref().map(|s| s.token.clone());
    let stale: Vec<Arc<Entry>> = lock(&daemon.downloads.entries)
        .iter()
        .filter(|e| {
            lock(&e.running)
                .as_ref()
                .is_some_and(|(t, _)| Some(t) != token.as_ref())
        })
        .cloned()
        .collect();
    for e in &stale {
        if let Some((_, stop)) = lock(&e.running).as_ref() {
            stop.cancel();
        }
    }
    let deadline = tokio::time::Instant::now() + STOP_WAIT;
    for e in &stale {
        while e.is_running() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let Some(session) = current else { return };
    let dir = download::records_dir(daemon);
    let records = match tokio::task::spawn_blocking(move || resume::load_dir(&dir)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!("cannot read saved downloads: {e}");
            return;
        }
        Err(e) => {
            tracing::warn!("reading saved downloads failed: {e}");
            return;
        }
    };
    for (path, record) in records {
        match record {
            Ok(r) if r.user == session.user => resume_record(daemon, &session, r),
            Ok(_) => {}
            Err(e) => tracing::warn!(path = %path.display(), "{e}"),
        }
    }
}

fn resume_record(daemon: &Arc<Daemon>, session: &Session, record: ResumeRecord) {
    let entry = {
        let mut list = lock(&daemon.downloads.entries);
        match list
            .iter()
            .find(|e| e.is(&record.user, &record.group, &record.name))
        {
            Some(e) if e.is_running() => return,
            Some(e) if e.is_active() => e.clone(),
            _ => {
                list.retain(|e| !e.is(&record.user, &record.group, &record.name));
                let bytes_done = record
                    .verified
                    .ones()
                    .map(|p| u64::from(geometry::piece_len(record.size, p).unwrap_or(0)))
                    .sum();
                let e = Arc::new(Entry::new(
                    record.user.clone(),
                    record.group.clone(),
                    record.name.clone(),
                    record.path.clone(),
                    Snapshot {
                        state: DownloadState::Paused,
                        bytes_done,
                        size: record.size,
                        peers: Vec::new(),
                        rate: 0,
                        connected: 0,
                        sources: 0,
                        error: None,
                    },
                ));
                list.push(e.clone());
                e
            }
        }
    };
    tracing::info!(name = %record.name, group = %record.group, "resuming a download");
    spawn_task(daemon, entry, session.clone(), Start::Resume { record });
}
