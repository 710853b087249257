//! One streaming pass over a file: the whole-file SHA-1 and one SHA-1 per
//! [`PIECE_SIZE_BYTES`] piece.
//!
//! Memory is bounded whatever the file size: a small pool of piece-sized
//! buffers circulates between the reading thread (which also feeds the
//! whole-file hasher) and a second thread hashing pieces, so both digests run
//! in parallel and each byte is read from disk exactly once.

use p2p_sha1::{digest_many, Sha1Stream};
use proto::geometry::{piece_count, PIECE_SIZE_BYTES};
use proto::Sha1Hash;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

/// Buffers in flight between the reader and the piece hasher: two batches
/// of the lane kernel, so the reader goes on while a batch is hashed; 8 MiB
/// in all (2 MiB on a CPU without lanes).
fn buffers_in_flight() -> usize {
    2 * p2p_sha1::preferred_batch().max(2)
}

/// The digests of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHashes {
    pub size: u64,
    pub sha1: Sha1Hash,
    pub pieces: Vec<Sha1Hash>,
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("hashing was cancelled")]
    Cancelled,
}

/// Hash `path` on the calling (blocking) thread. `progress` is called with
/// the bytes hashed so far after each piece; `cancel` is checked as often.
///
/// # Errors
/// The file cannot be opened or read, or `cancel` was set.
pub fn hash_file(
    path: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u64),
) -> Result<FileHashes, HashError> {
    let file = std::fs::File::open(path).map_err(|source| HashError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    hash_reader(file, cancel, progress).map_err(|e| match e {
        ReadFailed::Io(source) => HashError::Read {
            path: path.to_path_buf(),
            source,
        },
        ReadFailed::Cancelled => HashError::Cancelled,
    })
}

/// Sets its flag when dropped: hashing on a blocking thread for a future
/// that was dropped (daemon stopping, caller gone) stops at the next piece
/// instead of reading on for minutes.
#[derive(Debug)]
pub struct CancelOnDrop(pub Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug)]
enum ReadFailed {
    Io(std::io::Error),
    Cancelled,
}

fn hash_reader<R: Read>(
    mut reader: R,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u64),
) -> Result<FileHashes, ReadFailed> {
    let piece = PIECE_SIZE_BYTES as usize;
    let pool = buffers_in_flight();
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(pool);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(pool);
    for _ in 0..pool {
        empty_tx
            .send(vec![0u8; piece])
            .expect("the channel has room for every buffer of the pool");
    }

    std::thread::scope(|scope| {
        // Pieces are hashed a batch at a time (eight in the lanes of one
        // vector where the CPU can), in file order.
        let piece_hasher = scope.spawn(move || {
            let want = p2p_sha1::preferred_batch();
            let mut pieces = Vec::new();
            let mut batch: Vec<(Vec<u8>, usize)> = Vec::with_capacity(want);
            let mut open = true;
            while open {
                while batch.len() < want {
                    match full_rx.recv() {
                        Ok(b) => batch.push(b),
                        Err(_) => {
                            open = false;
                            break;
                        }
                    }
                }
                let chunks: Vec<[&[u8]; 1]> = batch.iter().map(|(b, len)| [&b[..*len]]).collect();
                let msgs: Vec<&[&[u8]]> = chunks.iter().map(|c| &c[..]).collect();
                pieces.extend(digest_many(&msgs));
                for (buf, _) in batch.drain(..) {
                    // The reader may have stopped early; a closed pool is fine.
                    let _ = empty_tx.send(buf);
                }
            }
            pieces
        });

        let mut whole = Sha1Stream::new();
        let mut size = 0u64;
        let result = loop {
            if cancel.load(Ordering::Relaxed) {
                break Err(ReadFailed::Cancelled);
            }
            let Ok(mut buf) = empty_rx.recv() else {
                // Only if the piece thread died, which it cannot short of a panic.
                break Err(ReadFailed::Io(std::io::Error::other(
                    "piece hasher stopped",
                )));
            };
            let len = match fill(&mut reader, &mut buf) {
                Ok(n) => n,
                Err(e) => break Err(ReadFailed::Io(e)),
            };
            if len == 0 {
                break Ok(());
            }
            whole.update(&buf[..len]);
            size += len as u64;
            if full_tx.send((buf, len)).is_err() {
                break Err(ReadFailed::Io(std::io::Error::other(
                    "piece hasher stopped",
                )));
            }
            progress(size);
            if len < piece {
                break Ok(());
            }
        };
        drop(full_tx);
        let pieces = piece_hasher
            .join()
            .expect("the piece hasher does not panic: it only digests slices");
        result?;
        debug_assert_eq!(pieces.len() as u64, piece_count(size) as u64);
        Ok(FileHashes {
            size,
            sha1: whole.finish(),
            pieces,
        })
    })
}

