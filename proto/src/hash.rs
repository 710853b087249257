//! [`Sha1Hash`]: a SHA-1 digest, 40 lowercase hex digits on every wire.

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha1Hash(pub [u8; 20]);

impl Sha1Hash {
    /// SHA-1 of a byte slice (a piece, a test vector).
    pub fn of(bytes: &[u8]) -> Self {
        Sha1Hash(Sha1::digest(bytes).into())
    }

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
    fn known_vector_and_hex_round_trip() {
        let h = Sha1Hash::of(b"abc");
        assert_eq!(h.to_hex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        let back: Sha1Hash = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
        assert!("zz".parse::<Sha1Hash>().is_err());
        assert!("g".repeat(40).parse::<Sha1Hash>().is_err());
    }
}
