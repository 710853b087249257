//! The tracker's wall clock, read in one place.
//!
//! The request handler reads it *before* a `Command` is built: heartbeats
//! and request ids carry the stamp, so `apply` never reads a clock and
//! replicas stay identical. Presence compares a replicated stamp with the
//! *reader's* clock; tickets expire by it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, by this machine's clock (0 if the
/// clock is set before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds since the Unix epoch (the unit of ticket expiry).
pub fn now_s() -> u64 {
    now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_after_2020_and_seconds_agree() {
        let ms = now_ms();
        assert!(ms > 1_577_836_800_000, "{ms}");
        assert!(now_s().abs_diff(ms / 1000) <= 1);
    }
}
