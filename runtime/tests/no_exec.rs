//! A pod with the cluster network and two NADs where every plugin is a wasm
//! module (bridge + host-local, macvlan + static, ptp + whereabouts on the
//! in-test API server), through the built `multus` with an empty CNI_PATH
//! and a `binDir` that does not exist: any exec would fail the ADD, so its
//! success shows nothing was exec'd. Everything is attached, the
//! network-status written, and DEL leaves nothing on the node, in the pod
//! or in the cluster.

mod common;

use common::*;
use multus_testbed::exec_cni;
use multus_testbed::kube_api::FakeKubeApi;
use serde_json::{json, Value};

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const STATUS: &str = "k8s.v1.cni.cncf.io/network-status";

#[test]
fn three_network_pod_with_modules_only_execs_nothing() {
    let node = Node::new();
    node.install_wasm(&[
        "bridge",
        "macvlan",
        "ptp",
        "host-local",
        "static",
        "whereabouts",
    ]);
    let api = FakeKubeApi::start(&node.ns, "token-1").unwrap();
    std::fs::create_dir_all(node.conf_dir()).unwrap();
    let cluster = json!({"cniVersion": "1.0.0", "name": "cluster", "plugins": [
        {"type": "bridge", "bridge": "cni0", "isDefaultGateway": true,
         "ipam": {"type": "host-local", "dataDir": node.data_dir(),
                  "ranges": [[{"subnet": "10.10.0.0/24"}]]}}]});
    std::fs::write(node.conf_dir().join("10-cluster.conflist"), bytes(&cluster)).unwrap();
    let mv = json!({"cniVersion": "1.0.0", "name": "mv", "type": "macvlan", "master": "uplink0",
        "ipam": {"type": "static", "addresses": [{"address": "10.20.0.5/24"}]}});
    api.add_nad("default", "mv", Some(&mv.to_string()), &[]);
    let p2p = json!({"cniVersion": "1.0.0", "name": "p2p", "type": "ptp", "mtu": 1400,
        "ipam": {"type": "whereabouts", "range": "10.40.0.0/24", "gateway": "10.40.0.1",
                 "exclude": ["10.40.0.1/32"],
                 "kubernetes": {"kubeconfig": api.kubeconfig()}}});
    api.add_nad("default", "p2p", Some(&p2p.to_string()), &[]);
    api.add_pod("default", "web", "uid-1", &[(NETWORKS, "mv, p2p")], &[]);

    let mut conf = node.with_wasm(json!({
        "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
        "kubeconfig": api.kubeconfig(), "clusterNetwork": "cluster",
        "confDir": node.conf_dir(), "cniDir": node.cni_dir(),
        "binDir": node.dir.path().join("no-plugins"),
    }));
    let granted = json!({"hostNetns": true});
    conf["wasmPlugins"] = json!({"bridge": granted, "macvlan": granted, "ptp": granted});
    let conf = bytes(&conf);
    let pod = Pod::new();
    let run = |cmd: &str| {
        let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID=uid-1";
        let env = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", pod.path.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", args),
            ("CNI_PATH", ""),
        ];
        exec_cni(std::path::Path::new(MULTUS), Some(&node.ns), &env, &conf).unwrap()
    };

    let out = run("ADD");
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let mut links = pod.ns.links().unwrap();
    links.sort();
    assert_eq!(links, ["eth0", "lo", "net1", "net2"]);
    assert_eq!(pod.ns.addrs("eth0").unwrap(), ["10.10.0.2/24"]);
    assert_eq!(pod.ns.addrs("net1").unwrap(), ["10.20.0.5/24"]);
    assert_eq!(pod.ns.addrs("net2").unwrap(), ["10.40.0.2/24"]);
    let kind = |l: &str| pod.ns.link(l).unwrap()["linkinfo"]["info_kind"].clone();
    assert_eq!(
        [kind("eth0"), kind("net1"), kind("net2")],
        [json!("veth"), json!("macvlan"), json!("veth")]
    );
    assert_eq!(node.ns.addrs("cni0").unwrap(), ["10.10.0.1/24"]);
    assert_eq!(node.veths().len(), 2, "the bridge's and ptp's host ends");
    let status: Vec<Value> =
        serde_json::from_str(&api.annotation("default", "web", STATUS).unwrap()).unwrap();
    let names: Vec<&str> = status.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cluster", "default/mv", "default/p2p"]);
    assert!(
        !node.wasm_cache().join("bin").exists(),
        "no IPAM shim was linked"
    );

    let check = run("CHECK");
    assert!(check.ok(), "{} {}", check.stdout, check.stderr);
    let del = run("DEL");
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    assert!(node.veths().is_empty(), "{:?}", node.veths());
    assert!(node.reservations("cluster").is_empty());
    assert!(node.cache_files().is_empty(), "{:?}", node.cache_files());
    let pools = api.custom_objects("ippools", "kube-system");
    assert!(
        pools.iter().all(|p| p["spec"]["allocations"]
            .as_object()
            .is_none_or(|a| a.is_empty())),
        "{pools:?}"
    );
    assert!(api
        .custom_objects("overlappingrangeipreservations", "kube-system")
        .is_empty());
}
