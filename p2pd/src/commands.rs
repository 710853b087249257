//! One handler per SPEC command: turn a [`CtlRequest`] into tracker calls
//! and local state changes, and answer one [`CtlReply`].
//!
//! Every refusal is a [`WireError`] with a SPEC code and a sentence a user
//! understands. Commands other than `create_user`, `login` and `status`
//! need a session; a tracker answer of `not_logged_in` means the session
//! ended elsewhere, so it is forgotten locally too.

use crate::daemon::Daemon;
use crate::hashing::{hash_file, HashError};
use crate::ipc::ProgressSink;
use crate::session::{self, Session};
use crate::shares::{FileStamp, ShareEntry};
use proto::ctl::{CtlReply, CtlRequest, Progress, StatusInfo};
use proto::geometry::PIECE_SIZE_BYTES;
use proto::tracker::{FileMeta, TrackerReply, TrackerRequest};
use proto::{ErrorCode, FileName, GroupId, UserId, WireError};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most this many progress ticks per second reach p2pctl.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// The window the reported rate is averaged over.
const RATE_WINDOW: Duration = Duration::from_secs(3);

type CmdResult = Result<CtlReply, WireError>;

/// Run one request to its final reply; progress ticks go to `progress`.
pub async fn dispatch(
    daemon: &Arc<Daemon>,
    request: CtlRequest,
    progress: ProgressSink,
) -> CtlReply {
    let result = match request {
        CtlRequest::CreateUser { user, password } => create_user(daemon, user, password).await,
        CtlRequest::Login { user, password } => login(daemon, user, password).await,
        CtlRequest::Logout => logout(daemon).await,
        CtlRequest::CreateGroup { group } => {
            with_session(daemon, |token| TrackerRequest::CreateGroup { token, group })
                .await
                .map(ok)
        }
        CtlRequest::JoinGroup { group } => {
            with_session(daemon, |token| TrackerRequest::JoinGroup { token, group })
                .await
                .map(ok)
        }
        CtlRequest::LeaveGroup { group } => leave_group(daemon, group).await,
        CtlRequest::ListRequests { group } => with_session(daemon, |token| {
            TrackerRequest::ListRequests { token, group }
        })
        .await
        .and_then(|r| match r {
            TrackerReply::Users { users } => Ok(CtlReply::Requests { users }),
            other => Err(unexpected(other)),
        }),
        CtlRequest::AcceptRequest { group, user } => with_session(daemon, |token| {
            TrackerRequest::AcceptRequest { token, group, user }
        })
        .await
        .map(ok),
        CtlRequest::ListGroups => {
            with_session(daemon, |token| TrackerRequest::ListGroups { token })
                .await
                .and_then(|r| match r {
                    TrackerReply::Groups { groups } => Ok(CtlReply::Groups { groups }),
                    other => Err(unexpected(other)),
                })
        }
        CtlRequest::ListFiles { group } => {
            with_session(daemon, |token| TrackerRequest::ListFiles { token, group })
                .await
                .and_then(|r| match r {
                    TrackerReply::Files { files } => Ok(CtlReply::Files { files }),
                    other => Err(unexpected(other)),
                })
        }
        CtlRequest::UploadFile { path, group } => upload_file(daemon, path, group, &progress).await,
        CtlRequest::StopShare { group, name } => stop_share(daemon, group, name).await,
        CtlRequest::Status => Ok(status(daemon)),
        CtlRequest::DownloadFile {
            group,
            name,
            dest,
            detach,
        } => {
            if let Err(e) = daemon.require_session() {
                return CtlReply::Error(e);
            }
            Ok(crate::downloads::download_file(daemon, group, name, dest, detach, &progress).await)
        }
        CtlRequest::ShowDownloads => match daemon.require_session() {
            Ok(_) => Ok(crate::downloads::show_downloads(daemon).await),
            Err(e) => Err(e),
        },
    };
    result.unwrap_or_else(CtlReply::Error)
}

/// A tracker `Done` becomes `Ok` with the tracker's sentence.
fn ok(reply: TrackerReply) -> CtlReply {
    match reply {
        TrackerReply::Done { message } => CtlReply::Ok { message },
        other => CtlReply::Ok {
            message: format!("{other:?}"),
        },
    }
}

