//! `cluster`: objects of the API groups the admin granted an IPAM plugin,
//! in its namespace only.

use super::HostState;
use crate::bindings::multus::plugin::cluster;
use crate::cluster::{ClusterBackend, ClusterError, Kind};

/// Every answer's text the guest gets, cut to 1 KiB (an API server's
/// answer can quote a whole object, an error the guest's own patch).
fn wit_cluster_error(e: ClusterError) -> cluster::ClusterError {
    let clip = |m: String| crate::text::clip(m, 1024);
    match e {
        ClusterError::NotFound(m) => cluster::ClusterError::NotFound(clip(m)),
        ClusterError::Conflict(m) => cluster::ClusterError::Conflict(clip(m)),
        ClusterError::Invalid(m) => cluster::ClusterError::Invalid(clip(m)),
        ClusterError::Denied(m) => cluster::ClusterError::Denied(clip(m)),
        ClusterError::Unavailable(m) => cluster::ClusterError::Unavailable(clip(m)),
    }
}

/// The host's kind of a guest's.
fn kind_of(kind: &cluster::Kind) -> Kind {
    Kind {
        group: kind.group.clone(),
        version: kind.version.clone(),
        plural: kind.plural.clone(),
    }
}

impl HostState {
    /// Checks the grant, then runs one cluster call on the backend.
    fn cluster_call<T>(
        &mut self,
        call: &str,
        kind: &cluster::Kind,
        name: Option<&str>,
        f: impl FnOnce(&mut dyn ClusterBackend, &Kind) -> Result<T, ClusterError>,
    ) -> Result<T, cluster::ClusterError> {
        let kind = kind_of(kind);
        let checked = match (&self.grant.cluster, self.cluster.as_deref_mut()) {
            (Some(g), Some(backend)) => g.check(&self.grant.plugin, &kind, name).map(|()| backend),
            _ => Err(ClusterError::Denied(format!(
                "plugin {:?} was granted no cluster access",
                self.grant.plugin
            ))),
        };
        match checked {
            Ok(backend) => f(backend, &kind).map_err(wit_cluster_error),
            Err(e) => {
                self.deny(format!("cluster.{call}({kind}): {e}"));
                Err(wit_cluster_error(e))
            }
        }
    }
}

impl cluster::Host for HostState {
    /// Empty when the call has no cluster access or no usable credentials;
    /// the next call then says why.
    fn namespace(&mut self) -> String {
        match (&self.grant.cluster, self.cluster.as_deref_mut()) {
            (Some(_), Some(backend)) => backend.namespace().unwrap_or_default(),
            _ => String::new(),
        }
    }

    fn get(&mut self, kind: cluster::Kind, name: String) -> Result<String, cluster::ClusterError> {
        self.cluster_call("get", &kind, Some(&name), |b, k| b.get(k, &name))
    }

    fn list(&mut self, kind: cluster::Kind) -> Result<String, cluster::ClusterError> {
        self.cluster_call("list", &kind, None, |b, k| b.list(k, ""))
    }

    fn list_labeled(
        &mut self,
        kind: cluster::Kind,
        selector: String,
    ) -> Result<String, cluster::ClusterError> {
        // The grant first, then the selector, as for a patch.
        self.cluster_call("list-labeled", &kind, None, |b, k| {
            b.list(k, &crate::cluster::checked_selector(&selector)?)
        })
    }

    fn get_cached(
        &mut self,
        kind: cluster::Kind,
        name: String,
    ) -> Result<String, cluster::ClusterError> {
        self.cluster_call("get-cached", &kind, Some(&name), |b, k| {
            b.get_cached(k, &name)
        })
    }

    fn create(
        &mut self,
        kind: cluster::Kind,
        object: String,
    ) -> Result<String, cluster::ClusterError> {
        self.cluster_call("create", &kind, None, |b, k| {
            b.create(k, crate::cluster::checked_object(&object)?)
        })
    }

    fn replace(
        &mut self,
        kind: cluster::Kind,
        name: String,
        object: String,
    ) -> Result<String, cluster::ClusterError> {
        self.cluster_call("replace", &kind, Some(&name), |b, k| {
            b.replace(k, &name, crate::cluster::checked_object(&object)?)
        })
    }

