//! `multus-daemon` and `multus-shim` end to end in real network namespaces
//! with the reference plugins: requests through the shim, a request shaped
//! as upstream's shim sends it, DEL with the daemon down (the shim's own),
//! ADD with the daemon down (code 11, nothing built), a 200-pod burst over
//! the connection limit, a queue timeout, a request past its deadline,
//! SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::ClusterRole;
use multus_testbed::node::{assert_cni_error, bytes, plugins, pod_env, Node, Pod};
use multus_testbed::{confs, exec_cni, in_netns, manifests};
use multus_thick::{client, protocol};
use serde_json::{json, Value};

const DAEMON: &str = env!("CARGO_BIN_EXE_multus-daemon");
const SHIM: &str = env!("CARGO_BIN_EXE_multus-shim");
/// The tests' bound on one request to the daemon.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

struct Daemon {
    child: Option<Child>,
    socket: PathBuf,
}

impl Daemon {
    /// Starts the daemon in `node`'s netns (where its delegates act).
    fn start(node: &Node, config: &Value) -> Self {
        Self::start_with(node, config, &[])
    }

    fn start_with(node: &Node, config: &Value, env: &[(&str, &str)]) -> Self {
        Self::spawn(node, config, env, |_| {})
    }

    /// As `start`, with `setup` applied to the command before it runs.
    fn spawn(
        node: &Node,
        config: &Value,
        env: &[(&str, &str)],
        setup: impl FnOnce(&mut Command),
    ) -> Self {
        let dir = node.dir.path();
        let path = dir.join("daemon-config.json");
        // The daemon warms its config's wasm dirs at start and puts them
        // over every shim conf: the node's, never the machine's.
        let config = match config.get("wasmPluginDir") {
            Some(_) => config.clone(),
            None => node.with_wasm_dirs(config.clone()),
        };
        std::fs::write(&path, bytes(&config)).unwrap();
        let mut c = Command::new(DAEMON);
        c.arg("-config")
            .arg(&path)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap());
        let _ns = in_netns(&mut c, &node.ns).unwrap();
        setup(&mut c);
        let child = c.spawn().unwrap();
        let socket = Path::new(config["socketDir"].as_str().unwrap()).join("multus.sock");
        let d = Self {
            child: Some(child),
            socket,
        };
        let until = Instant::now() + Duration::from_secs(30);
        while !d.get("/readyz").is_ok_and(|c| c == 200) {
            assert!(
                Instant::now() < until,
                "daemon not ready: {}",
                std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn get(&self, path: &str) -> std::io::Result<u16> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(client::call(
            &self.socket,
            "GET",
            path,
            Vec::new(),
            CALL_TIMEOUT,
        ))
        .map(|(c, _)| c)
    }

    /// The daemon's peak RSS so far (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> f64 {
        multus_testbed::peak_rss_mib(self.child.as_ref().unwrap().id()).unwrap()
    }

    fn signal(&mut self, sig: i32) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        // SAFETY: a plain signal to our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        child.wait().unwrap().code()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The shim conf: a multus conf (what the shim's own DEL needs) of type
/// `multus-shim`, pointing at the daemon's socket.
fn shim_conf(node: &Node, socket_dir: &Path) -> Value {
    let mut conf = confs::multus_delegates(
        &[confs::bridge_host_local(
            "cluster",
            "cni0",
            "10.31.0.0/24",
            &node.data_dir(),
        )],
        &node.cni_dir(),
        &plugins(),
    );
    conf["type"] = "multus-shim".into();
    conf["daemonSocketDir"] = json!(socket_dir);
    conf["daemonReadyTimeoutMs"] = 1500.into();
    conf
}

fn shim(node: &Node, cmd: &str, cid: &str, pod: &Pod, conf: &Value) -> multus_testbed::CniOutput {
    exec_cni(
        Path::new(SHIM),
        Some(&node.ns),
        &pod_env(cmd, cid, &pod.path),
        &bytes(conf),
    )
    .unwrap()
}

fn assert_clean(node: &Node, pod: &Pod) {
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    assert!(
        node.reservations("cluster").is_empty(),
        "{:?}",
        node.reservations("cluster")
    );
    assert!(node.cache_files().is_empty(), "{:?}", node.cache_files());
    assert!(node.veths().is_empty(), "{:?}", node.veths());
}

#[test]
fn through_the_shim_and_alone_when_the_daemon_is_down() {
    let node = Node::new();
    let socket_dir = node.dir.path().join("run-multus");
    let config = json!({"socketDir": socket_dir, "connectionLimit": 4, "logLevel": "debug"});
    let mut daemon = Daemon::start(&node, &config);
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(&socket_dir), 0o700);
    assert_eq!(mode(&daemon.socket), 0o600);
    let conf = shim_conf(&node, &socket_dir);

