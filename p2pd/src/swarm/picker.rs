//! Which blocks to request next from one peer.
//!
//! [`pick_blocks`] is a pure function over a small trait, [`Mediator`]
//! (after Transmission's `Wishlist::Mediator`): the download implements it
//! with [`LiveView`] over its [`PieceTracker`], tests with a fake. It only
//! reads; the caller reserves each pick with
//! [`PieceTracker::reserve_block`] and sends the `Request`s.
//!
//! Rules, in order, until `max` blocks are picked:
//! 1. Never a piece the peer lacks.
//! 2. Finish what is in flight: wanted blocks of in-flight pieces first, so
//!    pieces complete (and become servable) fast.
//! 3. Then a new piece, all its blocks: the rarest (fewest connected peers
//!    have it), ties broken at random; while we have no verified piece, a
//!    uniformly random one instead, so we soon have something to share.
//!    Where the random tie-break draws from depends on whether our sources
//!    are shared ([`Mediator::spread`]):
//!    - alone (nobody else fetches from our sources): among the
//!      [`TIE_WINDOW_PIECES`] lowest-indexed rarest pieces, so the verified
//!      prefix grows nearly in order and the whole-file hash keeps up with
//!      the download (a fast download from several seeders costs no extra
//!      pass over the file at the end);
//!    - shared (a source told us it serves others the same file): over the
//!      whole file. Downloaders starting together then take different
//!      pieces from the one seeder, so it sends each piece about once and
//!      they trade the rest (rarest first with random ties, as BitTorrent
//!      does; Legout et al. 2006). A window would have them all chase the
//!      same 32 pieces. The cost: the whole-file hash runs mostly at the
//!      end (measured with `bench/flashcrowd.sh`, 12 downloaders of 256 MiB
//!      finishing together on 2 cores: the last 180-260 MB hashed in
//!      0.8-1.2 s each, against 17.6 s for the crowd).
//! 4. Endgame, once every missing block is requested (counting this call's
//!    picks): blocks requested from *other* peers only, as duplicates
//!    ([`BlockPick::duplicate`]). The first copy to arrive wins; the caller
//!    sends `Cancel` to the others ([`super::pieces::BlockOutcome`] names
//!    them).
//!
//! Cost: rules 2 and 4 scan the in-flight pieces (bounded by peers times
//! pipeline depth); rule 3 scans the wanted pieces once per new piece, i.e.
//! once per [`proto::geometry::MAX_BLOCKS_PER_PIECE`] blocks.
//! At 2,048 pieces (1 GiB) a top-up costs ~40 µs mid-download (`cargo
//! bench -p p2pd --bench picker`), a few tenths of a CPU second per GiB.

use super::pieces::{BlockStatus, PeerId, PieceTracker};
use proto::peer::Bitfield;
use rand::Rng;

/// Requests kept outstanding per peer: 16 blocks of 128 KiB = 2 MiB, enough
/// to keep a fast peer busy over a round trip of a few milliseconds at
/// several hundred MB/s.
pub const PIPELINE_DEPTH_BLOCKS: usize = 16;

/// Requests one download keeps outstanding over all its peers (6 MiB):
/// up to three peers get the full [`PIPELINE_DEPTH_BLOCKS`] each, more
/// share it. Every outstanding block sits in memory once it arrives
/// (queued for the download task, then held with its piece until the piece
/// is verified and written), so the budget bounds a download's memory
/// whatever its number of peers: with a fixed depth per peer, 8 seeders
/// had 16 MiB of blocks coming at once and the downloader peaked at
/// 38-45 MiB RSS; with the budget, 28.5-33.3 MiB (median 30) and no
/// slower (README, performance).
pub const DOWNLOAD_DEPTH_BLOCKS: usize = 48;

/// Least depth a peer is given, however many share the budget.
pub const MIN_PIPELINE_DEPTH_BLOCKS: usize = 3;

/// Outstanding requests each of `peers` ready peers is topped up to.
pub fn pipeline_depth(peers: usize) -> usize {
    (DOWNLOAD_DEPTH_BLOCKS / peers.max(1)).clamp(MIN_PIPELINE_DEPTH_BLOCKS, PIPELINE_DEPTH_BLOCKS)
}

