//! A WasmPlugin's status: one entry per node (the digest it runs, or the
//! last error), and the counts `kubectl get wasmplugins` shows. Each node
//! writes only its own entry, with a replace of the status subresource
//! guarded by the resourceVersion it read.

use kube::api::DynamicObject;
use multus::k8s::client::{Kind, Kube};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{resource, Spec};

/// Entries kept: one per node, so a bound on the nodes of one cluster.
const MAX_NODES: usize = 5000;
/// An error's text kept per node.
const MAX_ERROR: usize = 512;
const ATTEMPTS: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    pub node: String,
    /// The digest this node runs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why it does not run the object's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When this node last changed its entry (RFC 3339).
    #[serde(default)]
    pub time: String,
}

impl NodeState {
    pub fn new(node: &str, sha256: Option<String>, error: Option<String>) -> Self {
        let error = error.map(|mut e| {
            if e.len() > MAX_ERROR {
                let mut cut = MAX_ERROR;
                while !e.is_char_boundary(cut) {
                    cut -= 1;
                }
                e.truncate(cut);
            }
            e
        });
        Self {
            node: node.into(),
            sha256,
            error,
            time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    fn same(&self, other: &Self) -> bool {
        (&self.node, &self.sha256, &self.error) == (&other.node, &other.sha256, &other.error)
    }
}

/// `status` with `entry` in place of its node's, sorted by node, bounded,
/// and recounted against the object's digest; `None` when the node's
/// entry already says the same.
pub fn merged(status: &Value, entry: &NodeState, want: &str) -> Option<Value> {
    let mut nodes: Vec<NodeState> =
        serde_json::from_value(status["nodes"].clone()).unwrap_or_default();
    if nodes.iter().any(|n| n.node == entry.node && n.same(entry)) {
        return None;
    }
    nodes.retain(|n| n.node != entry.node);
    nodes.push(entry.clone());
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    nodes.truncate(MAX_NODES);
    let ready = nodes
        .iter()
        .filter(|n| n.error.is_none() && n.sha256.as_deref() == Some(want))
        .count();
    let failed = nodes.iter().filter(|n| n.error.is_some()).count();
    Some(json!({"nodes": nodes, "readyNodes": ready, "failedNodes": failed}))
}

/// Writes `entry` into the status of WasmPlugin `name`.
pub fn report(kube: &Kube, name: &str, entry: &NodeState) -> Result<(), String> {
    let res = resource();
    for _ in 0..ATTEMPTS {
        let obj = match kube.get_object(&res, "", name) {
            Ok(o) => o,
            // Deleted meanwhile: the next pass removes its module.
            Err(e) if e.kind == Kind::NotFound => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let value = serde_json::to_value(&obj).map_err(|e| e.to_string())?;
        let want = Spec::from_object(&value)
            .map(|s| s.sha256)
            .unwrap_or_default();
        let Some(status) = merged(&value["status"], entry, &want) else {
            return Ok(());
        };
        let mut updated: DynamicObject = obj;
        updated.data["status"] = status;
        match kube.replace_object_status(&res, "", name, &updated) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind == Kind::Conflict => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!(
        "the status of WasmPlugin {name} kept changing under {ATTEMPTS} writes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_node_and_the_counts() {
        let a = NodeState::new("a", Some("s1".into()), None);
        let s = merged(&Value::Null, &a, "s1").unwrap();
        assert_eq!(
            (s["readyNodes"].as_u64(), s["failedNodes"].as_u64()),
            (Some(1), Some(0))
        );
        assert!(merged(&s, &NodeState::new("a", Some("s1".into()), None), "s1").is_none());
        let b = NodeState::new("b", Some("s0".into()), Some("x".repeat(2000)));
        let s = merged(&s, &b, "s1").unwrap();
        assert_eq!(
            (s["readyNodes"].as_u64(), s["failedNodes"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(s["nodes"][1]["error"].as_str().unwrap().len(), MAX_ERROR);
        let b2 = NodeState::new("b", Some("s1".into()), None);
        let s = merged(&s, &b2, "s1").unwrap();
        assert_eq!(s["nodes"].as_array().unwrap().len(), 2);
        assert_eq!(s["readyNodes"].as_u64(), Some(2));
    }
}
