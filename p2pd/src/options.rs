//! Command line and configuration: what `p2pd` was asked to do.
//!
//! [`Cli`] is the command line; [`crate::config::Config`] the config file.
//! [`Cli::settings`] merges the two (a flag always wins over the file, the
//! file over the defaults) without touching the filesystem, so the
//! precedence is tested without a process; [`Cli::into_options`] then finds
//! and reads tracker_info.txt. Nothing here touches the network.

use crate::config::{Config, ConfigError};
use clap::Parser;
use p2p_link::Fingerprint;
use p2p_manual::Extra;
pub use p2p_manual::Tool;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The tracker list's file name in the home and the config directory.
pub const TRACKER_INFO_FILE: &str = "tracker_info.txt";
/// What `p2pd --help` and `man p2pd` say beyond the options.
pub const EXTRA: Extra = Extra {
    examples: &[
        (
            "p2pd",
            "Run with the tracker list in ~/.config/p2pshare/tracker_info.txt.",
        ),
        (
            "p2pd --home /tmp/alice --listen 127.0.0.1:0 --tracker-info tracker_info.txt",
            "A second daemon beside your own, e.g. to try sharing on one machine.",
        ),
        (
            "p2pd --listen 0.0.0.0:7000 --advertise 203.0.113.7:7000",
            "Behind a router that forwards port 7000 to this host.",
        ),
        (
            "p2pd --max-upload-rate 2M --max-download-rate 10MiB",
            "Limit the rates (bytes per second; 10M = 10MB = 10MiB).",
        ),
        (
            "p2pd completions bash > ~/.local/share/bash-completion/completions/p2pd",
            "Install tab completion for bash (also zsh, fish, elvish, powershell).",
        ),
        (
            "p2pd man --dir ~/.local/share/man/man1",
            "Install this manual page as p2pd.1.",
        ),
    ],
    files: &[
        (
            "~/.config/p2pshare/config.toml",
            "The config file, read when present (or --config FILE): keys home, listen,
             advertise, tracker_info, max_upload_rate, max_download_rate; relative
             paths are from its directory; flags and P2P_HOME override it.",
        ),
        (
            "HOME/p2pd.sock",
            "The control socket p2pctl talks to. HOME is --home, P2P_HOME, `home` in
             the config file, else ~/.local/share/p2pshare.",
        ),
        (
            "tracker_info.txt",
            "The tracker list, the first found of: --tracker-info FILE, `tracker_info`
             in the config file, HOME/tracker_info.txt, ./tracker_info.txt,
             ~/.config/p2pshare/tracker_info.txt.",
        ),
    ],
    exit_status: &[
        ("0", "stopped cleanly (SIGTERM, SIGINT)"),
        (
            "1",
            "could not start or failed (bad config, no tracker_info.txt, home in use)",
        ),
        ("2", "usage error (unknown option, bad value)"),
    ],
};

/// `p2pd [--config FILE] [--home DIR] [--listen IP:PORT] [--advertise IP:PORT]
/// [--tracker-info FILE] [--max-upload-rate RATE] [--max-download-rate RATE]`,
/// `p2pd completions SHELL`, `p2pd man [--dir DIR]`.
#[derive(Debug, Parser)]
#[command(
    name = "p2pd",
    version,
    about = "p2pshare peer daemon: keeps your login, serves your shares, runs downloads",
    long_about = "p2pshare peer daemon: keeps your login session with the tracker, serves \
                  the files you share to the members of your groups, and runs your \
                  downloads. p2pctl talks to it over HOME/p2pd.sock. Runs in the \
                  foreground and logs to stderr; stops cleanly on SIGTERM or SIGINT.",
    after_help = EXTRA.help_text(),
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Tool>,
    /// Config file (TOML) to read instead of ~/.config/p2pshare/config.toml,
    /// which is read when it exists. Its keys are the options below in
    /// snake_case (`max_upload_rate`); options given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory: control socket, session, shares [default: `home` in
    /// the config file, else ~/.local/share/p2pshare].
    #[arg(long, env = "P2P_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Address the peer listener binds; port 0 picks a free one [default:
    /// 0.0.0.0:0].
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<SocketAddr>,
    /// Peer address announced to the tracker, for NAT or port forwarding
    /// [default: the local address of the tracker connection with the
    /// listener's port].
    #[arg(long, value_name = "IP:PORT")]
    pub advertise: Option<SocketAddr>,
    /// Tracker list, one IP:PORT per line [default: `tracker_info` in the
    /// config file, else the first of HOME/tracker_info.txt,
    /// ./tracker_info.txt, ~/.config/p2pshare/tracker_info.txt].
    #[arg(long, value_name = "FILE")]
    pub tracker_info: Option<PathBuf>,
    /// Upload limit in bytes per second, unit K, M, G optional (powers of
    /// 1024: 10M = 10MB = 10MiB) [default: unlimited].
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_upload_rate: Option<u64>,
    /// Download limit in bytes per second, unit K, M, G optional (powers of
    /// 1024: 10M = 10MB = 10MiB) [default: unlimited].
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_download_rate: Option<u64>,
}

