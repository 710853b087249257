//! What this daemon may serve a peer: the logged-in user's shares (every
//! piece) and the verified pieces of that user's downloads in progress.
//!
//! A download publishes its `.part` file and a `watch` of its verified
//! pieces here while it runs; the [`Published`] guard it holds withdraws
//! them when it ends, however it ends. A share is served only while its
//! file on disk still has the recorded size and mtime; one that changed is
//! forgotten (and the tracker told) the moment a peer asks for it.

use super::storage::PartFile;
use crate::shares::{forget_stale, ShareSet};
use crate::tracker_client::SessionClient;
use proto::peer::Bitfield;
use proto::{geometry, ErrorCode, FileName, GroupId, Sha1Hash, UserId, WireError};
use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

type Key = (UserId, GroupId, FileName);

struct Partial {
    /// Tells a re-published download from the one a guard withdraws.
    id: u64,
    sha1: Sha1Hash,
    part: Arc<PartFile>,
    have: watch::Receiver<Bitfield>,
}

/// The shares and partial downloads that may be served.
pub struct ServeIndex {
    shares: Arc<ShareSet>,
    partial: Mutex<HashMap<Key, Partial>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for ServeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeIndex")
            .field("partial", &self.lock().len())
            .finish()
    }
}

/// What one served connection reads from.
pub enum Source {
    /// A shared file: every piece.
    Share {
        file: Arc<File>,
        size: u64,
        have: Bitfield,
    },
    /// A download in progress: its verified pieces, growing.
    Partial {
        part: Arc<PartFile>,
        have: watch::Receiver<Bitfield>,
    },
}

impl Source {
    pub fn size(&self) -> u64 {
        match self {
            Source::Share { size, .. } => *size,
            Source::Partial { part, .. } => part.size(),
        }
    }
}

/// A download's entry in the index; withdrawn when dropped.
pub struct Published {
    index: Arc<ServeIndex>,
    key: Key,
    id: u64,
}

impl Drop for Published {
    fn drop(&mut self) {
        let mut map = self.index.lock();
        if map.get(&self.key).is_some_and(|p| p.id == self.id) {
            map.remove(&self.key);
        }
    }
}

