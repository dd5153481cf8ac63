//! `multusctl plugin list`: every WasmPlugin object and its rollout, as
//! `multusctl plugin aggregate` counted it: the nodes running its digest,
//! the nodes that failed (the first few named, with why), and the nodes
//! that reported at all.

use std::path::PathBuf;
use std::time::Duration;

use multus::k8s::client::Kube;
use serde_json::{json, Value};

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

/// One row per object: type, digest, role and its status. A status
/// counted for an older generation is shown as it is, marked stale.
fn rows(items: &[Value]) -> Vec<Value> {
    items
        .iter()
        .map(|o| {
            let spec = Spec::from_object(o).ok();
            let st = &o["status"];
            let stale = st["observedGeneration"] != o["metadata"]["generation"];
            json!({"type": o["metadata"]["name"],
                "sha256": spec.as_ref().map(|s| s.sha256.clone()).unwrap_or_default(),
                "role": spec.and_then(|s| s.role),
                "readyNodes": st["readyNodes"].as_u64().unwrap_or(0),
                "failedNodes": st["failedNodes"].as_u64().unwrap_or(0),
                "reportingNodes": st["reportingNodes"].as_u64().unwrap_or(0),
                "failures": st["failures"].as_array().cloned().unwrap_or_default(),
                "stale": stale})
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
        "{:<20} {:<14} {:<18} {:>5} {:>6} {:>9}",
        "TYPE", "SHA256", "ROLE", "READY", "FAILED", "REPORTING"
    );
    for r in &rows {
        let sha = r["sha256"].as_str().unwrap_or_default();
        println!(
            "{:<20} {:<14} {:<18} {:>5} {:>6} {:>9}{}",
            r["type"].as_str().unwrap_or_default(),
            &sha[..sha.len().min(12)],
            r["role"].as_str().unwrap_or("-"),
            r["readyNodes"],
            r["failedNodes"],
            r["reportingNodes"],
            if r["stale"] == true {
                "  (not counted since the last push)"
            } else {
                ""
            }
        );
        for f in r["failures"].as_array().into_iter().flatten() {
            println!(
                "    {}: {}",
                f["node"].as_str().unwrap_or_default(),
                f["error"].as_str().unwrap_or_default()
            );
        }
    }
    0
}
