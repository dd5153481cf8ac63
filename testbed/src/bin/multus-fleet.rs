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
//! Not simulated here: each node compiling the module (its own CPU on a
//! real node; here every node finds the artifact precompiled in one shared
//! cache, so the table is the API side), the daemons' watch caches, the
//! installers' token refreshes and cluster IPAM.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use multus_testbed::kit::{self, Counts, Kit};

/// The resources a rollout touches.
const ROLLOUT_KINDS: &[&str] = &["wasmplugins", "wasmpluginnodes", "configmaps"];
use multus_testbed::{enter, Netns};
use serde_json::Value;

#[derive(Parser)]
#[command(about = "Simulated nodes against a real API server: plugin rollouts at N nodes")]
struct Args {
    /// Fleet sizes, one run each.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    nodes: Vec<usize>,
    /// The cluster kit (../shared/cluster-kit, built once per machine).
    #[arg(long, env = "MULTUS_KIT", default_value = "/var/tmp/kit")]
    kit: PathBuf,
    /// How long a rollout may take before the run fails.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    timeout: Duration,
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
    // Image sources come from a real registry on the run's loopback.
    let registry = multus_testbed::registry::Registry::start(
        &node,
        5000,
        multus_testbed::registry::Auth::None,
    )
    .context("docker-registry (scripts/deps installs it)")?;
    for &n in &args.nodes {
        rows.extend(fleet(
            &args,
            n,
            &repo,
            &multusctl,
            &plugins,
            &registry.host,
        )?);
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
    Ok(())
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
    multusctl: &Path,
    plugins: &Path,
    registry: &str,
) -> Result<Vec<Row>> {
    eprintln!("fleet: {n} nodes");
    let kit = Kit::start(&args.kit)?;
    kit.kubectl(&[
        "apply",
        "-f",
        &repo
            .join("deploy/crd/wasmplugins.yaml")
            .display()
            .to_string(),
    ])?;
    kit.kubectl(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd/wasmplugins.multus-wasm.io",
        "crd/wasmpluginnodes.multus-wasm.io",
    ])?;
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
    let admin = kit.admin_kubeconfig();
    let mut nodes = Nodes(Vec::new());
    // The one aggregator, as deploy/plugins runs it.
    nodes.0.push(
        Command::new(multusctl)
            .args(["plugin", "aggregate", "--kubeconfig"])
            .arg(&admin)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.path().join("aggregate.log"))?)
            .spawn()?,
    );
    for i in 0..n {
        let root = work.path().join(format!("node-{i}"));
        let cache_dir = root.join("var/lib/cni/multus");
        std::fs::create_dir_all(&cache_dir)?;
        std::os::unix::fs::symlink(&cache, cache_dir.join("wasm-cache"))?;
        let log = std::fs::File::create(work.path().join(format!("node-{i}.log")))?;
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
        let pids = (
            kit.pid("kube-apiserver").unwrap_or(0),
            kit.pid("etcd").unwrap_or(0),
        );
        let (api0, etcd0) = (usage(pids.0).0, usage(pids.1).0);
        let started = Instant::now();
        act()?;
        let mut polls = 0.0;
        loop {
            let status = status_of(&kit, "tuning").unwrap_or(Value::Null);
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
        let (api1, api_rss) = usage(pids.0);
        let (etcd1, etcd_rss) = usage(pids.1);
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
        let r = reports(&kit, "tuning")?;
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
            let f = work
                .path()
                .join(format!("node-{i}/etc/cni/multus/plugins/tuning.wasm"));
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