impl ServeIndex {
    pub fn new(shares: Arc<ShareSet>) -> Arc<ServeIndex> {
        Arc::new(ServeIndex {
            shares,
            partial: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Partial>> {
        self.partial.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serve `user`'s download of `name` in `group` (content `sha1`) from
    /// `part`, the pieces in `have`, until the guard is dropped.
    pub fn publish(
        self: &Arc<Self>,
        key: (UserId, GroupId, FileName),
        sha1: Sha1Hash,
        part: Arc<PartFile>,
        have: watch::Receiver<Bitfield>,
    ) -> Published {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Partial {
            id,
            sha1,
            part,
            have,
        };
        self.lock().insert(key.clone(), entry);
        Published {
            index: self.clone(),
            key,
            id,
        }
    }

    /// What to serve for `name` in `group` with content `sha1`, as the
    /// session `client` acts for: its valid share, else its download in
    /// progress.
    ///
    /// # Errors
    /// `no_such_file` if neither; `io` if the shared file cannot be opened.
    pub fn find(
        &self,
        client: &SessionClient,
        group: &GroupId,
        name: &FileName,
        sha1: &Sha1Hash,
    ) -> Result<Source, WireError> {
        let user = client.user();
        if let Some(entry) = self.shares.find(user, group, name) {
            match entry.staleness() {
                Some(why) => forget_stale(&self.shares, client, &entry, &why),
                None if &entry.meta.sha1 == sha1 => {
                    let file = File::open(&entry.path).map_err(|e| {
                        WireError::new(
                            ErrorCode::Io,
                            format!("cannot open the shared file {name}: {e}"),
                        )
                    })?;
                    return Ok(Source::Share {
                        file: Arc::new(file),
                        size: entry.size,
                        have: Bitfield::full(geometry::piece_count(entry.size)),
                    });
                }
                None => {}
            }
        }
        let key = (user.clone(), group.clone(), name.clone());
        if let Some(p) = self.lock().get(&key).filter(|p| &p.sha1 == sha1) {
            return Ok(Source::Partial {
                part: p.part.clone(),
                have: p.have.clone(),
            });
        }
        Err(WireError::new(
            ErrorCode::NoSuchFile,
            format!("{name} in {group} is not served here"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Session, SessionStore};
    use crate::shares::{FileStamp, ShareEntry};
    use crate::swarm::storage::PartMode;
    use crate::tracker_client::TrackerClient;
    use crate::tracker_link::TrackerLink;
    use proto::tracker::{FileMeta, SessionToken};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    struct Fixture {
        dir: tempfile::TempDir,
        shares: Arc<ShareSet>,
        index: Arc<ServeIndex>,
        alice: SessionClient,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let stop = CancellationToken::new();
        stop.cancel(); // no tracker: the stop_share of a stale share fails quietly
        let link = TrackerLink::start(
            crate::tracker_link::fake::setup(vec![]),
            &TaskTracker::new(),
            stop,
        );
        let sessions = Arc::new(SessionStore::load(dir.path().join("session.json")));
        let client = TrackerClient::new(link, sessions);
        let alice = client.acting_as(Session {
            user: "alice".parse().unwrap(),
            token: SessionToken("t".into()),
        });
        let shares = Arc::new(ShareSet::load(dir.path().join("shares.json")).unwrap());
        let index = ServeIndex::new(shares.clone());
        Fixture {
            dir,
            shares,
            index,
            alice,
        }
    }

    fn share(path: &std::path::Path, sha1: Sha1Hash) -> ShareEntry {
        let stamp = FileStamp::read(path).unwrap();
        ShareEntry {
            group: "g".parse().unwrap(),
            name: "f".parse().unwrap(),
            path: path.to_path_buf(),
            size: stamp.size,
            mtime: stamp.mtime,
            meta: FileMeta {
                name: "f".parse().unwrap(),
                size: stamp.size,
                sha1,
                piece_size: geometry::PIECE_SIZE_BYTES,
                pieces: vec![sha1],
            },
        }
    }

    fn names() -> (GroupId, FileName) {
        ("g".parse().unwrap(), "f".parse().unwrap())
    }

    #[tokio::test]
    async fn a_valid_share_is_served_whole_a_changed_one_is_forgotten() {
        let f = fixture();
        let data = f.dir.path().join("data");
        std::fs::write(&data, b"hello").unwrap();
        let sha1 = Sha1Hash([1; 20]);
        f.shares.upsert(f.alice.user(), share(&data, sha1)).unwrap();
        let (g, n) = names();
        match f.index.find(&f.alice, &g, &n, &sha1) {
            Ok(Source::Share { size, have, .. }) => assert_eq!((size, have.count()), (5, 1)),
            _ => panic!("the share is served"),
        }
        let other = Sha1Hash([2; 20]);
        let e = f.index.find(&f.alice, &g, &n, &other).err().unwrap();
        assert_eq!(e.code, ErrorCode::NoSuchFile, "other content is not served");
        std::fs::write(&data, b"hello, changed").unwrap();
        let e = f.index.find(&f.alice, &g, &n, &sha1).err().unwrap();
        assert_eq!(e.code, ErrorCode::NoSuchFile);
        assert_eq!(f.shares.count(f.alice.user()), 0, "forgotten");
    }

    #[tokio::test]
    async fn a_download_is_served_while_published_only() {
        let f = fixture();
        let part = PartFile::open(&f.dir.path().join("f.part"), 5, PartMode::Fresh).unwrap();
        let (tx, rx) = watch::channel(Bitfield::new(1));
        let sha1 = Sha1Hash([3; 20]);
        let (g, n) = names();
        let key = (f.alice.user().clone(), g.clone(), n.clone());
        let published = f.index.publish(key.clone(), sha1, Arc::new(part), rx);
        match f.index.find(&f.alice, &g, &n, &sha1) {
            Ok(Source::Partial { have, .. }) => {
                let mut one = Bitfield::new(1);
                one.set(0).unwrap();
                tx.send_replace(one);
                assert_eq!(have.borrow().count(), 1, "follows the download");
            }
            _ => panic!("the partial download is served"),
        }
        // A re-publication under the same key outlives the older guard.
        let part2 = PartFile::open(&f.dir.path().join("f2.part"), 5, PartMode::Fresh).unwrap();
        let again = f.index.publish(
            key,
            sha1,
            Arc::new(part2),
            watch::channel(Bitfield::new(1)).1,
        );
        drop(published);
        assert!(f.index.find(&f.alice, &g, &n, &sha1).is_ok());
        drop(again);
        assert!(f.index.find(&f.alice, &g, &n, &sha1).is_err(), "withdrawn");
    }
}
