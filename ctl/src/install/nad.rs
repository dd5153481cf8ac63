//! A NetworkAttachmentDefinition for the master network, so pods can also
//! select the node's own CNI as a secondary network. Its `spec.config` is
//! empty: multus then resolves the network by name from `confDir`.

use std::path::Path;
use std::time::Duration;

use kube::api::DynamicObject;
use serde_json::json;

use super::kubeconfig::ServiceAccount;
use super::InstallError;

pub const MANAGED_BY: &str = "multusctl";

/// The NAD object for `name` in `namespace`.
pub fn object(namespace: &str, name: &str) -> Result<DynamicObject, InstallError> {
    if !is_dns1123_subdomain(name) {
        return Err(InstallError::Invalid(format!(
            "the master network's name {name:?} is not a valid Kubernetes object name, so no NAD can be made for it (lower-case letters, digits, '-' and '.')"
        )));
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
        },
        "spec": {"config": ""},
    }))
    .expect("a valid object"))
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Creates the NAD with the installer pod's own service account; one that
/// exists is left as it is. Returns whether it was created.
pub fn ensure(sa_dir: &Path, server: &str, obj: &DynamicObject) -> Result<bool, InstallError> {
    let client = ServiceAccount::client(sa_dir, server, Duration::from_secs(10))?;
    Ok(client.kube.create_nad(obj)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["kindnet", "k8s-pod-network", "cbr0", "a.b-c"] {
            assert!(object("kube-system", ok).is_ok(), "{ok}");
        }
        for bad in ["Kindnet", "my_net", "-a", "a..b", ""] {
            let e = object("kube-system", bad).unwrap_err().to_string();
            assert!(
                e.contains("not a valid Kubernetes object name"),
                "{bad}: {e}"
            );
        }
        let o = object("kube-system", "kindnet").unwrap();
        assert_eq!(o.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(o.data["spec"]["config"], "");
    }
}
