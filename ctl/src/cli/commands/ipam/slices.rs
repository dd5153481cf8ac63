//! `multusctl ipam slices`: the node-slice controller (whereabouts' own has
//! the same job). For every NAD whose whereabouts IPAM sets
//! `node_slice_size`, it gives each Node a slice of the range in the
//! range's NodeSlicePool before that node's pods ask, so an ADD only
//! reads the pool: without it, nodes starting pods at once all write the
//! one object to claim their first slice (at 100 nodes, 2550 refused
//! writes). A slice whose Node is deleted is free again. Each pool is one
//! status write guarded by the resourceVersion read, recomputed on a
//! conflict (a node's module claiming a slot meanwhile). It watches the
//! Nodes and the NADs at once, so a node that joins, or a NAD created just
//! before its pods, has its slices within a pass; a full pass runs every
//! `--interval` anyway. deploy/whereabouts runs it as a
//! Deployment of one; two at once compute the same list, guarded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject};
use multus::k8s::client::{nad_resource, Kind, Kube};
use serde_json::{json, Value};

use crate::objects::wait::{start, wait_any, Retry, Watching};
use crate::slices::{entries, networks, plan, status_of, Network};

/// Guarded writes of one pool in a pass before it waits for the next.
const ATTEMPTS: u32 = 10;

/// NADs per list request.
const NAD_PAGE: u32 = 50;

#[derive(Debug, clap::Args)]
pub struct SlicesArgs {
    /// The API credentials; default the pod's service account.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Where the NodeSlicePools are (where the whereabouts module's
    /// kubeconfig context points); default the kubeconfig context's
    /// namespace, else kube-system.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// A full pass at least this often, whether a watched Node or NAD
    /// changed or not.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// One pass, print what it did, then exit (1 if a pool could not be
    /// written, a node was left without a slice or a NAD's slices could
    /// not be read).
    #[arg(long)]
    pub once: bool,
    /// With --once: print what a pass would do; write nothing.
    #[arg(long, requires = "once")]
    pub dry_run: bool,
    /// Only the NADs of these namespaces (comma list) [default: every
    /// namespace's, as whereabouts' controller]. Where anyone may create a
    /// NAD, name the namespaces whose NADs may have pools made and written.
    #[arg(long, value_name = "NS,...", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// At most this many NodeSlicePools are managed (by name, in order);
    /// the NADs of any more are reported, not acted on. A pool lists at
    /// most 1024 slices (about 56 KiB).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_pools: usize,
}

fn whereabouts(plural: &str) -> ApiResource {
    ApiResource {
        group: "whereabouts.cni.cncf.io".into(),
        version: "v1alpha1".into(),
        api_version: "whereabouts.cni.cncf.io/v1alpha1".into(),
        kind: "NodeSlicePool".into(),
        plural: plural.into(),
    }
}

fn nodes() -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Node".into(),
        plural: "nodes".into(),
    }
}

fn value(o: &DynamicObject) -> Value {
    serde_json::to_value(o).expect("API objects serialize")
}

/// What one pass did to one pool.
#[derive(Debug, Default)]
struct PoolPass {
    name: String,
    assigned: Vec<(String, String)>,
    freed: Vec<(String, String)>,
    dropped: Vec<(String, String)>,
    unplaced: Vec<String>,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct Pass {
    /// The Node list's and the NAD list's versions, and the Nodes'
    /// generations, to watch from.
    resource_version: Option<String>,
    nad_version: Option<String>,
    generations: BTreeMap<String, i64>,
    pools: Vec<PoolPass>,
    /// NADs whose config could not be read, with why.
    bad_nads: Vec<(String, String)>,
}

impl Pass {
    fn ok(&self) -> bool {
        self.pools
            .iter()
            .all(|p| p.error.is_none() && p.unplaced.is_empty())
    }
}

/// The ways NADs cut one pool, each with the NADs (`ns/name`) that cut it so.
type Cuts = Vec<(Network, Vec<String>)>;

/// The sliced networks of every NAD, by pool.
fn sliced_networks(
    nads: &[DynamicObject],
    namespaces: &[String],
    pools: &mut BTreeMap<String, Cuts>,
    bad: &mut Vec<(String, String)>,
) {
    let listed = |nad: &DynamicObject| {
        let ns = nad.metadata.namespace.as_deref().unwrap_or_default();
        namespaces.is_empty() || namespaces.iter().any(|n| n == ns)
    };
    for nad in nads.iter().filter(|n| listed(n)) {
        let key = format!(
            "{}/{}",
            nad.metadata.namespace.as_deref().unwrap_or_default(),
            nad.metadata.name.as_deref().unwrap_or_default()
        );
        let Some(text) = nad.data["spec"]["config"].as_str() else {
            continue;
        };
        let found = serde_json::from_str::<Value>(text)
            .map_err(|e| format!("spec.config: {e}"))
            .and_then(|c| networks(&c));
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                bad.push((key, e));
                continue;
            }
        };
        if let Some(net) = found {
            let cuts = pools.entry(net.pool.clone()).or_default();
            match cuts.iter_mut().find(|(n, _)| *n == net) {
                Some((_, keys)) => keys.push(key.clone()),
                None => cuts.push((net, vec![key.clone()])),
            }
        }
    }
}

