//! The store: one directory per (plugin, network), one file per key, every
//! transaction under an flock of the directory's `lock` file. For IPAM this
//! is reference host-local's on-disk format, so a network migrated from it
//! keeps its reservations, and both can even run side by side.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, File, OpenOptions, OpenOptionsExt};

use crate::HostError;

/// One open, locked store.
pub trait Txn: Send {
    fn get(&mut self, key: &str) -> Result<Option<String>, HostError>;
    fn insert(&mut self, key: &str, value: &str) -> Result<bool, HostError>;
    fn put(&mut self, key: &str, value: &str) -> Result<(), HostError>;
    fn remove(&mut self, key: &str) -> Result<bool, HostError>;
    fn keys(&mut self) -> Result<Vec<String>, HostError>;
}

/// Opens transactions on one store.
pub trait StoreBackend: Send {
    fn open(&self) -> Result<Box<dyn Txn>, HostError>;
}

/// The WIT `transaction` resource.
pub struct Transaction(pub Box<dyn Txn>);

const LOCK: &str = "lock";

/// Keys become file names: they must stay plain names in the store's dir.
pub fn validate_key(key: &str) -> Result<(), HostError> {
    let bad = key.is_empty()
        || key.len() > 255
        || key.contains('/')
        || key.contains('\0')
        || key.starts_with('.')
        || key == LOCK;
    if bad {
        return Err(HostError::Invalid(format!(
            "store key {:?} is not a plain name",
            crate::text::quoted(key)
        )));
    }
    Ok(())
}

fn io(what: &str, e: std::io::Error) -> HostError {
    HostError::Io(format!("{what}: {e}"))
}

/// A store's directory: `rel` beneath an admin's store root. The only way
/// to make one checks that `rel` is plain names, and the store opens it
/// without following a symlink below the root
/// ([`crate::beneath`]), so no config value can put a store elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDir {
    root: PathBuf,
    rel: PathBuf,
}

impl StoreDir {
    pub fn beneath(root: &Path, rel: &Path) -> Result<Self, String> {
        let parts = crate::beneath::plain_components(rel)?;
        if parts.is_empty() {
            return Err("names the store root itself".into());
        }
        Ok(Self {
            root: root.to_path_buf(),
            rel: rel.to_path_buf(),
        })
    }

    /// `<root>/<rel>`, for messages.
    pub fn path(&self) -> PathBuf {
        self.root.join(&self.rel)
    }

    /// This store's directory for `network` (host-local's
    /// `<dataDir>/<network>`); `network` must be a plain name.
    pub fn join(&self, network: &str) -> Result<Self, String> {
        Self::beneath(&self.root, &self.rel.join(network))
    }
}

/// The on-disk store in a [`StoreDir`].
pub struct FsStore {
    pub dir: StoreDir,
    /// How long `open` waits for another transaction's lock: the host
    /// call's budget, so a wedged holder cannot stall a call past it.
    pub lock_timeout: Duration,
}

/// Takes the store's lock within `timeout`, polled in steps of at most
/// 16 ms: a store transaction lasts well under a millisecond, so the wait
/// is rarely more than one step.
fn lock_within(file: &File, timeout: Duration) -> Result<(), HostError> {
    match crate::flock::exclusive_within(file, timeout, Duration::from_millis(16)) {
        Ok(true) => Ok(()),
        Ok(false) => Err(HostError::Timeout {
            call: "store.open (waiting for another transaction's lock)".into(),
            after: timeout,
        }),
        Err(e) => Err(io("locking the store", e)),
    }
}

impl StoreBackend for FsStore {
    fn open(&self) -> Result<Box<dyn Txn>, HostError> {
        let path = self.dir.path();
        // The root is the admin's: made if missing, as the state dirs of a
        // fresh node are.
        Dir::create_ambient_dir_all(&self.dir.root, ambient_authority())
            .map_err(|e| io(&format!("creating {}", self.dir.root.display()), e))?;
        let fd = crate::beneath::open_dir(&self.dir.root, &self.dir.rel, true).map_err(|e| {
            let what = format!("opening {}", path.display());
            match crate::beneath::is_symlink_refusal(&e) {
                true => HostError::Denied(format!("{what}: {e}")),
                false => io(&what, e),
            }
        })?;
        let dir = Dir::from_std_file(std::fs::File::from(fd));
        let lock = dir
            .open_with(
                LOCK,
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .mode(0o600),
            )
            .map_err(|e| io("opening the lock file", e))?;
        lock_within(&lock, self.lock_timeout)?;
        Ok(Box::new(FsTxn {
            dir,
            _lock: lock,
            root: path,
        }))
    }
}

