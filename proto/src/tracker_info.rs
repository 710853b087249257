//! `tracker_info.txt`: the addresses of every tracker of the cluster, as
//! SPEC describes it. The one parser of the file: the tracker reads it to
//! know its own address and its peers, p2pd to know whom to connect to.
//!
//! One tracker per line, `IP:PORT` or `IP PORT`; blank lines and `#`
//! comments are ignored. Tracker `n` is the `n`-th address (1-based).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerInfoError {
    #[error("line {line}: {text:?} is not IP:PORT or IP PORT")]
    BadLine { line: usize, text: String },
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

/// Parses the file's text into addresses, in order.
///
/// # Errors
/// [`TrackerInfoError::BadLine`] naming the first bad line, or
/// [`TrackerInfoError::Empty`].
pub fn parse(text: &str) -> Result<Vec<SocketAddr>, TrackerInfoError> {
    let mut addrs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = || TrackerInfoError::BadLine {
            line: i + 1,
            text: line.chars().take(80).collect(),
        };
        let addr = match line.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                let mut parts = line.split_whitespace();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(ip), Some(port), None) => {
                        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
                        let port: u16 = port.parse().map_err(|_| bad())?;
                        SocketAddr::new(ip, port)
                    }
                    _ => return Err(bad()),
                }
            }
        };
        addrs.push(addr);
    }
    if addrs.is_empty() {
        return Err(TrackerInfoError::Empty);
    }
    Ok(addrs)
}

/// Reads and parses the file at `path`.
///
/// # Errors
/// [`TrackerInfoError::Read`], or a parse error wrapped in
/// [`TrackerInfoError::In`] so the message names the file.
pub fn read(path: &Path) -> Result<Vec<SocketAddr>, TrackerInfoError> {
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
        let addrs = parse(text).unwrap();
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
        assert!(parse("1.2.3.4 5 6").is_err());
        assert!(parse("1.2.3.4:99999").is_err());
        assert_eq!(parse("# nothing\n\n"), Err(TrackerInfoError::Empty));
        let addrs = parse("127.0.0.1:1").unwrap();
        assert!(nth(&addrs, 0).is_err());
        assert!(nth(&addrs, 2).is_err());
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
        assert_eq!(read(&path).unwrap(), vec!["127.0.0.1:1".parse().unwrap()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
