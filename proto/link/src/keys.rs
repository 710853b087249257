//! The keys of p2pshare's trust.
//!
//! - The **cluster key** is one 32-byte secret, in a file every tracker of a
//!   cluster is started with. Nothing else is stored: the keys the cluster
//!   uses are derived from it (HKDF-SHA256, one label each), so a key
//!   never travels through the replicated state.
//!   - its *identity*: the ed25519 key trackers present on every link;
//!     daemons pin its [`Fingerprint`], and trackers accept tracker-to-tracker
//!     traffic only from a peer that proves it holds it;
//!   - its *ticket key*: the ed25519 key download tickets are signed with.
//! - A **link key** is an ed25519 key pair a daemon makes at start and keeps
//!   in memory; it authenticates the daemon's links, and tickets name it so
//!   that a ticket is worthless on anybody else's connection.

use aws_lc_rs::digest;
use aws_lc_rs::hkdf;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// First word of a cluster key file: says what the file is, and its version.
const FILE_TAG: &str = "p2pshare-cluster-key-v1";
/// HKDF salt: fixes the derivations to this use of the secret.
const HKDF_SALT: &[u8] = b"p2pshare cluster key v1";
const IDENTITY_LABEL: &[u8] = b"identity";
const TICKET_LABEL: &[u8] = b"tickets";
/// How a fingerprint is written: `sha256:` and 64 hex digits.
const FINGERPRINT_PREFIX: &str = "sha256:";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0} already exists; a cluster key is never overwritten (pick another path)")]
    Exists(PathBuf),
    #[error("cannot read the cluster key {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write the cluster key {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{0} is not a cluster key (make one with `tracker keygen FILE`)")]
    Malformed(PathBuf),
    #[error(
        "{path} is readable by other users (mode {mode:o}); a cluster key is a secret: chmod 600 {path}"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{0:?} is not a fingerprint (expected sha256: and 64 hex digits)")]
    BadFingerprint(String),
    #[error("the system's random generator failed")]
    Random,
}

/// An ed25519 public key, as it appears on the wire and in tickets.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The key's fingerprint: what daemons pin.
    pub fn fingerprint(&self) -> Fingerprint {
        let d = digest::digest(&digest::SHA256, &self.0);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Fingerprint(out)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| KeyError::BadFingerprint(s.into()))?;
        Ok(PublicKey(out))
    }
}

/// SHA-256 of a cluster's identity key, written `sha256:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{FINGERPRINT_PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || KeyError::BadFingerprint(s.chars().take(80).collect());
        let digits = s
            .trim()
            .strip_prefix(FINGERPRINT_PREFIX)
            .or_else(|| s.trim().strip_prefix("SHA256:"))
            .ok_or_else(bad)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(digits, &mut out).map_err(|_| bad())?;
        Ok(Fingerprint(out))
    }
}

/// An ed25519 key pair, held as PKCS#8 (what rustls loads) next to its
/// public half.
pub struct KeyPairDoc {
    pkcs8: Vec<u8>,
    pair: Ed25519KeyPair,
}

impl KeyPairDoc {
    fn from_seed(seed: &[u8; 32]) -> KeyPairDoc {
        // A 32-byte seed is always a valid ed25519 private key.
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).expect("32-byte ed25519 seed");
        let pkcs8 = pair
            .to_pkcs8()
            .expect("ed25519 key to PKCS#8")
            .as_ref()
            .to_vec();
        KeyPairDoc { pkcs8, pair }
    }

    /// A fresh random key pair (a daemon's link key).
    ///
    /// # Errors
    /// [`KeyError::Random`] if the system's generator fails.
    pub fn generate() -> Result<KeyPairDoc, KeyError> {
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| KeyError::Random)?;
        Ok(KeyPairDoc::from_seed(&seed))
    }

    pub fn public(&self) -> PublicKey {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(out)
    }

    pub(crate) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// An ed25519 signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(msg).as_ref());
        out
    }
}

impl fmt::Debug for KeyPairDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({})", self.public())
    }
}

/// The cluster's one secret. Never printed, never sent.
pub struct ClusterKey {
    seed: [u8; 32],
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey({})", self.fingerprint())
    }
}

