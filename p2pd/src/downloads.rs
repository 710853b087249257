//! The seam between the control socket and the swarm engine.
//!
//! `download_file` and `show_downloads` arrive here from `commands`. The
//! swarm engine (`crate::swarm`) replaces the bodies of these two functions;
//! nothing else in the control plane needs to change. For a waiting
//! `download_file`, send ticks through `progress` and return the final reply.

use crate::daemon::Daemon;
use crate::ipc::ProgressSink;
use proto::ctl::CtlReply;
use proto::{ErrorCode, FileName, GroupId};
use std::path::PathBuf;
use std::sync::Arc;

/// `download_file GROUP NAME DEST [--detach]`.
pub async fn download_file(
    _daemon: &Arc<Daemon>,
    _group: GroupId,
    _name: FileName,
    _dest: PathBuf,
    _detach: bool,
    _progress: &ProgressSink,
) -> CtlReply {
    CtlReply::error(
        ErrorCode::InvalidArgument,
        "download_file is not available yet",
    )
}

/// `show_downloads`.
pub async fn show_downloads(_daemon: &Arc<Daemon>) -> CtlReply {
    CtlReply::Downloads { downloads: vec![] }
}

/// Downloads counted by `status`.
pub fn download_count(_daemon: &Daemon) -> u32 {
    0
}
