//! `#[serde(with = "proto::as_text")]`: a field serialised as its text
//! (`Display` / `FromStr`) in every encoding, not only in JSON.
//!
//! Why: some std types (`SocketAddr`) serialise as text in JSON but as a
//! structure in the trackers' binary encoding, and serde reads a value
//! inside an internally tagged enum (`Command`) as if the format were
//! human-readable whatever it is, so a binary `SocketAddr` in a logged
//! command would not read back. As text it reads back everywhere, and the
//! JSON stays what it was.

use serde::{de, Deserializer, Serializer};
use std::fmt::{self, Display};
use std::marker::PhantomData;
use std::str::FromStr;

/// Writes `value` as its `Display` text.
///
/// # Errors
/// The serializer's.
pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// Reads a value from its text.
///
/// # Errors
/// Not a string, or not the text of a `T`.
pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
where
    T: FromStr,
    T::Err: Display,
    D: Deserializer<'de>,
{
    struct Text<T>(PhantomData<T>);
    impl<T: FromStr> de::Visitor<'_> for Text<T>
    where
        T::Err: Display,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
    }
    d.deserialize_str(Text(PhantomData))
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use std::net::SocketAddr;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct At {
        #[serde(with = "super")]
        addr: SocketAddr,
    }

    #[test]
    fn json_is_unchanged_and_garbage_is_refused() {
        let at = At {
            addr: "[::1]:7".parse().unwrap(),
        };
        let json = serde_json::to_string(&at).unwrap();
        assert_eq!(json, r#"{"addr":"[::1]:7"}"#);
        assert_eq!(serde_json::from_str::<At>(&json).unwrap(), at);
        assert!(serde_json::from_str::<At>(r#"{"addr":"nowhere"}"#).is_err());
        assert!(serde_json::from_str::<At>(r#"{"addr":7}"#).is_err());
    }
}