/// The command line and the config file merged; tracker_info.txt not yet
/// looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub home: PathBuf,
    pub listen: SocketAddr,
    pub advertise: Option<SocketAddr>,
    /// Given explicitly (flag or file): must exist. `None`: look in the
    /// usual places ([`tracker_info_candidates`]).
    pub tracker_info: Option<PathBuf>,
    pub max_upload_rate: Option<u64>,
    pub max_download_rate: Option<u64>,
}

/// Everything the daemon runs with, resolved from [`Cli`].
#[derive(Debug, Clone)]
pub struct Options {
    pub home: PathBuf,
    pub listen: SocketAddr,
    pub advertise: Option<SocketAddr>,
    /// Trackers in the order they are tried (failover).
    pub trackers: Vec<SocketAddr>,
    /// The cluster identity named in tracker_info.txt, if any.
    pub fingerprint: Option<Fingerprint>,
    /// Bytes per second; `None` = unlimited.
    pub max_upload_rate: Option<u64>,
    /// Bytes per second; `None` = unlimited.
    pub max_download_rate: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            home: PathBuf::from("."),
            listen: DEFAULT_LISTEN,
            advertise: None,
            trackers: Vec::new(),
            fingerprint: None,
            max_upload_rate: None,
            max_download_rate: None,
        }
    }
}

/// Every interface, a port the system picks.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("no --home given and no platform data directory is known; pass --home DIR")]
    NoHome,
    // Not a `source`: the inner message already says everything, and
    // printing the chain would repeat it.
    #[error("{0}")]
    Config(ConfigError),
    #[error("tracker list: {0}")]
    TrackerInfo(proto::tracker_info::TrackerInfoError),
    #[error(
        "no tracker list found: looked for {looked}. Pass --tracker-info FILE, or copy \
             the tracker_info.txt you were given to {hint}"
    )]
    NoTrackerInfo { looked: String, hint: String },
}

impl Cli {
    /// The config file: `--config FILE` (which must exist), else the default
    /// one if it exists.
    ///
    /// # Errors
    /// The file is missing (`--config` only), unreadable or invalid.
    pub fn config_file(&self) -> Result<Option<Config>, OptionsError> {
        let Some(path) = self.config.clone().or_else(Config::default_path) else {
            return Ok(None);
        };
        let config = Config::load(&path).map_err(OptionsError::Config)?;
        // Which file was read is the first question when a setting surprises.
        tracing::info!("config file {}", path.display());
        Ok(Some(config))
    }

    /// Merge the command line over `file` over the defaults (`default_home`
    /// when neither names a home).
    ///
    /// # Errors
    /// No home anywhere.
    pub fn settings(
        &self,
        file: Option<Config>,
        default_home: Option<PathBuf>,
    ) -> Result<Settings, OptionsError> {
        let file = file.unwrap_or_default();
        let home = self
            .home
            .clone()
            .or(file.home)
            .or(default_home)
            .ok_or(OptionsError::NoHome)?;
        Ok(Settings {
            home,
            listen: self.listen.or(file.listen).unwrap_or(DEFAULT_LISTEN),
            advertise: self.advertise.or(file.advertise),
            tracker_info: self.tracker_info.clone().or(file.tracker_info),
            max_upload_rate: self.max_upload_rate.or(file.max_upload_rate),
            max_download_rate: self.max_download_rate.or(file.max_download_rate),
        })
    }

