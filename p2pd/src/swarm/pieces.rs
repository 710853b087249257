//! Piece and block bookkeeping of one download: which pieces we have, which
//! blocks are requested from whom, which arrived from whom.
//!
//! # Invariant
//!
//! Each piece is exactly one of
//! - `Have`: verified; set in [`PieceTracker::have`];
//! - `InFlight`: listed in [`PieceTracker::in_flight`], with per-block state,
//!   and at least one block requested or received (a piece that loses its
//!   last request with nothing received goes back to `Wanted`);
//! - `Wanted`: listed in [`PieceTracker::wanted`]; no block touched.
//!
//! Each block of an in-flight piece is either received (from exactly one
//! peer, nobody requesting it any more) or not, with the list of peers that
//! have a request for it outstanding (several only in endgame). A peer's
//! outstanding list holds `(piece, block)` exactly when the peer is in that
//! block's requesters. `unrequested_blocks` counts blocks neither received nor
//! requested, over the whole file; `verified_bytes` sums the `Have` pieces.
//!
//! Transitions, and only these, change the state:
//!
//! ```text
//! Wanted --reserve_block--> InFlight --block_received (last block)--> complete
//! complete --mark_verified--> Have
//! complete --mark_corrupt--> Wanted        (contributors returned: drop them)
//! InFlight --release_peer / release_block--> InFlight, or Wanted if untouched
//! ```
//!
//! Every operation is O(1) in the file size: O(blocks per piece) or O(a
//! peer's outstanding requests), both small constants, plus a hash lookup.

use proto::geometry::{self, block_len, blocks_in_piece_len, piece_len};
use proto::peer::{Bitfield, BlockRef};
use std::collections::HashMap;

/// A connected peer, as numbered by the download. Use one id per remote user
/// for the whole download, so [`PieceTracker::peer_verified_bytes`] adds up
/// across reconnections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

/// A piece's state, as the picker and progress reports see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceStatus {
    Have,
    InFlight,
    Wanted,
}

/// A block's state seen from one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockStatus {
    /// Neither received nor requested from anyone.
    Wanted,
    /// Requested from `requesters` peers, this peer among them or not.
    Requested { by_peer: bool, requesters: u32 },
    /// Received (or the piece is verified).
    Received,
}

/// What to do with a block that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Keep the data (write it). `cancel`: other peers that still have this
    /// block requested (endgame); send them `Cancel`. `piece_complete`: every
    /// block of the piece is in; verify it, then call
    /// [`PieceTracker::mark_verified`] or [`PieceTracker::mark_corrupt`].
    Accepted {
        cancel: Vec<PeerId>,
        piece_complete: bool,
    },
    /// We already have this block (an endgame duplicate that crossed our
    /// `Cancel`): discard the data; not the peer's fault.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PieceError {
    #[error("piece {piece} does not exist ({count} pieces)")]
    NoSuchPiece { piece: u32, count: u32 },
    #[error("piece {piece} has no block {block}")]
    NoSuchBlock { piece: u32, block: u32 },
    #[error("piece {piece}: {len} bytes at {offset} is not one of our blocks")]
    NotABlock { piece: u32, offset: u32, len: u32 },
    #[error("piece {0} is already verified")]
    AlreadyHave(u32),
    #[error("piece {piece} block {block} is already received")]
    AlreadyReceived { piece: u32, block: u32 },
    #[error("piece {piece} block {block} is already requested from this peer")]
    AlreadyRequested { piece: u32, block: u32 },
    /// Data that this peer was not asked for (or no longer is: released,
    /// or its piece was discarded). Discard it; a peer that does this often
    /// is misbehaving.
    #[error("piece {piece} block {block} was not requested from this peer")]
    NotRequested { piece: u32, block: u32 },
    #[error("piece {0} is not complete")]
    NotComplete(u32),
    #[error("bitfield covers {got} pieces; the file has {count}")]
    BitfieldLength { got: u32, count: u32 },
}

/// Peers with a request outstanding for one block. Inline for the usual
/// single requester, so requesting a block allocates nothing; `more` is used
/// only by endgame duplicates.
#[derive(Debug, Default)]
struct Requesters {
    first: Option<PeerId>,
    /// Non-empty only if `first` is set.
    more: Vec<PeerId>,
}

