//! `multusctl ipam reconcile` against the in-test API server: frees the
//! allocations and reservations of pods that are gone, keeps every pod's
//! that exists, reports, and with `--dry-run` changes nothing.

use std::process::Command;

use multus_testbed::kube_api::FakeKubeApi;
use multus_testbed::{in_netns, Netns};
use serde_json::{json, Value};

const MULTUSCTL: &str = env!("CARGO_BIN_EXE_multusctl");
const NS: &str = "kube-system";

/// `multusctl ipam <args> --kubeconfig <api's> <extra>` in `ns`.
fn ipam(ns: &Netns, api: &FakeKubeApi, args: &[&str], extra: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(MULTUSCTL);
    c.arg("ipam")
        .args(args)
        .arg("--kubeconfig")
        .arg(api.kubeconfig())
        .args(extra);
    let _ns = in_netns(&mut c, ns).unwrap();
    let out = c.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn reconcile(ns: &Netns, api: &FakeKubeApi, extra: &[&str]) -> (i32, String, String) {
    ipam(ns, api, &["reconcile"], extra)
}

fn reservation(ip: &str, podref: &str) -> Value {
    json!({"apiVersion": "whereabouts.cni.cncf.io/v1alpha1", "kind": "OverlappingRangeIPReservation",
        "metadata": {"name": ip}, "spec": {"podref": podref, "ifname": "net1"}})
}

#[test]
fn frees_what_gone_pods_hold() {
    let ns = Netns::new("t-ipam").unwrap();
    let api = FakeKubeApi::start(&ns, "token-1").unwrap();
    api.add_pod("default", "alive", "uid-a", &[], &[]);
    api.put_custom(
        "ippools",
        NS,
        json!({
        "apiVersion": "whereabouts.cni.cncf.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "10.246.0.0-24"},
        "spec": {"range": "10.246.0.0/24", "allocations": {
            "16": {"id": "c-alive", "podref": "default/alive", "ifname": "net1"},
            "17": {"id": "c-gone", "podref": "default/gone", "ifname": "net1"}}}}),
    );
    api.put_custom(
        "overlappingrangeipreservations",
        NS,
        reservation("10.246.0.16", "default/alive"),
    );
    api.put_custom(
        "overlappingrangeipreservations",
        NS,
        reservation("10.246.0.17", "default/gone"),
    );

    let (code, out, err) = reconcile(&ns, &api, &["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would free 10.246.0.17 from IPPool 10.246.0.0-24 (default/gone, container c-gone, net1)"),
        "{out}"
    );
    assert!(
        out.contains("would free reservation 10.246.0.17 (default/gone)"),
        "{out}"
    );
    assert_eq!(
        api.custom_object("ippools", NS, "10.246.0.0-24").unwrap()["spec"]["allocations"]
            .as_object()
            .unwrap()
            .len(),
        2,
        "a dry run changes nothing"
    );

    let (code, out, err) = reconcile(&ns, &api, &["--json"]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["namespace"], NS);
    assert_eq!(report["pools"], 1);
    assert_eq!(report["allocations"], 2);
    assert_eq!(
        report["freed"],
        json!([{"pool": "10.246.0.0-24", "ip": "10.246.0.17",
        "podref": "default/gone", "containerID": "c-gone", "ifname": "net1"}])
    );
    let pool = api.custom_object("ippools", NS, "10.246.0.0-24").unwrap();
    let left: Vec<&String> = pool["spec"]["allocations"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(left, ["16"]);
    let res: Vec<Value> = api.custom_objects("overlappingrangeipreservations", NS);
    assert_eq!(res.len(), 1);
    assert_eq!(res[0]["metadata"]["name"], "10.246.0.16");

    // Nothing left to free; a stale pool write is retried, not lost.
    let (code, out, _) = reconcile(&ns, &api, &[]);
    assert_eq!(code, 0);
    assert!(out.ends_with("freed=0 reservations=0\n"), "{out}");

    let (code, _, err) = reconcile(&ns, &api, &["--namespace", "other"]);
    assert_eq!(code, 0, "{err}");
    let missing = Command::new(MULTUSCTL)
        .args(["ipam", "reconcile", "--kubeconfig", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("--kubeconfig") && err.contains("/nonexistent"),
        "{err}"
    );
}

/// A 409 on the pool write (a pod's ADD wrote it in between) makes the
/// reconciler read the pool again and recompute; the orphan still goes.
#[test]
fn a_concurrent_pool_write_is_not_lost() {
    let ns = Netns::new("t-ipam").unwrap();
    let api = FakeKubeApi::start(&ns, "token-1").unwrap();
    api.put_custom(
        "ippools",
        NS,
        json!({
        "apiVersion": "whereabouts.cni.cncf.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "10.9.0.0-24"},
        "spec": {"range": "10.9.0.0/24", "allocations": {
            "1": {"id": "c-gone", "podref": "default/gone", "ifname": "net1"}}}}),
    );
    api.fail_next("PUT", "/ippools/", 409, 1);
    let (code, out, err) = reconcile(&ns, &api, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("freed 10.9.0.1"), "{out}");
    assert!(
        api.custom_object("ippools", NS, "10.9.0.0-24").unwrap()["spec"]["allocations"]
            .as_object()
            .unwrap()
            .is_empty()
    );
}

/// GC with node slices (run here with `plugin run`, as multus runs a GC):
/// this node's slice pools keep exactly the valid attachments; another
/// node's slice is never touched, and without slices GC frees nothing.
#[test]
fn gc_frees_leaks_in_this_nodes_slices_only() {
    let ns = Netns::new("t-ipam").unwrap();
    let api = FakeKubeApi::start(&ns, "token-1").unwrap();
    api.put_custom(
        "nodeslicepools",
        NS,
        json!({
        "apiVersion": "whereabouts.cni.cncf.io/v1alpha1", "kind": "NodeSlicePool",
        "metadata": {"name": "wa-net"},
        "spec": {"range": "10.120.0.0/24", "sliceSize": "/29"},
        "status": {"allocations": [{"nodeName": "node-a", "sliceRange": "10.120.0.0/29"},
                                   {"nodeName": "node-b", "sliceRange": "10.120.0.8/29"}]}}),
    );
    let pool = |name: &str, ids: &[(&str, &str)]| {
        let allocations: serde_json::Map<String, Value> = ids
            .iter()
            .enumerate()
            .map(|(i, (id, pod))| {
                (
                    (i + 1).to_string(),
                    json!({"id": id, "podref": pod, "ifname": "net1"}),
                )
            })
            .collect();
        json!({"apiVersion": "whereabouts.cni.cncf.io/v1alpha1", "kind": "IPPool",
               "metadata": {"name": name}, "spec": {"range": "", "allocations": allocations}})
    };
    let mut a = pool(
        "node-a-10.120.0.0-29",
        &[("c-live", "default/live"), ("c-leak", "default/leak")],
    );
    a["spec"]["range"] = json!("10.120.0.0/29");
    let mut b = pool("node-b-10.120.0.8-29", &[("c-other", "default/other")]);
    b["spec"]["range"] = json!("10.120.0.8/29");
    api.put_custom("ippools", NS, a);
    api.put_custom("ippools", NS, b);
    api.put_custom(
        "overlappingrangeipreservations",
        NS,
        reservation("10.120.0.2", "default/leak"),
    );

    let dir = tempfile::tempdir().unwrap();
    let gc = |slices: bool| {
        let mut ipam = json!({"type": "whereabouts", "range": "10.120.0.0/24",
            "kubernetes": {"kubeconfig": api.kubeconfig()}});
        if slices {
            ipam["node_slice_size"] = json!("/29");
        }
        let conf = dir.path().join("gc.json");
        std::fs::write(
            &conf,
            json!({"cniVersion": "1.1.0", "name": "wa-net", "type": "whereabouts",
            "ipam": ipam,
            "cni.dev/valid-attachments": [{"containerID": "c-live", "ifname": "net1"}]})
            .to_string(),
        )
        .unwrap();
        let mut c = Command::new(MULTUSCTL);
        c.args(["plugin", "run"])
            .arg(multus_testbed::node::built_plugins().join("whereabouts.wasm"))
            .arg("--conf")
            .arg(&conf)
            .args(["--command", "GC", "--netns"])
            .arg(ns.path())
            .env("NODE_NAME", "node-a");
        let _ns = in_netns(&mut c, &ns).unwrap();
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    let ids = |name: &str| -> Vec<String> {
        api.custom_object("ippools", NS, name).unwrap()["spec"]["allocations"]
            .as_object()
            .unwrap()
            .values()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    gc(false);
    assert_eq!(
        ids("node-a-10.120.0.0-29"),
        ["c-live", "c-leak"],
        "no slices: nothing freed"
    );
    gc(true);
    assert_eq!(ids("node-a-10.120.0.0-29"), ["c-live"]);
    assert_eq!(
        ids("node-b-10.120.0.8-29"),
        ["c-other"],
        "another node's slice"
    );
    assert!(api
        .custom_objects("overlappingrangeipreservations", NS)
        .is_empty());
}

fn slices(ns: &Netns, api: &FakeKubeApi, extra: &[&str]) -> (i32, String, String) {
    ipam(ns, api, &["slices", "--once"], extra)
}

/// The pool's list as (node, slice).
fn slice_list(api: &FakeKubeApi, pool: &str) -> Vec<(String, String)> {
    api.custom_object("nodeslicepools", NS, pool).unwrap()["status"]["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["nodeName"].as_str().unwrap().to_string(),
                a["sliceRange"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn sliced_nad(range: &str, size: &str) -> String {
    json!({"cniVersion": "1.0.0", "name": "sliced", "type": "macvlan", "master": "eth0",
           "ipam": {"type": "whereabouts", "range": range, "node_slice_size": size}})
    .to_string()
}

/// `multusctl ipam slices`: every Node gets a slice before its pods ask,
/// in the list whereabouts' controller writes (every slice, free ones with
/// an empty node); a deleted Node's slice is free again and, while its
/// IPPool still holds addresses, given out last; a full range, a dry run
/// and two NADs cutting one pool differently are reported; each request
/// it makes is one deploy/whereabouts/slices.yaml grants.
#[test]
fn slices_are_given_before_pods_ask() {
    let ns = Netns::new("t-slices").unwrap();
    let api = FakeKubeApi::start(&ns, "token-1").unwrap();
    for n in ["n1", "n2", "n3"] {
        api.put_node(n, &format!("uid-{n}"));
    }
    api.add_nad(
        "default",
        "sliced",
        Some(&sliced_nad("10.50.0.0/24", "/26")),
        &[],
    );
    api.add_nad("default", "plain", Some(r#"{"name":"plain","type":"bridge","ipam":{"type":"whereabouts","range":"10.51.0.0/24"}}"#), &[]);

    let (code, out, err) = slices(&ns, &api, &["--dry-run"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        out.contains("would give 10.50.0.0/26 of NodeSlicePool sliced to node n1"),
        "{out}"
    );
    assert!(
        api.custom_object("nodeslicepools", NS, "sliced").is_none(),
        "a dry run writes nothing"
    );

    let (code, out, err) = slices(&ns, &api, &[]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.ends_with("pools=1 assigned=3 freed=0\n"), "{out}");
    let pool = api.custom_object("nodeslicepools", NS, "sliced").unwrap();
    assert_eq!(
        pool["spec"],
        json!({"range": "10.50.0.0/24", "sliceSize": "/26"})
    );
    let s = |n: &str, i: u32| (n.to_string(), format!("10.50.0.{}/26", i * 64));
    assert_eq!(
        slice_list(&api, "sliced"),
        [s("n1", 0), s("n2", 1), s("n3", 2), s("", 3)]
    );

    // Again: nothing to write.
    let before = api.requests().len();
    let (code, out, _) = slices(&ns, &api, &[]);
    assert_eq!(code, 0);
    assert!(out.ends_with("assigned=0 freed=0\n"), "{out}");
    assert!(
        !api.requests()[before..]
            .iter()
            .any(|r| r.starts_with("PUT")),
        "{:?}",
        &api.requests()[before..]
    );

    // n1 is lost with a pod's address in its slice's IPPool; n4 joins: it
    // gets the slice nobody used, n5 then the lost node's.
    api.put_custom(
        "ippools",
        NS,
        json!({"apiVersion": "whereabouts.cni.cncf.io/v1alpha1", "kind": "IPPool",
               "metadata": {"name": "n1-10.50.0.0-26"},
               "spec": {"range": "10.50.0.0/26", "allocations": {
                   "1": {"id": "c1", "podref": "default/lost", "ifname": "net1"}}}}),
    );
    api.remove_node("n1");
    api.put_node("n4", "uid-n4");
    let (code, out, err) = slices(&ns, &api, &[]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        out.contains("freed 10.50.0.0/26 of NodeSlicePool sliced (node n1 is gone)"),
        "{out}"
    );
    assert!(
        out.contains("gave 10.50.0.192/26 of NodeSlicePool sliced to node n4"),
        "{out}"
    );
    assert_eq!(
        slice_list(&api, "sliced"),
        [s("", 0), s("n2", 1), s("n3", 2), s("n4", 3)]
    );
    api.put_node("n5", "uid-n5");
    api.put_node("n6", "uid-n6");
    let (code, out, _) = slices(&ns, &api, &[]);
    assert_eq!(code, 1, "a node left without a slice: {out}");
    assert!(
        out.contains("gave 10.50.0.0/26 of NodeSlicePool sliced to node n5"),
        "{out}"
    );
    assert!(
        out.contains("every slice is held; no slice for node(s) n6"),
        "{out}"
    );

    // Running: a node that goes is seen by the watch, and the waiting
    // node gets its slice without waiting for --interval.
    let mut c = Command::new(MULTUSCTL);
    c.args(["ipam", "slices", "--interval", "10m", "--kubeconfig"])
        .arg(api.kubeconfig())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let _in = in_netns(&mut c, &ns).unwrap();
    let mut child = c.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    api.remove_node("n3");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while slice_list(&api, "sliced")[2] != s("n6", 2) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            slice_list(&api, "sliced")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A NAD created while it runs: its pool, every node holding a slice.
    api.add_nad(
        "default",
        "late",
        Some(&sliced_nad("10.52.0.0/24", "/26").replace("\"sliced\"", "\"late\"")),
        &[],
    );
    while api
        .custom_object("nodeslicepools", NS, "late")
        .is_none_or(|p| {
            p["status"]["allocations"]
                .as_array()
                .is_none_or(|a| a.iter().filter(|a| a["nodeName"] != "").count() < 4)
        })
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            api.custom_object("nodeslicepools", NS, "late")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    api.remove_nad("default", "late");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));

    // Each refused, the pool left as it is: two NADs cutting one pool
    // differently; a NAD now cutting an existing pool another way (not
    // re-cut under the IPPools holding its addresses); a NAD whose slices
    // make no sense.
    let refused = |nad_ns: &str, size: &str, want: &str| {
        api.add_nad(
            nad_ns,
            "sliced",
            Some(&sliced_nad("10.50.0.0/24", size)),
            &[],
        );
        let (code, out, _) = slices(&ns, &api, &[]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(want), "{out}");
        assert_eq!(slice_list(&api, "sliced")[2], s("n6", 2));
    };
    // A NAD of another namespace naming the pool with another cut is not
    // used for it: the pool keeps its own cut and its nodes their slices.
    api.add_nad(
        "other",
        "sliced",
        Some(&sliced_nad("10.50.0.0/24", "/27")),
        &[],
    );
    let (code, out, _) = slices(&ns, &api, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("NAD other/sliced: it cuts NodeSlicePool sliced as 10.50.0.0/24 in /27 slices, which is cut as 10.50.0.0/24 in /26 slices: not used for it"),
        "{out}"
    );
    assert_eq!(slice_list(&api, "sliced")[2], s("n6", 2));
    api.remove_nad("other", "sliced");
    // Two NADs cutting a pool that does not exist yet differently: which
    // one is meant is not guessed.
    for (nad_ns, size) in [("a", "/27"), ("b", "/28")] {
        let nad = sliced_nad("10.60.0.0/24", size).replace("\"sliced\"", "\"fresh\"");
        api.add_nad(nad_ns, "fresh", Some(&nad), &[]);
    }
    let (code, out, _) = slices(&ns, &api, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NodeSlicePool fresh: NADs cut it differently (a/fresh as 10.60.0.0/24 in /27 slices; b/fresh as 10.60.0.0/24 in /28 slices)"), "{out}");
    assert!(api.custom_object("nodeslicepools", NS, "fresh").is_none());
    api.remove_nad("a", "fresh");
    api.remove_nad("b", "fresh");
    refused(
        "default",
        "/25",
        "it is cut as 10.50.0.0/24 in /26 slices and its NADs say 10.50.0.0/24 in /25 slices",
    );
    refused(
        "default",
        "/8",
        "NAD default/sliced: ipam.node_slice_size \"/8\"",
    );
    // The NADs are read in pages of 50, as the API server serves them: 60
    // more NADs make two.
    for i in 0..60 {
        api.add_nad(
            "many",
            &format!("plain-{i}"),
            Some(r#"{"name":"p","type":"bridge"}"#),
            &[],
        );
    }
    let before = api.requests().len();
    let (code, out, _) = slices(&ns, &api, &[]);
    assert_eq!(code, 1, "{out}");
    let pages = api.requests()[before..]
        .iter()
        .filter(|r| r.starts_with("GET /apis/k8s.cni.cncf.io/v1/network-attachment-definitions"))
        .count();
    assert_eq!(pages, 2);
    // Bounded by the admin: only the namespaces listed, and so many pools.
    api.add_nad(
        "default",
        "sliced",
        Some(&sliced_nad("10.50.0.0/24", "/26")),
        &[],
    );
    let (code, out, _) = slices(&ns, &api, &["--namespaces", "kube-system,other"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("pools=0 assigned=0 freed=0\n"), "{out}");
    let (code, out, _) = slices(&ns, &api, &["--max-pools", "0"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "NAD default/sliced: NodeSlicePool sliced is past the first 0 pools (--max-pools)"
        ),
        "{out}"
    );

    use multus_testbed::manifests;
    let dir = manifests::whereabouts();
    let mut granted = std::collections::BTreeSet::new();
    for (kind, scope) in [("ClusterRole", ""), ("Role", NS)] {
        let rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule> = serde_json::from_value(
            manifests::find_in(&dir, kind, Some("multus-ipam-slices"))["rules"].clone(),
        )
        .unwrap();
        for (g, r, v) in manifests::grants(&rules) {
            granted.insert((g, r, v, scope.to_string()));
        }
    }
    let mut used = std::collections::BTreeSet::new();
    for r in api.requests() {
        let a = manifests::authorization(&r);
        assert!(granted.contains(&a), "not granted: {r} ({a:?})");
        used.insert(a);
    }
    assert_eq!(used, granted, "rules nothing calls");
}
