//! `multusctl ipam reconcile` against the in-test API server: frees the
//! allocations and reservations of pods that are gone, keeps every pod's
//! that exists, reports, and with `--dry-run` changes nothing.

use std::process::Command;

use multus_testbed::kube_api::FakeKubeApi;
use multus_testbed::{in_netns, Netns};
use serde_json::{json, Value};

const MULTUSCTL: &str = env!("CARGO_BIN_EXE_multusctl");
const NS: &str = "kube-system";

fn reconcile(ns: &Netns, api: &FakeKubeApi, extra: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(MULTUSCTL);
    c.args(["ipam", "reconcile", "--kubeconfig"])
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