fn unexpected(reply: TrackerReply) -> WireError {
    tracing::error!(?reply, "unexpected tracker reply");
    WireError::new(
        ErrorCode::TrackerUnavailable,
        "the tracker gave an unexpected answer; is it the same version as p2pd?",
    )
}

fn io_error(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::Io, msg)
}

fn invalid(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidArgument, msg)
}

/// Call the tracker with the current session's token. `not_logged_in`
/// from the tracker ends the local session as well.
///
/// # Errors
/// `not_logged_in` without a session; any tracker refusal.
async fn call_with(
    daemon: &Daemon,
    session: &Session,
    request: TrackerRequest,
) -> Result<TrackerReply, WireError> {
    match daemon.tracker.call(request).await {
        Err(e) if e.code == ErrorCode::NotLoggedIn => {
            session::session_ended_elsewhere(daemon, session);
            Err(WireError::new(
                ErrorCode::NotLoggedIn,
                "not logged in: the session ended (logged out or logged in elsewhere); run p2pctl login USER",
            ))
        }
        other => other,
    }
}

async fn with_session(
    daemon: &Daemon,
    build: impl FnOnce(proto::tracker::SessionToken) -> TrackerRequest,
) -> Result<TrackerReply, WireError> {
    let session = daemon.require_session()?;
    let request = build(session.token.clone());
    call_with(daemon, &session, request).await
}

async fn create_user(daemon: &Daemon, user: UserId, password: String) -> CmdResult {
    daemon
        .tracker
        .call(TrackerRequest::CreateUser { user, password })
        .await
        .map(ok)
}

async fn login(daemon: &Arc<Daemon>, user: UserId, password: String) -> CmdResult {
    let _gate = daemon.login_gate.lock().await;
    if let Some(s) = daemon.session.current() {
        return Err(WireError::new(
            ErrorCode::AlreadyLoggedIn,
            format!("already logged in as {}; logout first", s.user),
        ));
    }
    let token = match daemon
        .tracker
        .call(TrackerRequest::Login {
            user: user.clone(),
            password,
        })
        .await?
    {
        TrackerReply::LoggedIn { token } => token,
        other => return Err(unexpected(other)),
    };
    let session = Session {
        user: user.clone(),
        token,
    };
    daemon.session.begin(session.clone()).map_err(|e| {
        io_error(format!(
            "cannot save the session in {}: {e}",
            daemon.home.dir().display()
        ))
    })?;
    // Heartbeat and re-announce before answering, so "logged in" means
    // online and sharing again.
    session::resume(daemon, &session).await;
    let shares = daemon.shares.count(&user);
    let message = match shares {
        0 => format!("logged in as {user}"),
        1 => format!("logged in as {user}; sharing 1 file again"),
        n => format!("logged in as {user}; sharing {n} files again"),
    };
    Ok(CtlReply::Ok { message })
}

async fn logout(daemon: &Daemon) -> CmdResult {
    let _gate = daemon.login_gate.lock().await;
    let session = daemon.require_session()?;
    match daemon
        .tracker
        .call(TrackerRequest::Logout {
            token: session.token.clone(),
        })
        .await
    {
        Ok(_) => {}
        // Already ended at the tracker: ending it here is what was asked.
        Err(e) if e.code == ErrorCode::NotLoggedIn => {}
        Err(e) => return Err(e),
    }
    daemon.session.end_if(&session.token).map_err(|e| {
        io_error(format!(
            "logged out, but cannot remove the session file: {e}"
        ))
    })?;
    daemon.set_resumed_key(None);
    Ok(CtlReply::Ok {
        message: format!("logged out {}", session.user),
    })
}

async fn leave_group(daemon: &Daemon, group: GroupId) -> CmdResult {
    let session = daemon.require_session()?;
    let reply = call_with(
        daemon,
        &session,
        TrackerRequest::LeaveGroup {
            token: session.token.clone(),
            group: group.clone(),
        },
    )
    .await?;
    // The tracker dropped our holdings in the group; forget them here too.
    if let Err(e) = daemon.shares.remove_group(&session.user, &group) {
        tracing::warn!("cannot update shares after leaving {group}: {e}");
    }
    Ok(ok(reply))
}