fn cut_of(net: &Network) -> String {
    format!("{} in {} slices", net.range, net.slice_size())
}

/// The one cut of a pool NADs disagree on: the existing pool's own (a NAD
/// of another namespace naming the pool cannot take it from the NADs
/// that made it; the others are reported as `bad`), else none: which one
/// is meant is not for this controller to guess.
fn pick_cut(
    kube: &Kube,
    ns: &str,
    pool: &str,
    cuts: Cuts,
    bad: &mut Vec<(String, String)>,
) -> Result<Network, String> {
    let existing = match kube.get_object(&whereabouts("nodeslicepools"), ns, pool) {
        Ok(o) => Some(value(&o)),
        Err(e) if e.kind == Kind::NotFound => None,
        Err(e) => return Err(e.to_string()),
    };
    let chosen = existing
        .as_ref()
        .and_then(|o| cuts.iter().position(|(n, _)| same_cut(o, n)));
    let Some(i) = chosen else {
        let all: Vec<String> = cuts
            .iter()
            .map(|(n, keys)| format!("{} as {}", keys.join(", "), cut_of(n)))
            .collect();
        return Err(format!(
            "NADs cut it differently ({}), and no NodeSlicePool says which: give each its own ipam.network_name",
            all.join("; ")
        ));
    };
    let mut cuts = cuts;
    let (net, _) = cuts.remove(i);
    for (other, keys) in cuts {
        for key in keys {
            bad.push((
                key,
                format!(
                    "it cuts NodeSlicePool {pool} as {}, which is cut as {}: not used for it (give it its own ipam.network_name)",
                    cut_of(&other),
                    cut_of(&net)
                ),
            ));
        }
    }
    Ok(net)
}

/// The slices an IPPool still holds addresses in.
fn busy(pools: &[DynamicObject]) -> BTreeSet<String> {
    pools
        .iter()
        .map(value)
        .filter(|p| {
            p["spec"]["allocations"]
                .as_object()
                .is_some_and(|a| !a.is_empty())
        })
        .filter_map(|p| p["spec"]["range"].as_str().map(str::to_string))
        .collect()
}

/// Whether the pool's spec cuts the range as `net` does.
fn same_cut(object: &Value, net: &Network) -> bool {
    let range = object["spec"]["range"]
        .as_str()
        .and_then(|r| r.parse::<ipnet::IpNet>().ok())
        .map(|r| r.trunc());
    let size = object["spec"]["sliceSize"]
        .as_str()
        .and_then(|s| s.trim_start_matches('/').parse::<u8>().ok());
    range == Some(net.range) && size == Some(net.prefix)
}

