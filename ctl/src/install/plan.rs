//! What the host should hold, computed from the installer's inputs, and
//! bringing the host there. Writing only what differs keeps every tick of
//! the watching installer free of side effects on a settled node.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::conf::{self, Inputs};
use super::kubeconfig::{self, ServiceAccount};
use super::settings;
use super::{InstallError, MasterMode, Options};
use multus::config::master::{self, Master, CONF, CONFLIST};
use multus::config::multus::DEFAULT_CONF_DIR;
use multus::fsutil;

/// Upstream's place for the kubeconfig, under the CNI conf dir.
pub const KUBECONFIG: &str = "multus.d/multus.kubeconfig";
/// The host copy of the service-account token the kubeconfig reads.
pub const TOKEN: &str = "multus.d/token";
/// In `move` mode: the file name of the master that was moved.
pub const MOVED_MASTER: &str = "multus.d/moved-master";

/// `move` mode: the master found in the CNI conf dir, and where it goes.
pub type Move = (PathBuf, PathBuf);

/// One file the host should hold.
#[derive(Debug, Clone)]
pub struct Desired {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub mode: u32,
    pub what: &'static str,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub master: Master,
    pub move_master: Option<Move>,
    pub files: Vec<Desired>,
    /// The conf of the other format, left from a master of another version.
    pub stale: Vec<PathBuf>,
    /// The NAD to create for the master: (namespace, name).
    pub nad: Option<(String, String)>,
    /// Where the multus conf goes.
    pub conf_path: PathBuf,
    /// Confs the runtime would pick before multus's (it takes the first
    /// `.conf`/`.conflist`/`.json` in lexical order).
    pub shadowed_by: Vec<String>,
}

/// The multus conf keys from `--config` and the flags.
pub fn keys(opts: &Options) -> Result<Map<String, Value>, InstallError> {
    let mut keys = match &opts.config {
        Some(p) => settings::read_config(p)?,
        None => Map::new(),
    };
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| Value::from(p.display().to_string()));
    settings::apply_flags(
        &mut keys,
        &[
            (
                "namespaceIsolation",
                opts.namespace_isolation.map(Value::from),
            ),
            (
                "globalNamespaces",
                opts.global_namespaces.clone().map(Value::from),
            ),
            (
                "multusNamespace",
                opts.multus_namespace.clone().map(Value::from),
            ),
            ("logLevel", opts.multus_log_level.clone().map(Value::from)),
            ("logFile", opts.multus_log_file.clone().map(Value::from)),
            ("logToStderr", opts.multus_log_to_stderr.map(Value::from)),
            (
                "nodeName",
                opts.node_name
                    .clone()
                    .filter(|n| !n.is_empty())
                    .map(Value::from),
            ),
            (
                "readinessindicatorfile",
                path(&opts.readiness_indicator_file),
            ),
        ],
    );
    Ok(keys)
}

fn host_str(p: &Path) -> String {
    p.display().to_string()
}

/// Where `confDir` points (host path).
fn multus_conf_dir(keys: &Map<String, Value>) -> PathBuf {
    settings::string(keys, "confDir")
        .unwrap_or(DEFAULT_CONF_DIR)
        .into()
}

