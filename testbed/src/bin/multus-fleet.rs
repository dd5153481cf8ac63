//! `scripts/fleet`: a simulated fleet of N nodes against a real
//! kube-apiserver + etcd (the cluster kit's `k8s/up.sh`, in a network
//! namespace of this run). Each node is a process of its own, as on a real
//! node: `multusctl plugin sync` watching WasmPlugin objects with its own
//! host root, API client and connection, writing its own WasmPluginNode;
//! and one `multusctl plugin aggregate` summing those into the status, as
//! deploy/plugins runs it. Per N, four rollouts: a plugin pushed (its
//! bytes in a ConfigMap), a new version of it, a third version from an
//! OCI registry (Debian's docker-registry on the run's loopback), and a
//! bad digest (every node must refuse it and keep the version it runs). Each is timed from the push until the object's
//! status, counted for its generation, shows all N nodes (ready, or
//! failed for the bad digest), and counted from the API server's own
//! metrics (`apiserver_request_total`, `apiserver_response_sizes`, watches
//! excluded, and less this harness's own polling of the status), with the
//! API server's and etcd's CPU and memory.
//!
//!
//! Then cluster IPAM: every node's pods (`--ipam-pods` each) allocating at
//! once from whereabouts.wasm through the thin `multus` binary (a process
//! per pod, `NODE_NAME` its node's) and through a `multus-daemon` per
//! node with a `multus-shim` per pod, in one pool and with node slices;
//! timed from the first ADD to the last, every address checked distinct,
//! then every pod deleted and nothing left allocated.
//!
//! The thick daemons: a `multus-daemon` process per node, each with its
//! own API client, listing and watching its node's pods and every NAD;
//! counted while they list, idle, and as one pod per node and one NAD
//! arrive (what each watch was sent).
//!
//! Not simulated here: each node compiling the module (its own CPU on a
//! real node; here every node finds the artifact precompiled in one shared
//! cache, so the table is the API side), and the token refreshes, which
//! re-read the projected token the kubelet rotates and make no request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use multus_testbed::kit::{self, Counts, Kit};

use multus_testbed::{confs, enter, exec_cni, result_addresses, Netns};

/// The resources a rollout touches.
const ROLLOUT_KINDS: &[&str] = &["wasmplugins", "wasmpluginnodes", "configmaps"];
/// The resources cluster IPAM touches.
const IPAM_KINDS: &[&str] = &[
    "ippools",
    "overlappingrangeipreservations",
    "nodeslicepools",
];
use serde_json::Value;

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Part {
    Rollouts,
    Daemons,
    Ipam,
}

/// How each node runs multus in the IPAM rounds.
#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Mode {
    /// The thin `multus` binary, a process per pod, as the runtime execs it.
    Thin,
    /// A `multus-daemon` per node, started (and warm) before the ADDs, and
    /// a `multus-shim` process per pod.
    Thick,
}

/// How the IPAM rounds' pools are laid out.
#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Layout {
    /// One IPPool for the range.
    Pool,
    /// Node slices, each node claiming its first slice at its first ADD.
    Claimed,
    /// Node slices `multusctl ipam slices` assigned before the ADDs.
    Assigned,
}

#[derive(Parser)]
#[command(about = "Simulated nodes against a real API server: plugin rollouts at N nodes")]
struct Args {
    /// Fleet sizes, one run each.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    nodes: Vec<usize>,
    /// The cluster kit (../shared/cluster-kit, built once per machine).
    #[arg(long, env = "MULTUS_KIT", default_value = "/var/tmp/kit")]
    kit: PathBuf,
    /// Pods per node allocating at once in the IPAM table (0: no IPAM table).
    #[arg(long, default_value_t = 2)]
    ipam_pods: usize,
    /// Which parts to run: rollouts, daemons, ipam.
    #[arg(long, value_delimiter = ',', default_value = "rollouts,daemons,ipam")]
    only: Vec<Part>,
    /// Which IPAM layouts to run: pool, claimed, assigned.
    #[arg(long, value_delimiter = ',', default_value = "pool,claimed,assigned")]
    ipam_layouts: Vec<Layout>,
    /// How each node runs multus in the IPAM rounds: thin, thick.
    #[arg(long, value_delimiter = ',', default_value = "thin,thick")]
    ipam_modes: Vec<Mode>,
    /// How long a rollout may take before the run fails.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The IPAM module's budget per cluster call (`clusterCallTimeoutMs`;
    /// multus's default). A simulated node shares the run's CPUs with
    /// every other and with the API server, where a real one has its own.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    cluster_call_timeout: Duration,
}

/// CPU seconds (user + system) and resident MiB of `pid`.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th of the line.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0;
    (cpu, rss)
}

/// CPU seconds (user + system) of this process's children that have
/// exited and been waited for.
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, r)| {
            r.split_whitespace()
                .map(|v| v.parse().unwrap_or(0.0))
                .collect()
        })
        .unwrap_or_default();
    // cutime and cstime, the 16th and 17th fields of the line.
    (fields.get(13).unwrap_or(&0.0) + fields.get(14).unwrap_or(&0.0)) / 100.0
}

/// CPU seconds and resident MiB of the kit's kube-apiserver and etcd.
fn servers_usage(kit: &Kit) -> [(f64, f64); 2] {
    ["kube-apiserver", "etcd"].map(|s| usage(kit.pid(s).unwrap_or(0)))
}

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

