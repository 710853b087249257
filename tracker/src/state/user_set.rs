//! [`UserSet`]: the users holding a file, as a sorted `Vec`.
//!
//! Why not `BTreeSet`: a shared file has one or a few holders, and a
//! `BTreeSet` allocates a whole leaf (room for 11 ids, ~280 bytes) for its
//! first one. Each listed file has such a set, so at 50,000 files they were
//! 13 MiB of a tracker's heap; a sorted `Vec` of one id is 24 bytes.
//! Lookups are a binary search; inserts and removals move at most the
//! members of one group.
//!
//! It (de)serialises as a list, as `BTreeSet` did, so logs and snapshots
//! written before read unchanged; a list read in any order or with
//! repeats is sorted and deduplicated.

use proto::UserId;
use serde::{Deserialize, Deserializer, Serialize};

/// A set of users, sorted, without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub(super) struct UserSet(Vec<UserId>);

impl UserSet {
    pub(super) fn of(user: UserId) -> UserSet {
        UserSet(vec![user])
    }

    pub(super) fn contains(&self, user: &UserId) -> bool {
        self.0.binary_search(user).is_ok()
    }

    /// Adds `user`; false if it was already there.
    pub(super) fn insert(&mut self, user: UserId) -> bool {
        match self.0.binary_search(&user) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, user);
                true
            }
        }
    }

    /// Removes `user`; false if it was not there. Gives back the spare room
    /// once the set is empty, so an emptied set costs nothing.
    pub(super) fn remove(&mut self, user: &UserId) -> bool {
        match self.0.binary_search(user) {
            Ok(at) => {
                self.0.remove(at);
                if self.0.is_empty() {
                    self.0 = Vec::new();
                }
                true
            }
            Err(_) => false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In order.
    pub(super) fn iter(&self) -> std::slice::Iter<'_, UserId> {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for UserSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut users = Vec::<UserId>::deserialize(d)?;
        users.sort_unstable();
        users.dedup();
        users.shrink_to_fit();
        Ok(UserSet(users))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn u(s: &str) -> UserId {
        s.parse().unwrap()
    }

    #[test]
    fn behaves_like_a_btree_set() {
        let mut set = UserSet::default();
        let mut model = BTreeSet::new();
        // A fixed pseudo-random walk of inserts and removals over 12 names.
        let mut x: u32 = 7;
        for _ in 0..500 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let name = u(&format!("user{}", (x >> 16) % 12));
            if (x >> 8).is_multiple_of(3) {
                assert_eq!(set.remove(&name), model.remove(&name));
            } else {
                assert_eq!(set.insert(name.clone()), model.insert(name));
            }
            assert_eq!(set.len(), model.len());
            assert_eq!(set.is_empty(), model.is_empty());
            assert!(set.iter().eq(model.iter()));
            assert!(model.iter().all(|m| set.contains(m)));
        }
    }

    #[test]
    fn reads_what_a_btree_set_wrote_and_writes_the_same() {
        let model: BTreeSet<UserId> = [u("carol"), u("alice"), u("bob")].into();
        let json = serde_json::to_string(&model).unwrap();
        let set: UserSet = serde_json::from_str(&json).unwrap();
        assert!(set.iter().eq(model.iter()));
        assert_eq!(serde_json::to_string(&set).unwrap(), json);
        let bin = proto::codec::encode(&model).unwrap();
        let set: UserSet = proto::codec::decode(&bin).unwrap();
        assert_eq!(proto::codec::encode(&set).unwrap(), bin);
    }

    #[test]
    fn an_unsorted_list_with_repeats_is_read_as_a_set() {
        let set: UserSet = serde_json::from_str(r#"["bob","alice","bob"]"#).unwrap();
        assert!(set.iter().eq([u("alice"), u("bob")].iter()));
        assert!(set.contains(&u("bob")) && !set.contains(&u("carol")));
    }
}