/// Finds the master; `None` while there is none.
fn find_master(
    opts: &Options,
    keys: &Map<String, Value>,
) -> Result<Option<(Master, Option<Move>)>, InstallError> {
    let net_d = opts.host(&opts.cni_conf_dir);
    let found = master::find(&net_d, opts.master_cni_file.as_deref())?;
    match opts.master_mode {
        MasterMode::Keep => found.map(|p| Ok((master::read(&p)?, None))).transpose(),
        MasterMode::Move => {
            let target_dir = opts.host(&multus_conf_dir(keys));
            if let Some(p) = found {
                let m = master::read(&p)?;
                let to = target_dir.join(&m.file_name);
                return Ok(Some((m, Some((p, to)))));
            }
            let state = net_d.join(MOVED_MASTER);
            match std::fs::read_to_string(&state) {
                Ok(name) => {
                    let p = target_dir.join(name.trim());
                    Ok(Some((master::read(&p)?, None)))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(InstallError::io("reading", &state, e)),
            }
        }
    }
}

/// Computes what the host should hold. `var` reads the environment (the
/// in-cluster API address). `None` while no master conf exists.
pub fn plan(
    opts: &Options,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Plan>, InstallError> {
    let mut keys = keys(opts)?;
    let Some((master, move_master)) = find_master(opts, &keys)? else {
        return Ok(None);
    };
    let net_d = opts.host(&opts.cni_conf_dir);
    let mut files = Vec::new();

    let generated_kubeconfig = if settings::string(&keys, "kubeconfig").is_some() {
        None
    } else {
        let sa = ServiceAccount::read(&opts.serviceaccount_dir)?;
        let server = kubeconfig::server(var(kubeconfig::ENV_HOST), var(kubeconfig::ENV_PORT))?;
        let token_host = opts.cni_conf_dir.join(TOKEN);
        let kubeconfig_host = opts.cni_conf_dir.join(KUBECONFIG);
        files.push(Desired {
            path: net_d.join(TOKEN),
            bytes: sa.token,
            mode: 0o600,
            what: "service-account token",
        });
        files.push(Desired {
            path: net_d.join(KUBECONFIG),
            bytes: kubeconfig::render(&server, &sa.ca, &token_host),
            mode: 0o600,
            what: "kubeconfig",
        });
        Some(host_str(&kubeconfig_host))
    };

    let wants_nad = opts.master_mode == MasterMode::Move || opts.master_nad;
    let cluster_network = match opts.master_mode {
        MasterMode::Keep => host_str(&opts.cni_conf_dir.join(&master.file_name)),
        MasterMode::Move => master.net.name.clone(),
    };
    if opts.master_mode == MasterMode::Keep && wants_nad && !keys.contains_key("confDir") {
        // The NAD has no config of its own: multus finds the network by
        // name in confDir, which must then be where the master stays.
        keys.insert("confDir".into(), host_str(&opts.cni_conf_dir).into());
    }
    let name = if opts.override_network_name {
        master.net.name.clone()
    } else {
        conf::DEFAULT_NAME.to_string()
    };
    let rendered = conf::render(&Inputs {
        master: &master,
        cluster_network: &cluster_network,
        name: &name,
        kubeconfig: generated_kubeconfig.as_deref(),
        keys: &keys,
    })?;
    let conf_path = net_d.join(rendered.file_name);
    files.push(Desired {
        path: conf_path.clone(),
        bytes: rendered.bytes,
        mode: 0o600,
        what: "multus conf",
    });
    let other = if rendered.file_name == CONF {
        CONFLIST
    } else {
        CONF
    };
    let stale = vec![net_d.join(other)];
    if opts.master_mode == MasterMode::Move {
        files.push(Desired {
            path: net_d.join(MOVED_MASTER),
            bytes: format!("{}\n", master.file_name).into_bytes(),
            mode: 0o600,
            what: "moved master record",
        });
    }
    let shadowed_by = shadowing(&net_d, rendered.file_name, &move_master);
    let nad = wants_nad.then(|| {
        let ns = settings::string(&keys, "multusNamespace").unwrap_or("kube-system");
        (ns.to_string(), master.net.name.clone())
    });
    Ok(Some(Plan {
        master,
        move_master,
        files,
        stale,
        nad,
        conf_path,
        shadowed_by,
    }))
}

/// Conf files in `net_d` sorting before `ours`, but a master about to be
/// moved away.
fn shadowing(net_d: &Path, ours: &str, moving: &Option<Move>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(net_d) else {
        return Vec::new();
    };
    let moving = moving.as_ref().and_then(|(from, _)| from.file_name());
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| Some(e.file_name().as_os_str()) != moving)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            [".conf", ".conflist", ".json"]
                .iter()
                .any(|x| n.ends_with(x))
                && n.as_str() < ours
        })
        .collect();
    found.sort();
    found
}

/// Why `d` differs from the host, or `None` when it does not.
fn difference(d: &Desired) -> Option<&'static str> {
    match std::fs::read(&d.path) {
        Err(_) => Some("missing"),
        Ok(b) if b != d.bytes => Some("changed"),
        Ok(_) => match std::fs::metadata(&d.path) {
            Ok(m) if m.permissions().mode() & 0o777 != d.mode => Some("mode"),
            _ => None,
        },
    }
}

