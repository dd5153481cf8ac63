//! A node netns, pod netns and scratch dirs per integration test, and the
//! workspace's built binaries.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{exec_cni, files_under, reference_plugin_dir, CniOutput, Netns};

/// A binary of this workspace's build, beside the running test's
/// directory (`target/<profile>/`); `cargo test --workspace` builds them all.
pub fn built(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} missing: build the workspace (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// The built `multus`.
pub fn multus() -> PathBuf {
    built("multus")
}

pub struct Node {
    pub ns: Netns,
    pub dir: tempfile::TempDir,
}

// No `Default`: making one creates a network namespace.
#[allow(clippy::new_without_default)]
impl Node {
    /// A node with a veth `uplink0` to act as macvlan master.
    pub fn new() -> Self {
        let ns = Netns::new("t-node").expect("creating a netns (tests need root and iproute2)");
        ns.ip(&[
            "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p",
        ])
        .unwrap();
        ns.ip(&["link", "set", "uplink0", "up"]).unwrap();
        ns.ip(&["link", "set", "uplink0p", "up"]).unwrap();
        Self {
            ns,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    pub fn cni_dir(&self) -> PathBuf {
        self.dir.path().join("multus")
    }

    pub fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    /// IP reservation files host-local holds for `network`.
    pub fn reservations(&self, network: &str) -> Vec<String> {
        files_under(&self.data_dir().join(network))
            .into_iter()
            .filter(|f| f != "lock" && !f.starts_with("last_reserved_ip"))
            .collect()
    }

    pub fn cache_files(&self) -> Vec<String> {
        files_under(&self.cni_dir())
    }

    /// Host-side veths left on the node (the plugins' `veth*` names).
    pub fn veths(&self) -> Vec<String> {
        self.ns
            .links()
            .unwrap()
            .into_iter()
            .filter(|l| l.starts_with("veth"))
            .collect()
    }

    pub fn multus(&self, env: &[(&str, &str)], stdin: &[u8]) -> CniOutput {
        exec_cni(&multus(), Some(&self.ns), env, stdin).unwrap()
    }

    /// `cmd` for container `cid` in `pod`, as the runtime sends it.
    pub fn run(&self, cmd: &str, cid: &str, pod: &Pod, conf: &[u8]) -> CniOutput {
        self.multus(&pod_env(cmd, cid, &pod.path), conf)
    }
}

/// A pod sandbox: its netns and the path the runtime passes as CNI_NETNS.
pub struct Pod {
    pub ns: Netns,
    pub path: String,
}

#[allow(clippy::new_without_default)]
impl Pod {
    pub fn new() -> Self {
        let ns = Netns::new("t-pod").unwrap();
        let path = ns.path().to_str().unwrap().to_string();
        Self { ns, path }
    }
}

pub fn plugins() -> PathBuf {
    reference_plugin_dir()
}

/// The env a container runtime sets for `cmd` on pod `pod`.
pub fn pod_env<'a>(cmd: &'a str, cid: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
        ),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

pub fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Asserts a failed run: exit status 1 and a CNI error of `code` on stdout.
pub fn assert_cni_error(out: &CniOutput, code: u64) -> String {
    assert_eq!(
        out.status,
        Some(1),
        "stdout {} stderr {}",
        out.stdout,
        out.stderr
    );
    let e = out.json();
    assert_eq!(e["code"], code, "{}", out.stdout);
    assert!(e["cniVersion"].is_string(), "{}", out.stdout);
    e["msg"].as_str().unwrap_or_default().to_string()
}

/// The wasm plugins the image ships (scripts/image). The interface plugins
/// (macvlan, ptp) are opt-in: a module replaces the native plugin of its
/// type for every network, and it needs the admin's `hostNetns` grant.
pub const SHIPPED_PLUGINS: &[&str] = &[
    "host-local",
    "static",
    "whereabouts",
    "route-override",
    "sbr",
    "tuning",
    "legacy-networks",
    "label-networks",
];

/// The wasm plugins built by scripts/build-plugins.
pub fn built_plugins() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    assert!(
        dir.join("host-local.wasm").is_file(),
        "wasm plugins missing in {}: run scripts/build-plugins (scripts/test does)",
        dir.display()
    );
    dir
}

impl Node {
    /// A plugin dir holding copies of the named built plugins.
    pub fn install_wasm(&self, names: &[&str]) -> PathBuf {
        for n in names {
            self.install_wasm_file(n, &built_plugins().join(format!("{n}.wasm")));
        }
        self.dir.path().join("plugins")
    }

    /// Installs the module at `file` as plugin `name`.
    pub fn install_wasm_file(&self, name: &str, file: &std::path::Path) {
        let dir = self.dir.path().join("plugins");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(file, dir.join(format!("{name}.wasm"))).unwrap();
    }

    /// `conf` with this node's wasm plugin dir and cache (the plugin dir
    /// exists once `install_wasm` fills it), never the machine's.
    pub fn with_wasm_dirs(&self, mut conf: Value) -> Value {
        conf["wasmPluginDir"] = serde_json::json!(self.dir.path().join("plugins"));
        conf["wasmCacheDir"] = serde_json::json!(self.wasm_cache());
        conf
    }

    pub fn wasm_cache(&self) -> PathBuf {
        self.dir.path().join("wasm-cache")
    }

    /// `conf` with this node's wasm plugin dir and cache, and its scratch
    /// dir among the store roots.
    pub fn with_wasm(&self, conf: Value) -> Value {
        let mut conf = self.with_wasm_dirs(conf);
        // The test's stores live in its scratch dir, beside the defaults.
        conf["storeRoots"] =
            serde_json::json!(["/var/lib/cni/networks", "/run/cni", self.dir.path()]);
        conf
    }
}

impl Pod {
    /// A sysctl as the pod sees it (`/proc/sys/...` path).
    pub fn sysctl(&self, path: &str) -> String {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", self.ns.name(), "cat", path])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Node {
    /// A sysctl as the node's netns sees it (`/proc/sys/...` path).
    pub fn sysctl_in(&self, path: &str) -> String {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", self.ns.name(), "cat", path])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn sysctl_set(&self, path: &str, value: &str) {
        let ok = std::process::Command::new("ip")
            .args(["netns", "exec", self.ns.name(), "sh", "-c"])
            .arg(format!("echo {value} > {path}"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "{path}={value}");
    }

    /// `cmd` for every pod at once, container `par<i>` in `pods[i]`; each must succeed.
    pub fn run_parallel(&self, cmd: &str, pods: &[Pod], conf: &[u8]) -> Vec<CniOutput> {
        std::thread::scope(|s| {
            let handles: Vec<_> = pods
                .iter()
                .enumerate()
                .map(|(i, pod)| {
                    s.spawn(move || {
                        let out = self.run(cmd, &format!("par{i}"), pod, conf);
                        assert!(out.ok(), "{cmd} par{i}: {} {}", out.stdout, out.stderr);
                        out
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }
}

/// A native IPAM in `dir`, `slow-ipam`, that sleeps 30 s on ADD and
/// succeeds at once otherwise: it holds multus mid-ADD for a kill.
pub fn slow_ipam(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let slow = dir.join("slow-ipam");
    std::fs::write(
        &slow,
        "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ]; then sleep 30; fi\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    slow
}

impl Node {
    /// Starts `ADD` of container `cid`, waits until the pod has `ifname`,
    /// then kills multus with SIGKILL, as a node crash would.
    pub fn kill_add_once_linked(&self, cid: &str, pod: &Pod, conf: &[u8], ifname: &str) {
        use std::io::Write;
        let mut cmd = std::process::Command::new(multus());
        cmd.envs(pod_env("ADD", cid, &pod.path))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let ns = crate::in_netns(&mut cmd, &self.ns).unwrap();
        let mut child = cmd.spawn().unwrap();
        drop(ns);
        child.stdin.take().unwrap().write_all(conf).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !pod.ns.links().unwrap().iter().any(|l| l == ifname) {
            assert!(std::time::Instant::now() < deadline, "no {ifname} in time");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
