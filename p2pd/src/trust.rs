//! Which tracker identity this daemon trusts, decided before a password or
//! token goes out.
//!
//! The identity is the fingerprint of the key a tracker proves on the TLS
//! link. It is pinned by tracker_info.txt when the file names one; otherwise
//! the first identity met is trusted and remembered in `HOME/known_cluster`
//! (like ssh's known_hosts), and from then on only that one. A different
//! identity is refused with `untrusted_tracker`, and the message says how
//! to accept a new cluster deliberately.

use p2p_link::{Fingerprint, PublicKey};
use proto::{ErrorCode, WireError};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Trust {
    /// From tracker_info.txt; wins over the remembered one.
    pinned: Option<Fingerprint>,
    /// `HOME/known_cluster`.
    known: PathBuf,
}

impl Trust {
    pub fn new(pinned: Option<Fingerprint>, known: PathBuf) -> Trust {
        Trust { pinned, known }
    }

    /// Whether the tracker at `addr`, which proved `key`, is the trusted
    /// cluster. On first use (no pin, nothing remembered) the identity is
    /// remembered and trusted.
    ///
    /// # Errors
    /// `untrusted_tracker` naming both identities and the way out; `io` if
    /// the remembered identity cannot be read or written.
    pub fn check(&self, addr: SocketAddr, key: &PublicKey) -> Result<(), WireError> {
        let seen = key.fingerprint();
        if let Some(pinned) = self.pinned {
            return if seen == pinned {
                Ok(())
            } else {
                Err(untrusted(
                    addr,
                    seen,
                    pinned,
                    "tracker_info.txt",
                    "put the new fingerprint (`tracker fingerprint` on a tracker host) \
                     after the addresses in tracker_info.txt and restart p2pd",
                ))
            };
        }
        match self.remembered()? {
            Some(known) if known == seen => Ok(()),
            Some(known) => Err(untrusted(
                addr,
                seen,
                known,
                &self.known.display().to_string(),
                &format!(
                    "remove {} (the next identity met is then trusted), or name the \
                     cluster's fingerprint in tracker_info.txt",
                    self.known.display()
                ),
            )),
            None => {
                let text = format!("{seen}\n");
                proto::service::write_atomic(&self.known, text.as_bytes(), 0o600).map_err(|e| {
                    WireError::new(
                        ErrorCode::Io,
                        format!(
                            "cannot remember the tracker identity in {}: {e}",
                            self.known.display()
                        ),
                    )
                })?;
                tracing::info!(tracker = %addr, identity = %seen,
                    "trusting this cluster identity on first use (remembered in {})",
                    self.known.display());
                Ok(())
            }
        }
    }

    fn remembered(&self) -> Result<Option<Fingerprint>, WireError> {
        let io = |e: String| {
            WireError::new(
                ErrorCode::Io,
                format!("cannot read {}: {e}", self.known.display()),
            )
        };
        match std::fs::read_to_string(&self.known) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|e| io(format!("{e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e.to_string())),
        }
    }
}

fn untrusted(
    addr: SocketAddr,
    seen: Fingerprint,
    trusted: Fingerprint,
    source: &str,
    remedy: &str,
) -> WireError {
    WireError::new(
        ErrorCode::UntrustedTracker,
        format!(
            "the tracker at {addr} is not the trusted cluster: it proved identity {seen}, \
             but this daemon trusts {trusted} (from {source}); nothing was sent to it. \
             If the cluster was re-keyed deliberately, {remedy}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_link::KeyPairDoc;

    fn addr() -> SocketAddr {
        "127.0.0.1:7000".parse().unwrap()
    }

    #[test]
    fn first_use_remembers_then_only_that_identity_passes() {
        let dir = tempfile::tempdir().unwrap();
        let known = dir.path().join("known_cluster");
        let trust = Trust::new(None, known.clone());
        let real = KeyPairDoc::generate().unwrap().public();
        let impostor = KeyPairDoc::generate().unwrap().public();
        trust.check(addr(), &real).unwrap();
        assert_eq!(
            std::fs::read_to_string(&known).unwrap().trim(),
            real.fingerprint().to_string()
        );
        trust.check(addr(), &real).unwrap();
        let e = trust.check(addr(), &impostor).unwrap_err();
        assert_eq!(e.code, ErrorCode::UntrustedTracker);
        assert!(
            e.message.contains(&format!("remove {}", known.display())),
            "{}",
            e.message
        );
        // A new daemon run reads the same file.
        let again = Trust::new(None, known.clone());
        assert!(again.check(addr(), &impostor).is_err());
        // Removing the file is how a new cluster is accepted.
        std::fs::remove_file(&known).unwrap();
        again.check(addr(), &impostor).unwrap();
    }

    #[test]
    fn a_pinned_fingerprint_wins_and_nothing_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let known = dir.path().join("known_cluster");
        let real = KeyPairDoc::generate().unwrap().public();
        let impostor = KeyPairDoc::generate().unwrap().public();
        let trust = Trust::new(Some(real.fingerprint()), known.clone());
        let e = trust.check(addr(), &impostor).unwrap_err();
        assert_eq!(e.code, ErrorCode::UntrustedTracker);
        assert!(e.message.contains("tracker_info.txt"), "{}", e.message);
        assert!(!known.exists());
        trust.check(addr(), &real).unwrap();
        assert!(!known.exists());
    }

    #[test]
    fn a_damaged_memory_is_an_error_not_a_new_trust() {
        let dir = tempfile::tempdir().unwrap();
        let known = dir.path().join("known_cluster");
        std::fs::write(&known, "garbage").unwrap();
        let trust = Trust::new(None, known);
        let e = trust
            .check(addr(), &KeyPairDoc::generate().unwrap().public())
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Io);
    }
}
