//! The latest snapshot, in its own file `DATA/snapshot.bin`, replaced
//! whole: written beside it, fsynced, renamed over it, directory fsynced
//! (`proto::service::write_atomic_parts`), so a crash leaves the old one
//! or the new one.
//!
//! Why not in redb with the log, where it was: redb has one writer at a
//! time, so the tens of MiB of a large state's snapshot, written in one
//! transaction, held every log append (hence every client write) behind
//! it — 2.3 s at 50,000 files under 2,000 writes/s — and redb's dirty
//! pages held a second copy of it in memory meanwhile.
//!
//! Layout: [`MAGIC`], the length of the metadata (u32, big-endian), the
//! metadata (`proto::codec`), then the state's bytes to the end of the
//! file. Stores written before hold the snapshot in redb's `meta` table
//! (`snapshot_meta` + `snapshot_data`, or one JSON `snapshot` value); they
//! are read when there is no file, and removed once a file is written.

use super::log_store;
use super::NodeId;
use crate::data_dir::FILE_MODE;
use redb::Database;
use serde::{Deserialize, Serialize};
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;

pub const FILE: &str = "snapshot.bin";
/// First bytes of the file: what it is and the layout's version.
pub const MAGIC: &[u8; 8] = b"p2psnap1";
/// Where stores written before the file keep the snapshot, in redb's
/// `meta` table: first one JSON [`StoredSnapshot`], then its metadata and
/// the state's bytes under two keys.
const LEGACY_WHOLE: &str = "snapshot";
const LEGACY_META: &str = "snapshot_meta";
const LEGACY_DATA: &str = "snapshot_data";

/// Writes to the file go through a buffer this large.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// The snapshot file is flushed to disk every this many bytes while it is
/// written. One fsync of the whole file at the end (65 MB at 50,000 files,
/// ~270 ms on a 240 MB/s disk) held every log append's fsync behind it,
/// since the filesystem's journal commits them together; in 1 MiB steps an
/// append waits a few milliseconds at most.
const SYNC_EVERY_BYTES: u64 = 1024 * 1024;

/// A snapshot as stored: openraft's metadata plus the state machine bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a snapshot this tracker can read: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error("the snapshot stored in the Raft database: {0}")]
    Legacy(#[from] redb::Error),
}

/// Where a node's snapshots live; cheap to clone.
#[derive(Clone)]
pub struct SnapshotStore {
    path: PathBuf,
    /// For the layouts of stores written before the file.
    db: Arc<Database>,
}

impl SnapshotStore {
    pub fn new(dir: &Path, db: Arc<Database>) -> SnapshotStore {
        SnapshotStore {
            path: dir.join(FILE),
            db,
        }
    }

