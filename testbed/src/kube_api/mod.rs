//! An in-process Kubernetes API server for tests and the demo: HTTPS with a
//! CA of its own, bearer-token auth, and the endpoints multus uses (GET pod,
//! PUT pods/status, GET and POST network-attachment-definitions, list and
//! watch of pods by node and of all NADs). Objects and `Status`
//! errors have the shape a real kube-apiserver sends (see `fixtures/`, copied
//! from answers of a v1.36 apiserver); `resourceVersion` is checked on
//! status writes exactly as the apiserver does.
//!
//! It listens on 127.0.0.1 inside a test's node netns, so no traffic leaves
//! namespaces the test owns.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_rustls::rustls;

use super::background::Background;
use super::{listen_in, Netns};
use watch::{Change, Collection, Query};

mod custom;
mod protobuf;
mod watch;

const POD: &str = include_str!("../fixtures/pod.json");
const NAD: &str = include_str!("../fixtures/nad.json");

/// The node every pod added here is scheduled to.
pub const NODE: &str = "node1";

struct State {
    pods: BTreeMap<(String, String), Value>,
    nads: BTreeMap<(String, String), Value>,
    events: Vec<Value>,
    token: String,
    resource_version: u64,
    log: Vec<String>,
    /// Status writes to answer with 409 after another writer's update.
    conflicts: u32,
    /// (path substring, delay, how many more requests).
    delays: Vec<(String, Duration, u32)>,
    /// (path substring, delay) for the first write (POST or PUT) of such
    /// a path only: a fresh API server's first write of a kind.
    first_writes: Vec<(String, Duration)>,
    /// (method, path substring, status code, how many more requests).
    faults: Vec<(Method, String, StatusCode, u32)>,
    /// (method, path substring, how many more requests) to reset
    /// without an answer.
    resets: Vec<(Method, String, u32)>,
    /// Requests answered late, after they took effect (`answer_late`).
    late: Vec<(Method, String, Duration, u32)>,
    /// Path substrings whose requests wait unanswered until `release`,
    /// and how many requests have been held so far.
    holds: Vec<String>,
    held: u64,
    releases: tokio::sync::watch::Sender<u64>,
    /// Down: every new connection is closed at once, as a stopped server's
    /// would be refused (`set_down`); the state survives for when it is up.
    down: bool,
    /// Injected faults that took effect: answers failed or delayed, and
    /// connections closed while down (what `faults_fired` reports).
    fired: u64,
    /// whereabouts' custom resources.
    custom: custom::Objects,
    /// The watch cache of custom objects, as `resourceVersion=0` GETs see
    /// it: the objects of the plurals `lag_cache` froze, as they were then
    /// (absent ones absent), until `catch_up_cache`; else `custom` itself.
    cache_lag: custom::Objects,
    lagging: Vec<String>,
    /// GETs of custom objects answered from the watch cache.
    cached_reads: u64,
    /// Who applied each object written by server-side apply (one manager
    /// per object), by (plural, namespace, name).
    appliers: BTreeMap<(String, String, String), String>,
    /// TLS connections accepted so far, and how many of them speak HTTP/2.
    connections: u64,
    h2_connections: u64,
    /// What is being answered now (`METHOD path` each), and the most at
    /// once so far among those matching each tracked set of substrings.
    answering: Vec<String>,
    peaks: Vec<(Vec<String>, u32)>,
    /// DaemonSets by (namespace, name), for the installer's owner check.
    daemonsets: BTreeMap<(String, String), Value>,
    /// Node objects by name (only what a WasmPluginNode's owner needs).
    /// Nodes, keyed ("", name) as the namespaced collections are.
    nodes: BTreeMap<(String, String), Value>,
    /// Every change since `history_start`, for watches to replay.
    history: Vec<Change>,
    history_start: u64,
    /// The latest change's resourceVersion, waking the watches.
    changes: tokio::sync::watch::Sender<u64>,
    /// Counts the times the server went down: every connection open then
    /// is closed.
    downs: tokio::sync::watch::Sender<u64>,
}

