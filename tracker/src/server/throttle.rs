//! Login throttling: who may try a password now, and who must wait.
//!
//! Failed logins are counted per (user, source address) and per source
//! address across users. After [`FREE_FAILURES_PER_USER`] (resp.
//! [`FREE_FAILURES_PER_ADDRESS`]) failures, each further failure blocks
//! that key for a back-off that starts at [`FIRST_BACKOFF`] and doubles up
//! to [`MAX_BACKOFF`]. A blocked login is answered `rate_limited` *before*
//! argon2 runs, so a flood costs no hashing. Keys are never per user alone:
//! an attacker elsewhere must not be able to lock the owner out.
//!
//! A success clears its (user, address) entry only: the address's count
//! stays, or an attacker could reset it by logging into an account of its
//! own between guesses. A key quiet for [`FORGET_AFTER`] starts afresh.
//!
//! Besides failures, each address may have at most
//! [`MAX_HASHES_PER_ADDRESS`] password hashes queued or running (logins and
//! `create_user`), so one address cannot fill the argon2 queue that every
//! other client shares; the handler lets a call wait [`SLOT_WAIT`] for a
//! slot before it refuses.
//!
//! Pure logic: the clock is passed in. Memory is bounded: each table holds
//! at most [`MAX_TRACKED_KEYS`] keys, the least recently failed evicted
//! first. The state is local to each tracker, not replicated: it is a
//! defence of this process's CPU, and a daemon's retries on another tracker
//! meet that tracker's own counts.

use proto::{ErrorCode, UserId, WireError};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures of one user from one address before back-off starts.
pub const FREE_FAILURES_PER_USER: u32 = 5;
/// Failures from one address (any users) before back-off starts: room for
/// a lab behind one NAT address mistyping now and then.
pub const FREE_FAILURES_PER_ADDRESS: u32 = 20;
/// The first back-off; each further failure doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A key without a failure for this long is forgotten (longer than
/// [`MAX_BACKOFF`], so a patient attacker still meets the cap).
pub const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Keys each table remembers at most.
pub const MAX_TRACKED_KEYS: usize = 10_000;
/// Password hashes one address may have queued or running at once.
pub const MAX_HASHES_PER_ADDRESS: u32 = 4;
/// How long a call may wait for one of its address's slots before it is
/// answered `rate_limited` (an honest burst, e.g. 16 accounts created at
/// once from one host, waits its turn instead).
pub const SLOT_WAIT: Duration = Duration::from_secs(2);

/// Where a login comes from: an IPv4 address, or the /64 of an IPv6 one
/// (one host usually owns a whole /64, so a finer key would let it dodge
/// the count by changing address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Source(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let mut segments = v6.segments();
                    segments[4..].fill(0);
                    Source(IpAddr::V6(segments.into()))
                }
            },
        }
    }
}

/// Why a login may not run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Throttled {
    /// Too many failures for this user from this address.
    User { user: UserId, retry_in: Duration },
    /// Too many failures from this address, across users.
    Address { retry_in: Duration },
    /// This address already has its share of password checks in flight.
    Busy,
}

impl From<Throttled> for WireError {
    fn from(t: Throttled) -> Self {
        let message = match t {
            Throttled::User { user, retry_in } => format!(
                "too many failed logins for {user} from this address; retry in {} s",
                whole_seconds(retry_in)
            ),
            Throttled::Address { retry_in } => format!(
                "too many failed logins from this address; retry in {} s",
                whole_seconds(retry_in)
            ),
            Throttled::Busy => {
                "too many password checks from this address at once; retry in 1 s".to_owned()
            }
        };
        WireError::new(ErrorCode::RateLimited, message)
    }
}

/// Rounded up, so "retry in N s" is never too early.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// One key's failures.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// Failure counts of one kind of key, bounded in size.
#[derive(Debug)]
struct Backoffs<K> {
    free: u32,
    entries: HashMap<K, Failures>,
}

impl<K: Eq + Hash + Clone> Backoffs<K> {
    fn new(free: u32) -> Self {
        Backoffs {
            free,
            entries: HashMap::new(),
        }
    }

    /// How long `key` must still wait at `now`, if it is blocked.
    fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        let until = self.entries.get(key)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    fn record_failure(&mut self, key: &K, now: Instant) {
        if !self.entries.contains_key(key) && self.entries.len() >= MAX_TRACKED_KEYS {
            self.evict(now);
        }
        let f = self.entries.entry(key.clone()).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
        });
        if now.saturating_duration_since(f.last) >= FORGET_AFTER {
            *f = Failures {
                count: 0,
                last: now,
                blocked_until: None,
            };
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        if let Some(over) = f.count.checked_sub(self.free + 1) {
            f.blocked_until = Some(now + backoff(over));
        }
    }

    fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Drops the forgotten keys, or else the least recently failed one.
    /// O(n) at most once per new key when full; a new key costs an argon2
    /// run anyway, which is far dearer.
    fn evict(&mut self, now: Instant) {
        self.entries
            .retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
        if self.entries.len() < MAX_TRACKED_KEYS {
            return;
        }
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, f)| f.last)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.entries.remove(&k);
        }
    }
}

