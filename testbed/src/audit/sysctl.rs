//! Sysctl values before and after a run: the node netns's (where multus
//! runs, standing in for the host's network sysctls), the global kernel
//! ones, and the pod's `lo` (no config may reach it: issue 27's case 6).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::rules::{Rule, Violation};
use crate::Netns;

/// Network sysctl dirs and files read in the node's netns.
pub const NODE_NET: &[&str] = &[
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/ipv4/conf/all",
    "/proc/sys/net/ipv4/conf/default",
    "/proc/sys/net/ipv4/conf/lo",
    "/proc/sys/net/ipv4/conf/uplink0",
    "/proc/sys/net/ipv6/conf/all",
    "/proc/sys/net/ipv6/conf/default",
    "/proc/sys/net/ipv6/conf/lo",
];

/// Global (not per-netns) keys a config must never reach.
pub const KERNEL: &[&str] = &[
    "/proc/sys/kernel/hostname",
    "/proc/sys/kernel/domainname",
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/kernel/modprobe",
    "/proc/sys/kernel/panic",
    "/proc/sys/kernel/sysrq",
    "/proc/sys/kernel/printk",
    "/proc/sys/kernel/kptr_restrict",
    "/proc/sys/kernel/dmesg_restrict",
    "/proc/sys/kernel/randomize_va_space",
    "/proc/sys/kernel/unprivileged_bpf_disabled",
    "/proc/sys/vm/overcommit_memory",
    "/proc/sys/vm/swappiness",
    "/proc/sys/fs/protected_symlinks",
    "/proc/sys/fs/protected_hardlinks",
    "/proc/sys/fs/suid_dumpable",
];

/// The pod's `lo`.
pub const POD_LO: &[&str] = &["/proc/sys/net/ipv4/conf/lo", "/proc/sys/net/ipv6/conf/lo"];

pub type Snapshot = BTreeMap<String, String>;

/// Reads every file of `paths` (a dir: its files, one level) in `ns`
/// (from a thread that entered it: net sysctls are the opener's netns).
/// Unreadable files (write-only, EIO) are skipped.
pub fn snapshot(ns: Option<&Netns>, paths: &[&str]) -> Snapshot {
    let ns_path = ns.map(Netns::path);
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    std::thread::spawn(move || {
        if let Some(p) = ns_path {
            crate::enter_path(&p).expect("entering the netns for a sysctl snapshot");
        }
        let mut out = Snapshot::new();
        for p in &paths {
            read_into(p, &mut out);
        }
        out
    })
    .join()
    .expect("snapshot thread")
}

fn read_into(p: &Path, out: &mut Snapshot) {
    match std::fs::read_dir(p) {
        Ok(rd) => {
            let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for f in files {
                if f.is_file() {
                    read_into(&f, out);
                }
            }
        }
        Err(_) => {
            if let Ok(v) = std::fs::read_to_string(p) {
                out.insert(p.display().to_string(), v.trim().to_string());
            }
        }
    }
}

/// A violation per key whose value changed (`where_` says whose).
pub fn diff(where_: &str, before: &Snapshot, after: &Snapshot) -> Vec<Violation> {
    before
        .iter()
        .filter_map(|(k, v)| {
            let now = after.get(k)?;
            (now != v).then(|| {
                Violation::new(
                    Rule::HostSysctl,
                    format!("{where_} {k} changed: {v:?} -> {now:?}"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_the_key() {
        let a: Snapshot = [("/proc/sys/x".to_string(), "0".to_string())].into();
        let b: Snapshot = [("/proc/sys/x".to_string(), "1".to_string())].into();
        let v = diff("node", &a, &b);
        assert_eq!(v.len(), 1);
        assert!(v[0].detail.contains("node /proc/sys/x"));
        assert!(diff("node", &a, &a).is_empty());
    }
}
