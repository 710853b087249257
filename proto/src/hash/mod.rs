//! SHA-1 in p2pshare: the digest as it travels, and (feature `hash`) the
//! code that computes it.
//!
//! - Always built: [`Sha1Hash`], a SHA-1 digest, 40 lowercase hex digits on
//!   every wire (serde, parsing, `Display`). p2pctl, which only renders
//!   digests, needs nothing more.
//! - Feature `hash`, which alone pulls in `aws-lc-rs`: the one SHA-1
//!   implementation every digest of the project goes through (upload
//!   hashing, piece checks, whole-file checks), so a faster backend is a
//!   change here only.
//!   - `digest.rs`: `Sha1Stream` (incremental, AWS-LC's assembly),
//!     `Sha1Hash::of`, and `digest_many` with `preferred_batch` (many
//!     pieces at once, through the lanes where that pays).
//!   - `lanes`: SHA-1 of up to eight equal-shape messages in lockstep on an
//!     AVX-512VL or AVX2 kernel. A kernel exists only once run-time
//!     detection has vouched for it, so the safe API cannot run
//!     instructions the CPU lacks.
//!
//! **Who links AWS-LC.** p2pd enables `hash`; tracker, p2pctl and proto
//! enable it only for their tests and benches, so `cargo build -p p2pctl`
//! never compiles AWS-LC. A workspace build compiles proto once with every
//! feature its members ask for, so p2pctl then links a proto that has the
//! digest code; it still extracts no AWS-LC because that code is
//! `#[inline]` and so compiled only into its callers (see `digest.rs`). One
//! way in remains there, outside our control: rustc shares some generic
//! instances between crates (`#[inline(never)]` ones such as
//! `Arc::drop_slow`), and a binary may take one from aws-lc-rs, which
//! drags AWS-LC's constructors in (the tracker does, in a workspace
//! build). `tests/tests/p2pctl_links_no_crypto.rs` checks p2pctl's
//! dependency graph and its built binary.

#[cfg(feature = "hash")]
mod digest;
#[cfg(feature = "hash")]
pub mod lanes;

#[cfg(feature = "hash")]
pub use digest::{digest_many, preferred_batch, Sha1Stream};

use serde::{Deserialize, Serialize};
use std::fmt;

/// A SHA-1 digest; serialised as 40 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha1Hash(pub [u8; 20]);

impl Sha1Hash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<Sha1Hash> for String {
    fn from(h: Sha1Hash) -> String {
        h.to_hex()
    }
}

impl TryFrom<String> for Sha1Hash {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for Sha1Hash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 40 {
            return Err("a SHA-1 is 40 hex digits".into());
        }
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out).map_err(|e| format!("bad SHA-1 hex: {e}"))?;
        Ok(Sha1Hash(out))
    }
}

impl fmt::Display for Sha1Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha1Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha1Hash({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let hex = "a9993e364706816aba3e25717850c26c9cd0d89d";
        let h: Sha1Hash = hex.parse().unwrap();
        assert_eq!(h.to_hex(), hex);
        assert_eq!(h.to_string(), hex);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{hex}\""));
        let back: Sha1Hash = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert!("zz".parse::<Sha1Hash>().is_err());
        assert!("g".repeat(40).parse::<Sha1Hash>().is_err());
        assert!(serde_json::from_str::<Sha1Hash>("\"abc\"").is_err());
    }
}
