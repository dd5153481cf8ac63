//! Which CNI conf the runtime loads (containerd and CRI-O take the first
//! `.conf`/`.conflist`/`.json` of the conf dir in lexical order), whether
//! it is multus's, and whether multus's cluster network resolves.

use std::path::{Path, PathBuf};

use multus::config::multus::{ClusterNetwork, MultusConf};
use multus::config::resolve::resolve;
use serde_json::{Map, Value};

use super::{Finding, Node};

const CHECK: &str = "runtime conf";
const MASTER: &str = "cluster network";

/// multus's conf as the runtime will hand it over.
pub struct Ours {
    pub conf: MultusConf,
    /// `multus-shim`: thick mode, the daemon's socket dir.
    pub daemon_socket_dir: Option<PathBuf>,
}

fn conf_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| ["conf", "conflist", "json"].contains(&x))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The multus plugin object of a conf or conflist, with the list's `name`
/// and `cniVersion` as the runtime injects them; `None` when the conf is
/// not multus's.
fn multus_plugin(top: &Map<String, Value>) -> Option<Map<String, Value>> {
    let is_ours = |p: &Map<String, Value>| {
        matches!(
            p.get("type").and_then(Value::as_str),
            Some("multus" | "multus-shim")
        )
    };
    let mut plugin = match top.get("plugins") {
        Some(Value::Array(ps)) => ps.first()?.as_object()?.clone(),
        _ => top.clone(),
    };
    if !is_ours(&plugin) {
        return None;
    }
    for key in ["name", "cniVersion"] {
        if let Some(v) = top.get(key) {
            plugin.insert(key.into(), v.clone());
        }
    }
    Some(plugin)
}

pub fn check(node: &Node, out: &mut Vec<Finding>) -> Option<Ours> {
    let dir = node.host(&node.cni_conf_dir);
    let shown = node.cni_conf_dir.display();
    let files = match conf_files(&dir) {
        Ok(f) => f,
        Err(e) => {
            out.push(Finding::error(
                CHECK,
                format!("cannot list {shown}: {e}"),
                "check --cni-conf-dir (the runtime's CNI conf dir) and --host-root",
            ));
            return None;
        }
    };
    let Some(first) = files.first() else {
        out.push(Finding::error(
            CHECK,
            format!("{shown} has no CNI conf: the runtime starts no pod network"),
            "install the node's CNI first, then multus (multusctl install waits for it)",
        ));
        return None;
    };
    let name = first.file_name().unwrap_or_default().to_string_lossy();
    let top: Map<String, Value> = match std::fs::read(first)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(t) => t,
        Err(e) => {
            out.push(Finding::error(
                CHECK,
                format!("the runtime loads {name}, which is not a JSON object: {e}"),
                format!("fix or remove {shown}/{name}; the runtime fails every pod until then"),
            ));
            return None;
        }
    };
    let Some(plugin) = multus_plugin(&top) else {
        let ty = top
            .get("plugins")
            .and_then(|p| p.get(0))
            .unwrap_or(&Value::Object(top.clone()))
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let ours = files.iter().find(|f| {
            std::fs::read(f)
                .ok()
                .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
                .is_some_and(|t| multus_plugin(&t).is_some())
        });
        let (message, fix) = match ours {
            Some(o) => (
                format!(
                    "the runtime loads {name} (type {ty}), which sorts before multus's {}: pods get no secondary networks",
                    o.file_name().unwrap_or_default().to_string_lossy()
                ),
                format!("another CNI wrote {name}; remove or rename it so that multus's conf comes first (the installer writes 00-multus.conf[list])"),
            ),
            None => (
                format!("the runtime loads {name} (type {ty}); there is no multus conf in {shown}"),
                "run the installer (kubectl apply -k deploy/, or multusctl install)".to_string(),
            ),
        };
        out.push(Finding::error(CHECK, message, fix));
        return None;
    };
    let bytes = serde_json::to_vec(&plugin).expect("a map serializes");
    let conf = match MultusConf::parse(&bytes) {
        Ok(c) => c,
        Err(e) => {
            out.push(Finding::error(
                CHECK,
                format!("the runtime loads multus's {name}, but multus refuses it: {}", e.msg),
                "fix the key it names (in the installer's ConfigMap, config.json), then let the installer rewrite the conf",
            ));
            return None;
        }
    };
    let daemon_socket_dir = (plugin.get("type").and_then(Value::as_str) == Some("multus-shim"))
        .then(|| {
            PathBuf::from(
                plugin
                    .get("daemonSocketDir")
                    .and_then(Value::as_str)
                    .unwrap_or("/run/multus/"),
            )
        });
    let others = files
        .iter()
        .skip(1)
        .filter(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("00-multus"))
        })
        .count();
    out.push(Finding::ok(
        CHECK,
        format!(
            "the runtime loads {name}: multus, {} mode",
            if daemon_socket_dir.is_some() {
                "thick"
            } else {
                "thin"
            }
        ),
    ));
    if others > 0 {
        out.push(Finding::warning(
            CHECK,
            format!("{shown} holds {others} more 00-multus conf(s) after {name}; only the first is used"),
            "remove the stale one (an install of the other format or mode left it)",
        ));
    }
    Some(Ours {
        conf,
        daemon_socket_dir,
    })
}

