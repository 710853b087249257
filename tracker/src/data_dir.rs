//! The tracker's data directory (`--data-dir`) is private: the directory is
//! 0700 and every file in it 0600, because it holds session tokens,
//! password hashes and the ticket key (another local user who can read it
//! can log in as anyone).
//!
//! Owns: the process umask (0o077, so whatever the tracker or a library it
//! uses creates is private from birth), creating the directory or making an
//! existing one private again (the tracker owns it, so it fixes modes rather
//! than refusing), and opening a file in it without following a symlink.

use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Sets the process umask to 0o077: files created from now on get no group
/// or other bits, whoever creates them (redb creates its own files).
pub fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates `dir` (0700, parents too), or makes an existing one 0700 and
/// every regular file directly in it 0600. Symlinks in it are left alone
/// (never followed).
///
/// # Errors
/// The directory cannot be created, is not a directory, or its modes
/// cannot be set (it belongs to another user).
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode != DIR_MODE {
        std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))?;
        tracing::info!(dir = %dir.display(), "data directory was mode {mode:04o}; made it {DIR_MODE:04o}");
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?; // of the entry itself: no symlink followed
        if meta.is_file() && meta.permissions().mode() & 0o7777 != FILE_MODE {
            open_private(&entry.path())?;
            tracing::info!(file = %entry.path().display(), "made it {FILE_MODE:04o}");
        }
    }
    Ok(())
}

/// Opens (creating if needed) `path` for reading and writing with mode
/// 0600, refusing a symlink there; an existing file is made 0600.
///
/// # Errors
/// Any I/O failure; `path` is a symlink (`ELOOP`).
pub fn open_private(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(FILE_MODE)
        .open(path)?;
    // On the descriptor: the file just opened, not whatever the path names now.
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_data_dir_is_private() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a").join("data");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&t.path().join("a")), 0o700);
        open_private(&dir.join("f")).unwrap();
        assert_eq!(mode(&dir.join("f")), 0o600);
    }

    #[test]
    fn an_existing_data_dir_is_made_private_and_symlinks_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("raft.redb"), b"x").unwrap();
        std::fs::set_permissions(dir.join("raft.redb"), Permissions::from_mode(0o644)).unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"v").unwrap();
        std::fs::set_permissions(&victim, Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("link")).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("raft.redb")), 0o600);
        assert_eq!(mode(&victim), 0o644, "a symlink's target is not touched");
        assert!(
            open_private(&dir.join("link")).is_err(),
            "never through a link"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"v");
    }
}
