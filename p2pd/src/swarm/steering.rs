//! Steering a crowd: which of our pieces a downloader is shown, when we
//! hold the whole file and several downloaders fetch it from us at once.
//!
//! Left to pick freely, downloaders that start together ask a seeder for
//! the same pieces, so the seeder's capped upload goes out several times
//! over and the downloaders have little to trade (measured: 3.4 copies for
//! 12 downloaders). Like BitTorrent's super-seeding, a steered downloader
//! is shown only [`STEER_WINDOW_PIECES`] pieces it lacks, each the one the
//! crowd has least (fewest of our downloaders hold it, were shown it or
//! asked us for it), and one more each time it says (`Have`) that it holds
//! one of them, however it got it. So what the seeder sends is what the
//! crowd lacks, and the downloaders fetch the rest from each other.
//! Downloaders tell us every piece they verify, and what they already hold
//! when they connect, so the seeder knows what the crowd holds.
//!
//! The first downloader of a file, alone when it came, is shown everything
//! at once: steering a lone downloader would only slow it down (when it
//! also fetches from others, it asks us for what they are slow to send).
//! What it asks for still counts as taken.
//!
//! `swarm_sim` (in `picker`) measures the policy against the plain one.

use proto::peer::Bitfield;
use rand::Rng;
use std::sync::{Arc, Mutex};

/// How many pieces a steered downloader is shown at a time that it lacks:
/// enough to keep a full request pipeline to us busy (16 blocks = 4
/// pieces) while the `Have` for a finished one is on its way.
pub const STEER_WINDOW_PIECES: usize = 6;

/// One whole file's steering, shared by every connection serving it.
#[derive(Debug)]
pub struct Steering {
    /// Per piece: how many of our downloaders hold it, were shown it as
    /// one they lack, or asked us for it.
    taken: Mutex<Vec<u32>>,
}