struct FsTxn {
    dir: Dir,
    _lock: File,
    root: PathBuf,
}

impl FsTxn {
    fn what(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }
}

impl Txn for FsTxn {
    fn get(&mut self, key: &str) -> Result<Option<String>, HostError> {
        validate_key(key)?;
        match self.dir.open(key) {
            Ok(mut f) => {
                let mut s = String::new();
                f.read_to_string(&mut s)
                    .map_err(|e| io(&self.what(key), e))?;
                Ok(Some(s))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&self.what(key), e)),
        }
    }

    fn insert(&mut self, key: &str, value: &str) -> Result<bool, HostError> {
        validate_key(key)?;
        let f = self.dir.open_with(
            key,
            OpenOptions::new().write(true).create_new(true).mode(0o600),
        );
        let mut f = match f {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io(&self.what(key), e)),
        };
        if let Err(e) = f.write_all(value.as_bytes()) {
            let _ = self.dir.remove_file(key);
            return Err(io(&self.what(key), e));
        }
        Ok(true)
    }

    fn put(&mut self, key: &str, value: &str) -> Result<(), HostError> {
        validate_key(key)?;
        // Only a file is replaced: a directory under a key's name (the host
        // makes one when a config nests a store inside another) is refused
        // as a rename over it was, never moved aside.
        match self.dir.symlink_metadata(key) {
            Ok(m) if m.is_dir() => {
                return Err(io(
                    &self.what(key),
                    std::io::Error::from_raw_os_error(libc::EISDIR),
                ))
            }
            _ => {}
        }
        let tmp = format!(".{key}.tmp");
        let mut f = self
            .dir
            .open_with(
                &tmp,
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600),
            )
            .map_err(|e| io(&self.what(&tmp), e))?;
        if let Err(e) = f.write_all(value.as_bytes()) {
            let _ = self.dir.remove_file(&tmp);
            return Err(io(&self.what(&tmp), e));
        }
        drop(f);
        // Renaming over an existing file makes ext4 (auto_da_alloc) write
        // the new file's data out before the rename returns: ~0.2 ms, most
        // of a warm host-local ADD (its round-robin marker). Exchanging the
        // two names is as atomic for a reader (the key holds the old value
        // or the new, never part of one) without that flush; the old value,
        // now under the temp name, goes after. What it gives up: after a
        // power loss before the kernel writes the data back, the key may be
        // empty rather than old-or-new (no fsync either way, as the
        // reference's writes). Its users keep hints (host-local's marker)
        // or state of interfaces a power loss takes with it (tuning's).
        match exchange(&self.dir, &tmp, key) {
            Ok(()) => match self.dir.remove_file(&tmp) {
                Ok(()) => Ok(()),
                // A directory appeared under the key since the check:
                // swapped back, refused.
                Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                    let _ = exchange(&self.dir, &tmp, key);
                    let _ = self.dir.remove_file(&tmp);
                    Err(io(&self.what(key), e))
                }
                Err(e) => Err(io(&self.what(&tmp), e)),
            },
            // Nothing to replace, or no exchange here (an old kernel or
            // filesystem, a seccomp profile).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(
                        libc::ENOENT | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EPERM
                    )
                ) =>
            {
                self.dir
                    .rename(&tmp, &self.dir, key)
                    .map_err(|e| io(&self.what(key), e))
            }
            Err(e) => {
                let _ = self.dir.remove_file(&tmp);
                Err(io(&self.what(key), e))
            }
        }
    }

    fn remove(&mut self, key: &str) -> Result<bool, HostError> {
        validate_key(key)?;
        match self.dir.remove_file(key) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&self.what(key), e)),
        }
    }

    fn keys(&mut self) -> Result<Vec<String>, HostError> {
        let mut keys = Vec::new();
        for entry in self
            .dir
            .entries()
            .map_err(|e| io(&self.root.display().to_string(), e))?
        {
            let entry = entry.map_err(|e| io(&self.root.display().to_string(), e))?;
            if !entry.file_type().map_err(|e| io("file type", e))?.is_file() {
                continue;
            }
            if let Ok(name) = entry.file_name().into_string() {
                if validate_key(&name).is_ok() {
                    keys.push(name);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// Swaps the entries `a` and `b` of `dir` (both plain names, both
/// existing) in one step: `renameat2(RENAME_EXCHANGE)`.
fn exchange(dir: &Dir, a: &str, b: &str) -> std::io::Result<()> {
    let (a, b) = (
        std::ffi::CString::new(a).map_err(std::io::Error::other)?,
        std::ffi::CString::new(b).map_err(std::io::Error::other)?,
    );
    let fd = dir.as_raw_fd();
    // SAFETY: two NUL-terminated names relative to a directory fd we own.
    match unsafe { libc::renameat2(fd, a.as_ptr(), fd, b.as_ptr(), libc::RENAME_EXCHANGE) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// An in-memory store that records every operation.
#[derive(Clone, Default)]
pub struct RecordingStore {
    pub data: Arc<Mutex<BTreeMap<String, String>>>,
    pub ops: Arc<Mutex<Vec<String>>>,
}

impl StoreBackend for RecordingStore {
    fn open(&self) -> Result<Box<dyn Txn>, HostError> {
        self.ops.lock().expect("ops").push("open".into());
        Ok(Box::new(self.clone()))
    }
}

impl RecordingStore {
    fn record(&self, op: String) {
        self.ops.lock().expect("ops").push(op);
    }
}

impl Txn for RecordingStore {
    fn get(&mut self, key: &str) -> Result<Option<String>, HostError> {
        validate_key(key)?;
        self.record(format!("get {key}"));
        Ok(self.data.lock().expect("data").get(key).cloned())
    }

    fn insert(&mut self, key: &str, value: &str) -> Result<bool, HostError> {
        validate_key(key)?;
        self.record(format!("insert {key}={value:?}"));
        let mut d = self.data.lock().expect("data");
        if d.contains_key(key) {
            return Ok(false);
        }
        d.insert(key.into(), value.into());
        Ok(true)
    }

    fn put(&mut self, key: &str, value: &str) -> Result<(), HostError> {
        validate_key(key)?;
        self.record(format!("put {key}={value:?}"));
        self.data
            .lock()
            .expect("data")
            .insert(key.into(), value.into());
        Ok(())
    }

    fn remove(&mut self, key: &str) -> Result<bool, HostError> {
        validate_key(key)?;
        self.record(format!("remove {key}"));
        Ok(self.data.lock().expect("data").remove(key).is_some())
    }

    fn keys(&mut self) -> Result<Vec<String>, HostError> {
        self.record("keys".into());
        Ok(self.data.lock().expect("data").keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry of `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn fs_store_is_host_local_layout() {
        let d = tempfile::tempdir().unwrap();
        let s = FsStore {
            dir: StoreDir::beneath(d.path(), Path::new("net")).unwrap(),
            lock_timeout: Duration::from_secs(1),
        };
        let mut t = s.open().unwrap();
        assert!(t.insert("10.0.0.2", "cid\r\neth0").unwrap());
        assert!(!t.insert("10.0.0.2", "other\r\neth0").unwrap());
        t.put("last_reserved_ip.0", "10.0.0.2").unwrap();
        t.put("last_reserved_ip.0", "10.0.0.3").unwrap();
        assert_eq!(
            t.get("last_reserved_ip.0").unwrap().as_deref(),
            Some("10.0.0.3")
        );
        assert_eq!(t.keys().unwrap(), vec!["10.0.0.2", "last_reserved_ip.0"]);
        assert_eq!(
            std::fs::read_to_string(d.path().join("net/10.0.0.2")).unwrap(),
            "cid\r\neth0"
        );
        assert!(d.path().join("net/lock").exists());
        // A put that replaced a value leaves no temp file behind.
        assert_eq!(
            names(&d.path().join("net")),
            ["10.0.0.2", "last_reserved_ip.0", "lock"]
        );
        assert!(t.remove("10.0.0.2").unwrap());
        assert!(!t.remove("10.0.0.2").unwrap());
        assert!(t.get("nope").unwrap().is_none());
    }

    /// A directory under a key's name (a store the host nested inside
    /// this one) is refused by put and left where it is, with its files;
    /// nothing stray is left beside it.
    #[test]
    fn put_never_moves_a_directory() {
        let d = tempfile::tempdir().unwrap();
        let store = |net: &str| FsStore {
            dir: StoreDir::beneath(d.path(), Path::new(net)).unwrap(),
            lock_timeout: Duration::from_secs(1),
        };
        let mut nested = store("a/b").open().unwrap();
        assert!(nested.insert("10.0.0.5", "victim\r\neth0").unwrap());
        drop(nested);
        let mut t = store("a").open().unwrap();
        let e = t.put("b", "pwned").unwrap_err();
        assert!(e.to_string().contains("Is a directory"), "{e}");
        assert_eq!(names(&d.path().join("a")), ["b", "lock"]);
        assert!(d.path().join("a/b").is_dir());
        drop(t);
        let mut nested = store("a/b").open().unwrap();
        assert_eq!(nested.keys().unwrap(), ["10.0.0.5"]);
    }

    /// A store dir is plain names beneath its root, and a symlink planted
    /// below the root (say, to another network's reservations) is refused.
    #[test]
    fn a_store_dir_stays_beneath_its_root() {
        let d = tempfile::tempdir().unwrap();
        for bad in ["../x", "a/../../x", "/etc", "", "."] {
            assert!(
                StoreDir::beneath(d.path(), Path::new(bad)).is_err(),
                "{bad}"
            );
        }
        let dir = StoreDir::beneath(d.path(), Path::new("networks")).unwrap();
        assert!(dir.join("../other").is_err() && dir.join("a/b").is_ok());
        std::fs::create_dir_all(d.path().join("networks/other")).unwrap();
        std::os::unix::fs::symlink(
            d.path().join("networks/other"),
            d.path().join("networks/mine"),
        )
        .unwrap();
        let s = FsStore {
            dir: dir.join("mine").unwrap(),
            lock_timeout: Duration::from_secs(1),
        };
        let e = s.open().err().expect("a symlinked store is refused");
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(!d.path().join("networks/other/lock").exists());
    }

    #[test]
    fn keys_cannot_escape() {
        for k in ["", "../x", "a/b", ".", "..", "lock", ".hidden", "a\0b"] {
            assert!(validate_key(k).is_err(), "{k:?}");
        }
        assert!(validate_key("fd00::2").is_ok());
    }

    #[test]
    fn lock_serializes_transactions() {
        let d = tempfile::tempdir().unwrap();
        let root = StoreDir::beneath(d.path(), Path::new("net")).unwrap();
        let store = |dir: StoreDir, ms: u64| FsStore {
            dir,
            lock_timeout: Duration::from_millis(ms),
        };
        let t1 = store(root.clone(), 1000).open().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = root.clone();
        let h = std::thread::spawn(move || {
            let _t2 = store(waiter, 10_000).open().unwrap();
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "second open must wait"
        );
        drop(t1);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        h.join().unwrap();
    }

    /// A holder that never lets go (a wedged process, a crafted lock
    /// holder) costs a waiting host call its budget, not forever.
    #[test]
    fn a_held_lock_times_out_within_the_budget() {
        let d = tempfile::tempdir().unwrap();
        let root = StoreDir::beneath(d.path(), Path::new("net")).unwrap();
        let store = |ms: u64| FsStore {
            dir: root.clone(),
            lock_timeout: Duration::from_millis(ms),
        };
        let _held = store(1000).open().unwrap();
        let e = match store(150).open() {
            Err(e) => e,
            Ok(_) => panic!("a held lock was taken"),
        };
        assert!(matches!(e, HostError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("another transaction's lock"), "{e}");
        assert!(e.to_wit("store.open").code == 11);
    }
}
