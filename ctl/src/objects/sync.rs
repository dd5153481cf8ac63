//! A node's side of WasmPlugin objects: on every change (a watch) and at
//! each resync, every object's module fetched,
//! verified against its sha256, audited and precompiled, and only then
//! placed in the plugin dir (atomically, with its grants beside it); a
//! module whose object is gone removed. What this node placed is recorded
//! in `<pluginDir>/.multusctl-objects.json`, so modules an admin dropped
//! there by hand are never replaced or removed. What the node runs of each
//! object goes into its report (report.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use multus::config::wasm::{grants_path, PluginSettings};
use multus::delegate::wasm::artifact::{self, hex};
use multus::fsutil;
use multus::k8s::client::{Kind, Kube};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::registry::Registries;
use super::report::{PluginState, Reporter};
use super::{configmap_resource, resource, valid_type, ConfigMapSource, Spec};
use crate::compile::{engine, precompile};
use crate::inspect::report as audit;
use crate::install::binaries;

/// What this node placed from objects: type to sha256.
pub const RECORD: &str = ".multusctl-objects.json";

/// Where this node keeps plugins, and who it is.
pub struct Target {
    pub node: String,
    /// Where the ConfigMaps are.
    pub namespace: String,
    /// As this process sees them (under the host root).
    pub plugin_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// The plugin dir as multus sees it (the artifact index's key).
    pub host_plugin_dir: PathBuf,
    /// The registries an image source may name.
    pub registries: Registries,
    /// Modules whose fetch or placing failed, not fetched again before
    /// their time.
    pub held: std::cell::RefCell<Held>,
}

/// A module that failed (type, digest, source) is not fetched again on
/// every pass: a refused module from a registry would otherwise be
/// downloaded by every node at every pass and every other object's
/// change. It is tried again after 30 s, doubling to 10 min; a new digest
/// or source is another module, tried at once. A process that starts
/// (`--once`, a restart) tries at once.
#[derive(Debug, Default)]
pub struct Held(
    BTreeMap<(String, String, String), (std::time::Instant, std::time::Duration, String)>,
);

impl Held {
    const FIRST: std::time::Duration = std::time::Duration::from_secs(30);
    const MOST: std::time::Duration = std::time::Duration::from_secs(600);

    /// The error still held for `key`, if its time has not come: the
    /// same text, so the report is not rewritten for it.
    fn holds(&self, key: &(String, String, String)) -> Option<String> {
        let (until, _, e) = self.0.get(key)?;
        (std::time::Instant::now() < *until).then(|| e.clone())
    }

    fn failed(&mut self, key: (String, String, String), error: &str) {
        let wait = match self.0.get(&key) {
            Some((_, last, _)) => (*last * 2).min(Self::MOST),
            None => Self::FIRST,
        };
        self.0.insert(
            key,
            (std::time::Instant::now() + wait, wait, error.to_string()),
        );
    }
}

/// What one pass did, per type.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub placed: Vec<String>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
    /// (type, why): the node keeps what it had.
    pub refused: Vec<(String, String)>,
    /// The list's resourceVersion: where a watch for the next change starts.
    pub resource_version: Option<String>,
    /// Each listed object's `metadata.generation`: a watch event with the
    /// same one changed only the status.
    pub generations: BTreeMap<String, i64>,
    /// The report's write failed: the next pass comes soon, not at the
    /// next change (nothing else wakes the node).
    pub unreported: bool,
}

fn digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn read_record(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read(dir.join(RECORD))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_record(t: &Target, record: &BTreeMap<String, String>) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(record).expect("a map serializes");
    let p = t.plugin_dir.join(RECORD);
    fsutil::write_atomic(&p, &bytes, 0o644).map_err(|e| format!("{}: {e}", p.display()))
}

