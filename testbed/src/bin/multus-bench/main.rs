//! Latency and memory of pod ADD/DEL: the reference plugins exec'd directly
//! (what a runtime without multus does) vs the same networks through multus,
//! with native and wasm delegates; fresh pod netns every cycle. Then the
//! wasm IPAM call itself: exec'd reference host-local vs the wasm one, cold
//! (compile) vs warm (precompiled), and where a warm call's time goes.

mod breakdown;
mod cri;
mod pod_api;

use multus::boundary::PluginType;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use multus::cni::Command as CniCommand;
use multus::config::WasmConf;
use multus::delegate::wasm::{self, Role, Timings};
use multus::delegate::PluginCall;
use multus_testbed::kube_api::FakeKubeApi;
use multus_testbed::node::SHIPPED_PLUGINS;
use multus_testbed::{confs, enter, quantile, reference_plugin_dir, Netns};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    about = "ADD/DEL latency and memory: reference plugins direct vs through multus, native and wasm"
)]
struct Args {
    /// Cycles (ADD + DEL in a fresh pod netns) per scenario.
    #[arg(long, default_value_t = 50)]
    cycles: usize,
    /// Calls per IPAM measurement.
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// The multus binary (default: next to this one).
    #[arg(long)]
    multus: Option<PathBuf>,
    /// Built wasm plugins (default: target/plugins).
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Runs of `multusctl install --once` per install scenario.
    #[arg(long, default_value_t = 10)]
    installs: usize,
    /// The image archive of scripts/image, to report its size.
    #[arg(long)]
    image: Option<PathBuf>,
    /// Only the install and exec-cost tables.
    #[arg(long)]
    install_only: bool,
    /// Only the delegate tables: IPAM and chained (in-process wasm vs
    /// exec'd reference).
    #[arg(long)]
    ipam_only: bool,
    /// Only the CRI table: pods through a private containerd's CRI, per
    /// path (baseline, ours thin and thick, native and modules, upstream).
    #[arg(long)]
    cri: bool,
    /// Runs of one pod per path in the CRI table.
    #[arg(long, default_value_t = 7)]
    cri_runs: usize,
    /// Where the CRI table's pods and NADs live: `in-process` (the in-test
    /// API server), `kit` (a real kube-apiserver + etcd: the cluster kit's
    /// `k8s/up.sh`), or `both` (the kit's lane only when the kit is built).
    #[arg(long, value_enum, default_value_t = CriApi::Both)]
    cri_api: CriApi,
    /// The cluster kit (../shared/cluster-kit, built once per machine).
    #[arg(long, env = "MULTUS_KIT", default_value = "/var/tmp/kit")]
    kit: PathBuf,
    /// Upstream Multus's built binaries (multus, multus-daemon,
    /// multus-shim): the CRI table's upstream rows, and upstream thin
    /// beside (b) in the latency table.
    #[arg(long)]
    upstream: Option<PathBuf>,
    /// Only the table of pods started at once (thin vs thick, with the
    /// daemon's peak RSS).
    #[arg(long)]
    concurrency_only: bool,
    /// The daemon's `connectionLimit` (requests run at once); unset, the
    /// daemon's default, as deployed.
    #[arg(long)]
    connection_limit: Option<usize>,
    /// Another multus build (e.g. one with the compiler linked in) whose
    /// VERSION exec cost to show beside this one's.
    #[arg(long)]
    multus_before: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum CriApi {
    InProcess,
    Kit,
    Both,
}

struct Scenario {
    name: &'static str,
    program: PathBuf,
    stdin: Vec<u8>,
    /// Exec'd directly: DEL gets the ADD result as `prevResult`, as libcni
    /// gives it from its cache.
    direct: bool,
    /// The runtime names the pod (`K8S_POD_*`). Off for the scenarios
    /// without the API: the daemon has its own client and would otherwise
    /// look the pod up, as upstream's does, and attach its annotation's NAD.
    pod: bool,
}

#[derive(Default)]
struct Samples {
    add: Vec<Duration>,
    del: Vec<Duration>,
    /// `run_concurrent`: each round's ADDs, first start to last end.
    add_walls: Vec<Duration>,
    /// `run_concurrent`: each round's addresses, from its ADDs' results
    /// (multus returns the first network's).
    addresses: Vec<Vec<String>>,
    /// Peak RSS over the process and the children it waited for, in KiB.
    max_rss_kib: i64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Execs like a runtime and reads the child's rusage with wait4.
struct Exec {
    ok: bool,
    stdout: Vec<u8>,
    took: Duration,
    max_rss_kib: i64,
}

fn exec(program: &Path, env: &[(&str, &str)], stdin: &[u8]) -> Result<Exec> {
    exec_with_args(program, &[], env, stdin)
}

fn exec_with_args(
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Result<Exec> {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("exec {}", program.display()))?;
    child.stdin.take().context("stdin")?.write_all(stdin)?;
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_end(&mut stdout)?;
    let mut status = 0;
    // SAFETY: waiting for our own child; rusage is plain data.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) } < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let ok = std::process::ExitStatus::from_raw(status).success();
    Ok(Exec {
        ok,
        stdout,
        took: started.elapsed(),
        max_rss_kib: ru.ru_maxrss,
    })
}

/// A single-plugin conflist as the stdin a runtime gives its one plugin.
fn direct_stdin(list: &Value) -> Vec<u8> {
    let mut p = list["plugins"][0].clone();
    p["name"] = list["name"].clone();
    p["cniVersion"] = list["cniVersion"].clone();
    serde_json::to_vec(&p).expect("conf serializes")
}

fn cni_env<'a>(cmd: &'a str, cid: &'a str, netns: &'a str) -> [(&'a str, &'a str); 6] {
    [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench",
        ),
        ("CNI_PATH", "/usr/lib/cni"),
    ]
}

/// The most pods the concurrency table starts at once.
const MAX_CONCURRENT: usize = 50;

