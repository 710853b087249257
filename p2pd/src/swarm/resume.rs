//! Persisted progress of downloads: one small JSON file per download in
//! `HOME/downloads/`, naming the file, where it goes and which pieces of
//! `DEST.part` are verified.
//!
//! # Invariant
//!
//! A resume file only ever lists pieces whose bytes were written to the
//! `.part` file and matched their SHA-1 before the record was saved, and it
//! is replaced whole (tmp + fsync + rename + fsync of the directory), so a
//! crash leaves the old record or the new one, never a mix. A record that
//! does not validate on load (bad JSON, another format version, a bitfield
//! whose length does not match the size) is reported as
//! [`ResumeError::Corrupt`]: the caller warns and starts the download over,
//! it never crashes.
//!
//! The functions here are blocking (`std::fs`); call them from
//! `spawn_blocking`.

use p2p_sha1::Sha1Stream;
use proto::peer::{Bitfield, BitfieldError};
use proto::service::write_atomic;
use proto::{geometry, FileName, GroupId, Sha1Hash, UserId};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Format of the resume files; another version is refused as corrupt.
pub const RESUME_FORMAT_VERSION: u32 = 1;
/// How often a running download saves its record (also on pause, failure
/// and completion). Progress lost to a crash is at most this much.
pub const RESUME_SAVE_INTERVAL: Duration = Duration::from_secs(2);
/// Largest resume file read (a 1 TiB file's bitfield is 512 KiB of hex).
pub const MAX_RESUME_FILE_BYTES: u64 = 4 * 1024 * 1024;
const RESUME_EXT: &str = "json";
const TMP_SUFFIX: &str = ".tmp";

/// One download's saved progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRecord {
    /// Whose download it is (several users may log in on one daemon).
    pub user: UserId,
    pub group: GroupId,
    pub name: FileName,
    /// The file's SHA-1 at the tracker when the download started: a file
    /// re-registered under the name with other content does not resume.
    pub sha1: Sha1Hash,
    pub size: u64,
    /// Absolute final path; the data is in its `.part` sibling meanwhile.
    pub path: PathBuf,
    /// Verified pieces; `piece_count(size)` long.
    pub verified: Bitfield,
}

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("resume file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("resume file {path} is corrupt ({why}); the download starts over")]
    Corrupt { path: PathBuf, why: String },
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    user: UserId,
    group: GroupId,
    name: FileName,
    sha1: Sha1Hash,
    size: u64,
    path: PathBuf,
    pieces: u32,
    /// The bitfield's bytes, hex.
    verified: String,
}

/// The file name (no directory) of the record of `user`'s download of
/// `group`/`name`: a hash, since file names may hold anything a base name
/// may, and one download of a file per user and group is allowed.
pub fn resume_file_name(user: &UserId, group: &GroupId, name: &FileName) -> String {
    let mut h = Sha1Stream::new();
    for part in [user.as_str(), group.as_str(), name.as_str()] {
        h.update(part.as_bytes());
        h.update(&[0u8]); // ids and names hold no NUL: the join is unambiguous
    }
    format!("{}.{RESUME_EXT}", h.finish().to_hex())
}

impl ResumeRecord {
    /// A record with nothing verified yet.
    pub fn new(
        user: UserId,
        group: GroupId,
        name: FileName,
        sha1: Sha1Hash,
        size: u64,
        path: PathBuf,
    ) -> Self {
        ResumeRecord {
            user,
            group,
            name,
            sha1,
            size,
            path,
            verified: Bitfield::new(geometry::piece_count(size)),
        }
    }

    pub fn file_name(&self) -> String {
        resume_file_name(&self.user, &self.group, &self.name)
    }

    /// Whether the record is for this content (same SHA-1 and size); if
    /// not, the download starts over.
    pub fn matches(&self, sha1: &Sha1Hash, size: u64) -> bool {
        self.sha1 == *sha1 && self.size == size
    }

    fn to_disk(&self) -> OnDisk {
        OnDisk {
            version: RESUME_FORMAT_VERSION,
            user: self.user.clone(),
            group: self.group.clone(),
            name: self.name.clone(),
            sha1: self.sha1,
            size: self.size,
            path: self.path.clone(),
            pieces: self.verified.len(),
            verified: hex::encode(self.verified.as_bytes()),
        }
    }

