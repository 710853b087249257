//! The bytes of a download on disk: the final path, its `.part` sibling,
//! positional reads and writes of blocks, and the no-overwrite rename.
//!
//! # Invariant
//!
//! A download writes only to `DEST.part`, opened without following a
//! symlink, at offsets inside the file's size; the final path is created
//! only by [`finish`], which never replaces an existing entry (a dangling
//! symlink included). So nothing is written outside the destination and a
//! partial file never sits under the final name.
//!
//! I/O is synchronous and positional (`pread`/`pwrite` via `FileExt`), with
//! no shared cursor, so one `File` serves every block concurrently; call it
//! from `spawn_blocking` (sync on purpose: `tokio::fs` copies every buffer).

use proto::geometry;
use proto::peer::{self, BlockRef, PIECE_FRAME_HEADER_BYTES};
use proto::FileName;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Appended to the final file name while downloading.
pub const PART_SUFFIX: &str = ".part";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0} already exists; download_file never overwrites")]
    Exists(PathBuf),
    #[error("destination {0} must be an absolute path")]
    NotAbsolute(PathBuf),
    #[error("destination {0}: its directory does not exist")]
    NoParent(PathBuf),
    #[error("{0} is not a regular file")]
    NotRegular(PathBuf),
    #[error("{what} {offset}+{len} lies outside the file ({size} bytes)")]
    OutOfRange {
        what: &'static str,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        step,
        path: path.to_owned(),
        source,
    }
}

/// True if anything (a symlink, even dangling, included) is at `path`.
fn occupied(path: &Path) -> Result<bool, StorageError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("checking", path)(e)),
    }
}

/// The final path of a download of `name` to `dest` (SPEC: an existing
/// directory, where the file keeps its name, or a file path).
///
/// # Errors
/// `dest` not absolute, its directory missing, or the final path already
/// taken ([`StorageError::Exists`], SPEC code `io`).
pub fn resolve_destination(dest: &Path, name: &FileName) -> Result<PathBuf, StorageError> {
    if !dest.is_absolute() {
        return Err(StorageError::NotAbsolute(dest.to_owned()));
    }
    let path = if dest.is_dir() {
        dest.join(name.as_str())
    } else {
        dest.to_owned()
    };
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(_)) if parent.is_dir() => {}
        _ => return Err(StorageError::NoParent(path)),
    }
    if occupied(&path)? {
        return Err(StorageError::Exists(path));
    }
    Ok(path)
}

/// `DEST.part`, beside the final path.
pub fn part_path(final_path: &Path) -> PathBuf {
    let mut s = final_path.as_os_str().to_owned();
    s.push(PART_SUFFIX);
    PathBuf::from(s)
}

/// How to open a `.part` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartMode {
    /// A new download: create it; an existing name (a file, a symlink, a
    /// hard link planted there) is refused with [`StorageError::Exists`].
    New,
    /// Starting over: create it, or empty a leftover one.
    Fresh,
    /// Resuming: the verified pieces in it are kept.
    Resume,
}

/// The `.part` file of a running download.
#[derive(Debug)]
pub struct PartFile {
    file: File,
    path: PathBuf,
    size: u64,
}

