//! The few API calls multus makes, blocking, each with its own timeout.
//!
//! The client is built from the conf's kubeconfig (token, token file, client
//! certificate, CA: whatever kube-rs reads). A 401 rebuilds it once from the
//! kubeconfig, so a service-account token rotated since the last read is
//! picked up instead of failing the pod.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ApiResource, DynamicObject, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// How a call failed, for the caller's retry decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    Conflict,
    Unauthorized,
    Forbidden,
    /// Timeouts, refused or reset connections, 429 and 5xx: worth retrying.
    Transient,
    /// 400 and 422: the request refused as malformed.
    Invalid,
    Other,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{call}: {msg}")]
pub struct KubeError {
    pub call: String,
    pub kind: Kind,
    pub msg: String,
}

/// One collection [`Kube::wait_for_change`] watches: `res` in `ns` (empty:
/// all namespaces, or a cluster-scoped kind) from version `from`.
pub struct Watch<'a> {
    pub res: &'a ApiResource,
    pub ns: &'a str,
    pub from: &'a str,
    pub generations: &'a BTreeMap<String, i64>,
}

/// What a watch window saw ([`Kube::wait_for_change`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    pub changed: bool,
    /// Where the next window starts: the last event's or bookmark's.
    pub resource_version: String,
}

/// A NetworkAttachmentDefinition, as far as multus reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Nad {
    pub annotations: BTreeMap<String, String>,
    /// `spec.config`; `None` when absent or empty.
    pub config: Option<String>,
}

impl Nad {
    /// What multus reads of a NAD object.
    pub fn from_object(obj: &DynamicObject) -> Self {
        Self {
            annotations: obj.metadata.annotations.clone().unwrap_or_default(),
            config: obj
                .data
                .get("spec")
                .and_then(|s| s.get("config"))
                .and_then(|c| c.as_str())
                .filter(|c| !c.trim().is_empty())
                .map(String::from),
        }
    }
}

pub struct Kube {
    rt: Exec,
    /// Where the client came from, re-read on a 401; `None` for a client
    /// handed over (the daemon's, whose token files kube-rs re-reads).
    kubeconfig: Option<PathBuf>,
    client: RefCell<kube::Client>,
    /// Each request's bound; a caller with a deadline of its own sets it
    /// per call ([`Kube::set_timeout`]).
    timeout: Cell<Duration>,
}

/// Where the blocking calls run their requests.
enum Exec {
    Own(tokio::runtime::Runtime),
    /// A runtime of the caller's (the daemon's), from a thread outside it.
    Shared(tokio::runtime::Handle),
}

impl Exec {
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        // On the heap: a client future is tens of KiB, and on the stack
        // of each of the daemon's request threads it stays resident.
        let f = Box::pin(f);
        match self {
            Exec::Own(rt) => rt.block_on(f),
            Exec::Shared(h) => h.block_on(f),
        }
    }
}

/// The NAD kind as a dynamic API resource.
pub fn nad_resource() -> ApiResource {
    ApiResource {
        group: "k8s.cni.cncf.io".into(),
        version: "v1".into(),
        api_version: "k8s.cni.cncf.io/v1".into(),
        kind: "NetworkAttachmentDefinition".into(),
        plural: "network-attachment-definitions".into(),
    }
}

