//! The wasm `macvlan` interface plugin through the built `multus` in real
//! network namespaces, against Debian's reference macvlan: the same conf
//! and sequence, the same kernel state in the pod and the same result
//! (MACs aside); its IPAM run in-process when it is a module, exec'd when
//! not; the grant (hostNetns, the config's master) enforced.

mod common;

use common::*;
use multus_testbed::confs;
use serde_json::{json, Value};

/// eth0 on the cluster bridge; net1 a macvlan of the node's uplink0 with
/// host-local.
fn conf(node: &Node, data: &std::path::Path, host_netns: bool, extra: Value) -> Vec<u8> {
    let mut mv = json!({"cniVersion": "1.0.0", "name": "mvnet", "type": "macvlan",
        "master": "uplink0", "mode": "bridge", "mtu": 1400,
        "ipam": {"type": "host-local", "dataDir": data,
                 "ranges": [[{"subnet": "10.60.0.0/24", "gateway": "10.60.0.1"}]],
                 "routes": [{"dst": "10.61.0.0/16"}]}});
    for (k, v) in extra.as_object().unwrap() {
        mv[k] = v.clone();
    }
    let mut c = node.with_wasm(confs::multus_delegates(
        &[
            confs::bridge_host_local("cluster", "cni0", "10.31.0.0/16", &node.data_dir()),
            json!({"cniVersion": "1.0.0", "name": "mvnet", "plugins": [mv]}),
        ],
        &node.cni_dir(),
        &plugins(),
    ));
    c["wasmPlugins"] = json!({"macvlan": {"hostNetns": host_netns}});
    bytes(&c)
}

