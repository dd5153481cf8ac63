//! Where wasm plugins come from and what each may do: `wasmPluginDir`,
//! `wasmCacheDir` and the per-plugin `wasmPlugins` settings of the multus conf.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::keys::FoldedObject;
use crate::boundary::{Bounds, PluginType};
use crate::cni::CniError;

pub const DEFAULT_PLUGIN_DIR: &str = "/etc/cni/multus/plugins";
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni/multus/wasm-cache";

/// Limits and grants of one plugin (`wasmPlugins.<type>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginSettings {
    /// Refuse the module unless its sha256 (hex) is this.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Linear memory cap.
    #[serde(default = "default_memory")]
    pub memory_limit_mib: u32,
    /// Wall-clock budget of one export call (epoch deadline); unset,
    /// [`DEFAULT_TIMEOUT_MS`], or [`DEFAULT_CLUSTER_TIMEOUT_MS`] for an
    /// IPAM module with cluster access.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Budget of one host call (netlink, sysctl, store).
    #[serde(default = "default_host_call")]
    pub host_call_timeout_ms: u64,
    /// Budget of one cluster call, within what is left of `timeoutMs`.
    #[serde(default = "default_cluster_call")]
    pub cluster_call_timeout_ms: u64,
    /// May act in the host network namespace.
    #[serde(default)]
    pub host_netns: bool,
    /// API groups an IPAM module's `cluster` calls may reach (default:
    /// whereabouts'); empty denies the cluster.
    #[serde(default = "default_cluster_groups")]
    pub cluster_groups: Vec<String>,
    /// The namespace of those calls; default the kubeconfig context's, else
    /// `kube-system` (where whereabouts keeps its pools).
    #[serde(default)]
    pub cluster_namespace: Option<String>,
}

fn default_memory() -> u32 {
    64
}
/// A call's budget when it has no cluster access.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// A cluster IPAM call's budget: room for a few cluster calls at their
/// full budget (a fresh API server's first write of a kind took 2.3 s on a
/// real one) and the conflict retries of a busy pool.
pub const DEFAULT_CLUSTER_TIMEOUT_MS: u64 = 30_000;

fn default_host_call() -> u64 {
    2000
}
/// A cold API server is normal (its first write of a CRD kind sets up the
/// quota evaluator), so a cluster call gets seconds, not the kernel's budget;
/// a dead one refuses connections at once and is reported at once.
fn default_cluster_call() -> u64 {
    10_000
}
fn default_cluster_groups() -> Vec<String> {
    vec!["whereabouts.cni.cncf.io".into()]
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            sha256: None,
            memory_limit_mib: default_memory(),
            timeout_ms: None,
            host_call_timeout_ms: default_host_call(),
            cluster_call_timeout_ms: default_cluster_call(),
            host_netns: false,
            cluster_groups: default_cluster_groups(),
            cluster_namespace: None,
        }
    }
}

