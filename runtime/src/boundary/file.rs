//! Reading a file a config names (`ipam.configuration_path`, a
//! kubeconfig): beneath an admin root, a regular file (opened without
//! blocking, checked with fstat), at most [`MAX_BYTES`], within a deadline.
//! A FIFO, a device, `/dev/zero` or a hung filesystem costs the call an
//! error, never memory or a hang.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use multus_host_functions::text::quoted;

use super::bounds::{list, split_beneath};
use super::Refused;

/// No config file or kubeconfig is near this; a config pointing at a huge
/// file is refused rather than read.
pub const MAX_BYTES: u64 = 1 << 20;

/// Where a config-named file may be.
pub struct Roots<'a> {
    pub roots: &'a [PathBuf],
    /// The conf key the admin sets them with, for messages.
    pub key: &'a str,
}

/// Reads `path`, which config key `key` named, if it lies beneath one of
/// `roots`; symlinks below a root are not followed (a root that is the
/// file itself is opened as the admin named it).
pub fn read(
    roots: &Roots<'_>,
    path: &Path,
    key: &str,
    timeout: Duration,
) -> Result<Vec<u8>, Refused> {
    let shown = path.display().to_string();
    let refused = |why: String| Refused::new(key, format!("{}: {why}", quoted(&shown)));
    if !path.is_absolute() {
        return Err(refused("not an absolute path".into()));
    }
    let exact = roots.roots.iter().any(|r| r == path);
    let split = split_beneath(roots.roots, path);
    let Some((root, rel)) = split.or_else(|| exact.then(|| (PathBuf::new(), Path::new("")))) else {
        return Err(refused(format!(
            "not beneath a {} entry ({}); the admin sets {} in the multus conf",
            roots.key,
            list(roots.roots),
            roots.key
        )));
    };
    let (rel, path) = (rel.to_path_buf(), path.to_path_buf());
    let (tx, rx) = std::sync::mpsc::channel();
    // Opening and reading a regular file does not block, but a hung
    // filesystem can: the call's deadline holds regardless, and the
    // thread is left to finish on its own.
    std::thread::Builder::new()
        .name("config-file".into())
        .spawn(move || {
            let opened = if exact {
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                    .open(&path)
            } else {
                multus_host_functions::beneath::open_file(&root, &rel)
            };
            let _ = tx.send(opened.and_then(read_regular));
        })
        .map_err(|e| refused(format!("starting the read: {e}")))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(refused(e.to_string())),
        Err(_) => Err(refused(format!(
            "not read within {} ms",
            timeout.as_millis()
        ))),
    }
}

fn read_regular(f: std::fs::File) -> std::io::Result<Vec<u8>> {
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let too_big = || std::io::Error::other(format!("larger than {MAX_BYTES} bytes"));
    if meta.len() > MAX_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_capped_beneath_and_never_blocking() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("ok.conf"), "{}").unwrap();
        let fifo = root.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::fs::File::create(root.join("huge"))
            .unwrap()
            .set_len(MAX_BYTES + 1)
            .unwrap();
        std::fs::write(d.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), root.join("link")).unwrap();
        let roots = [root.clone()];
        let r = Roots {
            roots: &roots,
            key: "configFileRoots",
        };
        let t = Duration::from_secs(5);
        let read = |p: &Path| read(&r, p, "ipam.configuration_path", t);
        assert_eq!(read(&root.join("ok.conf")).unwrap(), b"{}");
        let started = std::time::Instant::now();
        assert!(read(&fifo).unwrap_err().msg.contains("not a regular file"));
        assert!(started.elapsed() < t, "a FIFO does not block");
        assert!(read(&root.join("huge")).unwrap_err().msg.contains("larger"));
        assert!(read(&root.join("link"))
            .unwrap_err()
            .msg
            .contains("symlink"));
        let e = read(Path::new("/dev/zero")).unwrap_err();
        assert!(
            e.msg.contains("configFileRoots") && e.key == "ipam.configuration_path",
            "{e}"
        );
        assert!(read(&d.path().join("secret")).is_err());
        // The admin's exact file is opened as named; /dev/zero still is no file.
        let dev = [PathBuf::from("/dev/zero")];
        let r = Roots {
            roots: &dev,
            key: "kubeconfigAllowlist",
        };
        assert!(super::read(&r, Path::new("/dev/zero"), "k", t)
            .unwrap_err()
            .msg
            .contains("not a regular file"));
    }
}