    fn from_disk(d: OnDisk) -> Result<Self, String> {
        if d.version != RESUME_FORMAT_VERSION {
            return Err(format!("format version {}", d.version));
        }
        if !d.path.is_absolute() {
            return Err("the final path is not absolute".into());
        }
        let count = geometry::piece_count(d.size);
        if d.pieces != count {
            return Err(format!(
                "{} pieces recorded for a file of {} bytes ({count} pieces)",
                d.pieces, d.size
            ));
        }
        let bytes = hex::decode(&d.verified).map_err(|e| format!("bitfield hex: {e}"))?;
        let verified =
            Bitfield::from_bytes(&bytes, count).map_err(|e: BitfieldError| e.to_string())?;
        Ok(ResumeRecord {
            user: d.user,
            group: d.group,
            name: d.name,
            sha1: d.sha1,
            size: d.size,
            path: d.path,
            verified,
        })
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ResumeError + '_ {
    move |source| ResumeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `rec` into `dir` (created 0700 if missing) under
/// [`ResumeRecord::file_name`], atomically (`write_atomic`).
/// Returns the record's path.
///
/// # Errors
/// [`ResumeError::Io`] naming the file that failed; the previous record, if
/// any, is intact.
pub fn save(dir: &Path, rec: &ResumeRecord) -> Result<PathBuf, ResumeError> {
    // Private like the home it sits in: a record names the user's files.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    let path = dir.join(rec.file_name());
    write_atomic(&path, &encode(rec), 0o600).map_err(io_err(&path))?;
    Ok(path)
}

/// Reads and validates one record.
///
/// # Errors
/// [`ResumeError::Io`] if it cannot be read (a missing file included: its
/// `kind()` is `NotFound`), [`ResumeError::Corrupt`] if it does not validate.
pub fn load(path: &Path) -> Result<ResumeRecord, ResumeError> {
    let len = fs::metadata(path).map_err(io_err(path))?.len();
    let corrupt = |why: String| ResumeError::Corrupt {
        path: path.to_owned(),
        why,
    };
    if len > MAX_RESUME_FILE_BYTES {
        return Err(corrupt(format!("{len} bytes long")));
    }
    let bytes = fs::read(path).map_err(io_err(path))?;
    decode(&bytes).map_err(corrupt)
}

/// A record from the bytes of its file, validated; why not, for people.
/// (The decoder `load` uses; fuzzed by `fuzz/fuzz_targets/resume_record.rs`.)
///
/// # Errors
/// Not JSON of a record, or a record that does not validate.
pub fn decode(bytes: &[u8]) -> Result<ResumeRecord, String> {
    let disk: OnDisk = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    ResumeRecord::from_disk(disk)
}

/// The bytes [`save`] writes for `rec`.
pub fn encode(rec: &ResumeRecord) -> Vec<u8> {
    serde_json::to_vec(&rec.to_disk()).expect("a record always serialises")
}

/// A record file and what loading it gave.
pub type LoadedRecord = (PathBuf, Result<ResumeRecord, ResumeError>);

/// Every record in `dir` (none if `dir` does not exist), in file-name order,
/// each loaded or with its error. Leftover tmp files of an interrupted save
/// are removed.
///
/// # Errors
/// [`ResumeError::Io`] if `dir` exists but cannot be listed.
pub fn load_dir(dir: &Path) -> Result<Vec<LoadedRecord>, ResumeError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_err(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(TMP_SUFFIX) {
            // Best effort: an unfinished save; the record it replaced stands.
            let _ = fs::remove_file(&path);
        } else if path.extension().is_some_and(|e| e == RESUME_EXT) {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|p| {
            let r = load(&p);
            (p, r)
        })
        .collect())
}

/// Deletes a record (the download finished or was abandoned). A missing
/// record is fine.
///
/// # Errors
/// [`ResumeError::Io`] for anything but `NotFound`.
pub fn remove(path: &Path) -> Result<(), ResumeError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::geometry::PIECE_SIZE_BYTES as P;

