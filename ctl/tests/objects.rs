//! WasmPlugin objects against the in-test API server: `plugin push` makes
//! the object and its ConfigMap, each node's `plugin sync` places the
//! module with its grants and says so in its WasmPluginNode, `plugin
//! aggregate` counts those into the object's status, a changed object
//! rolls out (to a node that was offline too, on its next pass), a wrong
//! digest or a module no role accepts is refused while the node keeps what
//! it had, a deleted object's module goes, and an admin's own module is
//! never touched.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use multus::config::multus::MultusConf;
use multus_testbed::kube_api::FakeKubeApi;
use multus_testbed::node::built_plugins;
use multus_testbed::{in_netns, Netns};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const MULTUSCTL: &str = env!("CARGO_BIN_EXE_multusctl");
const NS: &str = "kube-system";
const PLUGINS: &str = "etc/cni/multus/plugins";

fn ctl(ns: &Netns, api: &FakeKubeApi, args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(MULTUSCTL);
    c.args(args).arg("--kubeconfig").arg(api.kubeconfig());
    let _ns = in_netns(&mut c, ns).unwrap();
    let out = c.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `plugin push FILE` with each grant as `--grant`.
fn push(ns: &Netns, api: &FakeKubeApi, file: &Path, grants: &[&str]) -> (i32, String, String) {
    let flags: Vec<&str> = grants.iter().flat_map(|g| ["--grant", g]).collect();
    push_with(ns, api, file, &flags)
}

/// `plugin push FILE` with `flags`.
fn push_with(ns: &Netns, api: &FakeKubeApi, file: &Path, flags: &[&str]) -> (i32, String, String) {
    let mut args = vec!["plugin", "push", file.to_str().unwrap()];
    args.extend(flags);
    ctl(ns, api, &args)
}

fn sync(ns: &Netns, api: &FakeKubeApi, node: &str, root: &Path) -> (i32, String) {
    sync_with(ns, api, node, root, &[])
}

/// One `plugin sync --once` pass of `node` with `extra` flags: the exit
/// code and everything it printed.
fn sync_with(
    ns: &Netns,
    api: &FakeKubeApi,
    node: &str,
    root: &Path,
    extra: &[&str],
) -> (i32, String) {
    let root = root.to_str().unwrap();
    let mut args = vec![
        "plugin",
        "sync",
        "--once",
        "--node",
        node,
        "--host-root",
        root,
    ];
    args.extend(extra);
    let (code, out, err) = ctl(ns, api, &args);
    (code, out + &err)
}

fn sha(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn module(name: &str) -> Vec<u8> {
    std::fs::read(built_plugins().join(format!("{name}.wasm"))).unwrap()
}

/// A node's view: the module's digest and the grants file, if placed.
fn placed(root: &Path, ty: &str) -> (Option<String>, Option<Value>) {
    let dir = root.join(PLUGINS);
    (
        std::fs::read(dir.join(format!("{ty}.wasm")))
            .ok()
            .map(|b| sha(&b)),
        std::fs::read(dir.join(format!("{ty}.grants.json")))
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap()),
    )
}

/// `node`'s entry for `ty` in its report.
fn node_status(api: &FakeKubeApi, ty: &str, node: &str) -> Value {
    let Some(report) = api.custom_object("wasmpluginnodes", "", node) else {
        return Value::Null;
    };
    report["status"]["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == ty)
        .cloned()
        .unwrap_or(Value::Null)
}

/// One `plugin aggregate --once`; the object's (ready, failed, reporting).
fn aggregate(ns: &Netns, api: &FakeKubeApi, ty: &str) -> (u64, u64, u64) {
    let (code, out, err) = ctl(ns, api, &["plugin", "aggregate", "--once"]);
    assert_eq!(code, 0, "{out}{err}");
    let st = &api.custom_object("wasmplugins", "", ty).unwrap()["status"];
    let n = |k: &str| st[k].as_u64().unwrap_or_else(|| panic!("no {k} in {st}"));
    (n("readyNodes"), n("failedNodes"), n("reportingNodes"))
}

#[test]
fn a_pushed_plugin_rolls_out_to_every_node_and_goes_when_deleted() {
    let ns = Netns::new("t-objects").unwrap();
    let api = FakeKubeApi::start(&ns, "token-1").unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tuning = module("tuning");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tuning.wasm");
    std::fs::write(&file, &tuning).unwrap();

    // Grants multus would refuse are refused before anything is written.
    let (code, _, err) = push(&ns, &api, &file, &["hostNet=true"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--grant") && err.contains("hostNet"), "{err}");
    assert!(api.custom_objects("configmaps", NS).is_empty());

    let (code, out, err) = push(&ns, &api, &file, &["hostNetns=true", "memoryLimitMib=16"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&sha(&tuning)) && out.contains("chained"),
        "{out}"
    );
    let obj = api.custom_object("wasmplugins", "", "tuning").unwrap();
    assert_eq!(obj["spec"]["sha256"], sha(&tuning));
    assert_eq!(
        obj["spec"]["grants"],
        json!({"hostNetns": true, "memoryLimitMib": 16})
    );

    // Two nodes converge, each reporting in its own WasmPluginNode.
    let before_sync = api.requests().len();
    for (name, root) in [("node-a", a.path()), ("node-b", b.path())] {
        let (code, log) = sync(&ns, &api, name, root);
        assert_eq!(code, 0, "{log}");
        let (digest, grants) = placed(root, "tuning");
        assert_eq!(digest.as_deref(), Some(sha(&tuning).as_str()));
        let grants = grants.unwrap();
        assert_eq!(
            (
                grants["hostNetns"].as_bool(),
                grants["memoryLimitMib"].as_u64()
            ),
            (Some(true), Some(16))
        );
        assert_eq!(grants["sha256"], sha(&tuning));
        assert_eq!(node_status(&api, "tuning", name)["sha256"], sha(&tuning));
    }
    sync_is_granted(&api.requests()[before_sync..], false);
    // What the aggregator called is what deploy/plugins grants it; a
    // second pass finds nothing to write.
    let before_aggregate = api.requests().len();
    assert_eq!(aggregate(&ns, &api, "tuning"), (2, 0, 2));
    aggregate_is_granted(&api.requests()[before_aggregate..]);
    let before_aggregate = api.requests().len();
    assert_eq!(aggregate(&ns, &api, "tuning"), (2, 0, 2));
    assert!(api.requests()[before_aggregate..]
        .iter()
        .all(|r| r.starts_with("GET")));
    // Precompiled: the artifact of the placed module is in the cache.
    let cache = a.path().join("var/lib/cni/multus/wasm-cache");
    assert!(multus::delegate::wasm::artifact::artifact_path(&cache, &sha(&tuning)).is_file());
    // multus applies the object's grants, and refuses a conf that grants
    // the type differently.
    let conf = |extra: &str| {
        let s = format!(
            r#"{{"cniVersion":"1.0.0","name":"m","type":"multus","clusterNetwork":"x","wasmPluginDir":"{}"{extra}}}"#,
            a.path().join(PLUGINS).display()
        );
        MultusConf::parse(s.as_bytes()).unwrap()
    };
    let s = conf("")
        .wasm
        .settings(&multus::boundary::PluginType::parse("tuning", "t").unwrap())
        .unwrap();
    assert_eq!(
        (s.host_netns, s.memory_limit_mib, s.sha256),
        (true, 16, Some(sha(&tuning)))
    );
    let e = conf(r#","wasmPlugins":{"tuning":{"hostNetns":false}}"#)
        .wasm
        .settings(&multus::boundary::PluginType::parse("tuning", "t").unwrap())
        .unwrap_err();
    assert!(e.contains("disagree"), "{e}");
    // A second run changes nothing and writes nothing: it reads its Node
    // and its report once at start, then a pass is the list alone (no
    // module read back, no report written again).
    let before = api.requests().len();
    let (code, _) = sync(&ns, &api, "node-a", a.path());
    assert_eq!(code, 0);
    let second = &api.requests()[before..];
    assert_eq!(
        second,
        [
            "GET /api/v1/nodes/node-a 404",
            "GET /apis/multus-wasm.io/v1alpha1/wasmpluginnodes/node-a 200",
            "GET /apis/multus-wasm.io/v1alpha1/wasmplugins 200"
        ],
        "{second:?}"
    );

    // A new version while node-b is offline: node-a takes it now, node-b
    // on its next pass. The push's replace races the aggregator's status
    // writes: a conflict is read again and retried.
    let v2 = module("route-override");
    std::fs::write(&file, &v2).unwrap();
    api.fail_next("PUT", "/wasmplugins/tuning", 409, 2);
    let (code, _, err) = push(&ns, &api, &file, &["hostNetns=true"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(api.faults_fired(), 2);
    assert_eq!(sync(&ns, &api, "node-a", a.path()).0, 0);
    assert_eq!(
        placed(a.path(), "tuning").0.as_deref(),
        Some(sha(&v2).as_str())
    );
    assert_eq!(
        placed(b.path(), "tuning").0.as_deref(),
        Some(sha(&tuning).as_str())
    );
    // Until counted again, the list says its counts are an older push's.
    let (_, out, _) = ctl(&ns, &api, &["plugin", "list", "--json"]);
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&rows[0]["readyNodes"], &rows[0]["stale"]),
        (&json!(2), &json!(true)),
        "{rows:#}"
    );
    assert_eq!(aggregate(&ns, &api, "tuning"), (1, 0, 2));
    let (_, out, _) = ctl(&ns, &api, &["plugin", "list", "--json"]);
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&rows[0]["readyNodes"], &rows[0]["stale"]),
        (&json!(1), &json!(false)),
        "{rows:#}"
    );
    assert_eq!(sync(&ns, &api, "node-b", b.path()).0, 0);
    assert_eq!(
        placed(b.path(), "tuning").0.as_deref(),
        Some(sha(&v2).as_str())
    );
    assert_eq!(aggregate(&ns, &api, "tuning"), (2, 0, 2));
    let (_, out, _) = ctl(&ns, &api, &["plugin", "list"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("tuning") && l.contains("chained") && l.contains(" 2 ")),
        "{out}"
    );

    // Deleted: every node removes the module and its grants; an admin's
    // own module beside it stays.
    std::fs::write(a.path().join(PLUGINS).join("mine.wasm"), b"admin's").unwrap();
    let (code, _, _) = ctl(&ns, &api, &["plugin", "list"]);
    assert_eq!(code, 0);
    api.delete_custom("wasmplugins", "", "tuning");
    assert_eq!(sync(&ns, &api, "node-a", a.path()).0, 0);
    assert_eq!(placed(a.path(), "tuning"), (None, None));
    assert!(a.path().join(PLUGINS).join("mine.wasm").is_file());
    assert!(node_status(&api, "tuning", "node-a").is_null());
    // A node's report goes with its Node (the garbage collector follows
    // the owner reference the node set when its Node existed).
    api.put_node("node-c", "uid-c");
    let c = tempfile::tempdir().unwrap();
    assert_eq!(sync(&ns, &api, "node-c", c.path()).0, 0);
    let report = api.custom_object("wasmpluginnodes", "", "node-c").unwrap();
    assert_eq!(
        report["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Node", "name": "node-c", "uid": "uid-c"}])
    );
}

/// deploy/plugins' rules for the aggregator grant what it called, and
/// nothing more.
fn aggregate_is_granted(requests: &[String]) {
    use k8s_openapi::api::rbac::v1::ClusterRole;
    use multus_testbed::manifests as deploy;
    let role: ClusterRole =
        serde_json::from_value(deploy::find("ClusterRole", Some("multus-plugin-aggregate")))
            .unwrap();
    let granted = deploy::grants(&role.rules.unwrap());
    let mut used = std::collections::BTreeSet::new();
    for r in requests {
        for (g, res, verb, _) in deploy::authorizations(r) {
            let key = (g, res, verb);
            assert!(granted.contains(&key), "not granted: {r}");
            used.insert(key);
        }
    }
    // The watch is the running aggregator's, not a pass's.
    let watch = (
        "multus-wasm.io".to_string(),
        "wasmpluginnodes".to_string(),
        "watch".to_string(),
    );
    used.insert(watch);
    assert_eq!(used, granted, "rules the aggregator never uses");
}

/// deploy/plugins' rules for the nodes' sync grant what it called, and
/// (`all_used`) nothing more.
fn sync_is_granted(requests: &[String], all_used: bool) {
    use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
    use multus_testbed::manifests as deploy;
    let cluster: ClusterRole =
        serde_json::from_value(deploy::find("ClusterRole", Some("multus-plugin-sync"))).unwrap();
    let role: Role =
        serde_json::from_value(deploy::find("Role", Some("multus-plugin-sync"))).unwrap();
    let (cluster, namespaced) = (
        deploy::grants(&cluster.rules.unwrap()),
        deploy::grants(&role.rules.unwrap()),
    );
    let mut used = std::collections::BTreeSet::new();
    for r in requests {
        for (g, res, verb, ns) in deploy::authorizations(r) {
            let key = (g, res, verb);
            assert!(
                cluster.contains(&key) || (namespaced.contains(&key) && ns == NS),
                "not granted: {r}"
            );
            used.insert(key);
        }
    }
    let granted: std::collections::BTreeSet<_> = cluster.union(&namespaced).cloned().collect();
    if all_used {
        assert_eq!(used, granted, "rules the sync never uses");
    }
}

#[test]
fn a_wrong_digest_or_an_unfit_module_is_refused_and_the_node_keeps_its_own() {
    let ns = Netns::new("t-objects-bad").unwrap();
    let api = FakeKubeApi::start(&ns, "token-1").unwrap();
    let root = tempfile::tempdir().unwrap();
    let good = module("static");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("static.wasm");
    std::fs::write(&file, &good).unwrap();
    assert_eq!(push(&ns, &api, &file, &[]).0, 0);
    assert_eq!(sync(&ns, &api, "n1", root.path()).0, 0);

    // Someone swaps the ConfigMap's bytes: the digest no longer matches.
    let mut cm = api
        .custom_object("configmaps", NS, "wasm-plugin-static")
        .unwrap();
    let other = module("host-local");
    cm["binaryData"]["module.wasm"] = base64::engine::general_purpose::STANDARD
        .encode(&other)
        .into();
    api.put_custom("configmaps", NS, cm);
    let mut obj = api.custom_object("wasmplugins", "", "static").unwrap();
    obj["spec"]["sha256"] = sha(b"something else").into();
    api.put_custom("wasmplugins", "", obj);
    let (code, log) = sync(&ns, &api, "n1", root.path());
    assert_eq!(code, 1, "{log}");
    assert_eq!(
        placed(root.path(), "static").0.as_deref(),
        Some(sha(&good).as_str())
    );
    let st = node_status(&api, "static", "n1");
    assert!(
        st["error"].as_str().unwrap().contains("not the object's"),
        "{st}"
    );
    assert_eq!(st["sha256"], sha(&good));

    // Bytes that are no component, with their true digest: no role takes them.
    let junk = b"\0asm\x0d\0\x01\0 not a component".to_vec();
    let mut cm = api
        .custom_object("configmaps", NS, "wasm-plugin-static")
        .unwrap();
    cm["binaryData"]["module.wasm"] = base64::engine::general_purpose::STANDARD
        .encode(&junk)
        .into();
    api.put_custom("configmaps", NS, cm);
    let mut obj = api.custom_object("wasmplugins", "", "static").unwrap();
    obj["spec"]["sha256"] = sha(&junk).into();
    api.put_custom("wasmplugins", "", obj);
    let (code, _) = sync(&ns, &api, "n1", root.path());
    assert_eq!(code, 1);
    assert_eq!(
        placed(root.path(), "static").0.as_deref(),
        Some(sha(&good).as_str())
    );
    assert!(node_status(&api, "static", "n1")["error"]
        .as_str()
        .unwrap()
        .contains("not a valid component"));
    // Nothing half-written is left in the plugin dir.
    let names: Vec<String> = std::fs::read_dir(root.path().join(PLUGINS))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".static.wasm.")),
        "{names:?}"
    );

    // An admin's own module of a type an object names is not replaced.
    let other_root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other_root.path().join(PLUGINS)).unwrap();
    std::fs::write(
        other_root.path().join(PLUGINS).join("static.wasm"),
        b"admin's",
    )
    .unwrap();
    let (code, _) = sync(&ns, &api, "n2", other_root.path());
    assert_eq!(code, 1);
    assert_eq!(
        std::fs::read(other_root.path().join(PLUGINS).join("static.wasm")).unwrap(),
        b"admin's"
    );
    assert!(node_status(&api, "static", "n2")["error"]
        .as_str()
        .unwrap()
        .contains("not placed by a WasmPlugin object"));
}