impl ClusterKey {
    /// A fresh random key.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the system's generator fails.
    pub fn generate() -> Result<ClusterKey, KeyError> {
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| KeyError::Random)?;
        Ok(ClusterKey { seed })
    }

    fn derive(&self, label: &[u8]) -> [u8; 32] {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(&self.seed);
        let mut out = [0u8; 32];
        prk.expand(&[label], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut out))
            .expect("HKDF-SHA256 of 32 bytes");
        out
    }

    /// The key trackers present on every link.
    pub fn identity(&self) -> KeyPairDoc {
        KeyPairDoc::from_seed(&self.derive(IDENTITY_LABEL))
    }

    /// The key tickets are signed with.
    pub fn ticket_key(&self) -> KeyPairDoc {
        KeyPairDoc::from_seed(&self.derive(TICKET_LABEL))
    }

    /// What daemons pin: the fingerprint of [`ClusterKey::identity`].
    pub fn fingerprint(&self) -> Fingerprint {
        self.identity().public().fingerprint()
    }

    /// Writes the key to a new file, mode 0600; an existing path (a symlink
    /// included) is refused, never overwritten.
    ///
    /// # Errors
    /// [`KeyError::Exists`], or [`KeyError::Write`].
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        let write_err = |e: std::io::Error| KeyError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => KeyError::Exists(path.to_path_buf()),
                _ => write_err(e),
            })?;
        let text = format!("{FILE_TAG} {}\n", hex::encode(self.seed));
        f.write_all(text.as_bytes()).map_err(write_err)?;
        f.sync_all().map_err(write_err)
    }

    /// Reads a key file written by [`ClusterKey::save_new`]. A file other
    /// users can read is refused: the key would no longer be a secret.
    ///
    /// # Errors
    /// [`KeyError::Read`], [`KeyError::Exposed`] or [`KeyError::Malformed`].
    pub fn load(path: &Path) -> Result<ClusterKey, KeyError> {
        let read_err = |e: std::io::Error| KeyError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        if meta.len() > 4096 {
            return Err(KeyError::Malformed(path.to_path_buf()));
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let malformed = || KeyError::Malformed(path.to_path_buf());
        let mut words = text.split_whitespace();
        if words.next() != Some(FILE_TAG) {
            return Err(malformed());
        }
        let mut seed = [0u8; 32];
        hex::decode_to_slice(words.next().ok_or_else(malformed)?, &mut seed)
            .map_err(|_| malformed())?;
        if words.next().is_some() {
            return Err(malformed());
        }
        Ok(ClusterKey { seed })
    }

    /// Loads the key at `path`, or makes and saves one there if there is
    /// none (a single tracker's `DATA_DIR/cluster.key`).
    ///
    /// # Errors
    /// As [`ClusterKey::load`] and [`ClusterKey::save_new`].
    pub fn load_or_create(path: &Path) -> Result<ClusterKey, KeyError> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => ClusterKey::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = ClusterKey::generate()?;
                key.save_new(path)?;
                Ok(key)
            }
            Err(e) => Err(KeyError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Verifies an ed25519 signature by `key`.
pub fn verify(key: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, &key.0)
        .verify(msg, sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_key_loads_back_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let key = ClusterKey::generate().unwrap();
        key.save_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = ClusterKey::load(&path).unwrap();
        assert_eq!(back.fingerprint(), key.fingerprint());
        assert_eq!(back.identity().public(), key.identity().public());
    }

    #[test]
    fn save_never_overwrites_nor_follows_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        std::fs::write(&path, "old").unwrap();
        let key = ClusterKey::generate().unwrap();
        assert!(matches!(key.save_new(&path), Err(KeyError::Exists(_))));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");

        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(matches!(key.save_new(&link), Err(KeyError::Exists(_))));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        ClusterKey::generate().unwrap().save_new(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = ClusterKey::load(&path).unwrap_err();
        assert!(matches!(err, KeyError::Exposed { .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn garbage_is_not_a_key() {
        let dir = tempfile::tempdir().unwrap();
        for text in [
            "",
            "p2pshare-cluster-key-v1",
            "p2pshare-cluster-key-v1 abcd",
            "hello 00",
        ] {
            let path = dir.path().join("k");
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert!(
                matches!(ClusterKey::load(&path), Err(KeyError::Malformed(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn derived_keys_differ_and_are_stable() {
        let key = ClusterKey { seed: [7; 32] };
        let again = ClusterKey { seed: [7; 32] };
        assert_eq!(key.identity().public(), again.identity().public());
        assert_ne!(key.identity().public(), key.ticket_key().public());
        assert_ne!(
            key.fingerprint(),
            ClusterKey { seed: [8; 32] }.fingerprint()
        );
    }

    #[test]
    fn fingerprints_print_and_parse() {
        let fp = ClusterKey::generate().unwrap().fingerprint();
        let text = fp.to_string();
        assert!(
            text.starts_with("sha256:") && text.len() == 7 + 64,
            "{text}"
        );
        assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(
            text.to_uppercase()
                .replace("SHA256:", "sha256:")
                .parse::<Fingerprint>()
                .unwrap(),
            fp
        );
        for bad in [
            "",
            "sha256:",
            "sha256:zz",
            "md5:00",
            &text[..text.len() - 1],
        ] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signatures_verify_only_with_their_key_and_message() {
        let a = KeyPairDoc::generate().unwrap();
        let b = KeyPairDoc::generate().unwrap();
        let sig = a.sign(b"hello");
        assert!(verify(&a.public(), b"hello", &sig));
        assert!(!verify(&a.public(), b"hellO", &sig));
        assert!(!verify(&b.public(), b"hello", &sig));
    }
}