/// A module being placed is written to `.<type>.wasm.<random>` first; one
/// left by a sync killed mid-write (up to a module's size each time) is
/// removed once it is older than any pass takes.
fn remove_stale_temps(dir: &Path) {
    const STALE: std::time::Duration = std::time::Duration::from_secs(600);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with('.') && name.contains(".wasm.");
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > STALE);
        if ours && old && e.file_type().is_ok_and(|f| f.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn file_digest(p: &Path) -> Option<String> {
    binaries::digest(p).ok()
}

fn grants_bytes(settings: &PluginSettings) -> Vec<u8> {
    serde_json::to_vec_pretty(settings).expect("settings serialize")
}

/// The module bytes of `spec`, from its source, checked against its
/// digest.
fn fetch(t: &Target, kube: &Kube, spec: &Spec) -> Result<Vec<u8>, String> {
    let check = |bytes: Vec<u8>| {
        let got = digest(&bytes);
        if !got.eq_ignore_ascii_case(&spec.sha256) {
            return Err(format!(
                "{} holds a module with sha256 {got}, not the object's {}",
                spec.source.describe(&t.namespace),
                spec.sha256
            ));
        }
        Ok(bytes)
    };
    match (&spec.source.config_map, &spec.source.image) {
        // At a push every node reads the same ConfigMap at once, and a
        // live read is an etcd read of the whole module per node: the API
        // server's cache first. It may be behind the push: bytes of
        // another digest (or none) are read again live.
        (Some(cm), _) => {
            let res = configmap_resource();
            if let Ok(obj) = kube.get_object_cached(&res, &t.namespace, &cm.name) {
                if let Ok(bytes) = module_of(&obj.data, &t.namespace, cm).and_then(check) {
                    return Ok(bytes);
                }
            }
            let obj = kube
                .get_object(&res, &t.namespace, &cm.name)
                .map_err(|e| e.to_string())?;
            check(module_of(&obj.data, &t.namespace, cm)?)
        }
        (None, Some(image)) => check(t.registries.pull(image, &spec.sha256)?),
        (None, None) => Err("spec.source: no configMap and no image".into()),
    }
}

/// The module a ConfigMap's data holds.
fn module_of(data: &Value, namespace: &str, cm: &ConfigMapSource) -> Result<Vec<u8>, String> {
    let encoded = data["binaryData"][&cm.key].as_str().ok_or_else(|| {
        format!(
            "ConfigMap {namespace}/{} has no binaryData key {:?}",
            cm.name, cm.key
        )
    })?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| {
            format!(
                "ConfigMap {namespace}/{} binaryData {:?}: {e}",
                cm.name, cm.key
            )
        })
}

/// Places `bytes` as `<ty>.wasm` once a role accepts it and it is
/// precompiled; its grants first, pinned to its digest, so that for the
/// instant between the two renames a call fails on the pin rather than
/// running a module under another's grants.
fn place(t: &Target, ty: &str, bytes: &[u8], settings: &PluginSettings) -> Result<(), String> {
    let engine = engine()?;
    let final_path = t.plugin_dir.join(format!("{ty}.wasm"));
    let host_path = t.host_plugin_dir.join(format!("{ty}.wasm"));
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{ty}.wasm."))
        .tempfile_in(&t.plugin_dir)
        .map_err(|e| format!("a temp file in {}: {e}", t.plugin_dir.display()))?;
    std::fs::write(tmp.path(), bytes).map_err(|e| format!("{}: {e}", tmp.path().display()))?;
    let pre = precompile(&engine, tmp.path(), &host_path, &t.cache_dir)?;
    let verdict = audit(
        &engine,
        &final_path,
        pre.size,
        pre.sha256.clone(),
        &pre.component,
    );
    if !verdict.accepted {
        let why: Vec<String> = verdict
            .roles
            .iter()
            .map(|r| format!("{}: {}", r.role, r.refused.join(", ")))
            .collect();
        return Err(format!("no role accepts the module ({})", why.join("; ")));
    }
    let grants = grants_path(&t.plugin_dir, ty);
    fsutil::write_atomic(&grants, &grants_bytes(settings), 0o644)
        .map_err(|e| format!("{}: {e}", grants.display()))?;
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(|e| format!("{}: {e}", tmp.path().display()))?;
    tmp.persist(&final_path)
        .map_err(|e| format!("{}: {e}", final_path.display()))?;
    // Indexed again under the placed file's stamp (the rename changed it),
    // from the artifact just written: no compile.
    precompile(&engine, &final_path, &host_path, &t.cache_dir).map(drop)
}

fn remove(t: &Target, ty: &str, sha: &str) -> Result<bool, String> {
    let module = t.plugin_dir.join(format!("{ty}.wasm"));
    // One changed since it was placed is an admin's now: left alone.
    if file_digest(&module).is_some_and(|d| d == sha) {
        std::fs::remove_file(&module).map_err(|e| format!("{}: {e}", module.display()))?;
    }
    let grants = grants_path(&t.plugin_dir, ty);
    match std::fs::remove_file(&grants) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(format!("{}: {e}", grants.display())),
    }
}

