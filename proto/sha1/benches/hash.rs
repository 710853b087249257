//! Piece verification: SHA-1 of 512 KiB pieces, each given as the four
//! 128 KiB blocks it arrived in.
//!
//! - `sha1_stream/one_piece`: one piece through `p2p_sha1::Sha1Stream`
//!   (AWS-LC's single-stream assembly), block by block.
//! - `sha1_stream/eight_pieces`: eight pieces, one stream each (what
//!   `digest_many` falls back to without a lane kernel).
//! - `digest_many/eight_pieces`: `p2p_sha1::digest_many` on the same eight
//!   pieces (the lane kernel `lanes::kernel()` chose, if any; set
//!   `P2P_NO_SHA1_LANES=1` to see the fallback).
//! - `lanes_<kernel>/<n>`: `p2p_sha1::lanes::digest` on `n` = 1, 2, 4, 8
//!   pieces, for each kernel this CPU can run (AVX2, AVX-512VL). A kernel
//!   costs the same for 1 lane as for 8, so throughput grows with `n`.
//!
//! Throughput is the bytes hashed per iteration.
//!
//! Run: `cargo bench -p p2p-sha1 --bench hash` (add `-- --quick` for a fast
//! pass, or a name filter such as `-- lanes`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use p2p_sha1::{digest_many, lanes, Sha1Hash, Sha1Stream};
use proto::geometry::{BLOCK_SIZE_BYTES, PIECE_SIZE_BYTES};
use std::hint::black_box;
use std::time::Duration;

const PIECE: usize = PIECE_SIZE_BYTES as usize;
const BLOCK: usize = BLOCK_SIZE_BYTES as usize;

/// `n` pieces of distinct pseudo-random bytes.
fn pieces(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|p| {
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (p as u64 + 1);
            (0..PIECE)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect()
}

/// Each piece as its blocks.
fn as_blocks(pieces: &[Vec<u8>]) -> Vec<Vec<&[u8]>> {
    pieces.iter().map(|p| p.chunks(BLOCK).collect()).collect()
}

fn stream(blocks: &[&[u8]]) -> Sha1Hash {
    let mut h = Sha1Stream::new();
    for b in blocks {
        h.update(b);
    }
    h.finish()
}

fn bench_hash(c: &mut Criterion) {
    let data = pieces(lanes::LANES);
    let msgs = as_blocks(&data);
    let refs: Vec<&[&[u8]]> = msgs.iter().map(|m| &m[..]).collect();
    let want: Vec<Sha1Hash> = data.iter().map(|p| p2p_sha1::of(p)).collect();
    eprintln!(
        "hash bench: lanes::kernel() = {:?}, runnable kernels = {:?}",
        lanes::kernel().map(lanes::Kernel::name),
        lanes::runnable()
            .into_iter()
            .map(lanes::Kernel::name)
            .collect::<Vec<_>>()
    );

    let mut g = c.benchmark_group("sha1_stream");
    g.throughput(Throughput::Bytes(PIECE as u64));
    assert_eq!(stream(refs[0]), want[0]);
    g.bench_function("one_piece", |b| b.iter(|| stream(black_box(refs[0]))));
    g.throughput(Throughput::Bytes((PIECE * refs.len()) as u64));
    g.bench_function("eight_pieces", |b| {
        b.iter(|| {
            black_box(&refs)
                .iter()
                .map(|m| stream(m))
                .collect::<Vec<_>>()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("digest_many");
    g.throughput(Throughput::Bytes((PIECE * refs.len()) as u64));
    assert_eq!(digest_many(&refs), want);
    g.bench_function("eight_pieces", |b| b.iter(|| digest_many(black_box(&refs))));
    g.finish();

    for kernel in lanes::runnable() {
        let mut g = c.benchmark_group(format!("lanes_{}", kernel.name()));
        for n in [1usize, 2, 4, 8] {
            let these = &refs[..n];
            assert_eq!(lanes::digest(kernel, these).expect("same shape"), want[..n]);
            g.throughput(Throughput::Bytes((PIECE * n) as u64));
            g.bench_with_input(BenchmarkId::from_parameter(n), these, |b, these| {
                b.iter(|| lanes::digest(kernel, black_box(these)).expect("same shape"))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bench_hash
}
criterion_main!(benches);
