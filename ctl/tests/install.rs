//! `multusctl install` on a fake host root per test: the built binary run as
//! the DaemonSet runs it, against the in-test API server where a NAD is
//! made, and end to end with the built `multus` in real network namespaces.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use multus_testbed::kube_api::FakeKubeApi;
use multus_testbed::manifests as deploy;
use multus_testbed::node::{built_plugins, bytes, multus, plugins, Node, Pod};
use multus_testbed::{confs, files_under, in_netns, Netns};
use serde_json::{json, Value};

const MULTUSCTL: &str = env!("CARGO_BIN_EXE_multusctl");

/// A host root: `<root>/etc/cni/net.d` and a service-account dir beside it.
struct Host {
    dir: tempfile::TempDir,
}

fn kindnet(version: &str) -> Value {
    json!({"cniVersion": version, "name": "kindnet", "plugins": [
        {"type": "ptp", "ipMasq": false, "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24"}]]},
         "capabilities": {"ips": true}},
        {"type": "portmap", "capabilities": {"portMappings": true}}
    ]})
}

impl Host {
    fn new() -> Self {
        let h = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(h.net_d()).unwrap();
        std::fs::create_dir_all(h.sa()).unwrap();
        std::fs::create_dir_all(h.no_plugins()).unwrap();
        h.set_token("token-1");
        std::fs::write(
            h.sa().join("ca.crt"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        h
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn sa(&self) -> PathBuf {
        self.dir.path().join("sa")
    }
    fn no_plugins(&self) -> PathBuf {
        self.dir.path().join("no-plugins")
    }
    fn net_d(&self) -> PathBuf {
        self.root().join("etc/cni/net.d")
    }
    fn multus_net_d(&self) -> PathBuf {
        self.root().join("etc/cni/multus/net.d")
    }

    fn set_token(&self, t: &str) {
        std::fs::write(self.sa().join("token"), t).unwrap();
    }

    fn write(&self, name: &str, v: &Value) {
        std::fs::write(
            self.net_d().join(name),
            serde_json::to_vec_pretty(v).unwrap(),
        )
        .unwrap();
    }

    fn read(&self, rel: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.root().join(rel)).unwrap()).unwrap()
    }

    fn mode(&self, rel: &str) -> u32 {
        std::fs::metadata(self.root().join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    /// `multusctl install` on this root; `args` replace the test defaults.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(MULTUSCTL);
        c.arg("install").arg("--host-root").arg(self.root());
        let defaults = [
            ("--multus-bin", multus()),
            ("--plugins", self.no_plugins()),
            ("--serviceaccount-dir", self.sa()),
            ("--master-wait", "2s".into()),
            ("--watch-interval", "100ms".into()),
        ];
        for (flag, value) in defaults {
            if !args.contains(&flag) {
                c.arg(flag).arg(value);
            }
        }
        // The node's name comes from --node-name in the tests that want
        // one, never from the machine running them.
        c.args(args)
            .env_remove("NODE_NAME")
            .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
            .env("KUBERNETES_SERVICE_PORT", "443")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE");
        c
    }

    fn once(&self, args: &[&str]) -> Output {
        let mut all = vec!["--once"];
        all.extend_from_slice(args);
        self.command(&all).output().unwrap()
    }

    fn watch(&self, args: &[&str]) -> Watcher {
        Watcher(Some(
            self.command(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        ))
    }

    fn files(&self) -> Vec<String> {
        files_under(&self.root())
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", stderr(o));
}

/// Fails with `stderr` naming `want`, and leaves `host` as it was.
fn refused(host: &Host, args: &[&str], want: &str) {
    // Only the binaries' install happens before the conf inputs are read.
    let files = || -> Vec<String> {
        host.files()
            .into_iter()
            .filter(|f| !f.starts_with("opt/cni/bin/"))
            .collect()
    };
    let before = files();
    let o = host.once(args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(want),
        "want {want:?} in: {}",
        stderr(&o)
    );
    assert_eq!(files(), before, "{}", stderr(&o));
}

/// A watching installer, killed on drop.
struct Watcher(Option<Child>);

impl Watcher {
    /// SIGTERM, as the kubelet stops a container; its exit code and log.
    fn terminate(mut self) -> (Option<i32>, String) {
        let child = self.0.take().unwrap();
        // SAFETY: a plain signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        (out.status.code(), stderr(&out))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn base64_contains(b64: &str, want: &str) -> bool {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    String::from_utf8_lossy(&bytes).contains(want)
}

/// Polls `cond` until it holds (a generous bound: these are not timings).
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < until, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn keep_mode_picks_the_master_and_writes_conflist_kubeconfig_and_binary() {
    let h = Host::new();
    h.write("10-kindnet.conflist", &kindnet("1.0.0"));
    h.write(
        "20-other.conf",
        &json!({"cniVersion": "0.3.1", "name": "other", "type": "bridge"}),
    );
    h.write(
        "05-old.conf",
        &json!({"cniVersion": "0.3.1", "name": "old", "type": "multus"}),
    );
    h.write("01-notes.json", &json!({"name": "notes"}));
    ok(&h.once(&["--multus-log-level", "debug"]));

    let conf = h.read("etc/cni/net.d/00-multus.conflist");
    assert_eq!(
        conf,
        json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "plugins": [{
            "type": "multus",
            "capabilities": {"ips": true, "portMappings": true},
            "clusterNetwork": "/etc/cni/net.d/10-kindnet.conflist",
            "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
            "logLevel": "debug"}]})
    );
    assert_eq!(h.mode("etc/cni/net.d/00-multus.conflist"), 0o600);
    let kc = h.read("etc/cni/net.d/multus.d/multus.kubeconfig");
    assert_eq!(h.mode("etc/cni/net.d/multus.d/multus.kubeconfig"), 0o600);
    assert_eq!(
        kc["clusters"][0]["cluster"]["server"],
        "https://10.96.0.1:443"
    );
    assert_eq!(
        kc["users"][0]["user"]["tokenFile"],
        "/etc/cni/net.d/multus.d/token"
    );
    assert_eq!(
        std::fs::read_to_string(h.net_d().join("multus.d/token")).unwrap(),
        "token-1"
    );
    assert_eq!(h.mode("etc/cni/net.d/multus.d/token"), 0o600);
    let bin = h.root().join("opt/cni/bin/multus");
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(multus()).unwrap()
    );
    assert_eq!(h.mode("opt/cni/bin/multus"), 0o755);
    // Its compiler, for modules dropped in later.
    let ctl = h.root().join("opt/cni/bin/multusctl");
    assert_eq!(
        std::fs::read(&ctl).unwrap(),
        std::fs::read(MULTUSCTL).unwrap()
    );
    // The master is left where it was, unaltered.
    assert_eq!(
        h.read("etc/cni/net.d/10-kindnet.conflist"),
        kindnet("1.0.0")
    );

    // A second run changes nothing, and --check agrees.
    let before = std::fs::metadata(h.net_d().join("00-multus.conflist")).unwrap();
    ok(&h.once(&["--multus-log-level", "debug"]));
    let after = std::fs::metadata(h.net_d().join("00-multus.conflist")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&before),
        std::os::unix::fs::MetadataExt::ino(&after)
    );
    ok(&h
        .command(&["--check", "--multus-log-level", "debug"])
        .output()
        .unwrap());
    let o = h.command(&["--check"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "logLevel differs: not up to date");
    assert!(stderr(&o).contains("00-multus.conflist"), "{}", stderr(&o));

    // A conf sorting before multus's would be used by the runtime instead.
    h.write("00-cilium.conflist", &kindnet("1.0.0"));
    let o = h.once(&[
        "--multus-log-level",
        "debug",
        "--master-cni-file",
        "10-kindnet.conflist",
    ]);
    ok(&o);
    assert!(
        stderr(&o).contains("00-cilium.conflist sorts before"),
        "{}",
        stderr(&o)
    );
    let o = h
        .command(&[
            "--check",
            "--multus-log-level",
            "debug",
            "--master-cni-file",
            "10-kindnet.conflist",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("instead of multus"), "{}", stderr(&o));
}

#[test]
fn conf_for_a_0_3_1_master_named_file_and_config_keys() {
    let h = Host::new();
    h.write(
        "10-cbr0.conf",
        &json!({"cniVersion": "0.3.1", "name": "cbr0", "type": "bridge",
        "capabilities": {"bandwidth": true, "mac": false}}),
    );
    h.write(
        "20-flannel.conflist",
        &json!({"cniVersion": "0.3.1", "name": "flannel", "plugins": [{"type": "flannel"}]}),
    );
    let config = h.dir.path().join("config.json");
    std::fs::write(&config, r#"{"NamespaceIsolation": true, "globalNamespaces": "default,shared", "logLevel": "debug"}"#).unwrap();
    ok(&h.once(&[
        "--master-cni-file",
        "20-flannel.conflist",
        "--config",
        config.to_str().unwrap(),
        "--multus-log-level",
        "error",
        "--override-network-name",
        "--node-name",
        "node-7",
    ]));
    let conf = h.read("etc/cni/net.d/00-multus.conf");
    assert_eq!(
        conf,
        json!({"cniVersion": "0.3.1", "name": "flannel", "type": "multus",
               "clusterNetwork": "/etc/cni/net.d/20-flannel.conflist",
               "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
               "namespaceIsolation": true, "globalNamespaces": "default,shared", "logLevel": "error",
               "nodeName": "node-7"})
    );
    assert!(!h.net_d().join("00-multus.conflist").exists());

    // The master moves to 1.0.0: the conflist replaces the conf.
    h.write(
        "20-flannel.conflist",
        &json!({"cniVersion": "1.0.0", "name": "flannel", "plugins": [{"type": "flannel"}]}),
    );
    ok(&h.once(&["--master-cni-file", "20-flannel.conflist"]));
    assert!(h.net_d().join("00-multus.conflist").exists());
    assert!(!h.net_d().join("00-multus.conf").exists());
}

#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    let h = Host::new();
    refused(&h, &[], "gave up after 2s waiting for a master CNI conf in");
    h.write("10-a.conf", &json!({"cniVersion": "1.0.0", "name": "a"}));
    refused(&h, &[], "10-a.conf: plugins[0] \"type\": missing");
    h.write(
        "10-a.conf",
        &json!({"cniVersion": "1.0.0", "name": "a", "plugins": []}),
    );
    refused(&h, &[], "\"plugins\" is empty");
    std::fs::write(h.net_d().join("10-a.conf"), "{\"cniVersion\": \"1.0").unwrap();
    refused(&h, &[], "10-a.conf");
    std::fs::remove_file(h.net_d().join("10-a.conf")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/conf", h.net_d().join("10-a.conf")).unwrap();
    refused(&h, &[], "reading the master conf");
    std::fs::remove_file(h.net_d().join("10-a.conf")).unwrap();

    h.write("10-kindnet.conflist", &kindnet("1.0.0"));
    let config = h.dir.path().join("config.json");
    std::fs::write(&config, r#"{"logLevl": "debug"}"#).unwrap();
    refused(
        &h,
        &["--config", config.to_str().unwrap()],
        "unknown multus conf key \"logLevl\"",
    );
    std::fs::write(&config, r#"{"clusterNetwork": "x"}"#).unwrap();
    refused(
        &h,
        &["--config", config.to_str().unwrap()],
        "--master-cni-file",
    );
    refused(
        &h,
        &["--config", "/nonexistent.json"],
        "reading --config /nonexistent.json",
    );
    refused(&h, &["--multus-log-level", "loud"], "logLevel");
    refused(
        &h,
        &["--readiness-indicator-file", "/run/never"],
        "waiting for the readiness indicator file",
    );
    std::fs::remove_file(h.sa().join("token")).unwrap();
    refused(&h, &[], "sa/token");

    let o = h.command(&["--master-wait", "soon"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--master-wait"), "{}", stderr(&o));
    let o = h
        .command(&["--multus-bin", "/nonexistent/multus", "--once"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("reading /nonexistent/multus"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn waits_for_a_late_master_and_the_readiness_file() {
    use std::io::BufRead;
    let h = Host::new();
    let mut c = h.command(&[
        "--once",
        "--master-wait",
        "60s",
        "--readiness-indicator-file",
        "/run/flannel/ready",
    ]);
    let mut child = c.stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let mut until = |want: &str| {
        for line in lines.by_ref() {
            let line = line.unwrap();
            log.push_str(&line);
            log.push('\n');
            if line.contains(want) {
                return;
            }
        }
        panic!("no {want:?} in {log}");
    };
    until("waiting for the readiness indicator file");
    h.write("10-kindnet.conflist", &kindnet("1.0.0"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !h.net_d().join("00-multus.conflist").exists(),
        "written before the readiness file"
    );
    std::fs::create_dir_all(h.root().join("run/flannel")).unwrap();
    std::fs::write(h.root().join("run/flannel/ready"), "").unwrap();
    until("multus installed");
    assert!(child.wait().unwrap().success());
    let conf = h.read("etc/cni/net.d/00-multus.conflist");
    assert_eq!(
        conf["plugins"][0]["readinessindicatorfile"],
        "/run/flannel/ready"
    );

    // The master is late too: the installer says what it waits for.
    let h = Host::new();
    let mut child = h
        .command(&["--once", "--master-wait", "60s"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let waiting = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("waiting for a master CNI conf in"));
    assert!(waiting.is_some());
    h.write("10-kindnet.conflist", &kindnet("1.0.0"));
    assert!(child.wait().unwrap().success());
    assert!(h.net_d().join("00-multus.conflist").exists());
}

#[test]
fn watch_restores_regenerates_rotates_and_cleans_up() {
    let h = Host::new();
    h.write("10-kindnet.conflist", &kindnet("1.0.0"));
    let w = h.watch(&["--cleanup-on-exit"]);
    let conf = h.net_d().join("00-multus.conflist");
    eventually("the conf", || conf.exists());

    // Another CNI deletes our conf, then renames it (cilium).
    std::fs::remove_file(&conf).unwrap();
    eventually("the conf restored after a delete", || conf.exists());
    std::fs::rename(&conf, h.net_d().join("00-multus.conflist.cilium_bak")).unwrap();
    eventually("the conf restored after a rename", || conf.exists());

    // The token rotates.
    h.set_token("token-2");
    let token = h.net_d().join("multus.d/token");
    eventually("the rotated token", || {
        std::fs::read_to_string(&token).unwrap() == "token-2"
    });
    // So does the CA: the kubeconfig embeds the new one.
    std::fs::write(
        h.sa().join("ca.crt"),
        "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    eventually("the rotated CA", || {
        let kc = h.read("etc/cni/net.d/multus.d/multus.kubeconfig");
        kc["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .is_some_and(|c| base64_contains(c, "MIIC"))
    });

    // The master changes: new capabilities reach the conf.
    let mut m = kindnet("1.0.0");
    m["plugins"][1] = json!({"type": "bandwidth", "capabilities": {"bandwidth": true}});
    h.write("10-kindnet.conflist", &m);
    eventually("the regenerated conf", || {
        h.read("etc/cni/net.d/00-multus.conflist")["plugins"][0]["capabilities"]
            == json!({"ips": true, "bandwidth": true})
    });

    let (code, log) = w.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("renamed by another CNI"), "{log}");
    assert!(!conf.exists(), "--cleanup-on-exit removes the conf");
    assert!(h.net_d().join("10-kindnet.conflist").exists());
}

#[test]
fn move_mode_moves_the_master_and_restores_it_on_exit() {
    let h = Host::new();
    h.write("10-kindnet.conflist", &kindnet("1.0.0"));
    let original = std::fs::read(h.net_d().join("10-kindnet.conflist")).unwrap();
    let api = ApiNode::new();
    let w = api.watch(&h, &["--master-mode", "move", "--cleanup-on-exit"]);
    let conf = h.net_d().join("00-multus.conflist");
    eventually("the conf", || conf.exists());
    // Removed right after the conf is written (never a moment without a
    // network conf), so a moment after it appears.
    eventually("the master moved away", || {
        !h.net_d().join("10-kindnet.conflist").exists()
    });
    assert_eq!(
        std::fs::read(h.multus_net_d().join("10-kindnet.conflist")).unwrap(),
        original,
        "moved unaltered"
    );
    assert_eq!(
        h.read("etc/cni/net.d/00-multus.conflist")["plugins"][0]["clusterNetwork"],
        "kindnet"
    );
    let nad = api
        .api
        .nad("kube-system", "kindnet")
        .expect("the master's NAD");
    assert_eq!(nad["spec"]["config"], "");

    // The node's CNI writes its conf again: moved again.
    h.write("10-kindnet.conflist", &kindnet("1.0.0"));
    eventually("the rewritten master moved", || {
        !h.net_d().join("10-kindnet.conflist").exists()
    });

    let (code, log) = w.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(!conf.exists());
    assert_eq!(
        std::fs::read(h.net_d().join("10-kindnet.conflist")).unwrap(),
        original,
        "restored"
    );
    assert!(!h.multus_net_d().join("10-kindnet.conflist").exists());
}

/// `--cleanup-on-exit` in a DaemonSet's pod: a SIGTERM removes the conf
/// only when the DaemonSet is going away. In a rolling update the old
/// pod's SIGTERM used to remove the conf, and pods created before the new
/// installer started got the cluster network only (found by
/// `scripts/e2e`'s rolling scenario).
#[test]
fn cleanup_on_exit_only_when_the_daemonset_goes() {
    let node = ApiNode::new();
    node.api
        .add_pod("kube-system", "multus-x1", "uid-m", &[], &[]);
    node.api.set_pod_owner("kube-system", "multus-x1", "multus");
    let run = |ds: Option<bool>, down: bool, revoked: bool| {
        match ds {
            Some(deleting) => node.api.put_daemonset("kube-system", "multus", deleting),
            None => node.api.remove_daemonset("kube-system", "multus"),
        }
        let h = Host::new();
        h.write("10-kindnet.conflist", &kindnet("1.0.0"));
        let (mut c, _f) = node.command(&h, &["--cleanup-on-exit"]);
        c.env("POD_NAME", "multus-x1")
            .env("POD_NAMESPACE", "kube-system")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let w = Watcher(Some(c.spawn().unwrap()));
        let conf = h.net_d().join("00-multus.conflist");
        eventually("the conf", || conf.exists());
        node.api.set_down(down);
        if revoked {
            node.api.accept_token("the service account is deleted");
        }
        let (code, log) = w.terminate();
        node.api.set_down(false);
        node.api.accept_token("token-1");
        assert_eq!(code, Some(0), "{log}");
        (conf.exists(), log)
    };

    let (kept, log) = run(Some(false), false, false);
    assert!(kept, "a rolling update keeps the conf: {log}");
    assert!(
        log.contains("DaemonSet kube-system/multus still exists"),
        "{log}"
    );
    let (kept, log) = run(Some(true), false, false);
    assert!(!kept, "a DaemonSet being deleted: {log}");
    assert!(log.contains("is being deleted"), "{log}");
    let (kept, log) = run(None, false, false);
    assert!(!kept, "a deleted DaemonSet: {log}");
    // An API server that cannot answer: the conf stays, and the log says why.
    let (kept, log) = run(Some(true), true, false);
    assert!(kept, "{log}");
    assert!(
        log.contains("cannot tell whether the DaemonSet is being deleted"),
        "{log}"
    );
    // `kubectl delete -k deploy/`: the service account goes with the
    // DaemonSet, and the pod's token is refused (found by scripts/e2e
    // once its overlays kept POD_NAME): the conf goes.
    let (kept, log) = run(Some(false), false, true);
    assert!(!kept, "{log}");
    assert!(log.contains("credentials are refused"), "{log}");
    let gets: Vec<String> = node
        .api
        .requests()
        .into_iter()
        .filter(|r| r.contains("daemonsets"))
        .collect();
    assert_eq!(gets.len(), 3, "{gets:?}");
}

/// A node netns running the in-test API server; the installer runs inside.
struct ApiNode {
    ns: Netns,
    api: FakeKubeApi,
}

impl ApiNode {
    fn new() -> Self {
        let ns = Netns::new("t-inst").unwrap();
        let api = FakeKubeApi::start(&ns, "token-1").unwrap();
        Self { ns, api }
    }

    fn command(&self, h: &Host, args: &[&str]) -> (Command, std::fs::File) {
        let sa = self.api.dir.path().to_str().unwrap();
        let mut all = vec!["--serviceaccount-dir", sa];
        all.extend_from_slice(args);
        let mut c = h.command(&all);
        c.env("KUBERNETES_SERVICE_HOST", self.api.addr.ip().to_string())
            .env("KUBERNETES_SERVICE_PORT", self.api.addr.port().to_string());
        let f = in_netns(&mut c, &self.ns).unwrap();
        (c, f)
    }

    fn once(&self, h: &Host, args: &[&str]) -> Output {
        let mut all = vec!["--once"];
        all.extend_from_slice(args);
        let (mut c, _f) = self.command(h, &all);
        c.output().unwrap()
    }

    fn watch(&self, h: &Host, args: &[&str]) -> Watcher {
        let (mut c, _f) = self.command(h, args);
        Watcher(Some(
            c.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        ))
    }
}

#[test]
fn master_nad_is_created_once_and_left_alone() {
    let h = Host::new();
    h.write("10-kindnet.conflist", &kindnet("1.0.0"));
    let node = ApiNode::new();
    ok(&node.once(&h, &["--master-nad", "--multus-namespace", "net-system"]));
    let nad = node.api.nad("net-system", "kindnet").expect("created");
    assert_eq!(
        nad["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "multusctl"
    );
    // Keep mode: the NAD's empty config resolves by name in the master's dir.
    let conf = h.read("etc/cni/net.d/00-multus.conflist");
    assert_eq!(conf["plugins"][0]["confDir"], "/etc/cni/net.d");
    ok(&node.once(&h, &["--master-nad", "--multus-namespace", "net-system"]));
    assert_eq!(
        node.api.nad("net-system", "kindnet"),
        Some(nad),
        "left as it was"
    );
    let posts: Vec<String> = node
        .api
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("POST"))
        .collect();
    assert_eq!(
        posts,
        [
            "POST /apis/k8s.cni.cncf.io/v1/namespaces/net-system/network-attachment-definitions 201",
            "POST /apis/k8s.cni.cncf.io/v1/namespaces/net-system/network-attachment-definitions 409",
        ]
    );

    // A refused token is a clear error and leaves no conf behind.
    let h2 = Host::new();
    h2.write("10-kindnet.conflist", &kindnet("1.0.0"));
    node.api.accept_token("another");
    let o = node.once(&h2, &["--master-nad"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("POST network-attachment-definition kube-system/kindnet"),
        "{}",
        stderr(&o)
    );
    assert!(!h2.net_d().join("00-multus.conflist").exists());
}

/// The wasm cache's artifacts and index files with their inodes (the shim
/// links in `bin/` aside).
fn cache_inodes(dir: &Path) -> Vec<(String, u64)> {
    files_under(dir)
        .into_iter()
        .filter(|f| !f.starts_with("bin/"))
        .map(|f| {
            let ino =
                std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.join(&f)).unwrap());
            (f, ino)
        })
        .collect()
}

/// What a runtime hands multus for the conf at `path`: a conflist's plugin
/// with the list's name and version injected, as libcni does.
fn as_runtime_sends(path: &Path) -> Vec<u8> {
    let list: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut plugin = list["plugins"][0].clone();
    plugin["cniVersion"] = list["cniVersion"].clone();
    plugin["name"] = list["name"].clone();
    bytes(&plugin)
}

#[test]
fn installed_conf_runs_a_pod_end_to_end() {
    let node = Node::new();
    let api = FakeKubeApi::start(&node.ns, "token-1").unwrap();
    let dir = node.dir.path();
    // Installed on this machine (`--host-root /`), into the test's dirs.
    let (bin_dir, net_d, multus_net_d) = (dir.join("bin"), dir.join("net.d"), dir.join("multus.d"));
    std::fs::create_dir_all(&net_d).unwrap();
    for p in ["bridge", "host-local", "macvlan"] {
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::fs::copy(plugins().join(p), bin_dir.join(p)).unwrap();
    }
    // A bridge without isDefaultGateway: the pod attaches to it twice.
    let kindnet = json!({"cniVersion": "1.0.0", "name": "kindnet", "plugins": [{
        "type": "bridge", "bridge": "kind0", "isGateway": true,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.7.0/24"}]], "dataDir": node.data_dir()}}]});
    std::fs::write(net_d.join("10-kindnet.conflist"), bytes(&kindnet)).unwrap();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        bytes(&json!({"cniDir": node.cni_dir(), "confDir": multus_net_d, "wasmPluginDir": dir.join("plugins"), "wasmCacheDir": node.wasm_cache(),
            "storeRoots": [node.dir.path()]})),
    )
    .unwrap();
    let second = confs::macvlan_host_local("second", "uplink0", "10.245.0.0/24", &node.data_dir());
    api.add_nad("default", "second", Some(&second.to_string()), &[]);
    api.add_pod(
        "default",
        "web",
        "uid-web",
        &[(
            "k8s.v1.cni.cncf.io/networks",
            "second,kube-system/kindnet@kind1",
        )],
        &[],
    );

    // What the image ships (the opt-in interface plugins left out).
    let shipped = tempfile::tempdir().unwrap();
    for p in multus_testbed::node::SHIPPED_PLUGINS {
        let name = format!("{p}.wasm");
        std::fs::copy(built_plugins().join(&name), shipped.path().join(&name)).unwrap();
    }
    let install = |mode: &str| {
        let mut c = Command::new(MULTUSCTL);
        c.args(["install", mode, "--host-root", "/", "--master-mode", "move"])
            .arg("--multus-bin")
            .arg(multus())
            .arg("--plugins")
            .arg(shipped.path())
            .arg("--cni-bin-dir")
            .arg(&bin_dir)
            .arg("--cni-conf-dir")
            .arg(&net_d)
            .arg("--config")
            .arg(&config)
            .arg("--serviceaccount-dir")
            .arg(api.dir.path())
            .env("KUBERNETES_SERVICE_HOST", api.addr.ip().to_string())
            .env("KUBERNETES_SERVICE_PORT", api.addr.port().to_string())
            .env("POD_NAME", "multus-x1")
            .env("POD_NAMESPACE", "kube-system");
        let f = in_netns(&mut c, &node.ns).unwrap();
        (c, f)
    };
    let (mut c, _ns) = install("--once");
    let out = c.output().unwrap();
    ok(&out);
    assert!(stderr(&out).contains("precompiled"), "{}", stderr(&out));
    assert!(api.nad("kube-system", "kindnet").is_some());
    let precompiled = cache_inodes(&node.wasm_cache());
    assert!(
        precompiled.iter().any(|(f, _)| f.ends_with(".cwasm")),
        "{precompiled:?}"
    );

    let conf = as_runtime_sends(&net_d.join("00-multus.conflist"));
    let pod = Pod::new();
    let env = |cmd: &'static str| {
        vec![
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "inst-e2e"),
            ("CNI_NETNS", pod.path.as_str()),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID=uid-web",
            ),
            ("CNI_PATH", bin_dir.to_str().unwrap()),
        ]
    };
    let installed = bin_dir.join("multus");
    let add = multus_testbed::exec_cni(&installed, Some(&node.ns), &env("ADD"), &conf).unwrap();
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert_eq!(
        add.json()["interfaces"].as_array().map(|i| i.is_empty()),
        Some(false),
        "{}",
        add.stdout
    );
    let links = pod.ns.links().unwrap();
    for ifname in ["eth0", "net1", "kind1"] {
        assert!(links.iter().any(|l| l == ifname), "{ifname} in {links:?}");
    }
    assert!(pod.ns.addrs("eth0").unwrap()[0].starts_with("10.244.7."));
    assert!(pod.ns.addrs("kind1").unwrap()[0].starts_with("10.244.7."));
    assert!(pod.ns.addrs("net1").unwrap()[0].starts_with("10.245.0."));
    let status = api
        .annotation("default", "web", "k8s.v1.cni.cncf.io/network-status")
        .unwrap();
    assert!(status.contains("kube-system/kindnet"), "{status}");
    // The IPAM ran as the installed wasm host-local (through the shim link
    // multus makes in the cache dir), from what the install precompiled:
    // no artifact or digest index was written by the pod's ADD.
    assert!(node.wasm_cache().join("bin/host-local").exists());
    assert_eq!(cache_inodes(&node.wasm_cache()), precompiled);

    let del = multus_testbed::exec_cni(&installed, Some(&node.ns), &env("DEL"), &conf).unwrap();
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    assert!(node.cache_files().is_empty(), "{:?}", node.cache_files());
    assert!(node.reservations("kindnet").is_empty() && node.reservations("second").is_empty());
    assert!(node.veths().is_empty(), "{:?}", node.veths());

    // The watching installer, stopped in a rolling update: the conf stays.
    api.add_pod("kube-system", "multus-x1", "uid-m", &[], &[]);
    api.set_pod_owner("kube-system", "multus-x1", "multus");
    api.put_daemonset("kube-system", "multus", false);
    let multus_conf = net_d.join("00-multus.conflist");
    std::fs::remove_file(&multus_conf).unwrap();
    let (mut c, _ns) = install("--cleanup-on-exit");
    let w = Watcher(Some(
        c.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    eventually("the conf", || multus_conf.exists());
    let (code, log) = w.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(multus_conf.exists(), "{log}");

    // The deploy manifests grant exactly what multus and multusctl called
    // here: every request allowed, every rule used.
    let cluster: ClusterRole =
        serde_json::from_value(deploy::find("ClusterRole", Some("multus"))).unwrap();
    let role: Role =
        serde_json::from_value(deploy::find("Role", Some("multus-master-nad"))).unwrap();
    let role_ns = role.metadata.namespace.clone().unwrap();
    let (cluster, namespaced) = (
        deploy::grants(&cluster.rules.unwrap()),
        deploy::grants(&role.rules.unwrap()),
    );
    let mut used_cluster = std::collections::BTreeSet::new();
    let mut used_namespaced = std::collections::BTreeSet::new();
    for r in api.requests() {
        let (g, res, verb, ns) = deploy::authorization(&r);
        let key = (g, res, verb);
        if cluster.contains(&key) {
            used_cluster.insert(key);
        } else {
            assert!(
                namespaced.contains(&key) && ns == role_ns,
                "not granted: {r}"
            );
            used_namespaced.insert(key);
        }
    }
    assert_eq!(used_cluster, cluster, "ClusterRole rules nothing calls");
    assert_eq!(used_namespaced, namespaced, "Role rules nothing calls");
}

/// A module a new image no longer ships is removed from the plugin dir
/// (left there, a `bridge.wasm` would keep running every bridge network);
/// one an admin dropped there, or replaced since, stays.
#[test]
fn a_module_no_longer_shipped_is_removed_but_an_admins_stays() {
    let h = Host::new();
    h.write("10-kindnet.conflist", &kindnet("1.0.0"));
    let ship = |names: &[&str]| {
        let d = h.root().join(format!("ship-{}", names.len()));
        std::fs::create_dir_all(&d).unwrap();
        for n in names {
            std::fs::copy(
                built_plugins().join(format!("{n}.wasm")),
                d.join(format!("{n}.wasm")),
            )
            .unwrap();
        }
        d
    };
    let plugin_dir = h.root().join("etc/cni/multus/plugins");
    let first = ship(&["host-local", "bridge", "static"]);
    ok(&h.once(&["--plugins", first.to_str().unwrap(), "--skip-precompile"]));
    // The admin's own module, and a shipped one the admin replaced.
    std::fs::copy(
        built_plugins().join("tuning.wasm"),
        plugin_dir.join("custom.wasm"),
    )
    .unwrap();
    std::fs::copy(
        built_plugins().join("tuning.wasm"),
        plugin_dir.join("static.wasm"),
    )
    .unwrap();
    let second = ship(&["host-local"]);
    let o = h.once(&["--plugins", second.to_str().unwrap(), "--skip-precompile"]);
    ok(&o);
    let mut left: Vec<String> = std::fs::read_dir(&plugin_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wasm"))
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["custom.wasm", "host-local.wasm", "static.wasm"],
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("removed: no longer shipped"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn version_names_the_wit_package() {
    let out = Command::new(MULTUSCTL).arg("--version").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.starts_with("multusctl ")
            && line.contains(&format!("WIT {}", multus_host_functions::WIT_PACKAGE)),
        "{line}"
    );
}

#[test]
fn plugin_compile_errors_name_the_module() {
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.wasm");
    std::fs::write(&bad, b"not wasm").unwrap();
    let cache = d.path().join("cache");
    let run = |args: &[&std::ffi::OsStr]| {
        Command::new(MULTUSCTL)
            .args(["plugin", "compile", "--cache-dir"])
            .arg(&cache)
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&[bad.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("bad.wasm is not a valid component"),
        "{}",
        stderr(&o)
    );
    assert!(files_under(&cache).is_empty(), "{:?}", files_under(&cache));
    let o = run(&[
        std::ffi::OsStr::new("--index-as"),
        bad.as_os_str(),
        bad.as_os_str(),
        bad.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--index-as takes exactly one MODULE"),
        "{}",
        stderr(&o)
    );

    // A real component: compiled once, then found.
    let good = built_plugins().join("tuning.wasm");
    let o = run(&[good.as_os_str()]);
    assert!(
        o.status.success() && stderr(&o).contains(", compiled"),
        "{}",
        stderr(&o)
    );
    let o = run(&[good.as_os_str()]);
    assert!(
        o.status.success() && stderr(&o).contains("already compiled"),
        "{}",
        stderr(&o)
    );
}
