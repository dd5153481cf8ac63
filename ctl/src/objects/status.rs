//! A WasmPlugin's status: one entry per node (the digest it runs, or the
//! last error), and the counts `kubectl get wasmplugins` shows.
//!
//! Every node writes the one object's status, so at hundreds of nodes a
//! read-modify-write guarded by the resourceVersion is hundreds of writers
//! racing (measured on a real API server: 6614 conflicts for one push to
//! 200 nodes). Instead each node owns its entry: `status.nodes` is a
//! list-map keyed by `node` (the CRD says so), and a node server-side
//! applies just its entry under a field manager of its own, which never
//! conflicts with another node's. The counts are one field every node may
//! write: each computes them from the object its apply returned and writes
//! them guarded by that object's resourceVersion. A conflict there means
//! another write came after, whose writer writes the counts after it, so
//! the last writer's counts stand and a refused one is dropped, not
//! retried. A node thus sends at most two requests per change, none when
//! its entry already says the same.

use kube::api::DynamicObject;
use multus::k8s::client::{Kind, Kube};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{resource, Spec};

/// An error's text kept per node.
const MAX_ERROR: usize = 512;

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

fn nodes(status: &Value) -> Vec<NodeState> {
    serde_json::from_value(status["nodes"].clone()).unwrap_or_default()
}

/// (ready, failed) of `status`'s entries against the object's digest.
pub fn counts(status: &Value, want: &str) -> (usize, usize) {
    let nodes = nodes(status);
    let ready = nodes
        .iter()
        .filter(|n| n.error.is_none() && n.sha256.as_deref() == Some(want))
        .count();
    let failed = nodes.iter().filter(|n| n.error.is_some()).count();
    (ready, failed)
}

/// The counts `status` should show, when it does not show them.
fn recount(status: &Value, want: &str) -> Option<(usize, usize)> {
    let (ready, failed) = counts(status, want);
    let shown = (
        status["readyNodes"].as_u64(),
        status["failedNodes"].as_u64(),
    );
    (shown != (Some(ready as u64), Some(failed as u64))).then_some((ready, failed))
}

/// Whether `status` shows `entry` and counts that add up.
fn current(status: &Value, entry: &NodeState, want: &str) -> bool {
    nodes(status).iter().any(|n| n.same(entry)) && recount(status, want).is_none()
}

/// The field manager of `node`'s entry: one per node (a manager shared by
/// two nodes would drop the other's entry at each apply), within the API
/// server's 128 bytes.
pub fn manager(node: &str) -> String {
    let m = format!("multus-plugin-sync/{node}");
    if m.len() <= 128 {
        return m;
    }
    use sha2::Digest;
    format!(
        "multus-plugin-sync/{}",
        multus::delegate::wasm::artifact::hex(&sha2::Sha256::digest(node.as_bytes()))
    )
}

/// Writes `entry` into the status of WasmPlugin `name`; `listed` is the
/// object as the pass listed it (nothing is sent when it already shows the
/// entry and its counts add up).
pub fn report(
    kube: &Kube,
    name: &str,
    listed: &DynamicObject,
    entry: &NodeState,
) -> Result<(), String> {
    let want = |obj: &Value| Spec::from_object(obj).map(|s| s.sha256).unwrap_or_default();
    let listed = serde_json::to_value(listed).map_err(|e| e.to_string())?;
    if current(&listed["status"], entry, &want(&listed)) {
        return Ok(());
    }
    let res = resource();
    let applied = match kube.apply_object_status(
        &res,
        "",
        name,
        &manager(&entry.node),
        &json!({"nodes": [entry]}),
    ) {
        Ok(o) => o,
        // Deleted meanwhile: the next pass removes its module.
        Err(e) if e.kind == Kind::NotFound => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    let mut after = serde_json::to_value(&applied).map_err(|e| e.to_string())?;
    // The apply's answer shows the entry: only the counts may be off.
    let Some((ready, failed)) = recount(&after["status"], &want(&after)) else {
        return Ok(());
    };
    after["status"]["readyNodes"] = ready.into();
    after["status"]["failedNodes"] = failed.into();
    let updated: DynamicObject = serde_json::from_value(after).map_err(|e| e.to_string())?;
    match kube.replace_object_status(&res, "", name, &updated) {
        // A later write's writer counts after it.
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind, Kind::Conflict | Kind::NotFound) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_whether_a_status_is_current() {
        let a = NodeState::new("a", Some("s1".into()), None);
        let b = NodeState::new("b", Some("s0".into()), Some("x".repeat(2000)));
        assert_eq!(b.error.as_ref().unwrap().len(), MAX_ERROR);
        let s = json!({"nodes": [a, b]});
        assert_eq!(counts(&s, "s1"), (1, 1));
        assert!(!current(&s, &a, "s1"), "no counts yet");
        let s = json!({"nodes": [a, b], "readyNodes": 1, "failedNodes": 1});
        assert!(current(
            &s,
            &NodeState::new("a", Some("s1".into()), None),
            "s1"
        ));
        assert!(!current(
            &s,
            &NodeState::new("a", Some("s2".into()), None),
            "s1"
        ));
        // A new version pushed: the same entries count differently.
        assert!(!current(&s, &a, "s2"));
    }

    #[test]
    fn one_manager_per_node_within_the_limit() {
        assert_eq!(manager("node-a"), "multus-plugin-sync/node-a");
        assert_ne!(manager("node-a"), manager("node-b"));
        let long = "n".repeat(253);
        assert!(manager(&long).len() <= 128);
        assert_ne!(manager(&long), manager(&"m".repeat(253)));
    }
}
