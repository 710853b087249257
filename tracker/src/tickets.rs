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

use hmac::{Hmac, Mac};
use proto::{FileName, GroupId, UserId};
use sha1::Sha1;
use std::time::Duration;

/// How long a ticket stays valid.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Longest ticket string looked at; anything longer is not one of ours.
const MAX_TICKET_BYTES: usize = 256;

type HmacSha1 = Hmac<Sha1>;

fn mac(secret: &str, user: &UserId, group: &GroupId, name: &FileName, expires: u64) -> HmacSha1 {
    let mut mac =
        HmacSha1::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    // Length-prefixed fields, so no two different tuples sign the same bytes.
    for field in [user.as_str(), group.as_str(), name.as_str()] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    mac.update(&expires.to_be_bytes());
    mac
}

/// A ticket for `user` to fetch `name` in `group`, valid from `now_s` for
/// [`TICKET_LIFETIME`].
pub fn issue(secret: &str, user: &UserId, group: &GroupId, name: &FileName, now_s: u64) -> String {
    let expires = now_s + TICKET_LIFETIME.as_secs();
    let tag = mac(secret, user, group, name, expires)
        .finalize()
        .into_bytes();
    format!("{user}:{expires}:{}", hex::encode(tag))
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
    // verify_slice compares in constant time.
    mac(secret, &user, group, name, expires)
        .verify_slice(&tag)
        .ok()?;
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
