//! The daemon's view of the cluster: one API client shared by every request,
//! the node's pods and all NADs kept current by watches, and a live GET when
//! a cache misses (a static pod, a pod or NAD the watch has not delivered
//! yet, a cache still listing), except for a NAD the API server just said
//! does not exist and a conf-named network's NAD the streaming cache lacks
//! (the cluster network's name, tried as a NAD first as upstream does, is
//! usually none). The network-status write and events are always direct
//! calls.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod, PodSpec};
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use multus::config::MultusConf;
use multus::k8s::api::{ClusterApi, Connect, FromKubeconfig, Read};
use multus::k8s::client::{config_from, nad_resource, Kube, KubeError, Nad};
use multus::k8s::pod::{check_uid, PodRef};

use crate::metrics::{CacheLabels, Metrics};

/// Where the daemon's credentials come from, as upstream's daemon finds them.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// `kubeconfig` in the daemon config.
    Kubeconfig(std::path::PathBuf),
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the
    /// token and CA at their standard path; kube-rs re-reads the token the
    /// kubelet rotates).
    InCluster,
}

impl Credentials {
    /// The daemon config's `kubeconfig`, else in-cluster when the pod's
    /// environment says so, else none (each request then uses its conf's).
    pub fn find(kubeconfig: Option<&Path>) -> Option<Self> {
        match kubeconfig {
            Some(p) => Some(Self::Kubeconfig(p.to_path_buf())),
            None => std::env::var_os("KUBERNETES_SERVICE_HOST").map(|_| Self::InCluster),
        }
    }

    async fn client(&self) -> Result<kube::Client, String> {
        let config = match self {
            Self::Kubeconfig(path) => config_from(path).await.map_err(|e| e.to_string())?,
            Self::InCluster => {
                let mut c = kube::Config::incluster()
                    .map_err(|e| format!("in-cluster credentials: {e}"))?;
                // kube-rs ignores the proxy variables in a pod; client-go
                // does not.
                multus::k8s::client::set_proxy(&mut c, None)?;
                c
            }
        };
        multus::k8s::transport::client(config).map_err(|e| format!("API client: {e}"))
    }
}

pub struct Cluster {
    client: kube::Client,
    runtime: tokio::runtime::Handle,
    /// The pods of this node (`NODE_NAME`); `None` when the node is unknown.
    pods: Option<Store<Pod>>,
    nads: Store<DynamicObject>,
    /// Whether the NAD watch is streaming (its last item an event, not an
    /// error): only then is a NAD `nads` lacks known not to exist.
    nads_streaming: Arc<AtomicBool>,
    /// NADs the API server said do not exist, and when: a name looked up
    /// on every pod that is never a NAD (the cluster network's, tried as
    /// a NAD first as upstream does) costs one GET per [`ABSENT_FOR`], not
    /// one per pod. A NAD created since is found in `nads` once the watch
    /// delivers it; until then (milliseconds) or for `ABSENT_FOR` at most
    /// when the watch is down, it is reported missing, which a kubelet
    /// retries.
    absent: std::sync::Mutex<Absent>,
}

const ABSENT_FOR: Duration = Duration::from_secs(10);

/// NAD names the API server said do not exist, each for [`ABSENT_FOR`].
/// Bounded: a pod may select thousands of names that do not exist, and
/// every retry or new pod more; expired ones go at each insert and past
/// [`ABSENT_MAX`] the oldest go, so a memory bound holds whatever pods
/// name (a name forgotten early only costs its GET again).
#[derive(Default)]
struct Absent(std::collections::HashMap<(String, String), Instant>);

const ABSENT_MAX: usize = 1024;

impl Absent {
    fn missing(&self, key: &(String, String)) -> bool {
        self.0.get(key).is_some_and(|t| t.elapsed() < ABSENT_FOR)
    }

    fn insert(&mut self, key: (String, String)) {
        self.0.retain(|_, t| t.elapsed() < ABSENT_FOR);
        if self.0.len() >= ABSENT_MAX {
            if let Some(oldest) = self
                .0
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                self.0.remove(&oldest);
            }
        }
        self.0.insert(key, Instant::now());
    }

    fn remove(&mut self, key: &(String, String)) {
        self.0.remove(key);
    }
}

/// What multus never reads of a pod: the spec (but `nodeName`) and the
/// managed fields. A `pods/status` write keeps the stored spec whatever is
/// sent, so the stripped pod is still a valid body for it.
fn strip(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    pod.spec = Some(PodSpec {
        node_name,
        ..Default::default()
    });
}