    /// The latest snapshot, if any.
    ///
    /// # Errors
    /// The file (or the database, for an older store) cannot be read or
    /// does not hold a snapshot.
    pub fn read(&self) -> Result<Option<StoredSnapshot>, SnapshotError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.read_legacy();
            }
            Err(source) => {
                return Err(SnapshotError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        parse(bytes)
            .map(Some)
            .map_err(|why| SnapshotError::Corrupt {
                path: self.path.clone(),
                why,
            })
    }

    /// Whether any snapshot is stored (either layout), without reading it.
    ///
    /// # Errors
    /// The file's directory or the database cannot be read.
    pub fn exists(&self) -> Result<bool, SnapshotError> {
        let file = self.path.try_exists().map_err(|source| SnapshotError::Io {
            path: self.path.clone(),
            source,
        })?;
        if file {
            return Ok(true);
        }
        for key in [LEGACY_WHOLE, LEGACY_META] {
            if log_store::read_meta_raw(&self.db, key)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Replaces the latest snapshot (durably). Blocking: call it where
    /// blocking is allowed.
    ///
    /// # Errors
    /// The metadata cannot be encoded or the file cannot be written; the
    /// previous snapshot is then still there.
    pub fn write(&self, snapshot: &StoredSnapshot) -> Result<u64, SnapshotError> {
        self.write_with(&snapshot.meta, |w| w.write_all(&snapshot.data))
    }

    /// [`SnapshotStore::write`], the state's bytes written by `state`
    /// straight into the file (through a buffer): a large state is never
    /// held in memory encoded. Returns the file's size.
    ///
    /// # Errors
    /// As [`SnapshotStore::write`], and `state`'s.
    pub fn write_with(
        &self,
        meta: &SnapshotMeta,
        state: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<u64, SnapshotError> {
        let meta = proto::codec::encode(meta).map_err(|e| SnapshotError::Corrupt {
            path: self.path.clone(),
            why: e.to_string(),
        })?;
        let len = u32::try_from(meta.len())
            .map_err(|_| SnapshotError::Corrupt {
                path: self.path.clone(),
                why: "metadata over 4 GiB".into(),
            })?
            .to_be_bytes();
        let mut size = 0;
        let written = proto::service::write_atomic_with(&self.path, FILE_MODE, |file| {
            let mut w = BufWriter::with_capacity(WRITE_BUFFER_BYTES, SyncingFile::new(file));
            w.write_all(MAGIC)?;
            w.write_all(&len)?;
            w.write_all(&meta)?;
            state(&mut w)?;
            w.flush()?;
            size = w.get_mut().file.stream_position()?;
            Ok(())
        });
        written.map_err(|source| SnapshotError::Io {
            path: self.path.clone(),
            source,
        })?;
        // The file now supersedes whatever an older store kept in redb.
        log_store::remove_meta(&self.db, &[LEGACY_WHOLE, LEGACY_META, LEGACY_DATA])?;
        Ok(size)
    }

    /// The snapshot an older store keeps in redb, if any.
    fn read_legacy(&self) -> Result<Option<StoredSnapshot>, SnapshotError> {
        let meta = log_store::read_meta_raw(&self.db, LEGACY_META)?;
        let data = log_store::read_meta_raw(&self.db, LEGACY_DATA)?;
        match (meta, data) {
            (Some(meta), Some(data)) => {
                let meta = proto::codec::decode(&meta).map_err(|e| SnapshotError::Corrupt {
                    path: PathBuf::from(log_store::DB_FILE),
                    why: e.to_string(),
                })?;
                Ok(Some(StoredSnapshot { meta, data }))
            }
            _ => Ok(log_store::read_meta(&self.db, LEGACY_WHOLE)?),
        }
    }
}

/// A snapshot file's content, taken apart without copying the state.
fn parse(mut bytes: Vec<u8>) -> Result<StoredSnapshot, String> {
    let header = MAGIC.len() + 4;
    if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC {
        return Err("it does not start with the snapshot header".into());
    }
    let len_bytes: [u8; 4] = bytes[MAGIC.len()..header].try_into().expect("four bytes");
    let meta_len = u32::from_be_bytes(len_bytes) as usize;
    let meta_end = header
        .checked_add(meta_len)
        .filter(|&end| end <= bytes.len())
        .ok_or("the metadata runs past the end of the file")?;
    let meta = proto::codec::decode(&bytes[header..meta_end]).map_err(|e| e.to_string())?;
    bytes.drain(..meta_end);
    Ok(StoredSnapshot { meta, data: bytes })
}

/// A file being written that is flushed to disk (`fdatasync`) every
/// [`SYNC_EVERY_BYTES`], so that no single sync has much to write.
struct SyncingFile<'f> {
    file: &'f mut std::fs::File,
    unsynced: u64,
}

impl<'f> SyncingFile<'f> {
    fn new(file: &'f mut std::fs::File) -> SyncingFile<'f> {
        SyncingFile { file, unsynced: 0 }
    }
}

impl Write for SyncingFile<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY_BYTES {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, data: &[u8]) -> StoredSnapshot {
        StoredSnapshot {
            meta: openraft::SnapshotMeta {
                last_log_id: None,
                last_membership: Default::default(),
                snapshot_id: id.into(),
            },
            data: data.to_vec(),
        }
    }

    fn store(dir: &Path) -> SnapshotStore {
        SnapshotStore::new(dir, log_store::open(dir).unwrap())
    }

    #[test]
    fn a_snapshot_is_replaced_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        assert!(s.read().unwrap().is_none());
        assert!(!s.exists().unwrap());
        s.write(&snap("a", b"first state")).unwrap();
        assert!(s.exists().unwrap());
        s.write(&snap("b", b"\x00second")).unwrap();
        let back = s.read().unwrap().unwrap();
        assert_eq!(back.meta.snapshot_id, "b");
        assert_eq!(back.data, b"\x00second");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, FILE_MODE);
    }

    /// A store from before the file: the snapshot in redb, in either of
    /// its two layouts, is read until a file replaces it, then removed.
    #[test]
    fn snapshots_kept_in_redb_are_read_until_a_file_replaces_them() {
        for layout in ["whole", "split"] {
            let dir = tempfile::tempdir().unwrap();
            let s = store(dir.path());
            let old = snap("old", b"{\"state\":1}");
            match layout {
                "whole" => log_store::write_meta(&s.db, LEGACY_WHOLE, &old, true).unwrap(),
                _ => {
                    let meta = serde_json::to_vec(&old.meta).unwrap();
                    log_store::write_meta_raw(&s.db, LEGACY_META, &meta).unwrap();
                    log_store::write_meta_raw(&s.db, LEGACY_DATA, &old.data).unwrap();
                }
            }
            assert!(s.exists().unwrap(), "{layout}");
            let back = s.read().unwrap().unwrap();
            assert_eq!(
                (back.meta.snapshot_id.as_str(), &back.data[..]),
                ("old", &old.data[..])
            );
            s.write(&snap("new", b"state")).unwrap();
            assert_eq!(s.read().unwrap().unwrap().meta.snapshot_id, "new");
            for key in [LEGACY_WHOLE, LEGACY_META, LEGACY_DATA] {
                assert!(
                    log_store::read_meta_raw(&s.db, key).unwrap().is_none(),
                    "{key} removed"
                );
            }
        }
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.write(&snap("a", b"state")).unwrap();
        let path = dir.path().join(FILE);
        let whole = std::fs::read(&path).unwrap();
        let mut huge_len = whole.clone();
        huge_len[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        for bad in [
            &b""[..],
            &whole[..5],
            &whole[..MAGIC.len() + 6],
            &huge_len,
            b"p2psnap0....",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(
                matches!(s.read(), Err(SnapshotError::Corrupt { .. })),
                "{bad:?}"
            );
        }
    }
}
