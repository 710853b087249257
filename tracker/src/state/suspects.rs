//! Copies reported corrupt: which holders' copies of which files are not
//! listed until their holder has re-hashed them.
//!
//! A downloader that banned a holder for data failing its SHA-1 reports it
//! ([`Command::ReportCorrupt`](super::Command::ReportCorrupt)). From then on
//! `locate` leaves that copy out and `list_files` does not count it online.
//! The holder learns of it in its heartbeat's answer, re-hashes its file,
//! and either registers it again (which clears the mark) or stops sharing
//! it (which removes the copy). A copy that stops existing otherwise (the
//! file is delisted, the holder leaves the group) takes its mark along.
//!
//! Keyed by holder, so a heartbeat finds its user's marks without walking
//! every group.

use proto::tracker::SharedRef;
use proto::UserId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct Suspects(BTreeMap<UserId, BTreeSet<SharedRef>>);

impl Suspects {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Marks `holder`'s copy of `file`; false if it was marked already.
    pub(super) fn mark(&mut self, holder: UserId, file: SharedRef) -> bool {
        self.0.entry(holder).or_default().insert(file)
    }

    pub(super) fn contains(&self, holder: &UserId, file: &SharedRef) -> bool {
        self.0.get(holder).is_some_and(|s| s.contains(file))
    }

    /// `holder`'s marked copies, sorted.
    pub(super) fn of(&self, holder: &UserId) -> Vec<SharedRef> {
        self.0
            .get(holder)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `holder`'s copy of `file` was re-verified or is gone.
    pub(super) fn clear(&mut self, holder: &UserId, file: &SharedRef) {
        self.retain_of(holder, |f| f != file);
    }

    /// `holder` left `group`: none of its copies there exist any more.
    pub(super) fn clear_group(&mut self, holder: &UserId, group: &proto::GroupId) {
        self.retain_of(holder, |f| &f.group != group);
    }

    /// `file` is no longer listed: nobody's copy of it exists any more.
    pub(super) fn clear_file(&mut self, file: &SharedRef) {
        self.0.retain(|_, set| {
            set.remove(file);
            !set.is_empty()
        });
    }

    fn retain_of(&mut self, holder: &UserId, keep: impl FnMut(&SharedRef) -> bool) {
        if let Some(set) = self.0.get_mut(holder) {
            set.retain(keep);
            if set.is_empty() {
                self.0.remove(holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(group: &str, name: &str) -> SharedRef {
        SharedRef {
            group: group.parse().unwrap(),
            name: name.parse().unwrap(),
        }
    }

    #[test]
    fn marks_are_per_holder_and_cleared_every_way_a_copy_ends() {
        let (bob, carol): (UserId, UserId) = ("bob".parse().unwrap(), "carol".parse().unwrap());
        let mut s = Suspects::default();
        assert!(s.mark(bob.clone(), f("g", "a")));
        assert!(!s.mark(bob.clone(), f("g", "a")), "once");
        s.mark(bob.clone(), f("g", "b"));
        s.mark(bob.clone(), f("h", "a"));
        s.mark(carol.clone(), f("g", "a"));
        assert!(s.contains(&bob, &f("g", "a")));
        assert!(!s.contains(&carol, &f("g", "b")));
        assert_eq!(s.of(&bob), [f("g", "a"), f("g", "b"), f("h", "a")]);

        s.clear(&bob, &f("g", "b"));
        s.clear_group(&bob, &"h".parse().unwrap());
        assert_eq!(s.of(&bob), [f("g", "a")]);
        s.clear_file(&f("g", "a"));
        assert!(s.of(&bob).is_empty() && s.of(&carol).is_empty());
        assert!(s.is_empty(), "no empty sets left behind: {s:?}");
    }

    #[test]
    fn serialises_as_a_plain_map() {
        let mut s = Suspects::default();
        s.mark("bob".parse().unwrap(), f("g", "a"));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"bob":[{"group":"g","name":"a"}]}"#);
        assert_eq!(serde_json::from_str::<Suspects>(&json).unwrap(), s);
    }
}
