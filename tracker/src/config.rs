//! `tracker --config FILE`: the long options, in TOML.
//!
//! Keys are the long options in snake_case (`max_connections_per_ip`), plus
//! `tracker_info` and `n` for the two arguments. Every value is checked
//! here, with the file, the line and the key in the message, so a typo
//! stops the tracker at start instead of being ignored.

use proto::config_file::{path_in_file, toml_error_line, user_home};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Smallest `--idle-timeout`: daemons heartbeat every 3 s.
pub const MIN_IDLE_TIMEOUT_SECS: u64 = 5;

/// What a config file sets; `None` = not in the file. Paths are already
/// made absolute against the file's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerConfig {
    pub tracker_info: Option<PathBuf>,
    pub n: Option<u32>,
    pub cluster_key: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub snapshot_every: Option<u64>,
    pub max_groups: Option<u32>,
    pub idle_timeout: Option<u64>,
    pub max_connections_per_ip: Option<usize>,
    pub max_connections: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl TrackerConfig {
    /// Read and check the config file at `path`.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML, has a key the tracker does
    /// not know, or a value out of range.
    pub fn load(path: &Path) -> Result<TrackerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        TrackerConfig::parse(&text, path)
    }

    /// Check `text`, the contents of `path` (named in errors; relative
    /// paths in the file are taken from its directory).
    ///
    /// # Errors
    /// As [`TrackerConfig::load`].
    pub fn parse(text: &str, path: &Path) -> Result<TrackerConfig, ConfigError> {
        TrackerConfig::parse_with_home(text, path, user_home().as_deref())
    }

    /// [`TrackerConfig::parse`] with `~` meaning `home`.
    fn parse_with_home(
        text: &str,
        path: &Path,
        home: Option<&Path>,
    ) -> Result<TrackerConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut c: TrackerConfig =
            toml::from_str(text).map_err(|e| invalid(toml_error_line(&e, text)))?;
        // The same lower bounds as the flags'.
        let too_small = |key: &str, value: Option<u64>, min: u64| match value {
            Some(v) if v < min => Err(invalid(format!("{key} = {v}: must be at least {min}"))),
            _ => Ok(()),
        };
        too_small("n", c.n.map(u64::from), 1)?;
        too_small("snapshot_every", c.snapshot_every, 1)?;
        too_small("max_groups", c.max_groups.map(u64::from), 1)?;
        too_small("idle_timeout", c.idle_timeout, MIN_IDLE_TIMEOUT_SECS)?;
        too_small(
            "max_connections_per_ip",
            c.max_connections_per_ip.map(|v| v as u64),
            1,
        )?;
        too_small("max_connections", c.max_connections.map(|v| v as u64), 1)?;
        for p in [&mut c.tracker_info, &mut c.cluster_key, &mut c.data_dir] {
            *p = p.take().map(|p| path_in_file(path, p, home));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TrackerConfig, ConfigError> {
        TrackerConfig::parse(text, Path::new("/etc/p2p/tracker.toml"))
    }

    use proto::config_file::known_keys;

    /// The ```toml blocks of docs/configuration.md whose first line
    /// contains `marker`.
    fn doc_examples(marker: &str) -> Vec<String> {
        proto::config_file::toml_blocks(include_str!("../../docs/configuration.md"), marker)
    }

    #[test]
    fn the_documented_example_parses_and_every_key_is_documented() {
        let examples = doc_examples("tracker-1.toml");
        assert_eq!(examples.len(), 1, "one tracker example in the docs");
        let c =
            TrackerConfig::parse(&examples[0], Path::new("/etc/p2pshare/tracker-1.toml")).unwrap();
        assert_eq!(
            c.tracker_info,
            Some(PathBuf::from("/etc/p2pshare/tracker_info.txt"))
        );
        assert_eq!(c.n, Some(1));
        assert_eq!(
            c.cluster_key,
            Some(PathBuf::from("/etc/p2pshare/cluster.key"))
        );
        let e = parse("zzz = 1").unwrap_err().to_string();
        let doc = include_str!("../../docs/configuration.md");
        let keys = known_keys(&e);
        assert_eq!(keys.len(), 9, "{e}");
        for key in keys {
            assert!(
                doc.contains(&format!("| `{key}` |")),
                "{key} not in the docs' table"
            );
        }
    }

    #[test]
    fn relative_paths_are_from_the_file() {
        let c = parse("tracker_info = \"info.txt\"\ncluster_key = \"/abs/k\"\ndata_dir = \"d\"")
            .unwrap();
        assert_eq!(c.tracker_info, Some(PathBuf::from("/etc/p2p/info.txt")));
        assert_eq!(c.cluster_key, Some(PathBuf::from("/abs/k")));
        assert_eq!(c.data_dir, Some(PathBuf::from("/etc/p2p/d")));
        assert_eq!(parse("").unwrap(), TrackerConfig::default());
    }

    #[test]
    fn a_tilde_is_the_users_home() {
        let c = TrackerConfig::parse_with_home(
            "data_dir = \"~/t1\"",
            Path::new("/etc/p2p/tracker.toml"),
            Some(Path::new("/home/u")),
        )
        .unwrap();
        assert_eq!(c.data_dir, Some(PathBuf::from("/home/u/t1")));
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let e = parse("n = 1\nmax_conections = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/p2p/tracker.toml"), "{e}");
        assert!(
            e.contains("`max_conections`") && e.contains("line 2"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
        // The flag's spelling is not a key: one spelling per setting.
        let e = parse("data-dir = \"d\"").unwrap_err().to_string();
        assert!(e.contains("`data-dir`"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("idle_timeout = 2").unwrap_err().to_string();
        assert!(
            e.contains("idle_timeout = 2") && e.contains("at least 5"),
            "{e}"
        );
        let e = parse("max_groups = -1").unwrap_err().to_string();
        assert!(e.contains("max_groups = -1"), "{e}");
        let e = parse("snapshot_every = \"often\"").unwrap_err().to_string();
        assert!(e.contains("snapshot_every"), "{e}");
        let e = parse("n = 0").unwrap_err().to_string();
        assert!(e.contains("n = 0"), "{e}");
    }
}
