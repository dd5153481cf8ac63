//! `multusctl plugin list`: every WasmPlugin object and its rollout: the
//! nodes running its digest, the nodes that failed, and why.

use std::path::PathBuf;
use std::time::Duration;

use multus::k8s::client::Kube;
use serde_json::{json, Value};

use crate::objects::status::NodeState;
use crate::objects::{resource, Spec};

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print the objects as JSON.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_name = "FILE", env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// One row per object: type, digest, role, ready and failed node counts,
/// and each failed node's error.
fn rows(items: &[Value]) -> Vec<Value> {
    items
        .iter()
        .map(|o| {
            let spec = Spec::from_object(o).ok();
            let nodes: Vec<NodeState> =
                serde_json::from_value(o["status"]["nodes"].clone()).unwrap_or_default();
            let want = spec.as_ref().map(|s| s.sha256.clone()).unwrap_or_default();
            let ready: Vec<&str> = nodes
                .iter()
                .filter(|n| n.error.is_none() && n.sha256.as_deref() == Some(want.as_str()))
                .map(|n| n.node.as_str())
                .collect();
            let failed: Vec<Value> = nodes
                .iter()
                .filter_map(|n| {
                    n.error
                        .as_ref()
                        .map(|e| json!({"node": n.node, "error": e}))
                })
                .collect();
            json!({"type": o["metadata"]["name"], "sha256": want,
                "role": spec.and_then(|s| s.role), "readyNodes": ready, "failedNodes": failed})
        })
        .collect()
}

pub fn run(a: &ListArgs) -> i32 {
    let kube = match Kube::new(&a.kubeconfig, a.timeout) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("multusctl plugin list: --kubeconfig: {e}");
            return 2;
        }
    };
    let list = match kube.list_objects(&resource(), "") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("multusctl plugin list: {e}");
            return 1;
        }
    };
    let items: Vec<Value> = list
        .items
        .iter()
        .map(|o| serde_json::to_value(o).expect("objects serialize"))
        .collect();
    let rows = rows(&items);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        );
        return 0;
    }
    println!(
        "{:<20} {:<14} {:<18} {:>5} {:>6}",
        "TYPE", "SHA256", "ROLE", "READY", "FAILED"
    );
    for r in &rows {
        let sha = r["sha256"].as_str().unwrap_or_default();
        println!(
            "{:<20} {:<14} {:<18} {:>5} {:>6}",
            r["type"].as_str().unwrap_or_default(),
            &sha[..sha.len().min(12)],
            r["role"].as_str().unwrap_or("-"),
            r["readyNodes"].as_array().map_or(0, Vec::len),
            r["failedNodes"].as_array().map_or(0, Vec::len),
        );
        for f in r["failedNodes"].as_array().into_iter().flatten() {
            println!(
                "    {}: {}",
                f["node"].as_str().unwrap_or_default(),
                f["error"].as_str().unwrap_or_default()
            );
        }
    }
    0
}
