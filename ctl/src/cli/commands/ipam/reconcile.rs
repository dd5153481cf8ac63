//! `multusctl ipam reconcile`: frees what pods that no longer exist still
//! hold in whereabouts' IPPools and reservations. It lists the pools, then
//! the pods (so every allocation it sees was made for a pod that existed
//! before the pod list), and writes each pool with a replace guarded by
//! the resourceVersion it read, recomputing on conflict. A pod that exists,
//! terminating or not, keeps its addresses. Run it from a CronJob, or by
//! hand after a node was lost; `--dry-run` only reports.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject};
use multus::delegate::wasm::cluster::context_namespace;
use multus::k8s::client::{Kind, Kube};
use serde_json::{json, Value};

use crate::reconcile::{free_orphans, orphan_reservations, Freed};

/// Guarded writes of one pool before giving up on it.
const ATTEMPTS: u32 = 20;

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The kubeconfig to use (multus's, or whereabouts').
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: PathBuf,
    /// Where the pools are; default the kubeconfig context's namespace,
    /// else kube-system (where whereabouts keeps them).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Report what would be freed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Budget of each API request.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

fn resource(plural: &str) -> ApiResource {
    ApiResource {
        group: "whereabouts.cni.cncf.io".into(),
        version: "v1alpha1".into(),
        api_version: "whereabouts.cni.cncf.io/v1alpha1".into(),
        kind: String::new(),
        plural: plural.into(),
    }
}

fn value(o: &DynamicObject) -> Value {
    serde_json::to_value(o).expect("API objects serialize")
}

struct Report {
    pools: usize,
    allocations: usize,
    freed: Vec<Freed>,
    reservations: Vec<(String, String)>,
}

fn reconcile(kube: &Kube, ns: &str, dry_run: bool) -> Result<Report, String> {
    let pools_res = resource("ippools");
    let res_res = resource("overlappingrangeipreservations");
    let pools = kube
        .list_objects(&pools_res, ns)
        .map_err(|e| e.to_string())?;
    let reservations = kube.list_objects(&res_res, ns).map_err(|e| e.to_string())?;
    // After the pools: an allocation seen above belongs to a pod that
    // existed before this list.
    let live: BTreeSet<String> = kube
        .list_pods()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default()
            )
        })
        .collect();
    let mut report = Report {
        pools: pools.items.len(),
        allocations: 0,
        freed: Vec::new(),
        reservations: Vec::new(),
    };
    for pool in &pools.items {
        let name = pool.metadata.name.clone().unwrap_or_default();
        let mut current = value(pool);
        report.allocations += current["spec"]["allocations"]
            .as_object()
            .map_or(0, |a| a.len());
        for attempt in 0.. {
            let (kept, freed) = free_orphans(&current, &live)?;
            if freed.is_empty() || dry_run {
                report.freed.extend(freed);
                break;
            }
            let obj: DynamicObject = serde_json::from_value(kept).map_err(|e| e.to_string())?;
            match kube.replace_object(&pools_res, ns, &name, &obj) {
                Ok(_) => {
                    report.freed.extend(freed);
                    break;
                }
                Err(e) if e.kind == Kind::Conflict && attempt + 1 < ATTEMPTS => {
                    let fresh = kube
                        .get_object(&pools_res, ns, &name)
                        .map_err(|e| e.to_string())?;
                    current = value(&fresh);
                }
                Err(e) => return Err(format!("IPPool {name}: {e}")),
            }
        }
    }
    let all: Vec<Value> = reservations.items.iter().map(value).collect();
    for (name, podref) in orphan_reservations(&all, &live) {
        if !dry_run {
            match kube.delete_object(&res_res, ns, &name) {
                Ok(()) => {}
                Err(e) if e.kind == Kind::NotFound => {}
                Err(e) => return Err(format!("reservation {name}: {e}")),
            }
        }
        report.reservations.push((name, podref));
    }
    Ok(report)
}

pub fn run(a: &ReconcileArgs) -> i32 {
    let ns = match &a.namespace {
        Some(ns) => ns.clone(),
        None => match kube::config::Kubeconfig::read_from(&a.kubeconfig) {
            Ok(kc) => context_namespace(&kc),
            Err(e) => {
                eprintln!("multusctl ipam reconcile: --kubeconfig: {e}");
                return 2;
            }
        },
    };
    let kube = match Kube::new(&a.kubeconfig, a.timeout) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("multusctl ipam reconcile: --kubeconfig: {e}");
            return 2;
        }
    };
    let report = match reconcile(&kube, &ns, a.dry_run) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("multusctl ipam reconcile: {e}");
            return 1;
        }
    };
    let verb = if a.dry_run { "would free" } else { "freed" };
    if a.json {
        let freed: Vec<Value> = report
            .freed
            .iter()
            .map(|f| {
                json!({"pool": f.pool, "ip": f.ip.to_string(), "podref": f.podref,
                            "containerID": f.id, "ifname": f.ifname})
            })
            .collect();
        let reservations: Vec<Value> = report
            .reservations
            .iter()
            .map(|(n, p)| json!({"name": n, "podref": p}))
            .collect();
        println!(
            "{}",
            json!({"namespace": ns, "dryRun": a.dry_run, "pools": report.pools,
                   "allocations": report.allocations, "freed": freed,
                   "reservationsDeleted": reservations})
        );
    } else {
        for f in &report.freed {
            println!(
                "{verb} {} from IPPool {} ({}, container {}, {})",
                f.ip, f.pool, f.podref, f.id, f.ifname
            );
        }
        for (n, p) in &report.reservations {
            println!("{verb} reservation {n} ({p})");
        }
        println!(
            "reconcile: namespace={ns} pools={} allocations={} freed={} reservations={}",
            report.pools,
            report.allocations,
            report.freed.len(),
            report.reservations.len()
        );
    }
    0
}