/// Read until `buf` is full or the end of the file; a short count means EOF.
fn fill<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(bytes: &[u8]) -> FileHashes {
        FileHashes {
            size: bytes.len() as u64,
            sha1: p2p_sha1::of(bytes),
            pieces: bytes
                .chunks(PIECE_SIZE_BYTES as usize)
                .map(p2p_sha1::of)
                .collect(),
        }
    }

    fn check(len: usize) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 1000) as u8).collect();
        let mut ticks = Vec::new();
        let got = hash_reader(&bytes[..], &AtomicBool::new(false), &mut |d| ticks.push(d)).unwrap();
        assert_eq!(got, reference(&bytes), "len {len}");
        assert_eq!(got.pieces.len() as u32, piece_count(len as u64));
        assert_eq!(ticks.last().copied().unwrap_or(0), len as u64);
    }

    #[test]
    fn empty_file() {
        let got = hash_reader(&[][..], &AtomicBool::new(false), &mut |_| {}).unwrap();
        assert_eq!(
            got.sha1.to_hex(),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert!(got.pieces.is_empty());
        assert_eq!(got.size, 0);
    }

    #[test]
    fn edges_around_a_piece() {
        let p = PIECE_SIZE_BYTES as usize;
        // Up to and past two batches of the lane kernel (8 pieces each).
        for len in [
            1,
            p - 1,
            p,
            p + 1,
            2 * p,
            5 * p + 7,
            8 * p,
            8 * p + 1,
            17 * p + 9,
        ] {
            check(len);
        }
    }

    #[test]
    fn short_reads_are_filled() {
        // A reader returning a few bytes at a time must still cut pieces at
        // exact 512 KiB boundaries.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(1000);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let bytes: Vec<u8> = (0..(PIECE_SIZE_BYTES as usize * 2 + 5))
            .map(|i| i as u8)
            .collect();
        let got = hash_reader(Trickle(&bytes), &AtomicBool::new(false), &mut |_| {}).unwrap();
        assert_eq!(got, reference(&bytes));
    }

    #[test]
    fn file_on_disk_and_cancel() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let bytes = vec![0xABu8; PIECE_SIZE_BYTES as usize + 3];
        std::fs::write(t.path(), &bytes).unwrap();
        let got = hash_file(t.path(), &AtomicBool::new(false), &mut |_| {}).unwrap();
        assert_eq!(got, reference(&bytes));
        assert!(matches!(
            hash_file(t.path(), &AtomicBool::new(true), &mut |_| {}),
            Err(HashError::Cancelled)
        ));
        assert!(matches!(
            hash_file(
                Path::new("/nonexistent/x"),
                &AtomicBool::new(false),
                &mut |_| {}
            ),
            Err(HashError::Open { .. })
        ));
    }
}

#[cfg(test)]
mod throughput {
    /// `P2PD_HASH_FILE=/path cargo test -p p2pd --release -- --ignored --nocapture hash_throughput`
    #[test]
    #[ignore = "manual benchmark on a file named by P2PD_HASH_FILE"]
    fn hash_throughput() {
        let Ok(path) = std::env::var("P2PD_HASH_FILE") else {
            return;
        };
        let t0 = std::time::Instant::now();
        let h = super::hash_file(
            std::path::Path::new(&path),
            &std::sync::atomic::AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let t1 = std::time::Instant::now();
        let mut f = std::fs::File::open(&path).unwrap();
        let mut buf = vec![0u8; 1 << 19];
        let mut one = p2p_sha1::Sha1Stream::new();
        loop {
            let n = std::io::Read::read(&mut f, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            one.update(&buf[..n]);
        }
        println!(
            "single pass, whole file only: {:.2} s",
            t1.elapsed().as_secs_f64()
        );
        println!(
            "{} bytes in {secs:.2} s: {:.0} MiB/s, sha1 {}",
            h.size,
            h.size as f64 / secs / 1048576.0,
            h.sha1
        );
    }
}
