//! `tracker_info.txt`: the addresses of every tracker of the cluster, as
//! SPEC describes it. The one parser of the file: the tracker reads it to
//! know its own address and its peers, p2pd to know whom to connect to.
//!
//! One tracker per line, `IP:PORT` or `IP PORT`, optionally followed by the
//! cluster's fingerprint (the same on every line that has one); blank lines
//! and `#` comments are ignored. Tracker `n` is the `n`-th address
//! (1-based).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerInfoError {
    #[error("line {line}: {text:?} is not IP:PORT or IP PORT (optionally followed by the cluster's fingerprint)")]
    BadLine { line: usize, text: String },
    #[error("line {line}: {text:?} is not a fingerprint (expected sha256: and 64 hex digits, as `tracker fingerprint` prints)")]
    BadFingerprint { line: usize, text: String },
    #[error("line {line}: a different fingerprint than on an earlier line; one cluster has one fingerprint")]
    FingerprintsDiffer { line: usize },
    #[error("no tracker addresses listed")]
    Empty,
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    In {
        path: PathBuf,
        source: Box<TrackerInfoError>,
    },
    #[error("tracker number {n} does not exist: {count} tracker(s) listed (numbers start at 1)")]
    NoSuchTracker { n: u32, count: usize },
}

/// What the file says: the trackers in order, and the cluster's
/// fingerprint if any line carries one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerInfo {
    pub trackers: Vec<SocketAddr>,
    /// `sha256:` and 64 lowercase hex digits.
    pub fingerprint: Option<String>,
}

/// A fingerprint as `tracker keygen` prints it, lowercased; `None` if the
/// word is not one.
fn fingerprint(word: &str) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    let digits = lower.strip_prefix("sha256:")?;
    (digits.len() == 64 && digits.bytes().all(|b| b.is_ascii_hexdigit())).then_some(lower)
}

/// Parses the file's text.
///
/// # Errors
/// [`TrackerInfoError::BadLine`] (or a fingerprint error) naming the first
/// bad line, or [`TrackerInfoError::Empty`].
pub fn parse(text: &str) -> Result<TrackerInfo, TrackerInfoError> {
    let mut info = TrackerInfo {
        trackers: Vec::new(),
        fingerprint: None,
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = || TrackerInfoError::BadLine {
            line: i + 1,
            text: line.chars().take(80).collect(),
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let (addr, rest) = match words.first().and_then(|w| w.parse::<SocketAddr>().ok()) {
            Some(addr) => (addr, &words[1..]),
            None => match words.as_slice() {
                [ip, port, rest @ ..] => {
                    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
                    let port: u16 = port.parse().map_err(|_| bad())?;
                    (SocketAddr::new(ip, port), rest)
                }
                _ => return Err(bad()),
            },
        };
        match rest {
            [] => {}
            [word] => {
                let fp = fingerprint(word).ok_or_else(|| TrackerInfoError::BadFingerprint {
                    line: i + 1,
                    text: word.chars().take(80).collect(),
                })?;
                match &info.fingerprint {
                    Some(earlier) if *earlier != fp => {
                        return Err(TrackerInfoError::FingerprintsDiffer { line: i + 1 })
                    }
                    _ => info.fingerprint = Some(fp),
                }
            }
            _ => return Err(bad()),
        }
        info.trackers.push(addr);
    }
    if info.trackers.is_empty() {
        return Err(TrackerInfoError::Empty);
    }
    Ok(info)
}

/// Reads and parses the file at `path`.
///
/// # Errors
/// [`TrackerInfoError::Read`], or a parse error wrapped in
/// [`TrackerInfoError::In`] so the message names the file.
pub fn read(path: &Path) -> Result<TrackerInfo, TrackerInfoError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrackerInfoError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    parse(&text).map_err(|e| TrackerInfoError::In {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

/// The address of tracker `n` (1-based).
///
/// # Errors
/// [`TrackerInfoError::NoSuchTracker`] when `n` is 0 or past the end.
pub fn nth(addrs: &[SocketAddr], n: u32) -> Result<SocketAddr, TrackerInfoError> {
    let index = usize::try_from(n).ok().and_then(|n| n.checked_sub(1));
    index
        .and_then(|i| addrs.get(i).copied())
        .ok_or(TrackerInfoError::NoSuchTracker {
            n,
            count: addrs.len(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_comments_and_blank_lines() {
        let text = "# cluster\n\n127.0.0.1:4000\n  10.0.0.2 4001  # second\n[::1]:4002\n::1 4003\n";
        let addrs = parse(text).unwrap().trackers;
        let want: Vec<SocketAddr> = [
            "127.0.0.1:4000",
            "10.0.0.2:4001",
            "[::1]:4002",
            "[::1]:4003",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(addrs, want);
        assert_eq!(nth(&addrs, 2).unwrap(), want[1]);
    }

    #[test]
    fn bad_lines_and_numbers_are_named() {
        assert_eq!(
            parse("127.0.0.1:1\nlocalhost:80\n"),
            Err(TrackerInfoError::BadLine {
                line: 2,
                text: "localhost:80".into()
            })
        );
        assert!(parse("1.2.3.4 5 6 7").is_err());
        assert!(matches!(
            parse("1.2.3.4 5 6"),
            Err(TrackerInfoError::BadFingerprint { line: 1, .. })
        ));
        assert!(parse("1.2.3.4:99999").is_err());
        assert_eq!(parse("# nothing\n\n"), Err(TrackerInfoError::Empty));
        let addrs = parse("127.0.0.1:1").unwrap().trackers;
        assert!(nth(&addrs, 0).is_err());
        assert!(nth(&addrs, 2).is_err());
    }

    #[test]
    fn a_fingerprint_may_follow_each_address() {
        let fp = format!("sha256:{}", "ab".repeat(32));
        let text = format!(
            "127.0.0.1:1 {fp}\n10.0.0.2 4001 {}\n::1 4003\n",
            fp.to_uppercase()
        );
        let info = parse(&text).unwrap();
        assert_eq!(info.trackers.len(), 3);
        assert_eq!(info.fingerprint, Some(fp.clone()));
        assert_eq!(parse("127.0.0.1:1").unwrap().fingerprint, None);
        let other = format!("sha256:{}", "cd".repeat(32));
        assert_eq!(
            parse(&format!("127.0.0.1:1 {fp}\n127.0.0.1:2 {other}\n")),
            Err(TrackerInfoError::FingerprintsDiffer { line: 2 })
        );
        for bad in ["sha256:ab", "md5:00", "sha256:zz"] {
            assert!(matches!(
                parse(&format!("127.0.0.1:1 {bad}")),
                Err(TrackerInfoError::BadFingerprint { .. })
            ));
        }
    }

    #[test]
    fn read_names_the_file() {
        let dir = std::env::temp_dir().join(format!("ti-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tracker_info.txt");
        let e = read(&path).unwrap_err();
        assert!(e.to_string().starts_with("cannot read "), "{e}");
        std::fs::write(&path, "127.0.0.1:1\nnope\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("tracker_info.txt: line 2"), "{e}");
        std::fs::write(&path, "127.0.0.1:1\n").unwrap();
        assert_eq!(
            read(&path).unwrap().trackers,
            vec!["127.0.0.1:1".parse().unwrap()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
