//! Why a download stopped for good, typed; turned into the wire's
//! [`WireError`] only at the command boundary ([`DownloadError::to_wire`]).

use crate::swarm::resume::ResumeError;
use crate::swarm::storage::StorageError;
use proto::{ErrorCode, FileName, GroupId, Sha1Hash, WireError};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The tracker refused (its code says why: `no_such_file`, ...).
    #[error("{0}")]
    Tracker(WireError),
    #[error("no holder of {name} in {group} is online; try again later")]
    NoHolders { name: FileName, group: GroupId },
    #[error("{name} in {group} is already being downloaded; see p2pctl show_downloads")]
    AlreadyDownloading { name: FileName, group: GroupId },
    /// This user already serves the file from `path`: fetching it from the
    /// network would only copy what is on this disk.
    #[error("you already share {name} in {group} (from {}); copy that file instead of downloading it", path.display())]
    AlreadyShared {
        name: FileName,
        group: GroupId,
        path: PathBuf,
    },
    #[error("another download already writes {0}")]
    SamePath(PathBuf),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("saving progress: {0}")]
    Resume(#[from] ResumeError),
    #[error("{name}: every piece matched but the whole file's SHA-1 is {}, not {}", got.to_hex(), want.to_hex())]
    WholeFile {
        name: FileName,
        got: Sha1Hash,
        want: Sha1Hash,
    },
    #[error("{0}: the empty file does not match its SHA-1")]
    EmptyFile(FileName),
    #[error("{path}: {source}")]
    Finished {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("downloaded, but cannot save the shares file: {0}")]
    SaveShare(std::io::Error),
    /// A helper thread or task of the download died (a bug or a panic).
    #[error("{0}")]
    Internal(String),
    /// Not a failure: the reason a download is paused until there is room.
    #[error("disk full: {}; trying again every 10 s", path.display())]
    DiskFull { path: PathBuf },
    /// Stopped (logout, daemon stop) before it could start.
    #[error("the download was stopped before it started (logout or daemon stop)")]
    Stopped,
}

impl DownloadError {
    /// The refusal as p2pctl shows it: SPEC's code and the sentence.
    pub fn to_wire(&self) -> WireError {
        let code = match self {
            DownloadError::Tracker(e) => return e.clone(),
            DownloadError::NoHolders { .. } => ErrorCode::NoHoldersOnline,
            DownloadError::AlreadyDownloading { .. }
            | DownloadError::AlreadyShared { .. }
            | DownloadError::SamePath(_) => ErrorCode::InvalidArgument,
            DownloadError::Storage(StorageError::NotAbsolute(_)) => ErrorCode::InvalidArgument,
            DownloadError::WholeFile { .. } | DownloadError::EmptyFile(_) => ErrorCode::Integrity,
            DownloadError::Storage(_)
            | DownloadError::Resume(_)
            | DownloadError::Finished { .. }
            | DownloadError::SaveShare(_)
            | DownloadError::Internal(_)
            | DownloadError::DiskFull { .. }
            | DownloadError::Stopped => ErrorCode::Io,
        };
        WireError::new(code, self.to_string())
    }

    /// Refusals that end a download: the group is gone or we are no longer
    /// a member. A file no longer shared (`no_such_file`) refuses a new
    /// download but not one under way, which waits for someone to share
    /// the file again (see [`DownloadError::is_unknown_file`]).
    pub fn is_permanent(&self) -> bool {
        matches!(self, DownloadError::Tracker(e) if matches!(
            e.code,
            ErrorCode::NoSuchGroup | ErrorCode::NotMember
        ))
    }

    /// The tracker knows no such file in the group (now).
    pub fn is_unknown_file(&self) -> bool {
        matches!(self, DownloadError::Tracker(e) if e.code == ErrorCode::NoSuchFile)
    }
}

impl DownloadError {
    /// The file a write found its disk full on (`ENOSPC`, `EDQUOT`): the
    /// download pauses instead of failing.
    pub fn disk_full(&self) -> Option<PathBuf> {
        let (path, source) = match self {
            DownloadError::Storage(StorageError::Io { path, source, .. })
            | DownloadError::Resume(ResumeError::Io { path, source })
            | DownloadError::Finished { path, source } => (path, source),
            DownloadError::DiskFull { path } => return Some(path.clone()),
            _ => return None,
        };
        matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)).then(|| path.clone())
    }
}

impl From<WireError> for DownloadError {
    fn from(e: WireError) -> Self {
        DownloadError::Tracker(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_at_the_boundary() {
        let name: FileName = "f".parse().unwrap();
        let group: GroupId = "g".parse().unwrap();
        let e = DownloadError::NoHolders {
            name: name.clone(),
            group,
        };
        assert_eq!(e.to_wire().code, ErrorCode::NoHoldersOnline);
        assert!(e.to_wire().message.contains("no holder of f in g"));
        let refusal = WireError::new(ErrorCode::NotMember, "not a member");
        assert_eq!(DownloadError::from(refusal.clone()).to_wire(), refusal);
        assert!(DownloadError::from(refusal).is_permanent());
        let busy = WireError::new(ErrorCode::TrackerUnavailable, "later");
        assert!(!DownloadError::from(busy).is_permanent());
        let e = DownloadError::WholeFile {
            name,
            got: Sha1Hash([1; 20]),
            want: Sha1Hash([2; 20]),
        };
        assert_eq!(e.to_wire().code, ErrorCode::Integrity);
        assert!(e.to_string().contains(&"01".repeat(20)), "{e}");
        let e = DownloadError::Storage(StorageError::Exists("/x/f.part".into()));
        assert_eq!(e.disk_full(), None);
        assert_eq!(e.to_wire().code, ErrorCode::Io);
        assert!(e.to_string().contains("never overwrites"), "{e}");
    }

    #[test]
    fn a_full_disk_pauses_other_write_errors_fail() {
        let io = |errno| {
            DownloadError::Storage(StorageError::Io {
                step: "writing",
                path: "/dl/f.part".into(),
                source: std::io::Error::from_raw_os_error(errno),
            })
        };
        assert_eq!(io(libc::ENOSPC).disk_full(), Some("/dl/f.part".into()));
        assert_eq!(io(libc::EDQUOT).disk_full(), Some("/dl/f.part".into()));
        assert_eq!(io(libc::EIO).disk_full(), None);
        let record = DownloadError::Resume(ResumeError::Io {
            path: "/h/downloads/r".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        });
        assert_eq!(record.disk_full(), Some("/h/downloads/r".into()));
        let paused = DownloadError::DiskFull {
            path: "/dl/f.part".into(),
        };
        assert!(
            paused.to_string().starts_with("disk full: /dl/f.part"),
            "{paused}"
        );
    }

    #[test]
    fn downloading_what_you_share_is_invalid_argument_naming_the_file() {
        let e = DownloadError::AlreadyShared {
            name: "f".parse().unwrap(),
            group: "g".parse().unwrap(),
            path: "/data/f".into(),
        }
        .to_wire();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(
            e.message.contains("you already share f in g") && e.message.contains("/data/f"),
            "{}",
            e.message
        );
    }
}
