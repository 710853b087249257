//! SHA-1 of pieces and files: the one implementation every digest of
//! p2pshare goes through (upload hashing, piece checks, whole-file checks),
//! so a faster backend is a change here only.
//!
//! - [`Sha1Stream`]: incremental SHA-1 on AWS-LC's assembly (SHA-NI, AVX2
//!   or SSSE3, chosen at run time); [`of`] for one slice.
//! - [`digest_many`] with [`preferred_batch`]: many pieces at once, through
//!   the [`lanes`] where that pays.
//! - [`lanes`]: SHA-1 of up to eight equal-shape messages in lockstep on an
//!   AVX-512VL or AVX2 kernel. A kernel exists only once run-time detection
//!   has vouched for it, so the safe API cannot run instructions the CPU
//!   lacks.
//!
//! A crate of its own so that what does not hash does not link AWS-LC:
//! p2pctl depends on `proto` (for the [`Sha1Hash`] type it renders) and not
//! on this crate, whatever else a workspace build compiles
//! (`tests/tests/p2pctl_links_no_crypto.rs` checks it).

pub mod lanes;

use aws_lc_rs::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY};
pub use proto::Sha1Hash;

/// SHA-1 of a byte slice (a piece, a test vector).
pub fn of(bytes: &[u8]) -> Sha1Hash {
    let mut h = Sha1Stream::new();
    h.update(bytes);
    h.finish()
}

/// An incremental SHA-1: `update` with the bytes in order, then `finish`.
///
/// Backed by AWS-LC's assembly (SHA-NI, AVX2 or SSSE3, chosen at run time):
/// about 1.8 times the pure-Rust `sha1` crate on a CPU without SHA-NI.
#[derive(Clone)]
pub struct Sha1Stream(Context);

impl Default for Sha1Stream {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha1Stream {
    pub fn new() -> Self {
        Sha1Stream(Context::new(&SHA1_FOR_LEGACY_USE_ONLY))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> Sha1Hash {
        let d = self.0.finish();
        let mut out = [0u8; 20];
        out.copy_from_slice(d.as_ref());
        Sha1Hash(out)
    }
}

/// How many messages [`digest_many`] wants at once to run at full speed:
/// [`lanes::LANES`] on a CPU with a lane kernel, else 1 (no gain from
/// waiting for more).
pub fn preferred_batch() -> usize {
    if lanes::kernel().is_some() {
        lanes::LANES
    } else {
        1
    }
}

/// SHA-1 of each message, each given as its chunks (a piece as the blocks
/// it arrived in). Messages of the same chunk lengths go through the lane
/// kernel together, the rest one stream each; the digests come back in
/// the order of `msgs`.
pub fn digest_many(msgs: &[&[&[u8]]]) -> Vec<Sha1Hash> {
    let mut out = vec![Sha1Hash([0; 20]); msgs.len()];
    let mut done = vec![false; msgs.len()];
    if let Some(kernel) = lanes::kernel() {
        for first in 0..msgs.len() {
            if done[first] {
                continue;
            }
            let group: Vec<usize> = (first..msgs.len())
                .filter(|&j| !done[j] && lanes::same_shape(&[msgs[first], msgs[j]]))
                .collect();
            for batch in group.chunks(lanes::LANES) {
                if batch.len() < kernel.min_lanes() {
                    continue;
                }
                let these: Vec<&[&[u8]]> = batch.iter().map(|&j| msgs[j]).collect();
                if let Some(ds) = lanes::digest(kernel, &these) {
                    for (&j, d) in batch.iter().zip(ds) {
                        out[j] = d;
                        done[j] = true;
                    }
                }
            }
        }
    }
    for (j, m) in msgs.iter().enumerate() {
        if !done[j] {
            let mut h = Sha1Stream::new();
            for c in m.iter() {
                h.update(c);
            }
            out[j] = h.finish();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        assert_eq!(
            of(b"abc").to_hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn digest_many_equals_one_by_one_for_mixed_shapes() {
        let big: Vec<Vec<u8>> = (0..11u8).map(|i| vec![i; 4096 * 3]).collect();
        let short = [vec![1u8; 100], vec![2u8; 5000]];
        let mut msgs: Vec<Vec<&[u8]>> = big.iter().map(|b| vec![&b[..4096], &b[4096..]]).collect();
        msgs.insert(3, vec![&short[0][..]]);
        msgs.push(vec![&short[1][..]]);
        msgs.push(vec![]);
        let refs: Vec<&[&[u8]]> = msgs.iter().map(|m| &m[..]).collect();
        let got = digest_many(&refs);
        for (m, d) in msgs.iter().zip(&got) {
            assert_eq!(*d, of(&m.concat()));
        }
    }

    #[test]
    fn streaming_equals_one_shot() {
        assert_eq!(of(b"").to_hex(), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let mut h = Sha1Stream::new();
        for _ in 0..10_000 {
            h.update(&[b'a'; 100]);
        }
        // FIPS 180 test vector: a million 'a'.
        assert_eq!(
            h.finish().to_hex(),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 300) as u8).collect();
        let mut h = Sha1Stream::new();
        for c in data.chunks(777) {
            h.update(c);
        }
        assert_eq!(h.finish(), of(&data));
    }
}
