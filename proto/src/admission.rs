//! Who may hold a connection open: a cap per source address and a cap in
//! total, shared by the listeners of `tracker` and `p2pd`.
//!
//! A listener asks [`Admission::admit`] right after `accept`; the
//! [`Admitted`] guard it gets back is the connection's place, given back
//! when the guard drops. A refused connection is closed at once by the
//! caller (accepting and closing, never leaving it in the backlog: a full
//! backlog locks out everyone). Refusals are logged at most once per
//! [`LOG_EVERY`] with a count, never one line per connection, so a flood
//! cannot fill the log either. Also here: raising the soft
//! `RLIMIT_NOFILE` to the hard limit at start, which the global caps are
//! derived from.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Shortest pause between two log lines about refused connections (or
/// failed accepts) of one listener.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// Caps on the connections of one listener.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    what: &'static str,
    max_total: usize,
    max_per_source: usize,
    /// When full, end the oldest connection to make room (see
    /// [`Admission::evicting_oldest`]).
    evict_oldest: bool,
    held: Mutex<Held>,
    refused: Throttled,
}

#[derive(Default)]
struct Held {
    by_source: HashMap<IpAddr, usize>,
    /// Every place by admission order: its source and how to end it.
    places: BTreeMap<u64, (IpAddr, CancellationToken)>,
    next: u64,
}

impl Held {
    /// Gives back place `seq`, if it is still held.
    fn release(&mut self, seq: u64) -> Option<CancellationToken> {
        let (source, evict) = self.places.remove(&seq)?;
        if let Some(n) = self.by_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&source);
            }
        }
        Some(evict)
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds its maximum of connections.
    Total,
    /// The connection's source address holds its maximum.
    PerSource,
}

/// One admitted connection's place; given back on drop.
pub struct Admitted {
    inner: Arc<Inner>,
    seq: u64,
    evicted: CancellationToken,
}

impl Admitted {
    /// Cancelled when the place is taken away for a newer connection
    /// (only with [`Admission::evicting_oldest`]): the connection should
    /// end then. Never after the guard dropped.
    pub fn eviction(&self) -> CancellationToken {
        self.evicted.clone()
    }
}

impl Admission {
    /// Caps for the listener named `what` in log lines: at most `max_total`
    /// connections, at most `max_per_source` of them from one address.
    pub fn new(what: &'static str, max_total: usize, max_per_source: usize) -> Admission {
        Admission {
            inner: Arc::new(Inner {
                what,
                max_total,
                max_per_source,
                evict_oldest: false,
                held: Mutex::new(Held::default()),
                refused: Throttled::new(LOG_EVERY),
            }),
        }
    }

    /// Like [`Admission::new`], but when the total is reached the oldest
    /// connection loses its place to the new one (its
    /// [`Admitted::eviction`] is cancelled) instead of the new one being
    /// refused. For a stage every honest connection passes in moments (a
    /// handshake): strangers that hold it open cannot keep a newcomer out
    /// unless they connect faster than it completes.
    pub fn evicting_oldest(
        what: &'static str,
        max_total: usize,
        max_per_source: usize,
    ) -> Admission {
        let mut admission = Admission::new(what, max_total, max_per_source);
        if let Some(inner) = Arc::get_mut(&mut admission.inner) {
            inner.evict_oldest = true;
        }
        admission
    }

    /// A place for a connection from `source`, or why there is none (the
    /// refusal is logged, throttled).
    ///
    /// # Errors
    /// The cap that is full.
    pub fn admit(&self, source: IpAddr) -> Result<Admitted, Refusal> {
        let refusal = {
            let mut held = self.inner.lock();
            let from_source = held.by_source.get(&source).copied().unwrap_or(0);
            if from_source >= self.inner.max_per_source {
                Some(Refusal::PerSource)
            } else if held.places.len() < self.inner.max_total {
                None
            } else if self.inner.evict_oldest {
                let oldest = held.places.keys().next().copied();
                if let Some(evict) = oldest.and_then(|seq| held.release(seq)) {
                    evict.cancel();
                }
                None
            } else {
                Some(Refusal::Total)
            }
            .map_or_else(
                || {
                    let seq = held.next;
                    held.next += 1;
                    let evicted = CancellationToken::new();
                    held.places.insert(seq, (source, evicted.clone()));
                    *held.by_source.entry(source).or_insert(0) += 1;
                    Ok(Admitted {
                        inner: Arc::clone(&self.inner),
                        seq,
                        evicted,
                    })
                },
                Err,
            )
        };
        let refusal = match refusal {
            Ok(admitted) => return Ok(admitted),
            Err(refusal) => refusal,
        };
        if let Some(count) = self.inner.refused.note() {
            let inner = &self.inner;
            match refusal {
                Refusal::Total => tracing::warn!(
                    "refused {count} {} connection(s) in the last {} s: {} are open, the most allowed",
                    inner.what,
                    LOG_EVERY.as_secs(),
                    inner.max_total
                ),
                Refusal::PerSource => tracing::warn!(
                    "refused {count} {} connection(s) in the last {} s: {source} (or another address) holds {}, the most allowed from one address",
                    inner.what,
                    LOG_EVERY.as_secs(),
                    inner.max_per_source
                ),
            }
        }
        Err(refusal)
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        self.inner.lock().places.len()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        // Already gone if it was evicted.
        self.inner.lock().release(self.seq);
    }
}

