//! The downloads of this daemon: the registry, the commands
//! `download_file` and `show_downloads`, and following the session
//! (logout pauses, login resumes).
//!
//! [`Downloads`] holds one entry per download this daemon knows in this
//! run (running, paused, complete or failed), each with the status its
//! task publishes. A download's life itself belongs to the swarm engine
//! ([`crate::swarm::download::run`]); this module claims, spawns, waits and
//! shows.
//!
//! Session rule: a download task runs only under the session it was
//! started with. [`Downloads::follow_session`] stops the tasks of a session
//! that ended or changed (each saves its record: paused), and when a user
//! is logged in, resumes every record of theirs in `HOME/downloads/` that
//! is not running.

use crate::progress::ProgressSink;
use crate::session::Session;
use crate::swarm::context::SwarmContext;
use crate::swarm::download::error::DownloadError;
use crate::swarm::download::status::{DownloadStatus, StatusHandle};
use crate::swarm::download::{self, Ended, Job, Origin, Target};
use crate::swarm::resume::{self, ResumeRecord};
use crate::swarm::storage;
use crate::tracker_client::SessionClient;
use proto::ctl::{CtlReply, DownloadInfo, DownloadState, Progress};
use proto::tracker::SessionToken;
use proto::{geometry, ErrorCode, FileName, GroupId, UserId, WireError};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Progress ticks sent to a waiting p2pctl.
const PROGRESS_EVERY: Duration = Duration::from_millis(150);
/// How long a session change waits for the old session's tasks to save.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// One download known to this daemon.
struct Entry {
    user: UserId,
    target: Target,
    status: StatusHandle,
    /// The session its task runs under and how to stop it; `None` when no
    /// task runs.
    running: Mutex<Option<(SessionToken, CancellationToken)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Entry {
    fn new(user: UserId, target: Target, status: DownloadStatus) -> Arc<Entry> {
        Arc::new(Entry {
            user,
            target,
            status: StatusHandle::new(status),
            running: Mutex::new(None),
        })
    }

    fn is(&self, user: &UserId, group: &GroupId, name: &FileName) -> bool {
        &self.user == user && &self.target.group == group && &self.target.name == name
    }

    fn is_active(&self) -> bool {
        !self.status.get().is_over()
    }

    fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }

    fn info(&self) -> DownloadInfo {
        let s = self.status.get();
        let reason = match s.state {
            DownloadState::Paused => s.pause_reason(),
            _ => s.error.as_ref().map(|e| e.to_wire().message),
        };
        DownloadInfo {
            group: self.target.group.clone(),
            name: self.target.name.clone(),
            state: s.state,
            bytes_done: s.bytes_done,
            size: s.size,
            path: self.target.path.clone(),
            peers: s.peers,
            rate: s.rate,
            error: reason,
        }
    }
}

/// Every download of this daemon run.
pub struct Downloads {
    entries: Mutex<Vec<Arc<Entry>>>,
    ctx: Arc<SwarmContext>,
    /// Parent of every download task's stop token.
    shutdown: CancellationToken,
}

