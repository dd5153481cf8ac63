//! Kubernetes: the pod a call is for, the networks it selects, their
//! NetworkAttachmentDefinitions, device IDs and the network-status annotation.
//!
//! `selection`, `status` and `nad` are pure; `client` and `devices` talk to
//! the API server and the kubelet.

pub mod api;
pub mod client;
pub mod devices;
pub mod events;
pub mod kubeconfig;
pub mod mapper;
pub mod nad;
pub mod pod;
pub mod proxy;
pub mod selection;
pub mod status;
pub mod transport;

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use crate::cni::{CniEnv, CniError, Code};
use crate::config::kube::{DEFAULT_NETWORK_ANNOTATION, RESOURCE_NAME_ANNOTATION};
use crate::config::{resolve::resolve, MultusConf, NetworkConfig};
use api::{ClusterApi, Connect};
use client::{Kind, KubeError, Nad};
use pod::PodRef;
use selection::NetworkSelection;

/// A network from the API or the conf dir, and how network-status names it.
pub struct Named {
    pub net: NetworkConfig,
    pub status_name: String,
    /// The NAD's `k8s.v1.cni.cncf.io/resourceName`, if any.
    pub resource: Option<String>,
}

impl Named {
    /// A network from the conf or a file: network-status uses its own name.
    pub fn file(net: NetworkConfig) -> Self {
        Self {
            status_name: net.name.clone(),
            net,
            resource: None,
        }
    }
}

/// The pod this call is for, as the API server has it.
pub struct PodContext {
    pub api: Box<dyn ClusterApi>,
    pub pod_ref: PodRef,
    pub pod: Pod,
    /// NADs fetched ahead, together ([`PodContext::prefetch`]).
    fetched: RefCell<HashMap<(String, String), Result<Nad, KubeError>>>,
}

impl PodContext {
    /// Connects and fetches the pod (checking its UID), waiting `podWaitMs`
    /// for a pod the API does not show yet. `None` when the conf has no
    /// kubeconfig or the runtime named no pod.
    pub fn connect(
        cluster: &dyn Connect,
        conf: &MultusConf,
        env: &CniEnv,
    ) -> Result<Option<Self>, CniError> {
        Self::open(
            cluster,
            conf,
            env,
            conf.kube.request_timeout,
            conf.kube.pod_wait,
        )
    }

    /// For DEL without a cache: one quick try, never a wait.
    pub fn connect_for_teardown(
        cluster: &dyn Connect,
        conf: &MultusConf,
        env: &CniEnv,
    ) -> Result<Option<Self>, CniError> {
        let timeout = conf.kube.request_timeout.min(Duration::from_secs(2));
        Self::open(cluster, conf, env, timeout, Duration::ZERO)
    }

    fn open(
        cluster: &dyn Connect,
        conf: &MultusConf,
        env: &CniEnv,
        timeout: Duration,
        wait: Duration,
    ) -> Result<Option<Self>, CniError> {
        let Some(pod_ref) = PodRef::from_args(&env.args) else {
            return Ok(None);
        };
        let Some(api) = cluster
            .connect(conf, timeout)
            .map_err(|e| pod::to_cni(e, &format!("pod {pod_ref}")))?
        else {
            return Ok(None);
        };
        let pod = pod::get(api.as_ref(), &pod_ref, wait)?;
        pod::check_uid(&pod, &pod_ref)?;
        Ok(Some(Self {
            api,
            pod_ref,
            pod,
            fetched: RefCell::default(),
        }))
    }

    /// Fetches the NADs `keys` at once, for the lookups that follow: the
    /// pod waits for the slowest, not for the sum.
    pub fn prefetch(&self, keys: &[(String, String)]) {
        let mut want: Vec<(String, String)> = Vec::new();
        for k in keys {
            if !want.contains(k) && !self.fetched.borrow().contains_key(k) {
                want.push(k.clone());
            }
        }
        if want.len() < 2 {
            return;
        }
        let answers = self.api.get_nads(&want);
        self.fetched
            .borrow_mut()
            .extend(want.into_iter().zip(answers));
    }

