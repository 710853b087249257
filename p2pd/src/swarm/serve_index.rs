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