    fn node_name(&mut self) -> String {
        self.grant
            .cluster
            .as_ref()
            .map(|g| g.node.clone())
            .unwrap_or_default()
    }

    fn replace_status(
        &mut self,
        kind: cluster::Kind,
        name: String,
        object: String,
    ) -> Result<String, cluster::ClusterError> {
        self.cluster_call("replace-status", &kind, Some(&name), |b, k| {
            b.replace_status(k, &name, crate::cluster::checked_object(&object)?)
        })
    }

    fn delete(&mut self, kind: cluster::Kind, name: String) -> Result<(), cluster::ClusterError> {
        self.cluster_call("delete", &kind, Some(&name), |b, k| b.delete(k, &name))
    }

    fn patch_status(
        &mut self,
        kind: cluster::Kind,
        name: String,
        patch: String,
    ) -> Result<String, cluster::ClusterError> {
        // The grant first (an ungranted call is a recorded denial, whatever
        // it sends), then the patch, at the boundary, whatever backend
        // applies it (the host itself applies it too, after a 422).
        self.cluster_call("patch-status", &kind, Some(&name), |b, k| {
            let ops = crate::cluster::checked_status_patch(&patch)?;
            b.patch_status(k, &name, &ops)
        })
    }

    fn take_turn(&mut self, kind: cluster::Kind, name: String) -> bool {
        let Ok(kind) = self.cluster_call("take-turn", &kind, Some(&name), |_, k| Ok(k.clone()))
        else {
            return false;
        };
        let Some(turns) = self.turns.as_mut() else {
            return false;
        };
        match turns.take(&kind, &name) {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!(plugin = %self.grant.plugin, object = %name, error = %e, "no turn: going on without");
                false
            }
        }
    }

    fn end_turn(&mut self, kind: cluster::Kind, name: String) {
        if let Some(turns) = self.turns.as_mut() {
            turns.end(&kind_of(&kind), &name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{test_state as state, RecordingKernel};

    #[test]
    fn cluster_calls_reach_only_granted_groups() {
        use crate::cluster::{ClusterGrant, RecordingCluster};
        let rec = RecordingCluster::default();
        let mut s = state(None, RecordingKernel::default());
        let kind = |group: &str, plural: &str| cluster::Kind {
            group: group.into(),
            version: "v1".into(),
            plural: plural.into(),
        };
        // No grant: nothing reaches the backend.
        s.cluster = Some(Box::new(rec.clone()));
        assert!(matches!(
            cluster::Host::get(
                &mut s,
                kind("whereabouts.cni.cncf.io", "ippools"),
                "p".into()
            ),
            Err(cluster::ClusterError::Denied(_))
        ));
        // Ungranted, whatever the patch: a recorded denial, not "invalid".
        assert!(matches!(
            cluster::Host::patch_status(
                &mut s,
                kind("whereabouts.cni.cncf.io", "nodeslicepools"),
                "p".into(),
                r#"[{"op":"copy","from":"/status","path":"/status/x"}]"#.into()
            ),
            Err(cluster::ClusterError::Denied(_))
        ));
        s.grant.cluster = Some(ClusterGrant {
            groups: vec!["whereabouts.cni.cncf.io".into()],
            node: "node1".into(),
        });
        assert!(matches!(
            cluster::Host::get(
                &mut s,
                kind("whereabouts.cni.cncf.io", "ippools"),
                "p".into()
            ),
            Err(cluster::ClusterError::NotFound(_))
        ));
        let e = cluster::Host::get(&mut s, kind("", "secrets"), "token".into()).unwrap_err();
        assert!(
            matches!(&e, cluster::ClusterError::Denied(m) if m.contains("granted: whereabouts.cni.cncf.io")),
            "{e:?}"
        );
        assert_eq!(cluster::Host::namespace(&mut s), "kube-system");
        assert_eq!(
            rec.ops.lock().unwrap().clone(),
            vec!["get ippools.whereabouts.cni.cncf.io/v1 p"],
            "denied calls never reach the backend"
        );
        assert_eq!(s.denials.len(), 3);
    }
}
