//! A WasmPlugin's status, summed from every node's report (report.rs) by
//! one writer, `multusctl plugin aggregate`: how many nodes run the
//! object's digest, how many refused it (the first few of them with
//! their errors), how many reported at all, and the generation counted.
//!
//! The status holds counts, not an entry per node: every node watches the
//! WasmPlugins, so each status write is sent to all of them, and a status
//! that grew with N would cost O(N²) bytes per rollout again. Per-node
//! detail is in the WasmPluginNode objects (`kubectl get wasmpluginnodes`).

use std::collections::BTreeMap;

use multus::k8s::client::{Kind, Kube};
use serde_json::{json, Value};

use super::report::{self, PluginState};
use super::{resource, Spec};

/// The failed nodes named in a status, with their errors.
pub const MAX_FAILURES: usize = 10;

/// One node's report: the node, and its entries.
pub type NodeReport = (String, Vec<PluginState>);

/// The status `plugin` should show given every node's report.
pub fn summarize(plugin: &Value, reports: &[NodeReport]) -> Value {
    let name = plugin["metadata"]["name"].as_str().unwrap_or_default();
    let want = Spec::from_object(plugin)
        .map(|s| s.sha256.to_ascii_lowercase())
        .unwrap_or_default();
    let (mut ready, mut reporting) = (0u64, 0u64);
    // By node name, so the ones named are the same at every count.
    let mut failed: BTreeMap<&str, String> = BTreeMap::new();
    for (node, entries) in reports {
        let Some(entry) = entries.iter().find(|p| p.name == name) else {
            continue;
        };
        reporting += 1;
        match entry {
            // Cut as a node cuts its own: a report written by other hands
            // must not make the status too large to write.
            PluginState { error: Some(e), .. } => {
                failed.insert(node, report::cut(e.clone()));
            }
            PluginState {
                sha256: Some(s), ..
            } if s.eq_ignore_ascii_case(&want) => ready += 1,
            _ => {}
        }
    }
    let failures: Vec<Value> = failed
        .iter()
        .take(MAX_FAILURES)
        .map(|(node, error)| json!({"node": node, "error": error}))
        .collect();
    json!({
        "observedGeneration": plugin["metadata"]["generation"],
        "readyNodes": ready,
        "failedNodes": failed.len(),
        "reportingNodes": reporting,
        "failures": failures,
    })
}

/// What one aggregation pass did.
#[derive(Debug, Default)]
pub struct Pass {
    /// WasmPlugins whose status was written.
    pub written: Vec<String>,
    /// WasmPlugins whose status write failed (a push came between the
    /// list and the write): the next pass comes soon.
    pub failed: Vec<String>,
    /// The reports' list version: where the watch for the next change
    /// starts.
    pub resource_version: Option<String>,
}

/// Lists the WasmPlugins and the reports, and writes each status that
/// differs from what it should be (guarded by the listed resourceVersion:
/// a push between the two is a conflict, counted again next pass).
pub fn aggregate_once(kube: &Kube) -> Result<Pass, String> {
    let list = |res| {
        kube.list_objects(&res, "").map_err(|e| match e.kind {
            Kind::NotFound => {
                format!("{e}: the WasmPlugin CRDs are not installed (kubectl apply -k deploy/crd)")
            }
            _ => e.to_string(),
        })
    };
    let reports = list(report::resource())?;
    let plugins = list(resource())?;
    // Parsed once a pass, not once per WasmPlugin.
    let reports_parsed: Vec<NodeReport> = reports
        .items
        .iter()
        .map(|r| {
            let node = r.metadata.name.clone().unwrap_or_default();
            let value = serde_json::to_value(r).expect("objects serialize");
            (node, report::plugins(&value))
        })
        .collect();
    let mut pass = Pass {
        resource_version: reports.metadata.resource_version.clone(),
        ..Pass::default()
    };
    for p in &plugins.items {
        let name = p.metadata.name.clone().unwrap_or_default();
        let mut value = serde_json::to_value(p).expect("objects serialize");
        let status = summarize(&value, &reports_parsed);
        if value["status"] == status {
            continue;
        }
        value["status"] = status;
        let updated = serde_json::from_value(value).map_err(|e| e.to_string())?;
        match kube.replace_object_status(&resource(), "", &name, &updated) {
            Ok(_) => pass.written.push(name),
            // Deleted since the list: nothing to show.
            Err(e) if e.kind == Kind::NotFound => {}
            Err(e) => {
                tracing::warn!(plugin = %name, error = %e, "cannot write the WasmPlugin's status");
                pass.failed.push(name);
            }
        }
    }
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(name: &str, sha: &str) -> Value {
        json!({"metadata": {"name": name, "generation": 3},
               "spec": {"sha256": sha, "source": {"configMap": {"name": "m", "key": "k"}}}})
    }

    fn node(name: &str, plugins: &[PluginState]) -> NodeReport {
        (name.to_string(), plugins.to_vec())
    }

    #[test]
    fn counts_ready_failed_and_reporting_nodes() {
        let want = "ab".repeat(32);
        let old = "cd".repeat(32);
        let mut reports = vec![
            node(
                "n0",
                &[PluginState::new("p", Some(want.to_uppercase()), None)],
            ),
            node("n1", &[PluginState::new("p", Some(old.clone()), None)]),
            node("n2", &[PluginState::new("q", Some(want.clone()), None)]),
            node("n3", &[]),
        ];
        for i in 0..12 {
            reports.push(node(
                &format!("f{i:02}"),
                &[PluginState::new(
                    "p",
                    Some(old.clone()),
                    Some(format!("bad {i}")),
                )],
            ));
        }
        let s = summarize(&plugin("p", &want), &reports);
        assert_eq!(
            (
                s["readyNodes"].as_u64(),
                s["failedNodes"].as_u64(),
                s["reportingNodes"].as_u64(),
                s["observedGeneration"].as_u64()
            ),
            (Some(1), Some(12), Some(14), Some(3))
        );
        let failures = s["failures"].as_array().unwrap();
        assert_eq!(failures.len(), MAX_FAILURES);
        assert_eq!(failures[0], json!({"node": "f00", "error": "bad 0"}));
        // An error written by other hands is cut as a node cuts its own.
        let mut long = node("zz", &[PluginState::new("p", None, None)]);
        long.1[0].error = Some("e".repeat(100_000));
        let s2 = summarize(&plugin("p", &want), &[long]);
        assert_eq!(s2["failures"][0]["error"].as_str().unwrap().len(), 512);
        // The same reports give the same status: nothing to write again.
        assert_eq!(summarize(&plugin("p", &want), &reports), s);
        // A new digest pushed: the node on it before is not ready now.
        let s = summarize(&plugin("p", &old), &reports);
        assert_eq!(s["readyNodes"].as_u64(), Some(1));
    }
}
