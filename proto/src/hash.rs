//! [`Sha1Hash`]: a SHA-1 digest as it travels, 40 lowercase hex digits on
//! every wire (serde, parsing, `Display`). Computing one is the `p2p-sha1`
//! crate's job (`proto/sha1/`): p2pctl, which only renders digests, does
//! not depend on it and so cannot link any crypto.

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