impl State {
    fn next_rv(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// Keeps `object` (which carries its new resourceVersion) for watches.
    fn record(&mut self, collection: Collection, kind: &'static str, object: Value) {
        let rv = object["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("a stored object has a resourceVersion");
        self.history.push(Change {
            rv,
            collection,
            kind,
            object,
        });
        self.changes.send_replace(rv);
    }

    /// A pod or NAD added or replaced.
    fn put(&mut self, collection: Collection, key: (String, String), object: Value) {
        let map = match collection {
            Collection::Pods => &mut self.pods,
            Collection::Nads => &mut self.nads,
            Collection::Nodes => &mut self.nodes,
            Collection::WasmPlugins | Collection::WasmPluginNodes => {
                unreachable!("custom.rs stores custom objects")
            }
        };
        let kind = if map.insert(key, object.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.record(collection, kind, object);
    }

    fn delete(&mut self, collection: Collection, key: &(String, String)) {
        let removed = match collection {
            Collection::Pods => self.pods.remove(key),
            Collection::Nads => self.nads.remove(key),
            Collection::Nodes => self.nodes.remove(key),
            Collection::WasmPlugins | Collection::WasmPluginNodes => {
                unreachable!("custom.rs stores custom objects")
            }
        };
        if let Some(mut object) = removed {
            object["metadata"]["resourceVersion"] = self.next_rv().into();
            self.record(collection, "DELETED", object);
        }
    }
}

pub struct FakeKubeApi {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    state: Arc<Mutex<State>>,
    server: Background,
}

fn status(code: StatusCode, reason: &str, message: String, details: Value) -> (StatusCode, Value) {
    let mut v = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    if !details.is_null() {
        v["details"] = details;
    }
    (code, v)
}

/// The apiserver's 404 for a path it serves nothing at.
fn no_such_resource() -> (StatusCode, Value) {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource".into(),
        Value::Null,
    )
}

impl FakeKubeApi {
    /// Starts the server on 127.0.0.1 of `ns` (which must have `lo` up),
    /// accepting the bearer token `token` or a client certificate of its CA;
    /// writes a kubeconfig for each (the token one reads a token file).
    pub fn start(ns: &Netns, token: &str) -> io::Result<Self> {
        Self::start_on(ns, token, std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// `start` on `ip`, an address of `ns` (a server that is not loopback,
    /// as a real API server is not, for what proxies do with it).
    pub fn start_on(ns: &Netns, token: &str, ip: std::net::IpAddr) -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let other = |e: String| io::Error::other(e);
        let ca = crate::test_ca::TestCa::new("multus-test-ca")?;
        let (leaf, key) = ca.server(&ip.to_string())?;
        std::fs::write(dir.path().join("ca.crt"), ca.pem())?;
        // A client certificate from the same CA, for kubeconfigs that
        // authenticate with one instead of a token (kubelet-style).
        let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| other(e.to_string()))?;
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:multus");
        client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let (client, client_key) = ca.sign(client_params)?;
        std::fs::write(dir.path().join("client.crt"), client.pem())?;
        std::fs::write(dir.path().join("client.key"), client_key.serialize_pem())?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.der().clone())
            .map_err(|e| other(e.to_string()))?;
        let client_auth = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| other(e.to_string()))?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| other(e.to_string()))?
            .with_client_cert_verifier(client_auth)
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .map_err(|e| other(e.to_string()))?;
        // As kube-apiserver: HTTP/2 to a client offering it, else HTTP/1.1.
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = listen_in(ns, (ip, 0).into())?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            pods: BTreeMap::new(),
            nads: BTreeMap::new(),
            events: Vec::new(),
            token: token.to_string(),
            resource_version: 1000,
            log: Vec::new(),
            conflicts: 0,
            delays: Vec::new(),
            first_writes: Vec::new(),
            faults: Vec::new(),
            resets: Vec::new(),
            late: Vec::new(),
            holds: Vec::new(),
            held: 0,
            releases: tokio::sync::watch::Sender::new(0),
            cache_lag: custom::Objects::new(),
            lagging: Vec::new(),
            cached_reads: 0,
            down: false,
            fired: 0,
            custom: Default::default(),
            daemonsets: Default::default(),
            nodes: Default::default(),
            appliers: BTreeMap::new(),
            connections: 0,
            h2_connections: 0,
            answering: Vec::new(),
            peaks: Vec::new(),
            history: Vec::new(),
            history_start: 0,
            changes: tokio::sync::watch::Sender::new(1000),
            downs: tokio::sync::watch::Sender::new(0),
        }));
        let st = state.clone();
        let server = Background::spawn(move |mut stop| async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    conn = listener.accept() => {
                        let Ok((tcp, _)) = conn else { continue };
                        // As Go's net package does for every TCP connection
                        // (kube-apiserver's included): with Nagle on, an
                        // HTTP/2 frame waits for the client's delayed ACK.
                        let _ = tcp.set_nodelay(true);
                        {
                            let mut s = st.lock().unwrap();
                            if s.down {
                                s.fired += 1;
                                drop(tcp);
                                continue;
                            }
                        }
                        let (acceptor, st) = (acceptor.clone(), st.clone());
                        let mut downs = st.lock().unwrap().downs.subscribe();
                        tokio::spawn(async move {
                            let Ok(tls) = acceptor.accept(tcp).await else { return };
                            // The verifier only lets through certificates of our CA.
                            let client_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                            {
                                let mut s = st.lock().unwrap();
                                s.connections += 1;
                                s.h2_connections += u64::from(h2);
                            }
                            let svc = hyper::service::service_fn(move |req| handle(st.clone(), client_cert, req));
                            let io = TokioIo::new(tls);
                            let serve = async move {
                                if h2 {
                                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                                        .serve_connection(io, svc)
                                        .await
                                } else {
                                    hyper::server::conn::http1::Builder::new()
                                        .serve_connection(io, svc)
                                        .await
                                }
                            };
                            // A server going down closes the connections it
                            // has, not only the new ones: a client that kept
                            // one (the daemon's) meets the outage too.
                            tokio::select! {
                                _ = serve => {}
                                _ = downs.changed() => {}
                            }
                        });
                    }
                }
            }
        });
        let api = Self {
            addr,
            dir,
            state,
            server,
        };
        api.write_token_file(token)?;
        api.write_kubeconfig(&api.kubeconfig(), json!({"tokenFile": api.token_file()}))?;
        api.write_kubeconfig(
            &api.client_cert_kubeconfig(),
            json!({"client-certificate": api.dir.path().join("client.crt"),
                   "client-key": api.dir.path().join("client.key")}),
        )?;
        Ok(api)
    }

    fn write_kubeconfig(&self, path: &std::path::Path, user: Value) -> io::Result<()> {
        let config = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": format!("https://{}", self.addr),
                "certificate-authority": self.dir.path().join("ca.crt")}}],
            "users": [{"name": "multus", "user": user}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "multus"}}],
            "current-context": "test"
        });
        std::fs::write(path, serde_json::to_vec_pretty(&config)?)
    }

    /// A kubeconfig authenticating with a client certificate of the server's CA.
    pub fn client_cert_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig-client-cert")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    /// What the client will send (a rotated service-account token).
    pub fn write_token_file(&self, token: &str) -> io::Result<()> {
        std::fs::write(self.token_file(), token)
    }

    /// What the server accepts from now on.
    pub fn accept_token(&self, token: &str) {
        self.state.lock().unwrap().token = token.to_string();
    }

    /// Adds a pod shaped like the fixture, with these annotations and labels.
    pub fn add_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        annotations: &[(&str, &str)],
        labels: &[(&str, &str)],
    ) {
        let mut pod: Value = serde_json::from_str(POD).expect("pod fixture");
        let mut st = self.state.lock().unwrap();
        let m = &mut pod["metadata"];
        m["name"] = name.into();
        m["namespace"] = namespace.into();
        m["uid"] = uid.into();
        m["resourceVersion"] = st.next_rv().into();
        m["annotations"] = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        if !labels.is_empty() {
            m["labels"] = labels
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(*v)))
                .collect();
        }
        m.as_object_mut().expect("metadata").remove("managedFields");
        pod["spec"]["containers"][0]["name"] = name.into();
        pod["spec"]["nodeName"] = NODE.into();
        st.put(Collection::Pods, (namespace.into(), name.into()), pod);
    }

    /// Makes DaemonSet `ds` (in the pod's namespace) the pod's controller.
    pub fn set_pod_owner(&self, namespace: &str, name: &str, ds: &str) {
        let mut st = self.state.lock().unwrap();
        let key = (namespace.to_string(), name.to_string());
        let mut pod = st.pods[&key].clone();
        pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet",
            "name": ds, "uid": format!("uid-{ds}"), "controller": true, "blockOwnerDeletion": true}]);
        pod["metadata"]["resourceVersion"] = st.next_rv().into();
        st.put(Collection::Pods, key, pod);
    }

    /// Stores DaemonSet `namespace/name`; `deleting` gives it the
    /// deletionTimestamp of a foreground deletion in progress.
    /// A Node object named `name` with `uid` (added, or replaced as a
    /// kubelet's status update does: its generation stays).
    pub fn put_node(&self, name: &str, uid: &str) {
        let mut st = self.state.lock().unwrap();
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": uid, "resourceVersion": st.next_rv()}});
        st.put(Collection::Nodes, (String::new(), name.into()), node);
    }

    pub fn remove_node(&self, name: &str) {
        self.state
            .lock()
            .unwrap()
            .delete(Collection::Nodes, &(String::new(), name.into()));
    }

    pub fn put_daemonset(&self, namespace: &str, name: &str, deleting: bool) {
        let mut st = self.state.lock().unwrap();
        let mut ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"),
                         "resourceVersion": st.next_rv()},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {}}});
        if deleting {
            ds["metadata"]["deletionTimestamp"] = "2026-12-04T00:00:00Z".into();
            ds["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
        }
        st.daemonsets.insert((namespace.into(), name.into()), ds);
    }

    pub fn remove_daemonset(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.state.lock().unwrap().daemonsets.remove(&key);
    }

    pub fn remove_pod(&self, namespace: &str, name: &str) {
        self.state
            .lock()
            .unwrap()
            .delete(Collection::Pods, &(namespace.into(), name.into()));
    }

    pub fn remove_nad(&self, namespace: &str, name: &str) {
        self.state
            .lock()
            .unwrap()
            .delete(Collection::Nads, &(namespace.into(), name.into()));
    }

    /// Forgets the change history, as etcd's compaction does: a watch
    /// resuming from before now gets `410 Gone` and must relist.
    pub fn compact(&self) {
        let mut st = self.state.lock().unwrap();
        st.history.clear();
        st.history_start = st.resource_version;
    }

    /// Adds a NAD shaped like the fixture; `config` `None` leaves no spec.config.
    pub fn add_nad(
        &self,
        namespace: &str,
        name: &str,
        config: Option<&str>,
        annotations: &[(&str, &str)],
    ) {
        let mut nad: Value = serde_json::from_str(NAD).expect("nad fixture");
        let mut st = self.state.lock().unwrap();
        let m = &mut nad["metadata"];
        m["name"] = name.into();
        m["namespace"] = namespace.into();
        m["uid"] = format!("nad-{namespace}-{name}").into();
        m["resourceVersion"] = st.next_rv().into();
        m["annotations"] = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        m.as_object_mut().expect("metadata").remove("managedFields");
        nad["spec"] = match config {
            Some(c) => json!({"config": c}),
            None => json!({}),
        };
        st.put(Collection::Nads, (namespace.into(), name.into()), nad);
    }

    /// The stored NAD, as a GET would return it.
    pub fn nad(&self, namespace: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .nads
            .get(&(namespace.into(), name.into()))
            .cloned()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .pods
            .get(&(namespace.into(), name.into()))
            .cloned()
    }

    pub fn annotation(&self, namespace: &str, name: &str, key: &str) -> Option<String> {
        self.pod(namespace, name)?["metadata"]["annotations"][key]
            .as_str()
            .map(String::from)
    }

    /// The next `n` status writes find the pod changed by another writer.
    pub fn conflict_next_status_writes(&self, n: u32) {
        self.state.lock().unwrap().conflicts = n;
    }

    /// The next `times` requests whose path contains `path_part` are answered
    /// after `delay`.
    pub fn delay(&self, path_part: &str, delay: Duration, times: u32) {
        self.state
            .lock()
            .unwrap()
            .delays
            .push((path_part.into(), delay, times));
    }

    /// Every request whose path contains `path_part` waits unanswered
    /// until `release` (each counted a fault fired): a test sees what its
    /// clients do while a request is in flight, however slow the machine,
    /// where a fixed delay races them.
    pub fn hold(&self, path_part: &str) {
        self.state.lock().unwrap().holds.push(path_part.into());
    }

    /// How many requests `hold` has held so far: one arrived, where its
    /// client may have been slow to send it.
    pub fn held(&self) -> u64 {
        self.state.lock().unwrap().held
    }

    /// Answers every held request, and holds no more.
    pub fn release(&self) {
        let mut st = self.state.lock().unwrap();
        st.holds.clear();
        st.releases.send_modify(|n| *n += 1);
    }

    /// The first write (POST or PUT) whose path contains `path_part` is
    /// answered after `delay`, as a real API server's first write of a
    /// custom resource kind waits while it sets up the kind's quota
    /// evaluator (2.3 s measured on a fresh one).
    pub fn slow_first_write(&self, path_part: &str, delay: Duration) {
        self.state
            .lock()
            .unwrap()
            .first_writes
            .push((path_part.into(), delay));
    }

    /// The next `times` `method` requests whose path contains `path_part`
    /// are answered with `code` and the apiserver's Status for it (409
    /// Conflict, 429, 500, 503...), as when another writer wins or the
    /// server is overloaded.
    pub fn fail_next(&self, method: &str, path_part: &str, code: u16, times: u32) {
        let method = Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let code = StatusCode::from_u16(code).expect("an HTTP status");
        self.state
            .lock()
            .unwrap()
            .faults
            .push((method, path_part.into(), code, times));
    }

    /// The next `times` `method` requests whose path contains `path_part`
    /// get no answer: the stream is reset (HTTP/2; HTTP/1.1 closes the
    /// connection), as when a connection dies under a request.
    pub fn reset_next(&self, method: &str, path_part: &str, times: u32) {
        let method = Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        self.state
            .lock()
            .unwrap()
            .resets
            .push((method, path_part.into(), times));
    }

    /// The next `times` `method` requests whose path contains `path_part`
    /// take effect at once but are answered after `delay`, as from an API
    /// server under load: a client that gave up first never learns a
    /// write landed.
    pub fn answer_late(&self, method: &str, path_part: &str, delay: Duration, times: u32) {
        let method = Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        self.state
            .lock()
            .unwrap()
            .late
            .push((method, path_part.into(), delay, times));
    }

    /// How many injected faults have taken effect so far (a failed or
    /// delayed answer, a connection closed while down): what a test counts,
    /// rather than the faults it set up.
    pub fn faults_fired(&self) -> u64 {
        self.state.lock().unwrap().fired
    }

    /// Forgets every injected fault and delay not yet used up, and comes
    /// back up.
    pub fn clear_faults(&self) {
        let mut st = self.state.lock().unwrap();
        st.faults.clear();
        st.resets.clear();
        st.delays.clear();
        st.first_writes.clear();
        st.holds.clear();
        st.releases.send_modify(|n| *n += 1);
        st.down = false;
    }

    /// Down (new connections closed at once) or up again, keeping every
    /// object: a stopped API server that comes back.
    pub fn set_down(&self, down: bool) {
        let mut st = self.state.lock().unwrap();
        st.down = down;
        if down {
            st.downs.send_modify(|n| *n += 1);
        }
    }

    /// A custom object (or ConfigMap) of `plural`, as a GET would return
    /// it; `namespace` empty for a cluster-scoped kind.
    pub fn custom_object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .custom
            .get(&(plural.into(), namespace.into(), name.into()))
            .cloned()
    }

    /// From now on the watch cache falls behind for `plural`: GETs with
    /// `resourceVersion=0` answer its objects as they are now, whatever is
    /// written after, as a real API server's cache does for the moment a
    /// write takes to reach it.
    pub fn lag_cache(&self, plural: &str) {
        let mut st = self.state.lock().unwrap();
        let now: Vec<_> = st
            .custom
            .iter()
            .filter(|((p, _, _), _)| p == plural)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        st.cache_lag.retain(|(p, _, _), _| p != plural);
        st.cache_lag.extend(now);
        st.lagging.push(plural.to_string());
    }

    /// The watch cache has every write again.
    pub fn catch_up_cache(&self) {
        let mut st = self.state.lock().unwrap();
        st.cache_lag.clear();
        st.lagging.clear();
    }

    /// GETs of custom objects answered from the watch cache so far.
    pub fn cached_reads(&self) -> u64 {
        self.state.lock().unwrap().cached_reads
    }

    /// Every custom object of `plural` in `namespace`.
    pub fn custom_objects(&self, plural: &str, namespace: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .custom
            .iter()
            .filter(|((p, n, _), _)| p == plural && n == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Stores `object` (a whereabouts object another writer made), with a
    /// fresh resourceVersion.
    pub fn put_custom(&self, plural: &str, namespace: &str, mut object: Value) {
        let mut st = self.state.lock().unwrap();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let rv = st.next_rv();
        if !namespace.is_empty() {
            object["metadata"]["namespace"] = namespace.into();
        }
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = format!("{plural}-{namespace}-{name}-{rv}").into();
        }
        object["metadata"]["resourceVersion"] = rv.into();
        let kind = if st
            .custom
            .insert((plural.into(), namespace.into(), name), object.clone())
            .is_some()
        {
            "MODIFIED"
        } else {
            "ADDED"
        };
        custom::record(&mut st, plural, kind, object);
    }

    /// Deletes a custom object (or ConfigMap), as another client would.
    pub fn delete_custom(&self, plural: &str, namespace: &str, name: &str) {
        let mut st = self.state.lock().unwrap();
        if let Some(o) = st
            .custom
            .remove(&(plural.into(), namespace.into(), name.into()))
        {
            custom::record(&mut st, plural, "DELETED", o);
        }
    }

    /// Events created so far, as stored.
    pub fn events(&self) -> Vec<Value> {
        self.state.lock().unwrap().events.clone()
    }

    /// "METHOD path status" of every request so far.
    /// TLS connections accepted so far, and how many of them speak HTTP/2.
    pub fn connections(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap();
        (s.connections, s.h2_connections)
    }

    /// From now on, tracks the most requests answered at once among those
    /// whose `METHOD path` contains any of `parts` ([`Self::peak`]).
    pub fn track_peak(&self, parts: &[&str]) {
        let parts = parts.iter().map(|p| p.to_string()).collect();
        self.state.lock().unwrap().peaks.push((parts, 0));
    }

    /// The most requests matching `parts` answered at once since
    /// `track_peak(parts)`: whether a client sent them concurrently.
    pub fn peak(&self, parts: &[&str]) -> u32 {
        let st = self.state.lock().unwrap();
        st.peaks
            .iter()
            .find(|(p, _)| p.iter().map(String::as_str).eq(parts.iter().copied()))
            .map_or(0, |(_, n)| *n)
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    /// Stops answering: connections are refused from now on.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

/// Counts a request in flight while it is answered.
struct Answering(Arc<Mutex<State>>, String);

impl Answering {
    fn new(state: &Arc<Mutex<State>>, request: String) -> Self {
        let mut st = state.lock().unwrap();
        st.answering.push(request.clone());
        let State {
            answering, peaks, ..
        } = &mut *st;
        for (parts, peak) in peaks.iter_mut() {
            let now = answering
                .iter()
                .filter(|r| parts.iter().any(|p| r.contains(p.as_str())))
                .count() as u32;
            *peak = (*peak).max(now);
        }
        Self(state.clone(), request)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = st.answering.iter().position(|r| *r == self.1) {
            st.answering.swap_remove(i);
        }
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

async fn handle(
    state: Arc<Mutex<State>>,
    client_cert: bool,
    req: Request<Incoming>,
) -> Result<Response<Body>, Box<dyn std::error::Error + Send + Sync>> {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let answer = serve(state.clone(), client_cert, req).await;
    let late = {
        let mut st = state.lock().unwrap();
        let d = st
            .late
            .iter_mut()
            .find(|(m, p, _, n)| *n > 0 && *m == method && path.contains(p.as_str()))
            .map(|(_, _, d, n)| {
                *n -= 1;
                *d
            });
        st.fired += u64::from(d.is_some());
        d
    };
    if let Some(d) = late {
        tokio::time::sleep(d).await;
    }
    answer
}

async fn serve(
    state: Arc<Mutex<State>>,
    client_cert: bool,
    req: Request<Incoming>,
) -> Result<Response<Body>, Box<dyn std::error::Error + Send + Sync>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    {
        let mut st = state.lock().unwrap();
        if let Some((_, _, n)) = st
            .resets
            .iter_mut()
            .find(|(m, p, n)| *n > 0 && *m == method && path.contains(p.as_str()))
        {
            *n -= 1;
            st.fired += 1;
            st.log.push(format!("{method} {path} reset"));
            return Err("reset by the test".into());
        }
    }
    let _answering = Answering::new(&state, format!("{method} {path}"));
    let query = req.uri().query().unwrap_or_default().to_string();
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(String::from);
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let protobuf = content_type.starts_with(protobuf::CONTENT_TYPE);
    let body = req.into_body().collect().await?.to_bytes();
    let body = match protobuf {
        true => match protobuf::to_json(&body) {
            Ok(json) => Bytes::from(json),
            Err(e) => {
                let (code, value) = status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("the protobuf body does not decode: {e}"),
                    Value::Null,
                );
                return Ok(json_response(code, &value));
            }
        },
        false => body,
    };
    let (delay, held) = {
        let mut st = state.lock().unwrap();
        let d = st
            .delays
            .iter_mut()
            .find(|(p, _, n)| *n > 0 && path.contains(p.as_str()));
        let mut d = d.map(|(_, d, n)| {
            *n -= 1;
            *d
        });
        if matches!(method, Method::POST | Method::PUT) {
            if let Some(i) = st
                .first_writes
                .iter()
                .position(|(p, _)| path.contains(p.as_str()))
            {
                d = Some(d.unwrap_or_default() + st.first_writes.remove(i).1);
            }
        }
        st.fired += u64::from(d.is_some());
        let held = st.holds.iter().any(|p| path.contains(p.as_str()));
        st.fired += u64::from(held);
        st.held += u64::from(held);
        (d, held.then(|| st.releases.subscribe()))
    };
    if let Some(mut released) = held {
        let _ = released.changed().await;
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let collection = match (&method, path.as_str()) {
        (&Method::GET, "/api/v1/pods") => Some(Collection::Pods),
        (&Method::GET, "/api/v1/nodes") => Some(Collection::Nodes),
        (&Method::GET, "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions") => {
            Some(Collection::Nads)
        }
        // Listed by custom.rs; only a watch is served from the history.
        (&Method::GET, p)
            if query
                .split('&')
                .any(|kv| kv == "watch=true" || kv == "watch=1") =>
        {
            p.strip_prefix("/apis/multus-wasm.io/v1alpha1/")
                .and_then(Collection::of_custom)
        }
        _ => None,
    };
    let (code, value) = {
        let mut st = state.lock().unwrap();
        let fault = st
            .faults
            .iter_mut()
            .find(|(m, p, _, n)| *n > 0 && *m == method && path.contains(p.as_str()))
            .map(|(_, _, code, n)| {
                *n -= 1;
                *code
            });
        st.fired += u64::from(fault.is_some());
        let answer = if !authorized(&st, client_cert, auth.as_deref()) {
            unauthorized()
        } else if let Some(code) = fault {
            injected(code)
        } else if let Some(c) = collection {
            match Query::parse(c, &query) {
                Ok(q) if q.watch => {
                    st.log.push(format!("{method} {path}?watch 200"));
                    drop(st);
                    return Ok(Response::builder()
                        .status(StatusCode::OK)
                        .header("content-type", "application/json")
                        .body(watch::stream(state.clone(), c, q).boxed())
                        .expect("response"));
                }
                Ok(q) => watch::list(&st, c, &q),
                Err(e) => e,
            }
        } else {
            route(&mut st, &method, &path, &query, &content_type, &body)
        };
        // A selector is part of what was asked: kept in the log.
        let selector = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "labelSelector")
            .map(|(_, v)| format!("?labelSelector={v}"))
            .unwrap_or_default();
        st.log
            .push(format!("{method} {path}{selector} {}", answer.0.as_u16()));
        answer
    };
    Ok(json_response(code, &value))
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(value).expect("json"))).boxed())
        .expect("response")
}