/// One pool, read and written until its list is what it should be.
fn settle_pool(
    kube: &Kube,
    ns: &str,
    net: &Network,
    nodes: &BTreeSet<String>,
    busy: &BTreeSet<String>,
    dry_run: bool,
) -> PoolPass {
    let res = whereabouts("nodeslicepools");
    let mut out = PoolPass {
        name: net.pool.clone(),
        ..PoolPass::default()
    };
    let fail = |mut out: PoolPass, e: String| {
        out.error = Some(e);
        out
    };
    for _ in 0..ATTEMPTS {
        let object = match kube.get_object(&res, ns, &net.pool) {
            Ok(o) => value(&o),
            Err(e) if e.kind == Kind::NotFound && dry_run => {
                json!({"spec": {"range": net.range.to_string(), "sliceSize": net.slice_size()}})
            }
            Err(e) if e.kind == Kind::NotFound => {
                let new = json!({"apiVersion": "whereabouts.cni.cncf.io/v1alpha1",
                    "kind": "NodeSlicePool", "metadata": {"name": net.pool, "namespace": ns},
                    "spec": {"range": net.range.to_string(), "sliceSize": net.slice_size()}});
                let new: DynamicObject = serde_json::from_value(new).expect("a NodeSlicePool");
                match kube.create_object(&res, ns, &new) {
                    Ok(_) => continue,
                    Err(e) if e.kind == Kind::Conflict => continue,
                    Err(e) => return fail(out, e.to_string()),
                }
            }
            Err(e) => return fail(out, e.to_string()),
        };
        if !same_cut(&object, net) {
            return fail(
                out,
                format!(
                    "it is cut as {} in {} slices and its NADs say {}: slices are not cut again under the IPPools that hold their addresses; delete the NodeSlicePool (and free its slices' IPPools) to cut it anew",
                    object["spec"]["range"].as_str().unwrap_or("?"),
                    object["spec"]["sliceSize"].as_str().unwrap_or("?"),
                    cut_of(net)
                ),
            );
        }
        let p = plan(net, &object["status"], nodes, busy);
        (out.assigned, out.freed, out.dropped, out.unplaced) =
            (p.assigned, p.freed, p.dropped, p.unplaced);
        if p.allocations == entries(&object["status"]) || dry_run {
            return out;
        }
        let mut updated = object.clone();
        updated["status"] = status_of(&p.allocations);
        let updated: DynamicObject = match serde_json::from_value(updated) {
            Ok(u) => u,
            Err(e) => return fail(out, e.to_string()),
        };
        match kube.replace_object_status(&res, ns, &net.pool, &updated) {
            Ok(_) => return out,
            Err(e) if matches!(e.kind, Kind::Conflict | Kind::NotFound) => {}
            Err(e) => return fail(out, e.to_string()),
        }
    }
    fail(
        out,
        format!("still conflicting after {ATTEMPTS} guarded writes; tried again next pass"),
    )
}

fn pass(kube: &Kube, ns: &str, a: &SlicesArgs) -> Result<Pass, String> {
    let dry_run = a.dry_run;
    let crds = |e: multus::k8s::client::KubeError| match e.kind {
        Kind::NotFound => format!(
            "{e}: the whereabouts CRDs are not installed (kubectl apply -k deploy/whereabouts)"
        ),
        _ => e.to_string(),
    };
    let node_list = kube.list_objects(&nodes(), "").map_err(|e| e.to_string())?;
    let mut pass = Pass {
        resource_version: node_list.metadata.resource_version.clone(),
        ..Pass::default()
    };
    // The NADs page by page, keeping only what they cut: every NAD of the
    // cluster at once (anyone's, up to 1.5 MB each) would not fit the
    // controller's memory.
    let mut sliced = BTreeMap::new();
    let mut next: Option<String> = None;
    loop {
        let page = kube
            .list_objects_page(&nad_resource(), "", NAD_PAGE, next.as_deref())
            .map_err(|e| e.to_string())?;
        if pass.nad_version.is_none() {
            pass.nad_version = page.metadata.resource_version.clone();
        }
        sliced_networks(&page.items, &a.namespaces, &mut sliced, &mut pass.bad_nads);
        next = page.metadata.continue_.filter(|c| !c.is_empty());
        if next.is_none() {
            break;
        }
    }
    let mut names = BTreeSet::new();
    for n in &node_list.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        if let Some(g) = n.metadata.generation {
            pass.generations.insert(name.clone(), g);
        }
        names.insert(name);
    }
    if sliced.len() > a.max_pools {
        for (pool, cuts) in sliced.split_off(
            &sliced
                .keys()
                .nth(a.max_pools)
                .expect("more pools than max")
                .clone(),
        ) {
            for key in cuts.into_iter().flat_map(|(_, keys)| keys) {
                pass.bad_nads.push((
                    key,
                    format!(
                        "NodeSlicePool {pool} is past the first {} pools (--max-pools): not acted on",
                        a.max_pools
                    ),
                ));
            }
        }
    }
    if sliced.is_empty() {
        return Ok(pass);
    }
    let ippools = kube
        .list_objects(&whereabouts("ippools"), ns)
        .map_err(crds)?;
    let busy = busy(&ippools.items);
    for (pool, mut cuts) in sliced {
        let net = match cuts.len() {
            1 => Ok(cuts.remove(0).0),
            _ => pick_cut(kube, ns, &pool, cuts, &mut pass.bad_nads),
        };
        pass.pools.push(match net {
            Ok(net) => settle_pool(kube, ns, &net, &names, &busy, dry_run),
            Err(e) => PoolPass {
                name: pool,
                error: Some(e),
                ..PoolPass::default()
            },
        });
    }
    Ok(pass)
}

