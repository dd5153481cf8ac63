//! The `cluster` host calls of an IPAM module: the credentials whereabouts
//! itself would use, found by the host and never shown to the guest, and
//! the API client built from them on the first call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use kube::api::{ApiResource, DynamicObject};
use kube::config::Kubeconfig;
use multus_host_functions::cluster::{ClusterBackend, ClusterError, Kind};
use serde_json::Value;

use super::flights::{Flights, Late};
use crate::boundary::file::{self, Roots};
use crate::boundary::kubeconfig::ModuleKubeconfig;
use crate::boundary::{self, Bounds, Refused};
use crate::k8s::client::{client_on, Kind as ErrorKind, Kube, KubeError};

/// Where whereabouts looks for its flat-file defaults, in order.
pub const FLAT_FILES: &[&str] = &[
    "/etc/kubernetes/cni/net.d/whereabouts.d/whereabouts.conf",
    "/etc/cni/net.d/whereabouts.d/whereabouts.conf",
    "/host/etc/cni/net.d/whereabouts.d/whereabouts.conf",
];

/// The namespace whereabouts uses when the kubeconfig's context names none.
pub const DEFAULT_NAMESPACE: &str = "kube-system";

/// The whereabouts flat file merged into an IPAM conf: its content, as the
/// admin wrote it.
pub struct FlatFile {
    pub path: PathBuf,
    pub content: Value,
}

