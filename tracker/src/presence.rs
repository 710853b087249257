//! Who is online, and at which peer address.
//!
//! Volatile on purpose: presence is re-established by heartbeats within
//! [`HEARTBEAT_INTERVAL`](proto::tracker::HEARTBEAT_INTERVAL) of a restart, so
//! logging it would only slow every heartbeat down.
//!
//! Invariant: a user is online iff their last heartbeat is younger than
//! [`PRESENCE_TIMEOUT`] *and* was sent with the session that is still theirs.
//! The second half means a login elsewhere or a logout takes effect at once,
//! even for a heartbeat that raced with it. Time is passed in, never read
//! here, so tests drive it with plain `Instant`s.

use proto::tracker::{SessionToken, PRESENCE_TIMEOUT};
use proto::UserId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Seen {
    token: SessionToken,
    addr: SocketAddr,
    last_seen: Instant,
}

/// Last heartbeat of each user.
#[derive(Debug)]
pub struct PresenceSet {
    seen: HashMap<UserId, Seen>,
    timeout: Duration,
    /// Map size at which `mark_alive` next sweeps stale entries.
    next_sweep: usize,
}

const MIN_SWEEP_LEN: usize = 1024;

impl Default for PresenceSet {
    fn default() -> Self {
        PresenceSet::new(PRESENCE_TIMEOUT)
    }
}

impl PresenceSet {
    pub fn new(timeout: Duration) -> Self {
        PresenceSet {
            seen: HashMap::new(),
            timeout,
            next_sweep: MIN_SWEEP_LEN,
        }
    }

    /// Records a heartbeat of `user`, sent with `token`, serving at `addr`.
    pub fn mark_alive(
        &mut self,
        user: UserId,
        token: SessionToken,
        addr: SocketAddr,
        now: Instant,
    ) {
        self.seen.insert(
            user,
            Seen {
                token,
                addr,
                last_seen: now,
            },
        );
        // Keep memory bounded by users who come and go: sweep whenever the
        // map has doubled since the last sweep, so the cost is amortised.
        if self.seen.len() >= self.next_sweep {
            self.prune(now);
            self.next_sweep = (2 * self.seen.len()).max(MIN_SWEEP_LEN);
        }
    }

    /// Forgets `user` at once (logout, or a new session elsewhere).
    pub fn remove(&mut self, user: &UserId) {
        self.seen.remove(user);
    }

    /// Where `user` serves peers, if they are online: heard from within the
    /// timeout, with `current_session` (their live session, if any).
    pub fn online_addr(
        &self,
        user: &UserId,
        current_session: Option<&SessionToken>,
        now: Instant,
    ) -> Option<SocketAddr> {
        let seen = self.seen.get(user)?;
        let fresh = now.saturating_duration_since(seen.last_seen) < self.timeout;
        (fresh && current_session == Some(&seen.token)).then_some(seen.addr)
    }

    /// Drops every entry older than the timeout.
    pub fn prune(&mut self, now: Instant) {
        let timeout = self.timeout;
        self.seen
            .retain(|_, s| now.saturating_duration_since(s.last_seen) < timeout);
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserId {
        "alice".parse().unwrap()
    }
    fn addr() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    #[test]
    fn online_until_the_timeout() {
        let t0 = Instant::now();
        let tok = SessionToken("t".into());
        let mut p = PresenceSet::default();
        assert_eq!(p.online_addr(&alice(), Some(&tok), t0), None);
        p.mark_alive(alice(), tok.clone(), addr(), t0);
        assert_eq!(p.online_addr(&alice(), Some(&tok), t0), Some(addr()));
        let almost = t0 + PRESENCE_TIMEOUT - Duration::from_millis(1);
        assert_eq!(p.online_addr(&alice(), Some(&tok), almost), Some(addr()));
        assert_eq!(
            p.online_addr(&alice(), Some(&tok), t0 + PRESENCE_TIMEOUT),
            None
        );
        // A heartbeat brings them back.
        p.mark_alive(alice(), tok.clone(), addr(), t0 + PRESENCE_TIMEOUT);
        assert!(p
            .online_addr(&alice(), Some(&tok), t0 + PRESENCE_TIMEOUT)
            .is_some());
    }

    #[test]
    fn an_ended_or_replaced_session_is_offline_at_once() {
        let t0 = Instant::now();
        let old = SessionToken("old".into());
        let mut p = PresenceSet::default();
        p.mark_alive(alice(), old.clone(), addr(), t0);
        assert_eq!(p.online_addr(&alice(), None, t0), None);
        let new = SessionToken("new".into());
        assert_eq!(p.online_addr(&alice(), Some(&new), t0), None);
        p.remove(&alice());
        assert_eq!(p.online_addr(&alice(), Some(&old), t0), None);
    }

    #[test]
    fn prune_drops_stale_entries() {
        let t0 = Instant::now();
        let mut p = PresenceSet::new(Duration::from_secs(1));
        p.mark_alive(alice(), SessionToken("t".into()), addr(), t0);
        p.prune(t0 + Duration::from_millis(500));
        assert_eq!(p.len(), 1);
        p.prune(t0 + Duration::from_secs(2));
        assert!(p.is_empty());
    }
}
