//! The API calls multus makes, behind a trait: the thin binary builds a
//! client per call from the conf's kubeconfig; the daemon answers reads from
//! its watch caches and shares one client across requests.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};

use super::client::{Kube, KubeError, Nad};
use super::pod::PodRef;
use crate::config::MultusConf;

/// Whether a read may be answered from a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Any copy will do: the cache if it has the object, else the API.
    Cached,
    /// From the API server: after a conflict, the cache may still be behind.
    Live,
}

/// `Send`: the daemon finishes a pod's API writes after answering, on
/// another thread.
pub trait ClusterApi: Send {
    fn get_pod(&self, pod: &PodRef, read: Read) -> Result<Pod, KubeError>;
    /// PUT `pods/status` with the pod's `resourceVersion`: a concurrent
    /// write is a `Conflict`, never overwritten.
    fn replace_pod_status(&self, pod: &Pod) -> Result<Pod, KubeError>;
    fn create_event(&self, event: &Event) -> Result<Event, KubeError>;
    /// Several events; a client that can should post them at once.
    fn create_events(&self, events: &[Event]) -> Vec<Result<(), KubeError>> {
        events
            .iter()
            .map(|e| self.create_event(e).map(drop))
            .collect()
    }
    /// A `pods/status` write and events at once (one round trip of the
    /// slower on a client that can): what each returned.
    fn replace_pod_status_with_events(
        &self,
        pod: &Pod,
        events: &[Event],
    ) -> (Result<Pod, KubeError>, Vec<Result<(), KubeError>>) {
        (self.replace_pod_status(pod), self.create_events(events))
    }
    fn get_nad(&self, namespace: &str, name: &str) -> Result<Nad, KubeError>;
    /// Whether this client knows, without asking the API server, that NAD
    /// `namespace/name` does not exist (a watch cache that is listed and
    /// streaming lacks it). Asked only for a conf-named network, which
    /// falls back to a file when there is no such NAD, so its usual miss
    /// costs no request.
    fn nad_known_absent(&self, _namespace: &str, _name: &str) -> bool {
        false
    }
    /// Several NADs, each answer in order; a client that can should fetch
    /// them at once.
    fn get_nads(&self, keys: &[(String, String)]) -> Vec<Result<Nad, KubeError>> {
        keys.iter()
            .map(|(ns, name)| self.get_nad(ns, name))
            .collect()
    }
}

/// Where an invocation's API client comes from.
pub trait Connect: Send + Sync {
    /// The client for `conf`, each request bounded by `timeout`; `None` when
    /// there is no API to talk to.
    fn connect(
        &self,
        conf: &MultusConf,
        timeout: Duration,
    ) -> Result<Option<Box<dyn ClusterApi>>, KubeError>;
}

/// The thin binary's way: a client from the conf's `kubeconfig`, if any.
pub struct FromKubeconfig;

impl Connect for FromKubeconfig {
    fn connect(
        &self,
        conf: &MultusConf,
        timeout: Duration,
    ) -> Result<Option<Box<dyn ClusterApi>>, KubeError> {
        let Some(kubeconfig) = &conf.kubeconfig else {
            return Ok(None);
        };
        Ok(Some(Box::new(Kube::new(kubeconfig, timeout)?)))
    }
}

impl<T: Connect + ?Sized> Connect for Arc<T> {
    fn connect(
        &self,
        conf: &MultusConf,
        timeout: Duration,
    ) -> Result<Option<Box<dyn ClusterApi>>, KubeError> {
        (**self).connect(conf, timeout)
    }
}

impl ClusterApi for Kube {
    /// `Cached`: from the API server's watch cache first, which the kubelet
    /// found the pod through, so it is rarely behind for the sandbox's own
    /// pod; a pod it lacks or has under another UID is read live.
    fn get_pod(&self, pod: &PodRef, read: Read) -> Result<Pod, KubeError> {
        if read == Read::Cached {
            match self.get_pod_cached(&pod.namespace, &pod.name) {
                Ok(p) if super::pod::check_uid(&p, pod).is_ok() => return Ok(p),
                Ok(_) => {}
                Err(e) if e.kind == super::client::Kind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Kube::get_pod(self, &pod.namespace, &pod.name)
    }

    fn replace_pod_status(&self, pod: &Pod) -> Result<Pod, KubeError> {
        Kube::replace_pod_status(self, pod)
    }

    fn create_event(&self, event: &Event) -> Result<Event, KubeError> {
        Kube::create_event(self, event)
    }

    fn create_events(&self, events: &[Event]) -> Vec<Result<(), KubeError>> {
        Kube::create_events(self, events)
    }

    fn replace_pod_status_with_events(
        &self,
        pod: &Pod,
        events: &[Event],
    ) -> (Result<Pod, KubeError>, Vec<Result<(), KubeError>>) {
        Kube::replace_pod_status_with_events(self, pod, events)
    }

    fn get_nad(&self, namespace: &str, name: &str) -> Result<Nad, KubeError> {
        Kube::get_nad(self, namespace, name)
    }

    fn get_nads(&self, keys: &[(String, String)]) -> Vec<Result<Nad, KubeError>> {
        Kube::get_nads(self, keys)
    }
}
