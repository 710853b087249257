//! SHA-1 of up to eight independent messages at once, one message per
//! 32-bit lane of a 256-bit vector.
//!
//! One SHA-1 stream is a serial chain of compressions, so a single piece
//! cannot go faster than the scalar (or SHA-NI) code. But a download
//! verifies many pieces of equal length, and those are independent: eight
//! of them in lockstep fill every lane of an AVX2 register, and the round
//! function and message schedule vectorise perfectly. On a CPU without
//! SHA-NI this verifies pieces several times faster than eight calls to
//! the best single-stream assembly (see `benches/` and `bench/hash.sh`).
//!
//! Two kernels, chosen at run time: AVX-512VL (one-instruction rotates and
//! three-input boolean functions on 256-bit vectors) and plain AVX2
//! (shift-shift-or rotates). Both run exactly the scalar compression of
//! FIPS 180-4 per lane; the tests pin each one the CPU has against
//! AWS-LC's SHA-1.
//!
//! The caller gives each message as a list of chunks (a piece as the
//! blocks it arrived in); all messages of one call have the same chunk
//! lengths, and every chunk but the last is a multiple of 64 bytes, so a
//! compression never straddles two chunks. The last chunk's tail and the
//! padding are compressed per lane by the scalar code here.
//!
//! **Soundness.** Running a kernel on a CPU without its instructions is
//! undefined behaviour, so a [`Kernel`] is a proof, not a choice: its
//! field is private and only the detection below ([`kernel`],
//! [`runnable`]) makes one, after seeing every feature the kernel is
//! compiled for. [`digest`] is therefore safe to call with any `Kernel`.
//! Off x86_64 the type has no values at all. The only `unsafe` is the call
//! into a kernel (justified by the `Kernel`) and the unaligned vector loads
//! and stores inside it (justified by a length check at its entry).

use crate::Sha1Hash;

/// Messages hashed in lockstep.
pub const LANES: usize = 8;

const H0: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];
const K: [u32; 4] = [0x5A82_7999, 0x6ED9_EBA1, 0x8F1B_BCDC, 0xCA62_C1D6];

/// A lane kernel that this CPU can run.
///
/// Only [`kernel`] and [`runnable`] make one, and only after run-time
/// detection saw its instructions, so safe code cannot name a kernel the
/// CPU lacks:
///
/// ```compile_fail,E0603
/// let k = p2p_sha1::lanes::Kernel(todo!());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel(Isa);

/// The instruction sets of the kernels. Private: a value exists only
/// inside a [`Kernel`] made by detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    /// Needs avx2, avx512f and avx512vl.
    #[cfg(target_arch = "x86_64")]
    Avx512Vl,
    /// Needs avx2.
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    /// `"avx512vl"` or `"avx2"`, for logs and benchmark names.
    pub fn name(self) -> &'static str {
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vl => "avx512vl",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
        }
    }

    /// Below this many messages of one shape, one stream each is faster
    /// than this kernel (which costs the same for 1 lane as for 8).
    pub fn min_lanes(self) -> usize {
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vl => 2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => 3,
        }
    }
}

/// The kernel [`digest_many`](crate::digest_many) uses: the fastest one
/// this CPU runs, detected once per process. `None` without one, or when
/// the environment sets `P2P_NO_SHA1_LANES` (to measure the fallback).
pub fn kernel() -> Option<Kernel> {
    use std::sync::OnceLock;
    static PREFERRED: OnceLock<Option<Kernel>> = OnceLock::new();
    *PREFERRED.get_or_init(|| {
        if std::env::var_os("P2P_NO_SHA1_LANES").is_some() {
            return None;
        }
        runnable().first().copied()
    })
}

/// Every kernel this CPU runs, fastest first, whatever `P2P_NO_SHA1_LANES`
/// says: for tests and benchmarks that exercise each one.
pub fn runnable() -> Vec<Kernel> {
    #[allow(unused_mut)]
    let mut ks = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        // Every feature a kernel is compiled with (see `x86`), not only
        // the one it is named for.
        let avx2 = is_x86_feature_detected!("avx2");
        if avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
            ks.push(Kernel(Isa::Avx512Vl));
        }
        if avx2 {
            ks.push(Kernel(Isa::Avx2));
        }
    }
    ks
}

