//! Download tickets: short-lived proofs that a user may fetch one file.
//!
//! A downloader gets a ticket with `IssueTicket` and shows it to a seeding
//! peer, which asks *any* tracker about it with `CheckTicket`. Tickets are
//! therefore stateless and signed: `user:expiry:mac`, where `mac` is
//! HMAC-SHA1 over (user, group, file, expiry) with the cluster's ticket key
//! (replicated state, set once by the first leader). Any tracker can check
//! a ticket another one issued; nothing about tickets is stored.
//!
//! Invariant: a ticket names exactly one (user, group, file) and is worthless
//! after [`TICKET_LIFETIME`]. Time is passed in (seconds since the Unix
//! epoch), never read here.

use aws_lc_rs::hmac;
use proto::{FileName, GroupId, UserId};
use std::time::Duration;

/// How long a ticket stays valid.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Longest ticket string looked at; anything longer is not one of ours.
const MAX_TICKET_BYTES: usize = 256;

/// The signed bytes: length-prefixed fields, so no two different tuples
/// sign the same bytes, then the expiry.
fn signed_bytes(user: &UserId, group: &GroupId, name: &FileName, expires: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(64);
    for field in [user.as_str(), group.as_str(), name.as_str()] {
        bytes.extend_from_slice(&(field.len() as u64).to_be_bytes());
        bytes.extend_from_slice(field.as_bytes());
    }
    bytes.extend_from_slice(&expires.to_be_bytes());
    bytes
}

/// HMAC-SHA1: the ticket format predates the choice of library, and SHA-1
/// is still sound inside an HMAC; AWS-LC is the project's one crypto library.
fn key(secret: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes())
}

/// A ticket for `user` to fetch `name` in `group`, valid from `now_s` for
/// [`TICKET_LIFETIME`].
pub fn issue(secret: &str, user: &UserId, group: &GroupId, name: &FileName, now_s: u64) -> String {
    let expires = now_s + TICKET_LIFETIME.as_secs();
    let tag = hmac::sign(&key(secret), &signed_bytes(user, group, name, expires));
    format!("{user}:{expires}:{}", hex::encode(tag.as_ref()))
}

/// The user of a live ticket for exactly this group and file.
pub fn check(
    secret: &str,
    ticket: &str,
    group: &GroupId,
    name: &FileName,
    now_s: u64,
) -> Option<UserId> {
    if ticket.len() > MAX_TICKET_BYTES {
        return None;
    }
    let mut parts = ticket.split(':');
    let (user, expires, tag) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let user: UserId = user.parse().ok()?;
    let expires: u64 = expires.parse().ok()?;
    let tag = hex::decode(tag).ok()?;
    if expires <= now_s {
        return None;
    }
    // hmac::verify compares in constant time.
    let signed = signed_bytes(&user, group, name, expires);
    hmac::verify(&key(secret), &signed, &tag).ok()?;
    Some(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_bound_to_file_key_and_time() {
        let (alice, g1, g2) = (
            "alice".parse().unwrap(),
            "g1".parse().unwrap(),
            "g2".parse().unwrap(),
        );
        let (f, other): (FileName, FileName) = ("f".parse().unwrap(), "x".parse().unwrap());
        let t = issue("key", &alice, &g1, &f, 1000);
        assert_eq!(check("key", &t, &g1, &f, 1000), Some(alice.clone()));
        assert_eq!(check("key", &t, &g2, &f, 1000), None);
        assert_eq!(check("key", &t, &g1, &other, 1000), None);
        assert_eq!(check("other key", &t, &g1, &f, 1000), None);
        let expiry = 1000 + TICKET_LIFETIME.as_secs();
        assert_eq!(check("key", &t, &g1, &f, expiry - 1), Some(alice));
        assert_eq!(check("key", &t, &g1, &f, expiry), None);
        // Forged user, garbage, oversized input.
        let forged = t.replacen("alice", "bob", 1);
        assert_eq!(check("key", &forged, &g1, &f, 1000), None);
        for junk in ["", "::", "a:b:c:d", "alice:1:zz", &"x".repeat(10_000)] {
            assert_eq!(check("key", junk, &g1, &f, 0), None, "{junk:.20}");
        }
    }

    /// The format is a contract between trackers of one cluster: this
    /// ticket was issued by the first implementation (and matches Python's
    /// `hmac.new(b"key", msg, hashlib.sha1)` over the same bytes).
    #[test]
    fn the_ticket_format_is_stable() {
        let (alice, g1, f): (UserId, GroupId, FileName) = (
            "alice".parse().unwrap(),
            "g1".parse().unwrap(),
            "f".parse().unwrap(),
        );
        let known = "alice:1600:4d32810bbeb4af973420bf1f83ce9ac9df397b99";
        assert_eq!(issue("key", &alice, &g1, &f, 1000), known);
        assert_eq!(check("key", known, &g1, &f, 1599), Some(alice));
        let flipped = known.replace("4d32", "4d33");
        assert_eq!(check("key", &flipped, &g1, &f, 1000), None);
    }
}