/// Why a conf sorting before multus's keeps multus from running.
pub fn shadow_warning(name: &str, conf: &Path) -> String {
    format!(
        "{name} sorts before {}: the container runtime uses it instead of multus (rename it, or pick it as master)",
        conf.display()
    )
}

/// The permission bits of `p`, 0644 (what CNI installers write) if unknown.
fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644)
}

/// Files of `dir` named like `conf` plus a suffix: what another CNI left
/// when it renamed multus's conf away (cilium: `.cilium_bak`).
fn renamed_copies(conf: &Path) -> Vec<String> {
    let (Some(dir), Some(name)) = (conf.parent(), conf.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() > name.len() && n.starts_with(name) && !n.ends_with(".tmp"))
        .collect();
    found.sort();
    found
}

/// Brings the host to `plan`, or with `dry` only lists what differs.
/// Returns one line per change.
pub fn apply(plan: &Plan, dry: bool) -> Result<Vec<String>, InstallError> {
    let mut changes = Vec::new();
    if dry {
        changes.extend(
            plan.shadowed_by
                .iter()
                .map(|n| shadow_warning(n, &plan.conf_path)),
        );
    }
    if let Some((from, to)) = &plan.move_master {
        changes.push(format!(
            "move master {} to {}",
            from.display(),
            to.display()
        ));
        if !dry {
            // A copy, not a rename: the two dirs may be different mounts.
            fsutil::write_atomic(to, &plan.master.bytes, mode_of(from))
                .map_err(|e| InstallError::io("writing the moved master", to, e))?;
        }
    }
    for d in &plan.files {
        let Some(why) = difference(d) else { continue };
        if why == "missing" && d.path == plan.conf_path {
            let copies = renamed_copies(&d.path);
            if !copies.is_empty() {
                tracing::warn!(
                    conf = %d.path.display(),
                    renamed = ?copies,
                    "multus's conf was renamed by another CNI (cilium: set cni-exclusive to false); restoring it"
                );
            }
        }
        changes.push(format!("write {} ({}, {why})", d.path.display(), d.what));
        if !dry {
            fsutil::write_atomic(&d.path, &d.bytes, d.mode)
                .map_err(|e| InstallError::io(&format!("writing the {}", d.what), &d.path, e))?;
        }
    }
    if let Some((from, _)) = &plan.move_master {
        if !dry {
            std::fs::remove_file(from)
                .map_err(|e| InstallError::io("removing the moved master", from, e))?;
        }
    }
    for p in &plan.stale {
        if p.exists() {
            changes.push(format!("remove {}", p.display()));
            if !dry {
                std::fs::remove_file(p).map_err(|e| InstallError::io("removing", p, e))?;
            }
        }
    }
    Ok(changes)
}

/// Undoes the install on exit: removes multus's conf (the runtime then
/// reports the node's network not ready instead of running pods without
/// multus) and moves a moved master back.
pub fn cleanup(opts: &Options) -> Result<Vec<String>, InstallError> {
    let net_d = opts.host(&opts.cni_conf_dir);
    let mut done = Vec::new();
    for name in [CONF, CONFLIST] {
        let p = net_d.join(name);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| InstallError::io("removing", &p, e))?;
            done.push(format!("removed {}", p.display()));
        }
    }
    let state = net_d.join(MOVED_MASTER);
    if let Ok(name) = std::fs::read_to_string(&state) {
        let name = name.trim();
        let keys = keys(opts)?;
        let moved = opts.host(&multus_conf_dir(&keys)).join(name);
        let back = net_d.join(name);
        if back.exists() {
            tracing::warn!(master = %back.display(), "a master conf of that name is back already; leaving the moved copy");
        } else if moved.exists() {
            fsutil::copy_atomic(&moved, &back, mode_of(&moved))
                .map_err(|e| InstallError::io("restoring the master to", &back, e))?;
            std::fs::remove_file(&moved).map_err(|e| InstallError::io("removing", &moved, e))?;
            done.push(format!(
                "moved master {} back to {}",
                moved.display(),
                back.display()
            ));
        }
        std::fs::remove_file(&state).map_err(|e| InstallError::io("removing", &state, e))?;
    }
    Ok(done)
}