/// Equally rare pieces are drawn at random from this many indices from the
/// lowest one on: random enough that peers do not all chase one piece, in
/// order enough that the file's verified prefix (hashed as it grows, see
/// `prefix_hash`) trails the download by a few MiB only.
pub const TIE_WINDOW_PIECES: u32 = 32;

/// What the picker needs to know, seen from the peer it picks for.
pub trait Mediator {
    /// The peer has this (verified) piece.
    fn peer_has(&self, piece: u32) -> bool;
    /// How many connected peers have the piece.
    fn availability(&self, piece: u32) -> u32;
    /// How many pieces we have verified.
    fn have_count(&self) -> u32;
    /// Pieces nobody has touched, in any order.
    fn wanted_pieces(&self) -> &[u32];
    /// Pieces partly requested or received, in any order.
    fn in_flight_pieces(&self) -> &[u32];
    fn block_count(&self, piece: u32) -> u32;
    /// A block's state, `by_peer` meaning the peer picked for.
    fn block_status(&self, piece: u32, block: u32) -> BlockStatus;
    /// Blocks neither received nor requested, over the whole file.
    fn unrequested_blocks(&self) -> u64;
    /// Whether our sources serve other downloaders of this file too: break
    /// ties over the whole file instead of the lowest window.
    fn spread(&self) -> bool;
}

/// One block to request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockPick {
    pub piece: u32,
    pub block: u32,
    /// Endgame: the block is also requested from another peer.
    pub duplicate: bool,
}

/// Appends up to `max` blocks to request from the peer `m` describes (pass
/// `PIPELINE_DEPTH_BLOCKS - outstanding`). `out` is the caller's buffer,
/// reused between calls; nothing is picked twice within one call. Returns
/// how many were appended (0: the peer has nothing we still want).
pub fn pick_blocks<M, R>(m: &M, rng: &mut R, max: usize, out: &mut Vec<BlockPick>) -> usize
where
    M: Mediator + ?Sized,
    R: Rng + ?Sized,
{
    let start = out.len();
    let full = |out: &Vec<BlockPick>| out.len() - start >= max;
    if max == 0 {
        return 0;
    }

    // 2. Wanted blocks of in-flight pieces.
    for &piece in m.in_flight_pieces() {
        if !m.peer_has(piece) {
            continue;
        }
        for block in 0..m.block_count(piece) {
            if full(out) {
                return max;
            }
            if m.block_status(piece, block) == BlockStatus::Wanted {
                out.push(BlockPick {
                    piece,
                    block,
                    duplicate: false,
                });
            }
        }
    }

    // 3. New pieces.
    let random_first = m.have_count() == 0;
    let mut new_pieces: Vec<u32> = Vec::new();
    while !full(out) {
        let Some(piece) = choose_new_piece(m, rng, random_first, &new_pieces) else {
            break;
        };
        new_pieces.push(piece);
        for block in 0..m.block_count(piece) {
            if full(out) {
                break;
            }
            out.push(BlockPick {
                piece,
                block,
                duplicate: false,
            });
        }
    }

    // 4. Endgame: every missing block is requested (ours included).
    let fresh = (out.len() - start) as u64;
    if !full(out) && m.unrequested_blocks() <= fresh {
        let flying = m.in_flight_pieces();
        // A random starting point, so peers in endgame spread over blocks.
        let skip = if flying.is_empty() {
            0
        } else {
            rng.gen_range(0..flying.len())
        };
        for &piece in flying.iter().cycle().skip(skip).take(flying.len()) {
            if !m.peer_has(piece) {
                continue;
            }
            for block in 0..m.block_count(piece) {
                if full(out) {
                    return max;
                }
                if let BlockStatus::Requested { by_peer: false, .. } = m.block_status(piece, block)
                {
                    out.push(BlockPick {
                        piece,
                        block,
                        duplicate: true,
                    });
                }
            }
        }
    }
    out.len() - start
}