    /// The NAD a `clusterNetwork`/`defaultNetworks` entry may name, unless
    /// the client already knows there is none: what to fetch for it.
    pub fn reference_to_fetch(
        &self,
        conf: &MultusConf,
        reference: &str,
    ) -> Option<(String, String)> {
        reference_nad(conf, reference).filter(|(ns, name)| !self.api.nad_known_absent(ns, name))
    }

    /// A `clusterNetwork`/`defaultNetworks` entry: a name is a NAD in
    /// `multusNamespace` or, failing that, a conf in `confDir`; a path is a
    /// file or directory.
    pub fn network_by_reference(
        &self,
        conf: &MultusConf,
        reference: &str,
        field: &str,
    ) -> Result<Named, CniError> {
        if let Some((ns, name)) = self.reference_to_fetch(conf, reference) {
            if let Some(n) = self.find_nad(conf, &ns, &name, field)? {
                return Ok(n);
            }
        }
        Ok(Named::file(resolve(reference, &conf.conf_dir, field)?))
    }

    /// The pod's `v1.multus-cni.io/default-network`, parsed and checked: the
    /// NAD replacing the cluster network (namespace defaults to
    /// `multusNamespace`).
    pub fn default_network_override(
        &self,
        conf: &MultusConf,
    ) -> Result<Option<NetworkSelection>, CniError> {
        let Some(value) = pod::annotations(&self.pod).remove(DEFAULT_NETWORK_ANNOTATION) else {
            return Ok(None);
        };
        let mut sels = selection::parse(&value, &conf.multus_namespace).map_err(|e| {
            CniError::new(
                Code::InvalidConfig,
                format!(
                    "pod {}: annotation {DEFAULT_NETWORK_ANNOTATION:?}: {e}",
                    self.pod_ref
                ),
            )
        })?;
        if sels.len() != 1 {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "pod {}: annotation {DEFAULT_NETWORK_ANNOTATION:?} must name exactly one network, not {}",
                    self.pod_ref,
                    sels.len()
                ),
            ));
        }
        let s = sels.remove(0);
        // The override is a selection like any other: namespaceIsolation
        // holds for it too (upstream checks only the networks annotation).
        self.check_isolation(conf, &s)?;
        Ok(Some(s))
    }

    /// Every selection annotation key of the conf, in order, parsed, then
    /// passed through the conf's annotation mappers.
    pub fn selections(&self, conf: &MultusConf) -> Result<Vec<NetworkSelection>, CniError> {
        let annotations = pod::annotations(&self.pod);
        let mut out = Vec::new();
        for key in &conf.kube.networks_annotations {
            let Some(value) = annotations.get(key) else {
                continue;
            };
            out.extend(
                selection::parse(value, &self.pod_ref.namespace).map_err(|e| {
                    CniError::new(
                        Code::InvalidConfig,
                        format!("pod {}: annotation {key:?}: {e}", self.pod_ref),
                    )
                })?,
            );
        }
        // Each value is bounded alone; a conf may name several keys.
        selection::counted(out.len()).map_err(|e| {
            CniError::new(Code::InvalidConfig, format!("pod {}: {e}", self.pod_ref))
        })?;
        mapper::run(
            &conf.wasm,
            &conf.kube.annotation_mappers,
            &self.pod_ref,
            &self.pod,
            out,
        )
    }

    /// Refuses a NAD outside the pod's namespace under `namespaceIsolation`,
    /// unless its namespace is global.
    pub fn check_isolation(&self, conf: &MultusConf, s: &NetworkSelection) -> Result<(), CniError> {
        let own = s.namespace == self.pod_ref.namespace;
        if !conf.namespace_isolation || own || conf.global_namespaces.contains(&s.namespace) {
            return Ok(());
        }
        Err(CniError::new(
            Code::InvalidConfig,
            format!(
                "pod {}: network {} is in another namespace and namespaceIsolation is on (global namespaces: {:?})",
                self.pod_ref,
                s.qualified_name(),
                conf.global_namespaces
            ),
        ))
    }

    /// The NAD `namespace/name` as a delegate network; a missing NAD is a
    /// configuration error (code 7) naming it.
    pub fn nad(
        &self,
        conf: &MultusConf,
        namespace: &str,
        name: &str,
        field: &str,
    ) -> Result<Named, CniError> {
        self.find_nad(conf, namespace, name, field)?.ok_or_else(|| {
            events::record(
                self.api.as_ref(),
                &self.pod_ref,
                &self.pod,
                events::Kind::Warning,
                "NoNetworkFound",
                &format!("cannot find a network-attachment-definition ({name}) in namespace ({namespace})"),
            );
            CniError::new(
                Code::InvalidConfig,
                format!(
                    "pod {}: {field}: network-attachment-definition {namespace}/{name} not found",
                    self.pod_ref
                ),
            )
        })
    }

    fn find_nad(
        &self,
        conf: &MultusConf,
        namespace: &str,
        name: &str,
        field: &str,
    ) -> Result<Option<Named>, CniError> {
        let key = (namespace.to_string(), name.to_string());
        let answer = match self.fetched.borrow_mut().remove(&key) {
            Some(a) => a,
            None => self.api.get_nad(namespace, name),
        };
        named_nad(
            answer,
            conf,
            namespace,
            name,
            &format!("pod {}: {field}", self.pod_ref),
        )
    }
}

