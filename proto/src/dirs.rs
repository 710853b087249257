//! Where the programs keep their state when not told otherwise, and the
//! name of the control socket inside a daemon's home (SPEC: "The control
//! socket is `DIR/p2pd.sock`"; default homes are the platform data
//! directory of the `directories` crate).

use std::path::{Path, PathBuf};

/// The control socket's file name inside a daemon's home.
pub const SOCKET_FILE: &str = "p2pd.sock";

/// The platform data directory of p2pshare (`~/.local/share/p2pshare` on
/// Linux), if the platform has one.
pub fn data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "p2pshare").map(|d| d.data_dir().to_path_buf())
}

/// The p2pshare config directory (`~/.config/p2pshare` on Linux, honouring
/// `XDG_CONFIG_HOME`), if the platform has one: p2pd's `config.toml`, and
/// its last place to look for tracker_info.txt.
pub fn config_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "p2pshare").map(|d| d.config_dir().to_path_buf())
}

/// A daemon's home when no `--home` or `P2P_HOME` is given.
pub fn default_home() -> Option<PathBuf> {
    data_dir()
}

/// Tracker `n`'s data directory when no `--data-dir` is given.
pub fn default_tracker_dir(n: u32) -> Option<PathBuf> {
    data_dir().map(|d| d.join(format!("tracker-{n}")))
}

/// The control socket of the daemon whose home is `home`.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join(SOCKET_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_lives_in_the_home() {
        assert_eq!(socket_path(Path::new("/h")), PathBuf::from("/h/p2pd.sock"));
        if let (Some(home), Some(t)) = (default_home(), default_tracker_dir(2)) {
            assert_eq!(t, home.join("tracker-2"));
        }
    }
}
