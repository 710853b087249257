//! What the swarm engine receives from the daemon: a narrow set of handles,
//! not the daemon itself.

use super::fetchers::FetcherBook;
use super::rate::RateLimiter;
use super::serve_index::ServeIndex;
use crate::shares::ShareSet;
use crate::tracker_client::TrackerClient;
use p2p_link::Endpoint;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio_util::task::TaskTracker;

/// Shared by every download and every served connection.
#[derive(Debug)]
pub struct SwarmContext {
    /// The tracker, as whichever session a task runs under.
    pub client: TrackerClient,
    /// What users share (a finished download becomes a share).
    pub shares: Arc<ShareSet>,
    /// What the seeder may serve: shares and verified pieces of downloads.
    pub serving: Arc<ServeIndex>,
    /// Who fetches which file from us (told to each served downloader).
    pub fetchers: Arc<FetcherBook>,
    /// `--max-upload-rate`, shared by every served connection.
    pub upload_limit: RateLimiter,
    /// `--max-download-rate`, shared by every download connection.
    pub download_limit: RateLimiter,
    /// Piece bytes served to peers since start (`status`'s `uploaded`).
    pub uploaded: Arc<AtomicU64>,
    /// `HOME/downloads/`: resume records.
    pub records_dir: PathBuf,
    /// Every background task of the swarm, so the daemon's stop waits.
    pub tasks: TaskTracker,
    /// This daemon's link key: peer links are TLS with it on both sides.
    pub endpoint: Endpoint,
}
