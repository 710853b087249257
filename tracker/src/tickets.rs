//! Download tickets: short-lived proofs that a user may fetch one file.
//!
//! A downloader gets a ticket with `IssueTicket` and shows it to a seeding
//! peer, which asks the tracker about it with `CheckTicket`. Volatile: after
//! a tracker restart a downloader simply asks for a new one.
//!
//! Invariant: a ticket names exactly one (user, group, file) and is worthless
//! after [`TICKET_LIFETIME`]. Time is passed in, never read here.

use proto::{FileName, GroupId, UserId};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a ticket stays valid.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// Sweep expired tickets once the map grows past this many entries, so a
/// busy tracker does not keep every ticket it ever issued.
const SWEEP_THRESHOLD: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub user: UserId,
    pub group: GroupId,
    pub name: FileName,
    expires: Instant,
}

/// Live tickets by their random string.
#[derive(Debug, Default)]
pub struct TicketSet {
    tickets: HashMap<String, Ticket>,
}

impl TicketSet {
    /// Records `ticket` (a fresh random string) for `user`'s download.
    pub fn issue(
        &mut self,
        ticket: String,
        user: UserId,
        group: GroupId,
        name: FileName,
        now: Instant,
    ) {
        if self.tickets.len() >= SWEEP_THRESHOLD {
            self.tickets.retain(|_, t| t.expires > now);
        }
        self.tickets.insert(
            ticket,
            Ticket {
                user,
                group,
                name,
                expires: now + TICKET_LIFETIME,
            },
        );
    }

    /// The user of a live ticket for exactly this group and file.
    pub fn check(
        &self,
        ticket: &str,
        group: &GroupId,
        name: &FileName,
        now: Instant,
    ) -> Option<&UserId> {
        let t = self.tickets.get(ticket)?;
        (t.expires > now && &t.group == group && &t.name == name).then_some(&t.user)
    }

    pub fn len(&self) -> usize {
        self.tickets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_matches_its_file_until_it_expires() {
        let t0 = Instant::now();
        let (g1, f) = ("g1".parse().unwrap(), "f".parse().unwrap());
        let mut set = TicketSet::default();
        set.issue("abc".into(), "bob".parse().unwrap(), g1, f, t0);
        let (g1, f): (GroupId, FileName) = ("g1".parse().unwrap(), "f".parse().unwrap());
        assert_eq!(
            set.check("abc", &g1, &f, t0).map(|u| u.as_str()),
            Some("bob")
        );
        assert_eq!(set.check("abd", &g1, &f, t0), None);
        assert_eq!(set.check("abc", &"g2".parse().unwrap(), &f, t0), None);
        assert_eq!(set.check("abc", &g1, &"other".parse().unwrap(), t0), None);
        let later = t0 + TICKET_LIFETIME;
        assert_eq!(set.check("abc", &g1, &f, later), None);
    }

    #[test]
    fn expired_tickets_are_swept() {
        let t0 = Instant::now();
        let mut set = TicketSet::default();
        for i in 0..SWEEP_THRESHOLD {
            set.issue(
                i.to_string(),
                "u".parse().unwrap(),
                "g".parse().unwrap(),
                "f".parse().unwrap(),
                t0,
            );
        }
        let later = t0 + TICKET_LIFETIME + Duration::from_secs(1);
        set.issue(
            "new".into(),
            "u".parse().unwrap(),
            "g".parse().unwrap(),
            "f".parse().unwrap(),
            later,
        );
        assert_eq!(set.len(), 1);
    }
}