/// What a pass did, as lines: printed by `--once`, logged otherwise.
fn report(pass: &Pass, dry_run: bool) -> Vec<String> {
    let (gave, freed) = if dry_run {
        ("would give", "would free")
    } else {
        ("gave", "freed")
    };
    let mut lines = Vec::new();
    for (nad, e) in &pass.bad_nads {
        lines.push(format!("NAD {nad}: {e}"));
    }
    for p in &pass.pools {
        let pool = &p.name;
        for (n, s) in &p.assigned {
            lines.push(format!("{gave} {s} of NodeSlicePool {pool} to node {n}"));
        }
        for (n, s) in &p.freed {
            lines.push(format!(
                "{freed} {s} of NodeSlicePool {pool} (node {n} is gone)"
            ));
        }
        for (n, s) in &p.dropped {
            lines.push(format!(
                "NodeSlicePool {pool}: dropped the entry {s} of node {n:?} (not a slice of the range, or listed before)"
            ));
        }
        if !p.unplaced.is_empty() {
            lines.push(format!(
                "NodeSlicePool {pool}: every slice is held; no slice for node(s) {}",
                p.unplaced.join(", ")
            ));
        }
        if let Some(e) = &p.error {
            lines.push(format!("NodeSlicePool {pool}: {e}"));
        }
    }
    lines
}

pub fn run(a: &SlicesArgs) -> i32 {
    let ns = match (&a.namespace, &a.kubeconfig) {
        (Some(ns), _) => ns.clone(),
        (None, Some(k)) => match kube::config::Kubeconfig::read_from(k) {
            Ok(kc) => multus::delegate::wasm::cluster::context_namespace(&kc),
            Err(e) => {
                eprintln!("multusctl ipam slices: --kubeconfig: {e}");
                return 2;
            }
        },
        (None, None) => "kube-system".to_string(),
    };
    let (kube, stop) = match start("ipam slices", a.kubeconfig.as_ref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut retry = Retry::default();
    loop {
        let (ok, node_from, nad_from, generations) = match pass(&kube, &ns, a) {
            Ok(p) => {
                let lines = report(&p, a.dry_run);
                if a.once {
                    for l in &lines {
                        println!("{l}");
                    }
                    let assigned: usize = p.pools.iter().map(|p| p.assigned.len()).sum();
                    let freed: usize = p.pools.iter().map(|p| p.freed.len()).sum();
                    println!(
                        "slices: namespace={ns} pools={} assigned={assigned} freed={freed}",
                        p.pools.len()
                    );
                } else {
                    for l in &lines {
                        tracing::info!("{l}");
                    }
                }
                if a.once {
                    return i32::from(!(p.ok() && p.bad_nads.is_empty()));
                }
                (p.ok(), p.resource_version, p.nad_version, p.generations)
            }
            Err(e) => {
                if a.once {
                    eprintln!("multusctl ipam slices: {e}");
                    return 1;
                }
                tracing::error!(error = %e, "listing Nodes, NADs and IPPools");
                (false, None, None, BTreeMap::new())
            }
        };
        // Not ok: a pool that could not be written is tried again soon; a
        // full range waits for a node to go (a watched change) or a pass.
        let wait_for = if ok {
            retry = Retry::default();
            a.interval
        } else {
            retry.backoff().min(a.interval)
        };
        let no_generations = BTreeMap::new();
        let (node_res, nad_res) = (nodes(), nad_resource());
        let watching = vec![
            Watching {
                res: &node_res,
                from: node_from,
                generations: &generations,
            },
            // Every NAD change is one (their generations are not kept).
            Watching {
                res: &nad_res,
                from: nad_from,
                generations: &no_generations,
            },
        ];
        if wait_any(&kube, watching, wait_for, &stop) {
            return 0;
        }
    }
}
