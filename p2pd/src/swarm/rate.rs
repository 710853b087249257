//! `--max-upload-rate` / `--max-download-rate`: one token bucket per
//! direction, shared by every connection of the daemon.
//!
//! The bucket lends: a reservation always succeeds and may drive the
//! balance negative; the caller then waits until the debt is paid back at
//! the configured rate. So concurrent callers queue fairly, in the order
//! they reserved, and a block larger than the burst still goes through.
//! [`Bucket`] is pure (time is passed in); [`RateLimiter`] is the shared,
//! async handle. [`RateMeter`] measures a rate for progress displays.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The smallest burst: one block, so a slow limit still sends whole blocks
/// without waiting before the first one.
const MIN_BURST_BYTES: f64 = 128.0 * 1024.0;
/// The burst is this share of one second's worth of bytes.
const BURST_SECONDS: f64 = 0.25;

/// A token bucket of `rate` bytes per second.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket for `rate` bytes per second (at least 1).
    pub fn new(rate: u64, now: Instant) -> Bucket {
        let rate = rate.max(1) as f64;
        let burst = (rate * BURST_SECONDS).max(MIN_BURST_BYTES);
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes `n` bytes' worth of tokens at `now` and returns how long the
    /// caller must wait before sending them (zero if the bucket covered it).
    pub fn reserve(&mut self, n: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// A shared limit, or none (unlimited). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter(Option<Arc<Mutex<Bucket>>>);

impl RateLimiter {
    /// `None`: unlimited.
    pub fn new(rate: Option<u64>) -> RateLimiter {
        RateLimiter(rate.map(|r| Arc::new(Mutex::new(Bucket::new(r, Instant::now())))))
    }

    /// Waits until `n` bytes may be sent or received.
    pub async fn acquire(&self, n: u64) {
        let Some(bucket) = &self.0 else { return };
        let wait = bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reserve(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The window [`RateMeter`] averages over.
const RATE_WINDOW: Duration = Duration::from_secs(3);

/// Bytes per second over the last [`RATE_WINDOW`].
#[derive(Debug, Default)]
pub struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    /// Record `total` bytes now and return the recent rate.
    pub fn update(&mut self, total: u64) -> u64 {
        let now = Instant::now();
        self.samples.push_back((now, total));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let Some(&(t0, b0)) = self.samples.front() else {
            return 0;
        };
        let secs = now.duration_since(t0).as_secs_f64();
        if secs < 0.05 {
            return 0;
        }
        (total.saturating_sub(b0) as f64 / secs) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_paced() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1024 * 1024, t0);
        // The burst (256 KiB at 1 MiB/s) goes at once.
        assert_eq!(b.reserve(256 * 1024, t0), Duration::ZERO);
        // The next 512 KiB must wait half a second.
        let w = b.reserve(512 * 1024, t0);
        assert!((w.as_secs_f64() - 0.5).abs() < 1e-6, "{w:?}");
        // A second caller queues behind the first.
        let w = b.reserve(1024 * 1024, t0);
        assert!((w.as_secs_f64() - 1.5).abs() < 1e-6, "{w:?}");
        // Idle time refills, but never past the burst.
        let later = t0 + Duration::from_secs(100);
        assert_eq!(b.reserve(256 * 1024, later), Duration::ZERO);
        assert!(b.reserve(1, later) > Duration::ZERO);
    }

    #[test]
    fn long_run_rate_is_the_limit() {
        let t0 = Instant::now();
        let mut b = Bucket::new(4 * 1024 * 1024, t0);
        let mut now = t0;
        let mut sent = 0u64;
        // 200 blocks of 128 KiB, each sent when the bucket allows.
        for _ in 0..200 {
            now += b.reserve(128 * 1024, now);
            sent += 128 * 1024;
        }
        let secs = now.duration_since(t0).as_secs_f64();
        let rate = sent as f64 / secs;
        assert!(
            (rate / (4.0 * 1024.0 * 1024.0) - 1.0).abs() < 0.05,
            "{rate}"
        );
    }

    #[test]
    fn tiny_rates_and_clock_skew_do_not_panic() {
        let t0 = Instant::now();
        let mut b = Bucket::new(0, t0);
        assert!(b.reserve(1 << 20, t0) > Duration::ZERO);
        // `now` before `last` (callers race on Instant::now()).
        let _ = b.reserve(1, t0 - Duration::from_millis(1).min(t0.elapsed()));
    }

    #[tokio::test]
    async fn unlimited_never_waits() {
        let r = RateLimiter::new(None);
        r.acquire(u64::MAX).await;
    }

    #[test]
    fn rate_meter_starts_at_zero() {
        let mut m = RateMeter::default();
        assert_eq!(m.update(0), 0);
        assert_eq!(m.update(1000), 0, "too short a window to say");
    }
}
