//! The whole-file SHA-1 of a download, computed while it downloads.
//!
//! Pieces arrive out of order, but the file's *verified prefix* (pieces
//! `0..k`, every one verified) only grows. A [`PrefixHasher`] owns one
//! thread that feeds the bytes of that prefix, in order, from the `.part`
//! file (page cache, large reads) into one running SHA-1. The download
//! task reports the prefix with [`PrefixHasher::advance`] after each
//! verified piece; once the prefix is the whole file the digest is ready
//! and [`PrefixHasher::finish`] returns it, so at completion only the tail
//! remains to hash instead of the whole file.
//!
//! The thread also starts the kernel's writeback of every
//! [`WRITEBACK_BYTES`] it hashed ([`PartFile::start_writeback`]): hashed
//! bytes are verified and never written again, and the download's final
//! sync then waits for the last few megabytes, not for the whole file.
//!
//! # Invariants
//!
//! - Only verified bytes are hashed: the caller advances to the end of a
//!   run of verified pieces, and a verified piece's bytes are never written
//!   again (blocks are written only for requested, unverified pieces).
//! - The digest covers exactly `0..size`, read in order, each byte once.
//! - Dropping the hasher (pause, logout, failure) stops the thread at its
//!   next chunk; nothing is kept. A resumed download starts a new hasher
//!   from byte 0 (its verified prefix is re-read from the `.part`).

use super::storage::{PartFile, StorageError};
use p2p_sha1::Sha1Stream;
use proto::geometry;
use proto::peer::Bitfield;
use proto::Sha1Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use tokio::sync::oneshot;

/// Bytes read and hashed between two looks at the channel and the cancel
/// flag.
const CHUNK_BYTES: usize = 1024 * 1024;

/// Hashed bytes handed to the kernel's writeback at a time.
const WRITEBACK_BYTES: u64 = 32 * 1024 * 1024;

/// The running whole-file hash of one download. See the module header.
pub struct PrefixHasher {
    size: u64,
    /// Highest prefix end reported so far (bytes).
    sent: u64,
    tx: mpsc::Sender<u64>,
    cancel: Arc<AtomicBool>,
    /// Bytes hashed so far.
    hashed: Arc<AtomicU64>,
    /// Notified after each chunk while `waiting` is set (see
    /// [`PrefixHasher::set_waiting`]).
    progress: Arc<tokio::sync::Notify>,
    waiting: Arc<AtomicBool>,
    result: Option<oneshot::Receiver<Result<Sha1Hash, StorageError>>>,
}

/// End (in bytes) of the verified prefix of a file of `size` bytes whose
/// pieces `have` holds, starting the scan at piece `from` (the previous
/// prefix, in pieces). Returns the new prefix in pieces and in bytes.
pub fn verified_prefix(have: &Bitfield, size: u64, from: u32) -> (u32, u64) {
    let count = have.len();
    let mut k = from;
    while k < count && have.has(k) {
        k += 1;
    }
    let bytes = if k >= count {
        size
    } else {
        geometry::piece_offset(k).min(size)
    };
    (k, bytes)
}

impl PrefixHasher {
    /// Starts the hashing thread over `part` (nothing hashed yet).
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(part: Arc<PartFile>) -> std::io::Result<PrefixHasher> {
        let size = part.size();
        let (tx, rx) = mpsc::channel();
        let (res_tx, res_rx) = oneshot::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let hashed = Arc::new(AtomicU64::new(0));
        let progress = Arc::new(tokio::sync::Notify::new());
        let waiting = Arc::new(AtomicBool::new(false));
        let tell = Progress {
            hashed: hashed.clone(),
            notify: progress.clone(),
            waiting: waiting.clone(),
        };
        std::thread::Builder::new()
            .name("prefix-sha1".into())
            .spawn(move || {
                if let Some(r) = hash_prefix(&part, &rx, &flag, &tell) {
                    let _ = res_tx.send(r);
                }
            })?;
        Ok(PrefixHasher {
            size,
            sent: 0,
            tx,
            cancel,
            hashed,
            progress,
            waiting,
            result: Some(res_rx),
        })
    }

    /// Notified after each chunk hashed while [`set_waiting`](Self::set_waiting)
    /// is on. The download uses it to resume its requests once the hash
    /// has caught up.
    pub fn progress(&self) -> Arc<tokio::sync::Notify> {
        self.progress.clone()
    }

    pub fn set_waiting(&self, on: bool) {
        self.waiting.store(on, Ordering::Relaxed);
    }

