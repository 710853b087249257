//! p2pd's config file: `$XDG_CONFIG_HOME/p2pshare/config.toml`, or the
//! file given with `--config`.
//!
//! Keys are the long flags' names in snake_case (`max_upload_rate` for
//! `--max-upload-rate`), one spelling only so that two lines can never set
//! the same thing. Every value is checked here, so a bad
//! file stops the daemon at start with its path, the line and the key
//! rather than later with a value nobody can trace back.

use proto::config_file::{path_in_file, toml_error_line, user_home};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The config file's name inside the config directory.
pub const CONFIG_FILE: &str = "config.toml";

/// What a config file sets; `None` = not in the file. Paths are already
/// made absolute against the file's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub home: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub advertise: Option<SocketAddr>,
    pub tracker_info: Option<PathBuf>,
    pub max_upload_rate: Option<u64>,
    pub max_download_rate: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config file {path}: {key} = {value}: {reason}")]
    Value {
        path: PathBuf,
        key: &'static str,
        value: String,
        reason: String,
    },
}

/// The file as written: addresses and rates still text, so that a bad
/// value is reported with its key (serde's own messages do not name it).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    home: Option<PathBuf>,
    listen: Option<String>,
    advertise: Option<String>,
    tracker_info: Option<PathBuf>,
    max_upload_rate: Option<RawRate>,
    max_download_rate: Option<RawRate>,
}

/// `max_upload_rate = 1048576` or `max_upload_rate = "1M"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawRate {
    Number(u64),
    Text(String),
}

