//! The trackers' own binary encoding: their Raft log and snapshots on disk
//! and the frames between trackers. Daemons and p2pctl speak JSON.
//!
//! Why binary: a tracker's writes are mostly piece lists, and JSON spends
//! 42 bytes and a hex decode (plus, behind a tagged enum, a `String`) on
//! each 20-byte SHA-1, several times per write (received, logged, read
//! back for each follower, decoded there). `cargo bench -p tracker --bench
//! codec` compares the candidates on the tracker's real messages.
//!
//! Why MessagePack with structs as maps (field names kept) rather than a
//! positional format such as postcard: it is self-describing, so every
//! serde shape the JSON types use keeps working unchanged — internally and
//! adjacently tagged enums, `#[serde(default)]` fields added to logged
//! types since (an old entry simply lacks them), skipped empty fields.
//! A positional format would need each of those rewritten and would make
//! adding a field to a logged type a format break.
//!
//! Encoded values start with [`BINARY_MARK`], which no JSON text starts
//! with, so a reader takes either ([`decode`]): stores and peers from
//! before the binary encoding wrote JSON.

use serde::{de::DeserializeOwned, Serialize};

/// First byte of every binary value: version 1 of this encoding. JSON
/// starts with `{`, `[`, `"`, a digit, a letter or white space, never 0x01.
pub const BINARY_MARK: u8 = 0x01;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode: {0}")]
    Encode(String),
    #[error("cannot decode: {0}")]
    Decode(String),
}

/// `value` in the binary encoding, marked.
///
/// # Errors
/// The value cannot be represented (a map with non-serialisable keys, a
/// failing `Serialize` impl).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    out.push(BINARY_MARK);
    let mut ser = rmp_serde::Serializer::new(&mut out).with_struct_map();
    value
        .serialize(&mut ser)
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Writes `value` in the binary encoding, marked, to `w` (a snapshot
/// streamed to its file instead of built in memory).
///
/// # Errors
/// As [`encode`], and `w`'s.
pub fn encode_into<W: std::io::Write + ?Sized, T: Serialize + ?Sized>(
    w: &mut W,
    value: &T,
) -> Result<(), CodecError> {
    w.write_all(&[BINARY_MARK])
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    let mut ser = rmp_serde::Serializer::new(w).with_struct_map();
    value
        .serialize(&mut ser)
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// `value` as JSON (what peers from before the binary encoding read).
///
/// # Errors
/// As [`encode`].
pub fn encode_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(value).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Whether `bytes` are in the binary encoding (else JSON).
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes.first() == Some(&BINARY_MARK)
}

/// Decodes `bytes`, binary or JSON, whichever they are.
///
/// # Errors
/// Neither encoding of a `T`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        Some((&BINARY_MARK, rest)) => {
            rmp_serde::from_slice(rest).map_err(|e| CodecError::Decode(e.to_string()))
        }
        _ => serde_json::from_slice(bytes).map_err(|e| CodecError::Decode(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::FileMeta;
    use crate::Sha1Hash;
    use serde::Deserialize;

    fn meta(pieces: usize) -> FileMeta {
        FileMeta {
            name: "f.iso".parse().unwrap(),
            size: pieces as u64 * crate::geometry::PIECE_SIZE_BYTES,
            sha1: Sha1Hash([7; 20]),
            piece_size: crate::geometry::PIECE_SIZE_BYTES,
            pieces: (0..pieces).map(|i| Sha1Hash([i as u8; 20])).collect(),
        }
    }

    #[test]
    fn binary_and_json_both_decode() {
        let m = meta(64);
        let bin = encode(&m).unwrap();
        let json = encode_json(&m).unwrap();
        let mut streamed = Vec::new();
        encode_into(&mut streamed, &m).unwrap();
        assert_eq!(streamed, bin);
        assert!(is_binary(&bin) && !is_binary(&json));
        assert_eq!(decode::<FileMeta>(&bin).unwrap(), m);
        assert_eq!(decode::<FileMeta>(&json).unwrap(), m);
        // The point of it: a hash is 22 bytes here, 43 in JSON.
        assert!(
            bin.len() * 100 < json.len() * 55,
            "{} vs {}",
            bin.len(),
            json.len()
        );
    }

    /// The serde shapes the trackers' logged types use, which a positional
    /// format would not read: internally and adjacently tagged enums, and a
    /// field added later with a default.
    #[test]
    fn tagged_enums_and_added_fields_survive() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "cmd", rename_all = "snake_case")]
        enum Internal {
            Register { meta: FileMeta },
            Nothing,
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "op", content = "body", rename_all = "snake_case")]
        enum Adjacent {
            Write { command: Internal },
            Probe,
        }
        for v in [
            Adjacent::Write {
                command: Internal::Register { meta: meta(3) },
            },
            Adjacent::Write {
                command: Internal::Nothing,
            },
            Adjacent::Probe,
        ] {
            assert_eq!(decode::<Adjacent>(&encode(&v).unwrap()).unwrap(), v);
        }
        #[derive(Serialize)]
        struct Old {
            a: u32,
        }
        #[derive(Debug, PartialEq, Deserialize)]
        struct New {
            a: u32,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            b: Option<String>,
        }
        let old = encode(&Old { a: 5 }).unwrap();
        assert_eq!(decode::<New>(&old).unwrap(), New { a: 5, b: None });
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            &[BINARY_MARK],
            &[BINARY_MARK, 0xc1],
            b"{\"a\":",
            &[0xff; 64],
        ] {
            assert!(decode::<FileMeta>(bad).is_err(), "{bad:?}");
        }
        // A length prefix far beyond the input is refused, not allocated.
        let huge = [BINARY_MARK, 0xdd, 0xff, 0xff, 0xff, 0xff];
        assert!(decode::<Vec<u64>>(&huge).is_err());
    }
}