/// A wanted piece the peer has and this call has not taken: uniformly
/// random if `random`, else the rarest with a uniformly random tie-break,
/// over the whole file if [`Mediator::spread`], else among those within
/// [`TIE_WINDOW_PIECES`] of the lowest-indexed rarest one (reservoir
/// sampling, no allocation; a second pass finds the window).
fn choose_new_piece<M, R>(m: &M, rng: &mut R, random: bool, taken: &[u32]) -> Option<u32>
where
    M: Mediator + ?Sized,
    R: Rng + ?Sized,
{
    let candidate = |piece: u32| m.peer_has(piece) && !taken.contains(&piece);
    // Pass 1: the rarity to pick at and the window of indices.
    let mut end = u32::MAX;
    if !random && !m.spread() {
        let mut rarest = u32::MAX;
        let mut lowest = u32::MAX;
        for &piece in m.wanted_pieces() {
            if !candidate(piece) {
                continue;
            }
            let avail = m.availability(piece);
            if avail < rarest || (avail == rarest && piece < lowest) {
                rarest = avail;
                lowest = piece;
            }
        }
        end = lowest.saturating_add(TIE_WINDOW_PIECES);
    }
    // Pass 2: uniformly among the rarest inside the window.
    let mut best: Option<u32> = None;
    let mut best_avail = u32::MAX;
    let mut ties = 0u32;
    for &piece in m.wanted_pieces() {
        if piece >= end || !m.peer_has(piece) {
            continue;
        }
        let avail = if random { 0 } else { m.availability(piece) };
        if avail > best_avail || taken.contains(&piece) {
            continue;
        }
        if avail < best_avail {
            best_avail = avail;
            ties = 0;
        }
        ties += 1;
        if rng.gen_range(0..ties) == 0 {
            best = Some(piece);
        }
    }
    best
}

/// The live [`Mediator`]: a download's piece state, seen from one peer.
pub struct LiveView<'a> {
    pub pieces: &'a PieceTracker,
    pub peer: PeerId,
    /// The peer's verified pieces (its `Bitfield` and `Have`s).
    pub peer_has: &'a Bitfield,
    pub availability: &'a Availability,
    /// See [`Mediator::spread`].
    pub spread: bool,
}

impl Mediator for LiveView<'_> {
    fn peer_has(&self, piece: u32) -> bool {
        self.peer_has.has(piece)
    }
    fn availability(&self, piece: u32) -> u32 {
        self.availability.get(piece)
    }
    fn have_count(&self) -> u32 {
        self.pieces.have().count()
    }
    fn wanted_pieces(&self) -> &[u32] {
        self.pieces.wanted()
    }
    fn in_flight_pieces(&self) -> &[u32] {
        self.pieces.in_flight()
    }
    fn block_count(&self, piece: u32) -> u32 {
        self.pieces.blocks_of(piece)
    }
    fn block_status(&self, piece: u32, block: u32) -> BlockStatus {
        self.pieces.block_status(piece, block, self.peer)
    }
    fn unrequested_blocks(&self) -> u64 {
        self.pieces.unrequested_blocks()
    }
    fn spread(&self) -> bool {
        self.spread
    }
}

/// How many connected peers have each piece. Add a peer's bitfield when it
/// arrives, each `Have` as it comes, and remove the peer's bitfield when it
/// disconnects.
#[derive(Debug, Clone)]
pub struct Availability {
    counts: Vec<u32>,
}

impl Availability {
    pub fn new(pieces: u32) -> Self {
        Availability {
            counts: vec![0; pieces as usize],
        }
    }

    /// 0 past the end.
    pub fn get(&self, piece: u32) -> u32 {
        self.counts.get(piece as usize).copied().unwrap_or(0)
    }

    pub fn add_peer(&mut self, has: &Bitfield) {
        for p in has.ones() {
            if let Some(c) = self.counts.get_mut(p as usize) {
                *c += 1;
            }
        }
    }

    pub fn remove_peer(&mut self, has: &Bitfield) {
        for p in has.ones() {
            if let Some(c) = self.counts.get_mut(p as usize) {
                *c = c.saturating_sub(1);
            }
        }
    }