    /// Read the config file, merge, find and read the tracker list.
    ///
    /// # Errors
    /// A bad config file, no home directory, no tracker list where it was
    /// looked for, or one that is unreadable, malformed or empty.
    pub fn into_options(self) -> Result<Options, OptionsError> {
        let file = self.config_file()?;
        let settings = self.settings(file, proto::dirs::default_home())?;
        let info_path = match &settings.tracker_info {
            Some(path) => path.clone(),
            None => {
                let cwd = std::env::current_dir().unwrap_or_default();
                let config_dir = proto::dirs::config_dir();
                let candidates =
                    tracker_info_candidates(&settings.home, config_dir.as_deref(), &cwd);
                find_first(&candidates, config_dir.as_deref())?
            }
        };
        let info = proto::tracker_info::read(&info_path).map_err(OptionsError::TrackerInfo)?;
        tracing::info!(
            "tracker list {} ({} tracker(s))",
            info_path.display(),
            info.trackers.len()
        );
        // tracker_info checked its form already.
        let fingerprint = info.fingerprint.and_then(|f| f.parse().ok());
        Ok(Options {
            home: settings.home,
            listen: settings.listen,
            advertise: settings.advertise,
            trackers: info.trackers,
            fingerprint,
            max_upload_rate: settings.max_upload_rate,
            max_download_rate: settings.max_download_rate,
        })
    }
}

/// Where tracker_info.txt is looked for when neither the command line nor
/// the config file names it, in order: the home, the working directory (the
/// two SPEC names, in its order), then the config directory as the last
/// fallback, so a file in either of SPEC's places always wins.
pub fn tracker_info_candidates(home: &Path, config_dir: Option<&Path>, cwd: &Path) -> Vec<PathBuf> {
    let mut places = vec![home.join(TRACKER_INFO_FILE), cwd.join(TRACKER_INFO_FILE)];
    places.extend(config_dir.map(|d| d.join(TRACKER_INFO_FILE)));
    places
}

