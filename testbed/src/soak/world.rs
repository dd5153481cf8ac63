//! One soak node: its netns (this process lives in it, so every child
//! does), the in-test API server, the pod's three networks, multus thin or
//! the shim with a daemon, and what "nothing left" means for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{Broken, Outcome};
use crate::kube_api::FakeKubeApi;
use crate::{exec_cni, reference_plugin_dir, try_files_under, CniOutput, Netns};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Thin,
    Thick,
}

/// A pod sandbox: its netns, deleted on drop.
pub struct Pod {
    pub ns: Netns,
    pub name: String,
}

impl Pod {
    pub fn new(name: String) -> Result<Self> {
        Ok(Self {
            ns: Netns::new("soak-pod")?,
            name,
        })
    }

    pub fn container_id(&self) -> String {
        format!("cid-{}", self.name)
    }
}

/// The three networks of a soak pod: eth0 on the reference bridge with the
/// reference host-local (range A), net1 a reference macvlan with the wasm
/// host-local through the IPAM shim (range B), net2 the wasm whereabouts
/// in-process as a conflist entry (range C, on the in-test API server).
pub const NETWORKS: [&str; 3] = ["soak-ref", "soak-wasm", "soak-cluster"];

pub struct World {
    pub node: Netns,
    pub work: tempfile::TempDir,
    pub api: FakeKubeApi,
    pub mode: Mode,
    multus: PathBuf,
    shim: PathBuf,
    daemon_bin: PathBuf,
    daemon: Option<Child>,
    /// The routes and rules of the node with every pod gone.
    baseline: Option<Value>,
}

impl World {
    /// A node in its own netns, entered by this thread (children inherit it).
    pub fn new(bin_dir: &Path, plugins: &Path, mode: Mode) -> Result<Self> {
        let node = Netns::new("soak-node").context("creating the node netns (needs root)")?;
        node.ip(&[
            "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p",
        ])?;
        node.ip(&["link", "set", "uplink0", "up"])?;
        crate::enter(&node)?;
        let work = tempfile::tempdir()?;
        let modules = work.path().join("plugins");
        std::fs::create_dir_all(&modules)?;
        for m in ["host-local", "whereabouts", "sandbox-probe"] {
            let file = format!("{m}.wasm");
            std::fs::copy(plugins.join(&file), modules.join(&file)).with_context(|| {
                format!("no {file} in {} (scripts/build-plugins)", plugins.display())
            })?;
        }
        let api = FakeKubeApi::start(&node, "soak-token")?;
        let mut w = Self {
            node,
            work,
            api,
            mode,
            multus: bin_dir.join("multus"),
            shim: bin_dir.join("multus-shim"),
            daemon_bin: bin_dir.join("multus-daemon"),
            daemon: None,
            baseline: None,
        };
        if mode == Mode::Thick {
            w.start_daemon()?;
        }
        Ok(w)
    }

    pub fn cni_dir(&self) -> PathBuf {
        self.work.path().join("multus")
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.work.path().join("ipam")
    }

    fn socket_dir(&self) -> PathBuf {
        self.work.path().join("run-multus")
    }

    /// The multus conf of a soak pod, with `cni_dir` and `ipam_dir` (the
    /// disk-full scenario puts them on a small tmpfs).
    pub fn conf_in(&self, cni_dir: &Path, ipam_dir: &Path) -> Vec<u8> {
        let range = |subnet: &str| json!({"type": "host-local", "dataDir": ipam_dir, "ranges": [[{"subnet": subnet}]]});
        let delegates = json!([
            {"cniVersion": "1.0.0", "name": NETWORKS[0], "plugins": [
                {"type": "bridge", "bridge": "soakbr0", "ipam": range("10.210.0.0/16")}]},
            {"cniVersion": "1.0.0", "name": NETWORKS[1], "plugins": [
                {"type": "macvlan", "master": "uplink0", "ipam": range("10.211.0.0/16")}]},
            {"cniVersion": "1.0.0", "name": NETWORKS[2], "plugins": [
                {"type": "whereabouts", "ipam": {"type": "whereabouts", "range": "10.212.0.0/16",
                 "kubernetes": {"kubeconfig": self.api.kubeconfig()}}}]},
        ]);
        let mut c = json!({
            "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
            "cniDir": cni_dir, "binDir": reference_plugin_dir(), "delegates": delegates,
            "wasmPluginDir": self.work.path().join("plugins"),
            "wasmCacheDir": self.work.path().join("wasm-cache"),
            "storeRoots": ["/var/lib/cni/networks", "/run/cni", self.work.path()],
            "kubeconfigAllowlist": [self.api.kubeconfig()],
            "wasmPlugins": {"whereabouts": {"timeoutMs": 60000, "hostCallTimeoutMs": 10000}},
        });
        if self.mode == Mode::Thick {
            c["type"] = json!("multus-shim");
            c["daemonSocketDir"] = json!(self.socket_dir());
        }
        serde_json::to_vec(&c).expect("conf serializes")
    }

