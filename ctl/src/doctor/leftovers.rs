//! What pods that are gone may have left: multus cache entries whose
//! network namespace no longer exists, cache temp files, and host-local
//! reservations held by containers multus has no cache for.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use multus::cache;

use super::runtime_conf::Ours;
use super::{Finding, Node};

const CACHE: &str = "cache";
const RESERVATIONS: &str = "ip reservations";

/// The cache's container IDs, for the reservation check.
pub fn check_cache(node: &Node, ours: &Ours, out: &mut Vec<Finding>) -> Vec<String> {
    let shown = ours.conf.cni_dir.display();
    let dir = node.host(&ours.conf.cni_dir);
    let ids = match cache::list(&dir) {
        Ok(ids) => ids,
        Err(e) => {
            out.push(Finding::error(
                CACHE,
                e.msg,
                "check the directory's permissions",
            ));
            return Vec::new();
        }
    };
    let mut stale = 0;
    let mut unseen = BTreeSet::new();
    for id in &ids {
        match cache::read(&dir, id, "eth0") {
            Ok(Some(loaded)) => {
                let netns = Path::new(&loaded.file().netns);
                // A netns dir this process cannot see (a pod without the
                // host's /run/netns mounted) tells nothing.
                match netns.parent() {
                    Some(parent) if !node.host(parent).is_dir() => {
                        unseen.insert(parent.display().to_string());
                        continue;
                    }
                    None => continue,
                    Some(_) => {}
                }
                if !node.host(netns).exists() {
                    let netns = netns.display();
                    stale += 1;
                    out.push(Finding::warning(
                        CACHE,
                        format!("container {id}: its cache remains but its netns {netns} is gone"),
                        format!("a stopped pod's DEL comes when the runtime removes it; if `crictl pods --id {id}` finds nothing, run its DEL by hand (docs/install.md, \"A stale cache entry\")"),
                    ));
                }
            }
            Ok(None) => {}
            Err(e) => out.push(Finding::error(
                CACHE,
                format!("container {id}: {}", e.msg),
                "its DEL fails until the file is readable: inspect it, then remove it to let DEL fall back to the conf",
            )),
        }
    }
    let temps: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.matches('.').count() >= 2)
        .collect();
    for t in &temps {
        out.push(Finding::warning(
            CACHE,
            format!("{shown}/{t}: a write a crash cut short"),
            "the container's DEL removes it; if that container is gone, remove the file",
        ));
    }
    for d in &unseen {
        out.push(Finding::warning(
            CACHE,
            format!("{d} is not visible here: cache entries in it cannot be checked for stale ones"),
            "run the doctor with the host's / as --host-root (the thick daemon's container mounts it at /hostroot)",
        ));
    }
    if stale == 0 && temps.is_empty() && unseen.is_empty() {
        out.push(Finding::ok(
            CACHE,
            format!("{shown}: {} container(s), none stale", ids.len()),
        ));
    }
    ids
}

/// The container ID a host-local reservation file holds (`<id>\r\n<ifname>`).
fn holder(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let id = text.lines().next()?.trim();
    (!id.is_empty()).then(|| id.to_string())
}

pub fn check_reservations(node: &Node, ours: &Ours, out: &mut Vec<Finding>) {
    let cached: BTreeSet<String> = cache::list(&node.host(&ours.conf.cni_dir))
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut held = 0;
    let mut orphans = 0;
    for data_dir in &node.ipam_data_dirs {
        let Ok(networks) = std::fs::read_dir(node.host(data_dir)) else {
            continue;
        };
        for net in networks
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
        {
            let Ok(files) = std::fs::read_dir(net.path()) else {
                continue;
            };
            for f in files.filter_map(|e| e.ok()) {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.parse::<IpAddr>().is_err() {
                    continue;
                }
                held += 1;
                let Some(id) = holder(&f.path()) else {
                    continue;
                };
                if !cached.contains(&id) {
                    orphans += 1;
                    let shown = data_dir.join(net.file_name()).join(&name);
                    out.push(Finding::warning(
                        RESERVATIONS,
                        format!("{name} of network {} is held by container {id}, which multus has no cache for", net.file_name().to_string_lossy()),
                        format!("if `crictl pods --id {id}` finds nothing, the address leaked: remove {}", shown.display()),
                    ));
                }
            }
        }
    }
    if orphans == 0 {
        let dirs: Vec<String> = node
            .ipam_data_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        out.push(Finding::ok(
            RESERVATIONS,
            format!("{held} host-local reservation(s) in {}, each with a pod multus attached; for whereabouts pools: multusctl ipam reconcile --dry-run", dirs.join(", ")),
        ));
    }
}