    // ADD, CHECK, DEL through the shim.
    let pod = Pod::new();
    let add = shim(&node, "ADD", "t1", &pod, &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert_eq!(add.json()["ips"][0]["address"], "10.31.0.2/24");
    assert_eq!(pod.ns.addrs("eth0").unwrap(), ["10.31.0.2/24"]);
    let check = shim(&node, "CHECK", "t1", &pod, &conf);
    assert!(
        check.ok() && check.stdout.is_empty(),
        "{} {}",
        check.stdout,
        check.stderr
    );
    let del = shim(&node, "DEL", "t1", &pod, &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert_clean(&node, &pod);

    // A request exactly as upstream's shim sends it (config as base64 of
    // the stdin bytes); a delegate error comes back as a 400 CNI error.
    let pod2 = Pod::new();
    let env: std::collections::BTreeMap<String, String> = pod_env("ADD", "t2", &pod2.path)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let raw = serde_json::to_vec(&json!({"env": env, "config": base64_of(&bytes(&conf))})).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (code, body) = rt
        .block_on(client::call(
            &daemon.socket,
            "POST",
            "/cni",
            raw,
            CALL_TIMEOUT,
        ))
        .unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let r: protocol::Response = serde_json::from_slice(&body).unwrap();
    // host-local hands out the next address after the last one it gave.
    assert_eq!(r.result["ips"][0]["address"], "10.31.0.3/24");
    let mut broken = conf.clone();
    broken["delegates"][0]["plugins"][0]["type"] = "no-such-plugin".into();
    let bad = shim(&node, "ADD", "t3", &Pod::new(), &broken);
    let msg = assert_cni_error(&bad, 7);
    assert!(msg.contains("no-such-plugin"), "{msg}");

    // The daemon dies: the shim's DEL runs the thin multus itself.
    assert_eq!(daemon.signal(libc::SIGKILL), None);
    let del = shim(&node, "DEL", "t2", &pod2, &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert!(del.stderr.contains("running DEL with"), "{}", del.stderr);
    assert_clean(&node, &pod2);

    // ADD with the daemon down: try again later, nothing built.
    let pod3 = Pod::new();
    let add = shim(&node, "ADD", "t4", &pod3, &conf);
    let msg = assert_cni_error(&add, 11);
    assert!(msg.contains("not ready after 1500 ms"), "{msg}");
    assert_clean(&node, &pod3);

    // Restarted (a stale socket replaced), then SIGTERM ends it cleanly.
    let mut daemon = Daemon::start(&node, &config);
    let add = shim(&node, "ADD", "t5", &pod3, &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert!(shim(&node, "DEL", "t5", &pod3, &conf).ok());
    assert_clean(&node, &pod3);
    assert_eq!(daemon.signal(libc::SIGTERM), Some(0));
}

/// Peak RSS the daemon stays under through a 200-pod burst (docs/thick-mode.md; the DaemonSet's memory request is sized from it).
const BURST_RSS_BOUND_MIB: f64 = 48.0;

/// A node rebooting with 200 pods: 200 ADDs at once against
/// `connectionLimit` 8. Each succeeds or is refused with code 11 and then
/// succeeds when retried (as the kubelet retries), so all 200 get their
/// network; no IP is handed out twice, the daemon's memory stays bounded,
/// and the DELs leave nothing.
#[test]
fn a_burst_of_200_pods_is_bounded() {
    let node = Node::new();
    let socket_dir = node.dir.path().join("run-multus");
    let daemon = Daemon::start(
        &node,
        &json!({"socketDir": socket_dir, "connectionLimit": 8, "queueTimeoutMs": 20000}),
    );
    let mut conf = shim_conf(&node, &socket_dir);
    conf["delegates"][0]["plugins"][0]["ipam"]["ranges"] = json!([[{"subnet": "10.35.0.0/16"}]]);
    let pods: Vec<Pod> = (0..200).map(|_| Pod::new()).collect();
    // Every pod must end up with its network: one refused with code 11 is
    // retried, as the kubelet does, and must then succeed.
    let mut ips = Vec::new();
    let mut refused = 0;
    let mut pending: Vec<usize> = (0..pods.len()).collect();
    for _round in 0..5 {
        if pending.is_empty() {
            break;
        }
        let outs: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = pending
                .iter()
                .map(|&i| {
                    let (node, conf, pod) = (&node, &conf, &pods[i]);
                    s.spawn(move || (i, shim(node, "ADD", &format!("burst{i}"), pod, conf)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        pending.clear();
        for (i, o) in outs {
            if o.ok() {
                ips.push(o.json()["ips"][0]["address"].as_str().unwrap().to_string());
            } else {
                assert_cni_error(&o, 11);
                refused += 1;
                assert_eq!(
                    pods[i].ns.links().unwrap(),
                    ["lo"],
                    "a refused ADD built nothing"
                );
                pending.push(i);
            }
        }
    }
    assert!(
        pending.is_empty(),
        "{} pods never got their network",
        pending.len()
    );
    let added = ips.len();
    assert_eq!(added, pods.len());
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), added, "no IP handed out twice");
    let peak = daemon.peak_rss_mib();
    assert!(
        peak < BURST_RSS_BOUND_MIB,
        "daemon peak RSS {peak:.1} MiB over {BURST_RSS_BOUND_MIB} MiB"
    );
    eprintln!(
        "burst: {added} added, {refused} refusals (code 11) retried, daemon peak RSS {peak:.1} MiB"
    );
    for (i, pod) in pods.iter().enumerate() {
        let del = shim(&node, "DEL", &format!("burst{i}"), pod, &conf);
        assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    }
    assert!(node.reservations("cluster").is_empty());
    assert!(node.cache_files().is_empty());
    assert!(node.veths().is_empty(), "{:?}", node.veths());
}

/// A request that waits longer than `queueTimeoutMs` for its turn gets
/// code 11 and runs nothing. A plugin that holds the only slot until the
/// test releases it makes the wait certain.
#[test]
fn a_request_that_waits_too_long_gets_code_11() {
    use std::os::unix::fs::PermissionsExt;
    let node = Node::new();
    let bin = node.dir.path().join("slow-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let gate = node.dir.path().join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    let plugin = bin.join("slow");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\ncat >/dev/null\ntouch {g}/started-$CNI_CONTAINERID\nwhile [ ! -e {g}/release ]; do sleep 0.02; done\necho '{{\"cniVersion\":\"1.0.0\"}}'\n",
            g = gate.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket_dir = node.dir.path().join("run-multus");
    let _daemon = Daemon::start(
        &node,
        &json!({"socketDir": socket_dir, "connectionLimit": 1, "queueTimeoutMs": 200}),
    );
    let mut conf = confs::multus_delegates(
        &[json!({"cniVersion": "1.0.0", "name": "slow", "type": "slow"})],
        &node.cni_dir(),
        &bin,
    );
    conf["type"] = "multus-shim".into();
    conf["daemonSocketDir"] = json!(socket_dir);
    let (first, second) = (Pod::new(), Pod::new());
    std::thread::scope(|s| {
        let holder = s.spawn(|| shim(&node, "ADD", "q1", &first, &conf));
        while !gate.join("started-q1").exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let refused = shim(&node, "ADD", "q2", &second, &conf);
        let ran = gate.join("started-q2").exists();
        // A retry for the running container waits for its turn, bounded
        // the same way (it waited for ever).
        let again = shim(&node, "ADD", "q1", &first, &conf);
        // Released before asserting, so a failure cannot hang the holder.
        std::fs::write(gate.join("release"), "").unwrap();
        let e = assert_cni_error(&refused, 11);
        assert!(e.contains("busy") && e.contains("200 ms"), "{e}");
        let e = assert_cni_error(&again, 11);
        assert!(
            e.contains("container q1") && e.contains("still running after 200 ms"),
            "{e}"
        );
        assert!(!ran, "the refused ADD ran nothing");
        let held = holder.join().unwrap();
        assert!(held.ok(), "{} {}", held.stdout, held.stderr);
    });
    for (cid, pod) in [("q1", &first), ("q2", &second)] {
        let del = shim(&node, "DEL", cid, pod, &conf);
        assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    }
    assert!(node.cache_files().is_empty());
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The daemon writes network-status right after answering: wait for it.
fn status_soon(api: &multus_testbed::kube_api::FakeKubeApi, name: &str) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = api.annotation("default", name, "k8s.v1.cni.cncf.io/network-status") {
            return s;
        }
        assert!(Instant::now() < until, "no network-status on {name}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The Kubernetes path through the daemon: the pod's annotation selects a
/// NAD (net1), network-status is written, and the daemon config's keys
/// (here the kubeconfig) override the shim's conf.
#[test]
fn pod_networks_from_the_api_through_the_daemon() {
    let node = Node::new();
    let api = api_with_web_on_macvlan(&node, "token-1", "10.32.0.0/24");
    let socket_dir = node.dir.path().join("run-multus");
    let _daemon = Daemon::start(
        &node,
        &json!({"socketDir": socket_dir, "kubeconfig": api.kubeconfig()}),
    );
    let conf = shim_conf(&node, &socket_dir);
    let pod = Pod::new();
    let add = shim(&node, "ADD", "k1", &pod, &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert!(pod.ns.addrs("net1").unwrap()[0].starts_with("10.32.0."));
    let status = status_soon(&api, "web");
    assert!(
        status.contains("default/macvlan-net") && status.contains("\"net1\""),
        "{status}"
    );
    let del = shim(&node, "DEL", "k1", &pod, &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert_clean(&node, &pod);
    assert!(node.reservations("macvlan-net").is_empty());
    // Every line the requests logged names the pod and the container.
    let log = std::fs::read_to_string(node.dir.path().join("daemon.log")).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("delegate ok") || l.contains(" request "))
        .collect();
    assert!(lines.len() >= 4, "{log}");
    for l in lines {
        assert!(
            l.contains("pod=default/web") && l.contains("container=k1"),
            "{l}"
        );
    }
}

/// Runs the command in a mount namespace of its own (a slave of the
/// host's) with each `(from, to)` bind-mounted; the mounts go with the
/// process.
fn with_mounts(c: &mut Command, binds: &[(PathBuf, PathBuf)]) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let c_path = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
    let binds: Vec<(CString, CString)> = binds
        .iter()
        .map(|(from, to)| (c_path(from), c_path(to)))
        .collect();
    // SAFETY: unshare(2) and mount(2) on strings made before the fork.
    unsafe {
        c.pre_exec(move || {
            let ok = |r: i32| {
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            ok(libc::unshare(libc::CLONE_NEWNS))?;
            ok(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ))?;
            for (from, to) in &binds {
                ok(libc::mount(
                    from.as_ptr(),
                    to.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
            }
            Ok(())
        });
    }
}

/// `root` (a host root, as the DaemonSet mounts the node's `/` at
/// `/hostroot`) with the host's `/proc` and `/run/netns`.
fn with_host_root(c: &mut Command, root: &Path) {
    let binds: Vec<(PathBuf, PathBuf)> = ["proc", "run/netns"]
        .iter()
        .map(|d| (Path::new("/").join(d), root.join(d)))
        .collect();
    with_mounts(c, &binds);
}

/// Directories a test made on the host, removed (when empty) on drop.
struct MadeDirs(Vec<PathBuf>);

impl MadeDirs {
    fn create(path: &Path) -> Self {
        let mut made = Vec::new();
        let mut p = path.to_path_buf();
        while !p.exists() {
            made.push(p.clone());
            p = p.parent().unwrap().to_path_buf();
        }
        std::fs::create_dir_all(path).unwrap();
        Self(made)
    }
}

impl Drop for MadeDirs {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// In a pod, with no kubeconfig anywhere: the daemon finds the API server
/// from `KUBERNETES_SERVICE_HOST`/`_PORT` and authenticates with the
/// service account's token and CA at their standard path.
#[test]
fn in_cluster_credentials() {
    let node = Node::new();
    node.install_wasm(&["whereabouts"]);
    let api = api_with_web_on_macvlan(&node, "sa-token", "10.36.0.0/24");
    // And a whereabouts network: its module's cluster calls use the same
    // in-cluster credentials (issue 20's real node: they had none, and
    // every DEL in thick mode failed "no kubeconfig for cluster calls").
    let wa = json!({"cniVersion": "1.0.0", "name": "wa-net", "type": "bridge", "bridge": "wa0",
        "ipam": {"type": "whereabouts", "range": "10.37.0.0/24"}});
    api.add_nad("default", "wa-net", Some(&wa.to_string()), &[]);
    api.add_pod(
        "default",
        "web",
        "uid-web",
        &[("k8s.v1.cni.cncf.io/networks", "macvlan-net,wa-net")],
        &[],
    );
    let sa = node.dir.path().join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), "sa-token").unwrap();
    std::fs::write(sa.join("namespace"), "kube-system").unwrap();
    std::fs::copy(api.dir.path().join("ca.crt"), sa.join("ca.crt")).unwrap();
    // The standard path, as the kubelet mounts it; /var/run is /run.
    let standard = Path::new("/run/secrets/kubernetes.io/serviceaccount");
    let _made = MadeDirs::create(standard);
    let socket_dir = node.dir.path().join("run-multus");
    let port = api.addr.port().to_string();
    let _daemon = Daemon::spawn(
        &node,
        &json!({"socketDir": socket_dir}),
        &[
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", &port),
            ("NODE_NAME", multus_testbed::kube_api::NODE),
        ],
        |c| with_mounts(c, &[(sa.clone(), standard.to_path_buf())]),
    );
    // The shim conf names no kubeconfig: the API is the daemon's own.
    let conf = node.with_wasm(shim_conf(&node, &socket_dir));
    assert!(conf.get("kubeconfig").is_none());
    let pod = Pod::new();
    let add = shim(&node, "ADD", "ic1", &pod, &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert!(pod_addr(&pod).starts_with("10.36.0."));
    assert_eq!(pod.ns.addrs("net2").unwrap(), ["10.37.0.1/24"]);
    let status = status_soon(&api, "web");
    assert!(status.contains("default/macvlan-net") && status.contains("default/wa-net"));
    let allocations = || {
        api.custom_objects("ippools", "kube-system")
            .iter()
            .map(|p| p["spec"]["allocations"].as_object().map_or(0, |a| a.len()))
            .sum::<usize>()
    };
    assert_eq!(allocations(), 1);
    let del = shim(&node, "DEL", "ic1", &pod, &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert!(node.reservations("macvlan-net").is_empty());
    assert_eq!(allocations(), 0, "the whereabouts DEL reached the API too");
}

/// A module's cluster calls in the daemon (whereabouts under ptp.wasm,
/// both in-process) share one connection per credential source: pods
/// after the first open none, where each call opened its own, with a TLS
/// handshake the API server paid for too.
#[test]
fn module_cluster_calls_share_a_connection() {
    let node = Node::new();
    node.install_wasm(&["ptp", "whereabouts"]);
    let api = multus_testbed::kube_api::FakeKubeApi::start(&node.ns, "token-1").unwrap();
    let net = json!({"cniVersion": "1.0.0", "name": "wa-ptp", "type": "ptp",
        "ipam": {"type": "whereabouts", "range": "10.39.0.0/24", "gateway": "10.39.0.254"}});
    api.add_nad("default", "wa-ptp", Some(&net.to_string()), &[]);
    api.add_pod(
        "default",
        "web",
        "uid-web",
        &[("k8s.v1.cni.cncf.io/networks", "wa-ptp")],
        &[],
    );
    let socket_dir = node.dir.path().join("run-multus");
    let daemon = Daemon::start(
        &node,
        &json!({"socketDir": socket_dir, "kubeconfig": api.kubeconfig()}),
    );
    let mut conf = node.with_wasm(shim_conf(&node, &socket_dir));
    conf["wasmPlugins"] = json!({"ptp": {"hostNetns": true}});
    let pod = Pod::new();
    let mut opened = Vec::new();
    for i in 0..3 {
        let cid = format!("share{i}");
        let add = shim(&node, "ADD", &cid, &pod, &conf);
        assert!(add.ok(), "{} {}", add.stdout, add.stderr);
        assert_eq!(pod.ns.addrs("net1").unwrap(), ["10.39.0.1/24"]);
        let del = shim(&node, "DEL", &cid, &pod, &conf);
        assert!(del.ok(), "{} {}", del.stdout, del.stderr);
        opened.push(api.connections().0);
    }
    let pools = api.custom_objects("ippools", "kube-system");
    assert!(!pools.is_empty(), "whereabouts never reached the API");
    for p in pools {
        assert_eq!(
            p["spec"]["allocations"].as_object().map_or(0, |a| a.len()),
            0
        );
    }
    assert_eq!(
        opened[0], opened[2],
        "connections after each pod's ADD and DEL: {opened:?}"
    );
    // A 401 (a token rotated under the shared client) drops it: the call
    // is sent again on one built afresh, and the ADD goes on.
    api.fail_next("GET", "ippools", 401, 1);
    let add = shim(&node, "ADD", "share-401", &pod, &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert_eq!(api.faults_fired(), 1);
    assert_eq!(api.connections().0, opened[2] + 1, "one new client");
    let del = shim(&node, "DEL", "share-401", &pod, &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    // Idle, the wasm deadline clock sleeps: its thread (which ticked
    // every 10 ms for the daemon's whole life) is not woken.
    let pid = daemon.child.as_ref().unwrap().id();
    let ticker = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| t.unwrap().path())
        .find(|t| std::fs::read_to_string(t.join("comm")).unwrap().trim() == "wasm-epoch")
        .expect("the daemon's wasm-epoch thread");
    let switches = || {
        let status = std::fs::read_to_string(ticker.join("status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let before = switches();
    std::thread::sleep(Duration::from_millis(500));
    let woken = switches() - before;
    assert!(woken <= 2, "the idle ticker woke {woken} times in 500 ms");
}

/// A node's pods started together read their NodeSlicePool (56 KiB at
/// 1024 slices) from the watch cache once: the daemon answers identical
/// `get-cached` reads in flight with one request. The read is held until
/// it arrived and the other two ADDs joined it (or 20 s passed), so the
/// ADDs overlap it however slow the machine; each read alone, three were
/// sent.
#[test]
fn a_nodes_pods_read_their_slices_once() {
    let node = Node::new();
    node.install_wasm(&["whereabouts"]);
    let api = multus_testbed::kube_api::FakeKubeApi::start(&node.ns, "token-1").unwrap();
    // The module alone (as the fleet runs it), so it runs in the daemon:
    // under a native bridge it would run in a process of its own.
    let net = json!({"cniVersion": "1.0.0", "name": "wa-slices", "plugins": [{"type": "whereabouts",
        "ipam": {"type": "whereabouts", "range": "10.38.0.0/24", "node_slice_size": "/28"}}]});
    api.add_nad("default", "wa-slices", Some(&net.to_string()), &[]);
    // Three pods: a pod's calls are one at a time in the daemon.
    for i in 0..3 {
        api.add_pod(
            "default",
            &format!("web{i}"),
            &format!("uid-web{i}"),
            &[("k8s.v1.cni.cncf.io/networks", "wa-slices")],
            &[],
        );
    }
    // As whereabouts' controller leaves it: this node's slice assigned.
    api.put_custom(
        "nodeslicepools",
        "kube-system",
        json!({"apiVersion": "whereabouts.cni.cncf.io/v1alpha1", "kind": "NodeSlicePool",
            "metadata": {"name": "wa-slices"},
            "spec": {"range": "10.38.0.0/24", "sliceSize": "/28"},
            "status": {"allocations": [
                {"nodeName": multus_testbed::kube_api::NODE, "sliceRange": "10.38.0.0/28"},
                {"nodeName": "", "sliceRange": "10.38.0.16/28"}]}}),
    );
    api.hold("/nodeslicepools/wa-slices");
    let socket_dir = node.dir.path().join("run-multus");
    let port = 19095;
    let _daemon = Daemon::start_with(
        &node,
        &json!({"socketDir": socket_dir, "kubeconfig": api.kubeconfig(), "metricsPort": port}),
        &[("NODE_NAME", multus_testbed::kube_api::NODE)],
    );
    let conf = node.with_wasm(shim_conf(&node, &socket_dir));
    let pods: Vec<Pod> = (0..3).map(|_| Pod::new()).collect();
    // The module's only `get-cached` read is the slice pool's.
    let joined = || sample(&scrape(&node, port), "multus_api_requests_joined_total");
    let run_all = |cmd: &str| {
        std::thread::scope(|s| {
            for (i, pod) in pods.iter().enumerate() {
                let (node, conf) = (&node, &conf);
                s.spawn(move || {
                    let cid = format!("slice{i}");
                    let args =
                        format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web{i}");
                    let mut env = pod_env(cmd, &cid, &pod.path);
                    env.retain(|(k, _)| *k != "CNI_ARGS");
                    env.push(("CNI_ARGS", &args));
                    let out =
                        exec_cni(Path::new(SHIM), Some(&node.ns), &env, &bytes(conf)).unwrap();
                    assert!(out.ok(), "{cmd} slice{i}: {} {}", out.stdout, out.stderr);
                });
            }
            if cmd == "ADD" {
                let until = Instant::now() + Duration::from_secs(20);
                // The leader's read is in flight (others may join it)
                // before its client sent it: both, then the release.
                while (api.held() < 1 || joined() < 2.0) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
                api.release();
            }
        })
    };
    run_all("ADD");
    assert_eq!(joined(), 2.0, "the other two ADDs joined the read");
    let pool = || {
        api.custom_object(
            "ippools",
            "kube-system",
            &format!("{}-10.38.0.0-28", multus_testbed::kube_api::NODE),
        )
        .expect("the slice's pool")
    };
    let mut ids: Vec<String> = pool()["spec"]["allocations"]
        .as_object()
        .unwrap()
        .values()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["slice0", "slice1", "slice2"]);
    assert_eq!(api.faults_fired(), 1, "the slowed read happened");
    let slice_reads: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.contains("/nodeslicepools/"))
        .collect();
    assert_eq!(slice_reads.len(), 1, "{slice_reads:?}");
    assert_eq!(api.cached_reads(), 1, "from the watch cache");
    run_all("DEL");
    assert_eq!(pool()["spec"]["allocations"], json!({}));
}

/// `chrootDir`: native delegates run inside that root. The plugins, their
/// `binDir` and the IPAM data dir exist only under the root, so the ADD can
/// only work chrooted; the reservation lands under the root; DEL frees it.
#[test]
fn native_delegates_run_in_chroot_dir() {
    let node = Node::new();
    let root = node.dir.path().join("hostroot");
    for d in ["opt/cni/bin", "proc", "run/netns", "var/lib/cni/networks"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for p in ["bridge", "host-local"] {
        let bin = plugins().join(p);
        std::fs::copy(&bin, root.join("opt/cni/bin").join(p)).unwrap();
        // Debian's plugins link libc dynamically: their loader and libraries too.
        let ldd = Command::new("ldd").arg(&bin).output().unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let to = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(lib, to).unwrap();
        }
    }
    // The pod's netns exists before the daemon's mount namespace is made.
    let pod = Pod::new();
    let socket_dir = node.dir.path().join("run-multus");
    let _daemon = Daemon::spawn(
        &node,
        &json!({"socketDir": socket_dir, "chrootDir": root}),
        &[],
        |c| with_host_root(c, &root),
    );
    let data = Path::new("/var/lib/cni/networks");
    let mut conf = confs::multus_delegates(
        &[confs::bridge_host_local(
            "chrooted",
            "cni9",
            "10.39.0.0/24",
            data,
        )],
        &node.cni_dir(),
        Path::new("/opt/cni/bin"),
    );
    conf["type"] = "multus-shim".into();
    conf["daemonSocketDir"] = json!(socket_dir);
    let add = shim(&node, "ADD", "c1", &pod, &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert_eq!(pod.ns.addrs("eth0").unwrap(), ["10.39.0.2/24"]);
    let reserved = root.join("var/lib/cni/networks/chrooted/10.39.0.2");
    assert!(reserved.is_file(), "the reservation is under chrootDir");
    assert!(!Path::new("/var/lib/cni/networks/chrooted").exists());
    let del = shim(&node, "DEL", "c1", &pod, &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert!(!reserved.exists());
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    assert!(node.cache_files().is_empty());
}

/// POSTs a `/delegate` request for the pod's container `cid` and returns
/// the status and body.
fn delegate(
    socket: &Path,
    cmd: &str,
    cid: &str,
    pod: &Pod,
    config: &Value,
    attrs: Option<Value>,
) -> (u16, Value) {
    let env: std::collections::BTreeMap<String, String> = pod_env(cmd, cid, &pod.path)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("CNI_IFNAME".to_string(), "net2".to_string())])
        .collect();
    let mut body = json!({"env": env, "config": base64_of(&bytes(config))});
    if let Some(a) = attrs {
        body["interfaceAttributes"] = a;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (code, out) = rt
        .block_on(client::call(
            socket,
            "POST",
            "/delegate",
            bytes(&body),
            CALL_TIMEOUT,
        ))
        .unwrap();
    (code, serde_json::from_slice(&out).unwrap_or(Value::Null))
}

/// `/delegate` (hot-plug, as multus-dynamic-networks-controller calls it):
/// a network added to a running pod as net2 with the requested IP and MAC,
/// checked, deleted; added again and then removed by the pod's own DEL,
/// because the attachment is recorded in the pod's cache.
#[test]
fn delegate_hot_plugs_one_network() {
    let node = Node::new();
    let socket_dir = node.dir.path().join("run-multus");
    // A delegate request carries no multus conf: the daemon's keys say
    // where plugins and the pods' caches are, for /cni and /delegate alike.
    let daemon = Daemon::start(
        &node,
        &json!({"socketDir": socket_dir, "binDir": plugins(), "cniDir": node.cni_dir()}),
    );
    let conf = shim_conf(&node, &socket_dir);
    let pod = Pod::new();
    let add = shim(&node, "ADD", "h1", &pod, &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    let macvlan = confs::macvlan_host_local("hot", "uplink0", "10.34.0.0/24", &node.data_dir());

    let attrs = json!({"ips": ["10.34.0.77"], "mac": "02:00:00:00:00:77"});
    let (code, out) = delegate(&daemon.socket, "ADD", "h1", &pod, &macvlan, Some(attrs));
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["Result"]["ips"][0]["address"], "10.34.0.77/24", "{out}");
    assert_eq!(pod.ns.addrs("net2").unwrap(), ["10.34.0.77/24"]);
    let link = pod.ns.ip(&["link", "show", "net2"]).unwrap();
    assert!(link.contains("02:00:00:00:00:77"), "{link}");
    assert_eq!(node.reservations("hot"), ["10.34.0.77"]);
    let (code, out) = delegate(&daemon.socket, "CHECK", "h1", &pod, &macvlan, None);
    assert_eq!(code, 200, "{out}");
    let (code, out) = delegate(&daemon.socket, "DEL", "h1", &pod, &macvlan, None);
    assert_eq!(code, 200, "{out}");
    assert!(!pod.ns.links().unwrap().contains(&"net2".to_string()));
    assert!(node.reservations("hot").is_empty());
    // A CHECK of what is gone is an error, not a silent success.
    let (code, out) = delegate(&daemon.socket, "CHECK", "h1", &pod, &macvlan, None);
    assert_eq!((code, out["code"].as_u64()), (400, Some(3)), "{out}");

    let (code, out) = delegate(&daemon.socket, "ADD", "h1", &pod, &macvlan, None);
    assert_eq!(code, 200, "{out}");
    assert_eq!(node.reservations("hot").len(), 1);
    let del = shim(&node, "DEL", "h1", &pod, &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert!(
        node.reservations("hot").is_empty(),
        "the pod's DEL removed net2"
    );
    assert_clean(&node, &pod);

    // A config that is not a network: a CNI error naming it, nothing built.
    let (code, out) = delegate(
        &daemon.socket,
        "ADD",
        "h2",
        &Pod::new(),
        &json!({"cniVersion": "1.0.0"}),
        None,
    );
    assert_eq!(code, 400, "{out}");
    assert!(
        out["msg"].as_str().unwrap().contains("delegate request"),
        "{out}"
    );
    assert!(node.cache_files().is_empty());
}

/// A hot-plugged network is a user's NAD relayed by a controller: the
/// admin's `nadPluginTypes` hold for it, and its `interfaceAttributes` are
/// validated as the pod annotation's are (an IP of
/// `10.0.0.5;K8S_POD_NAME=other` would have named another pod in the
/// delegate's CNI_ARGS). Found by attacking the boundary of issue 27.
#[test]
fn delegate_requests_are_bound_like_the_pods_nads() {
    let node = Node::new();
    let socket_dir = node.dir.path().join("run-multus");
    let daemon = Daemon::start(
        &node,
        &json!({"socketDir": socket_dir, "binDir": plugins(), "cniDir": node.cni_dir(),
                "nadPluginTypes": ["macvlan", "host-local"]}),
    );
    let conf = shim_conf(&node, &socket_dir);
    let pod = Pod::new();
    let add = shim(&node, "ADD", "b1", &pod, &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    let bridge = confs::bridge_host_local("hot-br", "br-hot", "10.36.0.0/24", &node.data_dir());
    let (code, out) = delegate(&daemon.socket, "ADD", "b1", &pod, &bridge, None);
    assert_eq!((code, out["code"].as_u64()), (400, Some(7)), "{out}");
    assert!(
        out["msg"].as_str().unwrap().contains("nadPluginTypes"),
        "{out}"
    );
    let macvlan = confs::macvlan_host_local("hot", "uplink0", "10.35.0.0/24", &node.data_dir());
    for attrs in [
        json!({"ips": ["10.35.0.5;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns"]}),
        json!({"mac": "x;Y=z"}),
    ] {
        let (code, out) = delegate(&daemon.socket, "ADD", "b1", &pod, &macvlan, Some(attrs));
        assert_eq!((code, out["code"].as_u64()), (400, Some(7)), "{out}");
        assert!(
            out["msg"].as_str().unwrap().contains("interfaceAttributes"),
            "{out}"
        );
    }
    assert!(!pod.ns.links().unwrap().contains(&"net2".to_string()));
    assert!(node.reservations("hot").is_empty() && node.reservations("hot-br").is_empty());
    let del = shim(&node, "DEL", "b1", &pod, &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert_clean(&node, &pod);
}

/// The pod `default/<name>`'s request through the shim (with the pod UID
/// the runtime names, when given).
fn shim_for(
    node: &Node,
    cmd: &str,
    cid: &str,
    pod: &Pod,
    (name, uid): (&str, Option<&str>),
    conf: &Value,
) -> multus_testbed::CniOutput {
    let mut args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}");
    if let Some(uid) = uid {
        args.push_str(&format!(";K8S_POD_UID={uid}"));
    }
    let mut env = pod_env(cmd, cid, &pod.path);
    env.retain(|(k, _)| *k != "CNI_ARGS");
    env.push(("CNI_ARGS", &args));
    exec_cni(Path::new(SHIM), Some(&node.ns), &env, &bytes(conf)).unwrap()
}

/// Polls the daemon's metrics until `name` reaches `at_least`.
fn wait_for_sample(node: &Node, port: u16, name: &str, at_least: f64) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let m = scrape(node, port);
        if sample(&m, name) >= at_least {
            return;
        }
        assert!(Instant::now() < until, "{name} stays below {at_least}: {m}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The daemon's watch caches: once listed, an ADD reads neither the pod
/// nor its NADs from the API server (only the network-status write goes
/// there); a NAD changed in the API is what the next ADD uses; a NAD
/// deleted is a miss, confirmed by a live GET.
#[test]
fn watch_caches_serve_pods_and_nads() {
    let node = Node::new();
    let api = multus_testbed::kube_api::FakeKubeApi::start(&node.ns, "token-1").unwrap();
    let nad = |subnet: &str| {
        confs::macvlan_host_local("macvlan-net", "uplink0", subnet, &node.data_dir()).to_string()
    };
    api.add_nad("default", "macvlan-net", Some(&nad("10.32.0.0/24")), &[]);
    for name in ["web", "api", "named"] {
        api.add_pod(
            "default",
            name,
            &format!("uid-{name}"),
            &[("k8s.v1.cni.cncf.io/networks", "macvlan-net")],
            &[],
        );
    }
    let socket_dir = node.dir.path().join("run-multus");
    let port = 19093;
    let _daemon = Daemon::start_with(
        &node,
        &json!({"socketDir": socket_dir, "kubeconfig": api.kubeconfig(), "metricsPort": port}),
        // Upstream's DaemonSet's name for it: the pod cache works with it too.
        &[("MULTUS_NODE_NAME", multus_testbed::kube_api::NODE)],
    );
    wait_for_sample(&node, port, r#"multus_cache_objects{kind="pods"}"#, 3.0);
    wait_for_sample(
        &node,
        port,
        r#"multus_cache_objects{kind="network-attachment-definitions"}"#,
        1.0,
    );
    let requests = api.requests();
    assert!(
        requests.iter().any(|r| r == "GET /api/v1/pods?watch 200"),
        "{requests:?}"
    );
    let conf = shim_conf(&node, &socket_dir);
    let reads = |from: usize| -> Vec<String> {
        api.requests()[from..]
            .iter()
            .filter(|r| r.starts_with("GET "))
            .cloned()
            .collect()
    };

    let (web, second) = (Pod::new(), Pod::new());
    let before = api.requests().len();
    let add = shim_for(&node, "ADD", "w1", &web, ("web", None), &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert!(pod_addr(&web).starts_with("10.32.0."));
    status_soon(&api, "web");
    assert_eq!(
        reads(before),
        Vec::<String>::new(),
        "served from the caches"
    );
    assert!(
        api.requests()[before..]
            .iter()
            .any(|r| r == "PUT /api/v1/namespaces/default/pods/web/status 200"),
        "{:?}",
        api.requests()
    );

    // The cluster network named (not a path): upstream tries it as a NAD in
    // multusNamespace first, then as a conf in confDir. The streaming NAD
    // cache lacks it, so the daemon knows without a GET, even on its first
    // pod (no earlier 404 remembered).
    let conf_dir = node.dir.path().join("multus.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(
        conf_dir.join("10-cluster.conf"),
        conf["delegates"][0].to_string(),
    )
    .unwrap();
    let mut named = conf.clone();
    named.as_object_mut().unwrap().remove("delegates");
    named["clusterNetwork"] = "cluster".into();
    named["confDir"] = json!(conf_dir);
    let by_name = Pod::new();
    let before = api.requests().len();
    let add = shim_for(&node, "ADD", "n1", &by_name, ("named", None), &named);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert!(pod_addr(&by_name).starts_with("10.32.0."));
    assert_eq!(
        reads(before),
        Vec::<String>::new(),
        "the cluster network's name answered by the cache"
    );
    status_soon(&api, "named");
    let del = shim_for(&node, "DEL", "n1", &by_name, ("named", None), &named);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);

    // The NAD changes in the API; once the watch has delivered it, the next
    // ADD uses the new range.
    let seen = sample(
        &scrape(&node, port),
        r#"multus_watch_events_total{kind="network-attachment-definitions"}"#,
    );
    api.add_nad("default", "macvlan-net", Some(&nad("10.33.0.0/24")), &[]);
    wait_for_sample(
        &node,
        port,
        r#"multus_watch_events_total{kind="network-attachment-definitions"}"#,
        seen + 1.0,
    );
    let before = api.requests().len();
    let add = shim_for(&node, "ADD", "a1", &second, ("api", None), &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert!(
        pod_addr(&second).starts_with("10.33.0."),
        "{}",
        pod_addr(&second)
    );
    assert_eq!(reads(before), Vec::<String>::new());

    // Deleted: the cache misses, a live GET confirms, the ADD fails cleanly.
    let seen = sample(
        &scrape(&node, port),
        r#"multus_watch_events_total{kind="network-attachment-definitions"}"#,
    );
    api.remove_nad("default", "macvlan-net");
    wait_for_sample(
        &node,
        port,
        r#"multus_watch_events_total{kind="network-attachment-definitions"}"#,
        seen + 1.0,
    );
    let third = Pod::new();
    let before = api.requests().len();
    let e = assert_cni_error(
        &shim_for(&node, "ADD", "w2", &third, ("web", None), &conf),
        7,
    );
    assert!(e.contains("default/macvlan-net not found"), "{e}");
    assert_eq!(
        reads(before),
        ["GET /apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/macvlan-net 404"]
    );
    assert_eq!(third.ns.links().unwrap(), ["lo"]);
    // Known missing: for a while the daemon says so itself, without a GET
    // per pod (a name looked up on every pod that is never a NAD).
    let before = api.requests().len();
    let e = assert_cni_error(
        &shim_for(&node, "ADD", "w2", &third, ("web", None), &conf),
        7,
    );
    assert!(e.contains("default/macvlan-net not found"), "{e}");
    assert_eq!(reads(before), Vec::<String>::new());
    // Created again: found as soon as the watch brings it.
    let seen = sample(
        &scrape(&node, port),
        r#"multus_watch_events_total{kind="network-attachment-definitions"}"#,
    );
    api.add_nad("default", "macvlan-net", Some(&nad("10.34.0.0/24")), &[]);
    wait_for_sample(
        &node,
        port,
        r#"multus_watch_events_total{kind="network-attachment-definitions"}"#,
        seen + 1.0,
    );
    let fourth = Pod::new();
    let before = api.requests().len();
    let add = shim_for(&node, "ADD", "w4", &fourth, ("web", None), &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert!(
        pod_addr(&fourth).starts_with("10.34.0."),
        "{}",
        pod_addr(&fourth)
    );
    assert_eq!(reads(before), Vec::<String>::new());

    // The sandbox of a pod recreated under the same name: the cached pod's
    // UID does not match, so it is read live, and the ADD is refused as
    // retriable until the API has the new pod.
    let before = api.requests().len();
    let e = assert_cni_error(
        &shim_for(&node, "ADD", "w3", &third, ("web", Some("uid-new")), &conf),
        11,
    );
    assert!(e.contains("recreated"), "{e}");
    assert_eq!(
        reads(before),
        ["GET /api/v1/namespaces/default/pods/web 200"]
    );

    for (cid, pod, name) in [
        ("w1", &web, "web"),
        ("a1", &second, "api"),
        ("w4", &fourth, "web"),
    ] {
        let del = shim_for(&node, "DEL", cid, pod, (name, None), &conf);
        assert!(del.ok(), "{} {}", del.stdout, del.stderr);
        assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    }
    assert!(node.reservations("macvlan-net").is_empty());
    assert!(node.cache_files().is_empty());

    // deploy/thick's ClusterRole grants exactly what the daemon called.
    let role: ClusterRole = serde_json::from_value(manifests::find_in(
        &manifests::thick(),
        "ClusterRole",
        Some("multus"),
    ))
    .unwrap();
    let granted = manifests::grants(&role.rules.unwrap());
    let used: std::collections::BTreeSet<_> = api
        .requests()
        .iter()
        .filter(|r| !manifests::is_public(r))
        .map(|r| {
            let (g, res, verb, _) = manifests::authorization(r);
            let key = (g, res, verb);
            assert!(granted.contains(&key), "not granted: {r}");
            key
        })
        .collect();
    assert_eq!(used, granted, "ClusterRole rules the daemon never calls");
}

fn pod_addr(pod: &Pod) -> String {
    pod.ns
        .addrs("net1")
        .unwrap()
        .first()
        .cloned()
        .unwrap_or_default()
}

/// The in-test API server in `node`'s netns (accepting `token`) with the
/// pod `default/web` selecting the NAD `macvlan-net` (a macvlan on
/// `subnet`).
/// The daemon answers ADD before writing network-status, and the same
/// container's DEL runs only once the write is done: a slow write holds up
/// neither the pod's start nor lands after its DEL. With
/// `networkStatusAfterResult: false` the answer waits for the write.
#[test]
fn network_status_follows_the_answer_and_precedes_the_del() {
    let node = Node::new();
    let api = api_with_web_on_macvlan(&node, "token-1", "10.38.0.0/24");
    let socket_dir = node.dir.path().join("run-multus");
    let put = "PUT /api/v1/namespaces/default/pods/web/status 200";
    let puts = || api.requests().iter().filter(|r| *r == put).count();
    for after in [true, false] {
        let _daemon = Daemon::start(
            &node,
            &json!({"socketDir": socket_dir, "kubeconfig": api.kubeconfig(),
                    "networkStatusAfterResult": after}),
        );
        let conf = shim_conf(&node, &socket_dir);
        let pod = Pod::new();
        let before = puts();
        api.delay("pods/web/status", Duration::from_millis(1500), 1);
        let add = shim(&node, "ADD", "late1", &pod, &conf);
        assert!(add.ok(), "{} {}", add.stdout, add.stderr);
        // The server logs a request when it answers, after the delay.
        assert_eq!(
            puts() == before,
            after,
            "after={after}: {:?}",
            api.requests()
        );
        let del = shim(&node, "DEL", "late1", &pod, &conf);
        assert!(del.ok(), "{} {}", del.stdout, del.stderr);
        assert_eq!(puts(), before + 1, "the write is done before the DEL ran");
        assert_clean(&node, &pod);
        drop(_daemon);
    }
}

fn api_with_web_on_macvlan(
    node: &Node,
    token: &str,
    subnet: &str,
) -> multus_testbed::kube_api::FakeKubeApi {
    let api = multus_testbed::kube_api::FakeKubeApi::start(&node.ns, token).unwrap();
    let macvlan = confs::macvlan_host_local("macvlan-net", "uplink0", subnet, &node.data_dir());
    api.add_nad("default", "macvlan-net", Some(&macvlan.to_string()), &[]);
    api.add_pod(
        "default",
        "web",
        "uid-web",
        &[("k8s.v1.cni.cncf.io/networks", "macvlan-net")],
        &[],
    );
    api
}

/// `GET /metrics` from inside `node`'s netns.
fn scrape(node: &Node, port: u16) -> String {
    use std::io::{Read, Write};
    let ns = node.ns.path();
    std::thread::spawn(move || {
        multus_testbed::enter_path(&ns).unwrap();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .join()
    .unwrap()
}

/// The value of the sample line starting with `name`, 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_add_up_after_a_run() {
    let node = Node::new();
    let socket_dir = node.dir.path().join("run-multus");
    let _daemon = Daemon::start(
        &node,
        &json!({"socketDir": socket_dir, "metricsPort": 19091}),
    );
    let conf = shim_conf(&node, &socket_dir);
    let mut broken = conf.clone();
    broken["delegates"][0]["plugins"][0]["type"] = "no-such-plugin".into();
    let pods: Vec<Pod> = (0..3).map(|_| Pod::new()).collect();
    for (i, pod) in pods.iter().enumerate() {
        assert!(shim(&node, "ADD", &format!("m{i}"), pod, &conf).ok());
    }
    assert_cni_error(&shim(&node, "ADD", "mx", &Pod::new(), &broken), 7);
    for (i, pod) in pods.iter().enumerate() {
        assert!(shim(&node, "DEL", &format!("m{i}"), pod, &conf).ok());
    }
    let m = scrape(&node, 19091);
    assert_eq!(
        sample(
            &m,
            r#"multus_server_requests_total{command="ADD",code="0"}"#
        ),
        3.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"multus_server_requests_total{command="ADD",code="7"}"#
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"multus_server_requests_total{command="DEL",code="0"}"#
        ),
        3.0,
        "{m}"
    );
    // Every request is in the latency histogram of its command.
    assert_eq!(
        sample(&m, r#"multus_server_request_seconds_count{command="ADD"}"#),
        4.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"multus_server_request_seconds_count{command="DEL"}"#),
        3.0,
        "{m}"
    );
    // The bridge ran once per ADD and DEL of the three pods (the failed ADD
    // never reached it).
    assert_eq!(
        sample(
            &m,
            r#"multus_delegate_plugin_seconds_count{plugin="bridge",command="ADD"}"#
        ),
        3.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"multus_delegate_plugin_seconds_count{plugin="bridge",command="DEL"}"#
        ),
        3.0,
        "{m}"
    );
    assert_eq!(sample(&m, "multus_requests_in_flight"), 0.0, "{m}");
    assert_eq!(sample(&m, "multus_requests_waiting"), 0.0, "{m}");
}

/// The daemon killed in the middle of an ADD (a delegate is running): the
/// runtime's retried ADD, against the restarted daemon, succeeds (the
/// half-done attempt is cleaned first), and DEL leaves nothing.
#[test]
fn daemon_killed_mid_add_then_retried() {
    let node = Node::new();
    // A slow plugin after the bridge, so the kill lands mid-ADD.
    let bin = node.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for p in ["bridge", "host-local"] {
        std::fs::copy(plugins().join(p), bin.join(p)).unwrap();
    }
    let slow = bin.join("slow");
    std::fs::write(
        &slow,
        "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ]; then sleep 2; fi\ncat | sed -n 's/.*\"prevResult\":\\({.*}\\)}$/\\1/p'\n",
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let socket_dir = node.dir.path().join("run-multus");
    let config = json!({"socketDir": socket_dir});
    let mut daemon = Daemon::start(&node, &config);
    let mut conf = shim_conf(&node, &socket_dir);
    conf["binDir"] = json!(bin);
    let with_slow = {
        let mut c = conf.clone();
        let list = &mut c["delegates"][0]["plugins"];
        list.as_array_mut().unwrap().push(json!({"type": "slow"}));
        c
    };
    let pod = Pod::new();
    let add = std::thread::scope(|s| {
        let h = s.spawn(|| shim(&node, "ADD", "kill1", &pod, &with_slow));
        // The bridge is done once eth0 exists; the slow plugin runs next.
        let until = Instant::now() + Duration::from_secs(20);
        while !pod.ns.links().unwrap().iter().any(|l| l == "eth0") {
            assert!(Instant::now() < until, "the ADD never reached the bridge");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon.signal(libc::SIGKILL);
        h.join().unwrap()
    });
    assert!(
        !add.ok(),
        "the interrupted ADD cannot succeed: {}",
        add.stdout
    );
    assert!(add.stdout.contains("\"code\":11"), "{}", add.stdout);

    // The runtime retries the ADD (same container) against a new daemon.
    let _daemon = Daemon::start(&node, &config);
    let retry = shim(&node, "ADD", "kill1", &pod, &conf);
    assert!(retry.ok(), "{} {}", retry.stdout, retry.stderr);
    assert_eq!(
        node.reservations("cluster").len(),
        1,
        "the first attempt's IP was freed"
    );
    assert!(shim(&node, "DEL", "kill1", &pod, &conf).ok());
    assert_clean(&node, &pod);
}

/// The daemon keeps loaded modules warm, keyed by their file: a module
/// replaced on disk is what the next call runs.
#[test]
fn a_module_replaced_on_disk_is_used_by_the_next_call() {
    let node = Node::new();
    let plugins_dir = node.install_wasm(&["tuning"]);
    let socket_dir = node.dir.path().join("run-multus");
    let _daemon = Daemon::start(&node, &json!({"socketDir": socket_dir}));
    let mut conf = node.with_wasm(shim_conf(&node, &socket_dir));
    conf["delegates"][0]["plugins"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "tuning", "mtu": 1400}));
    let pod = Pod::new();
    let add = shim(&node, "ADD", "w1", &pod, &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert_eq!(pod.ns.link("eth0").unwrap()["mtu"], 1400);
    assert!(shim(&node, "DEL", "w1", &pod, &conf).ok());

    // Another component under the same name: not a plugin at all.
    let mapper = multus_testbed::node::built_plugins().join("label-networks.wasm");
    let tmp = plugins_dir.join(".tuning.wasm.new");
    std::fs::copy(mapper, &tmp).unwrap();
    std::fs::rename(&tmp, plugins_dir.join("tuning.wasm")).unwrap();
    let pod2 = Pod::new();
    let add = shim(&node, "ADD", "w2", &pod2, &conf);
    let msg = assert_cni_error(&add, 7);
    assert!(msg.contains("wasm plugin \"tuning\""), "{msg}");
    assert_clean(&node, &pod2);
}

/// A fresh daemon's first pod pays no module loading: at start, before its
/// socket exists, the daemon compiles what has no artifact yet and loads
/// and links every module of `wasmPluginDir`.
#[test]
fn the_daemon_warms_its_modules_before_serving() {
    let node = Node::new();
    node.install_wasm(&["tuning", "host-local"]);
    let socket_dir = node.dir.path().join("run-multus");
    let _daemon = Daemon::start(&node, &node.with_wasm(json!({"socketDir": socket_dir})));
    let log = std::fs::read_to_string(node.dir.path().join("daemon.log")).unwrap();
    let warmed = log
        .lines()
        .position(|l| l.contains("wasm modules loaded and linked") && l.contains("modules=2"))
        .unwrap_or_else(|| panic!("{log}"));
    let serving = log.lines().position(|l| l.contains("serving")).unwrap();
    assert!(warmed < serving, "{log}");
    let artifacts = multus_testbed::files_under(&node.wasm_cache())
        .into_iter()
        .filter(|f| f.ends_with(".cwasm"))
        .count();
    assert_eq!(artifacts, 2, "compiled at start, not by the first pod");
}

/// `multusConfigFile: auto`: the daemon writes `00-multus.conf` from the
/// master; the runtime hands it to the shim as is; it carries what the
/// shim's own DEL needs; a changed master regenerates it; SIGTERM removes it.
#[test]
fn the_daemon_writes_the_shim_conf() {
    let node = Node::new();
    let net_d = node.dir.path().join("net.d");
    std::fs::create_dir_all(&net_d).unwrap();
    let master = confs::bridge_host_local("cluster", "cni0", "10.33.0.0/24", &node.data_dir());
    std::fs::write(net_d.join("10-cluster.conflist"), bytes(&master)).unwrap();
    let socket_dir = node.dir.path().join("run-multus");
    let mut daemon = Daemon::start(
        &node,
        &json!({"socketDir": socket_dir, "multusConfigFile": "auto", "cniConfigDir": net_d,
                "cniDir": node.cni_dir(), "binDir": plugins()}),
    );
    let conf_path = net_d.join("00-multus.conf");
    let until = Instant::now() + Duration::from_secs(20);
    while !conf_path.exists() {
        assert!(Instant::now() < until, "no shim conf written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let conf: Value = serde_json::from_slice(&std::fs::read(&conf_path).unwrap()).unwrap();
    assert_eq!(conf["type"], "multus-shim");
    assert_eq!(
        conf["clusterNetwork"],
        net_d.join("10-cluster.conflist").display().to_string()
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&conf_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let pod = Pod::new();
    let add = shim(&node, "ADD", "g1", &pod, &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert!(pod.ns.addrs("eth0").unwrap()[0].starts_with("10.33.0."));

    // A new capability in the master reaches the conf.
    let mut m = master.clone();
    m["plugins"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
    std::fs::write(net_d.join("10-cluster.conflist"), bytes(&m)).unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let now: Value = serde_json::from_slice(&std::fs::read(&conf_path).unwrap()).unwrap();
        if now["capabilities"]["portMappings"] == true {
            break;
        }
        assert!(
            Instant::now() < until,
            "the conf was not regenerated: {now}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Put the master back as the pod was made with it.
    std::fs::write(net_d.join("10-cluster.conflist"), bytes(&master)).unwrap();

    // SIGTERM removes the conf; the shim's own DEL, from the conf the
    // daemon wrote, frees the pod.
    assert_eq!(daemon.signal(libc::SIGTERM), Some(0));
    assert!(!conf_path.exists(), "the shim conf is removed on exit");
    let del = shim(&node, "DEL", "g1", &pod, &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert!(del.stderr.contains("running DEL with"), "{}", del.stderr);
    assert_clean(&node, &pod);
}

/// The daemon reads no request larger than its bound (it read any size
/// before admission), and drops a connection that never finishes its
/// headers; other requests are served meanwhile.
#[test]
fn oversized_and_stalled_requests_are_cut_off() {
    use std::io::{Read, Write};
    let node = Node::new();
    let socket_dir = node.dir.path().join("run-multus");
    let daemon = Daemon::start(&node, &json!({"socketDir": socket_dir}));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let huge = vec![b' '; protocol::MAX_REQUEST_BYTES + 1];
    let (code, body) = rt
        .block_on(client::call(
            &daemon.socket,
            "POST",
            "/cni",
            huge,
            CALL_TIMEOUT,
        ))
        .unwrap();
    assert_eq!(code, 400);
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["code"], 6);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("larger than 1048576 bytes"),
        "{e}"
    );
    let mut stalled = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    stalled
        .write_all(b"POST /cni HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    assert_eq!(daemon.get("/healthz").unwrap(), 200, "served meanwhile");
    // The daemon closes the stalled connection after its read timeout
    // (the read would block for ever otherwise; the test's own bound is
    // only a backstop).
    stalled
        .set_read_timeout(Some(protocol::READ_TIMEOUT * 3))
        .unwrap();
    let mut rest = Vec::new();
    let read = stalled.read_to_end(&mut rest);
    assert!(
        read.is_ok(),
        "closed by the daemon, not by our backstop: {read:?}"
    );
}

/// A daemon that accepts but never answers (wedged): the shim's DEL treats
/// it as unreachable after its probe timeout and deletes alone (it
/// blocked for ever), and an ADD is told to retry at
/// `daemonRequestTimeoutMs` (it is sent without a probe, and a live
/// daemon may take that long).
#[test]
fn a_wedged_daemon_does_not_block_the_shims_del() {
    let node = Node::new();
    let socket_dir = node.dir.path().join("run-multus");
    let config = json!({"socketDir": socket_dir});
    let conf = shim_conf(&node, &socket_dir);
    let pod = Pod::new();
    let mut daemon = Daemon::start(&node, &config);
    let add = shim(&node, "ADD", "w1", &pod, &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert_eq!(daemon.signal(libc::SIGKILL), None);
    // A listener on the daemon's socket that never answers: connections
    // complete (the kernel's backlog) and then nothing comes back.
    std::fs::remove_file(&daemon.socket).ok();
    let wedged = std::os::unix::net::UnixListener::bind(&daemon.socket).unwrap();
    let del = shim(&node, "DEL", "w1", &pod, &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert!(
        del.stderr.contains("running DEL with") && del.stderr.contains("no answer within 2000 ms"),
        "{}",
        del.stderr
    );
    assert_clean(&node, &pod);
    let mut patient = conf.clone();
    patient["daemonRequestTimeoutMs"] = 1500.into();
    let add = shim(&node, "ADD", "w2", &Pod::new(), &patient);
    let msg = assert_cni_error(&add, 11);
    assert!(msg.contains("POST /cni: no answer within 1500 ms"), "{msg}");
    drop(wedged);
}

/// `logLevel`, `logFile` and `logToStderr` in the daemon config set the
/// daemon's own logging, as upstream's daemon reads them (they were
/// accepted and ignored: the shipped `"logLevel": "error"` did nothing).
#[test]
fn the_daemon_logs_where_and_as_much_as_its_config_says() {
    let node = Node::new();
    let socket_dir = node.dir.path().join("run-multus");
    let conf = shim_conf(&node, &socket_dir);
    let pod = Pod::new();
    let lines = |level: &str| -> String {
        let log = node.dir.path().join(format!("daemon-{level}.log"));
        let mut daemon = Daemon::start(
            &node,
            &json!({"socketDir": socket_dir, "logLevel": level, "logFile": log, "logToStderr": false}),
        );
        let add = shim(&node, "ADD", "log1", &pod, &conf);
        assert!(add.ok(), "{} {}", add.stdout, add.stderr);
        assert!(shim(&node, "DEL", "log1", &pod, &conf).ok());
        assert_eq!(daemon.signal(libc::SIGTERM), Some(0));
        std::fs::read_to_string(&log).unwrap_or_default()
    };
    let verbose = lines("verbose");
    assert!(
        verbose.contains("serving") && verbose.contains("request"),
        "{verbose}"
    );
    assert!(!verbose.contains("DEBUG"), "{verbose}");
    let quiet = lines("error");
    assert!(
        !quiet.contains("INFO") && !quiet.contains("serving"),
        "{quiet}"
    );
    let debug = lines("debug");
    assert!(debug.contains("DEBUG"), "{debug}");
    assert_clean(&node, &pod);
}

/// Issue 20 on a real node: the daemon in a container's PID namespace with
/// the host's root (and so the host's /proc) as `chrootDir`, which failed
/// every native delegate (`failed to Statfs "/proc/11/task/11/ns/net"`).
/// Reproduced here with `unshare --pid`: the daemon now refuses to start,
/// naming the fix, instead of failing every pod.
#[test]
fn a_chroot_whose_proc_is_another_pid_namespaces_is_refused_at_start() {
    let node = Node::new();
    let root = node.dir.path().join("hostroot");
    for d in ["proc", "run/netns"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let socket_dir = node.dir.path().join("run-multus");
    let config = node.dir.path().join("daemon-config.json");
    std::fs::write(
        &config,
        bytes(&json!({"socketDir": socket_dir, "chrootDir": root})),
    )
    .unwrap();
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", "--kill-child"])
        .arg(DAEMON)
        .arg("-config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let _ns = in_netns(&mut c, &node.ns).unwrap();
    with_host_root(&mut c, &root);
    let mut child = c.spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            panic!("the daemon started with another PID namespace's /proc as chrootDir");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another PID namespace's") && stderr.contains("hostPID: true"),
        "{stderr}"
    );
    assert!(
        !socket_dir.join("multus.sock").exists(),
        "it served nothing"
    );
}

/// One raw request on the daemon's socket: its status and body.
fn call(socket: &Path, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(client::call(socket, method, path, body, CALL_TIMEOUT))
        .unwrap()
}

/// A request whose work hangs past `requestTimeoutMs` is answered at once
/// with an error naming the deadline, its pod and its container, and gives
/// its admission turn to the next request: two hung ADDs against
/// `connectionLimit` 2 leave room for another pod (they held both slots
/// for as long as they hung, so every other pod was told "busy"). Their
/// work keeps each container's turn: a DEL for a hung container waits for
/// it (code 11 past `queueTimeoutMs`), and runs once the ADD has ended.
/// With as many abandoned requests as `connectionLimit`, `/readyz` fails
/// (the shims' ADDs wait for it) while `/healthz` stays 200.
#[test]
fn a_request_past_its_deadline_frees_its_slot_but_not_its_container() {
    use std::os::unix::fs::PermissionsExt;
    let node = Node::new();
    let bin = node.dir.path().join("hang-bin");
    let gate = node.dir.path().join("gate");
    for d in [&bin, &gate] {
        std::fs::create_dir_all(d).unwrap();
    }
    let script = |name: &str, text: String| {
        let p = bin.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // ADD hangs until the test releases its container (30 s at most, so a
    // failed test leaves nothing running for long); DEL notes whether the
    // container's ADD had ended when it ran.
    script(
        "hang",
        format!(
            r#"#!/bin/sh
cat >/dev/null
g={g}
c=$CNI_CONTAINERID
if [ "$CNI_COMMAND" = DEL ]; then
  if [ -e $g/ended-$c ]; then touch $g/del-after-$c; else touch $g/del-during-$c; fi
  exit 0
fi
touch $g/started-$c
n=0
while [ ! -e $g/release-$c ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done
touch $g/ended-$c
echo '{{"cniVersion":"1.0.0"}}'
"#,
            g = gate.display()
        ),
    );
    script(
        "ok",
        "#!/bin/sh\ncat >/dev/null\necho '{\"cniVersion\":\"1.0.0\"}'\n".into(),
    );
    let socket_dir = node.dir.path().join("run-multus");
    let port = 19094;
    let daemon = Daemon::start(
        &node,
        &json!({"socketDir": socket_dir, "connectionLimit": 2, "requestTimeoutMs": 1500,
            "queueTimeoutMs": 1000, "metricsPort": port}),
    );
    let conf_of = |plugin: &str, ready_ms: u64| {
        let mut conf = confs::multus_delegates(
            &[json!({"cniVersion": "1.0.0", "name": plugin, "type": plugin})],
            &node.cni_dir(),
            &bin,
        );
        conf["type"] = "multus-shim".into();
        conf["daemonSocketDir"] = json!(socket_dir);
        conf["daemonReadyTimeoutMs"] = ready_ms.into();
        conf
    };
    let (hang, ok) = (conf_of("hang", 1500), conf_of("ok", 1500));
    let marker = |what: &str, cid: &str| gate.join(format!("{what}-{cid}")).exists();
    let release = |cid: &str| std::fs::write(gate.join(format!("release-{cid}")), "").unwrap();

    // Two ADDs that hang, at once: both slots taken, both answered at the
    // deadline while their delegates still run.
    let stuck = [("stuck1", Pod::new()), ("stuck2", Pod::new())];
    let started = Instant::now();
    let outs: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = stuck
            .iter()
            .map(|(cid, pod)| s.spawn(|| shim(&node, "ADD", cid, pod, &hang)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = started.elapsed();
    let still_hanging = stuck.iter().all(|(cid, _)| !marker("ended", cid));
    if !still_hanging || took >= Duration::from_secs(20) {
        stuck.iter().for_each(|(cid, _)| release(cid));
    }
    assert!(
        still_hanging,
        "answered only after the delegates ended ({took:?})"
    );
    assert!(took < Duration::from_secs(20), "answered after {took:?}");
    for ((cid, _), out) in stuck.iter().zip(&outs) {
        assert!(marker("started", cid), "{cid}'s delegate ran");
        let e = assert_cni_error(out, 999);
        assert!(
            e.contains(&format!("ADD for pod default/web (container {cid})"))
                && e.contains("requestTimeoutMs (1500 ms)"),
            "{e}"
        );
    }

    // Up, but not ready: as many requests run on as may run at once.
    assert_eq!(daemon.get("/healthz").unwrap(), 200);
    let (code, body) = call(&daemon.socket, "GET", "/readyz", Vec::new());
    let why = String::from_utf8_lossy(&body);
    assert_eq!(code, 500, "{why}");
    assert!(
        why.contains("2 requests past their deadline") && why.contains("connectionLimit is 2"),
        "{why}"
    );
    // An ADD sent anyway (as the shim sends it: the daemon, not a /readyz
    // round trip, says it is not ready) is refused before anything runs;
    // a DEL is served (it must not wait).
    let served = Pod::new();
    let raw = |command: &str| {
        let env: std::collections::BTreeMap<String, String> =
            pod_env(command, "served1", &served.path)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        serde_json::to_vec(&json!({"env": env, "config": base64_of(&bytes(&ok))})).unwrap()
    };
    let (code, body) = call(&daemon.socket, "POST", "/cni", raw("ADD"));
    let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((code, e["code"].as_u64()), (503, Some(11)), "{e}");
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("not ready: 2 requests past their deadline"),
        "{e}"
    );
    let (code, body) = call(&daemon.socket, "POST", "/cni", raw("DEL"));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    // A shim's ADD waits for the daemon to be ready: told to retry when it
    // never is...
    let waiting = Pod::new();
    let e = assert_cni_error(&shim(&node, "ADD", "served2", &waiting, &ok), 11);
    assert!(
        e.contains("not ready after 1500 ms: multus-daemon is not ready: 2 requests"),
        "{e}"
    );
    // ...and served once one hung ADD ends.
    let patient = conf_of("ok", 20000);
    let out = std::thread::scope(|s| {
        let h = s.spawn(|| shim(&node, "ADD", "served2", &waiting, &patient));
        std::thread::sleep(Duration::from_millis(300));
        release("stuck1");
        h.join().unwrap()
    });
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);

    // stuck2's ADD still runs: its DEL waits for the container's turn, is
    // told to retry, and runs nothing.
    let del = shim(&node, "DEL", "stuck2", &stuck[1].1, &hang);
    let ran = marker("del-during", "stuck2") || marker("del-after", "stuck2");
    release("stuck2");
    let e = assert_cni_error(&del, 11);
    assert!(
        e.contains("container stuck2 is still running after 1000 ms"),
        "{e}"
    );
    assert!(!ran, "the DEL ran beside its container's hung ADD");
    // Once the ADD has ended, the DEL runs, after it.
    let until = Instant::now() + Duration::from_secs(20);
    while sample(&scrape(&node, port), "multus_requests_abandoned") != 0.0 {
        assert!(Instant::now() < until, "the released ADDs never ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(daemon.get("/readyz").unwrap(), 200);
    let del = shim(&node, "DEL", "stuck2", &stuck[1].1, &hang);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert!(marker("del-after", "stuck2") && !marker("del-during", "stuck2"));
    for (cid, pod, conf) in [
        ("stuck1", &stuck[0].1, &hang),
        ("served1", &served, &ok),
        ("served2", &waiting, &ok),
    ] {
        let del = shim(&node, "DEL", cid, pod, conf);
        assert!(del.ok(), "{cid}: {} {}", del.stdout, del.stderr);
    }
    assert!(node.cache_files().is_empty(), "{:?}", node.cache_files());

    let m = scrape(&node, port);
    for (name, want) in [
        (r#"multus_requests_timed_out_total{command="ADD"}"#, 2.0),
        (
            r#"multus_server_requests_total{command="ADD",code="999"}"#,
            2.0,
        ),
        (
            r#"multus_server_requests_total{command="ADD",code="0"}"#,
            1.0,
        ),
        (
            r#"multus_server_requests_total{command="DEL",code="11"}"#,
            1.0,
        ),
        ("multus_requests_abandoned", 0.0),
        ("multus_requests_in_flight", 0.0),
        ("multus_requests_waiting", 0.0),
    ] {
        assert_eq!(sample(&m, name), want, "{name}: {m}");
    }
}