async fn stop_share(daemon: &Daemon, group: GroupId, name: FileName) -> CmdResult {
    let session = daemon.require_session()?;
    let result = call_with(
        daemon,
        &session,
        TrackerRequest::StopShare {
            token: session.token.clone(),
            group: group.clone(),
            name: name.clone(),
        },
    )
    .await;
    match &result {
        // The tracker says we do not hold it: a local entry is stale.
        Ok(_)
        | Err(WireError {
            code: ErrorCode::NotHolder | ErrorCode::NoSuchFile,
            ..
        }) => {
            daemon
                .shares
                .remove(&session.user, &group, &name)
                .map_err(|e| io_error(format!("cannot update the shares file: {e}")))?;
        }
        Err(_) => {}
    }
    result.map(|_| CtlReply::Ok {
        message: format!("stopped sharing {name} in {group}"),
    })
}

fn status(daemon: &Daemon) -> CtlReply {
    let session = daemon.session.current();
    let shares = session.as_ref().map_or(0, |s| daemon.shares.count(&s.user));
    CtlReply::Status(StatusInfo {
        user: session.map(|s| s.user),
        tracker: daemon.tracker.current_tracker().map(|a| a.to_string()),
        listen: daemon.listen_addr().to_string(),
        shares: u32::try_from(shares).unwrap_or(u32::MAX),
        downloads: crate::downloads::download_count(daemon),
        uploaded: daemon.uploaded.load(Ordering::Relaxed),
    })
}

/// `upload_file PATH GROUP`: validate, check membership (cheap) before
/// hashing (expensive), hash with progress, register, remember.
async fn upload_file(
    daemon: &Daemon,
    path: PathBuf,
    group: GroupId,
    progress: &ProgressSink,
) -> CmdResult {
    let session = daemon.require_session()?;
    if !path.is_absolute() {
        return Err(invalid(format!(
            "path {} must be absolute (p2pctl resolves it)",
            path.display()
        )));
    }
    let name = base_name(&path)?;
    let before = check_regular_file(&path)?;

    // Membership first: no point hashing gigabytes for a group we are not in.
    call_with(
        daemon,
        &session,
        TrackerRequest::ListFiles {
            token: session.token.clone(),
            group: group.clone(),
        },
    )
    .await?;

    let hashes = hash_with_progress(daemon, &path, before.size, progress).await?;
    let after = FileStamp::read(&path)
        .map_err(|e| io_error(format!("cannot read {}: {e}", path.display())))?;
    if after != before || hashes.size != before.size {
        return Err(io_error(format!(
            "file changed while hashing: {}; try again once it is complete",
            path.display()
        )));
    }

    let meta = FileMeta {
        name: name.clone(),
        size: hashes.size,
        sha1: hashes.sha1,
        piece_size: PIECE_SIZE_BYTES,
        pieces: hashes.pieces,
    };
    let pieces = meta.pieces.len();
    call_with(
        daemon,
        &session,
        TrackerRequest::RegisterFile {
            token: session.token.clone(),
            group: group.clone(),
            meta: meta.clone(),
        },
    )
    .await?;
    daemon
        .shares
        .upsert(
            &session.user,
            ShareEntry {
                group: group.clone(),
                name: name.clone(),
                path,
                size: before.size,
                mtime: before.mtime,
                meta,
            },
        )
        .map_err(|e| io_error(format!("shared, but cannot save the shares file: {e}")))?;
    Ok(CtlReply::Ok {
        message: format!(
            "shared {name} in {group} ({} bytes, {pieces} piece{})",
            before.size,
            if pieces == 1 { "" } else { "s" }
        ),
    })
}

/// The file name the upload registers: the path's base name.
fn base_name(path: &Path) -> Result<FileName, WireError> {
    let raw = path
        .file_name()
        .ok_or_else(|| invalid(format!("{} has no file name", path.display())))?;
    let s = raw
        .to_str()
        .ok_or_else(|| invalid(format!("file name of {} is not UTF-8", path.display())))?;
    FileName::try_from(s).map_err(|e| invalid(e.to_string()))
}

