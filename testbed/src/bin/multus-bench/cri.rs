//! `--cri`: a pod's network through the path the kubelet takes. A private
//! containerd per path, driven over its CRI socket (RunPodSandbox,
//! StopPodSandbox, RemovePodSandbox), the in-test API server holding the
//! pods and their NADs, a pause image assembled here. Each pod has the
//! cluster network (bridge + host-local) and two NADs (bridge, macvlan;
//! host-local). "CNI setup" is containerd's own measure, from its log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use multus_testbed::cri::{Containerd, Cri};
use multus_testbed::kube_api::{FakeKubeApi, NODE};

use super::breakdown::{rows, Rows};
use super::pod_api::{KitApi, PodApi};
use multus_testbed::node::SHIPPED_PLUGINS;
use multus_testbed::{quantile, reference_plugin_dir};
use serde_json::json;

pub struct Opts<'a> {
    /// Runs of one pod per path, interleaved.
    pub runs: usize,
    /// Where our built binaries are.
    pub here: &'a Path,
    /// Built wasm plugins.
    pub built: &'a Path,
    /// Upstream Multus's built binaries (`multus`, `multus-daemon`,
    /// `multus-shim`), for its rows.
    pub upstream: Option<&'a Path>,
    /// The in-test API server's lane.
    pub in_process: bool,
    /// The cluster kit, for the lane on a real kube-apiserver + etcd.
    pub kit: Option<&'a Path>,
}

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const STATUS: &str = "k8s.v1.cni.cncf.io/network-status";
/// Pods started together in the second table.
const AT_ONCE: usize = 10;
/// Rounds of `AT_ONCE` pods per path.
const ROUNDS_AT_ONCE: usize = 3;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Baseline,
    Thin,
    Thick,
}

struct PathSpec {
    name: &'static str,
    kind: Kind,
    /// Every delegate a module (else the reference binaries).
    modules: bool,
    upstream: bool,
}

const PATHS: &[PathSpec] = &[
    PathSpec {
        name: "no multus: the cluster conflist alone (baseline)",
        kind: Kind::Baseline,
        modules: false,
        upstream: false,
    },
    PathSpec {
        name: "ours thin, native delegates",
        kind: Kind::Thin,
        modules: false,
        upstream: false,
    },
    PathSpec {
        name: "ours thin, every delegate a module",
        kind: Kind::Thin,
        modules: true,
        upstream: false,
    },
    PathSpec {
        name: "ours thick, native delegates",
        kind: Kind::Thick,
        modules: false,
        upstream: false,
    },
    PathSpec {
        name: "ours thick, every delegate a module",
        kind: Kind::Thick,
        modules: true,
        upstream: false,
    },
    PathSpec {
        name: "upstream Multus v4.3.0 thin",
        kind: Kind::Thin,
        modules: false,
        upstream: true,
    },
    PathSpec {
        name: "upstream Multus v4.3.0 thick",
        kind: Kind::Thick,
        modules: false,
        upstream: true,
    },
];

/// One path: its containerd and, in thick mode, its daemon.
struct Lane<'a> {
    spec: &'a PathSpec,
    index: usize,
    dir: PathBuf,
    containerd: Containerd,
    daemon: Option<Daemon>,
    /// The UIDs of its pods, by index.
    uids: Vec<String>,
}