/// One rollout's figures.
struct Row {
    n: usize,
    what: &'static str,
    took: Duration,
    api: Counts,
    apiserver_cpu: f64,
    etcd_cpu: f64,
    apiserver_rss: f64,
    etcd_rss: f64,
}

/// The object's status when it was counted for its current generation.
fn status_of(kit: &Kit, name: &str) -> Result<Value> {
    let out = kit.kubectl(&["get", "wasmplugin", name, "-o", "json"])?;
    let mut obj = serde_json::from_str::<Value>(&out)?;
    if obj["status"]["observedGeneration"] != obj["metadata"]["generation"] {
        return Ok(Value::Null);
    }
    Ok(obj["status"].take())
}

/// Each node's entry for `name` in its report: node to (sha256, error).
fn reports(kit: &Kit, name: &str) -> Result<BTreeMap<String, (Value, Value)>> {
    let out = kit.kubectl(&["get", "wasmpluginnodes", "-o", "json"])?;
    let list: Value = serde_json::from_str(&out)?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let e = r["status"]["plugins"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == name)?;
            Some((
                r["metadata"]["name"].as_str()?.to_string(),
                (e["sha256"].clone(), e["error"].clone()),
            ))
        })
        .collect())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !kit::built(&args.kit) {
        bail!(
            "no cluster kit at {} (built once per machine: ../shared/cluster-kit/README.md; --kit DIR)",
            args.kit.display()
        );
    }
    let here = std::env::current_exe()?
        .parent()
        .context("no dir")?
        .to_path_buf();
    let repo = here.join("../..");
    let multusctl = here.join("multusctl");
    let plugins = here.join("../plugins");
    let node = Netns::new("fleet").context("a network namespace for the run (needs root)")?;
    enter(&node)?;
    let mut rows = Vec::new();
    let mut daemon_rows = Vec::new();
    let mut ipam_rows = Vec::new();
    // Image sources come from a real registry on the run's loopback.
    let registry = multus_testbed::registry::Registry::start(
        &node,
        5000,
        multus_testbed::registry::Auth::None,
    )
    .context("docker-registry (scripts/deps installs it)")?;
    for &n in &args.nodes {
        let (r, d, i) = fleet(
            &args,
            n,
            &repo,
            (
                &multusctl,
                &here.join("multus"),
                &here.join("multus-shim"),
                &here.join("multus-daemon"),
            ),
            &plugins,
            (&registry.host, &node),
        )?;
        rows.extend(r);
        daemon_rows.extend(d);
        ipam_rows.extend(i);
    }
    println!(
        "\nPlugin rollouts to N simulated nodes (a process each) on a real kube-apiserver + etcd."
    );
    println!("Requests, 409s and response bytes are the API server's own counts for wasmplugins, wasmpluginnodes and configmaps, watches excluded, less this harness's polls of the status; the push's own requests (an admin's) are in them.\n");
    println!("| nodes | rollout | until the status shows all nodes, s | API requests per node | 409 conflicts | response KiB per node | apiserver CPU s | etcd CPU s | apiserver RSS MiB | etcd RSS MiB |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.2} | {:.1} | {} | {:.1} | {:.2} | {:.2} | {:.0} | {:.0} |",
            r.n,
            r.what,
            r.took.as_secs_f64(),
            r.api.requests / r.n as f64,
            r.api.conflicts,
            r.api.bytes / 1024.0 / r.n as f64,
            r.apiserver_cpu,
            r.etcd_cpu,
            r.apiserver_rss,
            r.etcd_rss,
        );
    }
    if !daemon_rows.is_empty() {
        println!("\nThick daemons: a multus-daemon process per node (its own API client and connection, NODE_NAME its node's), their watch caches (the node's pods, every NAD), on the same API server.");
        println!("Requests are the API server's for pods and network-attachment-definitions, watches excluded; events are what its watches sent. One pod created per node, then one NAD.\n");
        println!("| nodes | all caches listed, s | requests per node to list | watches open | requests per node in {STEADY_S} s idle | pod events sent for N pods, one per node | NAD events sent for one NAD | apiserver CPU s | apiserver RSS MiB | daemon RSS MiB, median |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in daemon_rows {
            println!(
                "| {} | {:.2} | {:.1} | {} | {:.2} | {} | {} | {:.2} | {:.0} | {:.1} |",
                r.n,
                r.listed.as_secs_f64(),
                r.list_requests / r.n as f64,
                r.watches,
                r.idle_requests / r.n as f64,
                r.pod_events,
                r.nad_events,
                r.apiserver_cpu,
                r.apiserver_rss,
                r.daemon_rss,
            );
        }
    }
    if !ipam_rows.is_empty() {
        println!("\nCluster IPAM: every node's pods at once ({} per node), whereabouts.wasm through the thin multus binary (a process per pod) or a multus-daemon per node (started and warm before the ADDs) and a multus-shim process per pod, on the same API server; a failed ADD or DEL tried again, as the kubelet does, up to 5 rounds, each retry starting at a random moment within 10 s (the time is until the last one succeeded); each cluster call's budget {} (clusterCallTimeoutMs).", args.ipam_pods, humantime::format_duration(args.cluster_call_timeout));
        println!("Requests and 409s are the API server's counts for ippools, overlappingrangeipreservations and nodeslicepools, ADDs only; the nodes' CPU is their multus processes' and daemons' during the ADDs.\n");
        println!("| nodes | pool | multus | allocations | ADDs failed at first try | ADDs failed after 5 | duplicates | first ADD to last, s | half, 95% answered by, s | allocations/s | API requests per allocation | 409 conflicts | nodes' CPU ms per allocation | apiserver CPU s | etcd CPU s | DELs failed at first try / after 5 | all freed, s |");
        println!(
            "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &ipam_rows {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2}, {:.2} | {:.1} | {:.1} | {} | {:.1} | {:.2} | {:.2} | {} / {} | {:.1} |",
                r.n,
                r.layout,
                r.mode,
                r.allocations,
                r.first_failed,
                r.failed,
                r.duplicates,
                r.took.as_secs_f64(),
                r.half.as_secs_f64(),
                r.p95.as_secs_f64(),
                r.allocations as f64 / r.took.as_secs_f64(),
                r.api.requests / r.allocations.max(1) as f64,
                r.api.conflicts,
                r.node_cpu * 1e3 / r.allocations.max(1) as f64,
                r.apiserver_cpu,
                r.etcd_cpu,
                r.del_failed,
                r.del_left,
                r.del_took.as_secs_f64(),
            );
        }
        for r in &ipam_rows {
            let each: Vec<String> = IPAM_KINDS
                .iter()
                .zip(&r.api_by_kind)
                .map(|(k, c)| format!("{k} {:.0} ({:.0} 409s)", c.requests, c.conflicts))
                .collect();
            println!(
                "\n{} nodes, {}, {}: requests by kind during the ADDs: {}.",
                r.n,
                r.layout,
                r.mode,
                each.join(", ")
            );
        }
        for r in &ipam_rows {
            if let Some((took, requests)) = r.controller {
                println!(
                    "\n{} nodes: the node-slice controller's one pass before the ADDs (the Nodes and the NAD created first): {:.2} s, {requests} API requests.",
                    r.n,
                    took.as_secs_f64()
                );
            }
        }
        if let Some(r) = ipam_rows.iter().find(|r| r.del_left > 0) {
            bail!(
                "{} DELs still failing after 5 rounds ({}, {}, {} nodes)",
                r.del_left,
                r.layout,
                r.mode,
                r.n
            );
        }
    }
    Ok(())
}