/// One object: placed, already in place, or refused (the node keeps what
/// it had); the digest it now runs.
fn one(
    kube: &Kube,
    t: &Target,
    ty: &str,
    obj: &Value,
    record: &mut BTreeMap<String, String>,
    pass: &mut Pass,
) -> Result<String, String> {
    valid_type(ty)?;
    let spec = Spec::from_object(obj)?;
    let settings = spec.settings()?;
    let want = spec.sha256.to_ascii_lowercase();
    let module = t.plugin_dir.join(format!("{ty}.wasm"));
    let grants = grants_path(&t.plugin_dir, ty);
    // Placing indexed it: unchanged since, it is not read and hashed on
    // every pass.
    let have = artifact::indexed_digest(
        &t.cache_dir,
        &t.host_plugin_dir.join(format!("{ty}.wasm")),
        &module,
    )
    .or_else(|| file_digest(&module));
    if have.is_some() && !record.contains_key(ty) {
        return Err(format!(
            "{} was not placed by a WasmPlugin object: remove it (or the object) to let one manage {ty}",
            module.display()
        ));
    }
    if have.as_deref() == Some(want.as_str())
        && std::fs::read(&grants).ok() == Some(grants_bytes(&settings))
    {
        record.insert(ty.into(), want.clone());
        pass.unchanged.push(ty.into());
        return Ok(want);
    }
    let key = (
        ty.to_string(),
        want.clone(),
        spec.source.describe(&t.namespace),
    );
    if let Some(e) = t.held.borrow().holds(&key) {
        return Err(e);
    }
    let bytes =
        fetch(t, kube, &spec).inspect_err(|e| t.held.borrow_mut().failed(key.clone(), e))?;
    // Recorded before it is placed: a sync killed between the rename and
    // the end of the pass (a rolling update, an OOM) must still know the
    // module as its own, not refuse it forever as an admin's.
    let previous = record.insert(ty.into(), want.clone());
    write_record(t, record)?;
    if let Err(e) = place(t, ty, &bytes, &settings) {
        match previous {
            Some(p) => record.insert(ty.into(), p),
            None => record.remove(ty),
        };
        write_record(t, record)?;
        t.held.borrow_mut().failed(key, &e);
        return Err(e);
    }
    t.held.borrow_mut().0.remove(&key);
    pass.placed.push(ty.into());
    Ok(want)
}

/// One pass over every WasmPlugin object. An API error listing them
/// changes nothing on the node.
pub fn sync_once(kube: &Kube, t: &Target, reporter: &mut Reporter) -> Result<Pass, String> {
    let list = match kube.list_objects(&resource(), "") {
        Ok(l) => l,
        Err(e) if e.kind == Kind::NotFound => {
            return Err(format!(
                "{e}: the WasmPlugin CRD is not installed (kubectl apply -k deploy/crd)"
            ))
        }
        Err(e) => return Err(e.to_string()),
    };
    std::fs::create_dir_all(&t.plugin_dir)
        .map_err(|e| format!("{}: {e}", t.plugin_dir.display()))?;
    remove_stale_temps(&t.plugin_dir);
    let mut record = read_record(&t.plugin_dir);
    let before = record.clone();
    let mut pass = Pass {
        resource_version: list.metadata.resource_version.clone(),
        generations: list
            .items
            .iter()
            .filter_map(|o| Some((o.metadata.name.clone()?, o.metadata.generation?)))
            .collect(),
        ..Pass::default()
    };
    let mut seen = Vec::new();
    let mut states = Vec::new();
    for obj in &list.items {
        let Some(ty) = obj.metadata.name.clone() else {
            continue;
        };
        seen.push(ty.clone());
        let value = serde_json::to_value(obj).map_err(|e| e.to_string())?;
        states.push(match one(kube, t, &ty, &value, &mut record, &mut pass) {
            Ok(sha) => PluginState::new(&ty, Some(sha), None),
            Err(why) => {
                tracing::warn!(plugin = %ty, error = %why, "WasmPlugin refused; this node keeps what it had");
                pass.refused.push((ty.clone(), why.clone()));
                let running = record.get(&ty).cloned();
                PluginState::new(&ty, running, Some(why))
            }
        });
    }
    for (ty, sha) in before.iter().filter(|(ty, _)| !seen.contains(ty)) {
        match remove(t, ty, sha) {
            Ok(_) => {
                record.remove(ty);
                pass.removed.push(ty.clone());
            }
            Err(e) => pass.refused.push((ty.clone(), e)),
        }
    }
    if record != read_record(&t.plugin_dir) {
        write_record(t, &record)?;
    }
    if let Err(e) = reporter.report(kube, states) {
        tracing::warn!(node = %t.node, error = %e, "cannot write this node's WasmPluginNode");
        pass.unreported = true;
    }
    Ok(pass)
}