/// Keeps `writer`'s store current from a watch of `api` (objects trimmed by
/// `modify`), relisting with backoff when the watch breaks; counts its
/// events. `streaming` says whether the store is current: false from an
/// error until the watch delivers again (a relist counts once it is done).
fn keep<K>(
    api: Api<K>,
    config: watcher::Config,
    modify: impl FnMut(&mut K) + Send + 'static,
    writer: reflector::store::Writer<K>,
    metrics: &Arc<Metrics>,
    kind: &'static str,
    streaming: Arc<AtomicBool>,
) where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let metrics = metrics.clone();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(modify)
        .inspect(move |e| match e {
            Ok(e) => {
                let label = CacheLabels { kind: kind.into() };
                metrics.watch_events.get_or_create(&label).inc();
                match e {
                    watcher::Event::InitDone => {
                        tracing::info!(kind, "watch cache listed");
                        streaming.store(true, Ordering::Release);
                    }
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) => {
                        streaming.store(true, Ordering::Release)
                    }
                    watcher::Event::Init | watcher::Event::InitApply(_) => {}
                }
            }
            Err(_) => streaming.store(false, Ordering::Release),
        })
        .reflect(writer);
    tokio::spawn(stream.for_each(move |r| async move {
        if let Err(e) = r {
            tracing::warn!(kind, error = %e, "watch");
        }
    }));
}

/// How often an idle daemon asks the API server something, so a pooled
/// connection is always open (hyper closes one idle for 90 s).
const KEEP_OPEN: Duration = Duration::from_secs(30);

/// The watches hold their connections; without this the first pod after
/// start (or after a quiet minute) pays a new connection and TLS handshake
/// for its network-status write. Once the caches are listed (their lists
/// done, their watches streaming), a `GET /version` leaves a connection in
/// the pool, and again every [`KEEP_OPEN`].
fn keep_a_connection_open(
    client: kube::Client,
    pods: Option<Store<Pod>>,
    nads: Store<DynamicObject>,
) {
    tokio::spawn(async move {
        if let Some(p) = &pods {
            let _ = p.wait_until_ready().await;
        }
        let _ = nads.wait_until_ready().await;
        loop {
            if let Err(e) = client.apiserver_version().await {
                tracing::debug!(error = %e, "keeping a connection to the API server open");
            }
            tokio::time::sleep(KEEP_OPEN).await;
        }
    });
}

impl Cluster {
    /// Connects and starts the watches on the current runtime; the caches
    /// fill in the background (until then, every read is live).
    pub async fn start(
        credentials: &Credentials,
        node: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, String> {
        let client = credentials.client().await?;
        let pods = node.map(|node| {
            let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
            let writer = reflector::store::Writer::default();
            let reader = writer.as_reader();
            keep(
                Api::all(client.clone()),
                config,
                strip,
                writer,
                &metrics,
                "pods",
                Default::default(),
            );
            reader
        });
        let nads_streaming = Arc::new(AtomicBool::new(false));
        let nads = {
            let writer = reflector::store::Writer::new(nad_resource());
            let reader = writer.as_reader();
            keep(
                Api::all_with(client.clone(), &nad_resource()),
                watcher::Config::default(),
                |o: &mut DynamicObject| o.metadata.managed_fields = None,
                writer,
                &metrics,
                "network-attachment-definitions",
                nads_streaming.clone(),
            );
            reader
        };
        keep_a_connection_open(client.clone(), pods.clone(), nads.clone());
        let cluster = Arc::new(Self {
            client,
            runtime: tokio::runtime::Handle::current(),
            pods,
            nads,
            nads_streaming,
            absent: Default::default(),
        });
        let sizes = cluster.clone();
        metrics.cache_objects(move || {
            let mut out = vec![(
                "network-attachment-definitions",
                sizes.nads.state().len() as i64,
            )];
            if let Some(p) = &sizes.pods {
                out.push(("pods", p.state().len() as i64));
            }
            out
        });
        Ok(cluster)
    }

    /// Waits, at most `bound`, for the caches' first lists: whether they
    /// are in. A daemon that serves only then reads its first pods from
    /// them instead of paying a live GET each.
    pub async fn wait_listed(&self, bound: Duration) -> bool {
        let listed = async {
            if let Some(p) = &self.pods {
                let _ = p.wait_until_ready().await;
            }
            let _ = self.nads.wait_until_ready().await;
        };
        tokio::time::timeout(bound, listed).await.is_ok()
    }

    fn ready<K>(store: &Store<K>) -> bool
    where
        K: kube::Resource + Clone + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        // `wait_until_ready` resolves at once when the first list is in.
        futures_util::FutureExt::now_or_never(store.wait_until_ready()).is_some()
    }

    fn cached_pod(&self, want: &PodRef) -> Option<Pod> {
        let store = self.pods.as_ref().filter(|s| Self::ready(s))?;
        let pod = store.get(&ObjectRef::new(&want.name).within(&want.namespace))?;
        // A pod recreated under the same name: the cache may be behind.
        check_uid(&pod, want).ok()?;
        Some((*pod).clone())
    }

    /// The cache's answer: the NAD, or NotFound when the API server said
    /// so within `ABSENT_FOR` and the watch has not brought it since.
    fn cached_nad(&self, namespace: &str, name: &str) -> Option<Result<Nad, KubeError>> {
        if let Some(obj) = self.nad_in_cache(namespace, name)? {
            return Some(Ok(Nad::from_object(&obj)));
        }
        let absent = self.absent.lock().unwrap_or_else(|p| p.into_inner());
        absent
            .missing(&(namespace.to_string(), name.to_string()))
            .then(|| {
                Err(KubeError {
                    call: format!("GET network-attachment-definition {namespace}/{name}"),
                    kind: multus::k8s::client::Kind::NotFound,
                    msg: format!(
                        "not found (the API server's answer within the last {} s)",
                        ABSENT_FOR.as_secs()
                    ),
                })
            })
    }

