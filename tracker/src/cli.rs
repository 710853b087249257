//! The tracker's command line and `--config FILE`, merged into [`Args`],
//! what `serve` runs with. A flag always wins over the file, the file over
//! the defaults; [`Cli::resolve`] does it without touching the filesystem
//! so the precedence is tested without a process.

use crate::config::{ConfigError, TrackerConfig, MIN_IDLE_TIMEOUT_SECS};
use crate::KeyCommand;
use clap::{Parser, Subcommand};
use p2p_manual::Extra;
use std::path::PathBuf;
use tracker::server;

/// What `tracker --help` and `man tracker` say beyond the options.
pub const EXTRA: Extra = Extra {
    examples: &[
        (
            "tracker tracker_info.txt 1",
            "Run tracker 1 of the list, alone (one line in tracker_info.txt).",
        ),
        (
            "tracker keygen cluster.key",
            "Make the key a cluster of several trackers shares; prints its fingerprint.",
        ),
        (
            "tracker tracker_info.txt 2 --cluster-key cluster.key --data-dir /srv/t2",
            "Run tracker 2 of a cluster.",
        ),
        (
            "tracker --config /etc/p2pshare/tracker-1.toml",
            "Everything from a config file (which may name tracker_info and n).",
        ),
        (
            "tracker fingerprint --data-dir ~/.local/share/p2pshare/tracker-1",
            "Print a single tracker's fingerprint, for tracker_info.txt.",
        ),
        (
            "tracker completions bash > ~/.local/share/bash-completion/completions/tracker",
            "Install tab completion for bash (also zsh, fish, elvish, powershell).",
        ),
        (
            "tracker man --dir ~/.local/share/man/man1",
            "Install this manual page as tracker.1.",
        ),
    ],
    files: &[
        (
            "tracker_info.txt",
            "The tracker list, one IP:PORT per line, optionally followed by the
             cluster's fingerprint; the same file as the daemons'.",
        ),
        (
            "DATA_DIR",
            "The durable state (--data-dir, default ~/.local/share/p2pshare/tracker-N);
             a single tracker keeps its cluster.key there.",
        ),
        (
            "--config FILE",
            "TOML; keys: tracker_info, n, cluster_key, data_dir, snapshot_every,
             max_groups, idle_timeout, max_connections_per_ip, max_connections.
             Relative paths are from its directory; the command line overrides it.",
        ),
    ],
    exit_status: &[
        (
            "0",
            "stopped cleanly (SIGTERM, SIGINT, `quit`), or a command succeeded",
        ),
        (
            "1",
            "could not start or failed (bad config or tracker_info.txt, port in use)",
        ),
        ("2", "usage error (unknown option, bad value)"),
    ],
};

/// The p2pshare tracker: accounts, groups, and who holds which file.
///
/// Runs tracker N of tracker_info.txt on that line's address, in the
/// foreground, logging to stderr. Stops cleanly on SIGTERM, SIGINT, or
/// `quit` typed on stdin.
#[derive(Debug, Parser)]
#[command(
    name = "tracker",
    version,
    after_help = EXTRA.help_text(),
    // clap would show both arguments as optional: they are, only with --config.
    override_usage = "tracker [OPTIONS] <TRACKER_INFO> <N>\n       \
                      tracker --config FILE [OPTIONS] [TRACKER_INFO] [N]\n       \
                      tracker <COMMAND>",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Config file (TOML) with values for the arguments and options below;
    /// those given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// File listing the trackers, one `IP:PORT` (or `IP PORT`) per line,
    /// optionally followed by the cluster's fingerprint.
    #[arg(required_unless_present = "config")]
    pub tracker_info: Option<PathBuf>,
    /// Which tracker of the file this is (1-based line, not counting blank
    /// lines and comments).
    #[arg(required_unless_present = "config")]
    pub n: Option<u32>,
    /// The cluster key (from `tracker keygen FILE`), the same file on every
    /// tracker of the cluster. Required when tracker_info.txt lists more
    /// than one tracker; a single tracker makes `DATA_DIR/cluster.key`.
    #[arg(long, value_name = "FILE")]
    pub cluster_key: Option<PathBuf>,
    /// Directory of the durable state [default: the platform data directory,
    /// `~/.local/share/p2pshare/tracker-<n>`].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..),
          help = format!("Raft log entries between snapshots; older entries are then purged \
                          [default: {}]", tracker::raft::SNAPSHOT_EVERY_ENTRIES))]
    pub snapshot_every: Option<u64>,
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..),
          help = format!("Most groups the tracker holds in all; creating one more is refused \
                          (`invalid_argument`). Keeps `list_groups` far below a frame limit \
                          [default: {}]", tracker::state::Caps::default().groups))]
    pub max_groups: Option<u32>,
    #[arg(long, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(MIN_IDLE_TIMEOUT_SECS..),
          help = format!("Seconds without a frame after which a daemon's connection is \
                          closed (daemons heartbeat every 3 s; at least {MIN_IDLE_TIMEOUT_SECS}) \
                          [default: {}]", server::DEFAULT_IDLE_TIMEOUT.as_secs()))]
    pub idle_timeout: Option<u64>,
    #[arg(long, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..),
          help = format!("Connections held at once from one IP address; more are closed as \
                          soon as they are accepted [default: {}]",
                         server::DEFAULT_MAX_CONNECTIONS_PER_SOURCE))]
    pub max_connections_per_ip: Option<usize>,
    /// Connections held at once in total [default: the open-files limit,
    /// raised to its hard limit at start, less 256 kept for the Raft links
    /// and files, at most 50000].
    #[arg(long, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Key(KeyCommand),
    #[command(flatten)]
    Tool(p2p_manual::Tool),
}

