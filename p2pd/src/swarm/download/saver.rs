//! A download's resume record: what it says and when it is written.
//!
//! The record names the download and lists its verified pieces
//! ([`resume`](crate::swarm::resume) owns the file format). It is written
//! when something new was verified and [`RESUME_SAVE_INTERVAL`] has passed
//! since the last write, and on every stop. Order matters: the `.part`
//! file's data is synced first, so a record never claims bytes that are
//! not durable.

use super::error::DownloadError;
use crate::swarm::resume::{self, ResumeRecord, RESUME_SAVE_INTERVAL};
use crate::swarm::storage::PartFile;
use proto::peer::Bitfield;
use proto::{FileName, GroupId, Sha1Hash, UserId};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Which download a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey {
    pub user: UserId,
    pub group: GroupId,
    pub name: FileName,
    /// Absolute final path.
    pub path: PathBuf,
}

/// The record of one download and its save schedule.
#[derive(Debug)]
pub struct Saver {
    dir: PathBuf,
    key: RecordKey,
    sha1: Sha1Hash,
    size: u64,
    dirty: bool,
    last_save: Instant,
}

/// Where `key`'s record lives in `dir`.
pub fn record_path(dir: &Path, key: &RecordKey) -> PathBuf {
    dir.join(resume::resume_file_name(&key.user, &key.group, &key.name))
}

impl Saver {
    /// The record of `key`'s download of the file with this `sha1` and
    /// `size`, kept in `dir`.
    pub fn new(dir: PathBuf, key: RecordKey, sha1: Sha1Hash, size: u64, now: Instant) -> Saver {
        Saver {
            dir,
            key,
            sha1,
            size,
            dirty: false,
            last_save: now,
        }
    }

    /// Something new was verified.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Whether a periodic save is due.
    pub fn due(&self, now: Instant) -> bool {
        self.dirty && now.duration_since(self.last_save) >= RESUME_SAVE_INTERVAL
    }

    /// The record as it would be saved with `verified`.
    pub fn record(&self, verified: &Bitfield) -> ResumeRecord {
        ResumeRecord {
            user: self.key.user.clone(),
            group: self.key.group.clone(),
            name: self.key.name.clone(),
            sha1: self.sha1,
            size: self.size,
            path: self.key.path.clone(),
            verified: verified.clone(),
        }
    }

    pub fn path(&self) -> PathBuf {
        record_path(&self.dir, &self.key)
    }

    /// Syncs `part`'s data, then writes the record (off the reactor).
    ///
    /// # Errors
    /// The sync or the write failed; the previous record stands.
    pub async fn save(
        &mut self,
        part: &Arc<PartFile>,
        verified: &Bitfield,
    ) -> Result<(), DownloadError> {
        let rec = self.record(verified);
        let (part, dir) = (part.clone(), self.dir.clone());
        let job = tokio::task::spawn_blocking(move || -> Result<(), DownloadError> {
            part.sync_data()?;
            resume::save(&dir, &rec)?;
            Ok(())
        });
        job.await
            .map_err(|e| DownloadError::Internal(format!("saving progress: {e}")))??;
        self.dirty = false;
        self.last_save = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key() -> RecordKey {
        RecordKey {
            user: "alice".parse().unwrap(),
            group: "g1".parse().unwrap(),
            name: "f.iso".parse().unwrap(),
            path: "/dl/f.iso".into(),
        }
    }

    #[test]
    fn saves_only_when_dirty_and_the_interval_passed() {
        let t0 = Instant::now();
        let mut s = Saver::new("/h/downloads".into(), key(), Sha1Hash([7; 20]), 10, t0);
        let later = t0 + RESUME_SAVE_INTERVAL;
        assert!(!s.due(later), "nothing new");
        s.mark_dirty();
        assert!(!s.due(t0 + Duration::from_millis(10)), "too soon");
        assert!(s.due(later));
    }

    #[test]
    fn the_record_names_the_download_and_its_pieces() {
        let s = Saver::new(
            "/h/downloads".into(),
            key(),
            Sha1Hash([7; 20]),
            10,
            Instant::now(),
        );
        let mut have = Bitfield::new(1);
        have.set(0).unwrap();
        let r = s.record(&have);
        assert_eq!(
            (r.user.as_str(), r.group.as_str(), r.name.as_str()),
            ("alice", "g1", "f.iso")
        );
        assert_eq!(
            (r.sha1, r.size, r.verified.count()),
            (Sha1Hash([7; 20]), 10, 1)
        );
        assert!(r.matches(&Sha1Hash([7; 20]), 10));
        assert_eq!(s.path(), Path::new("/h/downloads").join(r.file_name()));
    }

    #[tokio::test]
    async fn save_writes_a_record_that_loads_back() {
        let t = tempfile::tempdir().unwrap();
        let part_path = t.path().join("f.iso.part");
        let part = Arc::new(
            PartFile::open(&part_path, 10, crate::swarm::storage::PartMode::Fresh).unwrap(),
        );
        let dir = t.path().join("downloads");
        let mut s = Saver::new(dir, key(), Sha1Hash([7; 20]), 10, Instant::now());
        s.mark_dirty();
        let have = Bitfield::new(1);
        s.save(&part, &have).await.unwrap();
        assert!(
            !s.due(Instant::now() + RESUME_SAVE_INTERVAL),
            "clean after a save"
        );
        assert_eq!(resume::load(&s.path()).unwrap(), s.record(&have));
    }
}
