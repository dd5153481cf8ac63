//! The `cluster` host calls of an IPAM module: the credentials whereabouts
//! itself would use, found by the host and never shown to the guest, and
//! the API client built from them on the first call.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::api::{ApiResource, DynamicObject};
use multus_host_functions::cluster::{ClusterBackend, ClusterError, Kind};
use serde_json::Value;

use crate::k8s::client::{Kind as ErrorKind, Kube, KubeError};

/// Where whereabouts looks for its flat-file defaults, in order.
pub const FLAT_FILES: &[&str] = &[
    "/etc/kubernetes/cni/net.d/whereabouts.d/whereabouts.conf",
    "/etc/cni/net.d/whereabouts.d/whereabouts.conf",
    "/host/etc/cni/net.d/whereabouts.d/whereabouts.conf",
];

/// The namespace whereabouts uses when the kubeconfig's context names none.
pub const DEFAULT_NAMESPACE: &str = "kube-system";

/// Merges the whereabouts flat file (`ipam.configuration_path`, else the
/// first of [`FLAT_FILES`] that exists) under the IPAM conf: a key the conf
/// sets wins, as in whereabouts. Only for an `ipam` of type `whereabouts`
/// or one naming a `configuration_path`. Returns the file it read.
pub fn merge_flat_file(config: &mut Value) -> Result<Option<PathBuf>, String> {
    let Some(ipam) = config.get_mut("ipam").and_then(Value::as_object_mut) else {
        return Ok(None);
    };
    let named = ipam
        .get("configuration_path")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let whereabouts = ipam.get("type").and_then(Value::as_str) == Some("whereabouts");
    let path = match named {
        Some(p) => p,
        None if whereabouts => match FLAT_FILES.iter().map(Path::new).find(|p| p.is_file()) {
            Some(p) => p.to_path_buf(),
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("ipam.configuration_path {}: {e}", path.display()))?;
    let file: Value = serde_json::from_str(&text)
        .map_err(|e| format!("ipam.configuration_path {}: {e}", path.display()))?;
    for (k, v) in file.as_object().into_iter().flatten() {
        ipam.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Ok(Some(path))
}

/// The kubeconfig for cluster calls: the IPAM conf's
/// `kubernetes.kubeconfig` (after the flat file's defaults), else multus's.
pub fn kubeconfig(config: &Value, multus: Option<&Path>) -> Option<PathBuf> {
    config
        .pointer("/ipam/kubernetes/kubeconfig")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| multus.map(Path::to_path_buf))
}

/// The kubeconfig's current context's namespace, else [`DEFAULT_NAMESPACE`].
pub fn context_namespace(kubeconfig: &Path) -> Result<String, String> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| format!("kubeconfig {}: {e}", kubeconfig.display()))?;
    let current = kc.current_context.clone().unwrap_or_default();
    Ok(kc
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.namespace.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()))
}

/// The variables naming the node, in order: ours, then upstream's
/// (`MULTUS_NODE_NAME`, what upstream's thick DaemonSet sets).
pub const NODE_NAME_VARS: [&str; 2] = ["NODE_NAME", "MULTUS_NODE_NAME"];

/// The node name from the environment ([`NODE_NAME_VARS`]), if set.
pub fn node_name_from_env() -> Option<String> {
    NODE_NAME_VARS
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|n| !n.is_empty()))
}

/// The node multus runs on: `$NODE_NAME` or `$MULTUS_NODE_NAME` (the
/// daemon's, or one the admin sets for the runtime), else the host name,
/// which is the Kubernetes node name unless the kubelet was told otherwise.
pub fn node_name() -> String {
    static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NODE.get_or_init(|| {
        node_name_from_env()
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_default()
    })
    .clone()
}

/// The API server, reached with `kubeconfig` on the first call.
pub struct KubeCluster {
    kubeconfig: Option<PathBuf>,
    /// The admin's `clusterNamespace`, else the kubeconfig's.
    namespace: Option<String>,
    /// One call's budget (`clusterCallTimeoutMs`)...
    timeout: Duration,
    /// ...within what is left of the plugin's own (`timeoutMs`).
    deadline: Instant,
    client: Option<Kube>,
}

impl KubeCluster {
    pub fn new(
        kubeconfig: Option<PathBuf>,
        namespace: Option<String>,
        timeout: Duration,
        deadline: Instant,
    ) -> Self {
        Self {
            kubeconfig,
            namespace,
            timeout,
            deadline,
            client: None,
        }
    }

    /// The budget of the next call: its own, cut to what the plugin has
    /// left; none left is "unavailable" (code 11), not a wait.
    fn budget(&self) -> Result<Duration, ClusterError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClusterError::Unavailable(
                "the plugin's timeoutMs is spent; no time left for another API call".into(),
            ));
        }
        Ok(left.min(self.timeout))
    }

    /// Where the credentials come from: the kubeconfig named, else the
    /// pod's service account when multus runs in one (the thick daemon),
    /// as client-go's in-cluster config.
    fn source(&self) -> Result<Source<'_>, ClusterError> {
        if let Some(p) = self.kubeconfig.as_deref() {
            return Ok(Source::Kubeconfig(p));
        }
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty()) {
            return Ok(Source::InCluster);
        }
        Err(ClusterError::Invalid(
            "no kubeconfig for cluster calls: set ipam.kubernetes.kubeconfig, a whereabouts flat file, or multus's kubeconfig (in a pod, its service account is used)".into(),
        ))
    }

    fn session(&mut self) -> Result<(&Kube, String), ClusterError> {
        let ns = self.namespace()?;
        let budget = self.budget()?;
        if self.client.is_none() {
            let kube = match self.source()? {
                Source::Kubeconfig(p) => Kube::new(p, self.timeout),
                Source::InCluster => Kube::in_cluster(self.timeout),
            };
            self.client = Some(kube.map_err(error)?);
        }
        let kube = self.client.as_ref().expect("just set");
        kube.set_timeout(budget);
        Ok((kube, ns))
    }
}

