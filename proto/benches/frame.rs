//! Peer-protocol framing: what one message costs on the way out and in.
//!
//! - `encode_frame/*`: `proto::peer::encode_frame` into a reused buffer for a
//!   `Piece` carrying one 128 KiB block, a `Request`, a `Have` and a
//!   `Bitfield` of 2048 pieces (a 1 GiB file); throughput is the frame's
//!   bytes.
//! - `decode/*`: `proto::peer::decode` of the same payloads. Decoding
//!   borrows (piece data and bitfield bytes are not copied), so the figure
//!   is per message, not per byte; `bitfield_validate` adds
//!   `Bitfield::from_bytes`, which a receiver runs on every `Bitfield`.
//! - `frame_io/*`: `proto::frame::read_frame` of a 128 KiB payload from a
//!   `&[u8]`, `write_frame` of it into a reused `Vec`, and both ends of a
//!   `tokio::io::duplex` pipe (64 KiB buffer) in one current-thread runtime,
//!   as a connection's reader sees it minus the socket; throughput in bytes.
//!
//! Run: `cargo bench -p proto --bench frame` (add `-- --quick` for a fast
//! pass, or a name filter such as `-- decode`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use proto::frame::{read_frame, write_frame, MAX_PEER_FRAME_BYTES};
use proto::geometry::BLOCK_SIZE_BYTES;
use proto::peer::{decode, encode_frame, encode_payload, Bitfield, BlockRef, Message};
use std::hint::black_box;
use std::time::Duration;

const BITFIELD_PIECES: u32 = 2048;

/// A bitfield of 2048 pieces with about three quarters set.
fn bitfield() -> Bitfield {
    let mut b = Bitfield::new(BITFIELD_PIECES);
    for p in 0..BITFIELD_PIECES {
        if p.wrapping_mul(2_654_435_761) % 4 != 0 {
            b.set(p).expect("in range");
        }
    }
    b
}

fn block() -> Vec<u8> {
    (0..BLOCK_SIZE_BYTES)
        .map(|i| (i * 31 + i / 977) as u8)
        .collect()
}

fn messages<'a>(data: &'a [u8], bits: &'a Bitfield) -> Vec<(&'static str, Message<'a>)> {
    vec![
        (
            "piece_128k",
            Message::Piece {
                piece: 1234,
                offset: 3 * BLOCK_SIZE_BYTES,
                data,
            },
        ),
        (
            "request",
            Message::Request(BlockRef {
                piece: 1234,
                offset: 3 * BLOCK_SIZE_BYTES,
                len: BLOCK_SIZE_BYTES,
            }),
        ),
        ("have", Message::Have(1234)),
        ("bitfield_2048", Message::Bitfield(bits.as_bytes())),
    ]
}

fn bench_codec(c: &mut Criterion) {
    let data = block();
    let bits = bitfield();
    let msgs = messages(&data, &bits);

    let mut g = c.benchmark_group("encode_frame");
    let mut out = Vec::with_capacity(2 * BLOCK_SIZE_BYTES as usize);
    for (name, msg) in &msgs {
        out.clear();
        encode_frame(msg, &mut out).expect("fits a frame");
        g.throughput(Throughput::Bytes(out.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(*name), msg, |b, msg| {
            b.iter(|| {
                out.clear();
                encode_frame(black_box(msg), &mut out).expect("fits a frame");
                black_box(out.len())
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    for (name, msg) in &msgs {
        let mut payload = Vec::new();
        encode_payload(msg, &mut payload).expect("encodes");
        assert_eq!(decode(&payload).expect("decodes"), *msg);
        g.bench_with_input(BenchmarkId::from_parameter(*name), &payload, |b, p| {
            b.iter(|| decode(black_box(p)).expect("decodes"))
        });
    }
    let mut payload = Vec::new();
    encode_payload(&Message::Bitfield(bits.as_bytes()), &mut payload).expect("encodes");
    g.bench_function("bitfield_validate", |b| {
        b.iter(|| match decode(black_box(&payload)) {
            Ok(Message::Bitfield(bytes)) => Bitfield::from_bytes(bytes, BITFIELD_PIECES)
                .expect("valid")
                .count(),
            _ => unreachable!("a bitfield"),
        })
    });
    g.finish();
}

fn bench_frame_io(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let payload = block();
    let mut wire = Vec::new();
    rt.block_on(write_frame(&mut wire, &payload, MAX_PEER_FRAME_BYTES))
        .expect("fits");

    let mut g = c.benchmark_group("frame_io");
    g.throughput(Throughput::Bytes(wire.len() as u64));

    g.bench_function("read_frame_slice_128k", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut r: &[u8] = black_box(&wire);
                let got = read_frame(&mut r, MAX_PEER_FRAME_BYTES)
                    .await
                    .expect("reads")
                    .expect("a frame");
                black_box(got.len())
            })
        })
    });

    let mut out = Vec::with_capacity(wire.len());
    g.bench_function("write_frame_vec_128k", |b| {
        b.iter(|| {
            rt.block_on(async {
                out.clear();
                write_frame(&mut out, black_box(&payload), MAX_PEER_FRAME_BYTES)
                    .await
                    .expect("writes");
                black_box(out.len())
            })
        })
    });

    let (mut tx, mut rx) = tokio::io::duplex(64 * 1024);
    g.bench_function("duplex_write_read_128k", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (w, r) = tokio::join!(
                    write_frame(&mut tx, black_box(&payload), MAX_PEER_FRAME_BYTES),
                    read_frame(&mut rx, MAX_PEER_FRAME_BYTES),
                );
                w.expect("writes");
                black_box(r.expect("reads").expect("a frame").len())
            })
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
    targets = bench_codec, bench_frame_io
}
criterion_main!(benches);