/// How far apart the retries of one IPAM round start.
const RETRY_SPREAD: Duration = Duration::from_secs(10);

/// A number in [0, 1), different per call.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let h = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (h % 1_000_000) as f64 / 1_000_000.0
}

/// One IPAM round's figures.
struct IpamRow {
    n: usize,
    layout: &'static str,
    mode: &'static str,
    /// CPU seconds of the nodes' multus processes (and thick daemons)
    /// during the ADDs.
    node_cpu: f64,
    allocations: usize,
    /// ADDs that failed at their first try, and after 5.
    first_failed: usize,
    failed: usize,
    duplicates: usize,
    took: Duration,
    /// When half and 95% of the allocations were answered.
    half: Duration,
    p95: Duration,
    api: Counts,
    /// The same, each of `IPAM_KINDS`.
    api_by_kind: Vec<Counts>,
    apiserver_cpu: f64,
    etcd_cpu: f64,
    /// DELs that failed at their first try, and after 5 rounds.
    del_failed: usize,
    del_left: usize,
    /// First DEL to last, retries included.
    del_took: Duration,
    /// With the node-slice controller: its one pass before the ADDs (every
    /// node given a slice), and its API requests.
    controller: Option<(Duration, f64)>,
}

/// The node-slice controller's pass before a round: the `n` Nodes and a
/// NAD of `net` created first, as a cluster has them before pods start.
fn assign_slices(
    kit: &Kit,
    multusctl: &Path,
    work: &Path,
    n: usize,
    net: &Value,
) -> Result<(Duration, f64)> {
    let nodes: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("node-{i}")}})
        })
        .chain([serde_json::json!({"apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "fleet-sliced", "namespace": "default"},
            "spec": {"config": net.to_string()}})])
        .collect();
    let file = work.join("slice-nodes.json");
    std::fs::write(
        &file,
        serde_json::to_vec(
            &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": nodes}),
        )?,
    )?;
    kit.kubectl(&["create", "-f", &file.display().to_string()])?;
    let before = kit.counts(IPAM_KINDS)?;
    let started = Instant::now();
    let admin = kit.admin_kubeconfig();
    ctl(
        multusctl,
        &[
            "ipam".as_ref(),
            "slices".as_ref(),
            "--once".as_ref(),
            "--kubeconfig".as_ref(),
            admin.as_os_str(),
        ],
    )?;
    let took = started.elapsed();
    Ok((took, (kit.counts(IPAM_KINDS)? - before).requests))
}

