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

// ---------------------------------------------------------------------------
// Blocks (swarm issue). A piece is requested in blocks of `BLOCK_SIZE_BYTES`,
// aligned to block boundaries inside the piece; a piece's last block may be
// shorter. Offsets and lengths inside a piece fit in `u32` because
// `PIECE_SIZE_BYTES` does.
// ---------------------------------------------------------------------------

/// Most blocks a piece can have: `PIECE_SIZE_BYTES / BLOCK_SIZE_BYTES`.
pub const MAX_BLOCKS_PER_PIECE: u32 = (PIECE_SIZE_BYTES / BLOCK_SIZE_BYTES as u64) as u32;

// The block size must divide the piece size, so every block but a piece's
// last is exactly `BLOCK_SIZE_BYTES`.
const _: () = assert!(
    PIECE_SIZE_BYTES / BLOCK_SIZE_BYTES as u64 * BLOCK_SIZE_BYTES as u64 == PIECE_SIZE_BYTES
);

/// Number of blocks in a piece of `piece_len` bytes (0 for 0).
pub fn blocks_in_piece_len(piece_len: u32) -> u32 {
    piece_len.div_ceil(BLOCK_SIZE_BYTES)
}

/// Number of blocks in piece `piece` of a file of `size` bytes, or `None`
/// past the end.
pub fn block_count(size: u64, piece: u32) -> Option<u32> {
    piece_len(size, piece).map(blocks_in_piece_len)
}

/// Offset inside its piece of block `block` (no range check).
pub fn block_offset(block: u32) -> u32 {
    block.saturating_mul(BLOCK_SIZE_BYTES)
}

/// Index of the block starting at `offset` inside a piece, or `None` if
/// `offset` is not on a block boundary.
pub fn block_index(offset: u32) -> Option<u32> {
    let index = offset / BLOCK_SIZE_BYTES;
    (block_offset(index) == offset).then_some(index)
}

/// Length of block `block` of piece `piece` of a file of `size` bytes, or
/// `None` if the piece or the block does not exist.
pub fn block_len(size: u64, piece: u32, block: u32) -> Option<u32> {
    let plen = piece_len(size, piece)?;
    if block >= blocks_in_piece_len(plen) {
        return None;
    }
    let start = block_offset(block);
    Some((plen - start).min(BLOCK_SIZE_BYTES))
}

/// Byte offset in the file of `offset` inside piece `piece`.
pub fn file_offset(piece: u32, offset: u32) -> u64 {
    piece_offset(piece) + offset as u64
}

/// Why a (piece, offset, len) range is not one a peer may ask for or send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlockRangeError {
    #[error("piece {piece} does not exist (the file has {count} pieces)")]
    NoSuchPiece { piece: u32, count: u32 },
    #[error("a block may not be empty")]
    Empty,
    #[error("a block of {len} bytes exceeds the limit of {BLOCK_SIZE_BYTES}")]
    TooLong { len: u32 },
    #[error("bytes {offset}+{len} run past the end of piece {piece} ({piece_len} bytes)")]
    PastPieceEnd {
        piece: u32,
        offset: u32,
        len: u32,
        piece_len: u32,
    },
}

/// Checks that `len` bytes at `offset` of piece `piece` lie inside a file of
/// `size` bytes and form a legal block: `1..=BLOCK_SIZE_BYTES` bytes, within
/// one piece. Alignment is not required (a server may serve any such range).
///
/// # Errors
/// The first rule broken, as a [`BlockRangeError`].
pub fn check_block_range(
    size: u64,
    piece: u32,
    offset: u32,
    len: u32,
) -> Result<(), BlockRangeError> {
    let plen = piece_len(size, piece).ok_or(BlockRangeError::NoSuchPiece {
        piece,
        count: piece_count(size),
    })?;
    if len == 0 {
        return Err(BlockRangeError::Empty);
    }
    if len > BLOCK_SIZE_BYTES {
        return Err(BlockRangeError::TooLong { len });
    }
    // u64 so offset + len cannot wrap.
    if offset as u64 + len as u64 > plen as u64 {
        return Err(BlockRangeError::PastPieceEnd {
            piece,
            offset,
            len,
            piece_len: plen,
        });
    }
    Ok(())
}

