//! Custom objects on the Kubernetes API (`multus:plugin/cluster`, WIT
//! 0.1.2; `patch-status` 0.1.4). The runtime supplies the real backend (it
//! owns the API client); here are the types, the grant check, the status
//! patch as the API server applies it, and an in-memory recording backend.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// A kind of namespaced custom object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Kind {
    pub group: String,
    pub version: String,
    pub plural: String,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}/{}", self.plural, self.group, self.version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// What one call may reach: these API groups (in the backend's namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterGrant {
    pub groups: Vec<String>,
    /// The node name the guest is told.
    pub node: String,
}

impl ClusterGrant {
    pub fn check(&self, plugin: &str, kind: &Kind) -> Result<(), ClusterError> {
        if self.groups.contains(&kind.group) {
            return Ok(());
        }
        Err(ClusterError::Denied(format!(
            "plugin {plugin:?} may not reach API group {:?} (granted: {})",
            kind.group,
            crate::grant::listed(&self.groups)
        )))
    }
}

/// The calls, all in one namespace the backend decides (from the
/// credentials it resolves, which is why it is asked, lazily).
pub trait ClusterBackend: Send {
    fn namespace(&mut self) -> Result<String, ClusterError>;
    fn get(&mut self, kind: &Kind, name: &str) -> Result<String, ClusterError>;
    fn list(&mut self, kind: &Kind) -> Result<String, ClusterError>;
    fn create(&mut self, kind: &Kind, object: &str) -> Result<String, ClusterError>;
    fn replace(&mut self, kind: &Kind, name: &str, object: &str) -> Result<String, ClusterError>;
    fn replace_status(
        &mut self,
        kind: &Kind,
        name: &str,
        object: &str,
    ) -> Result<String, ClusterError>;
    fn delete(&mut self, kind: &Kind, name: &str) -> Result<(), ClusterError>;
    /// A JSON patch of the status subresource, unguarded but by its `test`
    /// ops (a failed one is [`ClusterError::Conflict`]).
    fn patch_status(
        &mut self,
        kind: &Kind,
        name: &str,
        patch: &str,
    ) -> Result<String, ClusterError>;
}

/// What the API server does with a JSON patch of a status subresource:
/// the patch applies to the object as stored, and only its `status` is
/// kept (the status strategy drops any other change). A failed `test` is a
/// [`ClusterError::Conflict`] carrying the API server's words for it.
pub fn patch_status_of(stored: &Value, patch: &str) -> Result<Value, ClusterError> {
    let ops: json_patch::Patch = serde_json::from_str(patch)
        .map_err(|e| ClusterError::Invalid(format!("the JSON patch: {e}")))?;
    let mut patched = stored.clone();
    json_patch::patch(&mut patched, &ops).map_err(|e| match e.kind {
        json_patch::PatchErrorKind::TestFailed => {
            ClusterError::Conflict(format!("testing value {} failed: test failed", e.path))
        }
        _ => ClusterError::Invalid(format!("the JSON patch: {e}")),
    })?;
    let mut updated = stored.clone();
    updated["status"] = patched["status"].take();
    Ok(updated)
}

/// Records every call and answers from objects kept in memory, with the
/// API server's resourceVersion rules, so a plugin's dry run behaves as on
/// an empty cluster; nothing leaves the process.
#[derive(Clone, Default)]
pub struct RecordingCluster {
    pub ops: Arc<Mutex<Vec<String>>>,
    objects: Arc<Mutex<BTreeMap<(Kind, String), Value>>>,
    rv: Arc<Mutex<u64>>,
}

impl RecordingCluster {
    fn record(&self, op: String) {
        self.ops.lock().expect("ops").push(op);
    }

    fn next_rv(&self) -> String {
        let mut rv = self.rv.lock().expect("rv");
        *rv += 1;
        rv.to_string()
    }

    fn parse(object: &str) -> Result<Value, ClusterError> {
        serde_json::from_str(object).map_err(|e| ClusterError::Invalid(format!("not JSON: {e}")))
    }
}

impl ClusterBackend for RecordingCluster {
    fn namespace(&mut self) -> Result<String, ClusterError> {
        Ok("kube-system".into())
    }

