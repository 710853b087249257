//! Idle links to peer trackers kept for the next one-shot request
//! (forwarded writes, presence batches, probes). Under write load a
//! follower forwards a batch every few milliseconds; a TLS handshake for
//! each (two signatures, two verifications, a key exchange, an extra round
//! trip) took CPU the write path needed.
//!
//! Reuse must not blur "not sent" with "outcome unknown": a link is handed
//! out only while its peer has not closed it (a closed one shows end of
//! stream or stray bytes to a peek; a restarted tracker's links all do),
//! and the caller treats a request it could not write whole on a reused
//! link as not sent and opens a fresh one (`network::send_once`). A link
//! whose exchange failed in any way is never put back, so a late reply
//! cannot answer the next request.

use p2p_link::Link;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Idle links kept per peer; a follower has at most a few batches in
/// flight at once.
pub const MAX_IDLE_PER_PEER: usize = 4;
/// An idle link older than this is closed rather than reused.
pub const MAX_IDLE_AGE: Duration = Duration::from_secs(30);

/// Shared by every clone of the dialer that owns it.
#[derive(Clone, Debug, Default)]
pub struct LinkPool(Arc<Mutex<Vec<Idle>>>);

#[derive(Debug)]
struct Idle {
    addr: SocketAddr,
    link: Link,
    since: Instant,
}

impl LinkPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle link to `addr` that is still open;
    /// closes the stale ones met on the way.
    pub fn take(&self, addr: SocketAddr) -> Option<Link> {
        let mut idle = self.lock();
        let now = Instant::now();
        while let Some(pos) = idle.iter().rposition(|i| i.addr == addr) {
            let candidate = idle.remove(pos);
            if now.duration_since(candidate.since) < MAX_IDLE_AGE && still_open(&candidate.link) {
                return Some(candidate.link);
            }
        }
        None
    }

    /// Keeps `link` (its last exchange complete) for the next request to
    /// `addr`, unless enough are kept already.
    pub fn put(&self, addr: SocketAddr, link: Link) {
        let mut idle = self.lock();
        let now = Instant::now();
        idle.retain(|i| now.duration_since(i.since) < MAX_IDLE_AGE);
        if idle.iter().filter(|i| i.addr == addr).count() < MAX_IDLE_PER_PEER {
            idle.push(Idle {
                addr,
                link,
                since: now,
            });
        }
    }

    /// How many idle links are kept (tests).
    #[cfg(test)]
    pub fn idle(&self) -> usize {
        self.lock().len()
    }
}

/// True while nothing is waiting to be read on `link`'s socket: between
/// requests the peer sends nothing, so end of stream, an error or any
/// bytes (a TLS alert) mean it closed or broke the link.
fn still_open(link: &Link) -> bool {
    let tcp = link.get_ref().0;
    let mut probe = [0u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut probe);
    let mut cx = Context::from_waker(Waker::noop());
    matches!(tcp.poll_peek(&mut cx, &mut buf), Poll::Pending)
}

#[cfg(test)]
mod tests {
    use super::super::network::{send_once, PeerReply, PeerRequest};
    use super::super::testing::{self, FakePeer};
    use std::time::Duration;

    const TTL: Duration = Duration::from_secs(2);

    fn probed(reply: PeerReply) -> bool {
        matches!(reply, PeerReply::Probed { pristine: true })
    }

    #[tokio::test]
    async fn one_shot_requests_reuse_an_idle_link() {
        let peer = FakePeer::start(|_| PeerReply::Probed { pristine: true }).await;
        let dialer = testing::dialer(2);
        for _ in 0..3 {
            let reply = send_once(&dialer, peer.addr, &PeerRequest::Probe, TTL).await;
            assert!(probed(reply.unwrap()));
        }
        assert_eq!(peer.connections(), 1, "one handshake for three requests");
        assert_eq!(peer.requests().len(), 3);
        assert_eq!(dialer.pool.idle(), 1);
    }

    /// A peer that closed its end (as a restarted tracker's links are) is
    /// noticed before anything is written: the request goes out on a fresh
    /// link and is answered, instead of failing as "outcome unknown".
    #[tokio::test]
    async fn a_link_its_peer_closed_is_not_reused() {
        let peer = FakePeer::start_closing(|_| PeerReply::Probed { pristine: true }).await;
        let dialer = testing::dialer(2);
        for _ in 0..3 {
            let reply = send_once(&dialer, peer.addr, &PeerRequest::Probe, TTL).await;
            assert!(probed(reply.expect("answered on a fresh link")));
            // The peer's close reaches this end.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(peer.connections(), 3);
        assert_eq!(peer.requests().len(), 3);
    }
}