impl Downloads {
    pub fn new(ctx: Arc<SwarmContext>, shutdown: CancellationToken) -> Arc<Downloads> {
        Arc::new(Downloads {
            entries: Mutex::new(Vec::new()),
            ctx,
            shutdown,
        })
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

    /// Registers a new download, refusing one already in progress (same
    /// file, or same final path). A finished entry of the same file is
    /// replaced.
    fn claim(&self, user: &UserId, target: Target) -> Result<Arc<Entry>, DownloadError> {
        let mut list = lock(&self.entries);
        let (group, name) = (&target.group, &target.name);
        if list
            .iter()
            .any(|e| e.is(user, group, name) && e.is_active())
        {
            return Err(DownloadError::AlreadyDownloading {
                name: name.clone(),
                group: group.clone(),
            });
        }
        if list
            .iter()
            .any(|e| e.target.path == target.path && e.is_active())
        {
            return Err(DownloadError::SamePath(target.path));
        }
        list.retain(|e| !e.is(user, group, name));
        let entry = Entry::new(user.clone(), target, DownloadStatus::starting());
        list.push(entry.clone());
        Ok(entry)
    }

    fn unclaim(&self, entry: &Arc<Entry>) {
        lock(&self.entries).retain(|e| !Arc::ptr_eq(e, entry));
    }

    /// Starts `entry`'s task under `client`'s session.
    fn spawn(self: &Arc<Self>, entry: Arc<Entry>, client: SessionClient, origin: Origin) {
        let stop = self.shutdown.child_token();
        *lock(&entry.running) = Some((client.session().token.clone(), stop.clone()));
        let job = Job {
            ctx: self.ctx.clone(),
            client,
            target: entry.target.clone(),
            status: entry.status.clone(),
            stop,
        };
        let registry = self.clone();
        self.ctx.tasks.spawn(async move {
            let ended = download::run(job, origin).await;
            *lock(&entry.running) = None;
            if ended == Ended::Refused {
                registry.unclaim(&entry);
            }
        });
    }

    /// `download_file GROUP NAME DEST [--detach]`: the refusals SPEC names
    /// are decided before this answers; then either at once (`detach`) or
    /// with progress until the download ends.
    ///
    /// # Errors
    /// A refusal (`invalid_argument` for a download already in progress,
    /// `io` for an existing destination, `no_holders_online`, the
    /// tracker's), or the download's failure when waiting for it.
    pub async fn download_file(
        self: &Arc<Self>,
        client: SessionClient,
        group: GroupId,
        name: FileName,
        dest: PathBuf,
        detach: bool,
        progress: &ProgressSink,
    ) -> Result<CtlReply, WireError> {
        let entry = self
            .start(client, group, name, dest)
            .await
            .map_err(|e| e.to_wire())?;
        if detach {
            return Ok(CtlReply::Ok {
                message: format!(
                    "downloading {} to {}; see p2pctl show_downloads",
                    entry.target.name,
                    entry.target.path.display()
                ),
            });
        }
        wait_for(&entry, progress).await
    }

    /// Claims the download and runs its task until it has started (or
    /// was refused, and is forgotten again).
    async fn start(
        self: &Arc<Self>,
        client: SessionClient,
        group: GroupId,
        name: FileName,
        dest: PathBuf,
    ) -> Result<Arc<Entry>, DownloadError> {
        let user = client.user().clone();
        if self
            .find(&user, &group, &name)
            .is_some_and(|e| e.is_active())
        {
            return Err(DownloadError::AlreadyDownloading { name, group });
        }
        if let Some(share) = self.ctx.shares.find(&user, &group, &name) {
            return Err(DownloadError::AlreadyShared {
                name,
                group,
                path: share.path,
            });
        }
        let path = resolve_destination(dest, name.clone()).await?;
        let entry = self.claim(&user, Target { group, name, path })?;
        let (tx, started) = oneshot::channel();
        self.spawn(entry.clone(), client, Origin::New(tx));
        let refusal = match started.await {
            Ok(Ok(())) => return Ok(entry),
            Ok(Err(e)) => e,
            Err(_) => DownloadError::Stopped,
        };
        // Forget it now: a script retrying at once must not be told the
        // refused download is still in progress.
        self.unclaim(&entry);
        Err(refusal)
    }

    /// `show_downloads`: every download of `user` this daemon knows, in
    /// the order they were started.
    pub fn show(&self, user: &UserId) -> Vec<DownloadInfo> {
        self.of_user(user).iter().map(|e| e.info()).collect()
    }

    /// Downloads `status` counts for `user`: every one `show_downloads`
    /// lists (running, paused, complete and failed).
    pub fn count(&self, user: &UserId) -> u32 {
        u32::try_from(self.of_user(user).len()).unwrap_or(u32::MAX)
    }

    /// Follows the session until shutdown: stops the tasks of a session
    /// that ended, resumes the saved downloads of the one logged in.
    pub async fn follow_session(self: Arc<Self>) {
        let mut rx = self.ctx.client.sessions().subscribe();
        loop {
            let current = rx.borrow_and_update().clone();
            self.stop_others(current.as_ref()).await;
            if let Some(session) = current {
                self.resume_saved(session).await;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                r = rx.changed() => if r.is_err() { return },
            }
        }
    }

    /// Stops every task not running under `current`, and waits (a bounded
    /// time) for them to save.
    async fn stop_others(&self, current: Option<&Session>) {
        let token = current.map(|s| &s.token);
        let stale: Vec<Arc<Entry>> = lock(&self.entries)
            .iter()
            .filter(|e| {
                lock(&e.running)
                    .as_ref()
                    .is_some_and(|(t, _)| Some(t) != token)
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
    }

    /// Resumes every saved download of `session`'s user that is not running.
    async fn resume_saved(self: &Arc<Self>, session: Session) {
        let dir = self.ctx.records_dir.clone();
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
                Ok(r) if r.user == session.user => self.resume_record(&session, r),
                Ok(_) => {}
                Err(e) => tracing::warn!(path = %path.display(), "{e}"),
            }
        }
    }

    fn resume_record(self: &Arc<Self>, session: &Session, record: ResumeRecord) {
        let entry = {
            let mut list = lock(&self.entries);
            let (user, group, name) = (&record.user, &record.group, &record.name);
            match list.iter().find(|e| e.is(user, group, name)) {
                Some(e) if e.is_running() => return,
                Some(e) if e.is_active() => e.clone(),
                _ => {
                    list.retain(|e| !e.is(user, group, name));
                    let e = Entry::new(user.clone(), target_of(&record), saved_status(&record));
                    list.push(e.clone());
                    e
                }
            }
        };
        tracing::info!(name = %record.name, group = %record.group, "resuming a download");
        let client = self.ctx.client.acting_as(session.clone());
        self.spawn(entry, client, Origin::Saved(record));
    }
}

fn target_of(record: &ResumeRecord) -> Target {
    Target {
        group: record.group.clone(),
        name: record.name.clone(),
        path: record.path.clone(),
    }
}

/// A saved download before its task runs: paused at its verified bytes.
fn saved_status(record: &ResumeRecord) -> DownloadStatus {
    let bytes_done = record
        .verified
        .ones()
        .map(|p| u64::from(geometry::piece_len(record.size, p).unwrap_or(0)))
        .sum();
    DownloadStatus::paused(bytes_done, record.size)
}

/// The final path for `dest` (a directory: the file keeps its name), off
/// the reactor.
async fn resolve_destination(dest: PathBuf, name: FileName) -> Result<PathBuf, DownloadError> {
    let resolved =
        tokio::task::spawn_blocking(move || storage::resolve_destination(&dest, &name)).await;
    match resolved {
        Ok(r) => r.map_err(DownloadError::from),
        Err(e) => Err(DownloadError::Internal(format!(
            "checking the destination: {e}"
        ))),
    }
}

/// Streams progress until the download completes or fails; the download
/// goes on if the client leaves.
async fn wait_for(entry: &Arc<Entry>, progress: &ProgressSink) -> Result<CtlReply, WireError> {
    let mut rx = entry.status.subscribe();
    let mut every = tokio::time::interval(PROGRESS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let name = &entry.target.name;
    loop {
        let s = rx.borrow_and_update().clone();
        match s.state {
            DownloadState::Complete => return Ok(completed(&entry.target, &s)),
            DownloadState::Failed => {
                return Err(s.error.map_or_else(
                    || WireError::new(ErrorCode::Io, format!("downloading {name} failed")),
                    |e| e.to_wire(),
                ))
            }
            DownloadState::Downloading | DownloadState::Paused => {}
        }
        if progress.is_closed() {
            // The client left: the download carries on without it.
            return Ok(CtlReply::Ok {
                message: format!("downloading {name} in the background"),
            });
        }
        tokio::select! {
            _ = every.tick() => progress.send(Progress {
                bytes_done: s.bytes_done,
                size: s.size,
                peers: s.connected,
                rate: s.rate,
                paused: s.state == DownloadState::Paused,
                reason: s.pause_reason(),
            }),
            r = rx.changed() => if r.is_err() {
                return Err(WireError::new(ErrorCode::Io, "the download ended unexpectedly"));
            },
        }
    }
}

fn completed(target: &Target, s: &DownloadStatus) -> CtlReply {
    let n = s.sources;
    CtlReply::Ok {
        message: format!(
            "downloaded {} to {} ({} from {n} peer{})",
            target.name,
            target.path.display(),
            proto::units::Bytes(s.size),
            if n == 1 { "" } else { "s" }
        ),
    }
}