/// The cluster network multus attaches as eth0. A name may also be a NAD
/// in `multusNamespace`, which only the API server can tell.
pub fn check_master(node: &Node, ours: &Ours, out: &mut Vec<Finding>) {
    let reference = match &ours.conf.cluster {
        ClusterNetwork::Reference(r) => r.clone(),
        ClusterNetwork::Delegates(d) => {
            out.push(Finding::ok(
                MASTER,
                format!("static delegates: {}", d[0].name),
            ));
            return;
        }
    };
    let host_ref = if reference.contains('/') {
        node.host(Path::new(&reference)).display().to_string()
    } else {
        reference.clone()
    };
    // The shim conf's paths are the daemon's (deploy/thick mounts the
    // host's conf dir at /host/etc/cni/net.d): the master is then found
    // by its file name in the runtime's conf dir.
    let daemon_path = ours.daemon_socket_dir.is_some() && reference.contains('/');
    let on_host = daemon_path
        .then(|| Path::new(&reference).file_name())
        .flatten()
        .map(|n| node.host(&node.cni_conf_dir).join(n))
        .filter(|p| !node.host(Path::new(&reference)).exists() && p.exists());
    let host_ref = on_host
        .as_ref()
        .map_or(host_ref, |p| p.display().to_string());
    match resolve(&host_ref, &node.host(&ours.conf.conf_dir), "clusterNetwork") {
        Ok(net) => out.push(Finding::ok(
            MASTER,
            match &on_host {
                Some(p) => format!(
                    "{reference} (the daemon's path; on the host {}): network {} ({} plugin(s))",
                    node.cni_conf_dir.join(p.file_name().unwrap_or_default()).display(),
                    net.name,
                    net.plugins.len()
                ),
                None => format!("{reference}: network {} ({} plugin(s))", net.name, net.plugins.len()),
            },
        )),
        Err(e) if !reference.contains('/') && ours.conf.kubeconfig.is_some() => {
            out.push(Finding::warning(
                MASTER,
                format!("{reference} is no conf in {}: every pod needs a NAD {reference} in {} ({})", ours.conf.conf_dir.display(), ours.conf.multus_namespace, e.msg),
                format!("check: kubectl get net-attach-def -n {} {reference}", ours.conf.multus_namespace),
            ))
        }
        Err(e) => out.push(Finding::error(
            MASTER,
            format!("clusterNetwork {reference} does not resolve: {}", e.msg),
            "every ADD fails until it does: restore the node CNI's conf, or let the installer pick the master again",
        )),
    }
}