    pub fn conf(&self) -> Vec<u8> {
        self.conf_in(&self.cni_dir(), &self.ipam_dir())
    }

    /// The program the runtime execs.
    pub fn program(&self) -> &Path {
        match self.mode {
            Mode::Thin => &self.multus,
            Mode::Thick => &self.shim,
        }
    }

    pub fn env(cmd: &str, pod: &Pod) -> Vec<(String, String)> {
        vec![
            ("CNI_COMMAND".into(), cmd.into()),
            ("CNI_CONTAINERID".into(), pod.container_id()),
            ("CNI_NETNS".into(), pod.ns.path().display().to_string()),
            ("CNI_IFNAME".into(), "eth0".into()),
            (
                "CNI_ARGS".into(),
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={}",
                    pod.name
                ),
            ),
            (
                "CNI_PATH".into(),
                reference_plugin_dir().display().to_string(),
            ),
        ]
    }

    /// `cmd` for `pod` with `conf`, timed.
    pub fn run_with(&self, cmd: &str, pod: &Pod, conf: &[u8]) -> Result<(CniOutput, Duration)> {
        let env = Self::env(cmd, pod);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let started = Instant::now();
        let out = exec_cni(self.program(), None, &env, conf)?;
        Ok((out, started.elapsed()))
    }

    /// Starts `cmd` for `pod` and returns at once, for a kill mid-call.
    pub fn spawn(&self, cmd: &str, pod: &Pod) -> Result<Child> {
        use std::io::Write;
        let mut child = Command::new(self.program())
            .envs(Self::env(cmd, pod))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(&self.conf())?;
        Ok(child)
    }

    pub fn run(&self, cmd: &str, pod: &Pod) -> Result<(CniOutput, Duration)> {
        self.run_with(cmd, pod, &self.conf())
    }

    /// A runtime's DEL: retried (as kubelet does) while it says try again,
    /// up to `tries`.
    pub fn del_retrying(&self, pod: &Pod, conf: &[u8], tries: usize) -> Result<CniOutput> {
        let mut out = self.run_with("DEL", pod, conf)?.0;
        for _ in 1..tries {
            if out.ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
            out = self.run_with("DEL", pod, conf)?.0;
        }
        Ok(out)
    }

    pub fn start_daemon(&mut self) -> Result<()> {
        let config = self.work.path().join("daemon-config.json");
        std::fs::write(
            &config,
            serde_json::to_vec(&json!({"socketDir": self.socket_dir(), "connectionLimit": 64}))?,
        )?;
        let socket = self.socket_dir().join("multus.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(&self.daemon_bin)
            .arg("-config")
            .arg(&config)
            .env("NODE_NAME", crate::kube_api::NODE)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.daemon_bin.display()))?;
        self.daemon = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            if Instant::now() > until {
                bail!("multus-daemon never made {}", socket.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGKILL to the daemon, as a crash or an OOM kill would.
    pub fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    /// The addresses each network gave the pod, from its cache file.
    pub fn addresses(&self, pod: &Pod) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        let Ok(bytes) = std::fs::read(self.cni_dir().join(pod.container_id())) else {
            return out;
        };
        let cache: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        for d in cache["delegates"].as_array().into_iter().flatten() {
            let ips = crate::result_addresses(&d["result"]);
            let name = d["networkName"].as_str().unwrap_or_default().to_string();
            out.insert(name, ips);
        }
        out
    }

    /// The node's routes and rules, for the baseline and after; route
    /// flags left out (`linkdown` comes and goes with the bridge's ports).
    fn routing(&self) -> Result<Value> {
        let mut state = self.node.routing_state()?;
        for family in ["routes4", "routes6"] {
            for r in state[family].as_array_mut().into_iter().flatten() {
                if let Some(o) = r.as_object_mut() {
                    o.remove("flags");
                }
            }
        }
        Ok(state)
    }

    /// Records the node's routing state with no pod attached. The bridge
    /// is made by the first ADD and stays (as the reference leaves it), so
    /// the baseline is taken after one full cycle.
    pub fn take_baseline(&mut self) -> Result<()> {
        self.baseline = Some(self.routing().context("the node's routing baseline")?);
        Ok(())
    }

    /// Nothing left of `pod` in its own netns (before it is deleted).
    pub fn check_pod_clean(&self, pod: &Pod, o: &mut Outcome) {
        match pod.ns.links() {
            Ok(links) if links == ["lo"] => {}
            Ok(links) => o.broke(
                Broken::Leftover,
                format!("pod {} still has {links:?}", pod.name),
            ),
            Err(e) => o.broke(
                Broken::Violation,
                format!("pod {}: cannot list its links to check them: {e}", pod.name),
            ),
        }
    }

    /// With every pod deleted: no IPAM state, no host veth or cache file,
    /// the node's routing as at the baseline.
    pub fn check_node_clean(&self, o: &mut Outcome) {
        self.check_node_clean_in(&self.cni_dir(), &self.ipam_dir(), o)
    }

    /// `check_node_clean` for a conf with these directories.
    pub fn check_node_clean_in(&self, cni_dir: &Path, ipam_dir: &Path, o: &mut Outcome) {
        for net in &NETWORKS[..2] {
            check_host_local(ipam_dir, net, o);
        }
        for pool in self.api.custom_objects("ippools", "kube-system") {
            let n = pool["spec"]["allocations"]
                .as_object()
                .map_or(0, |a| a.len());
            if n > 0 {
                o.broke(
                    Broken::Leak,
                    format!(
                        "IPPool {} still has {n} allocations",
                        pool["metadata"]["name"]
                    ),
                );
            }
        }
        let reservations = self
            .api
            .custom_objects("overlappingrangeipreservations", "kube-system");
        if !reservations.is_empty() {
            o.broke(
                Broken::Leak,
                format!("{} OverlappingRangeIPReservations left", reservations.len()),
            );
        }
        // A check that cannot look fails: it must never pass for want of
        // an answer.
        match self.node.links() {
            Ok(links) => {
                let veths: Vec<String> = links
                    .into_iter()
                    .filter(|l| l.starts_with("veth"))
                    .collect();
                if !veths.is_empty() {
                    o.broke(Broken::Leftover, format!("host veths left: {veths:?}"));
                }
            }
            Err(e) => o.broke(
                Broken::Violation,
                format!("cannot list the node's links to check them: {e}"),
            ),
        }
        match try_files_under(cni_dir) {
            Ok(cache) if cache.is_empty() => {}
            Ok(cache) => o.broke(Broken::Leftover, format!("cache files left: {cache:?}")),
            Err(e) => o.broke(
                Broken::Violation,
                format!("cannot list {} to check it: {e}", cni_dir.display()),
            ),
        }
        if let Some(base) = &self.baseline {
            match self.routing() {
                Ok(now) if &now == base => {}
                Ok(now) => o.broke(
                    Broken::Leftover,
                    format!("node routes or rules changed: {now}"),
                ),
                Err(e) => o.broke(
                    Broken::Violation,
                    format!("cannot read the node's routing to check it: {e:#}"),
                ),
            }
        }
    }
}

/// No address held in host-local's store of `net` under `ipam_dir`.
pub fn check_host_local(ipam_dir: &Path, net: &str, o: &mut Outcome) {
    let held: Vec<String> = match try_files_under(&ipam_dir.join(net)) {
        Ok(files) => files
            .into_iter()
            .filter(|f| f != "lock" && !f.starts_with("last_reserved_ip"))
            .collect(),
        Err(e) => {
            o.broke(
                Broken::Violation,
                format!("{net}: cannot list host-local's store to check it: {e}"),
            );
            return;
        }
    };
    if !held.is_empty() {
        o.broke(
            Broken::Leak,
            format!("{net}: host-local still holds {held:?}"),
        );
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.kill_daemon();
    }
}