    /// The verified prefix now ends at `bytes` (clamped to the size; a
    /// smaller value than before is ignored). Never blocks.
    pub fn advance(&mut self, bytes: u64) {
        let bytes = bytes.min(self.size);
        if bytes > self.sent {
            self.sent = bytes;
            let _ = self.tx.send(bytes);
        }
    }

    /// Bytes reported as verified so far.
    pub fn reported(&self) -> u64 {
        self.sent
    }

    /// Bytes hashed so far (at most [`reported`](Self::reported)).
    pub fn hashed(&self) -> u64 {
        self.hashed.load(Ordering::Relaxed)
    }

    /// The whole file's SHA-1, once every byte has been reported through
    /// [`advance`](Self::advance) (the caller makes sure of it: every piece
    /// verified) and hashed.
    ///
    /// # Errors
    /// A read error of the hashing thread, or the thread died.
    pub async fn finish(mut self) -> Result<Sha1Hash, StorageError> {
        let size = self.size;
        self.advance(size);
        let rx = self.result.take().expect("finish runs once");
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(StorageError::Io {
                step: "hashing",
                path: Default::default(),
                source: std::io::Error::other("the whole-file hasher stopped"),
            }),
        }
    }
}

impl Drop for PrefixHasher {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// The thread's loop. `None` if cancelled (or its owner went away) before
/// the end of the file.
/// How the thread tells its owner how far it got.
struct Progress {
    hashed: Arc<AtomicU64>,
    notify: Arc<tokio::sync::Notify>,
    waiting: Arc<AtomicBool>,
}

fn hash_prefix(
    part: &PartFile,
    rx: &mpsc::Receiver<u64>,
    cancel: &AtomicBool,
    progress: &Progress,
) -> Option<Result<Sha1Hash, StorageError>> {
    let size = part.size();
    let mut h = Sha1Stream::new();
    let mut buf = Vec::new();
    let mut done = 0u64;
    let mut target = 0u64;
    let mut written_back = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return None;
        }
        if done >= size {
            return Some(Ok(h.finish()));
        }
        // Take every report already queued; wait only when caught up.
        loop {
            let next = if done >= target {
                rx.recv().ok()
            } else {
                match rx.try_recv() {
                    Ok(t) => Some(t),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => None,
                }
            };
            match next {
                Some(t) => target = target.max(t.min(size)),
                None => return None, // the owner is gone without finishing
            }
        }
        let n = (target - done).min(CHUNK_BYTES as u64) as usize;
        if buf.len() < n {
            buf.resize(n, 0);
        }
        if let Err(e) = part.read_exact_at(&mut buf[..n], done) {
            return Some(Err(e));
        }
        h.update(&buf[..n]);
        done += n as u64;
        if done - written_back >= WRITEBACK_BYTES {
            part.start_writeback(written_back, done - written_back);
            written_back = done;
        }
        progress.hashed.store(done, Ordering::Relaxed);
        if progress.waiting.load(Ordering::Relaxed) {
            progress.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::storage::PartMode;
    use proto::geometry::PIECE_SIZE_BYTES as P;

    fn content(size: u64) -> Vec<u8> {
        (0..size).map(|i| (i * 31 + i / 777) as u8).collect()
    }

    fn part_with(dir: &std::path::Path, data: &[u8]) -> Arc<PartFile> {
        let path = dir.join("f.part");
        let part = PartFile::open(&path, data.len() as u64, PartMode::Fresh).unwrap();
        Arc::new(part)
    }

    fn write_piece(part: &PartFile, data: &[u8], k: u32) {
        let at = geometry::piece_offset(k) as usize;
        let end = (at + P as usize).min(data.len());
        part.write_block(k, 0, &data[at..end.min(at + 128 * 1024)])
            .unwrap();
        let mut off = 128 * 1024;
        while at + off < end {
            let e = (at + off + 128 * 1024).min(end);
            part.write_block(k, off as u32, &data[at + off..e]).unwrap();
            off += 128 * 1024;
        }
    }

    #[test]
    fn prefix_of_a_bitfield() {
        let size = 3 * P + 10; // 4 pieces, the last short
        let mut have = Bitfield::new(4);
        assert_eq!(verified_prefix(&have, size, 0), (0, 0));
        have.set(1).unwrap();
        have.set(3).unwrap();
        assert_eq!(verified_prefix(&have, size, 0), (0, 0));
        have.set(0).unwrap();
        assert_eq!(verified_prefix(&have, size, 0), (2, 2 * P));
        have.set(2).unwrap();
        assert_eq!(verified_prefix(&have, size, 2), (4, size));
        assert_eq!(verified_prefix(&Bitfield::new(0), 0, 0), (0, 0));
    }

    #[tokio::test]
    async fn out_of_order_verification_gives_the_whole_file_hash() {
        let dir = tempfile::tempdir().unwrap();
        let size = 5 * P + 12345; // last piece short
        let data = content(size);
        let part = part_with(dir.path(), &data);
        let mut hasher = PrefixHasher::start(part.clone()).unwrap();
        let count = geometry::piece_count(size);
        let mut have = Bitfield::new(count);
        let mut prefix = 0;
        for k in [3u32, 0, 5, 2, 1, 4] {
            write_piece(&part, &data, k);
            have.set(k).unwrap();
            let (p, bytes) = verified_prefix(&have, size, prefix);
            prefix = p;
            hasher.advance(bytes);
        }
        assert_eq!(hasher.reported(), size);
        assert!(hasher.hashed() <= size);
        assert_eq!(hasher.finish().await.unwrap(), p2p_sha1::of(&data));
    }

    #[tokio::test]
    async fn only_reported_bytes_are_hashed() {
        // Unverified bytes past the prefix change after a report; the
        // digest still sees their final value because it never read them.
        let dir = tempfile::tempdir().unwrap();
        let size = 3 * P;
        let data = content(size);
        let part = part_with(dir.path(), &data);
        let mut hasher = PrefixHasher::start(part.clone()).unwrap();
        write_piece(&part, &data, 0);
        part.write_block(1, 0, &[0xee; 1000]).unwrap(); // garbage, unverified
        hasher.advance(P);
        std::thread::sleep(std::time::Duration::from_millis(50));
        write_piece(&part, &data, 1);
        write_piece(&part, &data, 2);
        assert_eq!(hasher.finish().await.unwrap(), p2p_sha1::of(&data));
    }

    #[tokio::test]
    async fn a_resume_starts_from_zero_with_its_saved_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let size = 4 * P + 1;
        let data = content(size);
        let part = part_with(dir.path(), &data);
        for k in 0..3 {
            write_piece(&part, &data, k);
        }
        // A first run is dropped (paused) half way.
        let mut first = PrefixHasher::start(part.clone()).unwrap();
        first.advance(2 * P);
        drop(first);
        // The resumed run knows pieces 0..3 from its record.
        let mut have = Bitfield::new(5);
        for k in 0..3 {
            have.set(k).unwrap();
        }
        let mut hasher = PrefixHasher::start(part.clone()).unwrap();
        let (prefix, bytes) = verified_prefix(&have, size, 0);
        assert_eq!((prefix, bytes), (3, 3 * P));
        hasher.advance(bytes);
        write_piece(&part, &data, 4);
        have.set(4).unwrap();
        assert_eq!(verified_prefix(&have, size, prefix), (3, 3 * P));
        write_piece(&part, &data, 3);
        have.set(3).unwrap();
        let (_, bytes) = verified_prefix(&have, size, prefix);
        hasher.advance(bytes);
        assert_eq!(hasher.finish().await.unwrap(), p2p_sha1::of(&data));
    }