#[cfg(test)]
mod block_tests {
    use super::*;
    const P: u64 = PIECE_SIZE_BYTES;
    const B: u32 = BLOCK_SIZE_BYTES;

    /// Blocks of every piece tile the file exactly, in order, without gaps.
    fn assert_tiles(size: u64) {
        let mut next = 0u64;
        for piece in 0..piece_count(size) {
            let n = block_count(size, piece).unwrap();
            assert!((1..=MAX_BLOCKS_PER_PIECE).contains(&n), "size {size}");
            for block in 0..n {
                let len = block_len(size, piece, block).unwrap();
                assert!((1..=B).contains(&len));
                assert_eq!(file_offset(piece, block_offset(block)), next);
                assert_eq!(block_index(block_offset(block)), Some(block));
                assert_eq!(
                    check_block_range(size, piece, block_offset(block), len),
                    Ok(())
                );
                next += len as u64;
            }
            assert_eq!(block_len(size, piece, n), None);
        }
        assert_eq!(next, size);
        assert_eq!(block_count(size, piece_count(size)), None);
    }

    #[test]
    fn blocks_tile_every_edge_size() {
        for size in [
            0,
            1,
            B as u64 - 1,
            B as u64,
            B as u64 + 1,
            P - 1,
            P,
            P + 1,
            2 * P,
            3 * P + 2 * B as u64 + 5,
        ] {
            assert_tiles(size);
        }
    }

    #[test]
    fn edge_counts_and_lengths() {
        assert_eq!(MAX_BLOCKS_PER_PIECE, 4);
        assert_eq!(block_count(0, 0), None);
        assert_eq!(block_count(1, 0), Some(1));
        assert_eq!(block_len(1, 0, 0), Some(1));
        assert_eq!(block_count(P - 1, 0), Some(4));
        assert_eq!(block_len(P - 1, 0, 3), Some(B - 1));
        assert_eq!(block_count(P, 0), Some(4));
        assert_eq!(block_len(P, 0, 3), Some(B));
        assert_eq!(block_count(P + 1, 1), Some(1));
        assert_eq!(block_len(P + 1, 1, 0), Some(1));
        assert_eq!(block_len(P + 1, 1, 1), None);
        // Last short piece of 2 blocks + 7 bytes: 3 blocks, the last of 7.
        let size = 5 * P + 2 * B as u64 + 7;
        assert_eq!(block_count(size, 5), Some(3));
        assert_eq!(block_len(size, 5, 2), Some(7));
        assert_eq!(block_index(1), None);
        assert_eq!(block_index(B), Some(1));
        assert_eq!(blocks_in_piece_len(0), 0);
    }

    #[test]
    fn range_checks() {
        let size = P + 10;
        assert_eq!(check_block_range(size, 0, 0, B), Ok(()));
        assert_eq!(check_block_range(size, 0, 5, B), Ok(()));
        assert_eq!(
            check_block_range(size, 2, 0, 1),
            Err(BlockRangeError::NoSuchPiece { piece: 2, count: 2 })
        );
        assert_eq!(
            check_block_range(size, 0, 0, 0),
            Err(BlockRangeError::Empty)
        );
        assert_eq!(
            check_block_range(size, 0, 0, B + 1),
            Err(BlockRangeError::TooLong { len: B + 1 })
        );
        assert!(matches!(
            check_block_range(size, 1, 0, 11),
            Err(BlockRangeError::PastPieceEnd { .. })
        ));
        assert_eq!(check_block_range(size, 1, 0, 10), Ok(()));
        assert!(matches!(
            check_block_range(size, 0, u32::MAX, B),
            Err(BlockRangeError::PastPieceEnd { .. })
        ));
        assert!(check_block_range(0, 0, 0, 1).is_err());
        assert!(check_block_range(u64::MAX, u32::MAX, 0, 1).is_ok());
    }
}