/// Merges the whereabouts flat file (`ipam.configuration_path`, which must
/// lie beneath `configFileRoots`, else the first of [`FLAT_FILES`] that
/// exists) under the IPAM conf: a key the conf sets wins, as in
/// whereabouts. Only for an `ipam` of type `whereabouts` or one naming a
/// `configuration_path`. Files are read through the boundary (regular,
/// capped, within `timeout`).
pub fn merge_flat_file(
    config: &mut Value,
    bounds: &Bounds,
    timeout: Duration,
) -> Result<Option<FlatFile>, Refused> {
    const KEY: &str = "ipam.configuration_path";
    let Some(ipam) = config.get_mut("ipam").and_then(Value::as_object_mut) else {
        return Ok(None);
    };
    let named = ipam
        .get("configuration_path")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let whereabouts = ipam.get("type").and_then(Value::as_str) == Some("whereabouts");
    let (path, bytes) = match named {
        Some(p) => {
            let roots = Roots {
                roots: &bounds.config_file_roots,
                key: "configFileRoots",
            };
            let bytes = file::read(&roots, &p, KEY, timeout)?;
            (p, bytes)
        }
        None if whereabouts => match FLAT_FILES.iter().map(Path::new).find(|p| p.is_file()) {
            Some(p) => {
                let exact = [p.to_path_buf()];
                let roots = Roots {
                    roots: &exact,
                    key: "the whereabouts flat file",
                };
                (p.to_path_buf(), file::read(&roots, p, KEY, timeout)?)
            }
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    let content: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Refused::new(KEY, format!("{}: {e}", path.display())))?;
    for (k, v) in content.as_object().into_iter().flatten() {
        ipam.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Ok(Some(FlatFile { path, content }))
}

/// The kubeconfig of a module's cluster calls: what the IPAM conf itself
/// names (`named`, read before any flat file) passes the boundary's
/// allowlist; the admin's flat file's, or else multus's own, is used as is.
pub fn kubeconfig(
    named: Option<&str>,
    flat: Option<&FlatFile>,
    bounds: &Bounds,
    multus: Option<&Path>,
) -> Result<Option<ModuleKubeconfig>, Refused> {
    let flat = flat.and_then(|f| f.content.pointer("/kubernetes/kubeconfig")?.as_str());
    boundary::kubeconfig::choose(named, flat, bounds, multus)
}

/// The kubeconfig's current context's namespace, else [`DEFAULT_NAMESPACE`].
pub fn context_namespace(kc: &Kubeconfig) -> String {
    let current = kc.current_context.clone().unwrap_or_default();
    kc.contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.namespace.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
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
/// daemon's, or one the admin sets for the runtime), else `configured`
/// (the conf's `nodeName`, which the installer writes: the runtime execs a
/// thin multus with its own environment, which names no node), else the
/// host name, which is the Kubernetes node name unless the kubelet was
/// told otherwise (`--hostname-override`).
pub fn node_name(configured: Option<&str>) -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    node_name_from_env()
        .or_else(|| configured.filter(|n| !n.is_empty()).map(str::to_string))
        .unwrap_or_else(|| {
            HOST.get_or_init(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_default()
            })
            .clone()
        })
}

/// A long-lived process's module clients (the daemon's): one per
/// credential source, shared by every call on its runtime, so a call
/// reuses a connection instead of paying a TCP and TLS handshake (and the
/// API server its share) per call, as thin does.
struct Shared {
    runtime: tokio::runtime::Handle,
    /// Each with when it was built.
    clients: Mutex<HashMap<ClientKey, (Instant, kube::Client)>>,
    /// `get-cached` reads in flight: a node's pods started together read a
    /// shared object (a 56 KiB NodeSlicePool) once, not once each.
    cached_reads: Flights<CachedRead, Result<String, ClusterError>>,
}

/// A `get-cached` read: whose credentials, which namespace, kind and name.
#[derive(Clone, PartialEq, Eq, Hash)]
struct CachedRead {
    client: ClientKey,
    namespace: String,
    kind: (String, String, String),
    name: String,
}

/// A kubeconfig's path (`None` for the service account) and a hash of its
/// text as the call read it: a changed file, or one path spelled two
/// ways, is another entry, never another source's client.
type ClientKey = (Option<PathBuf>, u64);

/// Sources are what the admin allows (the allowlist, the flat files,
/// multus's own), so few; the bound keeps a changing set from growing.
const SHARED_MAX: usize = 16;

/// A client is built again after this long: the CA, certificate and key
/// files a kubeconfig names are read when it is built, and one replaced
/// on disk (a revoked certificate may get a 403, not a 401) is read then,
/// as thin reads them on every call.
const SHARED_TTL: Duration = Duration::from_secs(300);

static SHARED: OnceLock<Shared> = OnceLock::new();

/// Module clients from now on are shared on `runtime` (which runs
/// elsewhere: calls block on it from their own threads), for the life of
/// the process. The daemon's; thin builds a client per call.
pub fn share_clients(runtime: tokio::runtime::Handle) {
    let _ = SHARED.set(Shared {
        runtime,
        clients: Mutex::new(HashMap::new()),
        cached_reads: Flights::default(),
    });
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, (Instant, kube::Client)>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client for `source`, built on the first call that needs it, and
    /// its key.
    fn client(
        &self,
        source: &Source<'_>,
        timeout: Duration,
    ) -> Result<(Kube, ClientKey), KubeError> {
        let key = source.key();
        let fresh = |(at, _): &(Instant, kube::Client)| at.elapsed() < SHARED_TTL;
        let cached = self
            .lock()
            .get(&key)
            .filter(|e| fresh(e))
            .map(|(_, c)| c.clone());
        let client = match cached {
            Some(c) => c,
            None => {
                // Built outside the lock: the files the kubeconfig names
                // are read here, and a slow one must hold up this call
                // only. Two first calls at once may both build; the last
                // is kept.
                let kc = match source {
                    Source::Kubeconfig { kc, path, .. } => Some(((*kc).clone(), *path)),
                    Source::InCluster => None,
                };
                let c = client_on(&self.runtime, kc, timeout)?;
                let mut clients = self.lock();
                if clients.len() >= SHARED_MAX && !clients.contains_key(&key) {
                    clients.retain(|_, e| fresh(e));
                    if clients.len() >= SHARED_MAX {
                        clients.clear();
                    }
                }
                clients.insert(key.clone(), (Instant::now(), c.clone()));
                c
            }
        };
        Ok((Kube::shared(self.runtime.clone(), client, timeout), key))
    }

    /// After a 401, the source's next call builds its client again.
    fn forget(&self, key: &ClientKey) {
        self.lock().remove(key);
    }
}

/// The API server, reached with `kubeconfig` on the first call.
pub struct KubeCluster {
    kubeconfig: Option<ModuleKubeconfig>,
    /// Read and checked on the first call, with a hash of it (what a
    /// shared client is kept by, beside the path).
    parsed: Option<(Kubeconfig, u64)>,
    /// The admin's `clusterNamespace`, else the kubeconfig's.
    namespace: Option<String>,
    /// One call's budget (`clusterCallTimeoutMs`)...
    timeout: Duration,
    /// ...within what is left of the plugin's own (`timeoutMs`).
    deadline: Instant,
    client: Option<Kube>,
    /// Whose shared client `client` is, if it is one.
    shared: Option<ClientKey>,
}

impl KubeCluster {
    pub fn new(
        kubeconfig: Option<ModuleKubeconfig>,
        namespace: Option<String>,
        timeout: Duration,
        deadline: Instant,
    ) -> Self {
        Self {
            kubeconfig,
            parsed: None,
            // An empty namespace is every namespace to the API client: an
            // admin's "" is no namespace set, never that.
            namespace: namespace.filter(|n| !n.is_empty()),
            timeout,
            deadline,
            client: None,
            shared: None,
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
    fn source(&mut self) -> Result<Source<'_>, ClusterError> {
        if let Some(kc) = &self.kubeconfig {
            if self.parsed.is_none() {
                let budget = self.budget()?;
                let parsed = boundary::kubeconfig::load(kc, budget)
                    .map_err(|r| ClusterError::Invalid(r.to_string()))?;
                let hash = {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    text(&parsed).hash(&mut h);
                    h.finish()
                };
                self.parsed = Some((parsed, hash));
            }
            let (kc_parsed, hash) = self.parsed.as_ref().expect("just set");
            return Ok(Source::Kubeconfig {
                kc: kc_parsed,
                path: &kc.path,
                hash: *hash,
            });
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
            let timeout = self.timeout;
            let source = self.source()?;
            let (kube, shared) = match (SHARED.get(), &source) {
                (Some(shared), source) => {
                    let (kube, key) = shared.client(source, timeout).map_err(error)?;
                    (kube, Some(key))
                }
                (None, Source::Kubeconfig { kc, path, .. }) => (
                    Kube::with_kubeconfig((*kc).clone(), path, timeout).map_err(error)?,
                    None,
                ),
                (None, Source::InCluster) => (Kube::in_cluster(timeout).map_err(error)?, None),
            };
            self.client = Some(kube);
            self.shared = shared;
        }
        let kube = self.client.as_ref().expect("just set");
        kube.set_timeout(budget);
        Ok((kube, ns))
    }

    /// `f` on this call's client, in its namespace (the outer error: no
    /// client). A 401 on a shared client drops it, and `f` runs once more
    /// on one built afresh (the files the kubeconfig names read again: a
    /// rotated token or certificate), as thin's per-call client reads them
    /// on every call.
    fn request<T>(
        &mut self,
        f: impl Fn(&Kube, &str) -> Result<T, KubeError>,
    ) -> Result<Result<T, KubeError>, ClusterError> {
        let (kube, ns) = self.session()?;
        match f(kube, &ns) {
            Err(e) if e.kind == ErrorKind::Unauthorized && self.shared.is_some() => {
                if let (Some(key), Some(shared)) = (self.shared.take(), SHARED.get()) {
                    tracing::warn!(error = %e, "401 on a shared module client; building it again");
                    shared.forget(&key);
                }
                self.client = None;
                let (kube, ns) = self.session()?;
                Ok(f(kube, &ns))
            }
            other => Ok(other),
        }
    }
}

enum Source<'a> {
    Kubeconfig {
        kc: &'a Kubeconfig,
        path: &'a Path,
        hash: u64,
    },
    InCluster,
}

impl Source<'_> {
    /// What a shared client of this source is kept by.
    fn key(&self) -> ClientKey {
        match self {
            Source::Kubeconfig { path, hash, .. } => (Some(path.to_path_buf()), *hash),
            Source::InCluster => (None, 0),
        }
    }
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
    // An answer's text can hold a whole object (a 422 quotes what it
    // refused): the guest gets enough to act on, not the object.
    let msg = multus_host_functions::text::clip(e.to_string(), 1024);
    match e.kind {
        ErrorKind::NotFound => ClusterError::NotFound(msg),
        ErrorKind::Conflict => ClusterError::Conflict(msg),
        ErrorKind::Unauthorized | ErrorKind::Forbidden => ClusterError::Denied(msg),
        ErrorKind::Transient => ClusterError::Unavailable(msg),
        ErrorKind::Invalid | ErrorKind::Other => ClusterError::Invalid(msg),
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
                Source::Kubeconfig { kc, .. } => context_namespace(kc),
                Source::InCluster => DEFAULT_NAMESPACE.to_string(),
            };
            self.namespace = Some(ns);
        }
        Ok(self.namespace.clone().expect("just set"))
    }

    fn get(&mut self, kind: &Kind, name: &str) -> Result<String, ClusterError> {
        let res = resource(kind);
        self.request(|kube, ns| kube.get_object(&res, ns, name).map(|o| text(&o)))?
            .map_err(error)
    }

    /// Joins an identical read in flight on a shared client: its answer is
    /// no older than the watch cache's own may be. (`get` never does: a
    /// live read must see the caller's own earlier writes.)
    fn get_cached(&mut self, kind: &Kind, name: &str) -> Result<String, ClusterError> {
        let res = resource(kind);
        let (_, namespace) = self.session()?;
        let wait = self.budget()?;
        let flight = self.shared.clone().zip(SHARED.get());
        let mut read = || {
            self.request(|kube, ns| kube.get_object_cached(&res, ns, name).map(|o| text(&o)))?
                .map_err(error)
        };
        let Some((client, shared)) = flight else {
            return read();
        };
        let key = CachedRead {
            client,
            namespace,
            kind: (
                kind.group.clone(),
                kind.version.clone(),
                kind.plural.clone(),
            ),
            name: name.to_string(),
        };
        // An answer about the object is everyone's; "unavailable" may be
        // the leader's own deadline (a shorter budget, or its plugin's
        // time spent): a waiter with time left asks for itself.
        let about_the_object =
            |r: &Result<String, ClusterError>| !matches!(r, Err(ClusterError::Unavailable(_)));
        shared
            .cached_reads
            .join(key, wait, about_the_object, read)
            .unwrap_or_else(|Late| {
                Err(ClusterError::Unavailable(format!(
                    "no answer within {} ms (joined an identical read in flight)",
                    wait.as_millis()
                )))
            })
    }

    fn list(&mut self, kind: &Kind, selector: &str) -> Result<String, ClusterError> {
        let res = resource(kind);
        self.request(|kube, ns| {
            kube.list_objects_labeled(&res, ns, selector)
                .map(|l| text(&l))
        })?
        .map_err(error)
    }

    fn create(&mut self, kind: &Kind, obj: &str) -> Result<String, ClusterError> {
        let (obj, res) = (object(obj)?, resource(kind));
        self.request(|kube, ns| kube.create_object(&res, ns, &obj).map(|o| text(&o)))?
            .map_err(error)
    }

    fn replace(&mut self, kind: &Kind, name: &str, obj: &str) -> Result<String, ClusterError> {
        let (obj, res) = (object(obj)?, resource(kind));
        self.request(|kube, ns| kube.replace_object(&res, ns, name, &obj).map(|o| text(&o)))?
            .map_err(error)
    }

    fn replace_status(
        &mut self,
        kind: &Kind,
        name: &str,
        obj: &str,
    ) -> Result<String, ClusterError> {
        let (obj, res) = (object(obj)?, resource(kind));
        self.request(|kube, ns| {
            kube.replace_object_status(&res, ns, name, &obj)
                .map(|o| text(&o))
        })?
        .map_err(error)
    }

    fn delete(&mut self, kind: &Kind, name: &str) -> Result<(), ClusterError> {
        let res = resource(kind);
        self.request(|kube, ns| kube.delete_object(&res, ns, name))?
            .map_err(error)
    }

    fn patch_status(
        &mut self,
        kind: &Kind,
        name: &str,
        patch: &json_patch::Patch,
    ) -> Result<String, ClusterError> {
        let (started, budget) = (Instant::now(), self.budget()?);
        let res = resource(kind);
        match self.request(|kube, ns| kube.patch_object_status(&res, ns, name, patch.clone()))? {
            Ok(o) => Ok(text(&o)),
            // The API server's 422 says the same for a failed `test` and a
            // patch it refuses otherwise: the patch applied here to the
            // object as it is now tells which (one more request, only on a
            // refusal, within what is left of this call's budget). A test
            // that fails now is a conflict; a patch that applies now was
            // refused for what it writes (the schema).
            Err(e) if e.kind == ErrorKind::Invalid => {
                let left = budget.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(ClusterError::Unavailable(format!(
                        "{e}: no time left in the call to tell a failed test from a refused patch"
                    )));
                }
                let now = self
                    .request(|kube, ns| {
                        kube.set_timeout(left);
                        kube.get_object(&res, ns, name)
                    })?
                    .map_err(error)?;
                let now = serde_json::to_value(&now).expect("API objects serialize");
                match multus_host_functions::cluster::patch_status_of(&now, patch) {
                    Err(ClusterError::Conflict(m)) => Err(ClusterError::Conflict(m)),
                    Err(ClusterError::Invalid(m)) => {
                        Err(ClusterError::Invalid(format!("{e}: {m}")))
                    }
                    _ => Err(error(e)),
                }
            }
            Err(e) => Err(error(e)),
        }
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
        let bounds = Bounds {
            config_file_roots: vec![d.path().to_path_buf()],
            ..Bounds::default()
        };
        let t = Duration::from_secs(5);
        let mut c = json!({"ipam": {"type": "whereabouts", "range": "10.1.0.0/24",
            "configuration_path": flat}});
        let merged = merge_flat_file(&mut c, &bounds, t).unwrap().unwrap();
        assert_eq!(merged.path, flat);
        assert_eq!(c["ipam"]["range"], "10.1.0.0/24", "the conf wins");
        let multus = Some(Path::new("/multus"));
        let chosen = |named: Option<&str>, f: Option<&FlatFile>| {
            kubeconfig(named, f, &bounds, multus).map(|k| k.map(|k| k.path))
        };
        assert_eq!(
            chosen(None, Some(&merged)).unwrap(),
            Some(PathBuf::from("/etc/wa.kubeconfig")),
            "the admin's flat file names it"
        );
        let mut other = json!({"ipam": {"type": "host-local"}});
        assert!(merge_flat_file(&mut other, &bounds, t).unwrap().is_none());
        assert_eq!(chosen(None, None).unwrap(), Some(PathBuf::from("/multus")));
        assert!(
            chosen(Some("/evil/kubeconfig"), Some(&merged)).is_err(),
            "the config's own is checked"
        );
        let mut missing = json!({"ipam": {"type": "whereabouts", "configuration_path": "/nope"}});
        let e = merge_flat_file(&mut missing, &bounds, t).err().unwrap();
        assert!(
            e.msg.contains("/nope") && e.msg.contains("configFileRoots"),
            "{e}"
        );
    }

    #[test]
    fn namespace_from_the_context_else_kube_system() {
        let kc = |ns: Option<&str>| {
            let mut ctx = json!({"cluster": "c", "user": "u"});
            if let Some(ns) = ns {
                ctx["namespace"] = ns.into();
            }
            Kubeconfig::from_yaml(
                &json!({"apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": ctx}], "current-context": "x"})
                .to_string(),
            )
            .unwrap()
        };
        assert_eq!(context_namespace(&kc(Some("ipam"))), "ipam");
        assert_eq!(context_namespace(&kc(None)), "kube-system");
    }
}