/// The back-off after the `over`-th failure past the free ones (0-based).
fn backoff(over: u32) -> Duration {
    let factor = 1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// The throttle of one tracker. See the module header.
#[derive(Debug)]
pub struct LoginThrottle {
    per_user: Backoffs<(UserId, Source)>,
    per_address: Backoffs<Source>,
    hashing: HashMap<Source, u32>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            per_user: Backoffs::new(FREE_FAILURES_PER_USER),
            per_address: Backoffs::new(FREE_FAILURES_PER_ADDRESS),
            hashing: HashMap::new(),
        }
    }
}

impl LoginThrottle {
    /// Whether `user` may try a password from `source` at `now`; if so, a
    /// hashing slot of `source` is taken (give it back with
    /// [`finish_login`](Self::finish_login)).
    ///
    /// # Errors
    /// [`Throttled`]: the longer of the two back-offs, or no slot free.
    pub fn begin_login(
        &mut self,
        user: &UserId,
        source: Source,
        now: Instant,
    ) -> Result<(), Throttled> {
        let for_user = self.per_user.blocked(&(user.clone(), source), now);
        let for_address = self.per_address.blocked(&source, now);
        // Both blocked: the longer wait is the true one.
        match (for_user, for_address) {
            (Some(u), a) if a.is_none_or(|a| u >= a) => Err(Throttled::User {
                user: user.clone(),
                retry_in: u,
            }),
            (_, Some(a)) => Err(Throttled::Address { retry_in: a }),
            _ => Ok(()),
        }?;
        self.begin_hash(source)
    }

    /// Ends a login begun with [`begin_login`](Self::begin_login):
    /// `succeeded` is `Some(true)` for a right password, `Some(false)` for
    /// a wrong one (or an unknown user), `None` when no password was
    /// judged (the tracker failed).
    pub fn finish_login(
        &mut self,
        user: &UserId,
        source: Source,
        succeeded: Option<bool>,
        now: Instant,
    ) {
        self.end_hash(source);
        let key = (user.clone(), source);
        match succeeded {
            Some(true) => self.per_user.clear(&key),
            Some(false) => {
                self.per_user.record_failure(&key, now);
                self.per_address.record_failure(&source, now);
            }
            None => {}
        }
    }

    /// Takes one of `source`'s hashing slots (for `create_user`, which is
    /// not a login: its failures are not counted).
    ///
    /// # Errors
    /// [`Throttled::Busy`] when `source` has [`MAX_HASHES_PER_ADDRESS`].
    pub fn begin_hash(&mut self, source: Source) -> Result<(), Throttled> {
        let n = self.hashing.entry(source).or_insert(0);
        if *n >= MAX_HASHES_PER_ADDRESS {
            return Err(Throttled::Busy);
        }
        *n += 1;
        Ok(())
    }

