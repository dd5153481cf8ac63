//! This node's report: a WasmPluginNode (`multus-wasm.io/v1alpha1`,
//! cluster-scoped, named after the node) listing, per WasmPlugin, the
//! digest the node runs or why it does not run the object's.
//!
//! One object per node, written by that node alone, is what lets a push
//! reach hundreds of nodes: every node writing its entry into the one
//! WasmPlugin's status made each write O(N) for the API server (a merge
//! over N entries and N managers) and sent the whole N-entry object to
//! every node watching, O(N²) bytes per rollout (measured at 100 nodes:
//! 6-12 requests per node, 73-96 refused count writes, the API server
//! 55-164 CPU-seconds). `multusctl plugin aggregate` sums the reports
//! into each WasmPlugin's status. Kubernetes projects do the same at
//! scale: NFD's NodeFeature per node, Cilium's CiliumNode.
//!
//! A node applies its report (server-side apply: one request, creating
//! it or not, no read first) only when an entry changed, so a rollout
//! costs a node one write. Owned by the Node object when the node exists,
//! so the garbage collector removes a deleted node's report.

use kube::api::ApiResource;
use multus::k8s::client::{Kind, Kube};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const KIND: &str = "WasmPluginNode";
pub const PLURAL: &str = "wasmpluginnodes";
/// The one field manager of every report (each object has one writer).
pub const MANAGER: &str = "multus-plugin-sync";

/// An error's text kept per plugin.
const MAX_ERROR: usize = 512;

pub fn resource() -> ApiResource {
    super::group_resource(KIND, PLURAL)
}

fn node_resource() -> ApiResource {
    ApiResource::erase::<k8s_openapi::api::core::v1::Node>(&())
}

/// What this node runs of one WasmPlugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginState {
    /// The WasmPlugin's name (the plugin type).
    pub name: String,
    /// The digest this node runs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why it does not run the object's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When this node last changed this entry (RFC 3339).
    #[serde(default)]
    pub time: String,
}

impl PluginState {
    pub fn new(name: &str, sha256: Option<String>, error: Option<String>) -> Self {
        let error = error.map(cut);
        Self {
            name: name.into(),
            sha256,
            error,
            time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    fn same(&self, other: &Self) -> bool {
        (&self.name, &self.sha256, &self.error) == (&other.name, &other.sha256, &other.error)
    }
}

/// An error's text as reports keep it: at most [`MAX_ERROR`] bytes.
pub fn cut(e: String) -> String {
    multus_host_functions::text::clip(e, MAX_ERROR)
}

/// The entries of a report object (`status.plugins`).
pub fn plugins(report: &Value) -> Vec<PluginState> {
    serde_json::from_value(report["status"]["plugins"].clone()).unwrap_or_default()
}

/// This node's writer of its report: what it wrote last, so that a pass
/// that changed nothing sends nothing.
pub struct Reporter {
    node: String,
    /// The Node object's uid, owner of the report.
    owner: Option<String>,
    written: Option<Vec<PluginState>>,
}

impl Reporter {
    /// Looks the Node object up once, to own the report (without one, a
    /// node not registered yet or a test, the report is written unowned),
    /// and reads the report as an earlier run left it, so that a restart
    /// (every node at a DaemonSet's rolling update) writes nothing that
    /// did not change.
    pub fn new(kube: &Kube, node: &str) -> Self {
        let owner = match kube.get_object(&node_resource(), "", node) {
            Ok(n) => n.metadata.uid,
            Err(e) => {
                if e.kind != Kind::NotFound {
                    tracing::warn!(node, error = %e, "no Node object to own this node's WasmPluginNode");
                }
                None
            }
        };
        let written = kube
            .get_object(&resource(), "", node)
            .ok()
            // Owned otherwise (the Node came or went since): written again.
            .filter(|r| {
                let uids: Vec<&str> = (r.metadata.owner_references.iter().flatten())
                    .map(|o| o.uid.as_str())
                    .collect();
                uids == owner.as_deref().into_iter().collect::<Vec<_>>()
            })
            .map(|r| plugins(&serde_json::to_value(r).expect("objects serialize")));
        Self {
            node: node.into(),
            owner,
            written,
        }
    }

    /// Writes `states` (one per WasmPlugin listed) unless they say what
    /// was written last; an entry that did not change keeps its time.
    /// Whether a write was sent.
    pub fn report(&mut self, kube: &Kube, mut states: Vec<PluginState>) -> Result<bool, String> {
        states.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(before) = &self.written {
            for s in &mut states {
                if let Some(b) = before.iter().find(|b| b.same(s)) {
                    s.time = b.time.clone();
                }
            }
            if *before == states {
                return Ok(false);
            }
        }
        let mut obj = json!({"status": {"plugins": states}});
        if let Some(uid) = &self.owner {
            obj["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "v1", "kind": "Node", "name": self.node, "uid": uid,
            }]);
        }
        kube.apply_object(&resource(), "", &self.node, MANAGER, &obj)
            .map_err(|e| e.to_string())?;
        self.written = Some(states);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_cut_and_sameness_ignores_the_time() {
        let long = PluginState::new("a", None, Some("é".repeat(600)));
        assert!(long.error.as_ref().unwrap().len() <= MAX_ERROR);
        let mut a = PluginState::new("a", Some("s".into()), None);
        let b = a.clone();
        a.time = "2000-01-01T00:00:00Z".into();
        assert!(a.same(&b));
        assert!(!a.same(&PluginState::new("a", Some("t".into()), None)));
        let report = json!({"status": {"plugins": [a]}});
        assert_eq!(plugins(&report), vec![a]);
        assert!(plugins(&json!({})).is_empty());
    }
}
