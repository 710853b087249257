//! All piece and block arithmetic, in one place.
//!
//! A file of `size` bytes is cut into pieces of [`PIECE_SIZE_BYTES`]; the last
//! piece may be shorter, and an empty file has zero pieces. Pieces are
//! requested in blocks of at most [`BLOCK_SIZE_BYTES`].

/// Piece size fixed by SPEC.md: 512 KiB.
pub const PIECE_SIZE_BYTES: u64 = 512 * 1024;
/// Largest block a peer may request or send in one message.
pub const BLOCK_SIZE_BYTES: u32 = 128 * 1024;

/// Number of pieces of a file of `size` bytes.
pub fn piece_count(size: u64) -> u32 {
    size.div_ceil(PIECE_SIZE_BYTES) as u32
}

/// Byte offset of piece `index` in the file.
pub fn piece_offset(index: u32) -> u64 {
    index as u64 * PIECE_SIZE_BYTES
}

/// Length of piece `index` of a file of `size` bytes, or `None` past the end.
pub fn piece_len(size: u64, index: u32) -> Option<u32> {
    let start = piece_offset(index);
    if start >= size {
        return None;
    }
    Some((size - start).min(PIECE_SIZE_BYTES) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    const P: u64 = PIECE_SIZE_BYTES;

    #[test]
    fn edges() {
        assert_eq!(piece_count(0), 0);
        assert_eq!(piece_len(0, 0), None);
        assert_eq!(piece_count(1), 1);
        assert_eq!(piece_len(1, 0), Some(1));
        assert_eq!(piece_count(P - 1), 1);
        assert_eq!(piece_len(P - 1, 0), Some((P - 1) as u32));
        assert_eq!(piece_count(P), 1);
        assert_eq!(piece_len(P, 0), Some(P as u32));
        assert_eq!(piece_len(P, 1), None);
        assert_eq!(piece_count(P + 1), 2);
        assert_eq!(piece_len(P + 1, 1), Some(1));
        assert_eq!(piece_count(5 * P + 7), 6);
        assert_eq!(piece_len(5 * P + 7, 5), Some(7));
    }
}