/// `concurrent` pods (`default/bench-<i>`, fresh netns each) ADDed at
/// once, then DELeted at once, `rounds` times.
fn run_concurrent(s: &Scenario, concurrent: usize, rounds: usize) -> Result<Samples> {
    let mut out = Samples::default();
    for round in 0..rounds {
        let pods: Vec<Netns> = (0..concurrent)
            .map(|_| Netns::new("bench-pod"))
            .collect::<std::io::Result<_>>()?;
        for cmd in ["ADD", "DEL"] {
            let started = Instant::now();
            let mut addresses = Vec::new();
            let took: Vec<Exec> = std::thread::scope(|sc| {
                let handles: Vec<_> = pods
                    .iter()
                    .enumerate()
                    .map(|(i, pod)| {
                        sc.spawn(move || {
                            let cid = format!("conc{round}-{i}");
                            let netns = pod.path().display().to_string();
                            let args = format!(
                                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench-{i}"
                            );
                            let mut env = cni_env(cmd, &cid, &netns).to_vec();
                            env[4].1 = &args;
                            exec(&s.program, &env, &s.stdin)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("bench thread"))
                    .collect::<Result<_>>()
            })?;
            let wall = started.elapsed();
            for e in took {
                if !e.ok {
                    bail!(
                        "{} {cmd} at {concurrent} at once failed: {}",
                        s.name,
                        String::from_utf8_lossy(&e.stdout)
                    );
                }
                match cmd {
                    "ADD" => {
                        out.add.push(e.took);
                        addresses.extend(multus_testbed::result_addresses(
                            &serde_json::from_slice(&e.stdout)?,
                        ));
                    }
                    _ => out.del.push(e.took),
                }
            }
            if cmd == "ADD" {
                out.add_walls.push(wall);
                out.addresses.push(addresses);
            }
        }
    }
    Ok(out)
}

/// A node netns with the macvlan master `uplink0` (one end of a veth),
/// entered by this thread (its children start there).
fn enter_bench_node(name: &str) -> Result<Netns> {
    let node = Netns::new(name).context("creating the node netns (needs root)")?;
    node.ip(&[
        "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p",
    ])?;
    node.ip(&["link", "set", "uplink0", "up"])?;
    enter(&node)?;
    Ok(node)
}

/// The daemon's peak RSS (VmHWM) in MiB, then reset for the next reading.
fn take_peak_rss(pid: u32) -> f64 {
    let mib = multus_testbed::peak_rss_mib(pid).unwrap_or(0.0);
    // "5" resets the peak to the current RSS (proc(5), clear_refs).
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    mib
}

/// Plugin binaries one ADD of `s` execs, counted: one untimed ADD and DEL
/// with every plugin of `plugins` behind a wrapper that logs its exec
/// before exec'ing the real one (the conf's `binDir` pointed at them).
fn count_execs(s: &Scenario, plugins: &Path, work: &Path) -> Result<usize> {
    use std::os::unix::fs::PermissionsExt;
    let dir = work.join(format!("exec-count-{}", s.name));
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("execs.log");
    for e in std::fs::read_dir(plugins)? {
        let real = e?.path();
        let wrapper = dir.join(real.file_name().context("a plugin file name")?);
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$CNI_COMMAND $0\" >> {}\nexec {} \"$@\"\n",
                log.display(),
                real.display()
            ),
        )?;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    }
    let mut conf: Value = serde_json::from_slice(&s.stdin)?;
    conf["binDir"] = json!(dir);
    let counted = Scenario {
        name: s.name,
        program: s.program.clone(),
        stdin: serde_json::to_vec(&conf)?,
        direct: s.direct,
        pod: s.pod,
    };
    std::fs::write(&log, "")?;
    run(&counted, 1)?;
    let text = std::fs::read_to_string(&log)?;
    Ok(text.lines().filter(|l| l.starts_with("ADD ")).count())
}

fn run(s: &Scenario, cycles: usize) -> Result<Samples> {
    let mut out = Samples::default();
    for i in 0..cycles {
        let pod = Netns::new("bench-pod")?;
        let netns = pod.path().display().to_string();
        let cid = format!("bench{i}");
        let env = |cmd| {
            let mut e = cni_env(cmd, &cid, &netns).to_vec();
            if !s.pod {
                e[4].1 = "IgnoreUnknown=1";
            }
            e
        };
        let added = exec(&s.program, &env("ADD"), &s.stdin)?;
        if !added.ok {
            bail!(
                "{} ADD failed: {}",
                s.name,
                String::from_utf8_lossy(&added.stdout)
            );
        }
        let del_stdin = if s.direct {
            let mut conf: Value = serde_json::from_slice(&s.stdin)?;
            conf["prevResult"] = serde_json::from_slice(&added.stdout)?;
            serde_json::to_vec(&conf)?
        } else {
            s.stdin.clone()
        };
        let deleted = exec(&s.program, &env("DEL"), &del_stdin)?;
        if !deleted.ok {
            bail!(
                "{} DEL failed: {}",
                s.name,
                String::from_utf8_lossy(&deleted.stdout)
            );
        }
        out.add.push(added.took);
        out.del.push(deleted.took);
        out.max_rss_kib = out
            .max_rss_kib
            .max(added.max_rss_kib)
            .max(deleted.max_rss_kib);
    }
    Ok(out)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let here = std::env::current_exe()?
        .parent()
        .context("no dir")?
        .to_path_buf();
    let multus = args.multus.unwrap_or_else(|| here.join("multus"));
    let built = args.plugins.unwrap_or_else(|| here.join("../plugins"));
    if args.cri {
        let built_kit = multus_testbed::kit::built(&args.kit);
        if args.cri_api == CriApi::Both && !built_kit {
            eprintln!(
                "bench: no real API server lane: no cluster kit at {} (../shared/cluster-kit/README.md; --kit DIR)",
                args.kit.display()
            );
        }
        return cri::run(&cri::Opts {
            runs: args.cri_runs,
            here: &here,
            built: &built,
            upstream: args.upstream.as_deref(),
            in_process: args.cri_api != CriApi::Kit,
            kit: (args.cri_api == CriApi::Kit || (args.cri_api == CriApi::Both && built_kit))
                .then_some(args.kit.as_path()),
        });
    }
    if !args.ipam_only {
        install_table(&here, &multus, &built, args.installs, args.image.as_deref())?;
        exec_table(&multus, args.multus_before.as_deref(), args.calls)?;
    }
    if args.install_only {
        return Ok(());
    }
    let plugins = reference_plugin_dir();
    let node = enter_bench_node("bench-node")?;
    let kit = multus_testbed::kit::built(&args.kit).then_some(args.kit.as_path());
    if kit.is_none() {
        eprintln!(
            "bench: no cluster kit at {} (../shared/cluster-kit/README.md): the cluster-IPAM table has no real API server lane",
            args.kit.display()
        );
    }
    let work = tempfile::tempdir()?;
    let data = work.path().join("ipam");
    let plugin_dir = work.path().join("plugins");
    std::fs::create_dir_all(&plugin_dir)?;
    for module in [
        "host-local",
        "static",
        "whereabouts",
        "legacy-networks",
        "sbr",
        "route-override",
    ] {
        std::fs::copy(
            built.join(format!("{module}.wasm")),
            plugin_dir.join(format!("{module}.wasm")),
        )
        .with_context(|| {
            format!(
                "no {module}.wasm in {} (scripts/build-plugins)",
                built.display()
            )
        })?;
    }
    let wasm_conf = WasmConf {
        plugin_dir: plugin_dir.clone(),
        cache_dir: work.path().join("wasm-cache"),
        plugins: Default::default(),
        kubeconfig: None,
        bounds: multus::boundary::Bounds {
            store_roots: vec![
                "/var/lib/cni/networks".into(),
                "/run/cni".into(),
                work.path().to_path_buf(),
            ],
            ..Default::default()
        },
        node_name: None,
    };
    // As the daemon runs its wasm calls (the bench is one long process).
    multus::delegate::wasm::engine::pool_instances(32);
    if args.ipam_only {
        ipam_table(&plugins, &multus, &wasm_conf, &data, args.calls)?;
        chained_table(&plugins, &wasm_conf, args.calls)?;
        cluster_ipam_table(&node, &multus, &wasm_conf, work.path(), kit)?;
        return interface_table(&multus, None, &plugins, &built, work.path(), args.cycles);
    }

    let cluster = confs::bridge_host_local("cluster", "cni0", "10.10.0.0/16", &data);
    let extra = confs::macvlan_host_local("extra", "uplink0", "10.11.0.0/16", &data);
    let ipam_only = json!({"cniVersion": "1.0.0", "name": "ipam-only", "plugins": [
        {"type": "host-local", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.12.0.0/16"}]], "dataDir": data}}
    ]});
    let multus_conf = |delegates: &[Value], wasm: bool| -> Result<Vec<u8>> {
        let mut c = confs::multus_delegates(delegates, &work.path().join("multus"), &plugins);
        if wasm {
            c["wasmPluginDir"] = json!(wasm_conf.plugin_dir);
            c["wasmCacheDir"] = json!(wasm_conf.cache_dir);
            c["storeRoots"] = json!(wasm_conf.bounds.store_roots);
        }
        Ok(serde_json::to_vec(&c)?)
    };
    // The same two networks, the second selected by the pod's annotation
    // from a NAD on the in-process API server (GET pod, GET NAD, GET + PUT
    // pods/status per ADD).
    let api = FakeKubeApi::start(&node, "bench-token")?;
    let conf_dir = work.path().join("net.d");
    std::fs::create_dir_all(&conf_dir)?;
    std::fs::write(
        conf_dir.join("10-cluster.conflist"),
        serde_json::to_vec(&cluster)?,
    )?;
    api.add_nad("default", "extra", Some(&extra.to_string()), &[]);
    api.add_pod(
        "default",
        "bench",
        "",
        &[
            ("k8s.v1.cni.cncf.io/networks", "extra"),
            ("tke.cloud.tencent.com/networks", r#"[{"name":"extra"}]"#),
        ],
        &[],
    );
    let kube_conf = |mapper: bool| -> Result<Vec<u8>> {
        let mut c = json!({
            "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
            "kubeconfig": api.kubeconfig(), "clusterNetwork": "cluster",
            "confDir": conf_dir, "cniDir": work.path().join("multus"), "binDir": plugins,
        });
        if mapper {
            // Only the mapper selects: it reads the legacy key.
            c["networksAnnotations"] = json!(["unused.example.com/networks"]);
            c["annotationMappers"] = json!(["legacy-networks"]);
            c["wasmPluginDir"] = json!(wasm_conf.plugin_dir);
            c["wasmCacheDir"] = json!(wasm_conf.cache_dir);
            c["storeRoots"] = json!(wasm_conf.bounds.store_roots);
        }
        Ok(serde_json::to_vec(&c)?)
    };
    // Thick mode: the daemon (in this node netns, as the bench is) and
    // the shim confs pointing at it.
    let socket_dir = work.path().join("run-multus");
    let daemon_config = work.path().join("daemon-config.json");
    // As deployed: its own API client and watch caches for this node.
    let mut config = json!({"socketDir": socket_dir, "kubeconfig": api.kubeconfig()});
    if let Some(limit) = args.connection_limit {
        config["connectionLimit"] = limit.into();
    }
    std::fs::write(&daemon_config, serde_json::to_vec(&config)?)?;
    for i in 0..MAX_CONCURRENT {
        api.add_pod(
            "default",
            &format!("bench-{i}"),
            "",
            &[("k8s.v1.cni.cncf.io/networks", "extra")],
            &[],
        );
    }
    let mut daemon = Command::new(here.join("multus-daemon"))
        .arg("-config")
        .arg(&daemon_config)
        .env("NODE_NAME", multus_testbed::kube_api::NODE)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting multus-daemon (build it beside this bench)")?;
    let socket = socket_dir.join("multus.sock");
    let until = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        if Instant::now() > until {
            bail!("multus-daemon never made {}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let shim_conf = |thin: Vec<u8>| -> Result<Vec<u8>> {
        let mut c: Value = serde_json::from_slice(&thin)?;
        c["type"] = "multus-shim".into();
        c["daemonSocketDir"] = json!(socket_dir);
        Ok(serde_json::to_vec(&c)?)
    };
    let shim = here.join("multus-shim");
    let mut scenarios = vec![
        Scenario {
            name: "(a) bridge+host-local exec'd directly",
            program: plugins.join("bridge"),
            stdin: direct_stdin(&cluster),
            direct: true,
            pod: false,
        },
        Scenario {
            name: "(b) same network through multus",
            program: multus.clone(),
            stdin: multus_conf(std::slice::from_ref(&cluster), false)?,
            direct: false,
            pod: false,
        },
        Scenario {
            name: "(c) multus, bridge + macvlan delegates",
            program: multus.clone(),
            stdin: multus_conf(&[cluster.clone(), extra.clone()], false)?,
            direct: false,
            pod: false,
        },
        Scenario {
            name: "(f) as (c), macvlan selected by annotation + NAD, network-status written",
            program: multus.clone(),
            stdin: kube_conf(false)?,
            direct: false,
            pod: true,
        },
        Scenario {
            name: "(g) as (f), selected by the legacy-networks wasm mapper",
            program: multus.clone(),
            stdin: kube_conf(true)?,
            direct: false,
            pod: true,
        },
        Scenario {
            name: "(d) multus, bridge + wasm host-local",
            program: multus.clone(),
            stdin: multus_conf(std::slice::from_ref(&cluster), true)?,
            direct: false,
            pod: false,
        },
        Scenario {
            name: "(e) multus, wasm host-local only (no exec)",
            program: multus.clone(),
            stdin: multus_conf(std::slice::from_ref(&ipam_only), true)?,
            direct: false,
            pod: false,
        },
        Scenario {
            name: "(h) as (c), thick: multus-shim + multus-daemon",
            program: shim.clone(),
            stdin: shim_conf(multus_conf(&[cluster.clone(), extra.clone()], false)?)?,
            direct: false,
            pod: false,
        },
        Scenario {
            name: "(i) as (f), thick: multus-shim + multus-daemon",
            program: shim.clone(),
            stdin: shim_conf(kube_conf(false)?)?,
            direct: false,
            pod: true,
        },
        Scenario {
            name: "(j) as (e), thick",
            program: shim.clone(),
            stdin: shim_conf(multus_conf(&[ipam_only], true)?)?,
            direct: false,
            pod: false,
        },
    ];
    // Last, so the indices above stay: multus's own cost beside upstream's.
    let upstream_thin = args.upstream.as_ref().map(|up| up.join("multus"));
    if let Some(program) = &upstream_thin {
        scenarios.push(Scenario {
            name: "(u) as (b), upstream Multus v4.3.0 thin",
            program: program.clone(),
            stdin: multus_conf(std::slice::from_ref(&cluster), false)?,
            direct: false,
            pod: false,
        });
    }
    for s in &scenarios {
        run(s, 1)?; // warm-up: page cache, first compile of wasm modules
    }
    if args.concurrency_only {
        take_peak_rss(daemon.id());
        concurrency_table(&scenarios[3], &scenarios[8], daemon.id())?;
        let _ = daemon.kill();
        let _ = daemon.wait();
        return Ok(());
    }
    let results: Vec<Samples> = scenarios
        .iter()
        .map(|s| run(s, args.cycles))
        .collect::<Result<_>>()?;

    println!("\n{} cycles per scenario, fresh pod netns each; times in ms; peak RSS of the process tree\n", args.cycles);
    println!("| scenario | ADD median | ADD p95 | DEL median | DEL p95 | peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (s, r) in scenarios.iter().zip(&results) {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
            s.name,
            quantile(&r.add, 0.5),
            quantile(&r.add, 0.95),
            quantile(&r.del, 0.5),
            quantile(&r.del, 0.95),
            r.max_rss_kib as f64 / 1024.0
        );
    }
    let med = |i: usize, f: fn(&Samples) -> &Vec<Duration>| quantile(f(&results[i]), 0.5);
    println!(
        "\nmultus overhead over (a), medians: ADD {:+.2} ms, DEL {:+.2} ms (target: ADD < 3 ms)",
        med(1, |r| &r.add) - med(0, |r| &r.add),
        med(1, |r| &r.del) - med(0, |r| &r.del)
    );
    if upstream_thin.is_some() {
        let (ours, theirs) = (
            med(1, |r| &r.add) - med(0, |r| &r.add),
            med(10, |r| &r.add) - med(0, |r| &r.add),
        );
        println!(
            "upstream Multus thin over (a): ADD {theirs:+.2} ms; ours is {:.2} of it (target: 1/8)",
            ours / theirs
        );
    }
    println!(
        "Kubernetes API path, (f) - (c): ADD {:+.2} ms, DEL {:+.2} ms; the wasm mapper, (g) - (f): ADD {:+.2} ms",
        med(3, |r| &r.add) - med(2, |r| &r.add),
        med(3, |r| &r.del) - med(2, |r| &r.del),
        med(4, |r| &r.add) - med(3, |r| &r.add)
    );
    println!(
        "thick vs thin, medians: (h) - (c) ADD {:+.2} ms, DEL {:+.2} ms; (i) - (f) ADD {:+.2} ms, DEL {:+.2} ms; (j) - (e) ADD {:+.2} ms",
        med(7, |r| &r.add) - med(2, |r| &r.add),
        med(7, |r| &r.del) - med(2, |r| &r.del),
        med(8, |r| &r.add) - med(3, |r| &r.add),
        med(8, |r| &r.del) - med(3, |r| &r.del),
        med(9, |r| &r.add) - med(6, |r| &r.add)
    );
    println!("(e) is the multus process alone: its peak RSS is multus's own; (h)-(j) count the shim only.");
    println!(
        "multus-daemon peak RSS after all thick cycles: {:.1} MiB",
        take_peak_rss(daemon.id())
    );

    // Pods started at once: thin (f) vs thick (i), the Kubernetes path.
    concurrency_table(&scenarios[3], &scenarios[8], daemon.id())?;
    let thick = Thick {
        shim: &shim,
        socket_dir: &socket_dir,
    };
    interface_table(
        &multus,
        Some(thick),
        &plugins,
        &built,
        work.path(),
        args.cycles,
    )?;
    let _ = daemon.kill();
    let _ = daemon.wait();

    ipam_table(&plugins, &multus, &wasm_conf, &data, args.calls)?;
    chained_table(&plugins, &wasm_conf, args.calls)?;
    cluster_ipam_table(&node, &multus, &wasm_conf, work.path(), kit)
}

/// Pods started at once through `thin` and `thick` (the daemon `daemon`):
/// ADD and DEL latency, and the daemon's peak RSS while they ran.
fn concurrency_table(thin: &Scenario, thick: &Scenario, daemon: u32) -> Result<()> {
    println!("\n{} at once vs {}: ADD and DEL of N pods started together (ms); the daemon's peak RSS while they ran\n", thin.name, thick.name);
    println!("| pods at once | thin ADD median | thin ADD p95 | thick ADD median | thick ADD p95 | thin DEL median | thick DEL median | daemon peak RSS MiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for concurrent in [1, 10, MAX_CONCURRENT] {
        let rounds = (60 / concurrent).max(2);
        let t = run_concurrent(thin, concurrent, rounds)?;
        take_peak_rss(daemon);
        let k = run_concurrent(thick, concurrent, rounds)?;
        let peak = take_peak_rss(daemon);
        println!(
            "| {concurrent} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {peak:.1} |",
            quantile(&t.add, 0.5),
            quantile(&t.add, 0.95),
            quantile(&k.add, 0.5),
            quantile(&k.add, 0.95),
            quantile(&t.del, 0.5),
            quantile(&k.del, 0.5),
        );
    }
    Ok(())
}

/// Where the thick rows send their calls: the shim and the daemon's
/// socket dir.
struct Thick<'a> {
    shim: &'a Path,
    socket_dir: &'a Path,
}

/// The bare-netlink limit of the three-network pod: the same link, address
/// and route operations as its ADD and DEL, issued by this process through
/// the hosts' netlink wrapper (one worker thread per namespace, as multus
/// has), with no plugin, no grant check, no IPAM and no exec.
fn bare_netlink(cycles: usize) -> Result<Samples> {
    use multus_host_functions::links::{BridgeSettings, LinksBackend, MacvlanMode, PortSettings};
    use multus_host_functions::netlink::{Kernel, LinkChange, NetlinkBackend, Ns, Route};
    use multus_host_functions::netns::PodNetns;
    let timeout = Duration::from_secs(5);
    let up = LinkChange {
        up: Some(true),
        ..Default::default()
    };
    let route = |dst: &str, gw: Option<&str>, scope: Option<u8>| -> Result<Route> {
        Ok(Route {
            dst: dst.parse()?,
            gw: gw.map(str::parse).transpose()?,
            priority: None,
            table: None,
            scope,
        })
    };
    let mut out = Samples::default();
    for i in 0..cycles {
        let pod = Netns::new("bench-pod")?;
        let started = Instant::now();
        let mut k = Kernel {
            pod: Some(PodNetns::open(&pod.path(), timeout)?),
            host: None,
            timeout,
        };
        let (pod_ip, p2p_ip) = (
            format!("10.130.0.{}/16", i % 250 + 2),
            format!("10.132.0.{}/24", i % 250 + 2),
        );
        // eth0: a port of cni1, the gateway address ensured on the bridge.
        k.bridge_ensure(
            "cni1",
            BridgeSettings {
                mtu: None,
                promisc: false,
                vlan_filtering: false,
            },
        )?;
        let host0 = format!("vethb{i:07}");
        k.veth_add("eth0", &host0, None)?;
        k.link_set(Ns::Container, "eth0", &up)?;
        k.link_set(Ns::Host, &host0, &up)?;
        let port = PortSettings {
            hairpin: false,
            drop_default_vlans: false,
            access_vlan: None,
            trunk_vlans: Vec::new(),
        };
        k.bridge_attach(&host0, "cni1", &port)?;
        k.addr_add(Ns::Container, "eth0", pod_ip.parse()?)?;
        k.route_add(
            Ns::Container,
            "eth0",
            &route("0.0.0.0/0", Some("10.130.0.1"), None)?,
        )?;
        if !k
            .addr_list(Ns::Host, "cni1")?
            .iter()
            .any(|a| a.to_string() == "10.130.0.1/16")
        {
            k.addr_add(Ns::Host, "cni1", "10.130.0.1/16".parse()?)?;
        }
        // net1: a macvlan of uplink0.
        k.macvlan_add("uplink0", MacvlanMode::Bridge, None, None, "net1")?;
        k.link_set(Ns::Container, "net1", &up)?;
        k.addr_add(
            Ns::Container,
            "net1",
            format!("10.131.0.{}/16", i % 250 + 2).parse()?,
        )?;
        // net2: a ptp pair, routes on both ends.
        let host2 = format!("vethp{i:07}");
        k.veth_add("net2", &host2, None)?;
        k.link_set(Ns::Container, "net2", &up)?;
        k.addr_add(Ns::Container, "net2", p2p_ip.parse()?)?;
        k.route_del(
            Ns::Container,
            "net2",
            &route("10.132.0.0/24", None, Some(253))?,
        )?;
        k.route_add(
            Ns::Container,
            "net2",
            &route("10.132.0.1/32", None, Some(253))?,
        )?;
        k.route_add(
            Ns::Container,
            "net2",
            &route("10.132.0.0/24", Some("10.132.0.1"), None)?,
        )?;
        k.link_set(Ns::Host, &host2, &up)?;
        k.addr_add(Ns::Host, &host2, "10.132.0.1/32".parse()?)?;
        let to_pod = format!("{}/32", p2p_ip.split('/').next().unwrap_or_default());
        k.route_add(Ns::Host, &host2, &route(&to_pod, None, Some(254))?)?;
        out.add.push(started.elapsed());
        let started = Instant::now();
        for l in ["eth0", "net1", "net2"] {
            k.link_del(l)?;
        }
        out.del.push(started.elapsed());
    }
    Ok(out)
}

/// A pod with three networks, each with host-local: eth0 on a bridge (the
/// cluster network, default gateway), net1 a macvlan, net2 a ptp pair;
/// through the built multus (thin) and through the shim and daemon (thick):
/// every plugin exec'd (the reference binaries) vs every plugin a module
/// run in-process; and the bare-netlink limit. The execs column is counted.
fn interface_table(
    multus: &Path,
    thick: Option<Thick>,
    plugins: &Path,
    built: &Path,
    work: &Path,
    cycles: usize,
) -> Result<()> {
    let nets = |dir: &str| -> Vec<Value> {
        let data = work.join(dir);
        let ipam = |subnet: &str| json!({"type": "host-local", "dataDir": data, "ranges": [[{"subnet": subnet}]]});
        vec![
            json!({"cniVersion": "1.0.0", "name": "cl", "plugins": [
                {"type": "bridge", "bridge": "cni1", "isDefaultGateway": true,
                 "ipam": ipam("10.130.0.0/16")}]}),
            json!({"cniVersion": "1.0.0", "name": "mv", "type": "macvlan", "master": "uplink0",
                   "ipam": ipam("10.131.0.0/16")}),
            json!({"cniVersion": "1.0.0", "name": "pt", "type": "ptp",
                   "ipam": ipam("10.132.0.0/16")}),
        ]
    };
    // Their own plugin dir: a module replaces the native plugin of its type
    // for every network of the node, and the other tables run the native
    // bridge and macvlan.
    let modules = work.join("interface-plugins");
    std::fs::create_dir_all(&modules)?;
    for m in ["bridge", "macvlan", "ptp", "host-local"] {
        let file = format!("{m}.wasm");
        std::fs::copy(built.join(&file), modules.join(&file))
            .with_context(|| format!("no {file} in {} (scripts/build-plugins)", built.display()))?;
    }
    let granted = json!({"hostNetns": true});
    let scenario = |name: &'static str, wasm: bool, thick: Option<&Thick>| -> Result<Scenario> {
        let mut c =
            confs::multus_delegates(&nets(name), &work.join(format!("cni-{name}")), plugins);
        if wasm {
            c["wasmPluginDir"] = json!(modules);
            c["wasmCacheDir"] = json!(work.join("interface-cache"));
            c["storeRoots"] = json!(["/var/lib/cni/networks", "/run/cni", work]);
            c["wasmPlugins"] = json!({"bridge": granted, "macvlan": granted, "ptp": granted});
        }
        let mut program = multus.to_path_buf();
        if let Some(t) = thick {
            c["type"] = "multus-shim".into();
            c["daemonSocketDir"] = json!(t.socket_dir);
            program = t.shim.to_path_buf();
        }
        Ok(Scenario {
            name,
            program,
            stdin: serde_json::to_vec(&c)?,
            direct: false,
            pod: false,
        })
    };
    let limit = bare_netlink(cycles)?;
    // Each row's execs are counted in one untimed ADD of its own, not
    // assumed.
    let measured = |s: Scenario| -> Result<(usize, Samples)> {
        Ok((count_execs(&s, plugins, work)?, run(&s, cycles)?))
    };
    let mut rows = vec![(
        "bare netlink, one process, no plugin (the limit)",
        (0, limit),
    )];
    rows.push((
        "thin: reference plugins, exec'd",
        measured(scenario("reference", false, None)?)?,
    ));
    rows.push((
        "thin: wasm bridge, macvlan, ptp, host-local, in-process",
        measured(scenario("modules", true, None)?)?,
    ));
    if let Some(t) = &thick {
        rows.push((
            "thick: reference plugins, exec'd by the daemon",
            measured(scenario("thick-reference", false, Some(t))?)?,
        ));
        rows.push((
            "thick: the modules in the daemon",
            measured(scenario("thick-modules", true, Some(t))?)?,
        ));
    }
    let rows: Vec<(&str, usize, Samples)> = rows.into_iter().map(|(p, (e, s))| (p, e, s)).collect();
    let base = (quantile(&rows[0].2.add, 0.5), quantile(&rows[0].2.del, 0.5));
    println!("\nA pod with three networks (bridge as eth0, macvlan, ptp; host-local each), {cycles} cycles (ms); over the limit = median minus the bare-netlink median\n");
    println!("| path | execs per ADD | ADD median | ADD p95 | DEL median | DEL p95 | ADD over the limit | DEL over the limit |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (path, execs, s) in &rows {
        let (add, del) = (quantile(&s.add, 0.5), quantile(&s.del, 0.5));
        println!(
            "| {path} | {execs} | {add:.2} | {:.2} | {del:.2} | {:.2} | {:+.2} | {:+.2} |",
            quantile(&s.add, 0.95),
            quantile(&s.del, 0.95),
            add - base.0,
            del - base.1,
        );
    }
    if thick.is_none() {
        println!("(the thick rows need the daemon: run without --ipam-only)");
    }
    Ok(())
}

/// Networks per pod in the cluster-IPAM table.
const ATTACHMENTS: usize = 2;

/// Where the cluster-IPAM table's pools live, and how its requests are
/// counted.
enum IpamServer {
    InProcess(FakeKubeApi),
    /// A real kube-apiserver + etcd, with whereabouts' CRDs applied; its
    /// clients use the admin's kubeconfig.
    Kit(multus_testbed::kit::Kit),
}

/// The resources whereabouts touches.
const WHEREABOUTS_KINDS: &[&str] = &["ippools", "overlappingrangeipreservations"];

impl IpamServer {
    fn label(&self) -> &'static str {
        match self {
            Self::InProcess(_) => "in-test API server",
            Self::Kit(_) => "a real kube-apiserver + etcd, the cluster kit's",
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        match self {
            Self::InProcess(api) => api.kubeconfig(),
            Self::Kit(kit) => kit.admin_kubeconfig(),
        }
    }

    /// Requests so far (whereabouts' kinds on the real one).
    fn requests(&self) -> Result<f64> {
        Ok(match self {
            Self::InProcess(api) => api.requests().len() as f64,
            Self::Kit(kit) => kit.counts(WHEREABOUTS_KINDS)?.requests,
        })
    }
}

/// Cluster-wide IPAM: pods with two whereabouts networks each (in-process
/// conflist entries, one range each) through the built multus, 1, 10 and 50
/// ADDs at once, on the in-test API server and, when the cluster kit is
/// built, on a real one: latency per ADD and DEL, the wall time of each
/// round of ADDs (what upstream's recorded figure is), API requests per
/// allocation (conflicts included); every round's addresses distinct.
fn cluster_ipam_table(
    node: &Netns,
    multus: &Path,
    wasm_conf: &WasmConf,
    work: &Path,
    kit: Option<&Path>,
) -> Result<()> {
    cluster_ipam_lane(
        &IpamServer::InProcess(FakeKubeApi::start(node, "bench-token")?),
        multus,
        wasm_conf,
        work,
    )?;
    if let Some(kit) = kit {
        let kit = multus_testbed::kit::Kit::start(kit)?;
        // kubectl wait's default bound.
        kit.apply_crds(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/whereabouts/crds.yaml"),
            &["ippools.whereabouts.cni.cncf.io"],
            "30s",
        )?;
        cluster_ipam_lane(&IpamServer::Kit(kit), multus, wasm_conf, work)?;
    }
    println!("(a conflict-free IP costs 6: GET + PUT pool and POST reservation to allocate, GET + PUT pool and DELETE reservation to free, plus a pool's first GET + POST; upstream whereabouts v0.9.4 on this machine, recorded in ../shared/fixtures/whereabouts: 20 sequential ADDs median 209 ms, 10 at once 3.1 s wall, one cluster-wide Lease)");
    Ok(())
}

fn cluster_ipam_lane(
    server: &IpamServer,
    multus: &Path,
    wasm_conf: &WasmConf,
    work: &Path,
) -> Result<()> {
    let kubeconfig = server.kubeconfig();
    let nets: Vec<Value> = (0..ATTACHMENTS)
        .map(|i| {
            json!({"cniVersion": "1.0.0", "name": format!("wa{i}"), "plugins": [
                {"type": "whereabouts", "ipam": {"type": "whereabouts",
                    "range": format!("10.{}.0.0/16", 100 + i),
                    "kubernetes": {"kubeconfig": kubeconfig}}}]})
        })
        .collect();
    let mut conf = confs::multus_delegates(&nets, &work.join("multus-wa"), &reference_plugin_dir());
    conf["wasmPluginDir"] = json!(wasm_conf.plugin_dir);
    conf["wasmCacheDir"] = json!(wasm_conf.cache_dir);
    conf["storeRoots"] = json!(wasm_conf.bounds.store_roots);
    conf["kubeconfigAllowlist"] = json!([kubeconfig]);
    conf["wasmPlugins"] = json!({"whereabouts": {"timeoutMs": 60000, "hostCallTimeoutMs": 10000}});
    let s = Scenario {
        name: "whereabouts",
        program: multus.to_path_buf(),
        stdin: serde_json::to_vec(&conf)?,
        direct: false,
        pod: true,
    };
    println!(
        "\nCluster-wide IPAM (wasm whereabouts, {ATTACHMENTS} networks per pod, {}), ms\n",
        server.label()
    );
    println!("| ADDs at once | pods | ADD median | ADD p95 | a round's ADDs, wall | DEL median | DEL p95 | API requests per IP (allocate + free) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (concurrent, rounds) in [(1, 20), (10, 3), (50, 1)] {
        let before = server.requests()?;
        let samples = run_concurrent(&s, concurrent, rounds)?;
        let requests = server.requests()? - before;
        let allocations = concurrent * rounds * ATTACHMENTS;
        for round in &samples.addresses {
            let distinct: std::collections::BTreeSet<&String> = round.iter().collect();
            if distinct.len() != round.len() {
                bail!("whereabouts gave an address twice at {concurrent} at once: {round:?}");
            }
        }
        println!(
            "| {concurrent} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            concurrent * rounds,
            quantile(&samples.add, 0.5),
            quantile(&samples.add, 0.95),
            quantile(&samples.add_walls, 0.5),
            quantile(&samples.del, 0.5),
            quantile(&samples.del, 0.95),
            requests / allocations as f64,
        );
    }
    Ok(())
}

/// Chained plugins on a pod's net1 (10.60.0.5/24, gateway 10.60.0.1, a
/// route via it), for real in a netns: the reference sbr exec'd vs the wasm
/// sbr in-process, and the wasm route-override (no reference binary is
/// packaged). Each ADD starts from the same net1, restored untimed.
fn chained_table(plugins: &Path, wasm_conf: &WasmConf, calls: usize) -> Result<()> {
    let pod = Netns::new("bench-chained")?;
    let netns = pod.path();
    let netns = netns.to_str().context("netns path")?;
    pod.ip(&[
        "link", "add", "net1", "type", "veth", "peer", "name", "net1p",
    ])?;
    pod.ip(&["link", "set", "net1p", "up"])?;
    let reset = || -> Result<()> {
        pod.ip(&["rule", "flush"])?;
        pod.ip(&[
            "rule", "add", "from", "all", "lookup", "main", "pref", "32766",
        ])?;
        pod.ip(&[
            "rule", "add", "from", "all", "lookup", "default", "pref", "32767",
        ])?;
        pod.ip(&["route", "flush", "table", "100"]).ok();
        pod.ip(&["addr", "flush", "dev", "net1"])?;
        pod.ip(&["link", "set", "net1", "down"])?;
        pod.ip(&["addr", "add", "10.60.0.5/24", "dev", "net1"])?;
        pod.ip(&["link", "set", "net1", "up"])?;
        pod.ip(&[
            "route",
            "add",
            "10.61.0.0/16",
            "via",
            "10.60.0.1",
            "dev",
            "net1",
        ])?;
        Ok(())
    };
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "net1", "sandbox": netns}],
        "ips": [{"address": "10.60.0.5/24", "gateway": "10.60.0.1", "interface": 0}]});
    let stdin = |plugin: Value| -> Result<Vec<u8>> {
        let mut conf = plugin;
        conf["cniVersion"] = json!("1.0.0");
        conf["name"] = json!("chained-bench");
        conf["prevResult"] = prev.clone();
        Ok(serde_json::to_vec(&conf)?)
    };
    let sbr = stdin(json!({"type": "sbr"}))?;
    let route_override = stdin(json!({"type": "route-override", "flushgateway": true,
        "addroutes": [{"dst": "10.70.0.0/16", "gw": "prevResult"}]}))?;
    let in_process = |plugin: &str, stdin: &[u8], i: usize| -> Result<Duration> {
        let cid = format!("chained{i}");
        let call = PluginCall {
            plugin_type: &PluginType::parse(plugin, "type")?,
            command: CniCommand::Add,
            container_id: &cid,
            netns,
            ifname: "net1",
            known_prev: Some(&prev),
            cni_args: "IgnoreUnknown=1",
            path: &[],
            extra_env: &[],
            stdin,
        };
        let module = wasm_conf
            .module(&PluginType::parse(plugin, "type")?)
            .context("module")?;
        let start = Instant::now();
        wasm::run(wasm_conf, Role::Chained, &module, &call)
            .map_err(|e| anyhow::anyhow!("wasm {plugin}: {e}"))?;
        Ok(start.elapsed())
    };
    let (mut sbr_ref, mut sbr_wasm, mut ro_wasm) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..calls {
        reset()?;
        let cid = format!("sbr{i}");
        let mut env = cni_env("ADD", &cid, netns).to_vec();
        env[3].1 = "net1";
        let r = exec(&plugins.join("sbr"), &env, &sbr)?;
        if !r.ok {
            bail!(
                "reference sbr failed: {}",
                String::from_utf8_lossy(&r.stdout)
            );
        }
        sbr_ref.push(r.took);
        reset()?;
        sbr_wasm.push(in_process("sbr", &sbr, i)?);
        reset()?;
        ro_wasm.push(in_process("route-override", &route_override, i)?);
    }
    println!("\nChained ADD on a pod's net1, real netns, {calls} calls each (ms)\n");
    println!("| path | median | p95 |");
    println!("|---|---:|---:|");
    for (path, samples) in [
        ("reference sbr, exec'd", &sbr_ref),
        ("wasm sbr, in-process warm call", &sbr_wasm),
        ("wasm route-override, in-process warm call", &ro_wasm),
    ] {
        println!(
            "| {path} | {:.3} | {:.3} |",
            quantile(samples, 0.5),
            quantile(samples, 0.95)
        );
    }
    Ok(())
}