    fn get(&mut self, kind: &Kind, name: &str) -> Result<String, ClusterError> {
        self.record(format!("get {kind} {name}"));
        let objects = self.objects.lock().expect("objects");
        objects
            .get(&(kind.clone(), name.to_string()))
            .map(Value::to_string)
            .ok_or_else(|| ClusterError::NotFound(format!("{kind} {name:?}")))
    }

    fn list(&mut self, kind: &Kind) -> Result<String, ClusterError> {
        self.record(format!("list {kind}"));
        let objects = self.objects.lock().expect("objects");
        let items: Vec<&Value> = objects
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|(_, v)| v)
            .collect();
        Ok(json!({"items": items, "metadata": {"resourceVersion": self.rv.lock().expect("rv").to_string()}}).to_string())
    }

    fn create(&mut self, kind: &Kind, object: &str) -> Result<String, ClusterError> {
        self.record(format!("create {kind} {object}"));
        let mut v = Self::parse(object)?;
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            return Err(ClusterError::Invalid(
                "metadata.name: Required value".into(),
            ));
        }
        let key = (kind.clone(), name.clone());
        if self.objects.lock().expect("objects").contains_key(&key) {
            return Err(ClusterError::Conflict(format!(
                "{kind} {name:?} already exists"
            )));
        }
        v["metadata"]["resourceVersion"] = self.next_rv().into();
        self.objects.lock().expect("objects").insert(key, v.clone());
        Ok(v.to_string())
    }

    fn replace(&mut self, kind: &Kind, name: &str, object: &str) -> Result<String, ClusterError> {
        self.record(format!("replace {kind} {name} {object}"));
        let mut v = Self::parse(object)?;
        let key = (kind.clone(), name.to_string());
        let stored_rv = self
            .objects
            .lock()
            .expect("objects")
            .get(&key)
            .map(|s| s["metadata"]["resourceVersion"].clone())
            .ok_or_else(|| ClusterError::NotFound(format!("{kind} {name:?}")))?;
        if v["metadata"]["resourceVersion"] != stored_rv {
            return Err(ClusterError::Conflict(format!(
                "{kind} {name:?} has been modified"
            )));
        }
        v["metadata"]["resourceVersion"] = self.next_rv().into();
        self.objects.lock().expect("objects").insert(key, v.clone());
        Ok(v.to_string())
    }

    fn replace_status(
        &mut self,
        kind: &Kind,
        name: &str,
        object: &str,
    ) -> Result<String, ClusterError> {
        self.record(format!("replace-status {kind} {name}"));
        let mut v = Self::parse(object)?;
        let key = (kind.clone(), name.to_string());
        let mut objects = self.objects.lock().expect("objects");
        let stored = objects
            .get_mut(&key)
            .ok_or_else(|| ClusterError::NotFound(format!("{kind} {name:?}")))?;
        if v["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"] {
            return Err(ClusterError::Conflict(format!(
                "{kind} {name:?} has been modified"
            )));
        }
        stored["status"] = v["status"].take();
        stored["metadata"]["resourceVersion"] = self.next_rv().into();
        Ok(stored.to_string())
    }

    fn patch_status(
        &mut self,
        kind: &Kind,
        name: &str,
        patch: &str,
    ) -> Result<String, ClusterError> {
        self.record(format!("patch-status {kind} {name} {patch}"));
        let key = (kind.clone(), name.to_string());
        let mut objects = self.objects.lock().expect("objects");
        let stored = objects
            .get_mut(&key)
            .ok_or_else(|| ClusterError::NotFound(format!("{kind} {name:?}")))?;
        *stored = patch_status_of(stored, patch)?;
        stored["metadata"]["resourceVersion"] = self.next_rv().into();
        Ok(stored.to_string())
    }

    fn delete(&mut self, kind: &Kind, name: &str) -> Result<(), ClusterError> {
        self.record(format!("delete {kind} {name}"));
        self.objects
            .lock()
            .expect("objects")
            .remove(&(kind.clone(), name.to_string()))
            .map(drop)
            .ok_or_else(|| ClusterError::NotFound(format!("{kind} {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools() -> Kind {
        Kind {
            group: "whereabouts.cni.cncf.io".into(),
            version: "v1alpha1".into(),
            plural: "ippools".into(),
        }
    }

    #[test]
    fn grant_names_the_group() {
        let g = ClusterGrant {
            groups: vec!["whereabouts.cni.cncf.io".into()],
            node: "node1".into(),
        };
        g.check("whereabouts", &pools()).unwrap();
        let mut secrets = pools();
        secrets.group = String::new();
        secrets.plural = "secrets".into();
        let e = g.check("whereabouts", &secrets).unwrap_err();
        assert!(matches!(e, ClusterError::Denied(m) if m.contains("\"\"")));
    }

    #[test]
    fn a_status_patch_is_guarded_by_its_tests_alone() {
        let mut c = RecordingCluster::default();
        let k = pools();
        c.create(&k, r#"{"metadata":{"name":"p"},"spec":{"range":"a"}}"#)
            .unwrap();
        let stored: Value = serde_json::from_str(&c.get(&k, "p").unwrap()).unwrap();
        let first = r#"[{"op":"add","path":"/status","value":{"slots":["",""]}}]"#;
        c.patch_status(&k, "p", first).unwrap();
        // Two writers of different slots, neither knowing the other's
        // version: both land.
        let claim = |i: usize, who: &str| {
            format!(
                r#"[{{"op":"test","path":"/status/slots/{i}","value":""}},{{"op":"replace","path":"/status/slots/{i}","value":"{who}"}}]"#
            )
        };
        c.patch_status(&k, "p", &claim(0, "a")).unwrap();
        let after: Value =
            serde_json::from_str(&c.patch_status(&k, "p", &claim(1, "b")).unwrap()).unwrap();
        assert_eq!(after["status"]["slots"], json!(["a", "b"]));
        assert_ne!(
            after["metadata"]["resourceVersion"],
            stored["metadata"]["resourceVersion"]
        );
        // The same slot again: its test fails, nothing changes.
        let e = c.patch_status(&k, "p", &claim(0, "c")).unwrap_err();
        assert!(
            matches!(&e, ClusterError::Conflict(m) if m.contains("/status/slots/0")),
            "{e:?}"
        );
        // Only status is written; a broken patch is invalid.
        c.patch_status(
            &k,
            "p",
            r#"[{"op":"replace","path":"/spec/range","value":"b"}]"#,
        )
        .unwrap();
        let now: Value = serde_json::from_str(&c.get(&k, "p").unwrap()).unwrap();
        assert_eq!(now["spec"]["range"], "a");
        assert_eq!(now["status"]["slots"], json!(["a", "b"]));
        assert!(matches!(
            c.patch_status(&k, "p", "{"),
            Err(ClusterError::Invalid(_))
        ));
        assert!(matches!(
            c.patch_status(
                &k,
                "p",
                r#"[{"op":"replace","path":"/status/none/0","value":1}]"#
            ),
            Err(ClusterError::Invalid(_))
        ));
        assert!(matches!(
            c.patch_status(&k, "q", "[]"),
            Err(ClusterError::NotFound(_))
        ));
    }

    #[test]
    fn recording_backend_keeps_resource_versions() {
        let mut c = RecordingCluster::default();
        let k = pools();
        assert!(matches!(c.get(&k, "p"), Err(ClusterError::NotFound(_))));
        let created: Value = serde_json::from_str(
            &c.create(&k, r#"{"metadata":{"name":"p"},"spec":{}}"#)
                .unwrap(),
        )
        .unwrap();
        assert!(matches!(
            c.create(&k, r#"{"metadata":{"name":"p"}}"#),
            Err(ClusterError::Conflict(_))
        ));
        let stale = r#"{"metadata":{"name":"p","resourceVersion":"0"}}"#;
        assert!(matches!(
            c.replace(&k, "p", stale),
            Err(ClusterError::Conflict(_))
        ));
        let mut fresh = created.clone();
        fresh["spec"]["x"] = 1.into();
        let replaced: Value =
            serde_json::from_str(&c.replace(&k, "p", &fresh.to_string()).unwrap()).unwrap();
        assert_ne!(
            replaced["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
        c.delete(&k, "p").unwrap();
        assert_eq!(c.ops.lock().unwrap().len(), 6);
    }
}
