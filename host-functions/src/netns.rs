//! Work inside a network namespace: one dedicated thread per namespace that
//! `setns`es once, owns its netlink connection (a netlink socket stays bound
//! to the netns it was opened in) and runs jobs sent to it. Callers wait with
//! a timeout because epochs cannot interrupt a guest blocked in a host call.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use crate::HostError;

/// NSFS_MAGIC from linux/magic.h: what `fstatfs` says of a netns file.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Checks that `path` is a network namespace and not the one this process
/// (the host) lives in. Returns the opened namespace.
pub fn verify_pod_netns(path: &Path) -> Result<File, HostError> {
    let f = File::open(path)
        .map_err(|e| HostError::Netns(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: fstatfs writes into a zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) } != 0 {
        return Err(HostError::Netns(format!(
            "fstatfs {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )));
    }
    if st.f_type as i64 != NSFS_MAGIC {
        return Err(HostError::Netns(format!(
            "{} is not a network namespace",
            path.display()
        )));
    }
    let inode = |p: &Path| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let own = inode(Path::new("/proc/self/ns/net"))
        .map_err(|e| HostError::Netns(format!("/proc/self/ns/net: {e}")))?;
    let target = f
        .metadata()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .map_err(|e| HostError::Netns(e.to_string()))?;
    if own == target {
        return Err(HostError::Netns(format!(
            "{} is the host's own network namespace",
            path.display()
        )));
    }
    Ok(f)
}

type Job = Box<dyn FnOnce(&tokio::runtime::Runtime, &rtnetlink::Handle) + Send>;

/// A thread living in one netns, with a netlink connection opened there.
pub struct Worker {
    jobs: mpsc::Sender<Job>,
    timeout: Duration,
    what: String,
}

impl Worker {
    /// `netns: None` stays in the process's own (host) namespace.
    pub fn spawn(netns: Option<File>, what: &str, timeout: Duration) -> Result<Self, HostError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let name = what.to_string();
        std::thread::Builder::new()
            .name("netns-worker".into())
            .spawn(move || {
                let setup = || -> Result<(tokio::runtime::Runtime, rtnetlink::Handle), String> {
                    if let Some(f) = &netns {
                        // SAFETY: plain syscall on a valid fd; affects this thread only.
                        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                            return Err(format!("setns: {}", std::io::Error::last_os_error()));
                        }
                    }
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .build()
                        .map_err(|e| e.to_string())?;
                    let (conn, handle) = rt.block_on(async {
                        let (conn, handle, _) =
                            rtnetlink::new_connection().map_err(|e| e.to_string())?;
                        Ok::<_, String>((conn, handle))
                    })?;
                    rt.spawn(conn);
                    Ok((rt, handle))
                };
                match setup() {
                    Ok((rt, handle)) => {
                        let _ = ready_tx.send(Ok(()));
                        for job in rx {
                            job(&rt, &handle);
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| HostError::Netns(format!("{name}: cannot start worker: {e}")))?;
        match ready_rx.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(Self {
                jobs: tx,
                timeout,
                what: what.to_string(),
            }),
            Ok(Err(e)) => Err(HostError::Netns(format!("{what}: {e}"))),
            Err(_) => Err(HostError::Timeout {
                call: format!("{what}: worker setup"),
                after: timeout,
            }),
        }
    }

    /// Runs `f` on the worker and waits for its answer, at most the timeout.
    pub fn run<T: Send + 'static>(
        &self,
        call: &str,
        f: impl FnOnce(&tokio::runtime::Runtime, &rtnetlink::Handle) -> Result<T, HostError>
            + Send
            + 'static,
    ) -> Result<T, HostError> {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |rt, h| {
            let _ = tx.send(f(rt, h));
        });
        self.jobs
            .send(job)
            .map_err(|_| HostError::Netns(format!("{}: worker is gone", self.what)))?;
        rx.recv_timeout(self.timeout)
            .map_err(|_| HostError::Timeout {
                call: format!("{} {call}", self.what),
                after: self.timeout,
            })?
    }
}

/// A pod netns path that was verified, with its worker started on first use.
pub struct PodNetns {
    pub path: PathBuf,
    file: Option<File>,
    worker: Option<Worker>,
    timeout: Duration,
}

impl PodNetns {
    pub fn open(path: &Path, timeout: Duration) -> Result<Self, HostError> {
        let file = verify_pod_netns(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(file),
            worker: None,
            timeout,
        })
    }

    pub fn worker(&mut self) -> Result<&Worker, HostError> {
        if self.worker.is_none() {
            let file = self.file.take();
            self.worker = Some(Worker::spawn(file, "container netns", self.timeout)?);
        }
        Ok(self.worker.as_ref().expect("just set"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_the_host_netns_and_non_netns_files() {
        let e = verify_pod_netns(Path::new("/proc/self/ns/net")).unwrap_err();
        assert!(e.to_string().contains("host's own"), "{e}");
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = verify_pod_netns(f.path()).unwrap_err();
        assert!(e.to_string().contains("not a network namespace"), "{e}");
        assert!(verify_pod_netns(Path::new("/nonexistent/netns")).is_err());
    }
}