    /// Gives back a slot taken by [`begin_hash`](Self::begin_hash).
    pub fn end_hash(&mut self, source: Source) {
        if let Some(n) = self.hashing.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.hashing.remove(&source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        s.parse().unwrap()
    }

    fn src(s: &str) -> Source {
        Source::from(s.parse::<IpAddr>().unwrap())
    }

    /// One wrong login (begin + finish), as the handler does it.
    fn fail(t: &mut LoginThrottle, u: &UserId, s: Source, now: Instant) -> Result<(), Throttled> {
        t.begin_login(u, s, now)?;
        t.finish_login(u, s, Some(false), now);
        Ok(())
    }

    #[test]
    fn back_off_starts_after_the_free_failures_and_doubles() {
        let (mut t, alice, a, t0) = (
            LoginThrottle::default(),
            user("alice"),
            src("10.0.0.1"),
            Instant::now(),
        );
        for _ in 0..FREE_FAILURES_PER_USER {
            fail(&mut t, &alice, a, t0).unwrap();
        }
        // The next failure is still judged, and blocks for 1 s.
        fail(&mut t, &alice, a, t0).unwrap();
        let err = t.begin_login(&alice, a, t0).unwrap_err();
        assert_eq!(
            err,
            Throttled::User {
                user: alice.clone(),
                retry_in: FIRST_BACKOFF
            }
        );
        // Once it has passed, one try, then 2 s, then 4 s.
        let t1 = t0 + FIRST_BACKOFF;
        fail(&mut t, &alice, a, t1).unwrap();
        assert!(
            matches!(t.begin_login(&alice, a, t1), Err(Throttled::User { retry_in, .. }) if retry_in == 2 * FIRST_BACKOFF)
        );
        let t2 = t1 + 2 * FIRST_BACKOFF;
        fail(&mut t, &alice, a, t2).unwrap();
        assert!(
            matches!(t.begin_login(&alice, a, t2), Err(Throttled::User { retry_in, .. }) if retry_in == 4 * FIRST_BACKOFF)
        );
    }

    #[test]
    fn back_off_is_capped() {
        assert_eq!(backoff(0), FIRST_BACKOFF);
        assert_eq!(backoff(3), 8 * FIRST_BACKOFF);
        assert_eq!(backoff(20), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_blocked_attacker_does_not_block_the_owner_elsewhere() {
        let (mut t, alice, t0) = (LoginThrottle::default(), user("alice"), Instant::now());
        let (attacker, owner) = (src("10.0.0.66"), src("10.0.0.1"));
        for _ in 0..=FREE_FAILURES_PER_USER {
            fail(&mut t, &alice, attacker, t0).unwrap();
        }
        assert!(t.begin_login(&alice, attacker, t0).is_err());
        t.begin_login(&alice, owner, t0).unwrap();
        t.finish_login(&alice, owner, Some(true), t0);
    }

    #[test]
    fn a_success_clears_its_pair_but_not_the_address() {
        let (mut t, alice, a, t0) = (
            LoginThrottle::default(),
            user("alice"),
            src("10.0.0.1"),
            Instant::now(),
        );
        for _ in 0..FREE_FAILURES_PER_USER {
            fail(&mut t, &alice, a, t0).unwrap();
        }
        t.begin_login(&alice, a, t0).unwrap();
        t.finish_login(&alice, a, Some(true), t0);
        // Five more free failures for alice...
        for _ in 0..FREE_FAILURES_PER_USER {
            fail(&mut t, &alice, a, t0).unwrap();
        }
        // ... but the address has now failed 10 times: 11 more, and it is
        // blocked for every user.
        for i in 0..11 {
            fail(&mut t, &user(&format!("u{i}")), a, t0).unwrap();
        }
        let err = t.begin_login(&user("carol"), a, t0).unwrap_err();
        assert_eq!(
            err,
            Throttled::Address {
                retry_in: FIRST_BACKOFF
            }
        );
        let msg = WireError::from(err);
        assert_eq!(msg.code, ErrorCode::RateLimited);
        assert_eq!(
            msg.message,
            "too many failed logins from this address; retry in 1 s"
        );
    }

    #[test]
    fn quiet_keys_are_forgotten() {
        let (mut t, alice, a, t0) = (
            LoginThrottle::default(),
            user("alice"),
            src("10.0.0.1"),
            Instant::now(),
        );
        for _ in 0..=FREE_FAILURES_PER_USER {
            fail(&mut t, &alice, a, t0).unwrap();
        }
        let later = t0 + FORGET_AFTER;
        // Counted afresh: without forgetting, this would be the 7th
        // failure and block for 2 s.
        fail(&mut t, &alice, a, later).unwrap();
        t.begin_login(&alice, a, later).unwrap();
    }

    #[test]
    fn each_address_has_a_few_hashing_slots() {
        let (mut t, alice, a, b, t0) = (
            LoginThrottle::default(),
            user("alice"),
            src("10.0.0.1"),
            src("10.0.0.2"),
            Instant::now(),
        );
        for _ in 0..MAX_HASHES_PER_ADDRESS {
            t.begin_hash(a).unwrap();
        }
        assert_eq!(t.begin_login(&alice, a, t0), Err(Throttled::Busy));
        assert_eq!(t.begin_hash(a), Err(Throttled::Busy));
        t.begin_login(&alice, b, t0).unwrap();
        t.end_hash(a);
        t.begin_login(&alice, a, t0).unwrap();
        t.finish_login(&alice, a, None, t0);
        // An unjudged login (the tracker failed) counts as no failure.
        assert!(t.per_user.entries.is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let (mut t, a, t0) = (LoginThrottle::default(), src("10.0.0.1"), Instant::now());
        for i in 0..MAX_TRACKED_KEYS + 10 {
            let u = user(&format!("u{i}"));
            let now = t0 + Duration::from_millis(i as u64);
            t.per_user.record_failure(&(u, a), now);
        }
        assert_eq!(t.per_user.entries.len(), MAX_TRACKED_KEYS);
        // The oldest went first.
        assert!(!t.per_user.entries.contains_key(&(user("u0"), a)));
        assert!(t
            .per_user
            .entries
            .contains_key(&(user(&format!("u{}", MAX_TRACKED_KEYS + 9)), a)));
    }

    #[test]
    fn ipv6_sources_are_keyed_by_their_64() {
        assert_eq!(src("2001:db8::1"), src("2001:db8::ffff:2"));
        assert_ne!(src("2001:db8::1"), src("2001:db8:0:1::1"));
        assert_eq!(src("::ffff:10.0.0.1"), src("10.0.0.1"));
    }

    #[test]
    fn retry_times_round_up() {
        let e = WireError::from(Throttled::User {
            user: user("alice"),
            retry_in: Duration::from_millis(7_001),
        });
        assert_eq!(
            e.message,
            "too many failed logins for alice from this address; retry in 8 s"
        );
    }
}