impl PartFile {
    /// Opens `path` for a file of `size` bytes, never through a symlink,
    /// and sets its length to `size` (sparse).
    ///
    /// # Errors
    /// [`StorageError::NotRegular`] if `path` is a symlink or not a regular
    /// file; [`StorageError::Io`] otherwise.
    pub fn open(path: &Path, size: u64, mode: PartMode) -> Result<Self, StorageError> {
        // `create_new` (O_EXCL) for a new download: checking the name first
        // and creating it after would leave a window to plant a link.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(mode != PartMode::New)
            .create_new(mode == PartMode::New)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .mode(0o644)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => StorageError::NotRegular(path.to_owned()),
                Some(libc::EEXIST) => StorageError::Exists(path.to_owned()),
                _ => io_err("opening", path)(e),
            })?;
        let meta = file.metadata().map_err(io_err("checking", path))?;
        if !meta.is_file() {
            return Err(StorageError::NotRegular(path.to_owned()));
        }
        if mode == PartMode::Fresh {
            file.set_len(0).map_err(io_err("truncating", path))?;
        }
        if mode != PartMode::Resume || meta.len() != size {
            file.set_len(size).map_err(io_err("sizing", path))?;
        }
        Ok(PartFile {
            file,
            path: path.to_owned(),
            size,
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The open file, for serving verified pieces with [`fill_piece_frame`].
    pub fn file(&self) -> &File {
        &self.file
    }

    fn check(&self, what: &'static str, offset: u64, len: usize) -> Result<(), StorageError> {
        let len = len as u64;
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(StorageError::OutOfRange {
                what,
                offset,
                len,
                size: self.size,
            }),
        }
    }

    /// Writes a received block at its place.
    ///
    /// # Errors
    /// [`StorageError::OutOfRange`] past the file's size; nothing is written.
    pub fn write_block(&self, piece: u32, offset: u32, data: &[u8]) -> Result<(), StorageError> {
        let at = geometry::file_offset(piece, offset);
        self.check("block", at, data.len())?;
        self.file
            .write_all_at(data, at)
            .map_err(io_err("writing", &self.path))
    }

    /// Reads `buf.len()` bytes at `at` (inside the file).
    ///
    /// # Errors
    /// [`StorageError::OutOfRange`] past the end, or a read error.
    pub fn read_exact_at(&self, buf: &mut [u8], at: u64) -> Result<(), StorageError> {
        self.check("read", at, buf.len())?;
        self.file
            .read_exact_at(buf, at)
            .map_err(io_err("reading", &self.path))
    }

    /// Flushes written data to the device (before a resume record that
    /// claims it is saved).
    ///
    /// # Errors
    /// The fsync failed.
    pub fn sync_data(&self) -> Result<(), StorageError> {
        self.file.sync_data().map_err(io_err("syncing", &self.path))
    }

    /// Asks the kernel to start writing `len` bytes at `at` to the device,
    /// without waiting (`sync_file_range(2)`, `SYNC_FILE_RANGE_WRITE`).
    ///
    /// The download syncs the whole file before it is finished; started
    /// early, that sync finds the disk work done instead of a gigabyte of
    /// dirty pages (1 GiB from 4 seeders: 1.62 s -> 1.33 s, the final sync
    /// 440 ms -> 25 ms). A failure here is not reported: the final
    /// `sync_data` reports any write error. Elsewhere than Linux, nothing.
    pub fn start_writeback(&self, at: u64, len: u64) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let (Ok(at), Ok(len)) = (i64::try_from(at), i64::try_from(len)) else {
                return;
            };
            // SAFETY: a plain syscall on a descriptor `self.file` owns for
            // the whole call; it touches no memory of ours.
            #[allow(unsafe_code)]
            unsafe {
                libc::sync_file_range(self.file.as_raw_fd(), at, len, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (at, len);
    }
}

/// Moves the finished `.part` to `final_path`, never replacing anything
/// there: `link(2)` fails if the name exists (a symlink included), then the
/// `.part` name is removed. On file systems without hard links it checks
/// and renames (a narrow race, but still never through a symlink).
///
/// # Errors
/// [`StorageError::Exists`] if `final_path` is taken (the `.part` stays).
pub fn finish(part: &Path, final_path: &Path) -> Result<(), StorageError> {
    match fs::hard_link(part, final_path) {
        Ok(()) => {
            crate::fault::point(crate::fault::Point::AfterLink);
            fs::remove_file(part).map_err(io_err("removing", part))?
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(StorageError::Exists(final_path.to_owned()))
        }
        Err(_) => {
            if occupied(final_path)? {
                return Err(StorageError::Exists(final_path.to_owned()));
            }
            fs::rename(part, final_path).map_err(io_err("renaming", part))?;
        }
    }
    if let Some(dir) = final_path.parent() {
        // Make the new name durable; best effort where dirs cannot be opened.
        if let Ok(d) = File::open(dir) {
            d.sync_all().map_err(io_err("syncing", dir))?;
        }
    }
    Ok(())
}

/// Fills `buf` with one whole `Piece` frame for `block` (header, then the
/// data read straight from `file` behind it), ready for `write_all`. `buf`
/// is reused between calls; `size` is the file's size.
///
/// # Errors
/// The range is not a legal block of the file (answer `Reject` or drop the
/// peer), or the read failed.
pub fn fill_piece_frame(
    file: &File,
    size: u64,
    block: BlockRef,
    buf: &mut Vec<u8>,
) -> Result<(), ServeError> {
    frame_for(size, block, buf)?;
    file.read_exact_at(&mut buf[PIECE_FRAME_HEADER_BYTES..], block.file_offset())
        .map_err(ServeError::Read)
}

/// [`fill_piece_frame`] if the whole block is in the page cache, without
/// ever waiting for the disk (`preadv2` with `RWF_NOWAIT`), so it can run
/// on the reactor: `Ok(true)` filled; `Ok(false)` some of it is not cached
/// (or the filesystem cannot tell): call [`fill_piece_frame`] on a blocking
/// thread.
///
/// # Errors
/// As [`fill_piece_frame`].
pub fn fill_piece_frame_cached(
    file: &File,
    size: u64,
    block: BlockRef,
    buf: &mut Vec<u8>,
) -> Result<bool, ServeError> {
    frame_for(size, block, buf)?;
    let data = &mut buf[PIECE_FRAME_HEADER_BYTES..];
    let want = data.len();
    let mut slices = [io::IoSliceMut::new(data)];
    match rustix::io::preadv2(
        file,
        &mut slices,
        block.file_offset(),
        rustix::io::ReadWriteFlags::NOWAIT,
    ) {
        Ok(n) => Ok(n == want),
        Err(_) => Ok(false),
    }
}

/// Checks `block` and makes `buf` its frame: the header, then room for
/// the data. A buffer already of the right length is not zeroed again.
fn frame_for(size: u64, block: BlockRef, buf: &mut Vec<u8>) -> Result<(), ServeError> {
    block.check(size).map_err(ServeError::Range)?;
    let header = peer::piece_frame_header(block.piece, block.offset, block.len)
        .map_err(|_| ServeError::Range(geometry::BlockRangeError::TooLong { len: block.len }))?;
    let total = PIECE_FRAME_HEADER_BYTES + block.len as usize;
    if buf.len() != total {
        buf.clear();
        buf.resize(total, 0);
    }
    buf[..PIECE_FRAME_HEADER_BYTES].copy_from_slice(&header);
    Ok(())
}

/// Why a block could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("bad block request: {0}")]
    Range(geometry::BlockRangeError),
    #[error("reading the block: {0}")]
    Read(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::geometry::{BLOCK_SIZE_BYTES as B, PIECE_SIZE_BYTES as P};
    use proto::peer::{decode, Message, FRAME_PREFIX_BYTES};

    fn name(s: &str) -> FileName {
        s.parse().unwrap()
    }

    fn content(size: u64) -> Vec<u8> {
        (0..size).map(|i| (i * 7 + i / 1000) as u8).collect()
    }

    #[test]
    fn destination_rules() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            resolve_destination(d, &name("f.iso")).unwrap(),
            d.join("f.iso")
        );
        assert_eq!(
            resolve_destination(&d.join("other name"), &name("f.iso")).unwrap(),
            d.join("other name")
        );
        assert!(matches!(
            resolve_destination(Path::new("rel"), &name("f")),
            Err(StorageError::NotAbsolute(_))
        ));
        assert!(matches!(
            resolve_destination(&d.join("no/such/dir/x"), &name("f")),
            Err(StorageError::NoParent(_))
        ));
        fs::write(d.join("f.iso"), b"mine").unwrap();
        assert!(matches!(
            resolve_destination(d, &name("f.iso")),
            Err(StorageError::Exists(_))
        ));
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling")).unwrap();
        assert!(matches!(
            resolve_destination(&d.join("dangling"), &name("f")),
            Err(StorageError::Exists(_))
        ));
        assert_eq!(part_path(&d.join("a b")), d.join("a b.part"));
    }

    #[test]
    fn write_read_finish_at_edge_sizes() {
        for size in [0, 1, P - 1, P, P + 1, 2 * P + B as u64 + 3] {
            let dir = tempfile::tempdir().unwrap();
            let fin = dir.path().join("f");
            let part = part_path(&fin);
            let data = content(size);
            let f = PartFile::open(&part, size, PartMode::Fresh).unwrap();
            assert_eq!(fs::metadata(&part).unwrap().len(), size);
            // Write blocks in reverse order: positions, not order, matter.
            let mut blocks = Vec::new();
            for p in 0..geometry::piece_count(size) {
                for b in 0..geometry::block_count(size, p).unwrap() {
                    blocks.push((p, b));
                }
            }
            for &(p, b) in blocks.iter().rev() {
                let at = geometry::file_offset(p, geometry::block_offset(b)) as usize;
                let len = geometry::block_len(size, p, b).unwrap() as usize;
                f.write_block(p, geometry::block_offset(b), &data[at..at + len])
                    .unwrap();
            }
            let mut buf = vec![0; size as usize];
            f.read_exact_at(&mut buf, 0).unwrap();
            assert_eq!(buf, data);
            assert!(f.read_exact_at(&mut [0], size).is_err(), "past the end");
            f.sync_data().unwrap();
            drop(f);
            finish(&part, &fin).unwrap();
            assert_eq!(fs::read(&fin).unwrap(), data);
            assert!(!part.exists());
        }
    }

    #[test]
    fn writes_outside_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        let f = PartFile::open(&part, 10, PartMode::Fresh).unwrap();
        assert!(f.write_block(0, 0, &[1; 10]).is_ok());
        assert!(matches!(
            f.write_block(0, 5, &[1; 6]),
            Err(StorageError::OutOfRange { .. })
        ));
        assert!(f.write_block(1, 0, &[1]).is_err());
        assert!(f.write_block(u32::MAX, u32::MAX, &[1]).is_err());
        assert_eq!(fs::metadata(&part).unwrap().len(), 10);
    }

    #[test]
    fn part_file_never_follows_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let part = dir.path().join("f.part");
        std::os::unix::fs::symlink(&victim, &part).unwrap();
        assert!(matches!(
            PartFile::open(&part, 3, PartMode::Fresh),
            Err(StorageError::NotRegular(_))
        ));
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        fs::create_dir(dir.path().join("d.part")).unwrap();
        assert!(PartFile::open(&dir.path().join("d.part"), 3, PartMode::Fresh).is_err());
    }

    #[test]
    fn a_new_part_file_is_created_exclusively() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        // A hard link or a symlink planted at the name, or a leftover file:
        // each is refused, and the file behind it is untouched.
        let hard = dir.path().join("h.part");
        fs::hard_link(&victim, &hard).unwrap();
        let soft = dir.path().join("s.part");
        std::os::unix::fs::symlink(&victim, &soft).unwrap();
        for planted in [&hard, &soft, &victim] {
            assert!(matches!(
                PartFile::open(planted, 3, PartMode::New),
                Err(StorageError::Exists(_))
            ));
        }
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        let fresh = dir.path().join("f.part");
        let f = PartFile::open(&fresh, 3, PartMode::New).unwrap();
        assert_eq!(f.file().metadata().unwrap().len(), 3);
    }

    #[test]
    fn resume_keeps_data_and_fresh_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        let f = PartFile::open(&part, 4, PartMode::Fresh).unwrap();
        f.write_block(0, 0, b"abcd").unwrap();
        drop(f);
        let f = PartFile::open(&part, 4, PartMode::Resume).unwrap();
        drop(f);
        assert_eq!(fs::read(&part).unwrap(), b"abcd");
        let f = PartFile::open(&part, 4, PartMode::Fresh).unwrap();
        drop(f);
        assert_eq!(fs::read(&part).unwrap(), [0; 4]);
    }

    #[test]
    fn finish_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        fs::write(&part, b"new").unwrap();
        let fin = dir.path().join("f");
        fs::write(&fin, b"old").unwrap();
        assert!(matches!(finish(&part, &fin), Err(StorageError::Exists(_))));
        assert_eq!(fs::read(&fin).unwrap(), b"old");
        assert!(part.exists());
        // A dangling symlink under the final name is not replaced either.
        let victim = dir.path().join("victim");
        let link = dir.path().join("g");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(matches!(finish(&part, &link), Err(StorageError::Exists(_))));
        assert!(!victim.exists());
    }

    #[test]
    fn piece_frames_are_read_straight_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared");
        let size = P + 100;
        let data = content(size);
        fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let mut buf = Vec::new();
        let block = BlockRef {
            piece: 1,
            offset: 10,
            len: 90,
        };
        fill_piece_frame(&file, size, block, &mut buf).unwrap();
        let msg = decode(&buf[FRAME_PREFIX_BYTES..]).unwrap();
        let at = P as usize + 10;
        assert_eq!(
            msg,
            Message::Piece {
                piece: 1,
                offset: 10,
                data: &data[at..at + 90]
            }
        );
        // The page-cache path gives the same frame (the file was just
        // written, so it is cached), into a reused buffer of another size.
        let mut cached = vec![7u8; 5];
        assert!(fill_piece_frame_cached(&file, size, block, &mut cached).unwrap());
        assert_eq!(cached, buf);
        // Same length again: the header is rewritten, the data re-read.
        let other = BlockRef { piece: 0, ..block };
        assert!(fill_piece_frame_cached(&file, size, other, &mut cached).unwrap());
        assert_eq!(
            decode(&cached[FRAME_PREFIX_BYTES..]).unwrap(),
            Message::Piece {
                piece: 0,
                offset: 10,
                data: &data[10..100]
            }
        );
        assert!(matches!(
            fill_piece_frame_cached(&file, size, BlockRef { len: 91, ..block }, &mut cached),
            Err(ServeError::Range(_))
        ));
        for bad in [
            BlockRef { len: 91, ..block },
            BlockRef { piece: 2, ..block },
            BlockRef {
                piece: 0,
                offset: 0,
                len: B + 1,
            },
        ] {
            assert!(matches!(
                fill_piece_frame(&file, size, bad, &mut buf),
                Err(ServeError::Range(_))
            ));
        }
        // A file shorter than announced is a read error, not a panic.
        assert!(matches!(
            fill_piece_frame(
                &file,
                size + P,
                BlockRef {
                    piece: 2,
                    offset: 0,
                    len: 5
                },
                &mut buf
            ),
            Err(ServeError::Read(_))
        ));
    }
}
