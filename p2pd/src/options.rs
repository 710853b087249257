//! Command line and configuration: what `p2pd` was asked to do.
//!
//! Owns the parsing of SPEC's flags into [`Options`] (rates with K/M/G
//! suffixes, the tracker info file). Nothing here touches the network; the
//! swarm engine reads its rate limits from [`Options`].

use clap::Parser;
use p2p_link::Fingerprint;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `p2pd [--home DIR] [--listen IP:PORT] [--advertise IP:PORT] [--tracker-info FILE]
/// [--max-upload-rate RATE] [--max-download-rate RATE]`
#[derive(Debug, Parser)]
#[command(
    name = "p2pd",
    version,
    about = "p2pshare peer daemon (runs in the foreground)"
)]
pub struct Cli {
    /// State directory (control socket, session, shares). Default: the platform data directory.
    #[arg(long, env = "P2P_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Address the peer listener binds.
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:0")]
    pub listen: SocketAddr,
    /// Peer address announced to the tracker. Default: the local address of
    /// the tracker connection with the listener's port.
    #[arg(long, value_name = "IP:PORT")]
    pub advertise: Option<SocketAddr>,
    /// Tracker list. Default: HOME/tracker_info.txt if present, else ./tracker_info.txt.
    #[arg(long, value_name = "FILE")]
    pub tracker_info: Option<PathBuf>,
    /// Upload limit in bytes per second, optional unit K, M or G (powers of 1024; 10M = 10MB = 10MiB).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_upload_rate: Option<u64>,
    /// Download limit in bytes per second, optional unit K, M or G (powers of 1024; 10M = 10MB = 10MiB).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
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
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            advertise: None,
            trackers: Vec::new(),
            fingerprint: None,
            max_upload_rate: None,
            max_download_rate: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("no --home given and no platform data directory is known; pass --home DIR")]
    NoHome,
    #[error("tracker info file: {0}")]
    TrackerInfo(#[from] proto::tracker_info::TrackerInfoError),
}

impl Cli {
    /// Resolve defaults (home, tracker info file) and read the tracker list.
    ///
    /// # Errors
    /// No home directory can be determined, or the tracker info file is
    /// missing, unreadable, malformed or empty.
    pub fn into_options(self) -> Result<Options, OptionsError> {
        let home = match self.home {
            Some(h) => h,
            None => proto::dirs::default_home().ok_or(OptionsError::NoHome)?,
        };
        let info = match self.tracker_info {
            Some(p) => p,
            None => {
                let in_home = home.join("tracker_info.txt");
                if in_home.exists() {
                    in_home
                } else {
                    PathBuf::from("tracker_info.txt")
                }
            }
        };
        let info = proto::tracker_info::read(&info)?;
        // tracker_info checked its form already.
        let fingerprint = info.fingerprint.and_then(|f| f.parse().ok());
        Ok(Options {
            home,
            listen: self.listen,
            advertise: self.advertise,
            trackers: info.trackers,
            fingerprint,
            max_upload_rate: self.max_upload_rate,
            max_download_rate: self.max_download_rate,
        })
    }
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
        assert!(Cli::try_parse_from(["p2pd", "--max-download-rate", "x"]).is_err());
    }
}
