//! Complete pieces: checked against their SHA-1, then written. One thread
//! per download.
//!
//! The download task keeps the blocks of each in-flight piece in memory
//! ([`Assembly`]) as the frames they arrived in, and hands a complete piece
//! to the [`Verifier`]. Its thread takes the pieces queued (up to
//! `p2p_sha1::preferred_batch()`, waiting at most [`BATCH_WAIT`] for a
//! batch to fill), hashes them together (the lane kernel does eight for
//! about the price of two), writes the good ones into the `.part` file and
//! reports every piece back. So:
//!
//! - only verified bytes ever reach the disk; a corrupt piece costs no I/O;
//! - each byte is hashed from the memory it arrived in, never read back;
//! - a piece is reported verified only after its bytes are written, so a
//!   piece the task announces (`Have`, serving, resume record) is on disk.
//!
//! Memory: the task bounds the pieces queued here (`MAX_VERIFY_QUEUE` in
//! `download`); the thread holds only its current batch.

use super::pool::BufPool;
use super::storage::{PartFile, StorageError};
use p2p_sha1::digest_many;
use proto::geometry;
use proto::peer::PIECE_DATA_START;
use proto::Sha1Hash;
use std::collections::HashMap;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Longest a queued piece waits for others to share a batch with.
pub const BATCH_WAIT: Duration = Duration::from_millis(2);

/// The received blocks of in-flight pieces, each kept as its whole frame
/// payload (data at [`PIECE_DATA_START`]).
#[derive(Default)]
pub struct Assembly {
    pieces: HashMap<u32, Vec<Option<Vec<u8>>>>,
}

impl Assembly {
    /// Keeps block `block` of `piece` (`blocks`: the piece's block count).
    /// A block index out of range is ignored (the tracker of pieces
    /// checked it already).
    pub fn insert(&mut self, piece: u32, block: u32, blocks: u32, payload: Vec<u8>) {
        let slots = self
            .pieces
            .entry(piece)
            .or_insert_with(|| vec![None; blocks as usize]);
        if let Some(s) = slots.get_mut(block as usize) {
            *s = Some(payload);
        }
    }

    /// Takes every block of `piece`, in order, if all are there.
    pub fn take(&mut self, piece: u32) -> Option<Vec<Vec<u8>>> {
        let slots = self.pieces.get(&piece)?;
        if slots.iter().any(Option::is_none) {
            return None;
        }
        let slots = self.pieces.remove(&piece)?;
        Some(slots.into_iter().flatten().collect())
    }

    /// Forgets a piece's blocks (it went back to wanted).
    pub fn discard(&mut self, piece: u32) {
        self.pieces.remove(&piece);
    }

    /// Pieces with at least one block kept.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

/// A complete piece on its way to be checked.
struct Job {
    piece: u32,
    expected: Sha1Hash,
    /// The piece's blocks in order, each a frame payload.
    blocks: Vec<Vec<u8>>,
}

/// What became of a piece: `Ok(true)` verified and written, `Ok(false)`
/// corrupt (nothing written), `Err` the write failed.
pub type Verdict = Result<bool, StorageError>;

/// The checking thread of one download. Dropping it lets the thread finish
/// the batch in hand and end.
pub struct Verifier {
    tx: mpsc::Sender<Job>,
}

impl Verifier {
    /// Starts the thread; `report` is called on it once per submitted
    /// piece, in batch order.
    ///
    /// # Errors
    /// The thread could not be spawned.
    /// Block buffers go back to `pool` once their piece is done with.
    pub fn start(
        part: Arc<PartFile>,
        pool: Arc<BufPool>,
        report: impl Fn(u32, Verdict) + Send + 'static,
    ) -> std::io::Result<Verifier> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("verify".into())
            .spawn(move || run(&part, &pool, &rx, &report))?;
        Ok(Verifier { tx })
    }

    /// Queues a complete piece. `false` if the thread is gone (the report
    /// will never come).
    pub fn submit(&self, piece: u32, expected: Sha1Hash, blocks: Vec<Vec<u8>>) -> bool {
        self.tx
            .send(Job {
                piece,
                expected,
                blocks,
            })
            .is_ok()
    }
}

fn run(part: &PartFile, pool: &BufPool, rx: &mpsc::Receiver<Job>, report: &dyn Fn(u32, Verdict)) {
    let want = p2p_sha1::preferred_batch();
    let mut batch = Vec::with_capacity(want);
    let mut stats = Stats::default();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        let deadline = Instant::now() + BATCH_WAIT;
        while batch.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(mpsc::TryRecvError::Empty) if !left.is_zero() => match rx.recv_timeout(left) {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                },
                Err(_) => break,
            }
        }
        stats.batches += 1;
        stats.pieces += batch.len() as u64;
        check_batch(part, pool, &mut batch, report, &mut stats);
    }
    tracing::debug!(
        batches = stats.batches,
        pieces = stats.pieces,
        hash_ms = stats.hashing.as_millis() as u64,
        write_ms = stats.writing.as_millis() as u64,
        "piece verifier done"
    );
}