impl Steering {
    pub fn new(pieces: u32) -> Steering {
        Steering {
            taken: Mutex::new(vec![0; pieces as usize]),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        self.taken.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many downloaders have taken `piece`.
    #[cfg(test)]
    pub fn taken(&self, piece: u32) -> u32 {
        self.lock().get(piece as usize).copied().unwrap_or(0)
    }

    /// The least-taken piece not in `counted`, now taken once more; ties
    /// go to a random one (a scan from a random start), so that other
    /// seeders of the same crowd pick others.
    fn least_taken<R: Rng + ?Sized>(&self, counted: &Bitfield, rng: &mut R) -> Option<u32> {
        let mut taken = self.lock();
        let n = taken.len() as u32;
        if n == 0 {
            return None;
        }
        let start = rng.gen_range(0..n);
        let mut best: Option<(u32, u32)> = None;
        for i in 0..n {
            let p = (start + i) % n;
            if counted.has(p) {
                continue;
            }
            let t = taken[p as usize];
            if best.is_none_or(|(_, bt)| t < bt) {
                best = Some((p, t));
                if t == 0 {
                    break;
                }
            }
        }
        let (p, _) = best?;
        taken[p as usize] += 1;
        Some(p)
    }
}

/// One downloader served the whole file, as the crowd's steering sees it.
#[derive(Debug)]
pub struct Member {
    steering: Arc<Steering>,
    /// Pieces this downloader adds to `taken`: it holds them, was shown
    /// them as lacking, or asked for them. Subtracted when it leaves.
    counted: Bitfield,
    /// `Some` while steered: what it was shown, and which of those it
    /// still lacks; `None` when shown everything.
    steered: Option<Steered>,
}

#[derive(Debug)]
struct Steered {
    shown: Bitfield,
    open: Vec<u32>,
    /// Shown since the writer last looked: to announce with `Have`.
    to_announce: Vec<u32>,
}

impl Member {
    /// A downloader shown every piece (it came alone).
    pub fn plain(steering: Arc<Steering>, pieces: u32) -> Member {
        Member {
            steering,
            counted: Bitfield::new(pieces),
            steered: None,
        }
    }

    /// A steered downloader, shown its first pieces.
    pub fn steered<R: Rng + ?Sized>(steering: Arc<Steering>, pieces: u32, rng: &mut R) -> Member {
        let mut m = Member {
            steering,
            counted: Bitfield::new(pieces),
            steered: Some(Steered {
                shown: Bitfield::new(pieces),
                open: Vec::with_capacity(STEER_WINDOW_PIECES),
                to_announce: Vec::new(),
            }),
        };
        for _ in 0..STEER_WINDOW_PIECES {
            m.show_one(rng);
        }
        // These go in its first `Bitfield`, not in `Have`s.
        if let Some(s) = m.steered.as_mut() {
            s.to_announce.clear();
        }
        m
    }

    /// What it was shown, if steered (its first `Bitfield` then).
    pub fn shown(&self) -> Option<&Bitfield> {
        self.steered.as_ref().map(|s| &s.shown)
    }

    fn count(&mut self, piece: u32) {
        if self.counted.set(piece) == Ok(true) {
            if let Some(t) = self.steering.lock().get_mut(piece as usize) {
                *t += 1;
            }
        }
    }

    fn show_one<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        let Some(s) = self.steered.as_mut() else {
            return;
        };
        // Every piece it was shown is counted: this is one it was not.
        if let Some(p) = self.steering.least_taken(&self.counted, rng) {
            let _ = self.counted.set(p);
            if s.shown.set(p) == Ok(true) {
                s.open.push(p);
                s.to_announce.push(p);
            }
        }
    }

    /// It asked us for `piece`.
    pub fn requested(&mut self, piece: u32) {
        self.count(piece);
    }

    /// It says it holds `piece`: counted; if it was one it was shown as
    /// lacking, it is shown another in its place.
    pub fn holds<R: Rng + ?Sized>(&mut self, piece: u32, rng: &mut R) {
        self.count(piece);
        let Some(s) = self.steered.as_mut() else {
            return;
        };
        if let Some(at) = s.open.iter().position(|&p| p == piece) {
            s.open.swap_remove(at);
            self.show_one(rng);
        }
    }

    /// Whether there are pieces to announce.
    pub fn pending(&self) -> bool {
        self.steered
            .as_ref()
            .is_some_and(|s| !s.to_announce.is_empty())
    }

    /// Moves the pieces to announce (`Have`) into `out`.
    pub fn take_announcements(&mut self, out: &mut Vec<u32>) {
        out.clear();
        if let Some(s) = self.steered.as_mut() {
            out.append(&mut s.to_announce);
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut taken = self.steering.lock();
        for p in self.counted.ones() {
            if let Some(t) = taken.get_mut(p as usize) {
                *t = t.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn steered_downloaders_are_shown_disjoint_pieces() {
        let s = Arc::new(Steering::new(64));
        let mut seen = std::collections::HashSet::new();
        let mut all = Vec::new();
        for _ in 0..8 {
            let d = Member::steered(s.clone(), 64, &mut rng());
            assert_eq!(d.shown().unwrap().count() as usize, STEER_WINDOW_PIECES);
            for p in d.shown().unwrap().ones() {
                assert!(seen.insert(p), "piece {p} shown twice");
            }
            all.push(d);
        }
    }

    #[test]
    fn a_held_piece_opens_the_least_taken_one() {
        let s = Arc::new(Steering::new(16));
        // Another downloader holds pieces 0..12.
        let mut other = Member::plain(s.clone(), 16);
        for p in 0..12 {
            other.holds(p, &mut rng());
        }
        let mut d = Member::steered(s.clone(), 16, &mut rng());
        let mut out = Vec::new();
        let first: Vec<u32> = d.shown().unwrap().ones().collect();
        assert_eq!(first.len(), STEER_WINDOW_PIECES);
        for p in 12..16 {
            assert!(first.contains(&p), "nobody has {p}: {first:?}");
        }
        assert!(!d.pending(), "the first pieces go in the bitfield");
        d.holds(3, &mut rng());
        assert!(!d.pending(), "a piece it was not shown opens nothing");
        d.holds(12, &mut rng());
        assert!(d.pending());
        d.take_announcements(&mut out);
        assert_eq!(out.len(), 1);
        assert!(
            !first.contains(&out[0]) && out[0] != 3,
            "a new one: {out:?}"
        );
        d.holds(12, &mut rng());
        assert!(!d.pending(), "the same Have twice opens one piece");
    }

    #[test]
    fn requests_count_and_leaving_gives_back() {
        let s = Arc::new(Steering::new(8));
        let mut a = Member::plain(s.clone(), 8);
        a.requested(5);
        a.requested(5);
        a.holds(5, &mut rng());
        assert_eq!(s.taken(5), 1);
        let b = Member::steered(s.clone(), 8, &mut rng());
        assert!(!b.shown().unwrap().has(5), "taken pieces are shown last");
        drop(a);
        drop(b);
        assert!((0..8).all(|p| s.taken(p) == 0));
    }

    #[test]
    fn a_downloader_is_shown_what_it_lacks_until_it_has_everything() {
        let s = Arc::new(Steering::new(10));
        let mut d = Member::steered(s.clone(), 10, &mut rng());
        let mut out = Vec::new();
        let mut shown: Vec<u32> = d.shown().unwrap().ones().collect();
        // It gets each shown piece in turn; every piece comes up once.
        let mut i = 0;
        while i < shown.len() {
            d.holds(shown[i], &mut rng());
            d.take_announcements(&mut out);
            shown.extend(&out);
            i += 1;
            assert!(i <= 10, "bounded");
        }
        shown.sort_unstable();
        assert_eq!(shown, (0..10).collect::<Vec<_>>());
    }
}
