//! The whole-file hash's side of a download: how far it may go, and when
//! requests pause so it keeps up.
//!
//! The prefix hasher ([`PrefixHasher`]) hashes the verified prefix (pieces
//! `0..k`, all verified) as it grows. The gate tells it each new end of the
//! prefix, and pauses requests while the hash lags more than
//! [`MAX_HASH_BACKLOG`] behind: when the CPU is the limit (fast peers,
//! loopback), transfer and piece checks would otherwise take the cores
//! first and leave the whole file's hash to run alone after the last piece;
//! with this bound both run side by side and the hash finishes with the
//! last piece. A network slower than the hash never reaches it. Bytes a
//! resumed download re-hashes from its saved prefix do not count as lag.
//!
//! The gate is generic over [`PrefixProgress`] so its decisions are tested
//! without a file or a thread.

use crate::swarm::prefix_hash::{verified_prefix, PrefixHasher};
use proto::peer::Bitfield;

/// Verified bytes the whole-file hash may lag behind before requests pause.
pub const MAX_HASH_BACKLOG: u64 = 48 * 1024 * 1024;

/// What the gate needs of the running hash.
pub trait PrefixProgress {
    /// The verified prefix now ends at `bytes`.
    fn advance(&mut self, bytes: u64);
    /// Bytes reported through `advance` so far.
    fn reported(&self) -> u64;
    /// Bytes hashed so far.
    fn hashed(&self) -> u64;
    /// Ask for wake-ups as the hash advances (while requests pause for it).
    fn set_waiting(&self, on: bool);
}

impl PrefixProgress for PrefixHasher {
    fn advance(&mut self, bytes: u64) {
        PrefixHasher::advance(self, bytes);
    }
    fn reported(&self) -> u64 {
        PrefixHasher::reported(self)
    }
    fn hashed(&self) -> u64 {
        PrefixHasher::hashed(self)
    }
    fn set_waiting(&self, on: bool) {
        PrefixHasher::set_waiting(self, on);
    }
}

#[derive(Debug)]
pub struct HashGate<H> {
    /// Taken when the download finishes (the hash's tail and digest).
    hasher: Option<H>,
    size: u64,
    /// Length of the verified prefix, in pieces.
    prefix_pieces: u32,
    /// Verified bytes at the start, which a resumed download re-hashes.
    resumed: u64,
    throttled: bool,
}

impl<H: PrefixProgress> HashGate<H> {
    /// A gate over `hasher`, told at once about the prefix `have` already
    /// holds (a resumed download).
    pub fn new(mut hasher: H, have: &Bitfield, size: u64) -> HashGate<H> {
        let (prefix_pieces, bytes) = verified_prefix(have, size, 0);
        hasher.advance(bytes);
        HashGate {
            hasher: Some(hasher),
            size,
            prefix_pieces,
            resumed: bytes,
            throttled: false,
        }
    }

    /// Lets the hash go on to the end of the verified prefix (after a
    /// piece was verified).
    pub fn advance(&mut self, have: &Bitfield) {
        let (k, bytes) = verified_prefix(have, self.size, self.prefix_pieces);
        self.prefix_pieces = k;
        if let Some(h) = self.hasher.as_mut() {
            h.advance(bytes);
        }
    }

    /// Whether requests must pause for the hash to catch up; keeps the
    /// hasher's wake-ups on exactly while they do.
    pub fn lags(&mut self) -> bool {
        let Some(h) = self.hasher.as_ref() else {
            return false;
        };
        let hashed = h.hashed().max(self.resumed);
        let lags = h.reported().saturating_sub(hashed) > MAX_HASH_BACKLOG;
        if lags != self.throttled {
            self.throttled = lags;
            h.set_waiting(lags);
        }
        lags
    }

    /// Whether requests are paused for the hash (as of the last [`lags`](Self::lags)).
    pub fn throttled(&self) -> bool {
        self.throttled
    }

    /// The hasher, for the final digest. Once.
    pub fn take(&mut self) -> Option<H> {
        self.hasher.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::geometry::PIECE_SIZE_BYTES as P;
    use std::cell::Cell;

    #[derive(Default)]
    struct Fake {
        reported: u64,
        hashed: u64,
        waiting: Cell<bool>,
    }

    impl PrefixProgress for Fake {
        fn advance(&mut self, bytes: u64) {
            self.reported = self.reported.max(bytes);
        }
        fn reported(&self) -> u64 {
            self.reported
        }
        fn hashed(&self) -> u64 {
            self.hashed
        }
        fn set_waiting(&self, on: bool) {
            self.waiting.set(on);
        }
    }

    fn have(count: u32, set: impl IntoIterator<Item = u32>) -> Bitfield {
        let mut b = Bitfield::new(count);
        for p in set {
            b.set(p).unwrap();
        }
        b
    }

    #[test]
    fn advances_to_the_end_of_the_verified_prefix_only() {
        let size = 10 * P;
        let mut g = HashGate::new(Fake::default(), &have(10, []), size);
        g.advance(&have(10, [1, 2]));
        assert_eq!(g.hasher.as_ref().unwrap().reported, 0, "piece 0 missing");
        g.advance(&have(10, [0, 1, 2, 5]));
        assert_eq!(g.hasher.as_ref().unwrap().reported, 3 * P);
    }

    #[test]
    fn pauses_past_the_backlog_and_resumes_as_the_hash_catches_up() {
        let pieces = 200u32; // 100 MiB
        let size = u64::from(pieces) * P;
        let mut g = HashGate::new(Fake::default(), &have(pieces, []), size);
        assert!(!g.lags());
        g.advance(&have(pieces, 0..120)); // 60 MiB verified, none hashed
        assert!(g.lags());
        assert!(g.throttled());
        assert!(g.hasher.as_ref().unwrap().waiting.get(), "wake-ups on");
        g.hasher.as_mut().unwrap().hashed = 20 * P;
        assert!(g.lags(), "60 MiB verified, 10 MiB hashed: 50 MiB behind");
        g.hasher.as_mut().unwrap().hashed = 30 * P;
        assert!(!g.lags(), "45 MiB behind is under the bound");
        assert!(!g.hasher.as_ref().unwrap().waiting.get(), "wake-ups off");
    }

    #[test]
    fn a_resumed_prefix_being_rehashed_is_not_lag() {
        let pieces = 200u32;
        let size = u64::from(pieces) * P;
        let mut g = HashGate::new(Fake::default(), &have(pieces, 0..150), size);
        assert_eq!(g.hasher.as_ref().unwrap().reported, 150 * P);
        assert!(!g.lags(), "75 MiB saved, re-hashing from 0");
        g.advance(&have(pieces, 0..160));
        assert!(!g.lags(), "5 MiB past the saved prefix");
        assert!(g.take().is_some());
        assert!(!g.lags(), "nothing to wait for once taken");
    }
}
