//! The multus conf read from stdin (upstream `NetConf`), with upstream defaults.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::keys::FoldedObject;
use super::kube::KubeConf;
use super::netconf::NetworkConfig;
use super::wasm::WasmConf;
use crate::cni::{version, CniError, Code};

pub const DEFAULT_CONF_DIR: &str = "/etc/cni/multus/net.d";
pub const DEFAULT_CNI_DIR: &str = "/var/lib/cni/multus";
pub const DEFAULT_BIN_DIR: &str = "/opt/cni/bin";
/// Where libcni caches the results the container runtime's DEL reads.
pub const LIBCNI_CACHE_DIR: &str = "/var/lib/cni/results";

/// Every key of the multus conf this implementation reads (the table of
/// docs/configuration.md), in its canonical spelling.
pub const KEYS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "capabilities",
    "clusterNetwork",
    "delegates",
    "defaultNetworks",
    "confDir",
    "cniDir",
    "binDir",
    "logFile",
    "logLevel",
    "logToStderr",
    "readinessindicatorfile",
    "systemNamespaces",
    "kubeconfig",
    "multusNamespace",
    "namespaceIsolation",
    "globalNamespaces",
    "networksAnnotations",
    "networkStatusAnnotation",
    "networkStatusRequired",
    "kubeRequestTimeoutMs",
    "podWaitMs",
    "podResourcesSocket",
    "deviceInfoDir",
    "annotationMappers",
    "runtimeConfig",
    "wasmPluginDir",
    "wasmCacheDir",
    "wasmPlugins",
    "storeRoots",
    "configFileRoots",
    "kubeconfigAllowlist",
    "nadPluginTypes",
    "nodeName",
];

/// Upstream multus conf keys this implementation does not act on, and what
/// to do instead: a hand-written conf that sets one is told so in the log
/// rather than silently getting less than it asked for.
pub const UNIMPLEMENTED: &[(&str, &str)] = &[
    (
        "auxiliaryCNIChainName",
        "no auxiliary passthru chain is built: add those plugins to the cluster network's own conflist",
    ),
    (
        "logOptions",
        "logFile is not rotated by multus: rotate it with the node's logrotate (multus opens it per call, in append mode)",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    /// Upstream's `verbose`; the TKE variant's `info` is the same level.
    Verbose,
    Error,
    Panic,
}

impl LogLevel {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "debug" => Self::Debug,
            "verbose" | "info" => Self::Verbose,
            "error" => Self::Error,
            "panic" => Self::Panic,
            _ => return None,
        })
    }
}

/// Where the cluster default network comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterNetwork {
    /// `clusterNetwork`: a network name in `confDir`, or a file or directory path.
    Reference(String),
    /// The static `delegates` list; `[0]` is the cluster network.
    Delegates(Vec<NetworkConfig>),
}

#[derive(Debug, Clone)]
pub struct MultusConf {
    pub name: String,
    /// Negotiated from `cniVersion` and `cniVersions`: what multus prints.
    pub cni_version: String,
    pub cluster: ClusterNetwork,
    pub default_networks: Vec<String>,
    pub conf_dir: PathBuf,
    pub cni_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub log_file: Option<PathBuf>,
    pub log_level: LogLevel,
    pub log_to_stderr: bool,
    pub readiness_indicator_file: Option<PathBuf>,
    pub system_namespaces: Vec<String>,
    pub multus_namespace: String,
    pub namespace_isolation: bool,
    pub global_namespaces: Vec<String>,
    pub kubeconfig: Option<PathBuf>,
    /// Capability args the container runtime filled in.
    pub runtime_config: Map<String, Value>,
    /// GC's `cni.dev/valid-attachments` (or the legacy `cni.dev/attachments`).
    pub valid_attachments: Option<Vec<Attachment>>,
    pub wasm: WasmConf,
    pub kube: KubeConf,
    /// Keys of [`UNIMPLEMENTED`] the conf sets (non-null), with the advice.
    pub unimplemented: Vec<(&'static str, &'static str)>,
}

/// One (containerID, ifname) a runtime still uses, as GC lists them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

const WHAT: &str = "multus conf";

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

impl MultusConf {
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let o = FoldedObject::parse(bytes, WHAT)?;
        let declared: Option<String> = o.get("cniVersion")?;
        let declared = version::or_legacy(declared.as_deref()).to_string();
        let versions: Vec<String> = o.get("cniVersions")?.unwrap_or_default();
        let cni_version =
            version::negotiate(&declared, &versions, &format!("{WHAT} \"cniVersion\""))?;

