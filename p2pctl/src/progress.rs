//! Progress bars on stderr, fed by the daemon's [`Progress`] frames.
//!
//! Drawn only when stderr is a terminal and not in `--json` mode; otherwise
//! every tick is dropped. stdout never sees progress.

use crate::render;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use proto::ctl::Progress;
use proto::units::{Bytes, Rate};

/// Uploads smaller than this hash in a moment: no bar.
pub const UPLOAD_BAR_MIN_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Download,
    /// `upload_file` hashing the file.
    Upload,
}

/// The bar's fixed part: percent, bar, done/total in binary units. The
/// message after it is cut to what is left of the line.
const TEMPLATE: &str = "{percent:>3}% {bar:20.cyan/blue} {binary_bytes}/{binary_total_bytes} {msg}";
/// Below this many columns the bar itself is left out.
const NARROW: &str = "{percent:>3}% {binary_bytes}/{binary_total_bytes} {msg}";
const NARROW_BELOW: usize = 72;

/// The template for a terminal `width` columns wide, and how many columns
/// its fixed part takes at `done` of `size` bytes (indicatif's binary bytes
/// are formatted as [`Bytes`] is).
fn layout(width: usize, done: u64, size: u64) -> (&'static str, usize) {
    let numbers = format!("{}/{}", Bytes(done), Bytes(size)).chars().count();
    if width < NARROW_BELOW {
        (NARROW, 5 + numbers + 1)
    } else {
        (TEMPLATE, 5 + 21 + numbers + 1)
    }
}

/// A bar created lazily on the first tick that deserves one.
pub struct ProgressView {
    kind: Kind,
    /// The file's name, shown after the numbers.
    name: String,
    enabled: bool,
    bar: Option<ProgressBar>,
}

impl ProgressView {
    /// `enabled` is "stderr is a terminal and not `--json`".
    pub fn new(kind: Kind, name: String, enabled: bool) -> Self {
        ProgressView {
            kind,
            name,
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
        let width = usize::from(console::Term::stderr().size().1);
        let done = p.bytes_done.min(p.size);
        let (template, fixed) = layout(width, done, p.size);
        let bar = self.bar.get_or_insert_with(|| {
            ProgressBar::with_draw_target(Some(p.size), ProgressDrawTarget::stderr())
        });
        // Re-styled each tick: the terminal may have been resized.
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        // One column spare: a line exactly as wide as the terminal wraps on some.
        let room = width.saturating_sub(fixed + 1);
        bar.set_message(fit(&message(self.kind, &self.name, p), room));
        bar.set_length(p.size);
        bar.set_position(done);
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

/// The text after the numbers: rate, ETA, peers and the file name, or why
/// it waits. Before the daemon's first rate sample the rate is `…`, not a
/// discouraging `0 B/s`.
pub fn message(kind: Kind, name: &str, p: &Progress) -> String {
    let name = render::one_line(name);
    if kind == Kind::Download && p.paused {
        let why = p.reason.as_deref().unwrap_or("waiting for a holder");
        return format!("{name}: paused: {}", render::one_line(why));
    }
    let mut parts = vec![if p.rate == 0 {
        "…".to_owned()
    } else {
        Rate(p.rate).to_string()
    }];
    if let Some(eta) = render::eta(p.size.saturating_sub(p.bytes_done), p.rate) {
        parts.push(format!("ETA {eta}"));
    }
    if kind == Kind::Download {
        let s = if p.peers == 1 { "" } else { "s" };
        parts.push(format!("{} peer{s}", p.peers));
    }
    parts.push(match kind {
        Kind::Download => name,
        Kind::Upload => format!("hashing {name}"),
    });
    parts.join("  ")
}

/// `text` cut to `width` characters, the cut marked with `…`.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(bytes_done: u64, rate: u64, peers: u32, paused: bool) -> Progress {
        Progress {
            bytes_done,
            size: 10 << 20,
            peers,
            rate,
            paused,
            reason: None,
        }
    }

    #[test]
    fn messages() {
        assert_eq!(
            message(Kind::Download, "f.iso", &progress(0, 1 << 20, 2, false)),
            "1.00 MiB/s  ETA 10s  2 peers  f.iso"
        );
        assert_eq!(
            message(Kind::Download, "f.iso", &progress(0, 0, 1, false)),
            "…  1 peer  f.iso",
            "no 0 B/s before the first rate sample"
        );
        assert_eq!(
            message(Kind::Download, "f.iso", &progress(5, 0, 0, true)),
            "f.iso: paused: waiting for a holder"
        );
        let full = Progress {
            reason: Some("disk full: /dl/f.part\n".into()),
            ..progress(5, 0, 0, true)
        };
        assert_eq!(
            message(Kind::Download, "f.iso", &full),
            "f.iso: paused: disk full: /dl/f.part "
        );
        assert_eq!(
            message(Kind::Upload, "big.bin", &progress(0, 5 << 20, 0, false)),
            "5.00 MiB/s  ETA 2s  hashing big.bin"
        );
    }

    #[test]
    fn the_line_fits_narrow_and_wide_terminals() {
        let long = "a very long file name that would never fit on one line.iso";
        let text = message(Kind::Download, long, &progress(0, 1 << 20, 3, false));
        let size = 10 << 20;
        for width in [40, 80, 200] {
            // The widest numbers: 1023.99 KiB of 10.00 MiB.
            let (template, fixed) = layout(width, (1 << 20) - 10, size);
            assert!(ProgressStyle::with_template(template).is_ok());
            assert_eq!(template == TEMPLATE, width >= NARROW_BELOW);
            let room = width - fixed - 1;
            let shown = fit(&text, room);
            assert!(fixed + shown.chars().count() < width, "{width}: {shown}");
            if width == 200 {
                assert_eq!(shown, text, "all of it fits at 200 columns");
            } else {
                assert!(shown.ends_with('…'), "{width}: {shown}");
                assert!(
                    shown.starts_with("1.00 MiB"),
                    "the rate comes first: {shown}"
                );
            }
        }
        assert_eq!(layout(40, 0, 0).1, "100% 0 B/0 B ".len());
        assert_eq!(fit("abc", 0), "");
        assert_eq!(fit("abc", 3), "abc");
        assert_eq!(fit("abcd", 3), "ab…");
    }

    #[test]
    fn disabled_view_draws_nothing() {
        let mut view = ProgressView::new(Kind::Download, "f".into(), false);
        view.tick(&progress(1, 1, 1, false));
        assert!(view.bar.is_none());
        let mut view = ProgressView::new(Kind::Upload, "f".into(), true);
        view.tick(&progress(1, 1, 0, false));
        assert!(view.bar.is_none(), "small uploads get no bar");
    }
}
