//! How a long command (a waiting `download_file`, `upload_file`'s hashing)
//! reports progress to the p2pctl that waits for it.

use proto::ctl::Progress;
use tokio::sync::mpsc;

/// Where a command sends its progress ticks; the connection task writes
/// them before the final reply. Sending never blocks the command.
#[derive(Debug, Clone)]
pub struct ProgressSink(mpsc::Sender<Progress>);

impl From<mpsc::Sender<Progress>> for ProgressSink {
    fn from(tx: mpsc::Sender<Progress>) -> Self {
        ProgressSink(tx)
    }
}

impl ProgressSink {
    pub fn send(&self, tick: Progress) {
        // Full (slow client) or closed (client gone): drop the tick; the
        // command carries on either way.
        let _ = self.0.try_send(tick);
    }

    /// True once the client is gone (it stopped waiting).
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}