        let cluster = match non_empty(o.get("clusterNetwork")?) {
            Some(r) => ClusterNetwork::Reference(r),
            None => {
                let list: Vec<Box<serde_json::value::RawValue>> =
                    o.get("delegates")?.unwrap_or_default();
                if list.is_empty() {
                    return Err(CniError::new(
                        Code::InvalidConfig,
                        format!("{WHAT}: one of \"clusterNetwork\" or \"delegates\" is required"),
                    ));
                }
                let delegates = list
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        NetworkConfig::from_bytes(
                            d.get().as_bytes(),
                            &format!("{WHAT} delegates[{i}]"),
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                ClusterNetwork::Delegates(delegates)
            }
        };

        let log_level = match non_empty(o.get::<String>("logLevel")?) {
            None => LogLevel::Panic,
            Some(s) => LogLevel::parse(&s).ok_or_else(|| {
                CniError::new(
                    Code::InvalidConfig,
                    format!("{WHAT}: invalid value for \"logLevel\": {s:?} (want debug, verbose, info, error or panic)"),
                )
            })?,
        };
        let global_namespaces = match o.get::<String>("globalNamespaces")? {
            Some(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            None => vec!["default".to_string()],
        };
        let valid_attachments = match o.get::<Vec<Attachment>>("cni.dev/valid-attachments")? {
            Some(v) => Some(v),
            None => o.get("cni.dev/attachments")?,
        };
        let mut conf = Self {
            name: o.get("name")?.unwrap_or_default(),
            cni_version,
            cluster,
            default_networks: o.get("defaultNetworks")?.unwrap_or_default(),
            conf_dir: non_empty(o.get("confDir")?)
                .unwrap_or_else(|| DEFAULT_CONF_DIR.into())
                .into(),
            cni_dir: non_empty(o.get("cniDir")?)
                .unwrap_or_else(|| DEFAULT_CNI_DIR.into())
                .into(),
            bin_dir: non_empty(o.get("binDir")?)
                .unwrap_or_else(|| DEFAULT_BIN_DIR.into())
                .into(),
            log_file: non_empty(o.get("logFile")?).map(PathBuf::from),
            log_level,
            log_to_stderr: o.get_bool("logToStderr")?.unwrap_or(true),
            readiness_indicator_file: non_empty(o.get("readinessindicatorfile")?)
                .map(PathBuf::from),
            system_namespaces: o
                .get("systemNamespaces")?
                .unwrap_or_else(|| vec!["kube-system".to_string()]),
            multus_namespace: non_empty(o.get("multusNamespace")?)
                .unwrap_or_else(|| "kube-system".into()),
            namespace_isolation: o.get_bool("namespaceIsolation")?.unwrap_or(false),
            global_namespaces,
            kubeconfig: non_empty(o.get("kubeconfig")?).map(PathBuf::from),
            runtime_config: o.get("runtimeConfig")?.unwrap_or_default(),
            valid_attachments,
            wasm: WasmConf::parse(&o)?,
            kube: KubeConf::parse(&o)?,
            unimplemented: UNIMPLEMENTED
                .iter()
                .filter(|(k, _)| o.raw(k).is_some_and(|v| v.get() != "null"))
                .copied()
                .collect(),
        };
        // No store may be multus's own directories, nor libcni's result
        // cache (containerd's, CRI-O's): a result forged there is what the
        // runtime's DEL trusts.
        conf.wasm.bounds.reserved = vec![
            conf.cni_dir.clone(),
            conf.conf_dir.clone(),
            conf.wasm.cache_dir.clone(),
            conf.wasm.plugin_dir.clone(),
            PathBuf::from(LIBCNI_CACHE_DIR),
        ];
        Ok(conf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus","clusterNetwork":"k8s"}"#;

    #[test]
    fn defaults() {
        let c = MultusConf::parse(MIN.as_bytes()).unwrap();
        assert_eq!(c.cni_version, "1.0.0");
        assert_eq!(c.cluster, ClusterNetwork::Reference("k8s".into()));
        assert_eq!(c.conf_dir, PathBuf::from(DEFAULT_CONF_DIR));
        assert_eq!(c.cni_dir, PathBuf::from(DEFAULT_CNI_DIR));
        assert_eq!(c.bin_dir, PathBuf::from(DEFAULT_BIN_DIR));
        assert_eq!(c.log_level, LogLevel::Panic);
        assert!(c.log_to_stderr);
        assert_eq!(c.system_namespaces, vec!["kube-system"]);
        assert_eq!(c.multus_namespace, "kube-system");
        assert_eq!(c.global_namespaces, vec!["default"]);
        assert!(!c.namespace_isolation);
        assert!(
            c.kubeconfig.is_none() && c.log_file.is_none() && c.readiness_indicator_file.is_none()
        );
        assert!(c.valid_attachments.is_none());
    }

    #[test]
    fn every_key_case_insensitive() {
        let c = MultusConf::parse(
            br#"{"CNIVERSION":"0.3.1","cniVersions":["1.1.0"],"Name":"m","ClusterNetwork":"/etc/cni/net.d",
                "DefaultNetworks":["a","b"],"ConfDir":"/c","CNIDir":"/d","BinDir":"/b",
                "LogFile":"/l","LogLevel":"info","LogToStderr":false,
                "ReadinessIndicatorFile":"/r","SystemNamespaces":["s"],"MultusNamespace":"mn",
                "NamespaceIsolation":true,"GlobalNamespaces":"g1, g2","Kubeconfig":"/k",
                "RuntimeConfig":{"portMappings":[{"hostPort":80}]},
                "cni.dev/attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(c.cni_version, "1.1.0");
        assert_eq!(c.name, "m");
        assert_eq!(
            c.cluster,
            ClusterNetwork::Reference("/etc/cni/net.d".into())
        );
        assert_eq!(c.default_networks, vec!["a", "b"]);
        assert_eq!(c.conf_dir, PathBuf::from("/c"));
        assert_eq!(c.cni_dir, PathBuf::from("/d"));
        assert_eq!(c.bin_dir, PathBuf::from("/b"));
        assert_eq!(c.log_file, Some(PathBuf::from("/l")));
        assert_eq!(c.log_level, LogLevel::Verbose);
        assert!(!c.log_to_stderr);
        assert_eq!(c.readiness_indicator_file, Some(PathBuf::from("/r")));
        assert_eq!(c.system_namespaces, vec!["s"]);
        assert_eq!(c.multus_namespace, "mn");
        assert!(c.namespace_isolation);
        assert_eq!(c.global_namespaces, vec!["g1", "g2"]);
        assert_eq!(c.kubeconfig, Some(PathBuf::from("/k")));
        assert_eq!(c.runtime_config["portMappings"][0]["hostPort"], 80);
        assert_eq!(c.valid_attachments.unwrap()[0].container_id, "c1");
    }

    #[test]
    fn delegates_keep_their_bytes() {
        let c = MultusConf::parse(
            br#"{"cniVersion":"1.0.0","name":"m","delegates":[ {"cniVersion":"1.0.0","name":"d","type":"bridge","k":1.0} ]}"#,
        )
        .unwrap();
        match c.cluster {
            ClusterNetwork::Delegates(d) => {
                assert_eq!(
                    d[0].bytes,
                    br#"{"cniVersion":"1.0.0","name":"d","type":"bridge","k":1.0}"#.to_vec()
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors() {
        let e = MultusConf::parse(br#"{"cniVersion":"1.0.0","name":"m"}"#).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("clusterNetwork"));
        let e =
            MultusConf::parse(br#"{"cniVersion":"1.0.0","clusterNetwork":"a","logLevel":"loud"}"#)
                .unwrap_err();
        assert!(e.msg.contains("logLevel"));
        let e = MultusConf::parse(br#"{"cniVersion":"0.9.0","clusterNetwork":"a"}"#).unwrap_err();
        assert_eq!(e.code, 1);
        let e = MultusConf::parse(
            br#"{"cniVersion":"1.0.0","clusterNetwork":"a","defaultNetworks":"x"}"#,
        )
        .unwrap_err();
        assert!(e.msg.contains("defaultNetworks"));
        assert_eq!(MultusConf::parse(b"{not json").unwrap_err().code, 6);
    }

    /// docs/configuration.md's key table lists exactly the keys multus reads.
    #[test]
    fn readme_documents_every_key() {
        let doc = include_str!("../../../docs/configuration.md");
        let table = doc
            .split("\n\n")
            .find(|p| p.starts_with("| key"))
            .expect("the key table");
        let mut documented: Vec<&str> = table
            .lines()
            .skip(2)
            .flat_map(|l| {
                let first = l.split('|').nth(1).unwrap_or_default();
                first.split('`').skip(1).step_by(2).collect::<Vec<_>>()
            })
            .collect();
        documented.sort();
        let mut keys = KEYS.to_vec();
        keys.sort();
        assert_eq!(documented, keys);
    }

    #[test]
    fn upstream_keys_not_acted_on_are_named() {
        let c = MultusConf::parse(br#"{"cniVersion":"1.0.0","name":"m","type":"multus","clusterNetwork":"k8s","AuxiliaryCNIChainName":"vrf","logOptions":{"maxAge":5},"retryDeleteOnError":true}"#).unwrap();
        let keys: Vec<&str> = c.unimplemented.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec!["auxiliaryCNIChainName", "logOptions"]);
        let c = MultusConf::parse(br#"{"cniVersion":"1.0.0","name":"m","type":"multus","clusterNetwork":"k8s","logOptions":null}"#).unwrap();
        assert!(c.unimplemented.is_empty());
    }

    #[test]
    fn tke_and_upstream_level_names() {
        for (s, l) in [
            ("debug", LogLevel::Debug),
            ("VERBOSE", LogLevel::Verbose),
            ("error", LogLevel::Error),
        ] {
            assert_eq!(LogLevel::parse(s), Some(l));
        }
    }
}