/// Whether `msgs` (1 to [`LANES`] messages, each a list of chunks) have
/// the shape [`digest`] needs: the same chunk lengths, every chunk but the
/// last a multiple of 64 bytes.
pub fn same_shape(msgs: &[&[&[u8]]]) -> bool {
    let Some(first) = msgs.first() else {
        return false;
    };
    if msgs.len() > LANES {
        return false;
    }
    let n = first.len();
    let aligned = first[..n.saturating_sub(1)]
        .iter()
        .all(|c| c.len() % 64 == 0);
    aligned
        && msgs
            .iter()
            .all(|m| m.len() == n && m.iter().zip(first.iter()).all(|(a, b)| a.len() == b.len()))
}

/// SHA-1 of each message, all in lockstep on `kernel`. `None` if the
/// messages do not have [the shape](same_shape) it needs.
pub fn digest(kernel: Kernel, msgs: &[&[&[u8]]]) -> Option<Vec<Sha1Hash>> {
    if !same_shape(msgs) {
        return None;
    }
    let mut states = [H0; LANES];
    let chunks = msgs[0].len();
    let mut total = 0u64;
    let mut tails: [&[u8]; LANES] = [&[]; LANES];
    for c in 0..chunks {
        let len = msgs[0][c].len();
        total += len as u64;
        let blocks = len / 64;
        if blocks > 0 {
            // Empty lanes repeat lane 0: same work, result discarded.
            let lanes: [&[u8]; LANES] = std::array::from_fn(|i| msgs.get(i).unwrap_or(&msgs[0])[c]);
            compress_lanes(kernel, &mut states, &lanes, blocks);
        }
        if c + 1 == chunks {
            for (i, m) in msgs.iter().enumerate() {
                tails[i] = &m[c][blocks * 64..];
            }
        }
    }
    Some(
        msgs.iter()
            .enumerate()
            .map(|(i, _)| finish_scalar(states[i], tails[i], total))
            .collect(),
    )
}

/// The first `blocks` 64-byte blocks of each lane's chunk into `states`.
#[allow(unsafe_code)]
fn compress_lanes(
    kernel: Kernel,
    states: &mut [[u32; 5]; LANES],
    chunks: &[&[u8]; LANES],
    blocks: usize,
) {
    #[cfg(target_arch = "x86_64")]
    match kernel.0 {
        // SAFETY: a `Kernel` is made only by `runnable`, after detection
        // saw avx2, avx512f and avx512vl; the kernel checks the lengths.
        Isa::Avx512Vl => unsafe { x86::compress_avx512vl(states, chunks, blocks) },
        // SAFETY: as above, detection saw avx2.
        Isa::Avx2 => unsafe { x86::compress_avx2(states, chunks, blocks) },
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (states, chunks, blocks);
        match kernel.0 {}
    }
}

/// The last partial block and the padding of one lane, then the digest.
fn finish_scalar(mut state: [u32; 5], tail: &[u8], total: u64) -> Sha1Hash {
    let mut block = [0u8; 128];
    block[..tail.len()].copy_from_slice(tail);
    block[tail.len()] = 0x80;
    let end = if tail.len() < 56 { 64 } else { 128 };
    block[end - 8..end].copy_from_slice(&(total * 8).to_be_bytes());
    for b in block[..end].chunks_exact(64) {
        compress_scalar(&mut state, b.try_into().expect("64 bytes"));
    }
    let mut out = [0u8; 20];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    Sha1Hash(out)
}