/// For the log line at the end: is batching working, where does time go.
#[derive(Default)]
struct Stats {
    batches: u64,
    pieces: u64,
    hashing: Duration,
    writing: Duration,
}

fn check_batch(
    part: &PartFile,
    pool: &BufPool,
    batch: &mut Vec<Job>,
    report: &dyn Fn(u32, Verdict),
    stats: &mut Stats,
) {
    let started = Instant::now();
    let chunks: Vec<Vec<&[u8]>> = batch
        .iter()
        .map(|j| {
            j.blocks
                .iter()
                .map(|b| b.get(PIECE_DATA_START..).unwrap_or_default())
                .collect()
        })
        .collect();
    let msgs: Vec<&[&[u8]]> = chunks.iter().map(|c| &c[..]).collect();
    let digests = digest_many(&msgs);
    let hashed = Instant::now();
    stats.hashing += hashed - started;
    for (job, digest) in batch.drain(..).zip(digests) {
        let verdict = if digest == job.expected {
            write_piece(part, job.piece, &job.blocks).map(|()| true)
        } else {
            Ok(false)
        };
        report(job.piece, verdict);
        for b in job.blocks {
            pool.put(b);
        }
    }
    stats.writing += hashed.elapsed();
}

fn write_piece(part: &PartFile, piece: u32, blocks: &[Vec<u8>]) -> Result<(), StorageError> {
    for (i, b) in blocks.iter().enumerate() {
        let data = b.get(PIECE_DATA_START..).unwrap_or_default();
        part.write_block(piece, geometry::block_offset(i as u32), data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::storage::PartMode;
    use proto::geometry::{BLOCK_SIZE_BYTES, PIECE_SIZE_BYTES};
    use std::sync::Mutex;

    fn frame(data: &[u8]) -> Vec<u8> {
        let mut p = vec![0xEE; PIECE_DATA_START];
        p.extend_from_slice(data);
        p
    }

    fn piece_blocks(data: &[u8]) -> Vec<Vec<u8>> {
        data.chunks(BLOCK_SIZE_BYTES as usize).map(frame).collect()
    }

    #[test]
    fn assembly_gives_a_piece_only_when_every_block_is_in() {
        let mut a = Assembly::default();
        a.insert(3, 1, 2, frame(b"b"));
        assert!(a.take(3).is_none());
        a.insert(3, 0, 2, frame(b"a"));
        a.insert(3, 7, 2, frame(b"ignored"));
        let blocks = a.take(3).unwrap();
        assert_eq!(blocks, vec![frame(b"a"), frame(b"b")]);
        assert!(a.is_empty());
        a.insert(4, 0, 4, frame(b"x"));
        assert_eq!(a.len(), 1);
        a.discard(4);
        assert!(a.is_empty());
    }

    #[test]
    fn good_pieces_are_written_and_bad_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let size = 3 * PIECE_SIZE_BYTES + 1000;
        let content: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let path = dir.path().join("f.part");
        let part = Arc::new(PartFile::open(&path, size, PartMode::Fresh).unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let pool = Arc::new(BufPool::default());
        let v = Verifier::start(part.clone(), pool.clone(), move |p, r| {
            s2.lock().unwrap().push((p, r.unwrap()))
        })
        .unwrap();
        let piece = |i: u32| {
            let at = geometry::piece_offset(i) as usize;
            let len = geometry::piece_len(size, i).unwrap() as usize;
            &content[at..at + len]
        };
        for i in 0..4u32 {
            let want = p2p_sha1::of(piece(i));
            let mut data = piece(i).to_vec();
            if i == 2 {
                data[10] ^= 1; // corrupt: must be refused and not written
            }
            assert!(v.submit(i, want, piece_blocks(&data)));
        }
        drop(v);
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().len() < 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut got = seen.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, vec![(0, true), (1, true), (2, false), (3, true)]);
        let on_disk = std::fs::read(&path).unwrap();
        for i in [0u32, 1, 3] {
            let at = geometry::piece_offset(i) as usize;
            assert_eq!(&on_disk[at..at + piece(i).len()], piece(i), "piece {i}");
        }
        let at = geometry::piece_offset(2) as usize;
        assert!(on_disk[at..at + piece(2).len()].iter().all(|&b| b == 0));
        // Every full-size block buffer came back for reuse (three whole
        // pieces of four blocks; the short last block is not worth keeping).
        assert_eq!(pool.pooled(), 3 * 4);
    }
}
