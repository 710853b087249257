//! Who is fetching which file from this daemon right now.
//!
//! Each served connection joins the book under its file and its
//! downloader's user for as long as it is served ([`Fetching`] leaves on
//! drop), and watches the file's list: the seeder tells every downloader
//! who else fetches the same file from it (`Fetchers`). That is how
//! downloaders that start together find each other within moments instead
//! of at their next look at the tracker, and how a downloader learns that
//! its sources are shared, so it spreads its picks over the whole file
//! (see `picker`).
//!
//! The book names users only; a downloader that hears of one still asks
//! the tracker for its address and key, so a hint can never point anyone at
//! an unvetted address.

use super::steering::Steering;
use proto::{FileName, GroupId, Sha1Hash, UserId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// One served file: the same content under the same name in one group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub group: GroupId,
    pub name: FileName,
    pub sha1: Sha1Hash,
}

#[derive(Debug)]
struct Entry {
    /// Connections per user (a downloader may reconnect before its old
    /// connection is gone).
    users: BTreeMap<UserId, u32>,
    list: watch::Sender<Arc<[UserId]>>,
    /// How the crowd is steered, while we serve the whole file.
    steering: Option<Arc<Steering>>,
}

/// Every file being fetched from this daemon, and by whom.
#[derive(Debug, Default)]
pub struct FetcherBook {
    files: Mutex<HashMap<FileKey, Entry>>,
}

/// A served connection's place in the book; leaves it when dropped.
#[derive(Debug)]
pub struct Fetching {
    book: Arc<FetcherBook>,
    key: FileKey,
    user: UserId,
}

impl FetcherBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FileKey, Entry>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `user` is now fetching `key` from us. Returns its place and a watch
    /// of everyone fetching that file (itself included), sorted.
    pub fn join(
        self: &Arc<Self>,
        key: FileKey,
        user: UserId,
    ) -> (Fetching, watch::Receiver<Arc<[UserId]>>) {
        let mut files = self.lock();
        let entry = files.entry(key.clone()).or_insert_with(|| Entry {
            users: BTreeMap::new(),
            list: watch::Sender::new(Arc::from(Vec::new())),
            steering: None,
        });
        *entry.users.entry(user.clone()).or_insert(0) += 1;
        publish(entry);
        let rx = entry.list.subscribe();
        let place = Fetching {
            book: self.clone(),
            key,
            user,
        };
        (place, rx)
    }

    /// How many files have at least one fetcher (for tests and status).
    pub fn files(&self) -> usize {
        self.lock().len()
    }
}

impl Fetching {
    /// The steering of this file's crowd (a whole file of `pieces`
    /// pieces), shared with every other connection serving it; it starts
    /// afresh once nobody fetches the file.
    pub fn steering(&self, pieces: u32) -> Arc<Steering> {
        let mut files = self.book.lock();
        let entry = files
            .get_mut(&self.key)
            .expect("a file stays in the book while anyone fetches it");
        entry
            .steering
            .get_or_insert_with(|| Arc::new(Steering::new(pieces)))
            .clone()
    }
}

fn publish(entry: &Entry) {
    let list: Arc<[UserId]> = entry.users.keys().cloned().collect();
    entry.list.send_replace(list);
}

impl Drop for Fetching {
    fn drop(&mut self) {
        let mut files = self.book.lock();
        let Some(entry) = files.get_mut(&self.key) else {
            return;
        };
        if let Some(n) = entry.users.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                entry.users.remove(&self.user);
            }
        }
        if entry.users.is_empty() {
            files.remove(&self.key);
        } else {
            publish(entry);
        }
    }
}

/// What to tell `me` about the others in `all`: everyone but `me`, at most
/// `max`, a random sample when there are more (so that, across the
/// connections of a large swarm, every fetcher gets named to someone).
pub fn others<R: rand::Rng + ?Sized>(
    all: &[UserId],
    me: &UserId,
    max: usize,
    rng: &mut R,
) -> Vec<UserId> {
    let mut out: Vec<UserId> = all.iter().filter(|u| *u != me).cloned().collect();
    if out.len() > max {
        let keep = rand::seq::index::sample(rng, out.len(), max);
        let mut picked: Vec<UserId> = keep.iter().map(|i| out[i].clone()).collect();
        picked.sort();
        out = picked;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn key(name: &str) -> FileKey {
        FileKey {
            group: "g".parse().unwrap(),
            name: name.parse().unwrap(),
            sha1: Sha1Hash([1; 20]),
        }
    }
    fn u(s: &str) -> UserId {
        s.parse().unwrap()
    }

    #[test]
    fn joins_and_leaves_are_seen_by_every_watcher() {
        let book = Arc::new(FetcherBook::default());
        let (a, mut rx_a) = book.join(key("f"), u("alice"));
        assert_eq!(&**rx_a.borrow_and_update(), &[u("alice")]);
        let (b, rx_b) = book.join(key("f"), u("bob"));
        assert!(rx_a.has_changed().unwrap());
        assert_eq!(&**rx_a.borrow_and_update(), &[u("alice"), u("bob")]);
        assert_eq!(&**rx_b.borrow(), &[u("alice"), u("bob")]);
        // Another file is another list.
        let (_c, rx_c) = book.join(key("other"), u("carol"));
        assert_eq!(&**rx_c.borrow(), &[u("carol")]);
        assert_eq!(book.files(), 2);
        drop(a);
        assert_eq!(&**rx_b.borrow(), &[u("bob")]);
        drop(b);
        assert_eq!(book.files(), 1, "an empty file's entry is removed");
    }

    #[test]
    fn a_file_has_one_steering_while_anyone_fetches_it() {
        let book = Arc::new(FetcherBook::default());
        let (a, _) = book.join(key("f"), u("alice"));
        let (b, _) = book.join(key("f"), u("bob"));
        assert!(Arc::ptr_eq(&a.steering(8), &b.steering(8)));
        let first = a.steering(8);
        drop((a, b));
        let (c, _) = book.join(key("f"), u("carol"));
        assert!(
            !Arc::ptr_eq(&first, &c.steering(8)),
            "a new crowd starts afresh"
        );
    }

    #[test]
    fn a_user_with_two_connections_stays_until_both_end() {
        let book = Arc::new(FetcherBook::default());
        let (_x, rx) = book.join(key("f"), u("x"));
        let (old, _) = book.join(key("f"), u("bob"));
        let (new, _) = book.join(key("f"), u("bob"));
        drop(old);
        assert_eq!(&**rx.borrow(), &[u("bob"), u("x")]);
        drop(new);
        assert_eq!(&**rx.borrow(), &[u("x")]);
    }

    #[test]
    fn others_leaves_out_me_and_samples_large_swarms() {
        let all: Vec<UserId> = (0..100).map(|i| u(&format!("u{i:03}"))).collect();
        let mut rng = StdRng::seed_from_u64(1);
        let few = others(&all[..5], &all[2], 48, &mut rng);
        assert_eq!(few.len(), 4);
        assert!(!few.contains(&all[2]));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let s = others(&all, &all[0], 48, &mut rng);
            assert_eq!(s.len(), 48);
            assert!(!s.contains(&all[0]));
            seen.extend(s);
        }
        assert_eq!(seen.len(), 99, "every other fetcher gets named sometimes");
    }
}