fn find_nad(
    kube: &dyn ClusterApi,
    conf: &MultusConf,
    namespace: &str,
    name: &str,
    context: &str,
) -> Result<Option<Named>, CniError> {
    named_nad(
        kube.get_nad(namespace, name),
        conf,
        namespace,
        name,
        context,
    )
}

/// An API answer for NAD `namespace/name` as a network; not found is `None`.
fn named_nad(
    answer: Result<Nad, KubeError>,
    conf: &MultusConf,
    namespace: &str,
    name: &str,
    context: &str,
) -> Result<Option<Named>, CniError> {
    let nad = match answer {
        Ok(n) => n,
        Err(e) if e.kind == Kind::NotFound => return Ok(None),
        Err(e) => return Err(pod::to_cni(e, context)),
    };
    let net = nad::network(&nad, namespace, name, &conf.conf_dir)?;
    if !conf.system_namespaces.iter().any(|s| s == namespace) {
        nad::check_types(&net, &conf.wasm.bounds, namespace, name)?;
    }
    Ok(Some(Named {
        net,
        status_name: format!("{namespace}/{name}"),
        resource: nad
            .annotations
            .get(RESOURCE_NAME_ANNOTATION)
            .filter(|r| !r.is_empty())
            .cloned(),
    }))
}

/// A `clusterNetwork`/`defaultNetworks` name as a NAD in `multusNamespace`,
/// for calls that concern no pod (STATUS, GC). `None` without a kubeconfig
/// or when there is no such NAD.
pub fn network_without_pod(
    cluster: &dyn Connect,
    conf: &MultusConf,
    reference: &str,
    field: &str,
) -> Result<Option<Named>, CniError> {
    let Some((ns, name)) = reference_nad(conf, reference) else {
        return Ok(None);
    };
    let Some(api) = cluster
        .connect(conf, conf.kube.request_timeout)
        .map_err(|e| pod::to_cni(e, field))?
    else {
        return Ok(None);
    };
    if api.nad_known_absent(&ns, &name) {
        return Ok(None);
    }
    find_nad(api.as_ref(), conf, &ns, &name, field)
}

/// The NAD a `clusterNetwork`/`defaultNetworks` entry may name: a name (no
/// `/`, which makes it a path) is looked up in `multusNamespace` first.
fn reference_nad(conf: &MultusConf, reference: &str) -> Option<(String, String)> {
    (!reference.contains('/')).then(|| (conf.multus_namespace.clone(), reference.to_string()))
}