/// The IPAM call alone: reference exec vs wasm (exec'd through the shim,
/// and in-process warm), cold compile vs warm load, and a warm call's split.
fn ipam_table(
    plugins: &Path,
    multus: &Path,
    wasm_conf: &WasmConf,
    data: &Path,
    calls: usize,
) -> Result<()> {
    let conf = json!({"cniVersion": "1.0.0", "name": "ipam-bench", "type": "bridge",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.20.0.0/16"}]], "dataDir": data}});
    let stdin = serde_json::to_vec(&conf)?;
    // The reference keeps its own store, as a node runs one host-local or
    // the other for a network. Sharing one, each wasm call after a reference
    // exec removed the marker file the reference had just rewritten in
    // place, whose close had started its writeback (ext4's auto_da_alloc):
    // the removal waited for that write, ~0.3 ms no node pays.
    let mut reference_conf = conf.clone();
    reference_conf["ipam"]["dataDir"] = json!(data.join("reference"));
    let reference_stdin = serde_json::to_vec(&reference_conf)?;
    let shim_dir =
        multus::shim::prepare(wasm_conf, &PluginType::parse("host-local", "type")?, multus)
            .map_err(|e| anyhow::anyhow!(e.msg))?;
    let shim_env = multus::shim::env(wasm_conf);
    let exec_pair = |program: &Path,
                     stdin: &[u8],
                     extra: &[(String, String)],
                     i: usize|
     -> Result<(Duration, Duration)> {
        let cid = format!("ipam{i}");
        let mut env: Vec<(&str, &str)> = cni_env("ADD", &cid, "/run/netns/none").to_vec();
        env.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let add = exec(program, &env, stdin)?;
        env[0].1 = "DEL";
        let del = exec(program, &env, stdin)?;
        if !add.ok || !del.ok {
            bail!(
                "{} failed: {}",
                program.display(),
                String::from_utf8_lossy(&add.stdout)
            );
        }
        Ok((add.took, del.took))
    };
    // The same module pinned by its digest, as a WasmPlugin object's grants
    // pin it: checked against the digest indexed with the file's stamp.
    let mut pinned_conf = wasm_conf.clone();
    let host_local = wasm_conf
        .module(&PluginType::parse("host-local", "type")?)
        .context("module")?;
    pinned_conf.plugins.insert(
        "host-local".into(),
        multus::config::wasm::PluginSettings {
            sha256: Some(multus_testbed::sha256_file(&host_local)?),
            ..Default::default()
        },
    );
    let run_in = |wasm_conf: &WasmConf,
                  plugin: &str,
                  stdin: &[u8],
                  i: usize,
                  cmd: CniCommand|
     -> Result<Timings> {
        let cid = format!("inproc{i}");
        let call = PluginCall {
            plugin_type: &PluginType::parse(plugin, "type")?,
            command: cmd,
            container_id: &cid,
            netns: "",
            ifname: "eth0",
            known_prev: None,
            cni_args: "IgnoreUnknown=1",
            path: &[],
            extra_env: &[],
            stdin,
        };
        let module = wasm_conf
            .module(&PluginType::parse(plugin, "type")?)
            .context("module")?;
        let (_, t) = wasm::run(wasm_conf, Role::Ipam, &module, &call)
            .map_err(|e| anyhow::anyhow!(e.to_string()))?;
        Ok(t)
    };
    let run_module = |plugin: &str, stdin: &[u8], i: usize, cmd: CniCommand| {
        run_in(wasm_conf, plugin, stdin, i, cmd)
    };
    let in_process = |i: usize, cmd: CniCommand| run_module("host-local", &stdin, i, cmd);

    // Cold: no artifact cached yet in a fresh cache dir.
    let cold_conf = WasmConf {
        cache_dir: wasm_conf.cache_dir.join("cold"),
        ..wasm_conf.clone()
    };
    let cold_call = PluginCall {
        plugin_type: &PluginType::parse("host-local", "type")?,
        command: CniCommand::Status,
        container_id: "cold",
        netns: "",
        ifname: "eth0",
        known_prev: None,
        cni_args: "",
        path: &[],
        extra_env: &[],
        stdin: &stdin,
    };
    let module = wasm_conf
        .module(&PluginType::parse("host-local", "type")?)
        .context("module")?;
    let (_, cold) = wasm::run(&cold_conf, Role::Ipam, &module, &cold_call)
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let (_, warm) = wasm::run(&cold_conf, Role::Ipam, &module, &cold_call)
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;

    let status: Vec<Duration> = (0..calls)
        .map(|i| in_process(i, CniCommand::Status).map(|t| t.call))
        .collect::<Result<_>>()?;
    let mut reference = Vec::new();
    let mut shimmed = Vec::new();
    let mut inproc: Vec<Timings> = Vec::new();
    let mut pinned: Vec<Timings> = Vec::new();
    // Each in-process call right after an exec, as a daemon's call comes
    // after other processes ran (a call right after another is faster:
    // its caches are warm).
    for i in 0..calls {
        reference.push(exec_pair(&plugins.join("host-local"), &reference_stdin, &[], i)?.0);
        inproc.push(in_process(i, CniCommand::Add)?);
        in_process(i, CniCommand::Del)?;
        shimmed.push(exec_pair(&shim_dir.join("host-local"), &stdin, &shim_env, i)?.0);
        pinned.push(run_in(
            &pinned_conf,
            "host-local",
            &stdin,
            i,
            CniCommand::Add,
        )?);
        run_in(&pinned_conf, "host-local", &stdin, i, CniCommand::Del)?;
    }
    let total = |t: &Timings| t.engine + t.load + t.instantiate + t.call;
    let inproc_total: Vec<Duration> = inproc.iter().map(total).collect();
    let pinned_total: Vec<Duration> = pinned.iter().map(total).collect();
    // static: the reference exec'd vs the wasm one in-process.
    let static_stdin = serde_json::to_vec(&json!({"cniVersion": "1.0.0", "name": "static-bench",
        "type": "bridge", "ipam": {"type": "static",
            "addresses": [{"address": "10.21.0.5/24", "gateway": "10.21.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}]}}))?;
    let mut static_ref = Vec::new();
    let mut static_wasm = Vec::new();
    for i in 0..calls {
        let cid = format!("static{i}");
        let r = exec(
            &plugins.join("static"),
            &cni_env("ADD", &cid, "/run/netns/none"),
            &static_stdin,
        )?;
        if !r.ok {
            bail!(
                "reference static failed: {}",
                String::from_utf8_lossy(&r.stdout)
            );
        }
        static_ref.push(r.took);
        static_wasm.push(total(&run_module(
            "static",
            &static_stdin,
            i,
            CniCommand::Add,
        )?));
    }
    let part =
        |f: fn(&Timings) -> Duration| quantile(&inproc.iter().map(f).collect::<Vec<_>>(), 0.5);
    println!("\nIPAM ADD alone, {calls} calls each (ms)\n");
    println!("| path | median | p95 |");
    println!("|---|---:|---:|");
    for (path, samples) in [
        ("reference host-local, exec'd", &reference),
        ("wasm host-local, exec'd through the multus shim", &shimmed),
        ("wasm host-local, in-process warm call", &inproc_total),
        (
            "wasm host-local pinned by sha256, in-process warm call",
            &pinned_total,
        ),
        ("reference static, exec'd", &static_ref),
        ("wasm static, in-process warm call", &static_wasm),
    ] {
        println!(
            "| {path} | {:.3} | {:.3} |",
            quantile(samples, 0.5),
            quantile(samples, 0.95)
        );
    }
    println!(
        "\nwarm in-process call / reference exec: {:.3}, pinned {:.3} (target < 0.1)",
        quantile(&inproc_total, 0.5) / quantile(&reference, 0.5),
        quantile(&pinned_total, 0.5) / quantile(&reference, 0.5)
    );
    println!("\ncold vs warm (ms): first call compiles {:.1} (load {:.1}), precompiled call {:.3} (load {:.3})",
        ms(total(&cold)), ms(cold.load), ms(total(&warm)), ms(warm.load));
    println!("\nwarm call split, medians (ms): engine {:.3}, deserialize {:.3}, instantiate {:.3}, call (incl. store I/O) {:.3}",
        part(|t| t.engine), part(|t| t.load), part(|t| t.instantiate), part(|t| t.call));
    println!(
        "(a STATUS call, which only opens and locks the store: {:.3})",
        quantile(&status, 0.5)
    );
    Ok(())
}

/// A fake host root with a kindnet-like master and a service account.
fn fake_root(dir: &Path) -> Result<()> {
    let net_d = dir.join("root/etc/cni/net.d");
    std::fs::create_dir_all(&net_d)?;
    std::fs::create_dir_all(dir.join("sa"))?;
    std::fs::write(dir.join("sa/token"), "bench-token")?;
    std::fs::write(dir.join("sa/ca.crt"), "-----BEGIN CERTIFICATE-----\n")?;
    let master = json!({"cniVersion": "1.0.0", "name": "kindnet", "plugins": [
        {"type": "ptp", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]]}},
        {"type": "portmap", "capabilities": {"portMappings": true}}]});
    std::fs::write(
        net_d.join("10-kindnet.conflist"),
        serde_json::to_vec(&master)?,
    )?;
    Ok(())
}

/// `multusctl install --once` on fresh fake roots (without and with the
/// precompile) and again on an installed one (a restart), then the sizes
/// of what is shipped.
fn install_table(
    here: &Path,
    multus: &Path,
    built: &Path,
    runs: usize,
    image: Option<&Path>,
) -> Result<()> {
    let multusctl = here.join("multusctl");
    let plugins = tempfile::tempdir()?;
    for &p in SHIPPED_PLUGINS {
        std::fs::copy(
            built.join(format!("{p}.wasm")),
            plugins.path().join(format!("{p}.wasm")),
        )
        .with_context(|| format!("{p}.wasm in {}", built.display()))?;
    }
    let install = |dir: &Path, extra: &[&str]| -> Result<Exec> {
        let root = dir.join("root");
        let mut args: Vec<String> = vec!["install".into(), "--once".into()];
        for (k, v) in [
            ("--host-root", root.display().to_string()),
            ("--multus-bin", multus.display().to_string()),
            ("--plugins", plugins.path().display().to_string()),
            ("--serviceaccount-dir", dir.join("sa").display().to_string()),
            ("--master-wait", "5s".into()),
        ] {
            args.push(k.into());
            args.push(v);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let e = exec_with_args(
            &multusctl,
            &args,
            &[
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
                ("KUBERNETES_SERVICE_PORT", "443"),
            ],
            b"",
        )?;
        if !e.ok {
            bail!("multusctl install {args:?} failed");
        }
        Ok(e)
    };
    let mut rows: Vec<(&str, Vec<Duration>, i64)> = Vec::new();
    for (name, extra, fresh) in [
        (
            "fresh root, --skip-precompile",
            &["--skip-precompile"][..],
            true,
        ),
        (
            "fresh root, precompile the 6 shipped plugins",
            &[][..],
            true,
        ),
        ("installed root (restart: nothing to do)", &[][..], false),
    ] {
        let settled = tempfile::tempdir()?;
        fake_root(settled.path())?;
        install(settled.path(), &[])?;
        let mut took = Vec::new();
        let mut rss = 0;
        for _ in 0..runs {
            let fresh_dir = tempfile::tempdir()?;
            let dir = if fresh {
                fake_root(fresh_dir.path())?;
                fresh_dir.path()
            } else {
                settled.path()
            };
            let e = install(dir, extra)?;
            took.push(e.took);
            rss = rss.max(e.max_rss_kib);
        }
        rows.push((name, took, rss));
    }
    println!("\n`multusctl install --once`, {runs} runs each (ms); peak RSS\n");
    println!("| scenario | median | p95 | peak RSS MiB |");
    println!("|---|---:|---:|---:|");
    for (name, took, rss) in &rows {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            quantile(took, 0.5),
            quantile(took, 0.95),
            *rss as f64 / 1024.0
        );
    }
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / (1024.0 * 1024.0))
            .unwrap_or(f64::NAN)
    };
    println!("\n| artifact | MiB |\n|---|---:|");
    println!("| multus (CNI hot path) | {:.2} |", size(multus));
    println!("| multusctl | {:.2} |", size(&multusctl));
    for &p in SHIPPED_PLUGINS {
        println!(
            "| {p}.wasm | {:.3} |",
            size(&built.join(format!("{p}.wasm")))
        );
    }
    if let Some(image) = image {
        println!("| image ({}) | {:.2} |", image.display(), size(image));
    }
    Ok(())
}

/// What one exec costs: VERSION of multus (and an earlier build), of a
/// reference Go plugin, and of `true` (the fork+exec floor).
fn exec_table(multus: &Path, before: Option<&Path>, calls: usize) -> Result<()> {
    let reference = reference_plugin_dir().join("host-local");
    let truth = PathBuf::from("/bin/true");
    let mut rows: Vec<(String, &Path)> = vec![(format!("multus ({})", multus.display()), multus)];
    if let Some(b) = before {
        rows.push((format!("multus before ({})", b.display()), b));
    }
    rows.push(("reference host-local (Go)".into(), &reference));
    rows.push(("/bin/true".into(), &truth));
    println!("\nVERSION exec, {calls} calls each (ms)\n");
    println!("| binary | MiB | median | p95 | peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|");
    for (name, program) in rows {
        let mut took = Vec::with_capacity(calls);
        let mut rss = 0;
        for _ in 0..calls {
            let e = exec(program, &[("CNI_COMMAND", "VERSION")], b"")?;
            if !e.ok {
                bail!("{name} VERSION failed");
            }
            took.push(e.took);
            rss = rss.max(e.max_rss_kib);
        }
        let mib = std::fs::metadata(program)?.len() as f64 / (1024.0 * 1024.0);
        println!(
            "| {name} | {mib:.2} | {:.3} | {:.3} | {:.1} |",
            quantile(&took, 0.5),
            quantile(&took, 0.95),
            rss as f64 / 1024.0
        );
    }
    Ok(())
}