/// What `serve` runs with: the command line over the config file over the
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Always `Some` once resolved (kept optional for `serve`'s check).
    pub tracker_info: Option<PathBuf>,
    pub n: Option<u32>,
    pub cluster_key: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub snapshot_every: u64,
    pub max_groups: u32,
    pub idle_timeout: u64,
    pub max_connections_per_ip: usize,
    pub max_connections: Option<usize>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Action {
    Key(KeyCommand),
    Tool(p2p_manual::Tool),
    Serve(Box<Args>),
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(ConfigError),
    #[error("no {what}: give it on the command line (`tracker <tracker_info.txt> <n>`) or as `{key}` in {file}")]
    Missing {
        what: &'static str,
        key: &'static str,
        file: String,
    },
}

impl Cli {
    /// Read `--config FILE` if given, and say what to do.
    ///
    /// # Errors
    /// The config file is missing, invalid, or the tracker is not named.
    pub fn action(self) -> Result<Action, CliError> {
        match self.command {
            Some(Command::Key(command)) => return Ok(Action::Key(command)),
            Some(Command::Tool(tool)) => return Ok(Action::Tool(tool)),
            None => {}
        }
        let file = match &self.config {
            Some(path) => Some(TrackerConfig::load(path).map_err(CliError::Config)?),
            None => None,
        };
        self.resolve(file).map(|args| Action::Serve(Box::new(args)))
    }

    /// Merge the command line over `file` over the defaults.
    ///
    /// # Errors
    /// Neither names tracker_info.txt or the tracker's number.
    pub fn resolve(&self, file: Option<TrackerConfig>) -> Result<Args, CliError> {
        let file = file.unwrap_or_default();
        let missing = |what, key| CliError::Missing {
            what,
            key,
            file: self
                .config
                .as_ref()
                .map_or("a --config file".to_owned(), |p| p.display().to_string()),
        };
        let tracker_info = self.tracker_info.clone().or(file.tracker_info);
        let tracker_info =
            tracker_info.ok_or_else(|| missing("tracker_info.txt", "tracker_info"))?;
        let n = self
            .n
            .or(file.n)
            .ok_or_else(|| missing("tracker number", "n"))?;
        Ok(Args {
            tracker_info: Some(tracker_info),
            n: Some(n),
            cluster_key: self.cluster_key.clone().or(file.cluster_key),
            data_dir: self.data_dir.clone().or(file.data_dir),
            snapshot_every: self
                .snapshot_every
                .or(file.snapshot_every)
                .unwrap_or(tracker::raft::SNAPSHOT_EVERY_ENTRIES),
            max_groups: self
                .max_groups
                .or(file.max_groups)
                .unwrap_or(tracker::state::Caps::default().groups),
            idle_timeout: self
                .idle_timeout
                .or(file.idle_timeout)
                .unwrap_or(server::DEFAULT_IDLE_TIMEOUT.as_secs()),
            max_connections_per_ip: self
                .max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(server::DEFAULT_MAX_CONNECTIONS_PER_SOURCE),
            max_connections: self.max_connections.or(file.max_connections),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("tracker").chain(args.iter().copied())).unwrap()
    }

    fn file() -> TrackerConfig {
        TrackerConfig::parse(
            "tracker_info = \"info.txt\"\nn = 2\ncluster_key = \"/k/cluster.key\"\n\
             data_dir = \"data\"\nsnapshot_every = 10\nmax_groups = 20\nidle_timeout = 30\n\
             max_connections_per_ip = 40\nmax_connections = 50\n",
            Path::new("/etc/p2p/tracker.toml"),
        )
        .unwrap()
    }

    #[test]
    fn positional_arguments_as_before() {
        let c = cli(&["info.txt", "3", "--snapshot-every", "7"]);
        assert_eq!(c.tracker_info, Some(PathBuf::from("info.txt")));
        assert_eq!((c.n, c.snapshot_every), (Some(3), Some(7)));
        assert!(
            Cli::try_parse_from(["tracker"]).is_err(),
            "arguments required"
        );
        assert!(Cli::try_parse_from(["tracker", "info.txt"]).is_err());
        assert!(Cli::try_parse_from(["tracker", "i", "1", "--idle-timeout", "4"]).is_err());
        assert!(matches!(
            cli(&["keygen", "k"]).command,
            Some(Command::Key(KeyCommand::Keygen { .. }))
        ));
        assert!(matches!(
            cli(&["completions", "zsh"]).command,
            Some(Command::Tool(p2p_manual::Tool::Completions { .. }))
        ));
        assert!(matches!(
            cli(&["man"]).command,
            Some(Command::Tool(p2p_manual::Tool::Man { .. }))
        ));
        assert!(cli(&["--config", "t.toml"]).tracker_info.is_none());
    }

    #[test]
    fn usage_shows_the_arguments_as_required_without_config() {
        let usage = Cli::command().render_usage().to_string();
        assert!(
            usage.contains("tracker [OPTIONS] <TRACKER_INFO> <N>"),
            "{usage}"
        );
        assert!(usage.contains("tracker --config FILE"), "{usage}");
    }

    #[test]
    fn defaults_without_file() {
        let a = cli(&["info.txt", "1"]).resolve(None).unwrap();
        assert_eq!(
            a,
            Args {
                tracker_info: Some("info.txt".into()),
                n: Some(1),
                cluster_key: None,
                data_dir: None,
                snapshot_every: tracker::raft::SNAPSHOT_EVERY_ENTRIES,
                max_groups: tracker::state::Caps::default().groups,
                idle_timeout: server::DEFAULT_IDLE_TIMEOUT.as_secs(),
                max_connections_per_ip: server::DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
                max_connections: None,
            }
        );
    }

    #[test]
    fn file_values_apply() {
        let a = cli(&["--config", "/etc/p2p/tracker.toml"])
            .resolve(Some(file()))
            .unwrap();
        assert_eq!(
            a,
            Args {
                tracker_info: Some("/etc/p2p/info.txt".into()),
                n: Some(2),
                cluster_key: Some("/k/cluster.key".into()),
                data_dir: Some("/etc/p2p/data".into()),
                snapshot_every: 10,
                max_groups: 20,
                idle_timeout: 30,
                max_connections_per_ip: 40,
                max_connections: Some(50),
            }
        );
    }

    #[test]
    fn flags_override_the_file() {
        let a = cli(&[
            "--config",
            "t.toml",
            "other.txt",
            "3",
            "--cluster-key",
            "k2",
            "--data-dir",
            "d2",
            "--snapshot-every",
            "11",
            "--max-groups",
            "21",
            "--idle-timeout",
            "31",
            "--max-connections-per-ip",
            "41",
            "--max-connections",
            "51",
        ])
        .resolve(Some(file()))
        .unwrap();
        assert_eq!(
            a,
            Args {
                tracker_info: Some("other.txt".into()),
                n: Some(3),
                cluster_key: Some("k2".into()),
                data_dir: Some("d2".into()),
                snapshot_every: 11,
                max_groups: 21,
                idle_timeout: 31,
                max_connections_per_ip: 41,
                max_connections: Some(51),
            }
        );
    }

    #[test]
    fn a_file_without_the_tracker_says_which_key() {
        let c = cli(&["--config", "/etc/t.toml"]);
        let e = c
            .resolve(Some(TrackerConfig::default()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tracker_info") && e.contains("/etc/t.toml"),
            "{e}"
        );
        let only_info = TrackerConfig {
            tracker_info: Some("i.txt".into()),
            ..TrackerConfig::default()
        };
        let e = c.resolve(Some(only_info)).unwrap_err().to_string();
        assert!(e.contains("`n`"), "{e}");
    }
}
