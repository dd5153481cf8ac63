//! Replacing a file so that readers (the container runtime, a running
//! multus) see the old content or the new, never a half-written file, and a
//! crash or power loss leaves one of the two on disk.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Writes `bytes` to `path` through a temp file in the same directory
/// (fsync'd, chmod'ed to `mode`, renamed over `path`), then fsyncs the
/// directory. The parent is created with mode 0700 when missing.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent(path)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Copies `from` to `to` atomically with `mode`: a binary being exec'd at
/// `to` keeps running from its old inode (no "text file busy").
pub fn copy_atomic(from: &Path, to: &Path, mode: u32) -> io::Result<()> {
    let bytes = std::fs::read(from)?;
    write_atomic(to, &bytes, mode)
}

/// Renames `from` to `to` (same filesystem) and makes it durable.
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    sync_dir(parent(to)?)?;
    let from_dir = parent(from)?;
    if from_dir != parent(to)? {
        sync_dir(from_dir)?;
    }
    Ok(())
}

fn parent(path: &Path) -> io::Result<&Path> {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| io::Error::other(format!("{} has no parent directory", path.display())))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_with_mode_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/conf");
        write_atomic(&p, b"one", 0o600).unwrap();
        let before = std::fs::metadata(&p).unwrap().ino();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.mode() & 0o777, 0o644);
        assert_ne!(
            m.ino(),
            before,
            "a new inode, so an open or exec'd old file is untouched"
        );
        assert_eq!(std::fs::read_dir(d.path().join("sub")).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("conf");
        write_atomic(&p, b"old", 0o600).unwrap();
        let missing = d.path().join("nope");
        assert!(copy_atomic(&missing, &p, 0o600).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
