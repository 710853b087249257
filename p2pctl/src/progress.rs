//! Progress bars on stderr, fed by the daemon's [`Progress`] frames.
//!
//! Drawn only when stderr is a terminal and not in `--json` mode; otherwise
//! every tick is dropped. stdout never sees progress.

use crate::render;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use proto::ctl::Progress;

/// Uploads smaller than this hash in a moment: no bar.
pub const UPLOAD_BAR_MIN_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Download,
    /// `upload_file` hashing the file.
    Upload,
}

/// A bar created lazily on the first tick that deserves one.
pub struct ProgressView {
    kind: Kind,
    enabled: bool,
    bar: Option<ProgressBar>,
}

impl ProgressView {
    /// `enabled` is "stderr is a terminal and not `--json`".
    pub fn new(kind: Kind, enabled: bool) -> Self {
        ProgressView {
            kind,
            enabled,
            bar: None,
        }
    }

    pub fn tick(&mut self, p: &Progress) {
        if !self.enabled {
            return;
        }
        if self.kind == Kind::Upload && p.size <= UPLOAD_BAR_MIN_BYTES {
            return;
        }
        let kind = self.kind;
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(Some(p.size), ProgressDrawTarget::stderr());
            let template = match kind {
                Kind::Download => "{bar:30.cyan/blue} {decimal_bytes}/{decimal_total_bytes} {msg}",
                Kind::Upload => {
                    "hashing {bar:30.cyan/blue} {decimal_bytes}/{decimal_total_bytes} {msg}"
                }
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        bar.set_message(message(kind, p));
        bar.set_length(p.size);
        bar.set_position(p.bytes_done.min(p.size));
    }

    /// Remove the bar before the final reply is printed.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for ProgressView {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The text after the bar: rate, ETA and peers, or why it waits.
pub fn message(kind: Kind, p: &Progress) -> String {
    if kind == Kind::Download && p.paused {
        let why = p.reason.as_deref().unwrap_or("waiting for a holder");
        // One line, whatever the daemon's sentence holds.
        let why: String = why
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        return format!("paused: {why}");
    }
    let mut parts = vec![render::rate(p.rate)];
    if let Some(eta) = render::eta(p.size.saturating_sub(p.bytes_done), p.rate) {
        parts.push(format!("ETA {eta}"));
    }
    if kind == Kind::Download {
        let s = if p.peers == 1 { "" } else { "s" };
        parts.push(format!("{} peer{s}", p.peers));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(bytes_done: u64, rate: u64, peers: u32, paused: bool) -> Progress {
        Progress {
            bytes_done,
            size: 10_000_000,
            peers,
            rate,
            paused,
            reason: None,
        }
    }

    #[test]
    fn messages() {
        assert_eq!(
            message(Kind::Download, &progress(0, 1_000_000, 2, false)),
            "1.0 MB/s, ETA 10s, 2 peers"
        );
        assert_eq!(
            message(Kind::Download, &progress(0, 0, 1, false)),
            "0 B/s, 1 peer"
        );
        assert_eq!(
            message(Kind::Download, &progress(5, 0, 0, true)),
            "paused: waiting for a holder"
        );
        let full = Progress {
            reason: Some("disk full: /dl/f.part\n".into()),
            ..progress(5, 0, 0, true)
        };
        assert_eq!(
            message(Kind::Download, &full),
            "paused: disk full: /dl/f.part "
        );
        assert_eq!(
            message(Kind::Upload, &progress(0, 5_000_000, 0, false)),
            "5.0 MB/s, ETA 2s"
        );
    }

    #[test]
    fn disabled_view_draws_nothing() {
        let mut view = ProgressView::new(Kind::Download, false);
        view.tick(&progress(1, 1, 1, false));
        assert!(view.bar.is_none());
        let mut view = ProgressView::new(Kind::Upload, true);
        view.tick(&progress(1, 1, 0, false));
        assert!(view.bar.is_none(), "small uploads get no bar");
    }
}