/// net1 as the kernel has it: kind, mode, mtu, flags, addresses, routes,
/// the notify sysctls.
fn net1(pod: &Pod) -> Value {
    let l = pod.ns.link("net1").unwrap();
    let mut flags: Vec<String> = l["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    flags.sort();
    let routes: Vec<String> = pod
        .ns
        .ip(&["route", "show", "dev", "net1"])
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    json!({"kind": l["linkinfo"]["info_kind"], "mode": l["linkinfo"]["info_data"]["mode"],
           "mtu": l["mtu"], "flags": flags, "addrs": pod.ns.addrs("net1").unwrap(),
           "routes": routes,
           "arp_notify": pod.sysctl("/proc/sys/net/ipv4/conf/net1/arp_notify"),
           "ndisc_notify": pod.sysctl("/proc/sys/net/ipv6/conf/net1/ndisc_notify")})
}

/// net1's result from the cache, MACs and the netns path masked.
fn result(node: &Node, cid: &str) -> Value {
    let cache: Value =
        serde_json::from_slice(&std::fs::read(node.cni_dir().join(cid)).unwrap()).unwrap();
    let mut r = cache["delegates"][1]["result"].clone();
    for i in r["interfaces"].as_array_mut().unwrap() {
        i["mac"] = json!("mac");
        i["sandbox"] = json!("pod");
    }
    if r["dns"] == json!({}) {
        r.as_object_mut().unwrap().remove("dns");
    }
    r
}

#[test]
fn wasm_macvlan_matches_reference_macvlan() {
    let node = Node::new();
    let (ref_data, wasm_data) = (
        node.dir.path().join("ipam-ref"),
        node.dir.path().join("ipam-wasm"),
    );
    let (ref_pod, wasm_pod) = (Pod::new(), Pod::new());
    let reference = conf(&node, &ref_data, true, json!({}));
    let out = node.run("ADD", "mv-ref", &ref_pod, &reference);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    node.install_wasm(&["macvlan"]);
    let wasm = conf(&node, &wasm_data, true, json!({}));
    let out = node.run("ADD", "mv-wasm", &wasm_pod, &wasm);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);

    let state = net1(&wasm_pod);
    assert_eq!(state["kind"], "macvlan");
    assert_eq!(state["mtu"], 1400);
    assert_eq!(state["addrs"], json!(["10.60.0.2/24"]));
    assert_eq!(state, net1(&ref_pod));
    assert_eq!(result(&node, "mv-wasm"), result(&node, "mv-ref"));
    // The IPAM was exec'd (host-local is not a module here).
    assert_eq!(node.reservations("mvnet").len(), 0);
    assert_eq!(
        multus_testbed::files_under(&wasm_data.join("mvnet")).len(),
        3
    );

    for (cid, pod, c) in [
        ("mv-ref", &ref_pod, &reference),
        ("mv-wasm", &wasm_pod, &wasm),
    ] {
        let check = node.run("CHECK", cid, pod, c);
        assert!(check.ok(), "{cid}: {} {}", check.stdout, check.stderr);
    }
    wasm_pod.ns.ip(&["addr", "flush", "dev", "net1"]).unwrap();
    let msg = assert_cni_error(&node.run("CHECK", "mv-wasm", &wasm_pod, &wasm), 999);
    assert!(msg.contains("lacks 10.60.0.2/24"), "{msg}");

    for (cid, pod, c) in [
        ("mv-ref", &ref_pod, &reference),
        ("mv-wasm", &wasm_pod, &wasm),
    ] {
        let del = node.run("DEL", cid, pod, c);
        assert!(del.ok(), "{cid}: {} {}", del.stdout, del.stderr);
        assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    }
    for d in [&ref_data, &wasm_data] {
        let left: Vec<String> = multus_testbed::files_under(&d.join("mvnet"))
            .into_iter()
            .filter(|f| f != "lock" && !f.starts_with("last_reserved"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
    assert!(node.cache_files().is_empty());
}

/// With host-local installed as a module too, the pod's macvlan network
/// runs with no exec at all: empty CNI_PATH for it, still attached.
#[test]
fn macvlan_with_wasm_ipam_execs_nothing() {
    let node = Node::new();
    node.install_wasm(&["macvlan", "host-local"]);
    let data = node.dir.path().join("ipam");
    let mut c: Value = serde_json::from_slice(&conf(&node, &data, true, json!({}))).unwrap();
    // Only the macvlan network: nothing to exec, and no plugin dir at all.
    c["delegates"] = json!([c["delegates"][1].clone()]);
    c["binDir"] = json!(node.dir.path().join("no-plugins"));
    let c = bytes(&c);
    let pod = Pod::new();
    let out = node.run("ADD", "mv-only", &pod, &c);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(pod.ns.addrs("eth0").unwrap(), ["10.60.0.2/24"]);
    assert!(
        !node.wasm_cache().join("bin/host-local").exists(),
        "no shim link"
    );
    let del = node.run("DEL", "mv-only", &pod, &c);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
}

/// Without the admin's hostNetns grant, or on a master the config does not
/// name: refused, nothing created, nothing reserved.
#[test]
fn the_grant_decides_the_master() {
    let node = Node::new();
    node.install_wasm(&["macvlan"]);
    let data = node.dir.path().join("ipam");
    let pod = Pod::new();
    let msg = assert_cni_error(
        &node.run("ADD", "mv-x", &pod, &conf(&node, &data, false, json!({}))),
        7,
    );
    assert!(
        msg.contains("hostNetns") && msg.contains("macvlan"),
        "{msg}"
    );
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    let links = node.ns.ip(&["-br", "link"]).unwrap();
    let on_uplink = links
        .lines()
        .filter(|l| l.split_whitespace().next().unwrap().ends_with("@uplink0"))
        .count();
    assert_eq!(on_uplink, 1, "only the uplink's peer, no macvlan: {links}");
    assert!(multus_testbed::files_under(&data.join("mvnet"))
        .iter()
        .all(|f| f == "lock"));
    let msg = assert_cni_error(
        &node.run(
            "ADD",
            "mv-y",
            &pod,
            &conf(&node, &data, true, json!({"mode": "sideways"})),
        ),
        7,
    );
    assert!(msg.contains("mode"), "{msg}");
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
}

/// multus killed with SIGKILL after the macvlan was created and while its
/// (native, slow) IPAM runs: the runtime's DEL still removes the link, from
/// the cache multus wrote before the first delegate.
#[test]
fn killed_mid_add_then_del_removes_the_link() {
    let node = Node::new();
    node.install_wasm(&["macvlan"]);
    let bin = node.dir.path().join("bin");
    slow_ipam(&bin);
    let mut c = node.with_wasm(confs::multus_delegates(
        &[
            json!({"cniVersion": "1.0.0", "name": "mvnet", "type": "macvlan",
                 "master": "uplink0", "ipam": {"type": "slow-ipam"}}),
        ],
        &node.cni_dir(),
        &bin,
    ));
    c["wasmPlugins"] = json!({"macvlan": {"hostNetns": true}});
    let conf = bytes(&c);
    let pod = Pod::new();
    node.kill_add_once_linked("crash", &pod, &conf, "eth0");
    assert!(
        pod.ns.links().unwrap().iter().any(|l| l == "eth0"),
        "left behind by the kill"
    );

    let del = node.run("DEL", "crash", &pod, &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    assert!(node.cache_files().is_empty());
}

/// STATUS of an interface module asks its IPAM too, as the reference
/// plugins do (`ipam.ExecStatus`): an IPAM that is not ready makes the
/// network not ready, with its own code.
#[test]
fn status_asks_the_ipam() {
    use std::os::unix::fs::PermissionsExt;
    let node = Node::new();
    node.install_wasm(&["macvlan"]);
    let bin = node.dir.path().join("status-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let ready = node.dir.path().join("ipam-ready");
    std::fs::write(
        bin.join("stub-ipam"),
        format!(
            "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = STATUS ] || exit 1\n[ -e {} ] && exit 0\necho '{{\"cniVersion\":\"1.1.0\",\"code\":50,\"msg\":\"stub IPAM: no pool yet\"}}'\nexit 1\n",
            ready.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        bin.join("stub-ipam"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let mut c = node.with_wasm(confs::multus_delegates(
        &[json!({"cniVersion": "1.1.0", "name": "mvnet", "plugins": [
            {"type": "macvlan", "master": "uplink0", "ipam": {"type": "stub-ipam"}}]})],
        &node.cni_dir(),
        &bin,
    ));
    c["cniVersion"] = json!("1.1.0");
    c["wasmPlugins"] = json!({"macvlan": {"hostNetns": true}});
    let out = node.multus(&[("CNI_COMMAND", "STATUS")], &bytes(&c));
    let msg = assert_cni_error(&out, 50);
    assert!(
        msg.contains("stub IPAM: no pool yet") && msg.contains("its IPAM \"stub-ipam\""),
        "{msg}"
    );
    std::fs::write(&ready, "").unwrap();
    let out = node.multus(&[("CNI_COMMAND", "STATUS")], &bytes(&c));
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
}
