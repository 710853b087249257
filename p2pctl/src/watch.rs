//! `show_downloads --watch`: ask the daemon again every interval until no
//! download can change by itself (all complete or failed).
//!
//! On a terminal the listing is redrawn in place (an indicatif bar whose
//! message is the table, on stdout); piped or under `--json` nothing is
//! printed until the end, so `p2pctl show_downloads --watch && echo done`
//! gets the final listing once.

use crate::client::{self, ClientError};
use crate::render;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use proto::ctl::{CtlReply, CtlRequest, DownloadInfo};
use std::path::Path;
use std::time::Duration;

/// True when no listed download will change any more (an empty list too).
pub fn all_finished(downloads: &[DownloadInfo]) -> bool {
    downloads.iter().all(|d| render::finished(d.state))
}

/// Poll until [`all_finished`]; the last reply (a listing or the daemon's
/// refusal). Ctrl-C is the caller's business (it drops this future).
///
/// # Errors
/// As [`client::request`].
pub async fn watch(socket: &Path, interval: Duration, tty: bool) -> Result<CtlReply, ClientError> {
    let live = tty.then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
        if let Ok(style) = ProgressStyle::with_template("{msg}") {
            bar.set_style(style);
        }
        bar
    });
    let mut ticker = tokio::time::interval(interval);
    let reply = loop {
        ticker.tick().await;
        let reply = client::request(socket, CtlRequest::ShowDownloads, false, |_| {}).await?;
        match &reply {
            CtlReply::Downloads { downloads } if !all_finished(downloads) => {
                if let Some(bar) = &live {
                    let table = render::downloads_table(downloads, true);
                    bar.set_message(table.trim_end().to_owned());
                }
            }
            _ => break reply,
        }
    };
    if let Some(bar) = live {
        bar.finish_and_clear();
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::ctl::DownloadState;

    fn d(state: DownloadState) -> DownloadInfo {
        DownloadInfo {
            group: "g".parse().unwrap(),
            name: "f".parse().unwrap(),
            state,
            bytes_done: 0,
            size: 1,
            path: "/f".into(),
            peers: vec![],
            rate: 0,
            error: None,
        }
    }

    #[test]
    fn finished_means_complete_or_failed() {
        assert!(all_finished(&[]));
        assert!(all_finished(&[
            d(DownloadState::Complete),
            d(DownloadState::Failed)
        ]));
        assert!(!all_finished(&[
            d(DownloadState::Complete),
            d(DownloadState::Paused)
        ]));
        assert!(!all_finished(&[d(DownloadState::Downloading)]));
    }
}