impl Requesters {
    fn is_empty(&self) -> bool {
        self.first.is_none()
    }
    fn len(&self) -> u32 {
        u32::from(self.first.is_some()) + self.more.len() as u32
    }
    fn contains(&self, peer: PeerId) -> bool {
        self.first == Some(peer) || self.more.contains(&peer)
    }
    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.first.iter().chain(self.more.iter()).copied()
    }
    fn push(&mut self, peer: PeerId) {
        if self.first.is_none() {
            self.first = Some(peer);
        } else {
            self.more.push(peer);
        }
    }
    /// Returns whether `peer` was there.
    fn remove(&mut self, peer: PeerId) -> bool {
        if self.first == Some(peer) {
            self.first = self.more.pop();
            true
        } else if let Some(i) = self.more.iter().position(|&p| p == peer) {
            self.more.swap_remove(i);
            true
        } else {
            false
        }
    }
    /// Empties the set, returning who was in it (allocates only if anyone was).
    fn take_all(&mut self) -> Vec<PeerId> {
        let mut all = std::mem::take(&mut self.more);
        all.extend(self.first.take());
        all
    }
}

#[derive(Debug, Default)]
struct Block {
    received_from: Option<PeerId>,
    requesters: Requesters,
}

#[derive(Debug)]
struct InFlight {
    blocks: Vec<Block>,
    received: u32,
}

#[derive(Debug)]
enum Piece {
    Wanted,
    InFlight(InFlight),
    Have,
}

#[derive(Debug, Default)]
struct PeerBook {
    /// `(piece, block)`; at most the pipeline depth (plus endgame
    /// duplicates), so linear scans are cheap.
    outstanding: Vec<(u32, u32)>,
    verified_bytes: u64,
}

const ABSENT: u32 = u32::MAX;

/// A set of piece indices with O(1) insert, remove and membership, listed as
/// a slice (in no particular order).
#[derive(Debug)]
struct IndexSet {
    items: Vec<u32>,
    pos: Vec<u32>,
}

impl IndexSet {
    fn new(capacity: u32) -> Self {
        IndexSet {
            items: Vec::new(),
            pos: vec![ABSENT; capacity as usize],
        }
    }
    fn insert(&mut self, i: u32) {
        if self.pos[i as usize] == ABSENT {
            self.pos[i as usize] = self.items.len() as u32;
            self.items.push(i);
        }
    }
    fn remove(&mut self, i: u32) {
        let p = self.pos[i as usize];
        if p == ABSENT {
            return;
        }
        self.items.swap_remove(p as usize);
        if let Some(&moved) = self.items.get(p as usize) {
            self.pos[moved as usize] = p;
        }
        self.pos[i as usize] = ABSENT;
    }
}

/// The state of every piece and block of one download. See the module
/// header for the invariant.
#[derive(Debug)]
pub struct PieceTracker {
    size: u64,
    pieces: Vec<Piece>,
    have: Bitfield,
    wanted: IndexSet,
    in_flight: IndexSet,
    unrequested_blocks: u64,
    verified_bytes: u64,
    peers: HashMap<PeerId, PeerBook>,
}

impl PieceTracker {
    /// A download of a file of `size` bytes with nothing verified yet.
    pub fn new(size: u64) -> Self {
        let count = geometry::piece_count(size);
        let mut wanted = IndexSet::new(count);
        let mut unrequested = 0u64;
        for p in 0..count {
            wanted.insert(p);
            unrequested += u64::from(geometry::block_count(size, p).unwrap_or(0));
        }
        PieceTracker {
            size,
            pieces: (0..count).map(|_| Piece::Wanted).collect(),
            have: Bitfield::new(count),
            wanted,
            in_flight: IndexSet::new(count),
            unrequested_blocks: unrequested,
            verified_bytes: 0,
            peers: HashMap::new(),
        }
    }