/// FIPS 180-4 SHA-1 compression of one block (tails only: a few blocks
/// per message).
fn compress_scalar(state: &mut [u32; 5], block: &[u8; 64]) {
    let mut w = [0u32; 80];
    for (i, c) in block.chunks_exact(4).enumerate() {
        w[i] = u32::from_be_bytes(c.try_into().expect("4 bytes"));
    }
    for t in 16..80 {
        w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
    }
    let [mut a, mut b, mut c, mut d, mut e] = *state;
    for (t, &wt) in w.iter().enumerate() {
        let (f, k) = match t / 20 {
            0 => ((b & c) | (!b & d), K[0]),
            1 => (b ^ c ^ d, K[1]),
            2 => ((b & c) | (b & d) | (c & d), K[2]),
            _ => (b ^ c ^ d, K[3]),
        };
        let tmp = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(wt);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = tmp;
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e]) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{K, LANES};
    use std::arch::x86_64::*;

    // Rotates and round functions, one set per kernel; the compression
    // below is written once against these names.
    macro_rules! rol_avx2 {
        ($x:expr, $n:literal) => {
            _mm256_or_si256(
                _mm256_slli_epi32::<$n>($x),
                _mm256_srli_epi32::<{ 32 - $n }>($x),
            )
        };
    }
    macro_rules! ch_avx2 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256($d, _mm256_and_si256($b, _mm256_xor_si256($c, $d)))
        };
    }
    macro_rules! parity_avx2 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256(_mm256_xor_si256($b, $c), $d)
        };
    }
    macro_rules! maj_avx2 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_or_si256(
                _mm256_and_si256($b, $c),
                _mm256_and_si256($d, _mm256_or_si256($b, $c)),
            )
        };
    }
    macro_rules! rol_512 {
        ($x:expr, $n:literal) => {
            _mm256_rol_epi32::<$n>($x)
        };
    }
    // Truth tables over (b, c, d) = (0xF0, 0xCC, 0xAA).
    macro_rules! ch_512 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_ternarylogic_epi32::<0xCA>($b, $c, $d)
        };
    }
    macro_rules! parity_512 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_ternarylogic_epi32::<0x96>($b, $c, $d)
        };
    }
    macro_rules! maj_512 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_ternarylogic_epi32::<0xE8>($b, $c, $d)
        };
    }

    /// One round `t` (a literal): the schedule word, then the state update.
    macro_rules! sha1_round {
        ($rol:ident, $f:ident, $w:ident, $k:expr, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $t:literal) => {{
            let t: usize = $t;
            let wt = if t < 16 {
                $w[t]
            } else {
                let x = _mm256_xor_si256(
                    _mm256_xor_si256($w[(t + 13) & 15], $w[(t + 8) & 15]),
                    _mm256_xor_si256($w[(t + 2) & 15], $w[t & 15]),
                );
                $w[t & 15] = $rol!(x, 1);
                $w[t & 15]
            };
            let tmp = _mm256_add_epi32(
                _mm256_add_epi32($rol!($a, 5), $f!($b, $c, $d)),
                _mm256_add_epi32($e, _mm256_add_epi32($k, wt)),
            );
            $e = $d;
            $d = $c;
            $c = $rol!($b, 30);
            $b = $a;
            $a = tmp;
        }};
    }

    /// The 80 rounds of one block.
    macro_rules! sha1_rounds {
        ($rol:ident, $ch:ident, $par:ident, $maj:ident, $w:ident, $k:ident, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident) => {
            sha1_rounds!(@f $rol, $ch, $w, $k[0], $a, $b, $c, $d, $e;
                0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19);
            sha1_rounds!(@f $rol, $par, $w, $k[1], $a, $b, $c, $d, $e;
                20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39);
            sha1_rounds!(@f $rol, $maj, $w, $k[2], $a, $b, $c, $d, $e;
                40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59);
            sha1_rounds!(@f $rol, $par, $w, $k[3], $a, $b, $c, $d, $e;
                60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79);
        };
        (@f $rol:ident, $f:ident, $w:ident, $k:expr, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident; $($t:literal)*) => {
            $( sha1_round!($rol, $f, $w, $k, $a, $b, $c, $d, $e, $t); )*
        };
    }

    macro_rules! kernel {
        ($name:ident, $feat:literal, $rol:ident, $ch:ident, $par:ident, $maj:ident) => {
            /// The first `blocks` 64-byte blocks of each lane's chunk into
            /// `states`. Panics if a chunk is shorter than that.
            ///
            /// Safe to call once the CPU is known to have the features named
            /// in its `target_feature` attribute (calling it still takes
            /// `unsafe`, as for any `#[target_feature]` fn).
            #[target_feature(enable = $feat)]
            pub(super) fn $name(
                states: &mut [[u32; 5]; LANES],
                chunks: &[&[u8]; LANES],
                blocks: usize,
            ) {
                // Bounds every load below: each reads 32 bytes that end at
                // or before `blocks * 64` (which cannot overflow once this
                // holds). Once per call, not per block.
                assert!(
                    chunks.iter().all(|c| c.len() / 64 >= blocks),
                    "a lane chunk is shorter than {blocks} blocks"
                );
                let ptrs = chunks.map(<[u8]>::as_ptr);
                let lane = |j: usize| -> __m256i {
                    _mm256_setr_epi32(
                        states[0][j] as i32,
                        states[1][j] as i32,
                        states[2][j] as i32,
                        states[3][j] as i32,
                        states[4][j] as i32,
                        states[5][j] as i32,
                        states[6][j] as i32,
                        states[7][j] as i32,
                    )
                };
                let mut h = [lane(0), lane(1), lane(2), lane(3), lane(4)];
                // Big-endian words: reverse the bytes of each 32-bit word.
                let bswap = _mm256_setr_epi8(
                    3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4,
                    11, 10, 9, 8, 15, 14, 13, 12,
                );
                let k = [
                    _mm256_set1_epi32(K[0] as i32),
                    _mm256_set1_epi32(K[1] as i32),
                    _mm256_set1_epi32(K[2] as i32),
                    _mm256_set1_epi32(K[3] as i32),
                ];
                let mut w = [_mm256_setzero_si256(); 16];
                for blk in 0..blocks {
                    let off = blk * 64;
                    // Words 0..8, then 8..16, of all lanes: load one row
                    // per lane and transpose the 8x8 matrix of words.
                    for half in 0..2 {
                        #[allow(unsafe_code)]
                        let r: [__m256i; 8] = std::array::from_fn(|i| {
                            // SAFETY: off + half * 32 + 32 <= blocks * 64,
                            // which the assert above bounds by the length
                            // of chunk i; loadu needs no alignment.
                            unsafe {
                                _mm256_loadu_si256(ptrs[i].add(off + half * 32) as *const __m256i)
                            }
                        });
                        let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
                        let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
                        let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
                        let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
                        let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
                        let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
                        let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
                        let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
                        let u0 = _mm256_unpacklo_epi64(t0, t2);
                        let u1 = _mm256_unpackhi_epi64(t0, t2);
                        let u2 = _mm256_unpacklo_epi64(t1, t3);
                        let u3 = _mm256_unpackhi_epi64(t1, t3);
                        let u4 = _mm256_unpacklo_epi64(t4, t6);
                        let u5 = _mm256_unpackhi_epi64(t4, t6);
                        let u6 = _mm256_unpacklo_epi64(t5, t7);
                        let u7 = _mm256_unpackhi_epi64(t5, t7);
                        let b = half * 8;
                        w[b] =
                            _mm256_shuffle_epi8(_mm256_permute2x128_si256::<0x20>(u0, u4), bswap);
                        w[b + 1] =
                            _mm256_shuffle_epi8(_mm256_permute2x128_si256::<0x20>(u1, u5), bswap);
                        w[b + 2] =
                            _mm256_shuffle_epi8(_mm256_permute2x128_si256::<0x20>(u2, u6), bswap);
                        w[b + 3] =
                            _mm256_shuffle_epi8(_mm256_permute2x128_si256::<0x20>(u3, u7), bswap);
                        w[b + 4] =
                            _mm256_shuffle_epi8(_mm256_permute2x128_si256::<0x31>(u0, u4), bswap);
                        w[b + 5] =
                            _mm256_shuffle_epi8(_mm256_permute2x128_si256::<0x31>(u1, u5), bswap);
                        w[b + 6] =
                            _mm256_shuffle_epi8(_mm256_permute2x128_si256::<0x31>(u2, u6), bswap);
                        w[b + 7] =
                            _mm256_shuffle_epi8(_mm256_permute2x128_si256::<0x31>(u3, u7), bswap);
                    }
                    let [mut a, mut b, mut c, mut d, mut e] = h;
                    // Unrolled: every word index is a constant and the
                    // a..e rotation is renaming, not moves.
                    sha1_rounds!($rol, $ch, $par, $maj, w, k, a, b, c, d, e);
                    h = [
                        _mm256_add_epi32(h[0], a),
                        _mm256_add_epi32(h[1], b),
                        _mm256_add_epi32(h[2], c),
                        _mm256_add_epi32(h[3], d),
                        _mm256_add_epi32(h[4], e),
                    ];
                }
                for (j, v) in h.iter().enumerate() {
                    let mut out = [0u32; 8];
                    #[allow(unsafe_code)]
                    // SAFETY: `out` is 32 writable bytes; storeu needs no
                    // alignment.
                    unsafe {
                        _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, *v)
                    };
                    for (i, s) in states.iter_mut().enumerate() {
                        s[j] = out[i];
                    }
                }
            }
        };
    }

    kernel!(
        compress_avx2,
        "avx2",
        rol_avx2,
        ch_avx2,
        parity_avx2,
        maj_avx2
    );
    kernel!(
        compress_avx512vl,
        "avx2,avx512f,avx512vl",
        rol_512,
        ch_512,
        parity_512,
        maj_512
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sha1Stream;

    fn reference(chunks: &[&[u8]]) -> Sha1Hash {
        let mut h = Sha1Stream::new();
        for c in chunks {
            h.update(c);
        }
        h.finish()
    }

    fn data(seed: u32, len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
            .collect()
    }

    /// Whether the CPU has every feature `isa`'s kernel is compiled with,
    /// read here rather than taken from `runnable`.
    #[cfg(target_arch = "x86_64")]
    fn cpu_has(isa: Isa) -> bool {
        let avx2 = is_x86_feature_detected!("avx2");
        match isa {
            Isa::Avx512Vl => {
                avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
            }
            Isa::Avx2 => avx2,
        }
    }

    /// The detected kernel for `isa`; only detection may make one, even here.
    #[cfg(target_arch = "x86_64")]
    fn detected(isa: Isa) -> Kernel {
        runnable()
            .into_iter()
            .find(|k| k.0 == isa)
            .unwrap_or_else(|| panic!("the CPU has {isa:?} but detection did not offer it"))
    }

    /// Pins `k` against AWS-LC: every lane count, lengths around the block
    /// and padding edges, pieces given as their blocks, refused shapes.
    #[cfg(target_arch = "x86_64")]
    fn check_kernel(k: Kernel) {
        for lanes in 1..=LANES {
            for len in [0usize, 1, 63, 64, 65, 127, 128, 1000, 4096, 70_001] {
                let bufs: Vec<Vec<u8>> = (0..lanes).map(|i| data(i as u32 * 7, len)).collect();
                let msgs: Vec<Vec<&[u8]>> = bufs.iter().map(|b| vec![&b[..]]).collect();
                let refs: Vec<&[&[u8]]> = msgs.iter().map(|m| &m[..]).collect();
                let got = digest(k, &refs).expect("same shape");
                for (i, b) in bufs.iter().enumerate() {
                    assert_eq!(
                        got[i],
                        reference(&[b]),
                        "{k:?} lanes {lanes} len {len} lane {i}"
                    );
                }
            }
        }

        // Three 128 KiB blocks and a short last block, as a last piece.
        let lens = [131_072usize, 131_072, 131_072, 5_000];
        let bufs: Vec<Vec<Vec<u8>>> = (0..LANES)
            .map(|i| {
                lens.iter()
                    .enumerate()
                    .map(|(j, &l)| data((i * 10 + j) as u32, l))
                    .collect()
            })
            .collect();
        let msgs: Vec<Vec<&[u8]>> = bufs
            .iter()
            .map(|m| m.iter().map(|c| &c[..]).collect())
            .collect();
        let refs: Vec<&[&[u8]]> = msgs.iter().map(|m| &m[..]).collect();
        let got = digest(k, &refs).expect("same shape");
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(got[i], reference(m), "{k:?} chunked lane {i}");
        }

        let a = [0u8; 100];
        let b = [0u8; 64];
        assert!(digest(k, &[&[&a[..]], &[&b[..]]]).is_none());
        assert!(digest(k, &[]).is_none());
    }

    /// The guard that keeps the kernel tests below from passing by testing
    /// nothing: every x86_64 machine this runs on (CI included) has AVX2,
    /// so finding no kernel there is a detection bug, not a skip.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn detection_offers_exactly_the_kernels_the_cpu_has() {
        assert!(
            cpu_has(Isa::Avx2),
            "this x86_64 CPU has no AVX2: the lane kernels cannot be tested here"
        );
        let want: Vec<Isa> = [Isa::Avx512Vl, Isa::Avx2]
            .into_iter()
            .filter(|&isa| cpu_has(isa))
            .collect();
        let got: Vec<Isa> = runnable().iter().map(|k| k.0).collect();
        assert_eq!(got, want, "fastest first, each one the CPU has");
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[test]
    fn no_kernel_off_x86_64() {
        assert!(runnable().is_empty());
        assert_eq!(kernel(), None);
    }

    #[test]
    fn the_preferred_kernel_is_the_fastest_runnable() {
        let want = match std::env::var_os("P2P_NO_SHA1_LANES") {
            Some(_) => None,
            None => runnable().first().copied(),
        };
        assert_eq!(kernel(), want);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_kernel_matches_aws_lc() {
        assert!(cpu_has(Isa::Avx2), "every x86_64 CI machine has AVX2");
        check_kernel(detected(Isa::Avx2));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512vl_kernel_matches_aws_lc_where_the_cpu_has_it() {
        if !cpu_has(Isa::Avx512Vl) {
            // Not a failure: many CI machines lack AVX-512. The AVX2 test
            // and the detection test above still fail if nothing ran.
            eprintln!("avx512vl kernel not tested: this CPU lacks AVX-512VL");
            return;
        }
        check_kernel(detected(Isa::Avx512Vl));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    #[should_panic(expected = "shorter than")]
    fn a_kernel_refuses_a_chunk_shorter_than_its_blocks() {
        let short = [0u8; 64];
        compress_lanes(
            detected(Isa::Avx2),
            &mut [H0; LANES],
            &[&short[..]; LANES],
            2,
        );
    }

    #[test]
    fn scalar_tail_path_matches_reference() {
        for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000] {
            let d = data(len as u32, len);
            let got = finish_scalar_from_start(&d);
            assert_eq!(got, reference(&[&d]), "len {len}");
        }
    }

    /// Whole message through the scalar code (blocks, then tail).
    fn finish_scalar_from_start(d: &[u8]) -> Sha1Hash {
        let mut s = H0;
        let full = d.len() / 64;
        for b in d[..full * 64].chunks_exact(64) {
            compress_scalar(&mut s, b.try_into().unwrap());
        }
        finish_scalar(s, &d[full * 64..], d.len() as u64)
    }

    #[test]
    fn shapes_the_kernels_cannot_take_are_refused() {
        let a = [0u8; 100];
        let b = [0u8; 64];
        // Different lengths.
        assert!(!same_shape(&[&[&a[..]], &[&b[..]]]));
        // A middle chunk that is not whole blocks.
        assert!(!same_shape(&[&[&a[..], &b[..]]]));
        assert!(same_shape(&[&[&b[..], &a[..]]]));
        assert!(!same_shape(&[]));
        let one: [&[u8]; 1] = [&b[..]];
        let nine: Vec<&[&[u8]]> = (0..9).map(|_| &one[..]).collect();
        assert!(!same_shape(&nine));
    }
}
