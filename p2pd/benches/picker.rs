//! The piece picker's decision for one peer, on a 1 GiB download (2048
//! pieces of 512 KiB, 4 blocks each) with 8 connected peers, each holding a
//! random 70-100% of the pieces (counted in an `Availability`).
//!
//! - `pick/*`: `pick_blocks` through `LiveView` for one peer with an empty
//!   pipeline, asking for `PIPELINE_DEPTH_BLOCKS` (16) blocks. Read-only, so
//!   the state is the same every iteration.
//!   - `fresh`: nothing verified or requested yet (random first piece).
//!   - `mid`: ~35% verified, the 7 other peers' pipelines full, half of
//!     their earlier requests received (rarest first over ~1300 wanted
//!     pieces).
//!   - `mid-spread`: the same with ties drawn over the whole file (the
//!     download's sources serve others too).
//!   - `endgame`: 48 pieces missing, all but 4 of their blocks received or
//!     requested from the other peers; the peer picks the 4 and 12
//!     duplicates.
//! - `top_up/*`: what `download.rs`'s `top_up` does with the picks (one
//!   `reserve_block` each), then `release_peer` to put the state back for
//!   the next iteration; the release is part of the figure.
//! - `tracker/block_received_then_reserve`: one `PieceTracker::block_received`
//!   of a peer's oldest request plus one `reserve_block` of a new block,
//!   pipeline kept at 16 (the per-block bookkeeping of a download).
//!
//! Run: `cargo bench -p p2pd --bench picker` (add `-- --quick` for a fast
//! pass, or a name filter such as `-- endgame`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use p2pd::swarm::picker::{pick_blocks, Availability, BlockPick, LiveView, PIPELINE_DEPTH_BLOCKS};
use p2pd::swarm::pieces::{BlockOutcome, PeerId, PieceTracker};
use proto::geometry::{self, PIECE_SIZE_BYTES};
use proto::peer::{Bitfield, BlockRef};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

const PIECES: u32 = 2048;
const SIZE: u64 = PIECES as u64 * PIECE_SIZE_BYTES;
const PEERS: u32 = 8;
/// The peer whose pick is timed; the others are `1..PEERS`.
const ME: PeerId = PeerId(0);

fn random_bitfield(rng: &mut StdRng) -> Bitfield {
    let share = rng.gen_range(0.7..=1.0);
    let mut b = Bitfield::new(PIECES);
    for p in 0..PIECES {
        if rng.gen_bool(share) {
            b.set(p).expect("in range");
        }
    }
    b
}

/// One download's state as its task holds it.
struct World {
    pieces: PieceTracker,
    avail: Availability,
    /// Indexed by peer id.
    bitfields: Vec<Bitfield>,
    rng: StdRng,
    picks: Vec<BlockPick>,
    spread: bool,
}

impl World {
    fn new(seed: u64, pieces: PieceTracker, me_full: bool) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let bitfields: Vec<Bitfield> = (0..PEERS)
            .map(|p| {
                if p == ME.0 && me_full {
                    Bitfield::full(PIECES)
                } else {
                    random_bitfield(&mut rng)
                }
            })
            .collect();
        let mut avail = Availability::new(PIECES);
        for b in &bitfields {
            avail.add_peer(b);
        }
        World {
            pieces,
            avail,
            bitfields,
            rng,
            picks: Vec::with_capacity(PIPELINE_DEPTH_BLOCKS),
            spread: false,
        }
    }

    /// `pick_blocks` for `peer`'s free pipeline slots; the picks are left
    /// in `self.picks`.
    fn pick(&mut self, peer: PeerId) -> usize {
        let max = PIPELINE_DEPTH_BLOCKS.saturating_sub(self.pieces.peer_outstanding(peer));
        self.picks.clear();
        let view = LiveView {
            pieces: &self.pieces,
            peer,
            peer_has: &self.bitfields[peer.0 as usize],
            availability: &self.avail,
            spread: self.spread,
        };
        pick_blocks(&view, &mut self.rng, max, &mut self.picks)
    }

    /// `download.rs`'s `top_up`: pick, then reserve each pick.
    fn top_up(&mut self, peer: PeerId) -> Vec<BlockRef> {
        self.pick(peer);
        self.picks
            .iter()
            .map(|p| {
                self.pieces
                    .reserve_block(peer, p.piece, p.block)
                    .expect("picked blocks are reservable")
            })
            .collect()
    }
}

/// Nothing verified, nothing requested.
fn fresh_world() -> World {
    World::new(1, PieceTracker::new(SIZE), false)
}

/// A third of the file verified (mostly a prefix, as rarest-first with a
/// low-index window leaves it), the other peers' pipelines full.
fn mid_world() -> World {
    let mut rng = StdRng::seed_from_u64(2);
    let mut have = Bitfield::new(PIECES);
    for p in 0..PIECES {
        if p < 600 || rng.gen_bool(0.1) {
            have.set(p).expect("in range");
        }
    }
    let tracker = PieceTracker::with_verified(SIZE, &have).expect("same size");
    let mut w = World::new(3, tracker, false);
    for peer in 1..PEERS {
        let peer = PeerId(peer);
        let got = w.top_up(peer);
        for b in got.iter().step_by(2) {
            let r = w.pieces.block_received(peer, b.piece, b.offset, b.len);
            assert!(matches!(r, Ok(BlockOutcome::Accepted { .. })), "{r:?}");
        }
        w.top_up(peer);
    }
    w
}