/// Counts events and says when to log them: at most once per period, with
/// how many happened since the last line.
pub struct Throttled {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttled {
    pub fn new(every: Duration) -> Throttled {
        Throttled {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Notes one event; `Some(count)` when a line is due (the count of
    /// events since the last one, this one included).
    pub fn note(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 += 1;
        let due = state.0.is_none_or(|last| last.elapsed() >= self.every);
        if !due {
            return None;
        }
        let count = state.1;
        *state = (Some(Instant::now()), 0);
        Some(count)
    }
}

/// Raises the soft limit on open files to the hard limit and returns the
/// limit now in force (`None`: unlimited). Connections are file
/// descriptors: the caps on them are derived from this.
///
/// # Errors
/// The limit cannot be read or set.
pub fn raise_open_files_limit() -> std::io::Result<Option<u64>> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit)?;
    }
    Ok(getrlimit(Resource::Nofile).current)
}

/// The most connections a process with `open_files` descriptors may hold
/// while keeping `reserve` for everything else (its listeners, files,
/// outgoing links), at least 1 and at most `ceiling`.
pub fn connection_budget(open_files: Option<u64>, reserve: u64, ceiling: usize) -> usize {
    let budget = open_files.map_or(u64::MAX, |n| n.saturating_sub(reserve).max(1));
    usize::try_from(budget).unwrap_or(usize::MAX).min(ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_per_source_and_in_total_and_places_come_back() {
        let a = Admission::new("test", 3, 2);
        let one = a.admit(ip("10.0.0.1")).unwrap();
        let two = a.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(a.admit(ip("10.0.0.1")).err(), Some(Refusal::PerSource));
        let other = a.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(a.admit(ip("10.0.0.3")).err(), Some(Refusal::Total));
        assert_eq!(a.held(), 3);
        drop(one);
        assert_eq!(a.held(), 2);
        let again = a.admit(ip("10.0.0.1")).unwrap();
        drop((two, other, again));
        assert_eq!(a.held(), 0);
        assert!(
            a.inner.lock().by_source.is_empty(),
            "no address is remembered"
        );
    }

    #[test]
    fn the_oldest_place_goes_to_a_newcomer_when_evicting() {
        let a = Admission::evicting_oldest("test", 2, 2);
        let first = a.admit(ip("10.0.0.1")).unwrap();
        let second = a.admit(ip("10.0.0.2")).unwrap();
        assert!(!first.evicted.is_cancelled());
        let third = a.admit(ip("10.0.0.3")).unwrap();
        assert!(first.evicted.is_cancelled(), "the oldest made room");
        assert!(!second.evicted.is_cancelled());
        assert_eq!(a.held(), 2);
        drop(first); // its place is already gone: nothing given back twice
        assert_eq!(a.held(), 2);
        assert_eq!(a.inner.lock().by_source.get(&ip("10.0.0.1")), None);
        // The per-source cap still refuses.
        let _fourth = a.admit(ip("10.0.0.3")).unwrap();
        assert_eq!(a.admit(ip("10.0.0.3")).err(), Some(Refusal::PerSource));
        drop((second, third));
    }

    #[test]
    fn throttled_logs_the_first_event_then_counts() {
        let t = Throttled::new(Duration::from_secs(3600));
        assert_eq!(t.note(), Some(1));
        assert_eq!(t.note(), None);
        assert_eq!(t.note(), None);
        let t = Throttled::new(Duration::ZERO);
        assert_eq!(t.note(), Some(1));
        assert_eq!(t.note(), Some(1));
    }

    #[test]
    fn budgets_keep_the_reserve() {
        assert_eq!(connection_budget(Some(1024), 128, 100_000), 896);
        assert_eq!(connection_budget(Some(100), 128, 100_000), 1);
        assert_eq!(connection_budget(None, 128, 5000), 5000);
        assert_eq!(connection_budget(Some(1 << 40), 128, 5000), 5000);
    }

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let now = raise_open_files_limit().unwrap();
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        assert_eq!(now, hard);
    }
}
