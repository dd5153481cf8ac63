//! `chrootDir` is only usable when its `/proc` is of the daemon's own PID
//! namespace: a native plugin exec'd there opens `/proc/<its pid>/task/<tid>/ns/net`
//! (the reference plugins' `ns.GetCurrentNS`), and with the host's `/proc`
//! under a container's PID namespace that path is someone else's or no one's,
//! so every pod with a native delegate fails. Checked once at start-up.

use std::path::Path;

/// Whether `<root>/proc/self` names this process. The error says what to
/// change (the DaemonSet's `hostPID: true`, as upstream's thick manifest has).
pub fn check_pid_namespace(root: &Path) -> Result<(), String> {
    let link = root.join("proc/self");
    let target = std::fs::read_link(&link).map_err(|e| {
        format!(
            "chrootDir {}: reading {}: {e}",
            root.display(),
            link.display()
        )
    })?;
    let seen: u32 = target.to_string_lossy().parse().map_err(|_| {
        format!(
            "chrootDir {}: {} is not a procfs",
            root.display(),
            link.display()
        )
    })?;
    let me = std::process::id();
    if seen == me {
        return Ok(());
    }
    Err(format!(
        "chrootDir {}: its /proc is another PID namespace's (it sees this daemon as pid {seen}, the daemon is pid {me}), so native plugins run there cannot find their own network namespace; run the daemon in the host's PID namespace (the DaemonSet's hostPID: true)",
        root.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_proc_passes_and_a_stranger_fails() {
        check_pid_namespace(Path::new("/")).unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("proc")).unwrap();
        std::os::unix::fs::symlink("1", d.path().join("proc/self")).unwrap();
        let e = check_pid_namespace(d.path()).unwrap_err();
        assert!(e.contains("hostPID: true") && e.contains("pid 1"), "{e}");
        std::fs::remove_file(d.path().join("proc/self")).unwrap();
        assert!(check_pid_namespace(d.path()).is_err());
    }
}
