//! Replacing a file so that readers (the container runtime, a running
//! multus) see the old content or the new, never a half-written file, and a
//! crash or power loss leaves one of the two on disk.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Host path `p` as a process sees it with the host's `/` at `root` (a
/// DaemonSet pod's host mount, a chroot).
pub fn under_root(root: &Path, p: &Path) -> std::path::PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// Writes `bytes` to `path` through a temp file in the same directory
/// (fsync'd, chmod'ed to `mode`, renamed over `path`), then fsyncs the
/// directory. The parent is created with mode 0700 when missing.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    replace(path, mode, |f| f.write_all(bytes))
}

/// Copies `from` to `to` atomically with `mode`, streaming: a binary being
/// exec'd at `to` keeps running from its old inode (no "text file busy").
pub fn copy_atomic(from: &Path, to: &Path, mode: u32) -> io::Result<()> {
    let mut src = std::fs::File::open(from)?;
    replace(to, mode, |f| io::copy(&mut src, f).map(drop))
}

/// True when both files exist with the same bytes (read in chunks).
pub fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    use std::io::Read;
    let (fa, fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ra, mut rb) = (io::BufReader::new(fa), io::BufReader::new(fb));
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = ra.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        rb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

fn replace(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut std::fs::File) -> io::Result<()>,
) -> io::Result<()> {
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
    fill(tmp.as_file_mut())?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
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

    #[test]
    fn copies_and_compares_in_chunks() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&a, &big).unwrap();
        copy_atomic(&a, &b, 0o755).unwrap();
        assert!(same_content(&a, &b).unwrap());
        let mut other = big.clone();
        other[150_000] ^= 1;
        std::fs::write(&b, &other).unwrap();
        assert!(!same_content(&a, &b).unwrap());
        std::fs::write(&b, &big[..10]).unwrap();
        assert!(!same_content(&a, &b).unwrap());
        assert!(same_content(&a, &d.path().join("none")).is_err());
    }
}