    fn record(size: u64) -> ResumeRecord {
        ResumeRecord::new(
            "alice".parse().unwrap(),
            "g1".parse().unwrap(),
            "my file.iso".parse().unwrap(),
            p2p_sha1::of(b"content"),
            size,
            "/downloads/my file.iso".into(),
        )
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("downloads");
        for size in [0, 1, P - 1, P, P + 1, 9 * P + 3] {
            let mut rec = record(size);
            let n = rec.verified.len();
            for p in (0..n).step_by(2) {
                rec.verified.set(p).unwrap();
            }
            let path = save(&sub, &rec).unwrap();
            assert_eq!(path, sub.join(rec.file_name()));
            assert_eq!(load(&path).unwrap(), rec, "size {size}");
        }
        // Saving again replaces the record; no tmp file is left.
        let names: Vec<_> = fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sub), 0o700, "the records' directory is private");
        assert_eq!(mode(&names[0]), 0o600);
    }

    #[test]
    fn file_names_are_per_user_group_and_name() {
        let a = record(1);
        let mut b = record(1);
        b.user = "bob".parse().unwrap();
        let mut c = record(1);
        c.name = "other".parse().unwrap();
        assert_ne!(a.file_name(), b.file_name());
        assert_ne!(a.file_name(), c.file_name());
        assert_eq!(a.file_name(), record(5).file_name());
        assert!(a.file_name().ends_with(".json") && !a.file_name().contains('/'));
    }

    #[test]
    fn corrupt_records_are_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let good = record(3 * P);
        let path = save(dir.path(), &good).unwrap();
        let disk: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();

        let cases: Vec<(&str, serde_json::Value)> = vec![
            ("pieces", 4.into()),
            ("verified", "0000".into()),
            ("verified", "e1".into()), // spare bits set for 3 pieces
            ("verified", "zz".into()),
            ("version", 99.into()),
            ("path", "relative/x".into()),
            ("name", "../x".into()),
            ("size", (-1).into()),
        ];
        for (field, value) in cases {
            let mut bad = disk.clone();
            bad[field] = value.clone();
            fs::write(&path, serde_json::to_vec(&bad).unwrap()).unwrap();
            assert!(
                matches!(load(&path), Err(ResumeError::Corrupt { .. })),
                "{field} = {value}"
            );
        }
        for junk in [&b""[..], b"{", b"null", b"\xff\xfe", b"[1,2]"] {
            fs::write(&path, junk).unwrap();
            assert!(matches!(load(&path), Err(ResumeError::Corrupt { .. })));
        }
        let missing = load(&dir.path().join("nope.json"));
        assert!(
            matches!(missing, Err(ResumeError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound)
        );
        // The message says what happens next.
        fs::write(&path, b"{").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("starts over"));
    }

    #[test]
    fn load_dir_lists_records_and_cleans_tmp_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_dir(&dir.path().join("absent")).unwrap().is_empty());
        let a = record(P);
        let mut b = record(2 * P);
        b.group = "g2".parse().unwrap();
        b.verified.set(1).unwrap();
        save(dir.path(), &a).unwrap();
        save(dir.path(), &b).unwrap();
        fs::write(dir.path().join("junk.json"), b"nope").unwrap();
        fs::write(dir.path().join("x.json.tmp"), b"half").unwrap();
        fs::write(dir.path().join("README"), b"ignored").unwrap();
        let all = load_dir(dir.path()).unwrap();
        assert_eq!(all.len(), 3);
        let ok: Vec<_> = all.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
        assert_eq!(ok.len(), 2);
        assert!(ok.contains(&&a) && ok.contains(&&b));
        assert!(!dir.path().join("x.json.tmp").exists());
        remove(&dir.path().join(a.file_name())).unwrap();
        remove(&dir.path().join(a.file_name())).unwrap();
        assert_eq!(load_dir(dir.path()).unwrap().len(), 2);
    }

    #[test]
    fn matches_checks_content() {
        let r = record(10);
        assert!(r.matches(&p2p_sha1::of(b"content"), 10));
        assert!(!r.matches(&p2p_sha1::of(b"content"), 11));
        assert!(!r.matches(&p2p_sha1::of(b"other"), 10));
    }
}
