//! Finding the pod a CNI call is for, and making sure it is the same pod.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::api::{ClusterApi, Read};
use super::client::{Kind, KubeError};
use crate::cni::env::CniArgs;
use crate::cni::{CniError, Code};

/// Pause between tries of a pod GET.
const POLL: Duration = Duration::from_millis(250);
/// Tries of a pod GET that time out or hit a restarting API server.
const TRANSIENT_ATTEMPTS: u32 = 3;

/// The pod as the runtime names it in `CNI_ARGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// `K8S_POD_UID`; older runtimes do not send it.
    pub uid: Option<String>,
}

impl PodRef {
    /// `None` when the runtime did not say which pod this is (not a
    /// Kubernetes pod, or a runtime that sends no `K8S_POD_*`).
    pub fn from_args(args: &CniArgs) -> Option<Self> {
        let get = |k| args.get(k).filter(|v| !v.is_empty()).map(String::from);
        Some(Self {
            namespace: get("K8S_POD_NAMESPACE")?,
            name: get("K8S_POD_NAME")?,
            uid: get("K8S_POD_UID"),
        })
    }
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

pub fn annotations(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.annotations.clone().unwrap_or_default()
}

pub fn labels(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}

/// Static pods: the API object is a mirror with its own UID (multus #773).
fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubernetes.io/config.source"))
        .is_some_and(|s| s != "api")
}

/// Fails when the API's pod is not the sandbox's pod: it was deleted and
/// recreated under the same name. Retriable: the runtime will DEL this
/// sandbox and create one for the new pod.
pub fn check_uid(pod: &Pod, want: &PodRef) -> Result<(), CniError> {
    let (Some(want_uid), false) = (&want.uid, is_static(pod)) else {
        return Ok(());
    };
    let got = pod.metadata.uid.as_deref().unwrap_or_default();
    if got == want_uid {
        return Ok(());
    }
    Err(CniError::new(
        Code::TryAgainLater,
        format!(
            "pod {want}: expected pod UID {want_uid:?} but the API server has {got:?} (the pod was recreated)"
        ),
    ))
}

/// GETs the pod, retrying not-found and transient failures until `wait` has
/// passed: a new pod may not be visible through every API server yet. A zero
/// `wait` (teardown) gives up at the first failure.
pub fn get(kube: &dyn ClusterApi, want: &PodRef, wait: Duration) -> Result<Pod, CniError> {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match kube.get_pod(want, Read::Cached) {
            Ok(pod) => return Ok(pod),
            Err(e) if matches!(e.kind, Kind::NotFound | Kind::Transient) => {
                // A slow or dropped answer gets its retries even when it
                // alone outlasted the wait; no wait at all means one try.
                let retry_slow =
                    !wait.is_zero() && e.kind == Kind::Transient && attempts < TRANSIENT_ATTEMPTS;
                if !retry_slow && started.elapsed() + POLL > wait {
                    return Err(to_cni(
                        e,
                        &format!(
                            "pod {want}: gave up after {} ms",
                            started.elapsed().as_millis()
                        ),
                    ));
                }
                tracing::debug!(pod = %want, error = %e, "pod not available yet; retrying");
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(to_cni(e, &format!("pod {want}"))),
        }
    }
}

/// An API failure as a CNI error: retriable ones are code 11.
pub fn to_cni(e: KubeError, context: &str) -> CniError {
    let code = match e.kind {
        Kind::NotFound | Kind::Transient | Kind::Conflict => Code::TryAgainLater,
        Kind::Unauthorized | Kind::Forbidden | Kind::Invalid | Kind::Other => Code::Internal,
    };
    CniError::new(code, format!("{context}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, source: Option<&str>) -> Pod {
        let mut p = Pod::default();
        p.metadata.uid = Some(uid.into());
        if let Some(s) = source {
            p.metadata.annotations =
                Some([("kubernetes.io/config.source".to_string(), s.to_string())].into());
        }
        p
    }

    #[test]
    fn pod_ref_from_args() {
        let a = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_UID=u")
            .unwrap();
        let r = PodRef::from_args(&a).unwrap();
        assert_eq!(
            (r.to_string(), r.uid.as_deref()),
            ("ns/p".into(), Some("u"))
        );
        assert!(PodRef::from_args(&CniArgs::parse("K8S_POD_NAME=p").unwrap()).is_none());
        assert!(
            PodRef::from_args(&CniArgs::parse("K8S_POD_NAMESPACE=;K8S_POD_NAME=p").unwrap())
                .is_none()
        );
    }

    #[test]
    fn uid_check() {
        let want = |uid: Option<&str>| PodRef {
            namespace: "ns".into(),
            name: "p".into(),
            uid: uid.map(String::from),
        };
        assert!(check_uid(&pod("a", None), &want(Some("a"))).is_ok());
        assert!(check_uid(&pod("a", None), &want(None)).is_ok());
        let e = check_uid(&pod("b", None), &want(Some("a"))).unwrap_err();
        assert_eq!(e.code, 11);
        assert!(
            e.msg.contains("recreated") && e.msg.contains("ns/p"),
            "{}",
            e.msg
        );
        assert!(check_uid(&pod("b", Some("file")), &want(Some("a"))).is_ok());
        assert!(check_uid(&pod("b", Some("api")), &want(Some("a"))).is_err());
    }
}