impl Config {
    /// Read and check the config file at `path`.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML, has a key p2pd does not know,
    /// or a value of the wrong form.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Config::parse(&text, path)
    }

    /// The default file's path, if it exists: `CONFIG_DIR/config.toml`.
    pub fn default_path() -> Option<PathBuf> {
        proto::dirs::config_dir()
            .map(|d| d.join(CONFIG_FILE))
            .filter(|p| p.exists())
    }

    /// Check `text`, the contents of `path` (named in errors; relative
    /// paths in the file are taken from its directory).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse_with_home(text, path, user_home().as_deref())
    }

    /// [`Config::parse`] with `~` meaning `home`.
    fn parse_with_home(
        text: &str,
        path: &Path,
        home: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: toml_error_line(&e, text),
        })?;
        let bad = |key: &'static str, value: &str, reason: &str| ConfigError::Value {
            path: path.to_path_buf(),
            key,
            value: format!("{value:?}"),
            reason: reason.to_owned(),
        };
        let addr = |key: &'static str, value: Option<String>| {
            value
                .map(|v| {
                    v.trim()
                        .parse::<SocketAddr>()
                        .map_err(|_| bad(key, &v, "expected \"IP:PORT\", e.g. \"0.0.0.0:7000\""))
                })
                .transpose()
        };
        let rate = |key: &'static str, value: Option<RawRate>| match value {
            None => Ok(None),
            Some(RawRate::Number(n)) => Ok(Some(n)),
            Some(RawRate::Text(t)) => proto::units::parse_bytes(&t)
                .map(Some)
                .map_err(|reason| bad(key, &t, &reason)),
        };
        Ok(Config {
            home: raw.home.map(|p| path_in_file(path, p, home)),
            listen: addr("listen", raw.listen)?,
            advertise: addr("advertise", raw.advertise)?,
            tracker_info: raw.tracker_info.map(|p| path_in_file(path, p, home)),
            max_upload_rate: rate("max_upload_rate", raw.max_upload_rate)?,
            max_download_rate: rate("max_download_rate", raw.max_download_rate)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/p2p/config.toml"))
    }

    use proto::config_file::known_keys;

    /// The ```toml blocks of docs/configuration.md whose first line
    /// contains `marker`.
    fn doc_examples(marker: &str) -> Vec<String> {
        proto::config_file::toml_blocks(include_str!("../../docs/configuration.md"), marker)
    }

    #[test]
    fn the_documented_example_parses_and_every_key_is_documented() {
        let examples = doc_examples("config.toml");
        assert_eq!(examples.len(), 1, "one p2pd example in the docs");
        let c = Config::parse(&examples[0], Path::new("/u/.config/p2pshare/config.toml")).unwrap();
        assert_eq!(
            c.tracker_info,
            Some(PathBuf::from("/u/.config/p2pshare/tracker_info.txt"))
        );
        assert_eq!(c.listen, Some("0.0.0.0:7000".parse().unwrap()));
        assert_eq!(c.max_upload_rate, Some(2 << 20));
        assert_eq!(c.max_download_rate, Some(10 << 20));
        let e = parse("zzz = 1").unwrap_err().to_string();
        let doc = include_str!("../../docs/configuration.md");
        let keys = known_keys(&e);
        assert_eq!(keys.len(), 6, "{e}");
        for key in keys {
            assert!(
                doc.contains(&format!("| `{key}` |")),
                "{key} not in the docs' table"
            );
        }
    }

    #[test]
    fn every_key() {
        let c = parse(
            "home = \"state\"\nlisten = \"0.0.0.0:7000\"\nadvertise = \"192.0.2.1:7000\"\n\
             tracker_info = \"/srv/tracker_info.txt\"\nmax_upload_rate = \"1M\"\n\
             max_download_rate = 2048\n",
        )
        .unwrap();
        assert_eq!(
            c,
            Config {
                home: Some(PathBuf::from("/etc/p2p/state")),
                listen: Some("0.0.0.0:7000".parse().unwrap()),
                advertise: Some("192.0.2.1:7000".parse().unwrap()),
                tracker_info: Some(PathBuf::from("/srv/tracker_info.txt")),
                max_upload_rate: Some(1 << 20),
                max_download_rate: Some(2048),
            }
        );
        assert_eq!(parse("# nothing\n").unwrap(), Config::default());
    }

    #[test]
    fn a_tilde_is_the_users_home() {
        let text = "home = \"~/p2p\"\ntracker_info = \"~user/t.txt\"";
        let c = Config::parse_with_home(
            text,
            Path::new("/etc/p2p/config.toml"),
            Some(Path::new("/home/u")),
        )
        .unwrap();
        assert_eq!(c.home, Some(PathBuf::from("/home/u/p2p")));
        // Only `~` alone is the home; `~user` is a relative name.
        assert_eq!(c.tracker_info, Some(PathBuf::from("/etc/p2p/~user/t.txt")));
    }

    #[test]
    fn rates_in_every_unit_form() {
        for form in ["10M", "10MB", "10MiB", "10 MiB/s"] {
            let c = parse(&format!("max_upload_rate = {form:?}")).unwrap();
            assert_eq!(c.max_upload_rate, Some(10 << 20), "{form}");
        }
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let e = parse("listen = \"0.0.0.0:0\"\nmax_rate = \"1M\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/p2p/config.toml"), "{e}");
        assert!(e.contains("max_rate"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = parse("max-upload-rate = \"1M\"").unwrap_err().to_string();
        assert!(
            e.contains("`max-upload-rate`") && e.contains("`max_upload_rate`"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn bad_values_name_key_and_accepted_form() {
        let e = parse("listen = \"localhost\"").unwrap_err().to_string();
        assert!(e.contains("/etc/p2p/config.toml"), "{e}");
        assert!(e.contains("listen") && e.contains("IP:PORT"), "{e}");
        let e = parse("max_download_rate = \"fast\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_download_rate") && e.contains("10M"), "{e}");
        // Wrong TOML type: the line shown names the key.
        let e = parse("advertise = 7000").unwrap_err().to_string();
        assert!(e.contains("advertise = 7000"), "{e}");
        let e = parse("listen = ").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = Config::load(Path::new("/nonexistent/p2p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/p2p.toml"), "{e}");
    }
}
