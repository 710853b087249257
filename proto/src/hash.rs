//! [`Sha1Hash`]: a SHA-1 digest as it travels: 40 lowercase hex digits on
//! every human-readable wire (JSON, parsing, `Display`), its 20 bytes in the
//! trackers' binary encoding (`proto::codec`). Computing one is the `p2p-sha1`
//! crate's job (`proto/sha1/`): p2pctl, which only renders digests, does
//! not depend on it and so cannot link any crypto.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A SHA-1 digest; serialised as 40 lowercase hex digits, or as 20 bytes
/// where the format is not human-readable.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha1Hash(pub [u8; 20]);

impl Serialize for Sha1Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            // Hex on the stack: a tracker writes hundreds of thousands of
            // these a second, an allocation each would show.
            let mut hex = [0u8; 40];
            hex::encode_to_slice(self.0, &mut hex).expect("40 bytes hold 20 in hex");
            s.serialize_str(std::str::from_utf8(&hex).expect("hex is ASCII"))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Sha1Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Sha1Hash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a SHA-1: 40 hex digits or 20 bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Sha1Hash, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Sha1Hash, E> {
                <[u8; 20]>::try_from(v)
                    .map(Sha1Hash)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(Visitor)
        } else {
            d.deserialize_bytes(Visitor)
        }
    }
}

impl Sha1Hash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
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