impl PluginSettings {
    /// The call's budget; `cluster`: the call has cluster access.
    pub fn timeout(&self, cluster: bool) -> Duration {
        let default = if cluster {
            DEFAULT_CLUSTER_TIMEOUT_MS
        } else {
            DEFAULT_TIMEOUT_MS
        };
        Duration::from_millis(self.timeout_ms.unwrap_or(default))
    }
    pub fn cluster_call_timeout(&self) -> Duration {
        Duration::from_millis(self.cluster_call_timeout_ms)
    }
    pub fn host_call_timeout(&self) -> Duration {
        Duration::from_millis(self.host_call_timeout_ms)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WasmConf {
    pub plugin_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub plugins: BTreeMap<String, PluginSettings>,
    /// multus's own kubeconfig: the last resort of a module's cluster calls.
    pub kubeconfig: Option<PathBuf>,
    /// What configs may name on the host.
    pub bounds: Bounds,
    /// `nodeName`: the Kubernetes node this is, as the installer wrote it
    /// (the kubelet's node name, which need not be the host name).
    pub node_name: Option<String>,
}

impl Default for WasmConf {
    fn default() -> Self {
        Self {
            plugin_dir: DEFAULT_PLUGIN_DIR.into(),
            cache_dir: DEFAULT_CACHE_DIR.into(),
            plugins: BTreeMap::new(),
            kubeconfig: None,
            bounds: Bounds::default(),
            node_name: None,
        }
    }
}

impl WasmConf {
    pub fn parse(o: &FoldedObject) -> Result<Self, CniError> {
        let d = Self::default();
        Ok(Self {
            plugin_dir: o
                .get::<String>("wasmPluginDir")?
                .filter(|s| !s.is_empty())
                .map_or(d.plugin_dir, PathBuf::from),
            cache_dir: o
                .get::<String>("wasmCacheDir")?
                .filter(|s| !s.is_empty())
                .map_or(d.cache_dir, PathBuf::from),
            plugins: o.get("wasmPlugins")?.unwrap_or_default(),
            kubeconfig: o
                .get::<String>("kubeconfig")?
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            bounds: Bounds::parse(o)?,
            node_name: o.get::<String>("nodeName")?.filter(|s| !s.is_empty()),
        })
    }

    /// The module for plugin `ty`, if one is installed.
    pub fn module(&self, ty: &PluginType) -> Option<PathBuf> {
        let p = self.plugin_dir.join(format!("{ty}.wasm"));
        p.is_file().then_some(p)
    }

    /// Where a WasmPlugin object's grants for `ty` are placed, beside its
    /// module (written by `multusctl plugin sync`, always with the module's
    /// sha256 as the pin, so they never apply to another module).
    pub fn grants_path(&self, ty: &PluginType) -> PathBuf {
        grants_path(&self.plugin_dir, ty)
    }

    /// The grants and limits of plugin `ty`: the conf's `wasmPlugins.<ty>`
    /// or a WasmPlugin object's; a type granted by both, differently, is
    /// refused rather than one silently winning.
    pub fn settings(&self, ty: &PluginType) -> Result<PluginSettings, String> {
        let path = self.grants_path(ty);
        let object = match std::fs::read(&path) {
            Ok(b) => Some(
                serde_json::from_slice::<PluginSettings>(&b)
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        match (self.plugins.get(ty.as_str()), object) {
            (Some(conf), Some(object)) if *conf != object => Err(format!(
                "wasmPlugins.{ty} in the multus conf and the WasmPlugin object's grants ({}) disagree: grant {ty} in one place",
                path.display()
            )),
            (_, Some(object)) => Ok(object),
            (conf, None) => Ok(conf.cloned().unwrap_or_default()),
        }
    }
}

/// Where a WasmPlugin object's grants for `ty` are in `plugin_dir`.
pub fn grants_path(plugin_dir: &Path, ty: &str) -> PathBuf {
    plugin_dir.join(format!("{ty}.grants.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(s: &str) -> PluginType {
        PluginType::parse(s, "type").unwrap()
    }

    #[test]
    fn defaults_and_settings() {
        let o = FoldedObject::parse(br#"{"WasmPluginDir":"/p","wasmPlugins":{"tuning":{"sha256":"ab","memoryLimitMib":8,"hostNetns":true}}}"#, "c").unwrap();
        let w = WasmConf::parse(&o).unwrap();
        assert_eq!(w.plugin_dir, PathBuf::from("/p"));
        assert_eq!(w.cache_dir, PathBuf::from(DEFAULT_CACHE_DIR));
        let t = w.settings(&ty("tuning")).unwrap();
        assert_eq!(t.sha256.as_deref(), Some("ab"));
        assert_eq!(t.memory_limit_mib, 8);
        assert!(t.host_netns);
        assert_eq!(t.timeout(false), Duration::from_millis(5000));
        assert_eq!(t.timeout(true), Duration::from_millis(30_000));
        assert_eq!(t.cluster_call_timeout(), Duration::from_millis(10_000));
        assert_eq!(w.settings(&ty("other")).unwrap(), PluginSettings::default());
    }

    #[test]
    fn an_objects_grants_apply_and_a_conflicting_conf_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let conf = |extra: &str| {
            let s = format!(r#"{{"wasmPluginDir":"{}"{extra}}}"#, d.path().display());
            WasmConf::parse(&FoldedObject::parse(s.as_bytes(), "c").unwrap()).unwrap()
        };
        let w = conf("");
        std::fs::write(
            w.grants_path(&ty("tuning")),
            r#"{"sha256":"ab","hostNetns":true}"#,
        )
        .unwrap();
        let t = w.settings(&ty("tuning")).unwrap();
        assert_eq!((t.sha256.as_deref(), t.host_netns), (Some("ab"), true));
        // The same grants in the conf are no conflict; other ones are.
        let same = conf(r#","wasmPlugins":{"tuning":{"sha256":"ab","hostNetns":true}}"#);
        assert_eq!(same.settings(&ty("tuning")).unwrap(), t);
        let other = conf(r#","wasmPlugins":{"tuning":{"hostNetns":false}}"#);
        let e = other.settings(&ty("tuning")).unwrap_err();
        assert!(
            e.contains("wasmPlugins.tuning") && e.contains("tuning.grants.json"),
            "{e}"
        );
        // A grants file that is not PluginSettings names itself.
        std::fs::write(w.grants_path(&ty("tuning")), r#"{"hostNet":true}"#).unwrap();
        assert!(w
            .settings(&ty("tuning"))
            .unwrap_err()
            .contains("tuning.grants.json"));
    }

    #[test]
    fn unknown_setting_is_an_error_naming_it() {
        let o =
            FoldedObject::parse(br#"{"wasmPlugins":{"t":{"memLimit":1}}}"#, "multus conf").unwrap();
        let e = WasmConf::parse(&o).unwrap_err();
        assert!(
            e.msg.contains("wasmPlugins") && e.msg.contains("memLimit"),
            "{}",
            e.msg
        );
    }
}
