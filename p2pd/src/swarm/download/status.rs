//! What a download shows the outside (`show_downloads`, the progress bar):
//! a [`DownloadStatus`] published by the download's task through a
//! `watch` channel the registry owns.

use super::error::DownloadError;
use proto::ctl::{DownloadState, PeerBytes};
use std::sync::Arc;
use tokio::sync::watch;

/// Why a saved or stopped download waits.
const RESUMES_AT_LOGIN: &str = "not running: it resumes at the next login of its user";

/// One download as last published.
#[derive(Debug, Clone)]
pub struct DownloadStatus {
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
    /// Why it failed (state `failed`), or why it waits (disk full).
    pub error: Option<Arc<DownloadError>>,
    /// Why a running download has no peer (no holder online, every one
    /// sent corrupt data, none reachable).
    pub waiting: Option<String>,
}

impl DownloadStatus {
    /// A download just asked for: nothing known yet.
    pub fn starting() -> DownloadStatus {
        DownloadStatus {
            state: DownloadState::Downloading,
            bytes_done: 0,
            size: 0,
            peers: Vec::new(),
            rate: 0,
            connected: 0,
            sources: 0,
            error: None,
            waiting: None,
        }
    }

    /// A saved download not running yet.
    pub fn paused(bytes_done: u64, size: u64) -> DownloadStatus {
        DownloadStatus {
            state: DownloadState::Paused,
            bytes_done,
            size,
            waiting: Some(RESUMES_AT_LOGIN.into()),
            ..DownloadStatus::starting()
        }
    }

    /// Why it is paused, for people: the error that pauses it, else what
    /// it waits for; `None` unless paused.
    pub fn pause_reason(&self) -> Option<String> {
        if self.state != DownloadState::Paused {
            return None;
        }
        self.error
            .as_ref()
            .map(|e| e.to_string())
            .or_else(|| self.waiting.clone())
    }

    /// Complete or failed: nothing more will happen to it.
    pub fn is_over(&self) -> bool {
        matches!(self.state, DownloadState::Complete | DownloadState::Failed)
    }

    /// No transfer going on (paused, stopped, over).
    fn idle(&mut self) {
        self.connected = 0;
        self.rate = 0;
    }
}

/// The task's end of the channel: publishes changes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StatusHandle(Arc<watch::Sender<DownloadStatus>>);

impl StatusHandle {
    pub fn new(initial: DownloadStatus) -> StatusHandle {
        StatusHandle(Arc::new(watch::channel(initial).0))
    }

    pub fn get(&self) -> DownloadStatus {
        self.0.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<DownloadStatus> {
        self.0.subscribe()
    }

    pub fn update(&self, f: impl FnOnce(&mut DownloadStatus)) {
        self.0.send_modify(f);
    }

    /// Stopped (logout, daemon stop): a running download shows `paused`.
    pub fn stopped(&self) {
        self.update(|s| {
            if s.state == DownloadState::Downloading {
                s.state = DownloadState::Paused;
            }
            s.waiting = Some(RESUMES_AT_LOGIN.into());
            s.idle();
        });
    }

    pub fn failed(&self, error: DownloadError) {
        self.update(|s| {
            s.state = DownloadState::Failed;
            s.error = Some(Arc::new(error));
            s.idle();
        });
    }

    /// Complete, from `sources` peers.
    pub fn complete(&self, sources: u32) {
        self.update(|s| {
            s.state = DownloadState::Complete;
            s.bytes_done = s.size;
            s.sources = sources;
            s.idle();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        let h = StatusHandle::new(DownloadStatus::starting());
        let rx = h.subscribe();
        h.update(|s| {
            s.size = 10;
            s.rate = 5;
            s.connected = 2;
        });
        h.stopped();
        let s = rx.borrow().clone();
        assert_eq!(
            (s.state, s.rate, s.connected),
            (DownloadState::Paused, 0, 0)
        );
        assert!(!s.is_over());
        h.complete(3);
        let s = h.get();
        assert_eq!(
            (s.state, s.bytes_done, s.sources),
            (DownloadState::Complete, 10, 3)
        );
        assert!(s.is_over());
        h.stopped();
        assert_eq!(
            h.get().state,
            DownloadState::Complete,
            "stop keeps an end state"
        );
    }
}
