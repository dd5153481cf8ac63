//! Opening a path beneath a directory the admin chose without ever leaving
//! it: the part below the root is plain names only (no `..`, no `.`, no
//! absolute part), and no symlink is followed below the root, so neither a
//! config's path nor a link planted in the tree can redirect the open.
//! The root itself is the admin's and is opened as given.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// A symlink met below the root: a redirection refused, not an I/O fault.
#[derive(Debug)]
pub struct SymlinkRefused(pub String);

impl std::fmt::Display for SymlinkRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is a symlink, which is not followed here", self.0)
    }
}

impl std::error::Error for SymlinkRefused {}

/// Whether `e` is a [`SymlinkRefused`].
pub fn is_symlink_refusal(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<SymlinkRefused>())
}

/// The components of `rel`, each a plain name; anything else is refused
/// with a message saying why.
pub fn plain_components(rel: &Path) -> Result<Vec<&OsStr>, String> {
    rel.components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            Component::ParentDir => Err("contains \"..\"".to_string()),
            Component::CurDir => Err("contains \".\"".to_string()),
            Component::RootDir | Component::Prefix(_) => Err("is not relative".to_string()),
        })
        .collect()
}

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn openat(dir: &impl AsRawFd, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: a valid dirfd and NUL-terminated name; the fd returned is ours.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        // O_NOFOLLOW on a symlink answers ELOOP (ENOTDIR with
        // O_DIRECTORY): say what it was.
        if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) && is_symlink(dir, &c) {
            return Err(io::Error::other(SymlinkRefused(
                name.to_string_lossy().into_owned(),
            )));
        }
        return Err(e);
    }
    // SAFETY: openat returned a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_symlink(dir: &impl AsRawFd, name: &CString) -> bool {
    // SAFETY: a valid dirfd, a NUL-terminated name and a stat buffer of ours.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        ) == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFLNK
    }
}

fn mkdirat(dir: &impl AsRawFd, name: &OsStr, mode: libc::mode_t) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: a valid dirfd and NUL-terminated name.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) } == 0 {
        return Ok(());
    }
    match io::Error::last_os_error() {
        e if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        e => Err(e),
    }
}

fn walk(root: &Path, dirs: &[&OsStr], create: bool) -> io::Result<OwnedFd> {
    let mut fd: OwnedFd = File::open(root)?.into();
    for name in dirs {
        if create {
            mkdirat(&fd, name, 0o755)?;
        }
        fd = openat(&fd, name, libc::O_RDONLY | libc::O_DIRECTORY)?;
    }
    Ok(fd)
}

/// The directory `rel` beneath `root`, created (mode 0755, as host-local
/// does) where `create` says so.
pub fn open_dir(root: &Path, rel: &Path, create: bool) -> io::Result<OwnedFd> {
    let parts = plain_components(rel).map_err(io::Error::other)?;
    walk(root, &parts, create)
}

/// The file `rel` beneath `root`, opened for reading without blocking
/// (`O_NONBLOCK`, so a FIFO or a device does not hang the open) and
/// without becoming the controlling terminal; the caller checks what it is.
pub fn open_file(root: &Path, rel: &Path) -> io::Result<File> {
    let parts = plain_components(rel).map_err(io::Error::other)?;
    let Some((file, dirs)) = parts.split_last() else {
        return Err(io::Error::other("names no file"));
    };
    let dir = walk(root, dirs, false)?;
    let fd = openat(
        &dir,
        file,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
    )?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_and_no_symlinks_below_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("file-link")).unwrap();

        open_dir(&root, Path::new("a/b"), true).unwrap();
        assert!(root.join("a/b").is_dir());
        for bad in ["../outside", "a/../../outside", "/etc", "./a", ""] {
            let e = open_dir(&root, Path::new(bad), true);
            assert!(bad.is_empty() || e.is_err(), "{bad}");
        }
        let e = open_dir(&root, Path::new("link/x"), true).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(!outside.join("x").exists(), "nothing made through the link");
        assert!(open_file(&root, Path::new("link/secret")).is_err());
        assert!(open_file(&root, Path::new("file-link")).is_err());
        std::fs::write(root.join("a/f"), "ok").unwrap();
        let mut s = String::new();
        io::Read::read_to_string(&mut open_file(&root, Path::new("a/f")).unwrap(), &mut s).unwrap();
        assert_eq!(s, "ok");
    }
}