fn check_regular_file(path: &Path) -> Result<FileStamp, WireError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(io_error(format!("no such file: {}", path.display())))
        }
        Err(e) => return Err(io_error(format!("cannot read {}: {e}", path.display()))),
    };
    if meta.is_dir() {
        return Err(invalid(format!(
            "{} is a directory; upload_file shares one regular file",
            path.display()
        )));
    }
    if !meta.is_file() {
        return Err(invalid(format!("{} is not a regular file", path.display())));
    }
    Ok(FileStamp::of(&meta))
}

/// Hash on a blocking thread while sampling its progress for p2pctl at
/// most every [`PROGRESS_EVERY`]. Stops early when the daemon stops.
async fn hash_with_progress(
    daemon: &Daemon,
    path: &Path,
    size: u64,
    progress: &ProgressSink,
) -> Result<crate::hashing::FileHashes, WireError> {
    let done = Arc::new(AtomicU64::new(0));
    let cancel = Arc::new(AtomicBool::new(false));
    let job = {
        let (path, done, cancel) = (path.to_path_buf(), done.clone(), cancel.clone());
        tokio::task::spawn_blocking(move || {
            hash_file(&path, &cancel, &mut |n| done.store(n, Ordering::Relaxed))
        })
    };
    tokio::pin!(job);
    // If this future is dropped (daemon stopping, connection task ended),
    // the blocking thread must not hash on for minutes.
    let _stop_on_drop = CancelOnDrop(cancel.clone());
    let mut meter = RateMeter::default();
    let mut every = tokio::time::interval(PROGRESS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let result = loop {
        tokio::select! {
            r = &mut job => break r,
            _ = every.tick() => {
                let bytes_done = done.load(Ordering::Relaxed);
                progress.send(Progress {
                    bytes_done,
                    size,
                    peers: 0,
                    rate: meter.update(bytes_done),
                    paused: false,
                });
            }
            _ = daemon.shutdown.cancelled(), if !cancel.load(Ordering::Relaxed) => {
                cancel.store(true, Ordering::Relaxed);
            }
        }
    };
    match result {
        Ok(Ok(h)) => Ok(h),
        Ok(Err(HashError::Cancelled)) => {
            Err(io_error("the daemon is stopping; hashing was cancelled"))
        }
        Ok(Err(e @ HashError::Open { .. })) | Ok(Err(e @ HashError::Read { .. })) => {
            Err(io_error(e.to_string()))
        }
        Err(e) => {
            tracing::error!("hashing task failed: {e}");
            Err(io_error("hashing failed unexpectedly"))
        }
    }
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Bytes per second over the last [`RATE_WINDOW`].
#[derive(Debug, Default)]
pub struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    /// Record `total` bytes now and return the recent rate.
    pub fn update(&mut self, total: u64) -> u64 {
        let now = Instant::now();
        self.samples.push_back((now, total));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let Some(&(t0, b0)) = self.samples.front() else {
            return 0;
        };
        let secs = now.duration_since(t0).as_secs_f64();
        if secs < 0.05 {
            return 0;
        }
        (total.saturating_sub(b0) as f64 / secs) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names() {
        assert_eq!(
            base_name(Path::new("/tmp/my file.iso")).unwrap().as_str(),
            "my file.iso"
        );
        assert_eq!(
            base_name(Path::new("/")).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        let long = format!("/tmp/{}", "x".repeat(300));
        assert_eq!(
            base_name(Path::new(&long)).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            base_name(Path::new("/tmp/a\nb")).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn regular_file_checks() {
        let t = tempfile::tempdir().unwrap();
        let e = check_regular_file(&t.path().join("nope")).unwrap_err();
        assert_eq!(e.code, ErrorCode::Io);
        assert!(e.message.starts_with("no such file: "), "{}", e.message);
        assert_eq!(
            check_regular_file(t.path()).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        let f = t.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(check_regular_file(&f).unwrap().size, 3);
    }

    #[test]
    fn rate_meter_starts_at_zero() {
        let mut m = RateMeter::default();
        assert_eq!(m.update(0), 0);
        assert_eq!(m.update(1000), 0, "too short a window to say");
    }
}