/// Every node's `pods` ADDs at once through `multus` (a whereabouts.wasm
/// network, `ipam` its IPAM keys), then their DELs; the figures of the
/// ADDs. Fails when a DEL fails or an allocation is left.
#[allow(clippy::too_many_arguments)]
fn ipam_round(
    kit: &Kit,
    (multus, shim, daemon, multusctl, plugins, cache): (&Path, &Path, &Path, &Path, &Path, &Path),
    node: &Netns,
    work: &Path,
    n: usize,
    (pods, cluster_call_timeout): (usize, Duration),
    (id, layout, ipam, controller): (&str, &'static str, Value, bool),
    mode: Mode,
) -> Result<IpamRow> {
    let admin = kit.admin_kubeconfig();
    let mut ipam = ipam;
    ipam["type"] = "whereabouts".into();
    let sliced = serde_json::json!({"cniVersion": "1.0.0", "name": format!("fleet-{n}"),
        "plugins": [{"type": "whereabouts", "ipam": ipam.clone()}]});
    let controller = if controller {
        Some(assign_slices(kit, multusctl, work, n, &sliced)?)
    } else {
        None
    };
    ipam["kubernetes"] = serde_json::json!({"kubeconfig": admin});
    let net = serde_json::json!({"cniVersion": "1.0.0", "name": format!("fleet-{n}"),
        "plugins": [{"type": "whereabouts", "ipam": ipam}]});
    let mode_name = match mode {
        Mode::Thin => "thin",
        Mode::Thick => "thick",
    };
    let dir = work.join(format!("ipam-{id}-{mode_name}"));
    let mut conf = confs::multus_delegates(&[net], &dir.join("cache"), &dir);
    conf["wasmPluginDir"] = serde_json::json!(plugins);
    conf["wasmCacheDir"] = serde_json::json!(cache);
    conf["kubeconfigAllowlist"] = serde_json::json!([admin]);
    conf["wasmPlugins"] = serde_json::json!({"whereabouts": {"timeoutMs": 120000, "hostCallTimeoutMs": 30000,
            "clusterCallTimeoutMs": cluster_call_timeout.as_millis() as u64}});
    // Thick: every node's daemon up (modules loaded, socket made) before
    // the ADDs, as on a node whose pods start after it; no credentials of
    // its own, as the thin runs have none (the module's are its conf's).
    let daemons = match mode {
        Mode::Thin => Nodes(Vec::new()),
        Mode::Thick => start_ipam_daemons(daemon, &dir, n, (plugins, cache))?,
    };
    let stdins: Vec<Vec<u8>> = (0..n)
        .map(|node| {
            let mut conf = conf.clone();
            if mode == Mode::Thick {
                conf["type"] = "multus-shim".into();
                conf["daemonSocketDir"] = serde_json::json!(daemon_dir(&dir, node).join("run"));
            }
            serde_json::to_vec(&conf)
        })
        .collect::<Result<_, _>>()?;
    let binary = match mode {
        Mode::Thin => multus,
        Mode::Thick => shim,
    };
    let cpu = || children_cpu() + daemons.0.iter().map(|d| usage(d.id()).0).sum::<f64>();
    let netns = node.path().display().to_string();
    // `spread`: each call starts at a random moment within it, as the
    // kubelet's retries of failed sandboxes land at each pod's own time
    // (its backoff), not all at once.
    let run = |cmd: &str,
               which: &[usize],
               spread: Duration|
     -> Vec<(std::io::Result<multus_testbed::CniOutput>, Instant)> {
        std::thread::scope(|sc| {
            let handles: Vec<_> = which
                .iter()
                .map(|&i| {
                    let (stdin, netns) = (&stdins[i / pods], &netns);
                    sc.spawn(move || {
                        std::thread::sleep(spread.mul_f64(jitter()));
                        let (cid, node_name) = (
                            format!("{id}-{mode_name}-{i}"),
                            format!("node-{}", i / pods),
                        );
                        let args = format!(
                            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-{i}"
                        );
                        let env = [
                            ("CNI_COMMAND", cmd),
                            ("CNI_CONTAINERID", cid.as_str()),
                            ("CNI_NETNS", netns.as_str()),
                            ("CNI_IFNAME", "net1"),
                            ("CNI_ARGS", args.as_str()),
                            ("CNI_PATH", "/usr/lib/cni"),
                            ("NODE_NAME", node_name.as_str()),
                        ];
                        (exec_cni(binary, None, &env, stdin), Instant::now())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("an ADD thread"))
                .collect()
        })
    };
    let before = kit.counts_each(IPAM_KINDS)?;
    let [(api0, _), (etcd0, _)] = servers_usage(kit);
    let cpu0 = cpu();
    let started = Instant::now();
    let all: Vec<usize> = (0..n * pods).collect();
    // An ADD that fails (code 11: the API server did not answer within
    // the call's budget) is tried again, as the kubelet retries a
    // sandbox, up to 5 rounds.
    let mut addresses: Vec<String> = Vec::new();
    // When each allocation was answered, from the first ADD.
    let mut answered: Vec<Duration> = Vec::new();
    let (mut left, mut first_failed) = (all.clone(), 0);
    for round in 0..5 {
        let mut again = Vec::new();
        let spread = if round == 0 {
            Duration::ZERO
        } else {
            RETRY_SPREAD
        };
        for (i, (a, at)) in left.iter().zip(run("ADD", &left, spread)) {
            match a {
                Ok(out) if out.ok() => {
                    addresses.extend(result_addresses(&out.json()));
                    answered.push(at - started);
                }
                Ok(out) => {
                    if again.is_empty() {
                        eprintln!(
                            "fleet: a failed ADD ({layout}, {n} nodes, round {}): {}",
                            round + 1,
                            out.stdout
                        );
                    }
                    again.push(*i);
                }
                Err(e) => bail!("running multus: {e}"),
            }
        }
        if round == 0 {
            first_failed = again.len();
        }
        left = again;
        if left.is_empty() {
            break;
        }
    }
    let failed = left.len();
    let took = started.elapsed();
    let node_cpu = cpu() - cpu0;
    let [(api1, _), (etcd1, _)] = servers_usage(kit);
    let api_by_kind: Vec<Counts> = kit
        .counts_each(IPAM_KINDS)?
        .into_iter()
        .zip(before)
        .map(|(after, before)| after - before)
        .collect();
    let api = api_by_kind
        .iter()
        .fold(Counts::default(), |sum, c| sum + *c);
    let distinct: std::collections::BTreeSet<&String> = addresses.iter().collect();
    let duplicates = addresses.len() - distinct.len();
    // The DELs at once too; one that fails is retried, as the kubelet
    // does, up to 5 rounds.
    let started = Instant::now();
    let mut left = all;
    let mut del_failed = 0;
    for round in 0..5 {
        let spread = if round == 0 {
            Duration::ZERO
        } else {
            RETRY_SPREAD
        };
        let outs = run("DEL", &left, spread);
        let mut again = Vec::new();
        for (i, (d, _)) in left.iter().zip(outs) {
            let d = d?;
            if !d.ok() {
                if again.is_empty() {
                    eprintln!(
                        "fleet: a failed DEL ({layout}, {n} nodes, round {}): {}",
                        round + 1,
                        d.stdout
                    );
                }
                again.push(*i);
            }
        }
        if round == 0 {
            del_failed = again.len();
        }
        left = again;
        if left.is_empty() {
            break;
        }
    }
    // Still failing: the round's figures are printed, and the run fails
    // after the tables.
    let del_left = left.len();
    let del_took = started.elapsed();
    let left: Value = serde_json::from_str(&kit.kubectl(&[
        "get",
        "ippools.whereabouts.cni.cncf.io",
        "-A",
        "-o",
        "json",
    ])?)?;
    let held: usize = left["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["spec"]["allocations"].as_object().map_or(0, |a| a.len()))
        .sum();
    if held != 0 && del_left == 0 {
        bail!("{held} allocations left after every DEL ({layout}, {n} nodes)");
    }
    answered.sort();
    let at = |q: f64| {
        answered
            .get(((answered.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    drop(daemons);
    Ok(IpamRow {
        n,
        layout,
        mode: mode_name,
        node_cpu,
        allocations: n * pods,
        first_failed,
        failed,
        duplicates,
        took,
        half: at(0.5),
        p95: at(0.95),
        api,
        api_by_kind,
        apiserver_cpu: api1 - api0,
        etcd_cpu: etcd1 - etcd0,
        del_failed,
        del_left,
        del_took,
        controller,
    })
}

/// Node `node`'s daemon dir under an IPAM round's `dir`.
fn daemon_dir(dir: &Path, node: usize) -> PathBuf {
    dir.join(format!("daemon-{node}"))
}

/// A `multus-daemon` per node for an IPAM round, each with its own
/// socket, cache and log, the round's modules loaded: back once every
/// socket exists.
fn start_ipam_daemons(
    daemon: &Path,
    dir: &Path,
    n: usize,
    (plugins, cache): (&Path, &Path),
) -> Result<Nodes> {
    let mut daemons = Nodes(Vec::new());
    for i in 0..n {
        let d = daemon_dir(dir, i);
        daemons.0.push(spawn_daemon(
            daemon,
            &d,
            i,
            serde_json::json!({"socketDir": d.join("run"), "cniDir": d.join("cache"),
                "logFile": d.join("daemon.log"), "logToStderr": false,
                "wasmPluginDir": plugins, "wasmCacheDir": cache}),
        )?);
    }
    let started = Instant::now();
    while let Some(i) = (0..n).find(|&i| !daemon_dir(dir, i).join("run/multus.sock").exists()) {
        if started.elapsed() > Duration::from_secs(300) {
            let read = |f: &str| std::fs::read_to_string(daemon_dir(dir, i).join(f));
            bail!(
                "node-{i}'s daemon made no socket within 300 s; its log: {:?}, its stderr: {:?}",
                read("daemon.log"),
                read("daemon.stderr")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "fleet: {n} daemons serving after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(daemons)
}

/// A `multus-daemon` for node `node` with `config` (written into `dir`).
fn spawn_daemon(daemon: &Path, dir: &Path, node: usize, config: Value) -> Result<Child> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join("daemon-config.json");
    std::fs::write(&file, serde_json::to_vec(&config)?)?;
    // What it says before its log is open (a config it refuses).
    let stderr = std::fs::File::create(dir.join("daemon.stderr"))?;
    Command::new(daemon)
        .arg("-config")
        .arg(&file)
        .env("NODE_NAME", format!("node-{node}"))
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("{} (scripts/fleet builds it)", daemon.display()))
}

/// Runs `multusctl` with `args`; its stderr on failure.
fn ctl(multusctl: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
    let out = Command::new(multusctl).args(args).output()?;
    if !out.status.success() {
        bail!(
            "multusctl {}: {}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn fleet(
    args: &Args,
    n: usize,
    repo: &Path,
    (multusctl, multus, shim, daemon): (&Path, &Path, &Path, &Path),
    plugins: &Path,
    (registry, node): (&str, &Netns),
) -> Result<(Vec<Row>, Vec<DaemonRow>, Vec<IpamRow>)> {
    eprintln!("fleet: {n} nodes");
    let kit = Kit::start(&args.kit)?;
    kit.apply_crds(
        &repo.join("deploy/crd/wasmplugins.yaml"),
        &[
            "wasmplugins.multus-wasm.io",
            "wasmpluginnodes.multus-wasm.io",
        ],
        "60s",
    )?;
    let work = tempfile::tempdir()?;
    // Three versions of one plugin type: three modules under one name
    // (the third from the registry).
    let versions: Vec<PathBuf> = ["tuning", "route-override", "sbr"]
        .iter()
        .enumerate()
        .map(|(i, m)| -> Result<PathBuf> {
            let dir = work.path().join(format!("v{}", i + 1));
            std::fs::create_dir_all(&dir)?;
            let file = dir.join("tuning.wasm");
            std::fs::copy(plugins.join(format!("{m}.wasm")), &file).with_context(|| {
                format!("{m}.wasm in {} (scripts/build-plugins)", plugins.display())
            })?;
            Ok(file)
        })
        .collect::<Result<_>>()?;
    let cache = work.path().join("wasm-cache");
    for v in &versions {
        ctl(
            multusctl,
            &[
                "plugin".as_ref(),
                "compile".as_ref(),
                v.as_os_str(),
                "--cache-dir".as_ref(),
                cache.as_os_str(),
            ],
        )?;
    }
    let rows = if !args.only.contains(&Part::Rollouts) {
        Vec::new()
    } else {
        rollouts(
            args,
            n,
            &kit,
            work.path(),
            multusctl,
            registry,
            &versions,
            &cache,
        )?
    };
    let mut ipam_rows = Vec::new();
    let daemon_rows = if args.only.contains(&Part::Daemons) {
        vec![daemons_round(&kit, daemon, work.path(), n)?]
    } else {
        Vec::new()
    };
    if args.ipam_pods > 0 && args.only.contains(&Part::Ipam) {
        kit.apply_crds(
            &repo.join("deploy/whereabouts/crds.yaml"),
            &[
                "ippools.whereabouts.cni.cncf.io",
                "nodeslicepools.whereabouts.cni.cncf.io",
            ],
            "60s",
        )?;
        // Only the module the rounds run: a daemon loads every module of
        // its plugin dir at start (compiling what is not precompiled).
        let built_plugins = plugins;
        let plugins = work.path().join("ipam-plugins");
        std::fs::create_dir_all(&plugins)?;
        let module = plugins.join("whereabouts.wasm");
        std::fs::copy(built_plugins.join("whereabouts.wasm"), &module)?;
        ctl(
            multusctl,
            &[
                "plugin".as_ref(),
                "compile".as_ref(),
                module.as_os_str(),
                "--cache-dir".as_ref(),
                cache.as_os_str(),
            ],
        )?;
        for (which, layout) in [
            (
                Layout::Pool,
                (
                    "pool",
                    "one pool",
                    serde_json::json!({"range": "10.128.0.0/16"}),
                    false,
                ),
            ),
            (
                Layout::Claimed,
                (
                    "slices",
                    "node slices (/26), claimed by the nodes",
                    serde_json::json!({"range": "10.129.0.0/16", "node_slice_size": "/26"}),
                    false,
                ),
            ),
            (
                Layout::Assigned,
                (
                    "assigned",
                    "node slices (/26), assigned by `multusctl ipam slices`",
                    serde_json::json!({"range": "10.130.0.0/16", "node_slice_size": "/26",
                                       "network_name": "assigned"}),
                    true,
                ),
            ),
        ] {
            if !args.ipam_layouts.contains(&which) {
                continue;
            }
            let (id, name, ipam, mut controller) = layout;
            for &mode in &args.ipam_modes {
                ipam_rows.push(ipam_round(
                    &kit,
                    (multus, shim, daemon, multusctl, &plugins, &cache),
                    node,
                    work.path(),
                    n,
                    (args.ipam_pods, args.cluster_call_timeout),
                    (id, name, ipam.clone(), controller),
                    mode,
                )?);
                // The slices stay assigned for the next mode's round.
                controller = false;
            }
        }
    }
    Ok((rows, daemon_rows, ipam_rows))
}

/// The four rollouts at `n` nodes: a `multusctl plugin sync` process per
/// node and the aggregator, each timed until the status shows all nodes.
#[allow(clippy::too_many_arguments)]
fn rollouts(
    args: &Args,
    n: usize,
    kit: &Kit,
    work: &Path,
    multusctl: &Path,
    registry: &str,
    versions: &[PathBuf],
    cache: &Path,
) -> Result<Vec<Row>> {
    let admin = kit.admin_kubeconfig();
    let mut nodes = Nodes(Vec::new());
    // The one aggregator, as deploy/plugins runs it.
    nodes.0.push(
        Command::new(multusctl)
            .args(["plugin", "aggregate", "--kubeconfig"])
            .arg(&admin)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("aggregate.log"))?)
            .spawn()?,
    );
    for i in 0..n {
        let root = work.join(format!("node-{i}"));
        let cache_dir = root.join("var/lib/cni/multus");
        std::fs::create_dir_all(&cache_dir)?;
        std::os::unix::fs::symlink(cache, cache_dir.join("wasm-cache"))?;
        let log = std::fs::File::create(work.join(format!("node-{i}.log")))?;
        nodes.0.push(
            Command::new(multusctl)
                .args([
                    "plugin",
                    "sync",
                    "--node",
                    &format!("node-{i}"),
                    "--host-root",
                ])
                .arg(&root)
                .arg("--kubeconfig")
                .arg(&admin)
                .arg("--insecure-registry")
                .arg(registry)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
    }
    // Every node's first pass done and its watch open.
    let until = Instant::now() + args.timeout;
    loop {
        let metrics = kit.kubectl(&["get", "--raw", "/metrics"])?;
        let watching: f64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("apiserver_longrunning_requests{")
                    && kit::label(l, "resource") == Some("wasmplugins")
                    && kit::label(l, "verb") == Some("WATCH")
            })
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum();
        // Every node watching the WasmPlugins (the aggregator watches the
        // reports).
        if watching >= n as f64 {
            break;
        }
        if Instant::now() > until {
            bail!(
                "only {watching} of {n} nodes watching after {:?}",
                args.timeout
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let rollout = |what: &'static str,
                   act: &dyn Fn() -> Result<()>,
                   done: &dyn Fn(&Value) -> bool|
     -> Result<Row> {
        let before = kit.counts(ROLLOUT_KINDS)?;
        let [(api0, _), (etcd0, _)] = servers_usage(kit);
        let started = Instant::now();
        act()?;
        let mut polls = 0.0;
        loop {
            let status = status_of(kit, "tuning").unwrap_or(Value::Null);
            polls += 1.0;
            if done(&status) {
                break;
            }
            if started.elapsed() > args.timeout {
                bail!(
                    "{what} at {n} nodes: not done within {:?}: {status}",
                    args.timeout
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let took = started.elapsed();
        // Late writes of the same rollout land in its figures.
        std::thread::sleep(Duration::from_secs(1));
        let after = kit.counts(ROLLOUT_KINDS)?;
        let [(api1, api_rss), (etcd1, etcd_rss)] = servers_usage(kit);
        Ok(Row {
            n,
            what,
            took,
            api: Counts {
                requests: after.requests - before.requests - polls,
                ..after - before
            },
            apiserver_cpu: api1 - api0,
            etcd_cpu: etcd1 - etcd0,
            apiserver_rss: api_rss,
            etcd_rss,
        })
    };
    let push_to = |file: &Path, image: Option<&str>| {
        let mut a: Vec<&std::ffi::OsStr> = vec![
            "plugin".as_ref(),
            "push".as_ref(),
            file.as_os_str(),
            "--grant".as_ref(),
            "hostNetns=true".as_ref(),
            "--kubeconfig".as_ref(),
            admin.as_os_str(),
        ];
        if let Some(image) = image {
            for arg in ["--image", image, "--insecure-registry"] {
                a.push(arg.as_ref());
            }
        }
        ctl(multusctl, &a)
    };
    let push = |file: &Path| push_to(file, None);
    let digest = |file: &Path| Ok::<_, anyhow::Error>(multus_testbed::sha256_file(file)?);
    let all_ready = |s: &Value| s["readyNodes"].as_u64() == Some(n as u64);
    // What the status counted, checked against every node's own report.
    let reported = |want: &str, failed: bool| -> Result<()> {
        let r = reports(kit, "tuning")?;
        let agree = r
            .values()
            .filter(|(sha, err)| sha == want && err.is_null() != failed)
            .count();
        if r.len() != n || agree != n {
            bail!(
                "{agree} of {} reports say {want} (failed: {failed}), want all {n}",
                r.len()
            );
        }
        Ok(())
    };
    let mut rows = Vec::new();
    rows.push(rollout(
        "a plugin pushed",
        &|| push(&versions[0]),
        &all_ready,
    )?);
    reported(&digest(&versions[0])?, false)?;
    rows.push(rollout(
        "a new version",
        &|| push(&versions[1]),
        &all_ready,
    )?);
    reported(&digest(&versions[1])?, false)?;
    let image = format!("{registry}/plugins/tuning:n{n}");
    rows.push(rollout(
        "a new version from an OCI registry",
        &|| push_to(&versions[2], Some(&image)),
        &all_ready,
    )?);
    let v3 = digest(&versions[2])?;
    reported(&v3, false)?;
    rows.push(rollout(
        "a bad digest (every node refuses it, keeps the last)",
        &|| {
            let patch = serde_json::json!({"spec": {"sha256": "0".repeat(64)}}).to_string();
            kit.kubectl(&[
                "patch",
                "wasmplugin",
                "tuning",
                "--type",
                "merge",
                "-p",
                &patch,
            ])
            .map(drop)
        },
        &|s: &Value| s["failedNodes"].as_u64() == Some(n as u64),
    )?);
    reported(&v3, true)?;
    // What each node placed: the version it runs.
    let placed: BTreeMap<String, usize> = (0..n)
        .map(|i| {
            let f = work.join(format!("node-{i}/etc/cni/multus/plugins/tuning.wasm"));
            digest(&f).unwrap_or_else(|_| "none".into())
        })
        .fold(BTreeMap::new(), |mut m, d| {
            *m.entry(d).or_default() += 1;
            m
        });
    if placed.get(&v3) != Some(&n) {
        bail!("after the bad digest, the nodes run {placed:?}, not all {v3}");
    }
    drop(nodes);
    Ok(rows)
}

/// The thick daemons' figures at one fleet size.
struct DaemonRow {
    n: usize,
    listed: Duration,
    list_requests: f64,
    watches: f64,
    idle_requests: f64,
    pod_events: f64,
    nad_events: f64,
    apiserver_cpu: f64,
    apiserver_rss: f64,
    daemon_rss: f64,
}

/// How long the daemons sit idle while their requests are counted.
const STEADY_S: u64 = 30;
/// The resources a daemon's caches read.
const DAEMON_KINDS: &[&str] = &["pods", "network-attachment-definitions"];

/// A metric's total over the lines whose `resource` label is `resource`
/// (or whose `kind` label is `kind`, as older API servers label watch
/// events).
fn metric_sum(metrics: &str, name: &str, resource: &str, kind: &str) -> f64 {
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            (kit::label(labels, "resource") == Some(resource)
                || kit::label(labels, "kind") == Some(kind))
            .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// Whether a daemon's log says both its caches are listed: at once, or
/// each on its own after the daemon began serving without them.
fn both_listed(log: &str) -> bool {
    log.contains("watch caches listed") || log.matches("watch cache listed").count() >= 2
}

/// `n` thick daemons, each a `multus-daemon` as deploy/thick runs it (its
/// own kubeconfig client, `NODE_NAME`), until every one has listed its
/// caches (its log says so); then idle, then one pod per node and one NAD,
/// counted from the API server's metrics.
fn daemons_round(kit: &Kit, daemon: &Path, work: &Path, n: usize) -> Result<DaemonRow> {
    let admin = kit.admin_kubeconfig();
    let metrics = || kit.kubectl(&["get", "--raw", "/metrics"]);
    let before = kit.counts(DAEMON_KINDS)?;
    let [(api0, _), _] = servers_usage(kit);
    let started = Instant::now();
    let mut daemons = Nodes(Vec::new());
    let mut logs = Vec::new();
    for i in 0..n {
        let dir = work.join(format!("daemon-{i}"));
        let log = dir.join("daemon.log");
        daemons.0.push(spawn_daemon(
            daemon,
            &dir,
            i,
            serde_json::json!({
                "socketDir": dir.join("run"), "kubeconfig": admin, "cniDir": dir.join("cache"),
                "logFile": log, "logToStderr": false, "logLevel": "verbose"}),
        )?);
        logs.push(log);
    }
    let listed_all = loop {
        let listed = logs
            .iter()
            .filter(|l| std::fs::read_to_string(l).is_ok_and(|t| both_listed(&t)))
            .count();
        if listed == n {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(300) {
            let late = logs
                .iter()
                .map(|l| std::fs::read_to_string(l).unwrap_or_default())
                .find(|t| !both_listed(t))
                .unwrap_or_default();
            let tail: Vec<&str> = late.lines().rev().take(5).collect();
            bail!("{listed} of {n} daemons listed their caches within 300 s; the log of one that did not, last lines first: {tail:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Late list requests of the start land in its count.
    std::thread::sleep(Duration::from_secs(1));
    let listed_counts = kit.counts(DAEMON_KINDS)? - before;
    let m = metrics()?;
    let watches: f64 = m
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_longrunning_requests{")
                && kit::label(l, "verb") == Some("WATCH")
                && kit::label(l, "resource").is_some_and(|r| DAEMON_KINDS.contains(&r))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    let idle0 = kit.counts(DAEMON_KINDS)?;
    std::thread::sleep(Duration::from_secs(STEADY_S));
    let idle = kit.counts(DAEMON_KINDS)? - idle0;
    // One pod per node (bound to it, as the scheduler binds): each
    // daemon's watch should get its own, not everyone's.
    let events = |m: &str| {
        (
            metric_sum(m, "apiserver_watch_events_total", "pods", "Pod"),
            metric_sum(
                m,
                "apiserver_watch_events_total",
                "network-attachment-definitions",
                "NetworkAttachmentDefinition",
            ),
        )
    };
    let (pods0, nads0) = events(&metrics()?);
    let list: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("fleet-pod-{i}"), "namespace": "default"},
                "spec": {"nodeName": format!("node-{i}"), "containers": [{"name": "c", "image": "pause"}]}})
        })
        .collect();
    let file = work.join("daemon-pods.json");
    std::fs::write(
        &file,
        serde_json::to_vec(
            &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": list}),
        )?,
    )?;
    kit.kubectl(&["create", "-f", &file.display().to_string()])?;
    std::thread::sleep(Duration::from_secs(2));
    let (pods1, _) = events(&metrics()?);
    let nad = work.join("daemon-nad.json");
    std::fs::write(
        &nad,
        serde_json::to_vec(&serde_json::json!({"apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "fleet-nad", "namespace": "default"},
            "spec": {"config": "{\"cniVersion\":\"1.0.0\",\"name\":\"fleet-nad\",\"type\":\"bridge\"}"}}))?,
    )?;
    kit.kubectl(&["create", "-f", &nad.display().to_string()])?;
    std::thread::sleep(Duration::from_secs(2));
    let (_, nads1) = events(&metrics()?);
    let [(api1, api_rss), _] = servers_usage(kit);
    let mut rss: Vec<f64> = daemons
        .0
        .iter()
        .filter_map(|c| multus_testbed::peak_rss_mib(c.id()))
        .collect();
    rss.sort_by(f64::total_cmp);
    drop(daemons);
    kit.kubectl(&["delete", "-f", &file.display().to_string(), "--wait=false"])?;
    kit.kubectl(&["delete", "-f", &nad.display().to_string(), "--wait=false"])?;
    Ok(DaemonRow {
        n,
        listed: listed_all,
        list_requests: listed_counts.requests,
        watches,
        idle_requests: idle.requests,
        pod_events: pods1 - pods0,
        nad_events: nads1 - nads0,
        apiserver_cpu: api1 - api0,
        apiserver_rss: api_rss,
        daemon_rss: rss.get(rss.len() / 2).copied().unwrap_or(0.0),
    })
}
