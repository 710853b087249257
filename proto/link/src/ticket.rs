//! Download tickets: a tracker's signed word that a user may fetch one file
//! over one link, checked by the serving peer on its own.
//!
//! A ticket signs (user, group, file, the requester's link key, expiry) with
//! the cluster's ticket key (ed25519, derived from the cluster key). The
//! seeder rebuilds the signed bytes from what it already knows — the
//! handshake's user, group and file, and the key the requester proved on
//! the TLS link — so a ticket shown by anyone else, on any other connection,
//! or for another file does not verify. It is written `EXPIRY.SIGNATURE`.
//!
//! Short-lived by construction: the tracker issues tickets for
//! [`TICKET_LIFETIME`], and a seeder refuses one whose expiry lies further
//! ahead than [`MAX_TICKET_AHEAD`] (a capped expiry, whatever signed it).
//! Time is passed in (seconds since the Unix epoch), never read here.

use crate::keys::{verify, KeyPairDoc, PublicKey};
use proto::{FileName, GroupId, UserId};
use std::time::Duration;

/// How long a ticket is valid once issued. Downloaders renew well before.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(45);
/// The furthest expiry a seeder accepts: the lifetime plus room for the
/// clocks of tracker and seeder to disagree a little.
pub const MAX_TICKET_AHEAD: Duration = Duration::from_secs(60);
/// Longest ticket string looked at.
pub const MAX_TICKET_CHARS: usize = 160;
const DOMAIN: &[u8] = b"p2pshare ticket v1\0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("not a ticket")]
    Malformed,
    #[error("expired ticket")]
    Expired,
    #[error("ticket expiry is too far ahead")]
    TooFarAhead,
    #[error("ticket does not verify (another user, file or connection)")]
    BadSignature,
}

/// What a ticket vouches for.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub user: &'a UserId,
    pub group: &'a GroupId,
    pub file: &'a FileName,
    /// The key the requester proves on its link.
    pub requester: &'a PublicKey,
}

fn signed_bytes(claim: &Claim<'_>, expires: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(DOMAIN.len() + 128);
    bytes.extend_from_slice(DOMAIN);
    for field in [
        claim.user.as_str(),
        claim.group.as_str(),
        claim.file.as_str(),
    ] {
        bytes.extend_from_slice(&(field.len() as u64).to_be_bytes());
        bytes.extend_from_slice(field.as_bytes());
    }
    bytes.extend_from_slice(&claim.requester.0);
    bytes.extend_from_slice(&expires.to_be_bytes());
    bytes
}

/// A ticket for `claim`, valid from `now_s` for [`TICKET_LIFETIME`].
pub fn issue(key: &KeyPairDoc, claim: &Claim<'_>, now_s: u64) -> String {
    let expires = now_s + TICKET_LIFETIME.as_secs();
    let sig = key.sign(&signed_bytes(claim, expires));
    format!("{expires}.{}", hex::encode(sig))
}

/// Checks `ticket` for exactly `claim` at `now_s`; its expiry if good.
///
/// # Errors
/// Why the ticket is refused.
pub fn check(
    key: &PublicKey,
    ticket: &str,
    claim: &Claim<'_>,
    now_s: u64,
) -> Result<u64, TicketError> {
    if ticket.len() > MAX_TICKET_CHARS {
        return Err(TicketError::Malformed);
    }
    let (expires, sig) = ticket.split_once('.').ok_or(TicketError::Malformed)?;
    let expires: u64 = expires.parse().map_err(|_| TicketError::Malformed)?;
    let mut sig_bytes = [0u8; 64];
    hex::decode_to_slice(sig, &mut sig_bytes).map_err(|_| TicketError::Malformed)?;
    if expires <= now_s {
        return Err(TicketError::Expired);
    }
    if expires > now_s + MAX_TICKET_AHEAD.as_secs() {
        return Err(TicketError::TooFarAhead);
    }
    if !verify(key, &signed_bytes(claim, expires), &sig_bytes) {
        return Err(TicketError::BadSignature);
    }
    Ok(expires)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct World {
        key: KeyPairDoc,
        user: UserId,
        group: GroupId,
        file: FileName,
        requester: PublicKey,
    }

    fn world() -> World {
        World {
            key: KeyPairDoc::generate().unwrap(),
            user: "bob".parse().unwrap(),
            group: "g1".parse().unwrap(),
            file: "f.iso".parse().unwrap(),
            requester: KeyPairDoc::generate().unwrap().public(),
        }
    }

    impl World {
        fn claim(&self) -> Claim<'_> {
            Claim {
                user: &self.user,
                group: &self.group,
                file: &self.file,
                requester: &self.requester,
            }
        }
    }

    #[test]
    fn a_ticket_checks_for_its_claim_until_it_expires() {
        let w = world();
        let t = issue(&w.key, &w.claim(), 1000);
        let pk = w.key.public();
        assert_eq!(check(&pk, &t, &w.claim(), 1000), Ok(1045));
        assert_eq!(check(&pk, &t, &w.claim(), 1044), Ok(1045));
        assert_eq!(check(&pk, &t, &w.claim(), 1045), Err(TicketError::Expired));
    }

    #[test]
    fn any_other_user_file_group_or_connection_fails() {
        let w = world();
        let t = issue(&w.key, &w.claim(), 1000);
        let pk = w.key.public();
        let carol: UserId = "carol".parse().unwrap();
        let g2: GroupId = "g2".parse().unwrap();
        let other: FileName = "other".parse().unwrap();
        let stranger = KeyPairDoc::generate().unwrap().public();
        let base = w.claim();
        for claim in [
            Claim {
                user: &carol,
                ..base
            },
            Claim { group: &g2, ..base },
            Claim {
                file: &other,
                ..base
            },
            Claim {
                requester: &stranger,
                ..base
            },
        ] {
            assert_eq!(check(&pk, &t, &claim, 1000), Err(TicketError::BadSignature));
        }
        // Signed by another key (an impostor tracker's).
        let impostor = KeyPairDoc::generate().unwrap();
        let forged = issue(&impostor, &w.claim(), 1000);
        assert_eq!(
            check(&pk, &forged, &w.claim(), 1000),
            Err(TicketError::BadSignature)
        );
    }

    #[test]
    fn a_far_expiry_is_refused_even_when_signed() {
        let w = world();
        // Issued "in the future" is how a far expiry looks to the seeder.
        let t = issue(&w.key, &w.claim(), 1000 + 3600);
        assert_eq!(
            check(&w.key.public(), &t, &w.claim(), 1000),
            Err(TicketError::TooFarAhead)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let w = world();
        let pk = w.key.public();
        let long = "1".repeat(MAX_TICKET_CHARS + 1);
        for t in ["", ".", "12", "x.00", "12.zz", "12.00", long.as_str()] {
            assert_eq!(
                check(&pk, t, &w.claim(), 0),
                Err(TicketError::Malformed),
                "{t:?}"
            );
        }
        // A tampered expiry no longer verifies.
        let t = issue(&w.key, &w.claim(), 1000);
        let tampered = t.replacen("1045", "1050", 1);
        assert_eq!(
            check(&pk, &tampered, &w.claim(), 1000),
            Err(TicketError::BadSignature)
        );
    }
}