    /// What the NAD cache holds of `namespace/name`; `None` while it is
    /// still listing.
    fn nad_in_cache(&self, namespace: &str, name: &str) -> Option<Option<Arc<DynamicObject>>> {
        Self::ready(&self.nads).then(|| {
            self.nads
                .get(&ObjectRef::new_with(name, nad_resource()).within(namespace))
        })
    }

    /// Whether the NAD cache, listed and streaming, lacks `namespace/name`.
    fn nad_known_absent(&self, namespace: &str, name: &str) -> bool {
        self.nads_streaming.load(Ordering::Acquire)
            && matches!(self.nad_in_cache(namespace, name), Some(None))
    }

    /// Remembers what a live GET said of a NAD's existence.
    fn learn_nad(&self, namespace: &str, name: &str, answer: &Result<Nad, KubeError>) {
        let key = (namespace.to_string(), name.to_string());
        let mut absent = self.absent.lock().unwrap_or_else(|p| p.into_inner());
        match answer {
            Err(e) if e.kind == multus::k8s::client::Kind::NotFound => absent.insert(key),
            Ok(_) => {
                absent.remove(&key);
            }
            Err(_) => {}
        }
    }
}

/// One request's handle on the shared cluster view.
struct Session {
    cluster: Arc<Cluster>,
    live: Kube,
}

impl ClusterApi for Session {
    fn get_pod(&self, pod: &PodRef, read: Read) -> Result<Pod, KubeError> {
        if read == Read::Cached {
            if let Some(p) = self.cluster.cached_pod(pod) {
                return Ok(p);
            }
        }
        self.live.get_pod(&pod.namespace, &pod.name)
    }

    fn replace_pod_status(&self, pod: &Pod) -> Result<Pod, KubeError> {
        self.live.replace_pod_status(pod)
    }

    fn create_event(&self, event: &Event) -> Result<Event, KubeError> {
        self.live.create_event(event)
    }

    fn create_events(&self, events: &[Event]) -> Vec<Result<(), KubeError>> {
        self.live.create_events(events)
    }

    fn replace_pod_status_with_events(
        &self,
        pod: &Pod,
        events: &[Event],
    ) -> (Result<Pod, KubeError>, Vec<Result<(), KubeError>>) {
        self.live.replace_pod_status_with_events(pod, events)
    }

    fn nad_known_absent(&self, namespace: &str, name: &str) -> bool {
        self.cluster.nad_known_absent(namespace, name)
    }

    fn get_nad(&self, namespace: &str, name: &str) -> Result<Nad, KubeError> {
        self.get_nads(&[(namespace.to_string(), name.to_string())])
            .pop()
            .expect("one answer per key")
    }

    /// The cache's answers, and the misses fetched at once.
    fn get_nads(&self, keys: &[(String, String)]) -> Vec<Result<Nad, KubeError>> {
        let mut out: Vec<Option<Result<Nad, KubeError>>> = keys
            .iter()
            .map(|(ns, name)| self.cluster.cached_nad(ns, name))
            .collect();
        let misses: Vec<(String, String)> = keys
            .iter()
            .zip(&out)
            .filter(|(_, o)| o.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        let fetched = self.live.get_nads(&misses);
        for ((ns, name), answer) in misses.iter().zip(&fetched) {
            self.cluster.learn_nad(ns, name, answer);
        }
        let mut fetched = fetched.into_iter();
        for slot in out.iter_mut().filter(|o| o.is_none()) {
            *slot = fetched.next();
        }
        out.into_iter()
            .map(|o| o.expect("every key answered"))
            .collect()
    }
}

/// Every request's API client: the daemon's shared one when it has
/// credentials, else the request's conf's kubeconfig as the thin binary does.
pub struct Connector(pub Option<Arc<Cluster>>);

impl Connect for Connector {
    fn connect(
        &self,
        conf: &MultusConf,
        timeout: Duration,
    ) -> Result<Option<Box<dyn ClusterApi>>, KubeError> {
        let Some(cluster) = &self.0 else {
            return FromKubeconfig.connect(conf, timeout);
        };
        Ok(Some(Box::new(Session {
            live: Kube::shared(cluster.runtime.clone(), cluster.client.clone(), timeout),
            cluster: cluster.clone(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_names_are_bounded_and_forgotten_when_found() {
        let key = |i: usize| ("ns".to_string(), format!("n{i}"));
        let mut a = Absent::default();
        a.insert(key(0));
        assert!(a.missing(&key(0)) && !a.missing(&key(1)));
        for i in 1..=ABSENT_MAX + 500 {
            a.insert(key(i));
        }
        assert_eq!(a.0.len(), ABSENT_MAX);
        assert!(!a.missing(&key(0)), "the oldest went first");
        assert!(a.missing(&key(ABSENT_MAX + 500)));
        a.remove(&key(ABSENT_MAX + 500));
        assert!(!a.missing(&key(ABSENT_MAX + 500)));
    }
}