/// `plugin sync` as node n1, watching, a full pass every `interval`; its
/// stderr piped.
fn running_sync(ns: &Netns, api: &FakeKubeApi, root: &Path, interval: &str) -> std::process::Child {
    let mut c = Command::new(MULTUSCTL);
    c.args([
        "plugin",
        "sync",
        "--node",
        "n1",
        "--interval",
        interval,
        "--host-root",
    ])
    .arg(root)
    .arg("--kubeconfig")
    .arg(api.kubeconfig())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let _ns = in_netns(&mut c, ns).unwrap();
    c.spawn().unwrap()
}

/// Without `--once` the sync watches: an object pushed while it runs is
/// placed within seconds (the full-pass interval is an hour here), and a
/// SIGTERM ends it.
#[test]
fn a_running_sync_places_a_pushed_plugin_at_once() {
    let ns = Netns::new("t-objects-watch").unwrap();
    let api = FakeKubeApi::start(&ns, "token-1").unwrap();
    let root = tempfile::tempdir().unwrap();
    let before = api.requests().len();
    let mut child = running_sync(&ns, &api, root.path(), "1h");
    // Its first pass finds nothing; then the push.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("static.wasm");
    let bytes = module("static");
    std::fs::write(&file, &bytes).unwrap();
    // Its first report write fails: no other write wakes it, so it tries
    // again on its own, soon.
    api.fail_next("PATCH", "/wasmpluginnodes/n1", 500, 1);
    assert_eq!(push(&ns, &api, &file, &[]).0, 0);
    let pushed = std::time::Instant::now();
    while placed(root.path(), "static").0.as_deref() != Some(sha(&bytes).as_str()) {
        assert!(
            pushed.elapsed().as_secs() < 20,
            "not placed within 20 s of the push"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The aggregator's status write changes only the status: it is not a
    // reason to list again, nor is another node's report.
    let lists = || {
        api.requests()
            .iter()
            .filter(|r| *r == "GET /apis/multus-wasm.io/v1alpha1/wasmplugins 200")
            .count()
    };
    let placed_v1 = std::time::Instant::now();
    while node_status(&api, "static", "n1").is_null() {
        assert!(placed_v1.elapsed().as_secs() < 20, "n1 never reported");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(api.faults_fired(), 1);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let listed = lists();
    let other = tempfile::tempdir().unwrap();
    assert_eq!(sync(&ns, &api, "n2", other.path()).0, 0);
    assert_eq!(node_status(&api, "static", "n2")["sha256"], sha(&bytes));
    assert_eq!(aggregate(&ns, &api, "static"), (2, 0, 2));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // n2's own pass listed once, and the aggregator once.
    assert_eq!(lists(), listed + 2, "{:?}", api.requests());
    // A new version (its spec, so its generation, changed) does wake it.
    let v2 = module("host-local");
    std::fs::write(&file, &v2).unwrap();
    assert_eq!(push(&ns, &api, &file, &[]).0, 0);
    let pushed = std::time::Instant::now();
    while placed(root.path(), "static").0.as_deref() != Some(sha(&v2).as_str()) {
        assert!(
            pushed.elapsed().as_secs() < 20,
            "the new version not placed within 20 s of the push"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A deletion reaches it the same way.
    api.delete_custom("wasmplugins", "", "static");
    while placed(root.path(), "static").0.is_some() {
        assert!(
            pushed.elapsed().as_secs() < 40,
            "not removed after the deletion"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("placed") && log.contains("removed"), "{log}");
    // What a running sync calls (its Node and report at start, list,
    // watch, the module's ConfigMap, its report) is exactly what
    // deploy/plugins grants the nodes; the push's own requests are the
    // admin's, and the aggregator's and n2's are left out.
    let n1: Vec<String> = api.requests()[before..]
        .iter()
        .filter(|r| {
            // The pushes' (an admin's): creates, replaces, reads of one object.
            let pushes = r.starts_with("POST")
                || r.starts_with("PUT")
                || r.ends_with("/configmaps/wasm-plugin-static 404")
                || r.starts_with("GET /apis/multus-wasm.io/v1alpha1/wasmplugins/static ");
            !pushes && !r.contains("/n2") && !r.contains("/wasmpluginnodes ")
        })
        .cloned()
        .collect();
    let sync_requests = n1;
    sync_is_granted(&sync_requests, true);
}

/// Nodes reporting at once each write only their own report: none is
/// refused for another's write, and one aggregation counts them all (an
/// entry per node in the one object's status made every node's write a
/// merge over all of them, sent whole to every node watching).
#[test]
fn nodes_reporting_at_once_never_conflict_and_the_counts_add_up() {
    const NODES: usize = 8;
    let ns = Netns::new("t-objects-fleet").unwrap();
    let api = FakeKubeApi::start(&ns, "token-1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("static.wasm");
    let bytes = module("static");
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(push(&ns, &api, &file, &[]).0, 0);
    let roots: Vec<tempfile::TempDir> = (0..NODES).map(|_| tempfile::tempdir().unwrap()).collect();
    let before = api.requests().len();
    std::thread::scope(|s| {
        for (i, root) in roots.iter().enumerate() {
            let (ns, api) = (&ns, &api);
            s.spawn(move || {
                let (code, log) = sync(ns, api, &format!("node-{i}"), root.path());
                assert_eq!(code, 0, "{log}");
            });
        }
    });
    let writes: Vec<String> = api.requests()[before..]
        .iter()
        .filter(|r| !r.starts_with("GET"))
        .cloned()
        .collect();
    // One write per node, each creating its own report; nothing refused,
    // and the WasmPlugin itself not written by any node.
    assert_eq!(writes.len(), NODES, "{writes:?}");
    for i in 0..NODES {
        assert!(
            writes.contains(&format!(
                "PATCH /apis/multus-wasm.io/v1alpha1/wasmpluginnodes/node-{i} 201"
            )),
            "{writes:?}"
        );
        assert_eq!(
            node_status(&api, "static", &format!("node-{i}"))["sha256"],
            sha(&bytes)
        );
    }
    assert_eq!(
        aggregate(&ns, &api, "static"),
        (NODES as u64, 0, NODES as u64)
    );
}

/// A running aggregator counts reports as they come (its watch of the
/// WasmPluginNodes), and a node whose report goes (its Node deleted, the
/// garbage collector following the owner) stops counting; SIGTERM ends it.
#[test]
fn a_running_aggregator_counts_reports_as_they_come() {
    let ns = Netns::new("t-objects-aggr").unwrap();
    let api = FakeKubeApi::start(&ns, "token-1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("static.wasm");
    std::fs::write(&file, module("static")).unwrap();
    assert_eq!(push(&ns, &api, &file, &[]).0, 0);
    let mut c = Command::new(MULTUSCTL);
    c.args([
        "plugin",
        "aggregate",
        "--settle",
        "100ms",
        "--interval",
        "1h",
    ])
    .arg("--kubeconfig")
    .arg(api.kubeconfig())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let _ns = in_netns(&mut c, &ns).unwrap();
    let mut child = c.spawn().unwrap();
    drop(_ns);
    let counted = |want: (u64, u64)| {
        let start = std::time::Instant::now();
        loop {
            let st = &api.custom_object("wasmplugins", "", "static").unwrap()["status"];
            let got = (
                st["readyNodes"].as_u64().unwrap_or(99),
                st["reportingNodes"].as_u64().unwrap_or(99),
            );
            if got == want {
                return;
            }
            assert!(
                start.elapsed().as_secs() < 20,
                "{st} after 20 s, want {want:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    counted((0, 0));
    let roots: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    assert_eq!(sync(&ns, &api, "n1", roots[0].path()).0, 0);
    counted((1, 1));
    assert_eq!(sync(&ns, &api, "n2", roots[1].path()).0, 0);
    counted((2, 2));
    api.delete_custom("wasmpluginnodes", "", "n2");
    counted((1, 1));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
}

/// For a push to `reg`: a dir holding its docker config and the static
/// module, the config's and the module's paths, the module, its image.
fn staged(
    reg: &multus_testbed::registry::Registry,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    Vec<u8>,
    String,
) {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("config.json");
    std::fs::write(&creds, reg.docker_config()).unwrap();
    let file = dir.path().join("static.wasm");
    let v1 = module("static");
    std::fs::write(&file, &v1).unwrap();
    let image = format!("{}/plugins/static:v1", reg.host);
    (dir, creds, file, v1, image)
}

/// A plugin shipped through a real OCI registry (docker-registry with
/// htpasswd auth, in the test's namespace): `plugin push --image` pushes
/// it and makes the object; a node pulls it only from a registry its
/// flags allow, only with the credentials its docker config holds for
/// that registry, and only the blob the object's sha256 names.
#[test]
fn a_plugin_from_a_registry_needs_the_nodes_flags_and_credentials() {
    use multus_testbed::registry::{Auth, Registry};
    let ns = Netns::new("t-objects-oci").unwrap();
    let api = FakeKubeApi::start(&ns, "token-1").unwrap();
    let reg = Registry::start(&ns, 5000, Auth::Basic).unwrap();
    let (_dir, creds, file, v1, image) = staged(&reg);

    // Without the credentials the registry refuses the push; nothing is
    // written to the cluster.
    let (code, _, err) = push_with(
        &ns,
        &api,
        &file,
        &["--image", &image, "--insecure-registry"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--image"), "{err}");
    assert!(api.custom_object("wasmplugins", "", "static").is_none());
    let (code, out, err) = push_with(
        &ns,
        &api,
        &file,
        &[
            "--image",
            &image,
            "--insecure-registry",
            "--registry-auth",
            creds.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&image), "{out}");
    let obj = api.custom_object("wasmplugins", "", "static").unwrap();
    assert_eq!(obj["spec"]["source"], json!({"image": image}));
    // Only the object: no ConfigMap.
    assert!(api.custom_objects("configmaps", NS).is_empty());

    let root = tempfile::tempdir().unwrap();
    let sync_with = |extra: &[&str]| sync_with(&ns, &api, "n1", root.path(), extra);
    // A registry the node was not given is never contacted.
    let (code, log) = sync_with(&[]);
    assert_eq!(code, 1, "{log}");
    assert!(node_status(&api, "static", "n1")["error"]
        .as_str()
        .unwrap()
        .contains("not one this node may pull from"));
    assert_eq!(placed(root.path(), "static").0, None);
    // Allowed, but without credentials: the registry refuses.
    let (code, log) = sync_with(&["--insecure-registry", &reg.host]);
    assert_eq!(code, 1, "{log}");
    let e = node_status(&api, "static", "n1")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(e.contains("pulling") && e.contains("Not authorized"), "{e}");
    assert_eq!(placed(root.path(), "static").0, None);
    // With the node's credentials for that registry: placed.
    let auth = [
        "--insecure-registry",
        &reg.host,
        "--registry-auth",
        creds.to_str().unwrap(),
    ];
    let (code, log) = sync_with(&auth);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        placed(root.path(), "static").0.as_deref(),
        Some(sha(&v1).as_str())
    );
    assert_eq!(node_status(&api, "static", "n1")["sha256"], sha(&v1));

    // An object naming bytes the repository does not hold is refused,
    // and the node keeps what it runs.
    let mut obj = api.custom_object("wasmplugins", "", "static").unwrap();
    obj["spec"]["sha256"] = sha(&module("host-local")).into();
    api.put_custom("wasmplugins", "", obj);
    let (code, log) = sync_with(&auth);
    assert_eq!(code, 1, "{log}");
    assert_eq!(
        placed(root.path(), "static").0.as_deref(),
        Some(sha(&v1).as_str())
    );
    assert!(node_status(&api, "static", "n1")["error"]
        .as_str()
        .unwrap()
        .contains("pulling"));

    // A registry whose challenge sends clients to a token service on
    // another host: the node's credentials for it are not sent there.
    let sly = Registry::start(
        &ns,
        5001,
        Auth::TokenAt("http://127.0.0.9:7000/token".into()),
    )
    .unwrap();
    let mut creds2: Value = serde_json::from_str(&sly.docker_config()).unwrap();
    creds2["auths"][&reg.host] = json!({"username": "u", "password": "p"});
    std::fs::write(&creds, creds2.to_string()).unwrap();
    let mut obj = api.custom_object("wasmplugins", "", "static").unwrap();
    obj["spec"]["source"]["image"] = format!("{}/plugins/static:v2", sly.host).into();
    obj["spec"]["sha256"] = sha(&module("route-override")).into();
    api.put_custom("wasmplugins", "", obj);
    let (code, log) = sync_with(&[
        "--insecure-registry",
        &reg.host,
        "--insecure-registry",
        &sly.host,
        "--registry-auth",
        creds.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{log}");
    let e = node_status(&api, "static", "n1")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        e.contains("asks for its credentials to go to") && e.contains("127.0.0.9:7000"),
        "{e}"
    );
}

/// A module that failed is not fetched again at every pass: a running
/// sync with a full pass every second fetches a refused object's bytes
/// once in 5 s (tried again after 30 s), while reporting the error all
/// along.
#[test]
fn a_refused_module_is_not_fetched_at_every_pass() {
    let ns = Netns::new("t-objects-held").unwrap();
    let api = FakeKubeApi::start(&ns, "token-1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("static.wasm");
    std::fs::write(&file, module("static")).unwrap();
    assert_eq!(push(&ns, &api, &file, &[]).0, 0);
    let mut obj = api.custom_object("wasmplugins", "", "static").unwrap();
    obj["spec"]["sha256"] = sha(b"other bytes").into();
    api.put_custom("wasmplugins", "", obj);
    let root = tempfile::tempdir().unwrap();
    let mut child = running_sync(&ns, &api, root.path(), "1s");
    let reads = || {
        api.requests()
            .iter()
            .filter(|r| r.contains("/configmaps/wasm-plugin-static "))
            .count()
    };
    let start = std::time::Instant::now();
    while node_status(&api, "static", "n1").is_null() {
        assert!(start.elapsed().as_secs() < 20, "n1 never reported");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let lists = |api: &FakeKubeApi| {
        api.requests()
            .iter()
            .filter(|r| *r == "GET /apis/multus-wasm.io/v1alpha1/wasmplugins 200")
            .count()
    };
    let (first_reads, first_lists) = (reads(), lists(&api));
    std::thread::sleep(std::time::Duration::from_secs(5));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    // Passes ran (a list each), and none read the module again, nor
    // wrote the report again (the same error).
    assert!(lists(&api) >= first_lists + 3, "{:?}", api.requests());
    assert_eq!(reads(), first_reads, "{:?}", api.requests());
    let writes = api
        .requests()
        .iter()
        .filter(|r| r.starts_with("PATCH"))
        .count();
    assert_eq!(writes, 1, "{:?}", api.requests());
    assert!(node_status(&api, "static", "n1")["error"]
        .as_str()
        .unwrap()
        .contains("not the object's"));
}

/// A registry whose certificate a private CA signed (docker-registry over
/// HTTPS): push and pull fail on the certificate until the admin names
/// the CA (`--registry-ca`), which is then trusted for the TLS handshake
/// and the token-realm check alike; a file that is no certificate is
/// named at once.
#[test]
fn a_registry_behind_a_private_ca_needs_its_ca() {
    use multus_testbed::registry::{Auth, Registry};
    let ns = Netns::new("t-objects-ca").unwrap();
    let api = FakeKubeApi::start(&ns, "token-1").unwrap();
    let reg = Registry::start_tls(&ns, 5002, Auth::Basic).unwrap();
    let ca = reg.ca.clone().unwrap();
    let (dir, creds, file, v1, image) = staged(&reg);
    let push = |extra: &[&str]| {
        let mut args = vec![
            "--image",
            &image,
            "--registry-auth",
            creds.to_str().unwrap(),
        ];
        args.extend(extra);
        push_with(&ns, &api, &file, &args)
    };
    let (code, _, err) = push(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--image") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(api.custom_object("wasmplugins", "", "static").is_none());
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let (code, _, err) = push(&["--registry-ca", junk.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--registry-ca") && err.contains("junk.pem"),
        "{err}"
    );
    let (code, out, err) = push(&["--registry-ca", ca.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&image), "{out}");

    let root = tempfile::tempdir().unwrap();
    let sync_with = |extra: &[&str]| {
        let mut args = vec![
            "--registry",
            &reg.host,
            "--registry-auth",
            creds.to_str().unwrap(),
        ];
        args.extend(extra);
        sync_with(&ns, &api, "n1", root.path(), &args)
    };
    let (code, log) = sync_with(&[]);
    assert_eq!(code, 1, "{log}");
    let e = node_status(&api, "static", "n1")["error"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(e.contains("certificate"), "{e}");
    assert_eq!(placed(root.path(), "static").0, None);
    let (code, log) = sync_with(&["--registry-ca", ca.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        placed(root.path(), "static").0.as_deref(),
        Some(sha(&v1).as_str())
    );
    let (code, log) = sync_with(&["--registry-ca", junk.to_str().unwrap()]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("--registry-ca"), "{log}");
}