/// A client certificate of the server's CA, or the current bearer token.
fn authorized(st: &State, client_cert: bool, auth: Option<&str>) -> bool {
    client_cert || auth == Some(format!("Bearer {}", st.token).as_str())
}

/// The apiserver's Status for an injected failure.
fn injected(code: StatusCode) -> (StatusCode, Value) {
    let reason = match code {
        StatusCode::CONFLICT => "Conflict",
        StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        _ => "InternalError",
    };
    let message = match code {
        StatusCode::CONFLICT => "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again".to_string(),
        other => format!("{} (injected by the test)", other.canonical_reason().unwrap_or("error")),
    };
    status(code, reason, message, Value::Null)
}

fn unauthorized() -> (StatusCode, Value) {
    status(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "Unauthorized".into(),
        Value::Null,
    )
}

fn route(
    st: &mut State,
    method: &Method,
    path: &str,
    query: &str,
    content_type: &str,
    body: &[u8],
) -> (StatusCode, Value) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let asked = custom::Asked {
        method,
        query,
        body,
    };
    match (method, parts.as_slice()) {
        (&Method::GET, ["version"]) => (
            StatusCode::OK,
            json!({"major": "1", "minor": "36", "gitVersion": "v1.36.2",
                   "goVersion": "go1.25.5", "compiler": "gc", "platform": "linux/amd64"}),
        ),
        (&Method::GET, ["api", "v1", "namespaces", ns, "pods", name]) => {
            match st.pods.get(&(ns.to_string(), name.to_string())) {
                Some(p) => (StatusCode::OK, p.clone()),
                None => not_found("pods", "", name),
            }
        }
        (&Method::POST, ["api", "v1", "namespaces", ns, "events"]) => {
            let Ok(mut ev) = serde_json::from_slice::<Value>(body) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the body is not an Event".into(),
                    Value::Null,
                );
            };
            if ev["metadata"]["namespace"] != *ns {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                    Value::Null,
                );
            }
            // Names are unique per namespace: the real API server refuses
            // a second Event of one name (409 AlreadyExists).
            let name = ev["metadata"]["name"].clone();
            if st
                .events
                .iter()
                .any(|e| e["metadata"]["namespace"] == *ns && e["metadata"]["name"] == name)
            {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!("events {name} already exists"),
                    json!({"name": name, "kind": "events"}),
                );
            }
            let rv = st.next_rv();
            ev["metadata"]["uid"] = format!("event-{rv}").into();
            ev["metadata"]["resourceVersion"] = rv.into();
            st.events.push(ev.clone());
            (StatusCode::CREATED, ev)
        }
        (&Method::PUT, ["api", "v1", "namespaces", ns, "pods", name, "status"]) => {
            let key = (ns.to_string(), name.to_string());
            let Ok(new) = serde_json::from_slice::<Value>(body) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the body is not a Pod".into(),
                    Value::Null,
                );
            };
            if !st.pods.contains_key(&key) {
                return not_found("pods", "", name);
            }
            if st.conflicts > 0 {
                // Another writer (the kubelet, say) updates the pod first.
                st.conflicts -= 1;
                let rv = st.next_rv();
                let mut pod = st.pods[&key].clone();
                pod["metadata"]["resourceVersion"] = rv.into();
                st.put(Collection::Pods, key.clone(), pod);
            }
            let rv = st.next_rv();
            let stored = st.pods.get_mut(&key).expect("present");
            if new["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"] {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("Operation cannot be fulfilled on pods \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
                    json!({"name": name, "kind": "pods"}),
                );
            }
            // pods/status takes status and metadata changes, never spec.
            stored["metadata"]["annotations"] = new["metadata"]["annotations"].clone();
            stored["metadata"]["labels"] = new["metadata"]["labels"].clone();
            if !new["status"].is_null() {
                stored["status"] = new["status"].clone();
            }
            stored["metadata"]["resourceVersion"] = rv.into();
            let stored = stored.clone();
            st.put(Collection::Pods, key, stored.clone());
            (StatusCode::OK, stored)
        }
        (
            &Method::GET,
            ["apis", "k8s.cni.cncf.io", "v1", "namespaces", ns, "network-attachment-definitions", name],
        ) => match st.nads.get(&(ns.to_string(), name.to_string())) {
            Some(n) => (StatusCode::OK, n.clone()),
            None => not_found("network-attachment-definitions", "k8s.cni.cncf.io", name),
        },
        (
            &Method::POST,
            ["apis", "k8s.cni.cncf.io", "v1", "namespaces", ns, "network-attachment-definitions"],
        ) => create_nad(st, ns, body),
        (&Method::GET, ["api", "v1", "nodes", name]) => {
            match st.nodes.get(&(String::new(), name.to_string())) {
                Some(n) => (StatusCode::OK, n.clone()),
                None => not_found("nodes", "", name),
            }
        }
        (&Method::GET, ["apis", "apps", "v1", "namespaces", ns, "daemonsets", name]) => {
            match st.daemonsets.get(&(ns.to_string(), name.to_string())) {
                Some(d) => (StatusCode::OK, d.clone()),
                None => not_found("daemonsets", "apps", name),
            }
        }
        (_, ["api", "v1", "namespaces", ns, "configmaps"]) => {
            custom::route(st, &asked, ns, "configmaps", None, false)
        }
        (_, ["api", "v1", "namespaces", ns, "configmaps", name]) => {
            custom::route(st, &asked, ns, "configmaps", Some(name), false)
        }
        (&Method::PATCH, ["apis", custom::PLUGIN_GROUP, custom::VERSION, plural, name]) => {
            custom::apply(st, plural, name, query, content_type, body)
        }
        (_, ["apis", custom::PLUGIN_GROUP, custom::VERSION, plural]) => {
            custom::route(st, &asked, "", plural, None, false)
        }
        (_, ["apis", custom::PLUGIN_GROUP, custom::VERSION, plural, name]) => {
            custom::route(st, &asked, "", plural, Some(name), false)
        }
        (_, ["apis", custom::PLUGIN_GROUP, custom::VERSION, plural, name, "status"]) => {
            custom::route(st, &asked, "", plural, Some(name), true)
        }
        (_, ["apis", custom::GROUP, custom::VERSION, "namespaces", ns, plural]) => {
            custom::route(st, &asked, ns, plural, None, false)
        }
        (_, ["apis", custom::GROUP, custom::VERSION, "namespaces", ns, plural, name]) => {
            custom::route(st, &asked, ns, plural, Some(name), false)
        }
        (
            &Method::PATCH,
            ["apis", custom::GROUP, custom::VERSION, "namespaces", ns, plural, name, "status"],
        ) => custom::patch_status(st, ns, plural, name, content_type, body),
        (_, ["apis", custom::GROUP, custom::VERSION, "namespaces", ns, plural, name, "status"]) => {
            custom::route(st, &asked, ns, plural, Some(name), true)
        }
        _ => no_such_resource(),
    }
}