    #[tokio::test]
    async fn empty_and_tiny_files() {
        let dir = tempfile::tempdir().unwrap();
        let part = part_with(dir.path(), &[]);
        let hasher = PrefixHasher::start(part).unwrap();
        assert_eq!(hasher.finish().await.unwrap(), p2p_sha1::of(&[]));

        let dir = tempfile::tempdir().unwrap();
        let data = content(7);
        let part = part_with(dir.path(), &data);
        write_piece(&part, &data, 0);
        let mut hasher = PrefixHasher::start(part).unwrap();
        hasher.advance(u64::MAX); // clamped
        assert_eq!(hasher.finish().await.unwrap(), p2p_sha1::of(&data));
    }

    #[tokio::test]
    async fn a_wrong_file_gives_a_different_hash() {
        let dir = tempfile::tempdir().unwrap();
        let size = 2 * P;
        let mut data = content(size);
        let part = part_with(dir.path(), &data);
        write_piece(&part, &data, 0);
        write_piece(&part, &data, 1);
        let hasher = PrefixHasher::start(part).unwrap();
        let got = hasher.finish().await.unwrap();
        data[5] ^= 1;
        assert_ne!(got, p2p_sha1::of(&data));
    }

    #[test]
    fn dropping_stops_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let data = content(2 * P);
        let part = part_with(dir.path(), &data);
        let mut hasher = PrefixHasher::start(part.clone()).unwrap();
        hasher.advance(P);
        drop(hasher);
        // The thread held the only other reference; it lets go.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while Arc::strong_count(&part) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "hasher thread still running"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