/// 48 pieces missing (192 blocks): 76 received, 112 requested from the 7
/// other peers (16 each), 4 wanted. `ME` is a full holder.
fn endgame_world() -> World {
    let mut rng = StdRng::seed_from_u64(4);
    let mut missing: Vec<u32> = (0..PIECES).collect();
    missing.shuffle(&mut rng);
    missing.truncate(48);
    let mut have = Bitfield::full(PIECES);
    for &p in &missing {
        have.unset(p);
    }
    let tracker = PieceTracker::with_verified(SIZE, &have).expect("same size");
    let mut w = World::new(5, tracker, true);
    let mut blocks: Vec<(u32, u32)> = missing
        .iter()
        .flat_map(|&p| (0..w.pieces.blocks_of(p)).map(move |b| (p, b)))
        .collect();
    blocks.shuffle(&mut rng);
    let others = PEERS - 1;
    let requested = others as usize * PIPELINE_DEPTH_BLOCKS;
    let received = blocks.len() - requested - 4;
    for (i, &(piece, block)) in blocks[..received + requested].iter().enumerate() {
        let peer = PeerId(1 + i as u32 % others);
        let b = w.pieces.reserve_block(peer, piece, block).expect("wanted");
        if i < received {
            w.pieces
                .block_received(peer, b.piece, b.offset, b.len)
                .expect("requested");
        }
    }
    assert_eq!(w.pieces.unrequested_blocks(), 4);
    w
}

fn bench_pick(c: &mut Criterion) {
    let mut worlds = [
        ("fresh", fresh_world()),
        ("mid", mid_world()),
        (
            "mid-spread",
            World {
                spread: true,
                ..mid_world()
            },
        ),
        ("endgame", endgame_world()),
    ];
    for (name, w) in &mut worlds {
        let n = w.pick(ME);
        let dups = w.picks.iter().filter(|p| p.duplicate).count();
        eprintln!(
            "picker {name}: {} wanted, {} in flight, {} unrequested blocks; \
             picks {n} blocks ({dups} duplicates)",
            w.pieces.wanted().len(),
            w.pieces.in_flight().len(),
            w.pieces.unrequested_blocks(),
        );
        assert_eq!(n, PIPELINE_DEPTH_BLOCKS);
    }

    let mut g = c.benchmark_group("pick");
    g.throughput(Throughput::Elements(PIPELINE_DEPTH_BLOCKS as u64));
    for (name, w) in &mut worlds {
        g.bench_function(BenchmarkId::from_parameter(*name), |b| {
            b.iter(|| black_box(w.pick(ME)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("top_up");
    g.throughput(Throughput::Elements(PIPELINE_DEPTH_BLOCKS as u64));
    for (name, w) in &mut worlds[1..] {
        g.bench_function(BenchmarkId::from_parameter(*name), |b| {
            b.iter(|| {
                let got = w.top_up(ME);
                assert_eq!(got.len(), PIPELINE_DEPTH_BLOCKS);
                w.pieces.release_peer(ME)
            })
        });
    }
    g.finish();
}

/// Every block of the file, in order, as `(piece, block)`.
fn all_blocks() -> impl Iterator<Item = (u32, u32)> {
    (0..PIECES).flat_map(|p| (0..geometry::block_count(SIZE, p).unwrap_or(0)).map(move |b| (p, b)))
}

fn bench_tracker(c: &mut Criterion) {
    let mut g = c.benchmark_group("tracker");
    g.throughput(Throughput::Elements(1));
    g.bench_function("block_received_then_reserve", |b| {
        // Each round uses up one block, so a fresh tracker (outside the
        // timed part) every time the file runs out.
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let mut t = PieceTracker::new(SIZE);
                let mut next = all_blocks();
                let mut queue: VecDeque<BlockRef> = next
                    .by_ref()
                    .take(PIPELINE_DEPTH_BLOCKS)
                    .map(|(p, b)| t.reserve_block(ME, p, b).expect("wanted"))
                    .collect();
                let todo: Vec<(u32, u32)> = next.take(left as usize).collect();
                left -= todo.len() as u64;
                let start = Instant::now();
                for (p, blk) in todo {
                    let done = queue.pop_front().expect("pipeline is full");
                    let r = t.block_received(ME, done.piece, done.offset, done.len);
                    debug_assert!(matches!(r, Ok(BlockOutcome::Accepted { .. })));
                    black_box(r.is_ok());
                    queue.push_back(t.reserve_block(ME, p, blk).expect("wanted"));
                }
                spent += start.elapsed();
            }
            spent
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = bench_pick, bench_tracker
}
criterion_main!(benches);