/// POST of a NAD: 201 with the stored object, 409 AlreadyExists, or the
/// apiserver's 400/422 for a body it cannot take.
fn create_nad(st: &mut State, ns: &str, body: &[u8]) -> (StatusCode, Value) {
    let Ok(mut nad) = serde_json::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not a NetworkAttachmentDefinition".into(),
            Value::Null,
        );
    };
    if nad["metadata"]["namespace"]
        .as_str()
        .is_some_and(|n| n != ns)
    {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
            Value::Null,
        );
    }
    let Some(name) = nad["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(String::from)
    else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "NetworkAttachmentDefinition.k8s.cni.cncf.io \"\" is invalid: metadata.name: Required value: name or generateName is required".into(),
            json!({"group": "k8s.cni.cncf.io", "kind": "NetworkAttachmentDefinition",
                   "causes": [{"reason": "FieldValueRequired", "message": "Required value: name or generateName is required", "field": "metadata.name"}]}),
        );
    };
    let key = (ns.to_string(), name.clone());
    if st.nads.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("network-attachment-definitions.k8s.cni.cncf.io \"{name}\" already exists"),
            json!({"name": name, "group": "k8s.cni.cncf.io", "kind": "network-attachment-definitions"}),
        );
    }
    let rv = st.next_rv();
    let m = &mut nad["metadata"];
    m["namespace"] = ns.into();
    m["uid"] = format!("nad-{ns}-{name}").into();
    m["resourceVersion"] = rv.into();
    m["generation"] = 1.into();
    m["creationTimestamp"] = "2026-11-30T00:00:00Z".into();
    st.put(Collection::Nads, key, nad.clone());
    (StatusCode::CREATED, nad)
}

/// The apiserver's 404 for `name` of resource `plural` in API group
/// `group` (empty for the core group).
fn not_found(plural: &str, group: &str, name: &str) -> (StatusCode, Value) {
    let (resource, details) = match group {
        "" => (plural.to_string(), json!({"name": name, "kind": plural})),
        g => (
            format!("{plural}.{g}"),
            json!({"name": name, "group": g, "kind": plural}),
        ),
    };
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{resource} \"{name}\" not found"),
        details,
    )
}