fn classify(call: &str, e: kube::Error) -> KubeError {
    let kind = match &e {
        kube::Error::Api(s) => match s.code {
            404 => Kind::NotFound,
            409 => Kind::Conflict,
            401 => Kind::Unauthorized,
            403 => Kind::Forbidden,
            429 | 500..=599 => Kind::Transient,
            400 | 422 => Kind::Invalid,
            _ => Kind::Other,
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => Kind::Transient,
        _ => Kind::Other,
    };
    // A 422's causes say which field or which patch op; the message alone
    // is often the API server's generic "rejected our request".
    let mut msg = e.to_string();
    if let kube::Error::Api(s) = &e {
        for cause in s.details.iter().flat_map(|d| &d.causes) {
            if !cause.message.is_empty() && !msg.contains(&cause.message) {
                msg = format!("{msg}; {}", cause.message);
            }
        }
    }
    KubeError {
        call: call.to_string(),
        kind,
        msg,
    }
}

impl Kube {
    /// Reads `kubeconfig`; `timeout` bounds each request (connect included).
    pub fn new(kubeconfig: &Path, timeout: Duration) -> Result<Self, KubeError> {
        let kc = Kubeconfig::read_from(kubeconfig)
            .map_err(|e| kubeconfig_error(kubeconfig, e.to_string()))?;
        let mut kube = Self::with_kubeconfig(kc, kubeconfig, timeout)?;
        kube.kubeconfig = Some(kubeconfig.to_path_buf());
        Ok(kube)
    }

    /// A client for `kc`, already read (from `origin`, for messages). It
    /// never re-reads the file (the boundary read it for a module, once).
    pub fn with_kubeconfig(
        kc: Kubeconfig,
        origin: &Path,
        timeout: Duration,
    ) -> Result<Self, KubeError> {
        let kubeconfig = origin;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| KubeError {
                call: "starting the API client".into(),
                kind: Kind::Other,
                msg: e.to_string(),
            })?;
        let started = std::time::Instant::now();
        let client = build(&rt, kc, kubeconfig, timeout)?;
        tracing::debug!(
            duration_ms = format!("{:.2}", started.elapsed().as_secs_f64() * 1e3),
            "API client built"
        );
        Ok(Self {
            rt: Exec::Own(rt),
            kubeconfig: None,
            client: RefCell::new(client),
            timeout: Cell::new(timeout),
        })
    }

    /// The pod's service account (in-cluster config, kube-rs re-reading the
    /// token as the kubelet rotates it); `timeout` as in [`Kube::new`].
    pub fn in_cluster(timeout: Duration) -> Result<Self, KubeError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| in_cluster_error(e.to_string()))?;
        let client =
            client_of(rt.handle(), in_cluster_config()?, timeout).map_err(in_cluster_error)?;
        Ok(Self {
            rt: Exec::Own(rt),
            kubeconfig: None,
            client: RefCell::new(client),
            timeout: Cell::new(timeout),
        })
    }

    /// Calls through `client` on `runtime` (from a thread that is not one of
    /// its workers), each request bounded by `timeout`.
    pub fn shared(
        runtime: tokio::runtime::Handle,
        client: kube::Client,
        timeout: Duration,
    ) -> Self {
        Self {
            rt: Exec::Shared(runtime),
            kubeconfig: None,
            client: RefCell::new(client),
            timeout: Cell::new(timeout),
        }
    }

    /// Bounds the next requests by `timeout` (a caller's remaining budget).
    pub fn set_timeout(&self, timeout: Duration) {
        self.timeout.set(timeout);
    }

    /// Runs one request with the timeout; on 401, re-reads the kubeconfig and
    /// its token file and tries once more.
    fn call<T, F, Fut>(&self, call: &str, f: F) -> Result<T, KubeError>
    where
        F: Fn(kube::Client) -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let once = || {
            let client = self.client.borrow().clone();
            self.rt.block_on(self.attempt(call, f(client)))
        };
        match once() {
            Err(e) if e.kind == Kind::Unauthorized && self.reread(call)? => once(),
            other => other,
        }
    }

    /// A read, as `call`, sent once more when the first got no HTTP answer
    /// at all (the connection refused, reset or closed under it: an API
    /// server restarting or shedding load), within the same budget. As
    /// client-go does for reads; a write is never resent, as it may have
    /// landed.
    fn read<T, F, Fut>(&self, call: &str, f: F) -> Result<T, KubeError>
    where
        F: Fn(kube::Client) -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let once = || {
            let client = self.client.borrow().clone();
            self.rt
                .block_on(self.read_once_more(call, || f(client.clone())))
        };
        match once() {
            Err(e) if e.kind == Kind::Unauthorized && self.reread(call)? => once(),
            other => other,
        }
    }

    /// [`Self::read`]'s resend, for reads sent at once ([`Self::get_nads`]).
    async fn read_once_more<T, F, Fut>(&self, call: &str, request: F) -> Result<T, KubeError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let (budget, started) = (self.timeout.get(), std::time::Instant::now());
        let mut unanswered = false;
        let first = self
            .attempt_within(call, budget, async {
                let out = request().await;
                unanswered = matches!(
                    out,
                    Err(kube::Error::HyperError(_) | kube::Error::Service(_))
                );
                out
            })
            .await;
        let left = budget.saturating_sub(started.elapsed());
        match first {
            Err(e) if unanswered && !left.is_zero() => {
                tracing::debug!(call, error = %e, "no answer; reading again");
                self.attempt_within(call, left, request()).await
            }
            other => other,
        }
    }

    /// [`Self::attempt_within`] with the client's timeout.
    async fn attempt<T>(
        &self,
        call: &str,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, KubeError> {
        self.attempt_within(call, self.timeout.get(), request).await
    }

    /// One request bounded by `timeout`, classified and logged.
    async fn attempt_within<T>(
        &self,
        call: &str,
        timeout: Duration,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, KubeError> {
        let started = std::time::Instant::now();
        let out = tokio::time::timeout(timeout, request)
            .await
            .map_err(|_| KubeError {
                call: call.to_string(),
                kind: Kind::Transient,
                msg: format!("no answer within {} ms", timeout.as_millis()),
            })?
            .map_err(|e| classify(call, e));
        tracing::debug!(
            call,
            duration_ms = format!("{:.2}", started.elapsed().as_secs_f64() * 1e3),
            ok = out.is_ok(),
            "API request"
        );
        out
    }

    /// After a 401: re-reads the kubeconfig and its token (a client of our
    /// own only); whether to try again.
    fn reread(&self, call: &str) -> Result<bool, KubeError> {
        let (Exec::Own(rt), Some(kubeconfig)) = (&self.rt, &self.kubeconfig) else {
            return Ok(false);
        };
        tracing::warn!(
            call,
            "401 from the API server; re-reading the kubeconfig and its token"
        );
        let kc = Kubeconfig::read_from(kubeconfig)
            .map_err(|e| kubeconfig_error(kubeconfig, e.to_string()))?;
        *self.client.borrow_mut() = build(rt, kc, kubeconfig, self.timeout.get())?;
        Ok(true)
    }

    /// NADs `(namespace, name)` fetched at once (one round trip of the
    /// slowest, not the sum), each answer in order.
    pub fn get_nads(&self, keys: &[(String, String)]) -> Vec<Result<Nad, KubeError>> {
        let once = || {
            let client = self.client.borrow().clone();
            self.rt
                .block_on(futures_util::future::join_all(keys.iter().map(
                    |(ns, name)| {
                        let c = client.clone();
                        async move {
                            let call = format!("GET network-attachment-definition {ns}/{name}");
                            let api = Api::<DynamicObject>::namespaced_with(c, ns, &nad_resource());
                            self.read_once_more(&call, || api.get(name)).await
                        }
                    },
                )))
        };
        let mut out = once();
        let refused = out
            .iter()
            .find_map(|r| r.as_ref().err().filter(|e| e.kind == Kind::Unauthorized))
            .map(|e| e.call.clone());
        if let Some(call) = refused {
            match self.reread(&call) {
                Ok(true) => out = once(),
                Ok(false) => {}
                Err(e) => return keys.iter().map(|_| Err(e.clone())).collect(),
            }
        }
        out.into_iter()
            .map(|r| r.map(|o| Nad::from_object(&o)))
            .collect()
    }

    pub fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod, KubeError> {
        self.read(&format!("GET pod {namespace}/{name}"), |c| async move {
            Api::<Pod>::namespaced(c, namespace).get(name).await
        })
    }

    /// The pod from the API server's watch cache (`resourceVersion=0`):
    /// no etcd read, but possibly behind it.
    pub fn get_pod_cached(&self, namespace: &str, name: &str) -> Result<Pod, KubeError> {
        self.read(
            &format!("GET pod {namespace}/{name} (cached)"),
            |c| async move {
                Api::<Pod>::namespaced(c, namespace)
                    .get_with(name, &kube::api::GetParams::any())
                    .await
            },
        )
    }

    /// PUT `pods/status` with the pod's `resourceVersion`: a concurrent write
    /// is a `Conflict`, never overwritten.
    pub fn replace_pod_status(&self, pod: &Pod) -> Result<Pod, KubeError> {
        self.call(&status_call(pod), |c| put_status(c, pod))
    }

    pub fn create_event(&self, event: &Event) -> Result<Event, KubeError> {
        let ns = event.metadata.namespace.clone().unwrap_or_default();
        self.call(&format!("POST event in {ns}"), |c| {
            let ns = ns.clone();
            async move {
                Api::<Event>::namespaced(c, &ns)
                    .create(&PostParams::default(), event)
                    .await
            }
        })
    }

    /// Events posted at once (one round trip of the slowest). No retry
    /// after a 401: events are best effort.
    pub fn create_events(&self, events: &[Event]) -> Vec<Result<(), KubeError>> {
        self.rt.block_on(self.post_events(events))
    }

    async fn post_events(&self, events: &[Event]) -> Vec<Result<(), KubeError>> {
        let client = self.client.borrow().clone();
        futures_util::future::join_all(events.iter().map(|e| {
            let c = client.clone();
            async move {
                let ns = e.metadata.namespace.clone().unwrap_or_default();
                let call = format!("POST event in {ns}");
                self.attempt(&call, async move {
                    Api::<Event>::namespaced(c, &ns)
                        .create(&PostParams::default(), e)
                        .await
                })
                .await
                .map(drop)
            }
        }))
        .await
    }

    /// `replace_pod_status` and `create_events` at once, on one connection
    /// when the server speaks HTTP/2. A status write refused 401 is tried
    /// again alone, after re-reading the credentials.
    pub fn replace_pod_status_with_events(
        &self,
        pod: &Pod,
        events: &[Event],
    ) -> (Result<Pod, KubeError>, Vec<Result<(), KubeError>>) {
        let call = status_call(pod);
        let status = self.attempt(&call, put_status(self.client.borrow().clone(), pod));
        let (status, posted) = self
            .rt
            .block_on(futures_util::future::join(status, self.post_events(events)));
        match status {
            Err(e) if e.kind == Kind::Unauthorized => match self.reread(&call) {
                Ok(true) => (self.replace_pod_status(pod), posted),
                Ok(false) => (Err(e), posted),
                Err(reread) => (Err(reread), posted),
            },
            other => (other, posted),
        }
    }

    /// Every pod of the cluster.
    pub fn list_pods(&self) -> Result<Vec<Pod>, KubeError> {
        self.read("LIST pods in all namespaces", |c| async move {
            Api::<Pod>::all(c)
                .list(&kube::api::ListParams::default())
                .await
                .map(|l| l.items)
        })
    }

    pub fn get_nad(&self, namespace: &str, name: &str) -> Result<Nad, KubeError> {
        self.get_nads(&[(namespace.to_string(), name.to_string())])
            .pop()
            .expect("one answer per key")
    }
}

/// Custom objects of any kind, as JSON, for the wasm `cluster` interface.
impl Kube {
    /// An empty `ns` is a cluster-scoped kind.
    fn custom_api(&self, c: kube::Client, ns: &str, res: &ApiResource) -> Api<DynamicObject> {
        if ns.is_empty() {
            Api::all_with(c, res)
        } else {
            Api::namespaced_with(c, ns, res)
        }
    }

    pub fn get_object(
        &self,
        res: &ApiResource,
        ns: &str,
        name: &str,
    ) -> Result<DynamicObject, KubeError> {
        self.get_object_with(res, ns, name, &kube::api::GetParams::default(), "")
    }

    /// GET from the API server's watch cache (`resourceVersion=0`): no
    /// etcd read, but possibly behind; for a caller that can tell a stale
    /// object (a digest that does not match) and read it again live. Not
    /// "as of a version it has seen": a kind's cache learns of versions
    /// written to other kinds only from etcd's progress notifications, so
    /// such a read waits seconds, then fails with a 504 (measured on a
    /// real API server: 11 s per rollout at 10 nodes).
    pub fn get_object_cached(
        &self,
        res: &ApiResource,
        ns: &str,
        name: &str,
    ) -> Result<DynamicObject, KubeError> {
        self.get_object_with(res, ns, name, &kube::api::GetParams::any(), " (cached)")
    }

    fn get_object_with(
        &self,
        res: &ApiResource,
        ns: &str,
        name: &str,
        params: &kube::api::GetParams,
        how: &str,
    ) -> Result<DynamicObject, KubeError> {
        self.read(
            &format!("GET {} {ns}/{name}{how}", res.plural),
            |c| async move { self.custom_api(c, ns, res).get_with(name, params).await },
        )
    }

    pub fn list_objects(
        &self,
        res: &ApiResource,
        ns: &str,
    ) -> Result<kube::core::ObjectList<DynamicObject>, KubeError> {
        self.list_objects_labeled(res, ns, "")
    }

    /// The objects label `selector` picks (empty: all). The API server
    /// filters in its cache: a few objects among thousands cost what the
    /// few do, to it and to the connection.
    pub fn list_objects_labeled(
        &self,
        res: &ApiResource,
        ns: &str,
        selector: &str,
    ) -> Result<kube::core::ObjectList<DynamicObject>, KubeError> {
        let (params, what) = match selector {
            "" => (
                kube::api::ListParams::default(),
                format!("LIST {} in {ns}", res.plural),
            ),
            s => (
                kube::api::ListParams::default().labels(s),
                format!("LIST {} in {ns} labeled {s}", res.plural),
            ),
        };
        let params = &params;
        self.read(&what, |c| async move {
            self.custom_api(c, ns, res).list(params).await
        })
    }

    /// One page of at most `limit` objects, from `continue_token` (the
    /// last page's `metadata.continue`); every page of one list is of the
    /// first one's resourceVersion.
    pub fn list_objects_page(
        &self,
        res: &ApiResource,
        ns: &str,
        limit: u32,
        continue_token: Option<&str>,
    ) -> Result<kube::core::ObjectList<DynamicObject>, KubeError> {
        let mut params = kube::api::ListParams::default().limit(limit);
        if let Some(t) = continue_token {
            params = params.continue_token(t);
        }
        let params = &params;
        self.read(
            &format!("LIST {} in {ns} (a page)", res.plural),
            |c| async move { self.custom_api(c, ns, res).list(params).await },
        )
    }

    pub fn create_object(
        &self,
        res: &ApiResource,
        ns: &str,
        obj: &DynamicObject,
    ) -> Result<DynamicObject, KubeError> {
        let name = obj.metadata.name.clone().unwrap_or_default();
        self.call(
            &format!(
                "POST {} {ns}/{}",
                res.plural,
                multus_host_functions::text::head(&name, 253)
            ),
            |c| async move {
                self.custom_api(c, ns, res)
                    .create(&PostParams::default(), obj)
                    .await
            },
        )
    }

    /// PUT with the object's `resourceVersion`: a concurrent write is a
    /// `Conflict`, never overwritten.
    pub fn replace_object(
        &self,
        res: &ApiResource,
        ns: &str,
        name: &str,
        obj: &DynamicObject,
    ) -> Result<DynamicObject, KubeError> {
        self.call(&format!("PUT {} {ns}/{name}", res.plural), |c| async move {
            self.custom_api(c, ns, res)
                .replace(name, &PostParams::default(), obj)
                .await
        })
    }

    /// PUT of the status subresource, guarded like `replace_object`.
    pub fn replace_object_status(
        &self,
        res: &ApiResource,
        ns: &str,
        name: &str,
        obj: &DynamicObject,
    ) -> Result<DynamicObject, KubeError> {
        self.call(
            &format!("PUT {} {ns}/{name} status", res.plural),
            |c| async move {
                self.custom_api(c, ns, res)
                    .replace_status(name, &PostParams::default(), obj)
                    .await
            },
        )
    }

    /// JSON patch of the status subresource, applied by the API server to
    /// the object as stored: no resourceVersion, its `test` ops the only
    /// guard. A failed `test` is a 422 with nothing to tell it from a patch
    /// that cannot apply (the API server's generic "rejected our request",
    /// no causes): the caller tells them apart.
    pub fn patch_object_status(
        &self,
        res: &ApiResource,
        ns: &str,
        name: &str,
        patch: json_patch::Patch,
    ) -> Result<DynamicObject, KubeError> {
        let call = format!("PATCH {} {ns}/{name} status", res.plural);
        let patch = &kube::api::Patch::<()>::Json(patch);
        self.call(&call, |c| async move {
            self.custom_api(c, ns, res)
                .patch_status(name, &PatchParams::default(), patch)
                .await
        })
    }

    /// Server-side apply of `obj` (the fields `manager` owns, `apiVersion`,
    /// `kind` and `metadata.name` filled in) as `manager`, taking over
    /// fields another manager owns (`force`): one request that creates the
    /// object or updates it, with no read before and no resourceVersion.
    pub fn apply_object(
        &self,
        res: &ApiResource,
        ns: &str,
        name: &str,
        manager: &str,
        obj: &serde_json::Value,
    ) -> Result<DynamicObject, KubeError> {
        let mut patch = obj.clone();
        patch["apiVersion"] = res.api_version.clone().into();
        patch["kind"] = res.kind.clone().into();
        patch["metadata"]["name"] = name.into();
        self.call(&format!("APPLY {} {ns}/{name}", res.plural), |c| {
            let patch = patch.clone();
            async move {
                self.custom_api(c, ns, res)
                    .patch(
                        name,
                        &PatchParams::apply(manager).force(),
                        &kube::api::Patch::Apply(patch),
                    )
                    .await
            }
        })
    }

    /// Watches each of `watches` for at most `window`, all at once, until
    /// one changes: an object added or deleted, or one whose spec changed
    /// (a `metadata.generation` other than its watch's `generations` has
    /// for it). A status-only change (the aggregated status of a
    /// WasmPlugin, a Node's heartbeat) is not one: there is nothing to do
    /// for it. With `generations` empty, every change is one. Per watch,
    /// in order: whether it changed, and the version to watch from next.
    /// A version too old (410) is an error of kind `Other`: list again.
    pub fn wait_for_change(
        &self,
        watches: &[Watch<'_>],
        window: Duration,
    ) -> Result<Vec<Watched>, KubeError> {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        let mut seen: Vec<Watched> = watches
            .iter()
            .map(|w| Watched {
                changed: false,
                resource_version: w.from.to_string(),
            })
            .collect();
        let all = async {
            let mut pending: FuturesUnordered<_> = watches
                .iter()
                .enumerate()
                .map(|(i, w)| async move { (i, self.watch_until_change(w, window).await) })
                .collect();
            while let Some((i, watched)) = pending.next().await {
                seen[i] = watched?;
                if seen[i].changed {
                    break;
                }
            }
            Ok(())
        };
        // The server ends each watch after `window`; one that does not
        // answer is cut a timeout later.
        let bound = window + self.timeout.get();
        // The timer is made inside the runtime, which it needs.
        match self
            .rt
            .block_on(async { tokio::time::timeout(bound, all).await })
        {
            Ok(Ok(())) => Ok(seen),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(KubeError {
                call: format!(
                    "WATCH {}",
                    watches
                        .iter()
                        .map(|w| w.res.plural.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                kind: Kind::Transient,
                msg: format!("no end of the watch within {} ms", bound.as_millis()),
            }),
        }
    }

    /// One watch window of [`Kube::wait_for_change`].
    async fn watch_until_change(
        &self,
        w: &Watch<'_>,
        window: Duration,
    ) -> Result<Watched, KubeError> {
        use futures_util::TryStreamExt;
        use kube::api::{WatchEvent, WatchParams};
        let call = format!("WATCH {} from {}", w.res.plural, w.from);
        let api = self.custom_api(self.client.borrow().clone(), w.ns, w.res);
        let params = WatchParams::default().timeout(window.as_secs().max(1) as u32);
        let mut seen = Watched {
            changed: false,
            resource_version: w.from.to_string(),
        };
        let stream = api
            .watch(&params, w.from)
            .await
            .map_err(|e| classify(&call, e))?;
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.try_next().await.map_err(|e| classify(&call, e))? {
            let (obj, changed) = match &event {
                WatchEvent::Added(o) | WatchEvent::Deleted(o) => (o, true),
                WatchEvent::Modified(o) => {
                    let name = o.metadata.name.as_deref().unwrap_or_default();
                    (o, o.metadata.generation != w.generations.get(name).copied())
                }
                WatchEvent::Bookmark(b) => {
                    seen.resource_version = b.metadata.resource_version.clone();
                    continue;
                }
                WatchEvent::Error(e) => {
                    return Err(KubeError {
                        call: call.clone(),
                        kind: Kind::Other,
                        msg: format!("{} ({})", e.message, e.code),
                    })
                }
            };
            if let Some(rv) = &obj.metadata.resource_version {
                seen.resource_version = rv.clone();
            }
            if changed {
                seen.changed = true;
                break;
            }
        }
        Ok(seen)
    }

    pub fn delete_object(&self, res: &ApiResource, ns: &str, name: &str) -> Result<(), KubeError> {
        self.call(
            &format!("DELETE {} {ns}/{name}", res.plural),
            |c| async move {
                self.custom_api(c, ns, res)
                    .delete(name, &kube::api::DeleteParams::default())
                    .await
                    .map(drop)
            },
        )
    }
}

impl Kube {
    /// Creates a NAD; `false` when one of that name already exists (it is
    /// left as it is: an admin may have edited it).
    pub fn create_nad(&self, nad: &DynamicObject) -> Result<bool, KubeError> {
        let ns = nad.metadata.namespace.clone().unwrap_or_default();
        let name = nad.metadata.name.clone().unwrap_or_default();
        let created = self.call(
            &format!("POST network-attachment-definition {ns}/{name}"),
            |c| {
                let ns = ns.clone();
                async move {
                    Api::<DynamicObject>::namespaced_with(c, &ns, &nad_resource())
                        .create(&PostParams::default(), nad)
                        .await
                }
            },
        );
        match created {
            Ok(_) => Ok(true),
            Err(e) if e.kind == Kind::Conflict => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// How a `pods/status` write is named in errors and logs.
fn status_call(pod: &Pod) -> String {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    format!("PUT pod {ns}/{name} status")
}

/// The `pods/status` PUT itself.
async fn put_status(c: kube::Client, pod: &Pod) -> Result<Pod, kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    Api::<Pod>::namespaced(c, ns)
        .replace_status(name, &PostParams::default(), pod)
        .await
}

fn kubeconfig_error(kubeconfig: &Path, msg: String) -> KubeError {
    KubeError {
        call: format!("reading kubeconfig {}", kubeconfig.display()),
        kind: Kind::Other,
        msg,
    }
}

/// The client config `kubeconfig` describes (its current context), with
/// the proxy chosen as client-go chooses it (see [`super::proxy`]).
pub async fn config_from(kubeconfig: &Path) -> Result<kube::Config, KubeError> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .map_err(|e| kubeconfig_error(kubeconfig, e.to_string()))?;
    config_of(kc, kubeconfig).await
}

/// The client config of `kc`, read from `kubeconfig`.
async fn config_of(kc: Kubeconfig, kubeconfig: &Path) -> Result<kube::Config, KubeError> {
    let err = |e: String| kubeconfig_error(kubeconfig, e);
    let explicit = cluster_proxy_url(&kc);
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    set_proxy(&mut config, explicit.as_deref()).map_err(err)?;
    Ok(config)
}

/// The current context's cluster's `proxy-url`, if any.
fn cluster_proxy_url(kc: &Kubeconfig) -> Option<String> {
    let current = kc.current_context.as_deref()?;
    let context = kc.contexts.iter().find(|c| c.name == current)?;
    let cluster = context.context.as_ref()?.cluster.as_str();
    kc.clusters
        .iter()
        .find(|c| c.name == cluster)?
        .cluster
        .as_ref()?
        .proxy_url
        .clone()
}

/// Sets `config`'s proxy from `explicit` (the kubeconfig's) or the
/// process environment, for its server.
pub fn set_proxy(config: &mut kube::Config, explicit: Option<&str>) -> Result<(), String> {
    config.proxy_url = super::proxy::choose(
        &config.cluster_url,
        explicit,
        &super::proxy::ProxyEnv::from_process(),
    )?;
    if let Some(p) = &config.proxy_url {
        tracing::debug!(proxy = %p, server = %config.cluster_url, "API calls go through a proxy");
    }
    Ok(())
}

/// A client made from `config` connects within `timeout`; each call is
/// bounded by it too ([`Kube::attempt`]). Not its connection's reads: an
/// HTTP/2 connection always has a read pending, so a read timeout would
/// cut an idle one (and fail the call about to use it); HTTP/2 pings find
/// a dead one instead (k8s/transport.rs).
fn bound(config: &mut kube::Config, timeout: Duration) {
    config.connect_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
}

fn build(
    rt: &tokio::runtime::Runtime,
    kc: Kubeconfig,
    kubeconfig: &Path,
    timeout: Duration,
) -> Result<kube::Client, KubeError> {
    let config = rt.block_on(config_of(kc, kubeconfig))?;
    client_of(rt.handle(), config, timeout).map_err(|e| kubeconfig_error(kubeconfig, e))
}

/// A client of the daemon's runtime (called from outside it) for `kc`,
/// read from its path, else for the pod's service account; it connects
/// within `timeout`. What a long-lived process shares between calls.
pub fn client_on(
    rt: &tokio::runtime::Handle,
    kc: Option<(Kubeconfig, &Path)>,
    timeout: Duration,
) -> Result<kube::Client, KubeError> {
    match kc {
        Some((kc, path)) => {
            let config = rt.block_on(config_of(kc, path))?;
            client_of(rt, config, timeout).map_err(|e| kubeconfig_error(path, e))
        }
        None => client_of(rt, in_cluster_config()?, timeout).map_err(in_cluster_error),
    }
}

/// The pod's service account, as client-go's in-cluster config.
fn in_cluster_config() -> Result<kube::Config, KubeError> {
    let mut config = kube::Config::incluster().map_err(|e| in_cluster_error(e.to_string()))?;
    set_proxy(&mut config, None).map_err(in_cluster_error)?;
    Ok(config)
}

fn in_cluster_error(msg: String) -> KubeError {
    KubeError {
        call: "in-cluster credentials".into(),
        kind: Kind::Other,
        msg,
    }
}

fn client_of(
    rt: &tokio::runtime::Handle,
    mut config: kube::Config,
    timeout: Duration,
) -> Result<kube::Client, String> {
    bound(&mut config, timeout);
    // The client spawns its request buffer onto the current runtime.
    let _guard = rt.enter();
    super::transport::client(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The apiserver's `Status` bodies (as the test API server in `testbed/` sends them) as kube-rs
    /// hands them over.
    fn api_error(code: u16, reason: &str) -> kube::Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{reason} ({code})"), "reason": reason, "code": code
        }))
        .unwrap();
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn classification_drives_retries() {
        for (code, reason, kind) in [
            (404, "NotFound", Kind::NotFound),
            (409, "Conflict", Kind::Conflict),
            (401, "Unauthorized", Kind::Unauthorized),
            (403, "Forbidden", Kind::Forbidden),
            (429, "TooManyRequests", Kind::Transient),
            (500, "InternalError", Kind::Transient),
            (503, "ServiceUnavailable", Kind::Transient),
            (400, "BadRequest", Kind::Invalid),
            (422, "Invalid", Kind::Invalid),
            (413, "RequestEntityTooLarge", Kind::Other),
        ] {
            let e = classify("GET pod ns/p", api_error(code, reason));
            assert_eq!(e.kind, kind, "{code}");
            assert!(e.to_string().starts_with("GET pod ns/p: "), "{e}");
        }
    }
}