/// A thick daemon, restartable for the fresh-daemon column.
struct Daemon {
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    socket: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    fn start(&mut self) -> Result<()> {
        self.stop();
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new(&self.cmd[0])
            .args(&self.cmd[1..])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log)?)
            .spawn()
            .with_context(|| format!("starting {}", self.cmd[0]))?;
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(60);
        while !self.socket.exists() {
            if Instant::now() > until {
                bail!(
                    "{} never made {}: {}",
                    self.cmd[0],
                    self.socket.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn peak_rss_mib(&self) -> f64 {
        self.child
            .as_ref()
            .and_then(|c| multus_testbed::peak_rss_mib(c.id()))
            .unwrap_or(0.0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One pod's figures, in ms.
#[derive(Default, Clone)]
struct PodTimes {
    run: Duration,
    cni: Duration,
    stop: Duration,
    remove: Duration,
}

fn link_all(from: &Path, to: &Path) -> Result<()> {
    for e in std::fs::read_dir(from)? {
        let p = e?.path();
        std::os::unix::fs::symlink(&p, to.join(p.file_name().context("a file name")?))?;
    }
    Ok(())
}

/// Binds the fake API server's service account where client-go's
/// in-cluster config reads it, in a mount namespace of the daemon's own
/// (upstream's daemon takes no kubeconfig). The mount point is made once
/// on the host; it is an empty directory under /run.
const SA_PATH: &str = "/run/secrets/kubernetes.io/serviceaccount";

impl<'a> Lane<'a> {
    fn pod_name(&self, i: usize) -> String {
        format!("cri-{}-{i}", self.index)
    }

    /// One pod through the CRI: run, check its networks, stop, remove.
    fn pod(&self, cri: &mut Cri, api: &dyn PodApi, i: usize) -> Result<PodTimes> {
        self.pod_then(cri, api, i, || Ok(()))
    }

    /// `pod`, with `between` run once the pod's networks are checked and
    /// before it is stopped (untimed).
    fn pod_then(
        &self,
        cri: &mut Cri,
        api: &dyn PodApi,
        i: usize,
        between: impl FnOnce() -> Result<()>,
    ) -> Result<PodTimes> {
        let name = self.pod_name(i);
        let uid = &self.uids[i];
        let started = Instant::now();
        let id = cri
            .run_pod("default", &name, uid)
            .map_err(|e| anyhow::anyhow!("{}: RunPodSandbox {name}: {e}", self.spec.name))?;
        let run = started.elapsed();
        if self.spec.kind != Kind::Baseline {
            // A daemon writes it right after its answer: a moment later.
            let until = Instant::now() + Duration::from_secs(5);
            loop {
                let status = api.annotation("default", &name, STATUS).unwrap_or_default();
                if status.contains("default/cri-macvlan") && status.contains("default/cri-bridge") {
                    break;
                }
                if Instant::now() > until {
                    bail!(
                        "{}: pod {name} has no network-status naming both NADs: {status:?}",
                        self.spec.name
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        between()?;
        let started = Instant::now();
        cri.stop_pod(&id)
            .map_err(|e| anyhow::anyhow!("{}: StopPodSandbox {name}: {e}", self.spec.name))?;
        let stop = started.elapsed();
        let started = Instant::now();
        cri.remove_pod(&id)
            .map_err(|e| anyhow::anyhow!("{}: RemovePodSandbox {name}: {e}", self.spec.name))?;
        let remove = started.elapsed();
        let cni = self
            .containerd
            .cni_setup_times()
            .remove(&id)
            .with_context(|| {
                format!(
                    "{}: no CNI setup lines for {id} in containerd's log",
                    self.spec.name
                )
            })?;
        Ok(PodTimes {
            run,
            cni,
            stop,
            remove,
        })
    }

    /// `AT_ONCE` pods run together, then stopped and removed together.
    fn pods_at_once(&self, api: &dyn PodApi) -> Result<Vec<PodTimes>> {
        std::thread::scope(|sc| {
            let handles: Vec<_> = (0..AT_ONCE)
                .map(|i| {
                    sc.spawn(move || -> Result<PodTimes> {
                        let mut cri = self.containerd.cri()?;
                        self.pod(&mut cri, api, i)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a pod thread"))
                .collect()
        })
    }
}

/// Each lane asked for: the in-test API server's, then the real one's.
pub fn run(opts: &Opts) -> Result<()> {
    let node = super::enter_bench_node("bench-cri")?;
    if opts.in_process {
        let api = FakeKubeApi::start(&node, "bench-token")?;
        run_on(opts, &node, &api)?;
    }
    if let Some(kit) = opts.kit {
        let api = KitApi::start(kit)?;
        run_on(opts, &node, &api)?;
    }
    Ok(())
}

fn run_on(opts: &Opts, node: &multus_testbed::Netns, api: &dyn PodApi) -> Result<()> {
    let reference = reference_plugin_dir();
    let work = tempfile::tempdir()?;
    let ipam = work.path().join("ipam");
    api.add_nad(
        "default",
        "cri-bridge",
        &json!({"cniVersion": "0.3.1", "name": "cri-bridge", "type": "bridge", "bridge": "cribr1",
            "ipam": {"type": "host-local", "dataDir": ipam, "ranges": [[{"subnet": "10.90.0.0/16"}]]}}).to_string(),
    )?;
    api.add_nad(
        "default",
        "cri-macvlan",
        &json!({"cniVersion": "0.3.1", "name": "cri-macvlan", "type": "macvlan", "master": "uplink0", "mode": "bridge",
            "ipam": {"type": "host-local", "dataDir": ipam, "ranges": [[{"subnet": "10.91.0.0/16"}]]}}).to_string(),
    )?;
    let modules = work.path().join("plugins");
    std::fs::create_dir_all(&modules)?;
    for m in SHIPPED_PLUGINS.iter().chain(&["bridge", "macvlan", "ptp"]) {
        let f = format!("{m}.wasm");
        std::fs::copy(opts.built.join(&f), modules.join(&f))
            .with_context(|| format!("{f} in {} (scripts/build-plugins)", opts.built.display()))?;
    }
    let no_modules = work.path().join("no-plugins");
    std::fs::create_dir_all(&no_modules)?;
    let made_sa_path = !Path::new(SA_PATH).exists();
    // Absolute: the binaries are linked into each path's bin dir.
    let upstream_dir = opts
        .upstream
        .map(|d| {
            d.canonicalize()
                .with_context(|| format!("--upstream {}", d.display()))
        })
        .transpose()?;

    let mut lanes = Vec::new();
    for (index, spec) in PATHS.iter().enumerate() {
        let upstream = match (spec.upstream, upstream_dir.as_deref()) {
            (false, _) => None,
            (true, Some(dir)) => Some(dir),
            (true, None) => continue,
        };
        let dir = work.path().join(format!("path{index}"));
        let (bin, conf_dir, multus_d) = (dir.join("bin"), dir.join("net.d"), dir.join("multus.d"));
        for d in [&bin, &conf_dir, &multus_d] {
            std::fs::create_dir_all(d)?;
        }
        link_all(&reference, &bin)?;
        // One name in every lane (the breakdown's rows), each with its own
        // range and so its own host-local dir.
        let cluster = json!({"cniVersion": "0.3.1", "name": "cri-cluster", "plugins": [
            {"type": "bridge", "bridge": format!("crib{index}"), "isGateway": true, "isDefaultGateway": true,
             "ipam": {"type": "host-local", "dataDir": dir.join("cluster-ipam"),
                      "ranges": [[{"subnet": format!("10.{}.0.0/24", 100 + index)}]]}}]});
        let uids = (0..AT_ONCE)
            .map(|i| {
                api.add_pod(
                    "default",
                    &format!("cri-{index}-{i}"),
                    &[(NETWORKS, "cri-bridge,cri-macvlan")],
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let mut multus = json!({"cniVersion": "0.3.1", "name": "multus-cni-network", "type": "multus",
            "kubeconfig": api.kubeconfig(), "clusterNetwork": "cri-cluster",
            "confDir": multus_d, "cniDir": dir.join("cache"), "binDir": bin});
        if upstream.is_none() {
            multus["wasmPluginDir"] = json!(if spec.modules { &modules } else { &no_modules });
            multus["wasmCacheDir"] = json!(work.path().join("wasm-cache"));
            multus["storeRoots"] = json!(["/var/lib/cni/networks", "/run/cni", work.path()]);
            if spec.modules {
                multus["wasmPlugins"] = json!({"bridge": {"hostNetns": true},
                    "macvlan": {"hostNetns": true}, "ptp": {"hostNetns": true}});
            }
        }
        let cluster_file = match spec.kind {
            Kind::Baseline => conf_dir.join("10-cluster.conflist"),
            Kind::Thin | Kind::Thick => multus_d.join("10-cluster.conflist"),
        };
        std::fs::write(cluster_file, serde_json::to_vec(&cluster)?)?;
        // What the runtime execs for multus: ours or upstream's.
        let multus_bin = match spec.kind {
            Kind::Baseline => None,
            Kind::Thin => Some("multus"),
            Kind::Thick => Some("multus-shim"),
        };
        if let Some(name) = multus_bin {
            let from = upstream.unwrap_or(opts.here).join(name);
            std::os::unix::fs::symlink(&from, bin.join(name))
                .with_context(|| format!("linking {}", from.display()))?;
        }
        let socket_dir = dir.join("run");
        let mut daemon = None;
        match (spec.kind, upstream) {
            (Kind::Baseline, _) => {}
            (Kind::Thin, _) => {
                std::fs::write(
                    conf_dir.join("00-multus.conf"),
                    serde_json::to_vec(&multus)?,
                )?;
            }
            (Kind::Thick, None) => {
                let mut shim = multus.clone();
                shim["type"] = "multus-shim".into();
                shim["daemonSocketDir"] = json!(socket_dir);
                std::fs::write(conf_dir.join("00-multus.conf"), serde_json::to_vec(&shim)?)?;
                let config = dir.join("daemon-config.json");
                // The wasm keys in the daemon config, as an admin's (and
                // deploy/thick's defaults) are: what the daemon warms at
                // start.
                let mut daemon_config =
                    json!({"socketDir": socket_dir, "kubeconfig": api.kubeconfig()});
                for key in ["wasmPluginDir", "wasmCacheDir", "storeRoots", "wasmPlugins"] {
                    if let Some(v) = multus.get(key) {
                        daemon_config[key] = v.clone();
                    }
                }
                std::fs::write(&config, serde_json::to_vec(&daemon_config)?)?;
                daemon = Some(Daemon {
                    cmd: vec![
                        opts.here.join("multus-daemon").display().to_string(),
                        "-config".into(),
                        config.display().to_string(),
                    ],
                    // As deploy/thick's DaemonSet names the node.
                    env: vec![("NODE_NAME".into(), NODE.into())],
                    socket: socket_dir.join("multus.sock"),
                    log: dir.join("daemon.log"),
                    child: None,
                });
            }
            (Kind::Thick, Some(up)) => {
                // As upstream's DaemonSet runs it: `multusConfigFile: auto`
                // generates the shim's conf from the master (with a file of
                // the user's instead, v4.3.0's daemon exits at once). Its
                // own keys, and the multus keys it puts over every request.
                let mut config = multus.clone();
                let c = config.as_object_mut().context("an object")?;
                c.remove("kubeconfig");
                c.remove("type");
                c.remove("name");
                for (k, v) in [
                    ("chrootDir", json!("")),
                    ("socketDir", json!(socket_dir)),
                    ("daemonSocketDir", json!(socket_dir)),
                    ("cniConfigDir", json!(conf_dir)),
                    ("multusAutoconfigDir", json!(multus_d)),
                    ("multusConfigFile", json!("auto")),
                    ("logToStderr", json!(true)),
                    ("logLevel", json!("verbose")),
                ] {
                    c.insert(k.into(), v);
                }
                let path = dir.join("daemon-config.json");
                std::fs::write(&path, serde_json::to_vec(&config)?)?;
                let daemon_bin = up.join("multus-daemon").display().to_string();
                let script = format!(
                    "mount --bind {sa} {SA_PATH} && exec {daemon_bin} -config {config}",
                    sa = api.service_account().display(),
                    config = path.display(),
                );
                std::fs::create_dir_all(SA_PATH)?;
                daemon = Some(Daemon {
                    cmd: vec![
                        "unshare".into(),
                        "--mount".into(),
                        "--propagation".into(),
                        // New netns mounts (each pod's) still reach it.
                        "slave".into(),
                        "sh".into(),
                        "-c".into(),
                        script,
                    ],
                    env: vec![
                        ("MULTUS_NODE_NAME".into(), NODE.into()),
                        ("KUBERNETES_SERVICE_HOST".into(), api.service().0),
                        (
                            "KUBERNETES_SERVICE_PORT".into(),
                            api.service().1.to_string(),
                        ),
                    ],
                    socket: socket_dir.join("multus.sock"),
                    log: dir.join("daemon.log"),
                    child: None,
                });
            }
        }
        let containerd =
            Containerd::start(&dir.join("containerd"), node, &bin, &conf_dir, &[], "debug")?;
        containerd.import_pause()?;
        if let Some(d) = daemon.as_mut() {
            d.start()?;
        }
        lanes.push(Lane {
            spec,
            index,
            dir,
            containerd,
            daemon,
            uids,
        });
    }

    let result = measure(opts, api, &mut lanes);
    if made_sa_path {
        let _ = std::fs::remove_dir(SA_PATH);
        let _ = std::fs::remove_dir("/run/secrets/kubernetes.io");
        let _ = std::fs::remove_dir("/run/secrets");
    }
    if result.is_err() {
        for l in &lanes {
            eprintln!(
                "--- {} ({}): containerd log tail",
                l.spec.name,
                l.dir.display()
            );
            let log = l.containerd.log();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            if let Some(d) = &l.daemon {
                eprintln!(
                    "--- daemon log: {}",
                    std::fs::read_to_string(&d.log).unwrap_or_default()
                );
            }
        }
    }
    result
}

fn med(v: &[PodTimes], f: fn(&PodTimes) -> Duration) -> f64 {
    quantile(&v.iter().map(f).collect::<Vec<_>>(), 0.5)
}

fn measure(opts: &Opts, api: &dyn PodApi, lanes: &mut [Lane]) -> Result<()> {
    let mut cris: Vec<Cri> = lanes
        .iter()
        .map(|l| l.containerd.cri())
        .collect::<std::io::Result<_>>()?;
    // containerd's own first sandbox, the modules' first compile, each
    // daemon's first pod: paid before anything is timed.
    for (l, cri) in lanes.iter().zip(&mut cris) {
        l.pod(cri, api, 0)?;
    }
    let mut one: Vec<Vec<PodTimes>> = vec![Vec::new(); lanes.len()];
    let mut fresh: Vec<Vec<PodTimes>> = vec![Vec::new(); lanes.len()];
    for _ in 0..opts.runs {
        for (k, (l, cri)) in lanes.iter().zip(&mut cris).enumerate() {
            one[k].push(l.pod(cri, api, 0)?);
        }
    }
    // A fresh daemon's first pod: the daemon started again, the pod sent
    // the moment its socket exists.
    let lanes_fresh: Vec<usize> = (0..lanes.len())
        .filter(|&k| lanes[k].daemon.is_some())
        .collect();
    for _ in 0..opts.runs {
        for &k in &lanes_fresh {
            lanes[k].daemon.as_mut().context("a daemon")?.start()?;
            fresh[k].push(lanes[k].pod(&mut cris[k], api, 1)?);
        }
    }
    let mut many: Vec<Vec<PodTimes>> = vec![Vec::new(); lanes.len()];
    let mut rss = vec![0.0; lanes.len()];
    for _ in 0..ROUNDS_AT_ONCE {
        for (k, l) in lanes.iter().enumerate() {
            many[k].extend(l.pods_at_once(api)?);
            if let Some(d) = &l.daemon {
                rss[k] = d.peak_rss_mib();
            }
        }
    }

    let ours: Vec<usize> = (0..lanes.len())
        .filter(|&k| lanes[k].spec.modules && !lanes[k].spec.upstream)
        .collect();
    let broken_down: Vec<Column> = ours
        .into_iter()
        .map(|k| break_down(&mut lanes[k], &mut cris[k], api, opts.runs))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();

    println!("\n## On {}\n", api.label());
    let base = |v: &[Vec<PodTimes>]| med(&v[0], |t| t.cni);
    println!(
        "\nA pod with the cluster network and two NADs through containerd's CRI: medians of {} runs, interleaved (ms).\n\"CNI setup\" is containerd's own measure (its `begin cni setup` to `cni result` log lines); \"+CNI\" is it minus the baseline's.\n",
        opts.runs
    );
    println!("| path | RunPodSandbox | +Run | CNI setup | +CNI | first pod of a fresh daemon: RunPodSandbox, CNI setup | StopPodSandbox | RemovePodSandbox |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let base_run = med(&one[0], |t| t.run);
    for (k, l) in lanes.iter().enumerate() {
        let first = if fresh[k].is_empty() {
            "".to_string()
        } else {
            format!(
                "{:.1}, {:.1}",
                med(&fresh[k], |t| t.run),
                med(&fresh[k], |t| t.cni)
            )
        };
        println!(
            "| {} | {:.1} | {:+.1} | {:.1} | {:+.1} | {first} | {:.1} | {:.1} |",
            l.spec.name,
            med(&one[k], |t| t.run),
            med(&one[k], |t| t.run) - base_run,
            med(&one[k], |t| t.cni),
            med(&one[k], |t| t.cni) - base(&one),
            med(&one[k], |t| t.stop),
            med(&one[k], |t| t.remove),
        );
    }
    println!("\n{AT_ONCE} pods at once, {ROUNDS_AT_ONCE} rounds per path (ms; the daemon's peak RSS over them)\n");
    println!("| path | RunPodSandbox median | p95 | CNI setup median | p95 | +CNI | daemon peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (k, l) in lanes.iter().enumerate() {
        let q = |f: fn(&PodTimes) -> Duration, p| {
            quantile(&many[k].iter().map(f).collect::<Vec<_>>(), p)
        };
        let rss = if l.daemon.is_some() {
            format!("{:.1}", rss[k])
        } else {
            String::new()
        };
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:+.1} | {rss} |",
            l.spec.name,
            q(|t| t.run, 0.5),
            q(|t| t.run, 0.95),
            q(|t| t.cni, 0.5),
            q(|t| t.cni, 0.95),
            q(|t| t.cni, 0.5) - base(&many),
        );
    }
    print_breakdown(&broken_down);
    // Overheads over the baseline (1 pod), RunPodSandbox's and CNI setup's.
    let over = |k: usize, f: fn(&PodTimes) -> Duration| med(&one[k], f) - med(&one[0], f);
    let lane = |p: &PathSpec| lanes.iter().position(|l| std::ptr::eq(l.spec, p));
    let best = |upstream: bool| {
        (0..lanes.len())
            .filter(|&k| lanes[k].spec.kind != Kind::Baseline && lanes[k].spec.upstream == upstream)
            .min_by(|&a, &b| over(a, |t| t.run).total_cmp(&over(b, |t| t.run)))
    };
    match (best(false), best(true)) {
        (Some(ours), Some(up)) => {
            let ratio = |a: usize, b: usize, f: fn(&PodTimes) -> Duration| over(a, f) / over(b, f);
            println!(
                "\nRunPodSandbox overhead, ours best ({}) / upstream's best ({}): {:.2} (CNI setup: {:.2})",
                lanes[ours].spec.name,
                lanes[up].spec.name,
                ratio(ours, up, |t| t.run),
                ratio(ours, up, |t| t.cni)
            );
            if let (Some(thin), Some(up_thin)) = (lane(&PATHS[2]), lane(&PATHS[5])) {
                println!(
                    "RunPodSandbox overhead, {} / upstream thin: {:.2} (CNI setup: {:.2})",
                    PATHS[2].name,
                    ratio(thin, up_thin, |t| t.run),
                    ratio(thin, up_thin, |t| t.cni)
                );
            }
            if let (Some(thick), Some(up_thick)) = (lane(&PATHS[4]), lane(&PATHS[6])) {
                println!(
                    "RunPodSandbox overhead, {} / upstream thick: {:.2} (CNI setup: {:.2})",
                    PATHS[4].name,
                    ratio(thick, up_thick, |t| t.run),
                    ratio(thick, up_thick, |t| t.cni)
                );
            }
        }
        _ => println!("(no upstream rows: pass --upstream DIR with upstream Multus's multus, multus-daemon and multus-shim)"),
    }
    for k in (0..lanes.len()).filter(|&k| !fresh[k].is_empty()) {
        println!(
            "{}: a fresh daemon's first pod, RunPodSandbox overhead {:.2}x a warm one's",
            lanes[k].spec.name,
            (med(&fresh[k], |t| t.run) - base_run) / over(k, |t| t.run)
        );
    }
    Ok(())
}

/// One column of the breakdown: its heading and each debug-logged pod's
/// rows and times.
struct Column {
    name: String,
    pods: Vec<(Rows, PodTimes)>,
}

/// Debug-logged ADDs of one of our lanes, one pod at a time after a warm
/// one: each one's rows (from multus's or the daemon's log) and times; for
/// a daemon, also a column of each fresh daemon's first pod (the daemon
/// started again, the pod sent the moment its socket exists). The lane's
/// conf (thin) or daemon (thick) is restored after.
fn break_down(
    lane: &mut Lane,
    cri: &mut Cri,
    api: &dyn PodApi,
    runs: usize,
) -> Result<Vec<Column>> {
    let log = lane.dir.join("debug.log");
    let file = match lane.spec.kind {
        Kind::Thin => lane.dir.join("net.d/00-multus.conf"),
        Kind::Thick => lane.dir.join("daemon-config.json"),
        Kind::Baseline => return Ok(Vec::new()),
    };
    let original = std::fs::read(&file)?;
    let mut conf: serde_json::Value = serde_json::from_slice(&original)?;
    conf["logLevel"] = json!("debug");
    conf["logFile"] = json!(log);
    if lane.spec.kind == Kind::Thick {
        conf["logToStderr"] = json!(false);
    }
    std::fs::write(&file, serde_json::to_vec(&conf)?)?;
    let restart = |lane: &mut Lane| -> Result<()> {
        match lane.daemon.as_mut() {
            Some(d) => d.start(),
            None => Ok(()),
        }
    };
    // One pod, its log alone (the daemon's start-up lines cleared first).
    let logged = |lane: &Lane, cri: &mut Cri, i: usize| -> Result<(Rows, PodTimes)> {
        std::fs::write(&log, "")?;
        let mut text = String::new();
        let times = lane.pod_then(cri, api, i, || {
            // The daemon's writes after its answer, then the log.
            std::thread::sleep(Duration::from_millis(300));
            text = std::fs::read_to_string(&log)?;
            Ok(())
        })?;
        Ok((rows(&text), times))
    };
    let out = (|| -> Result<Vec<Column>> {
        let mut warm = Vec::new();
        let mut fresh = Vec::new();
        restart(lane)?;
        if lane.daemon.is_some() {
            fresh.push(logged(lane, cri, 1)?);
        } else {
            lane.pod(cri, api, 0)?;
        }
        for _ in 0..runs {
            warm.push(logged(lane, cri, 0)?);
        }
        for _ in 1..runs.min(3) {
            if lane.daemon.is_some() {
                restart(lane)?;
                fresh.push(logged(lane, cri, 1)?);
            }
        }
        let mut columns = vec![Column {
            name: lane.spec.name.to_string(),
            pods: warm,
        }];
        if !fresh.is_empty() {
            columns.push(Column {
                name: format!("{}: a fresh daemon's first pod", lane.spec.name),
                pods: fresh,
            });
        }
        Ok(columns)
    })();
    std::fs::write(&file, original)?;
    restart(lane)?;
    out
}

fn print_breakdown(broken_down: &[Column]) {
    if broken_down.is_empty() {
        return;
    }
    let names: std::collections::BTreeSet<&String> = broken_down
        .iter()
        .flat_map(|c| c.pods.iter().flat_map(|(r, _)| r.keys()))
        .collect();
    println!("\nWhere one ADD's time goes (ms, median over the debug-logged pods; \u{d7}N: calls or connections per ADD; calls made at once count as one span):\n");
    print!("| |");
    for c in broken_down {
        print!(" {} |", c.name);
    }
    println!();
    println!("|---|{}", "---:|".repeat(broken_down.len()));
    let cell = |v: &[(Rows, PodTimes)], name: &str| {
        let ms: Vec<Duration> = v
            .iter()
            .map(|(r, _)| Duration::from_secs_f64(r.get(name).map_or(0.0, |x| x.0) / 1e3))
            .collect();
        let mut n: Vec<usize> = v
            .iter()
            .map(|(r, _)| r.get(name).map_or(0, |x| x.1))
            .collect();
        n.sort_unstable();
        let n = n.get(n.len() / 2).copied().unwrap_or(0);
        format!(
            "{:.2}{}",
            quantile(&ms, 0.5),
            if n > 1 {
                format!(" \u{d7}{n}")
            } else {
                String::new()
            }
        )
    };
    for name in names {
        print!("| {name} |");
        for c in broken_down {
            print!(" {} |", cell(&c.pods, name));
        }
        println!();
    }
    for (label, f) in [
        (
            "containerd's CNI setup",
            (|t: &PodTimes| t.cni) as fn(&PodTimes) -> Duration,
        ),
        ("RunPodSandbox", |t: &PodTimes| t.run),
    ] {
        print!("| {label} |");
        for c in broken_down {
            print!(
                " {:.2} |",
                quantile(&c.pods.iter().map(|(_, t)| f(t)).collect::<Vec<_>>(), 0.5)
            );
        }
        println!();
    }
}
