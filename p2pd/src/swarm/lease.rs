//! How long a served connection may go on: while its latest ticket is live.
//!
//! A seeder admits a peer on a ticket it checks on its own (signed by the
//! cluster's ticket key, naming the handshake's user, group and file and the
//! link key the peer proved on this very connection). The ticket expires
//! within a minute; the downloader sends fresh ones on the open connection,
//! and the tracker issues them only to logged-in members. So a member who
//! leaves the group or logs out stops receiving bytes once the last ticket
//! runs out, on connections already open too.

use p2p_link::ticket::{self, Claim, TicketError};
use p2p_link::PublicKey;
use proto::{FileName, GroupId, UserId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What one connection's tickets must name, and until when it is served.
#[derive(Debug)]
pub struct Lease {
    key: PublicKey,
    user: UserId,
    group: GroupId,
    file: FileName,
    requester: PublicKey,
    /// Seconds since the Unix epoch.
    expires_s: AtomicU64,
}

/// Seconds since the Unix epoch, by this machine's clock.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Lease {
    /// Admits `ticket` for (`user`, `group`, `file`) on a link keyed by
    /// `requester`, checked with the cluster's ticket `key`.
    ///
    /// # Errors
    /// Why the ticket is refused.
    pub fn grant(
        key: PublicKey,
        ticket: &str,
        (user, group, file): (UserId, GroupId, FileName),
        requester: PublicKey,
        now_s: u64,
    ) -> Result<Lease, TicketError> {
        let lease = Lease {
            key,
            user,
            group,
            file,
            requester,
            expires_s: AtomicU64::new(0),
        };
        lease.renew(ticket, now_s)?;
        Ok(lease)
    }

    /// Extends the lease with a fresh ticket for the same claim.
    ///
    /// # Errors
    /// Why the ticket is refused (the lease is left as it was).
    pub fn renew(&self, ticket: &str, now_s: u64) -> Result<(), TicketError> {
        let claim = Claim {
            user: &self.user,
            group: &self.group,
            file: &self.file,
            requester: &self.requester,
        };
        let expires = ticket::check(&self.key, ticket, &claim, now_s)?;
        self.expires_s.fetch_max(expires, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the connection may still be served at `now_s`.
    pub fn live(&self, now_s: u64) -> bool {
        now_s < self.expires_s.load(Ordering::Relaxed)
    }

    /// Resolves once the lease has run out (checked again after each
    /// renewal could have moved the expiry).
    pub async fn ended(&self) {
        loop {
            let now = now_s();
            if !self.live(now) {
                return;
            }
            let left = self.expires_s.load(Ordering::Relaxed).saturating_sub(now);
            tokio::time::sleep(Duration::from_secs(left.max(1))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_link::{ClusterKey, KeyPairDoc};

    struct World {
        key: KeyPairDoc,
        requester: PublicKey,
    }

    fn claim_of() -> (UserId, GroupId, FileName) {
        (
            "bob".parse().unwrap(),
            "g".parse().unwrap(),
            "f".parse().unwrap(),
        )
    }

    impl World {
        fn new() -> World {
            World {
                key: ClusterKey::generate().unwrap().ticket_key(),
                requester: KeyPairDoc::generate().unwrap().public(),
            }
        }

        fn ticket(&self, requester: &PublicKey, now: u64) -> String {
            let (user, group, file) = claim_of();
            let claim = Claim {
                user: &user,
                group: &group,
                file: &file,
                requester,
            };
            ticket::issue(&self.key, &claim, now)
        }
    }

    #[test]
    fn a_lease_lasts_as_long_as_its_latest_ticket() {
        let w = World::new();
        let t = w.ticket(&w.requester, 1000);
        let lease = Lease::grant(w.key.public(), &t, claim_of(), w.requester, 1000).unwrap();
        assert!(lease.live(1044));
        assert!(!lease.live(1045));
        lease.renew(&w.ticket(&w.requester, 1030), 1030).unwrap();
        assert!(lease.live(1074));
        assert!(!lease.live(1075));
        // An older ticket does not shorten it.
        lease.renew(&w.ticket(&w.requester, 1031), 1031).unwrap();
        lease.renew(&t, 1031).unwrap();
        assert!(lease.live(1074));
    }

    #[test]
    fn a_ticket_for_another_link_neither_grants_nor_renews() {
        let w = World::new();
        let thief = KeyPairDoc::generate().unwrap().public();
        let stolen = w.ticket(&w.requester, 1000);
        assert!(Lease::grant(w.key.public(), &stolen, claim_of(), thief, 1000).is_err());
        let own = w.ticket(&w.requester, 1000);
        let lease = Lease::grant(w.key.public(), &own, claim_of(), w.requester, 1000).unwrap();
        let for_thief = w.ticket(&thief, 1030);
        assert!(lease.renew(&for_thief, 1030).is_err());
        assert!(!lease.live(1045), "the refused renewal did not extend it");
    }

    #[tokio::test]
    async fn ended_resolves_once_expired() {
        let w = World::new();
        // Issued 44 s ago: one second left.
        let now = now_s();
        let t = w.ticket(&w.requester, now - 44);
        let lease = Lease::grant(w.key.public(), &t, claim_of(), w.requester, now).unwrap();
        tokio::time::timeout(Duration::from_secs(5), lease.ended())
            .await
            .expect("the lease ended");
    }
}