    /// A download resumed with `verified` pieces already on disk.
    ///
    /// # Errors
    /// [`PieceError::BitfieldLength`] if `verified` is for another size.
    pub fn with_verified(size: u64, verified: &Bitfield) -> Result<Self, PieceError> {
        let mut t = PieceTracker::new(size);
        let count = t.piece_count();
        if verified.len() != count {
            return Err(PieceError::BitfieldLength {
                got: verified.len(),
                count,
            });
        }
        for p in verified.ones() {
            t.pieces[p as usize] = Piece::Have;
            t.wanted.remove(p);
            // `p < count`: checked with the length above.
            let _ = t.have.set(p);
            t.unrequested_blocks -= u64::from(t.blocks_of(p));
            t.verified_bytes += u64::from(piece_len(size, p).unwrap_or(0));
        }
        Ok(t)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn piece_count(&self) -> u32 {
        self.pieces.len() as u32
    }

    /// Verified pieces: what we announce and what the resume file records.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Bytes of verified pieces (`bytes_done`).
    pub fn verified_bytes(&self) -> u64 {
        self.verified_bytes
    }

    /// Every piece verified (true at once for an empty file).
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// Pieces in state `Wanted`, in no particular order.
    pub fn wanted(&self) -> &[u32] {
        &self.wanted.items
    }

    /// Pieces in state `InFlight`, in no particular order.
    pub fn in_flight(&self) -> &[u32] {
        &self.in_flight.items
    }

    /// Blocks neither received nor requested from anyone.
    pub fn unrequested_blocks(&self) -> u64 {
        self.unrequested_blocks
    }

    /// Every missing block is requested from someone: time to ask other
    /// peers for the same blocks.
    pub fn is_endgame(&self) -> bool {
        self.unrequested_blocks == 0 && !self.is_complete()
    }

    /// `None` past the end.
    pub fn status(&self, piece: u32) -> Option<PieceStatus> {
        Some(match self.pieces.get(piece as usize)? {
            Piece::Have => PieceStatus::Have,
            Piece::InFlight(_) => PieceStatus::InFlight,
            Piece::Wanted => PieceStatus::Wanted,
        })
    }

    /// Blocks in `piece` (0 past the end).
    pub fn blocks_of(&self, piece: u32) -> u32 {
        piece_len(self.size, piece).map_or(0, blocks_in_piece_len)
    }

    /// State of a block seen from `peer`; `Received` past the end (nothing
    /// to fetch there).
    pub fn block_status(&self, piece: u32, block: u32, peer: PeerId) -> BlockStatus {
        match self.pieces.get(piece as usize) {
            Some(Piece::Wanted) if block < self.blocks_of(piece) => BlockStatus::Wanted,
            Some(Piece::InFlight(f)) => match f.blocks.get(block as usize) {
                Some(b) if b.received_from.is_some() => BlockStatus::Received,
                Some(b) if b.requesters.is_empty() => BlockStatus::Wanted,
                Some(b) => BlockStatus::Requested {
                    by_peer: b.requesters.contains(peer),
                    requesters: b.requesters.len(),
                },
                None => BlockStatus::Received,
            },
            _ => BlockStatus::Received,
        }
    }

    /// Requests `peer` has outstanding (to size its pipeline).
    pub fn peer_outstanding(&self, peer: PeerId) -> usize {
        self.peers.get(&peer).map_or(0, |b| b.outstanding.len())
    }

    /// Verified bytes that came from `peer`.
    pub fn peer_verified_bytes(&self, peer: PeerId) -> u64 {
        self.peers.get(&peer).map_or(0, |b| b.verified_bytes)
    }

    /// Every peer that contributed verified bytes, with how many (for
    /// `show_downloads`' `peers`), in id order.
    pub fn verified_by_peer(&self) -> Vec<(PeerId, u64)> {
        let mut v: Vec<_> = self
            .peers
            .iter()
            .filter(|(_, b)| b.verified_bytes > 0)
            .map(|(&p, b)| (p, b.verified_bytes))
            .collect();
        v.sort_unstable();
        v
    }

    fn check_piece(&self, piece: u32) -> Result<(), PieceError> {
        if piece as usize >= self.pieces.len() {
            return Err(PieceError::NoSuchPiece {
                piece,
                count: self.piece_count(),
            });
        }
        Ok(())
    }

    /// Records that `block` of `piece` is requested from `peer`, and returns
    /// the range to put in the `Request`. In endgame the block may already be
    /// requested from other peers.
    ///
    /// # Errors
    /// The piece or block does not exist, the piece is verified, the block
    /// is received, or `peer` already has this request outstanding.
    pub fn reserve_block(
        &mut self,
        peer: PeerId,
        piece: u32,
        block: u32,
    ) -> Result<BlockRef, PieceError> {
        self.check_piece(piece)?;
        let len =
            block_len(self.size, piece, block).ok_or(PieceError::NoSuchBlock { piece, block })?;
        let n_blocks = self.blocks_of(piece);
        let slot = &mut self.pieces[piece as usize];
        match slot {
            Piece::Have => return Err(PieceError::AlreadyHave(piece)),
            Piece::Wanted => {
                *slot = Piece::InFlight(InFlight {
                    blocks: (0..n_blocks).map(|_| Block::default()).collect(),
                    received: 0,
                });
                self.wanted.remove(piece);
                self.in_flight.insert(piece);
            }
            Piece::InFlight(_) => {}
        }
        let Piece::InFlight(f) = slot else {
            unreachable!("made in-flight just above")
        };
        let b = &mut f.blocks[block as usize];
        if b.received_from.is_some() {
            return Err(PieceError::AlreadyReceived { piece, block });
        }
        if b.requesters.contains(peer) {
            return Err(PieceError::AlreadyRequested { piece, block });
        }
        if b.requesters.is_empty() {
            self.unrequested_blocks -= 1;
        }
        b.requesters.push(peer);
        self.peers
            .entry(peer)
            .or_default()
            .outstanding
            .push((piece, block));
        Ok(BlockRef {
            piece,
            offset: geometry::block_offset(block),
            len,
        })
    }

    /// Resolves a `Piece` message's range to our block index.
    fn block_of(&self, piece: u32, offset: u32, len: u32) -> Result<u32, PieceError> {
        self.check_piece(piece)?;
        let not_a_block = PieceError::NotABlock { piece, offset, len };
        let block = geometry::block_index(offset).ok_or(not_a_block.clone())?;
        match block_len(self.size, piece, block) {
            Some(l) if l == len => Ok(block),
            _ => Err(not_a_block),
        }
    }

    fn forget_request(&mut self, peer: PeerId, piece: u32, block: u32) {
        if let Some(book) = self.peers.get_mut(&peer) {
            if let Some(i) = book.outstanding.iter().position(|&pb| pb == (piece, block)) {
                book.outstanding.swap_remove(i);
            }
        }
    }

    /// `len` bytes at `offset` of `piece` arrived from `peer`.
    ///
    /// # Errors
    /// The range is not one of our blocks (the peer is broken: drop it), or
    /// [`PieceError::NotRequested`] (discard the data).
    pub fn block_received(
        &mut self,
        peer: PeerId,
        piece: u32,
        offset: u32,
        len: u32,
    ) -> Result<BlockOutcome, PieceError> {
        let block = self.block_of(piece, offset, len)?;
        let f = match &mut self.pieces[piece as usize] {
            Piece::Have => return Ok(BlockOutcome::Duplicate),
            Piece::Wanted => return Err(PieceError::NotRequested { piece, block }),
            Piece::InFlight(f) => f,
        };
        let b = &mut f.blocks[block as usize];
        if b.received_from.is_some() {
            return Ok(BlockOutcome::Duplicate);
        }
        if !b.requesters.remove(peer) {
            return Err(PieceError::NotRequested { piece, block });
        }
        let cancel = b.requesters.take_all();
        b.received_from = Some(peer);
        f.received += 1;
        let piece_complete = f.received as usize == f.blocks.len();
        self.forget_request(peer, piece, block);
        for &other in &cancel {
            self.forget_request(other, piece, block);
        }
        Ok(BlockOutcome::Accepted {
            cancel,
            piece_complete,
        })
    }

    fn complete_piece(&self, piece: u32) -> Result<&InFlight, PieceError> {
        self.check_piece(piece)?;
        match &self.pieces[piece as usize] {
            Piece::Have => Err(PieceError::AlreadyHave(piece)),
            Piece::InFlight(f) if f.received as usize == f.blocks.len() => Ok(f),
            _ => Err(PieceError::NotComplete(piece)),
        }
    }

    /// A complete piece matched its SHA-1: it becomes `Have`, its bytes count
    /// as done, each block's bytes are credited to the peer that sent it.
    ///
    /// # Errors
    /// The piece is not complete, or already verified.
    pub fn mark_verified(&mut self, piece: u32) -> Result<(), PieceError> {
        self.complete_piece(piece)?;
        let Piece::InFlight(f) = &self.pieces[piece as usize] else {
            unreachable!("complete_piece checked it is in flight")
        };
        for (i, b) in f.blocks.iter().enumerate() {
            if let (Some(peer), Some(len)) =
                (b.received_from, block_len(self.size, piece, i as u32))
            {
                self.peers.entry(peer).or_default().verified_bytes += u64::from(len);
            }
        }
        self.pieces[piece as usize] = Piece::Have;
        self.in_flight.remove(piece);
        // In range: checked by complete_piece.
        let _ = self.have.set(piece);
        self.verified_bytes += u64::from(piece_len(self.size, piece).unwrap_or(0));
        Ok(())
    }

    /// A complete piece failed its SHA-1: it goes back to `Wanted`. Returns
    /// the peers that sent its blocks (deduplicated, in id order); the
    /// caller drops them for this download (with one contributor it is
    /// certainly the liar; with several, all are suspect).
    ///
    /// # Errors
    /// The piece is not complete, or already verified.
    pub fn mark_corrupt(&mut self, piece: u32) -> Result<Vec<PeerId>, PieceError> {
        let f = self.complete_piece(piece)?;
        let mut peers: Vec<PeerId> = f.blocks.iter().filter_map(|b| b.received_from).collect();
        peers.sort_unstable();
        peers.dedup();
        let n = f.blocks.len() as u64;
        self.pieces[piece as usize] = Piece::Wanted;
        self.in_flight.remove(piece);
        self.wanted.insert(piece);
        self.unrequested_blocks += n;
        Ok(peers)
    }

    /// Takes back one request of `peer` (it answered `Reject`, it timed out,
    /// or we cancelled it). Returns whether the request was outstanding.
    pub fn release_block(&mut self, peer: PeerId, piece: u32, block: u32) -> bool {
        let outstanding = self
            .peers
            .get(&peer)
            .is_some_and(|b| b.outstanding.contains(&(piece, block)));
        if outstanding {
            self.forget_request(peer, piece, block);
            self.unrequest(peer, piece, block);
        }
        outstanding
    }

    /// Every request of `peer` goes back to the others (it disconnected,
    /// stalled or lied). Its verified bytes stay credited. Returns how many
    /// requests were released.
    pub fn release_peer(&mut self, peer: PeerId) -> usize {
        let Some(book) = self.peers.get_mut(&peer) else {
            return 0;
        };
        let released = std::mem::take(&mut book.outstanding);
        for &(piece, block) in &released {
            self.unrequest(peer, piece, block);
        }
        released.len()
    }

    /// Removes `peer` from a block's requesters (its book is already
    /// updated); the block becomes wanted if nobody else asked, and the piece
    /// `Wanted` if nothing of it is requested or received any more.
    fn unrequest(&mut self, peer: PeerId, piece: u32, block: u32) {
        let Some(Piece::InFlight(f)) = self.pieces.get_mut(piece as usize) else {
            return;
        };
        let Some(b) = f.blocks.get_mut(block as usize) else {
            return;
        };
        if !b.requesters.remove(peer) {
            return;
        }
        if b.requesters.is_empty() && b.received_from.is_none() {
            self.unrequested_blocks += 1;
        }
        let untouched = f.received == 0 && f.blocks.iter().all(|b| b.requesters.is_empty());
        if untouched {
            self.pieces[piece as usize] = Piece::Wanted;
            self.in_flight.remove(piece);
            self.wanted.insert(piece);
        }
    }

    /// Checks the module invariant; for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut unrequested = 0u64;
        let mut verified = 0u64;
        let mut requests = 0usize;
        for (p, piece) in self.pieces.iter().enumerate() {
            let p = p as u32;
            let in_wanted = self.wanted.pos[p as usize] != ABSENT;
            let in_flight = self.in_flight.pos[p as usize] != ABSENT;
            match piece {
                Piece::Have => {
                    assert!(self.have.has(p) && !in_wanted && !in_flight, "piece {p}");
                    verified += u64::from(piece_len(self.size, p).unwrap());
                }
                Piece::Wanted => {
                    assert!(!self.have.has(p) && in_wanted && !in_flight, "piece {p}");
                    unrequested += u64::from(self.blocks_of(p));
                }
                Piece::InFlight(f) => {
                    assert!(!self.have.has(p) && !in_wanted && in_flight, "piece {p}");
                    assert_eq!(f.blocks.len() as u32, self.blocks_of(p));
                    let received = f.blocks.iter().filter(|b| b.received_from.is_some());
                    assert_eq!(received.count() as u32, f.received);
                    assert!(
                        f.received > 0 || f.blocks.iter().any(|b| !b.requesters.is_empty()),
                        "untouched in-flight piece {p}"
                    );
                    for (i, b) in f.blocks.iter().enumerate() {
                        if b.received_from.is_some() {
                            assert!(b.requesters.is_empty());
                        } else if b.requesters.is_empty() {
                            unrequested += 1;
                        }
                        assert!(b.requesters.first.is_some() || b.requesters.more.is_empty());
                        for r in b.requesters.iter() {
                            requests += 1;
                            assert!(self.peers[&r].outstanding.contains(&(p, i as u32)));
                        }
                    }
                }
            }
        }
        assert_eq!(unrequested, self.unrequested_blocks);
        assert_eq!(verified, self.verified_bytes);
        let outstanding: usize = self.peers.values().map(|b| b.outstanding.len()).sum();
        assert_eq!(outstanding, requests);
        for (i, &p) in self.wanted.items.iter().enumerate() {
            assert_eq!(self.wanted.pos[p as usize], i as u32);
        }
        for (i, &p) in self.in_flight.items.iter().enumerate() {
            assert_eq!(self.in_flight.pos[p as usize], i as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::geometry::{BLOCK_SIZE_BYTES as B, PIECE_SIZE_BYTES as P};
    use rand::{Rng, SeedableRng};

    const A: PeerId = PeerId(1);
    const C: PeerId = PeerId(2);

    /// Fetches every block of every piece from `peer` and verifies it.
    fn download_all(t: &mut PieceTracker, peer: PeerId) {
        while let Some(&p) = t.wanted().first() {
            let n = t.blocks_of(p);
            for b in 0..n {
                let r = t.reserve_block(peer, p, b).unwrap();
                t.check_invariants();
                let out = t.block_received(peer, r.piece, r.offset, r.len).unwrap();
                assert_eq!(
                    out,
                    BlockOutcome::Accepted {
                        cancel: vec![],
                        piece_complete: b + 1 == n
                    }
                );
                t.check_invariants();
            }
            t.mark_verified(p).unwrap();
            t.check_invariants();
        }
    }

    #[test]
    fn whole_download_at_edge_sizes() {
        for size in [0, 1, P - 1, P, P + 1, 3 * P + B as u64 + 9] {
            let mut t = PieceTracker::new(size);
            t.check_invariants();
            assert_eq!(t.is_complete(), size == 0, "size {size}");
            assert!(!t.is_endgame());
            download_all(&mut t, A);
            assert!(t.is_complete());
            assert!(!t.is_endgame());
            assert_eq!(t.verified_bytes(), size);
            assert_eq!(t.peer_verified_bytes(A), size);
            assert_eq!(t.unrequested_blocks(), 0);
            let expect = if size == 0 { vec![] } else { vec![(A, size)] };
            assert_eq!(t.verified_by_peer(), expect);
        }
    }

    #[test]
    fn short_last_piece_blocks() {
        let size = 2 * P + B as u64 + 7;
        let mut t = PieceTracker::new(size);
        assert_eq!(t.piece_count(), 3);
        assert_eq!(t.blocks_of(2), 2);
        assert_eq!(t.unrequested_blocks(), 4 + 4 + 2);
        let r = t.reserve_block(A, 2, 1).unwrap();
        assert_eq!(
            r,
            BlockRef {
                piece: 2,
                offset: B,
                len: 7
            }
        );
        assert_eq!(t.status(2), Some(PieceStatus::InFlight));
        assert_eq!(
            t.reserve_block(A, 2, 2),
            Err(PieceError::NoSuchBlock { piece: 2, block: 2 })
        );
        // The wrong length for the short block is not our block.
        assert!(matches!(
            t.block_received(A, 2, B, B),
            Err(PieceError::NotABlock { .. })
        ));
        assert!(matches!(
            t.block_received(A, 2, B, 7),
            Ok(BlockOutcome::Accepted {
                piece_complete: false,
                ..
            })
        ));
        t.check_invariants();
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut t = PieceTracker::new(P + 1);
        assert!(matches!(
            t.reserve_block(A, 2, 0),
            Err(PieceError::NoSuchPiece { .. })
        ));
        assert!(t.reserve_block(A, u32::MAX, 0).is_err());
        assert!(t.reserve_block(A, 0, u32::MAX).is_err());
        assert!(t.block_received(A, u32::MAX, 0, 1).is_err());
        assert!(t.block_received(A, 0, 1, B).is_err());
        assert!(t.block_received(A, 0, u32::MAX, B).is_err());
        assert_eq!(
            t.block_received(A, 0, 0, B),
            Err(PieceError::NotRequested { piece: 0, block: 0 })
        );
        t.reserve_block(A, 0, 0).unwrap();
        assert_eq!(
            t.reserve_block(A, 0, 0),
            Err(PieceError::AlreadyRequested { piece: 0, block: 0 })
        );
        assert_eq!(
            t.block_received(C, 0, 0, B),
            Err(PieceError::NotRequested { piece: 0, block: 0 })
        );
        assert_eq!(t.mark_verified(0), Err(PieceError::NotComplete(0)));
        assert_eq!(t.mark_corrupt(1), Err(PieceError::NotComplete(1)));
        assert!(t.mark_verified(9).is_err());
        assert!(!t.release_block(C, 0, 0));
        assert_eq!(t.release_peer(PeerId(99)), 0);
        t.check_invariants();
    }

    #[test]
    fn corrupt_piece_goes_back_and_names_contributors() {
        let mut t = PieceTracker::new(P);
        for (b, peer) in [(0, A), (1, C), (2, A), (3, A)] {
            t.reserve_block(peer, 0, b).unwrap();
        }
        for (b, peer) in [(0, A), (1, C), (2, A), (3, A)] {
            t.block_received(peer, 0, b * B, B).unwrap();
        }
        t.check_invariants();
        assert_eq!(t.mark_corrupt(0), Ok(vec![A, C]));
        t.check_invariants();
        assert_eq!(t.status(0), Some(PieceStatus::Wanted));
        assert_eq!(t.unrequested_blocks(), 4);
        assert_eq!(t.verified_bytes(), 0);
        assert_eq!(t.peer_verified_bytes(A), 0);
        // A late duplicate for the discarded piece is not requested.
        assert!(matches!(
            t.block_received(A, 0, 0, B),
            Err(PieceError::NotRequested { .. })
        ));
        download_all(&mut t, C);
        assert_eq!(t.verified_by_peer(), vec![(C, P)]);
        assert_eq!(t.mark_verified(0), Err(PieceError::AlreadyHave(0)));
        assert_eq!(t.reserve_block(A, 0, 0), Err(PieceError::AlreadyHave(0)));
        assert_eq!(t.block_received(A, 0, 0, B), Ok(BlockOutcome::Duplicate));
    }

    #[test]
    fn per_peer_credit_is_by_block() {
        let size = P + 5;
        let mut t = PieceTracker::new(size);
        for (p, b, peer) in [(0, 0, A), (0, 1, C), (0, 2, C), (0, 3, C), (1, 0, A)] {
            let r = t.reserve_block(peer, p, b).unwrap();
            t.block_received(peer, r.piece, r.offset, r.len).unwrap();
        }
        t.mark_verified(0).unwrap();
        t.mark_verified(1).unwrap();
        assert_eq!(
            t.verified_by_peer(),
            vec![(A, B as u64 + 5), (C, 3 * B as u64)]
        );
        assert_eq!(t.verified_bytes(), size);
    }

    #[test]
    fn release_peer_returns_its_blocks() {
        let mut t = PieceTracker::new(2 * P);
        for b in 0..4 {
            t.reserve_block(A, 0, b).unwrap();
        }
        t.reserve_block(A, 1, 0).unwrap();
        t.reserve_block(C, 1, 1).unwrap();
        t.block_received(A, 0, 0, B).unwrap();
        assert_eq!(t.peer_outstanding(A), 4);
        assert_eq!(t.unrequested_blocks(), 2);
        assert_eq!(t.release_peer(A), 4);
        t.check_invariants();
        assert_eq!(t.peer_outstanding(A), 0);
        // Piece 0 keeps its received block; piece 1 is still in flight (C).
        assert_eq!(t.status(0), Some(PieceStatus::InFlight));
        assert_eq!(t.status(1), Some(PieceStatus::InFlight));
        assert_eq!(t.unrequested_blocks(), 3 + 3);
        assert_eq!(t.block_status(0, 0, A), BlockStatus::Received);
        assert_eq!(t.block_status(0, 1, A), BlockStatus::Wanted);
        // C goes too: piece 1 is untouched again.
        assert_eq!(t.release_peer(C), 1);
        assert_eq!(t.status(1), Some(PieceStatus::Wanted));
        assert_eq!(t.in_flight(), &[0]);
        t.check_invariants();
        // A's late data is not requested any more.
        assert!(t.block_received(A, 0, B, B).is_err());
    }

    #[test]
    fn release_block_after_reject() {
        let mut t = PieceTracker::new(P);
        t.reserve_block(A, 0, 2).unwrap();
        assert!(t.release_block(A, 0, 2));
        assert!(!t.release_block(A, 0, 2));
        assert_eq!(t.status(0), Some(PieceStatus::Wanted));
        t.check_invariants();
    }

    #[test]
    fn endgame_duplicates_and_cancels() {
        let mut t = PieceTracker::new(B as u64 * 2);
        t.reserve_block(A, 0, 0).unwrap();
        assert!(!t.is_endgame());
        t.reserve_block(A, 0, 1).unwrap();
        assert!(t.is_endgame());
        t.reserve_block(C, 0, 1).unwrap();
        assert_eq!(
            t.block_status(0, 1, C),
            BlockStatus::Requested {
                by_peer: true,
                requesters: 2
            }
        );
        t.check_invariants();
        assert_eq!(
            t.block_received(C, 0, B, B),
            Ok(BlockOutcome::Accepted {
                cancel: vec![A],
                piece_complete: false
            })
        );
        t.check_invariants();
        assert_eq!(t.peer_outstanding(A), 1);
        assert_eq!(t.peer_outstanding(C), 0);
        assert_eq!(t.block_received(A, 0, B, B), Ok(BlockOutcome::Duplicate));
        t.block_received(A, 0, 0, B).unwrap();
        t.mark_verified(0).unwrap();
        assert!(t.is_complete() && !t.is_endgame());
        assert_eq!(t.verified_by_peer(), vec![(A, B as u64), (C, B as u64)]);
    }

    #[test]
    fn resume_from_verified_bitfield() {
        let size = 3 * P + 1;
        let mut bits = Bitfield::new(4);
        bits.set(1).unwrap();
        bits.set(3).unwrap();
        let mut t = PieceTracker::with_verified(size, &bits).unwrap();
        t.check_invariants();
        assert_eq!(t.verified_bytes(), P + 1);
        assert_eq!(t.have(), &bits);
        assert_eq!(t.unrequested_blocks(), 8);
        assert_eq!(t.peer_verified_bytes(A), 0);
        download_all(&mut t, A);
        assert_eq!(t.verified_bytes(), size);
        assert_eq!(t.peer_verified_bytes(A), 2 * P);
        assert!(matches!(
            PieceTracker::with_verified(size, &Bitfield::new(3)),
            Err(PieceError::BitfieldLength { got: 3, count: 4 })
        ));
        let t = PieceTracker::with_verified(P, &Bitfield::full(1)).unwrap();
        assert!(t.is_complete());
    }

    /// Random operations from several peers keep the invariant, and the
    /// download always finishes once one honest peer is left.
    #[test]
    fn random_operations_keep_the_invariant() {
        for seed in 0..40 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let size = rng.gen_range(0..6 * P);
            let mut t = PieceTracker::new(size);
            let n = t.piece_count();
            for _ in 0..400 {
                if n == 0 {
                    break;
                }
                let peer = PeerId(rng.gen_range(0..4));
                let piece = rng.gen_range(0..n);
                let block = rng.gen_range(0..geometry::MAX_BLOCKS_PER_PIECE);
                match rng.gen_range(0..10) {
                    0..=3 => {
                        let _ = t.reserve_block(peer, piece, block);
                    }
                    4..=6 => {
                        let len = block_len(size, piece, block).unwrap_or(1);
                        if let Ok(BlockOutcome::Accepted {
                            piece_complete: true,
                            ..
                        }) = t.block_received(peer, piece, geometry::block_offset(block), len)
                        {
                            if rng.gen_bool(0.8) {
                                t.mark_verified(piece).unwrap();
                            } else {
                                assert!(!t.mark_corrupt(piece).unwrap().is_empty());
                            }
                        }
                    }
                    7 => {
                        t.release_block(peer, piece, block);
                    }
                    8 => {
                        t.release_peer(peer);
                    }
                    _ => {
                        let _ = t.mark_verified(piece);
                    }
                }
                t.check_invariants();
            }
            for p in 0..4 {
                t.release_peer(PeerId(p));
            }
            t.check_invariants();
            // Finish: in-flight pieces first (their missing blocks), then the rest.
            let honest = PeerId(9);
            for p in t.in_flight().to_vec() {
                for b in 0..t.blocks_of(p) {
                    if t.block_status(p, b, honest) == BlockStatus::Wanted {
                        let r = t.reserve_block(honest, p, b).unwrap();
                        t.block_received(honest, p, r.offset, r.len).unwrap();
                    }
                }
                t.mark_verified(p).unwrap();
            }
            download_all(&mut t, honest);
            assert!(t.is_complete(), "seed {seed}");
            assert_eq!(t.verified_bytes(), size);
            let credited: u64 = t.verified_by_peer().iter().map(|&(_, b)| b).sum();
            assert_eq!(credited, size);
        }
    }
}