/// The first of `candidates` that exists, or an error listing them all.
fn find_first(candidates: &[PathBuf], config_dir: Option<&Path>) -> Result<PathBuf, OptionsError> {
    if let Some(found) = candidates.iter().find(|p| p.exists()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(OptionsError::NoTrackerInfo {
        looked: looked.join(", "),
        // The config directory outlives a `--home` chosen for one run.
        hint: match config_dir {
            Some(dir) => dir.join(TRACKER_INFO_FILE),
            None => candidates.first().cloned().unwrap_or_default(),
        }
        .display()
        .to_string(),
    })
}

/// Parse a rate for clap: bytes per second in [`proto::units::parse_bytes`]'s
/// forms (`500K`, `10M`, `10MB`, `10MiB`: powers of 1024).
///
/// # Errors
/// A sentence naming the bad value.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    proto::units::parse_bytes(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("1500"), Ok(1500));
        assert_eq!(parse_rate("1K"), Ok(1024));
        assert_eq!(parse_rate("1k"), Ok(1024));
        assert_eq!(parse_rate("10M"), Ok(10 << 20));
        assert_eq!(parse_rate("2G"), Ok(2 << 30));
        assert_eq!(parse_rate("10MB"), Ok(10 << 20));
        assert_eq!(parse_rate("10MiB"), Ok(10 << 20));
        for bad in [
            "",
            "K",
            "1.5M",
            "-1",
            "1P",
            "12KBs",
            "abc",
            "99999999999999999999G",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
        assert!(parse_rate("17179869184G").is_err(), "overflow");
    }

    #[test]
    fn cli_parses_spec_flags() {
        let cli = Cli::try_parse_from([
            "p2pd",
            "--home",
            "/tmp/h",
            "--listen",
            "127.0.0.1:0",
            "--max-upload-rate",
            "1M",
        ])
        .unwrap();
        assert_eq!(cli.max_upload_rate, Some(1 << 20));
        assert!(cli.command.is_none());
        assert!(Cli::try_parse_from(["p2pd", "--max-download-rate", "x"]).is_err());
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("p2pd").chain(args.iter().copied())).unwrap()
    }

    fn file() -> Config {
        Config::parse(
            "home = \"/f/home\"\nlisten = \"127.0.0.1:7000\"\nadvertise = \"192.0.2.1:7000\"\n\
             tracker_info = \"/f/info.txt\"\nmax_upload_rate = \"1M\"\nmax_download_rate = \"2M\"\n",
            Path::new("/f/config.toml"),
        )
        .unwrap()
    }

    #[test]
    fn file_values_apply_when_no_flag_is_given() {
        let s = cli(&[])
            .settings(Some(file()), Some("/default".into()))
            .unwrap();
        assert_eq!(
            s,
            Settings {
                home: "/f/home".into(),
                listen: "127.0.0.1:7000".parse().unwrap(),
                advertise: Some("192.0.2.1:7000".parse().unwrap()),
                tracker_info: Some("/f/info.txt".into()),
                max_upload_rate: Some(1 << 20),
                max_download_rate: Some(2 << 20),
            }
        );
    }

    #[test]
    fn every_flag_overrides_the_file() {
        let s = cli(&[
            "--home",
            "/flag/home",
            "--listen",
            "127.0.0.1:9000",
            "--advertise",
            "192.0.2.9:9000",
            "--tracker-info",
            "/flag/info.txt",
            "--max-upload-rate",
            "3K",
            "--max-download-rate",
            "4K",
        ])
        .settings(Some(file()), Some("/default".into()))
        .unwrap();
        assert_eq!(
            s,
            Settings {
                home: "/flag/home".into(),
                listen: "127.0.0.1:9000".parse().unwrap(),
                advertise: Some("192.0.2.9:9000".parse().unwrap()),
                tracker_info: Some("/flag/info.txt".into()),
                max_upload_rate: Some(3 << 10),
                max_download_rate: Some(4 << 10),
            }
        );
    }

    #[test]
    fn defaults_without_file_or_flags() {
        let s = cli(&[]).settings(None, Some("/default".into())).unwrap();
        assert_eq!(s.home, PathBuf::from("/default"));
        assert_eq!(s.listen, DEFAULT_LISTEN);
        assert_eq!((s.advertise, s.tracker_info.clone()), (None, None));
        assert_eq!((s.max_upload_rate, s.max_download_rate), (None, None));
        assert!(matches!(
            cli(&[]).settings(None, None),
            Err(OptionsError::NoHome)
        ));
    }

    #[test]
    fn subcommands_do_not_change_daemon_parsing() {
        assert!(matches!(
            cli(&["completions", "bash"]).command,
            Some(Tool::Completions { .. })
        ));
        assert!(matches!(
            cli(&["man"]).command,
            Some(Tool::Man { dir: None })
        ));
        // An option and a subcommand together are a usage error, not a daemon.
        assert!(Cli::try_parse_from(["p2pd", "--home", "/h", "man"]).is_err());
        let c = cli(&["--home", "man"]);
        assert_eq!(c.home, Some(PathBuf::from("man")));
        assert!(c.command.is_none());
    }

    #[test]
    fn the_docs_show_the_real_error_messages() {
        let doc = include_str!("../../docs/configuration.md");
        let alice = Path::new("/home/alice");
        let config_dir = alice.join(".config/p2pshare");
        let candidates = tracker_info_candidates(
            &alice.join(".local/share/p2pshare"),
            Some(&config_dir),
            alice,
        );
        let e = find_first(&candidates, Some(&config_dir)).unwrap_err();
        assert!(
            doc.contains(&format!("error: {e}\n")),
            "docs/configuration.md: {e}"
        );
        let e = Config::parse(
            "listen = \"0.0.0.0:7000\"\n\nmax_rate = \"1M\"\n",
            &config_dir.join("config.toml"),
        )
        .unwrap_err();
        assert!(
            doc.contains(&format!("error: {e}\n")),
            "docs/configuration.md: {e}"
        );
    }

    #[test]
    fn tracker_info_lookup_order_and_error() {
        let dir = tempfile::tempdir().unwrap();
        let (home, conf, cwd) = (
            dir.path().join("h"),
            dir.path().join("c"),
            dir.path().join("w"),
        );
        let candidates = tracker_info_candidates(&home, Some(&conf), &cwd);
        assert_eq!(
            candidates,
            vec![
                home.join(TRACKER_INFO_FILE),
                cwd.join(TRACKER_INFO_FILE),
                conf.join(TRACKER_INFO_FILE)
            ]
        );
        let e = find_first(&candidates, Some(&conf))
            .unwrap_err()
            .to_string();
        for place in &candidates {
            assert!(e.contains(&place.display().to_string()), "{e}");
        }
        assert!(e.contains("--tracker-info FILE"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        for d in [&home, &conf, &cwd] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(conf.join(TRACKER_INFO_FILE), "127.0.0.1:1\n").unwrap();
        assert_eq!(
            find_first(&candidates, None).unwrap(),
            conf.join(TRACKER_INFO_FILE)
        );
        std::fs::write(cwd.join(TRACKER_INFO_FILE), "127.0.0.1:1\n").unwrap();
        assert_eq!(
            find_first(&candidates, None).unwrap(),
            cwd.join(TRACKER_INFO_FILE)
        );
        std::fs::write(home.join(TRACKER_INFO_FILE), "127.0.0.1:1\n").unwrap();
        assert_eq!(
            find_first(&candidates, None).unwrap(),
            home.join(TRACKER_INFO_FILE)
        );
    }
}