    /// A peer announced `piece` (call only when its bitfield newly set it).
    pub fn add_have(&mut self, piece: u32) {
        if let Some(c) = self.counts.get_mut(piece as usize) {
            *c += 1;
        }
    }

    /// A peer turned out not to have `piece` after all (it answered
    /// `Reject`); call only when its bitfield had it set.
    pub fn remove_have(&mut self, piece: u32) {
        if let Some(c) = self.counts.get_mut(piece as usize) {
            *c = c.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod swarm_sim;

#[cfg(test)]
mod tests {
    use super::*;
    use proto::geometry;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::{HashMap, HashSet};

    /// A hand-built world: 4 blocks per piece, explicit block states.
    #[derive(Default)]
    struct Fake {
        has: HashSet<u32>,
        avail: HashMap<u32, u32>,
        have_count: u32,
        wanted: Vec<u32>,
        in_flight: Vec<u32>,
        blocks: HashMap<(u32, u32), BlockStatus>,
        unrequested: u64,
        spread: bool,
    }

    impl Fake {
        fn new(pieces: u32) -> Self {
            Fake {
                wanted: (0..pieces).collect(),
                unrequested: u64::from(pieces) * 4,
                ..Fake::default()
            }
        }
        fn peer_has_all(mut self, n: u32) -> Self {
            self.has = (0..n).collect();
            self
        }
    }

    impl Mediator for Fake {
        fn peer_has(&self, piece: u32) -> bool {
            self.has.contains(&piece)
        }
        fn availability(&self, piece: u32) -> u32 {
            self.avail.get(&piece).copied().unwrap_or(1)
        }
        fn have_count(&self) -> u32 {
            self.have_count
        }
        fn wanted_pieces(&self) -> &[u32] {
            &self.wanted
        }
        fn in_flight_pieces(&self) -> &[u32] {
            &self.in_flight
        }
        fn block_count(&self, _piece: u32) -> u32 {
            4
        }
        fn block_status(&self, piece: u32, block: u32) -> BlockStatus {
            self.blocks
                .get(&(piece, block))
                .copied()
                .unwrap_or(BlockStatus::Wanted)
        }
        fn unrequested_blocks(&self) -> u64 {
            self.unrequested
        }
        fn spread(&self) -> bool {
            self.spread
        }
    }

    fn pick(m: &Fake, seed: u64, max: usize) -> Vec<BlockPick> {
        let mut out = Vec::new();
        let n = pick_blocks(m, &mut StdRng::seed_from_u64(seed), max, &mut out);
        assert_eq!(n, out.len());
        assert!(n <= max);
        out
    }

    fn pieces_of(picks: &[BlockPick]) -> Vec<u32> {
        let mut v: Vec<u32> = picks.iter().map(|p| p.piece).collect();
        v.dedup();
        v
    }

    #[test]
    fn peers_share_the_download_budget_of_outstanding_requests() {
        // Up to three peers keep the full pipeline; more split the budget
        // (beyond 16 peers each keeps the least depth, which the download's
        // own peer limit rules out: see MAX_PEERS_PER_DOWNLOAD).
        assert_eq!(pipeline_depth(0), PIPELINE_DEPTH_BLOCKS);
        assert_eq!(pipeline_depth(1), PIPELINE_DEPTH_BLOCKS);
        assert_eq!(pipeline_depth(3), PIPELINE_DEPTH_BLOCKS);
        assert_eq!(pipeline_depth(4), DOWNLOAD_DEPTH_BLOCKS / 4);
        assert_eq!(pipeline_depth(8), DOWNLOAD_DEPTH_BLOCKS / 8);
        for peers in 1..=64 {
            let depth = pipeline_depth(peers);
            assert!(depth >= MIN_PIPELINE_DEPTH_BLOCKS, "{peers} peers");
            let floor = peers * MIN_PIPELINE_DEPTH_BLOCKS;
            assert!(
                peers * depth <= DOWNLOAD_DEPTH_BLOCKS.max(floor),
                "{peers} peers"
            );
        }
    }

    #[test]
    fn rarest_first() {
        let mut m = Fake::new(6).peer_has_all(6);
        m.have_count = 1;
        m.avail = [(0, 5), (1, 3), (2, 1), (3, 4), (4, 2), (5, 6)].into();
        for seed in 0..20 {
            let picks = pick(&m, seed, 12);
            assert_eq!(pieces_of(&picks), [2, 4, 1], "seed {seed}");
            assert_eq!(
                picks[..4].iter().map(|p| p.block).collect::<Vec<_>>(),
                [0, 1, 2, 3]
            );
            assert!(picks.iter().all(|p| !p.duplicate));
        }
    }

    #[test]
    fn ties_are_broken_at_random() {
        let mut m = Fake::new(4).peer_has_all(4);
        m.have_count = 1;
        m.avail = [(0, 2), (1, 1), (2, 1), (3, 1)].into();
        let firsts: HashSet<u32> = (0..50).map(|s| pick(&m, s, 1)[0].piece).collect();
        assert_eq!(firsts, [1, 2, 3].into());
    }

    #[test]
    fn ties_prefer_low_indices_within_a_window() {
        let n = 4 * TIE_WINDOW_PIECES;
        let mut m = Fake::new(n).peer_has_all(n);
        m.have_count = 1;
        // Piece n-1 is rarer than all: rarity still comes first.
        m.avail = (0..n)
            .map(|p| (p, if p == n - 1 { 1 } else { 3 }))
            .collect();
        m.avail.insert(5, 2);
        for seed in 0..20 {
            assert_eq!(pick(&m, seed, 1)[0].piece, n - 1, "seed {seed}");
        }
        m.avail.insert(n - 1, 3);
        for seed in 0..20 {
            assert_eq!(pick(&m, seed, 1)[0].piece, 5, "seed {seed}");
        }
        // All equal: random, but only among the lowest TIE_WINDOW_PIECES.
        m.avail.insert(5, 3);
        m.wanted.retain(|&p| p >= 10);
        let firsts: HashSet<u32> = (0..400).map(|s| pick(&m, s, 1)[0].piece).collect();
        assert!(
            firsts
                .iter()
                .all(|&p| (10..10 + TIE_WINDOW_PIECES).contains(&p)),
            "{firsts:?}"
        );
        assert!(firsts.len() > TIE_WINDOW_PIECES as usize / 2, "{firsts:?}");
    }

    #[test]
    fn spread_draws_ties_from_the_whole_file() {
        let n = 8 * TIE_WINDOW_PIECES;
        let mut m = Fake::new(n).peer_has_all(n);
        m.have_count = 1;
        m.spread = true;
        let firsts: HashSet<u32> = (0..400).map(|s| pick(&m, s, 1)[0].piece).collect();
        assert!(
            firsts
                .iter()
                .filter(|&&p| p >= 4 * TIE_WINDOW_PIECES)
                .count()
                > 20,
            "{firsts:?}"
        );
        // Rarity still comes first.
        m.avail = [(n - 3, 0)].into();
        for seed in 0..20 {
            assert_eq!(pick(&m, seed, 1)[0].piece, n - 3, "seed {seed}");
        }
    }

    /// K downloaders that each verified one piece of their own ask one
    /// seeder for a pipeline's worth: spread, they ask for mostly different
    /// pieces; windowed, at most a window's worth between them all.
    #[test]
    fn downloaders_sharing_a_seeder_pick_mostly_disjoint_pieces() {
        const K: u32 = 12;
        let pieces = 512; // 256 MiB
        let size = u64::from(pieces) * geometry::PIECE_SIZE_BYTES;
        let seeder = Bitfield::full(pieces);
        let mut avail = Availability::new(pieces);
        avail.add_peer(&seeder);
        let distinct = |spread: bool, seed: u64| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut asked = HashSet::new();
            let mut total = 0;
            for d in 0..K {
                let mut have = Bitfield::new(pieces);
                have.set(rng.gen_range(0..pieces)).unwrap();
                let t = PieceTracker::with_verified(size, &have).unwrap();
                let view = LiveView {
                    pieces: &t,
                    peer: PeerId(d),
                    peer_has: &seeder,
                    availability: &avail,
                    spread,
                };
                let mut out = Vec::new();
                pick_blocks(&view, &mut rng, PIPELINE_DEPTH_BLOCKS, &mut out);
                let mine: HashSet<u32> = out.iter().map(|p| p.piece).collect();
                total += mine.len();
                asked.extend(mine);
            }
            (asked.len(), total)
        };
        for seed in 0..10 {
            let (spread, total) = distinct(true, seed);
            assert_eq!(total, 4 * K as usize, "4 pieces of 4 blocks each");
            assert!(spread * 5 >= total * 4, "seed {seed}: {spread} of {total}");
            let (window, _) = distinct(false, seed);
            assert!(
                window <= TIE_WINDOW_PIECES as usize + 1,
                "seed {seed}: {window}"
            );
        }
    }

    #[test]
    fn first_piece_is_random_while_we_have_nothing() {
        let mut m = Fake::new(8).peer_has_all(8);
        m.avail = (0..8).map(|p| (p, p + 1)).collect(); // piece 0 rarest
        let firsts: HashSet<u32> = (0..200).map(|s| pick(&m, s, 4)[0].piece).collect();
        assert!(firsts.len() >= 6, "{firsts:?}");
        m.have_count = 1;
        let firsts: HashSet<u32> = (0..50).map(|s| pick(&m, s, 4)[0].piece).collect();
        assert_eq!(firsts, [0].into());
    }

    #[test]
    fn in_flight_pieces_are_finished_first() {
        let mut m = Fake::new(0).peer_has_all(10);
        m.have_count = 3;
        m.wanted = vec![5, 6];
        m.avail = [(5, 1), (6, 2)].into();
        m.in_flight = vec![7, 8];
        let others = BlockStatus::Requested {
            by_peer: false,
            requesters: 1,
        };
        m.blocks = [
            ((7, 0), BlockStatus::Received),
            ((7, 1), others),
            ((8, 0), others),
            ((8, 1), others),
            ((8, 2), others),
        ]
        .into();
        m.unrequested = 2 + 1 + 8;
        let picks = pick(&m, 0, 4);
        let want = [(7, 2), (7, 3), (8, 3), (5, 0)];
        assert_eq!(
            picks.iter().map(|p| (p.piece, p.block)).collect::<Vec<_>>(),
            want
        );
    }

    #[test]
    fn endgame_duplicates_others_requests_only() {
        let mut m = Fake::new(0).peer_has_all(3);
        m.have_count = 1;
        m.in_flight = vec![1, 2];
        let mine = BlockStatus::Requested {
            by_peer: true,
            requesters: 1,
        };
        let others = BlockStatus::Requested {
            by_peer: false,
            requesters: 1,
        };
        for b in 0..4 {
            m.blocks.insert((1, b), BlockStatus::Received);
            m.blocks.insert((2, b), others);
        }
        m.blocks.insert((1, 3), others);
        m.blocks.insert((2, 0), mine);
        m.unrequested = 0;
        for seed in 0..10 {
            let mut picks = pick(&m, seed, 16);
            picks.sort();
            let got: Vec<_> = picks
                .iter()
                .map(|p| (p.piece, p.block, p.duplicate))
                .collect();
            assert_eq!(
                got,
                [(1, 3, true), (2, 1, true), (2, 2, true), (2, 3, true)]
            );
        }
        // Not endgame while a block is still unrequested elsewhere.
        m.unrequested = 1;
        assert!(pick(&m, 0, 16).is_empty());
    }

    #[test]
    fn endgame_starts_when_this_call_takes_the_last_wanted_blocks() {
        let mut m = Fake::new(0).peer_has_all(2);
        m.have_count = 1;
        m.in_flight = vec![0, 1];
        let others = BlockStatus::Requested {
            by_peer: false,
            requesters: 1,
        };
        for b in 0..4 {
            m.blocks.insert((0, b), others);
            m.blocks.insert((1, b), others);
        }
        m.blocks.remove(&(1, 2)); // the one wanted block
        m.unrequested = 1;
        let picks = pick(&m, 0, 3);
        assert_eq!(
            (picks[0].piece, picks[0].block, picks[0].duplicate),
            (1, 2, false)
        );
        assert!(picks[1..].iter().all(|p| p.duplicate));
        assert_eq!(picks.len(), 3);
    }

    #[test]
    fn nothing_to_pick_when_the_peer_has_nothing_we_want() {
        let mut m = Fake::new(4);
        m.has = [].into();
        assert!(pick(&m, 0, 8).is_empty());
        m.has = [9].into(); // not a piece we want
        assert!(pick(&m, 0, 8).is_empty());
        let m = Fake::new(4).peer_has_all(4);
        assert!(pick(&m, 0, 0).is_empty());
        assert!(pick(&Fake::new(0), 0, 8).is_empty());
    }

    #[test]
    fn picks_never_repeat_and_fill_up_to_max() {
        let m = Fake::new(10).peer_has_all(10);
        let picks = pick(&m, 3, 10);
        assert_eq!(picks.len(), 10);
        let set: HashSet<_> = picks.iter().map(|p| (p.piece, p.block)).collect();
        assert_eq!(set.len(), 10);
    }

    /// Property over random live downloads: a pick is always a piece the
    /// peer has and a block it has not already requested, the picks reserve
    /// cleanly, and several peers together finish the file.
    #[test]
    fn never_from_a_peer_that_lacks_it() {
        use super::super::pieces::BlockOutcome;
        for seed in 0..60 {
            let mut rng = StdRng::seed_from_u64(seed);
            let size = rng.gen_range(1..12 * geometry::PIECE_SIZE_BYTES);
            let mut t = PieceTracker::new(size);
            let n = t.piece_count();
            let peers: Vec<(PeerId, Bitfield)> = (0..4)
                .map(|i| {
                    let mut b = Bitfield::new(n);
                    for p in 0..n {
                        if rng.gen_bool(0.5) {
                            b.set(p).unwrap();
                        }
                    }
                    (PeerId(i), b)
                })
                .collect();
            // A seeder so the download can finish.
            let seeder = (PeerId(9), Bitfield::full(n));
            let mut avail = Availability::new(n);
            for (_, b) in peers.iter().chain([&seeder]) {
                avail.add_peer(b);
            }
            let mut out = Vec::new();
            for _round in 0..10_000 {
                if t.is_complete() {
                    break;
                }
                let (peer, has) = if rng.gen_bool(0.8) {
                    &peers[rng.gen_range(0..peers.len())]
                } else {
                    &seeder
                };
                out.clear();
                let max = PIPELINE_DEPTH_BLOCKS - t.peer_outstanding(*peer).min(16);
                let view = LiveView {
                    pieces: &t,
                    peer: *peer,
                    peer_has: has,
                    availability: &avail,
                    spread: seed % 2 == 0,
                };
                pick_blocks(&view, &mut rng, max, &mut out);
                for p in &out {
                    assert!(
                        has.has(p.piece),
                        "seed {seed}: {p:?} from a peer lacking it"
                    );
                    t.reserve_block(*peer, p.piece, p.block).unwrap();
                }
                t.check_invariants();
                // Deliver some of this peer's outstanding blocks.
                for p in out.clone() {
                    if rng.gen_bool(0.7) {
                        let len = geometry::block_len(size, p.piece, p.block).unwrap();
                        let off = geometry::block_offset(p.block);
                        if let Ok(BlockOutcome::Accepted {
                            piece_complete: true,
                            ..
                        }) = t.block_received(*peer, p.piece, off, len)
                        {
                            t.mark_verified(p.piece).unwrap();
                        }
                    }
                }
                if rng.gen_bool(0.05) {
                    t.release_peer(*peer);
                }
                t.check_invariants();
            }
            assert!(t.is_complete(), "seed {seed} did not finish");
        }
    }
}
