//! Whether the installer's own DaemonSet is going away, which is when
//! `--cleanup-on-exit` should remove the conf. A SIGTERM alone does not
//! say so: a rolling update and a deleted installer pod send one too, and
//! removing the conf then leaves every pod created before the new installer
//! starts with the cluster network only.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject};

use super::kubeconfig::{self, ServiceAccount};
use super::InstallError;
use multus::k8s::client::Kind;

/// The downward-API variables naming the installer's pod.
pub const ENV_POD_NAME: &str = "POD_NAME";
pub const ENV_POD_NAMESPACE: &str = "POD_NAMESPACE";

/// The kubelet kills the container after `terminationGracePeriodSeconds`
/// (10 in `deploy/`): the lookups must leave time to clean up.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Clean up, and why.
    CleanUp(String),
    /// Keep the conf, and why.
    Keep(String),
}

fn daemonset_resource() -> ApiResource {
    ApiResource::erase::<k8s_openapi::api::apps::v1::DaemonSet>(&())
}

/// The DaemonSet among the pod's controllers, if any.
pub fn owning_daemonset(pod: &Pod) -> Option<String> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "DaemonSet" && o.controller == Some(true))
        .map(|o| o.name.clone())
}

/// The decision from the pod's owner and what the API says of it
/// (`None`: not found).
pub fn decide(namespace: &str, owner: Option<&str>, daemonset: Option<&DynamicObject>) -> Verdict {
    let Some(name) = owner else {
        return Verdict::CleanUp("the installer pod has no DaemonSet".into());
    };
    match daemonset {
        None => Verdict::CleanUp(format!("DaemonSet {namespace}/{name} is deleted")),
        Some(ds) if ds.metadata.deletion_timestamp.is_some() => {
            Verdict::CleanUp(format!("DaemonSet {namespace}/{name} is being deleted"))
        }
        Some(_) => Verdict::Keep(format!(
            "DaemonSet {namespace}/{name} still exists (a rolling update, or this pod alone was deleted), so its next pod takes over the conf"
        )),
    }
}

/// Asks the API server about the pod's DaemonSet; without the downward-API
/// variables (not run as a pod) the installer is alone and cleans up. When
/// the API cannot say, the conf stays: a working conf left behind harms no
/// pod, a conf removed under a running DaemonSet breaks every new one.
pub fn verdict(sa_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Verdict {
    let (Some(pod), Some(ns)) = (env(ENV_POD_NAME), env(ENV_POD_NAMESPACE)) else {
        return Verdict::CleanUp(format!(
            "{ENV_POD_NAME} and {ENV_POD_NAMESPACE} are not set, so no DaemonSet can be asked"
        ));
    };
    match lookup(sa_dir, env, &ns, &pod) {
        Ok(v) => v,
        // `kubectl delete -k deploy/` deletes the service account and its
        // RBAC with the DaemonSet: the pod's own credentials refused is the
        // uninstall itself (a rolling update keeps them).
        Err(InstallError::Kube(e)) if matches!(e.kind, Kind::Unauthorized | Kind::Forbidden) => {
            Verdict::CleanUp(format!(
                "the installer's credentials are refused ({e}): its service account or RBAC is deleted with the DaemonSet"
            ))
        }
        Err(e) => Verdict::Keep(format!(
            "cannot tell whether the DaemonSet is being deleted: {e}"
        )),
    }
}

fn lookup(
    sa_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    ns: &str,
    pod: &str,
) -> Result<Verdict, InstallError> {
    let server = kubeconfig::server(env(kubeconfig::ENV_HOST), env(kubeconfig::ENV_PORT))?;
    let client = ServiceAccount::client(sa_dir, &server, LOOKUP_TIMEOUT)?;
    // A stopping pod's object stays until the kubelet confirms its end, so
    // a missing one (a forced deletion) tells nothing: an error.
    let pod = client.kube.get_pod(ns, pod)?;
    let Some(owner) = owning_daemonset(&pod) else {
        return Ok(decide(ns, None, None));
    };
    let ds = match client.kube.get_object(&daemonset_resource(), ns, &owner) {
        Ok(ds) => Some(ds),
        Err(e) if e.kind == Kind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    Ok(decide(ns, Some(&owner), ds.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(deleting: bool) -> DynamicObject {
        let mut v = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "multus", "namespace": "kube-system"}});
        if deleting {
            v["metadata"]["deletionTimestamp"] = "2026-12-04T19:00:00Z".into();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_a_departing_daemonset_cleans_up() {
        let ns = "kube-system";
        assert!(matches!(
            decide(ns, Some("multus"), Some(&ds(false))),
            Verdict::Keep(_)
        ));
        assert!(matches!(
            decide(ns, Some("multus"), Some(&ds(true))),
            Verdict::CleanUp(_)
        ));
        assert!(matches!(
            decide(ns, Some("multus"), None),
            Verdict::CleanUp(_)
        ));
        assert!(matches!(decide(ns, None, None), Verdict::CleanUp(_)));
    }

    #[test]
    fn the_controller_owner_counts() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "multus-x", "ownerReferences": [
            {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u0"},
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "other", "uid": "u1"},
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "multus", "uid": "u2", "controller": true}]}}))
        .unwrap();
        assert_eq!(owning_daemonset(&pod).as_deref(), Some("multus"));
        assert_eq!(owning_daemonset(&Pod::default()), None);
    }
}
