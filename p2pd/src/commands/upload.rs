//! `upload_file PATH GROUP`: check the path, check membership (cheap)
//! before hashing (expensive), hash with progress, record, register.

use super::Commands;
use crate::fault;
use crate::hashing::{hash_file, CancelOnDrop, FileHashes, HashError};
use crate::progress::ProgressSink;
use crate::shares::{FileStamp, ShareEntry};
use crate::swarm::rate::RateMeter;
use crate::tracker_client::SessionClient;
use proto::ctl::{CtlReply, Progress};
use proto::geometry::PIECE_SIZE_BYTES;
use proto::tracker::FileMeta;
use proto::{ErrorCode, FileName, GroupId, WireError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// At most this many progress ticks per second reach p2pctl.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

fn io_error(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::Io, msg)
}

fn invalid(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidArgument, msg)
}

/// `upload_file PATH GROUP`: validate, check membership (cheap) before
/// hashing (expensive), hash with progress, record, register.
pub async fn upload_file(
    cmd: &Commands,
    path: PathBuf,
    group: GroupId,
    progress: &ProgressSink,
) -> Result<CtlReply, WireError> {
    let session = cmd.client.current()?;
    if !path.is_absolute() {
        return Err(invalid(format!(
            "path {} must be absolute (p2pctl resolves it)",
            path.display()
        )));
    }
    let name = base_name(&path)?;
    let before = check_regular_file(&path)?;

    // Membership first: no point hashing gigabytes for a group we are not in.
    session.list_files(group.clone()).await?;

    let hashes = hash_with_progress(&cmd.shutdown, &path, before.size, progress).await?;
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
    let entry = ShareEntry {
        group: group.clone(),
        name: name.clone(),
        path,
        size: before.size,
        mtime: before.mtime,
        meta: meta.clone(),
    };
    record_then_register(cmd, &session, entry).await?;
    Ok(CtlReply::Ok {
        message: format!(
            "shared {name} in {group} ({}, {pieces} piece{})",
            proto::units::Bytes(before.size),
            if pieces == 1 { "" } else { "s" }
        ),
    })
}

/// Records the share locally, then registers it: a crash in between
/// leaves a share the next login registers (or withdraws, if its file is
/// gone), never a holder the tracker lists and this daemon does not serve.
/// A refusal restores what was recorded before; an unknown outcome
/// (`tracker_unavailable`) keeps the record, so whatever the tracker
/// committed is served and announced again on reconnection.
async fn record_then_register(
    cmd: &Commands,
    session: &SessionClient,
    entry: ShareEntry,
) -> Result<(), WireError> {
    let user = session.user();
    let previous = cmd.shares.find(user, &entry.group, &entry.name);
    let (group, name, meta) = (entry.group.clone(), entry.name.clone(), entry.meta.clone());
    cmd.shares
        .upsert(user, entry)
        .map_err(|e| io_error(format!("cannot save the shares file: {e}")))?;
    fault::point(fault::Point::BeforeRegister);
    match session.register_file(group.clone(), meta).await {
        Ok(()) => {
            fault::point(fault::Point::AfterRegister);
            Ok(())
        }
        Err(e) if e.code == ErrorCode::TrackerUnavailable => Err(WireError::new(
            e.code,
            format!(
                "{}; the share is kept and announced again when a tracker answers \
                 (p2pctl stop_share withdraws it)",
                e.message
            ),
        )),
        Err(e) => {
            let undone = match previous {
                Some(p) => cmd.shares.upsert(user, p),
                None => cmd.shares.remove(user, &group, &name).map(|_| ()),
            };
            if let Err(w) = undone {
                tracing::warn!(%group, %name, "cannot undo the refused share: {w}");
            }
            Err(e)
        }
    }
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
    shutdown: &CancellationToken,
    path: &Path,
    size: u64,
    progress: &ProgressSink,
) -> Result<FileHashes, WireError> {
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
                    reason: None,
                });
            }
            _ = shutdown.cancelled(), if !cancel.load(Ordering::Relaxed) => {
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
}