enum Source<'a> {
    Kubeconfig(&'a Path),
    InCluster,
}

fn resource(kind: &Kind) -> ApiResource {
    ApiResource {
        group: kind.group.clone(),
        version: kind.version.clone(),
        api_version: format!("{}/{}", kind.group, kind.version),
        kind: String::new(),
        plural: kind.plural.clone(),
    }
}

fn error(e: KubeError) -> ClusterError {
    let msg = e.to_string();
    match e.kind {
        ErrorKind::NotFound => ClusterError::NotFound(msg),
        ErrorKind::Conflict => ClusterError::Conflict(msg),
        ErrorKind::Unauthorized | ErrorKind::Forbidden => ClusterError::Denied(msg),
        ErrorKind::Transient => ClusterError::Unavailable(msg),
        ErrorKind::Other => ClusterError::Invalid(msg),
    }
}

fn object(text: &str) -> Result<DynamicObject, ClusterError> {
    serde_json::from_str(text).map_err(|e| ClusterError::Invalid(format!("the object: {e}")))
}

fn text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("API objects serialize")
}

impl ClusterBackend for KubeCluster {
    fn namespace(&mut self) -> Result<String, ClusterError> {
        if self.namespace.is_none() {
            let ns = match self.source()? {
                Source::Kubeconfig(p) => context_namespace(p).map_err(ClusterError::Invalid)?,
                Source::InCluster => DEFAULT_NAMESPACE.to_string(),
            };
            self.namespace = Some(ns);
        }
        Ok(self.namespace.clone().expect("just set"))
    }

    fn get(&mut self, kind: &Kind, name: &str) -> Result<String, ClusterError> {
        let (kube, ns) = self.session()?;
        kube.get_object(&resource(kind), &ns, name)
            .map(|o| text(&o))
            .map_err(error)
    }

    fn list(&mut self, kind: &Kind) -> Result<String, ClusterError> {
        let (kube, ns) = self.session()?;
        kube.list_objects(&resource(kind), &ns)
            .map(|l| text(&l))
            .map_err(error)
    }

    fn create(&mut self, kind: &Kind, obj: &str) -> Result<String, ClusterError> {
        let obj = object(obj)?;
        let (kube, ns) = self.session()?;
        kube.create_object(&resource(kind), &ns, &obj)
            .map(|o| text(&o))
            .map_err(error)
    }

    fn replace(&mut self, kind: &Kind, name: &str, obj: &str) -> Result<String, ClusterError> {
        let obj = object(obj)?;
        let (kube, ns) = self.session()?;
        kube.replace_object(&resource(kind), &ns, name, &obj)
            .map(|o| text(&o))
            .map_err(error)
    }

    fn replace_status(
        &mut self,
        kind: &Kind,
        name: &str,
        obj: &str,
    ) -> Result<String, ClusterError> {
        let obj = object(obj)?;
        let (kube, ns) = self.session()?;
        kube.replace_object_status(&resource(kind), &ns, name, &obj)
            .map(|o| text(&o))
            .map_err(error)
    }

    fn delete(&mut self, kind: &Kind, name: &str) -> Result<(), ClusterError> {
        let (kube, ns) = self.session()?;
        kube.delete_object(&resource(kind), &ns, name)
            .map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flat_file_fills_what_the_conf_leaves_out() {
        let d = tempfile::tempdir().unwrap();
        let flat = d.path().join("whereabouts.conf");
        std::fs::write(
            &flat,
            r#"{"datastore":"kubernetes","kubernetes":{"kubeconfig":"/etc/wa.kubeconfig"},"range":"10.9.0.0/16"}"#,
        )
        .unwrap();
        let mut c = json!({"ipam": {"type": "whereabouts", "range": "10.1.0.0/24",
            "configuration_path": flat}});
        assert_eq!(merge_flat_file(&mut c).unwrap(), Some(flat.clone()));
        assert_eq!(c["ipam"]["range"], "10.1.0.0/24", "the conf wins");
        assert_eq!(
            kubeconfig(&c, Some(Path::new("/multus"))),
            Some(PathBuf::from("/etc/wa.kubeconfig"))
        );
        let mut other = json!({"ipam": {"type": "host-local"}});
        assert_eq!(merge_flat_file(&mut other).unwrap(), None);
        assert_eq!(
            kubeconfig(&other, Some(Path::new("/multus"))),
            Some(PathBuf::from("/multus"))
        );
        let mut missing = json!({"ipam": {"type": "whereabouts", "configuration_path": "/nope"}});
        assert!(merge_flat_file(&mut missing).unwrap_err().contains("/nope"));
    }

    #[test]
    fn namespace_from_the_context_else_kube_system() {
        let d = tempfile::tempdir().unwrap();
        let kc = |ns: Option<&str>| {
            let mut ctx = json!({"cluster": "c", "user": "u"});
            if let Some(ns) = ns {
                ctx["namespace"] = ns.into();
            }
            let p = d.path().join(format!("kc-{}", ns.unwrap_or("none")));
            std::fs::write(
                &p,
                json!({"apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": ctx}], "current-context": "x"})
                .to_string(),
            )
            .unwrap();
            p
        };
        assert_eq!(context_namespace(&kc(Some("ipam"))).unwrap(), "ipam");
        assert_eq!(context_namespace(&kc(None)).unwrap(), "kube-system");
    }
}
