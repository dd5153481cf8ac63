//! The wasm `ptp` interface plugin through the built `multus` in real
//! network namespaces, against Debian's reference ptp: the same conf and
//! sequence, the same kernel state on both ends of the pair (pod: link,
//! addresses, routes; host: the veth's address and the route to the pod;
//! IP forwarding on) and the same result (MACs and the host veth's name
//! aside); `ipMasq` refused.

mod common;

use common::*;
use multus_testbed::confs;
use serde_json::{json, Value};

fn conf(node: &Node, data: &std::path::Path, extra: Value) -> Vec<u8> {
    let mut ptp = json!({"cniVersion": "1.0.0", "name": "ptpnet", "type": "ptp", "mtu": 1400,
        "ipam": {"type": "host-local", "dataDir": data,
                 "ranges": [[{"subnet": "10.80.0.0/24"}]],
                 "routes": [{"dst": "10.81.0.0/16"}]}});
    for (k, v) in extra.as_object().unwrap() {
        ptp[k] = v.clone();
    }
    let mut c = node.with_wasm(confs::multus_delegates(
        &[
            confs::bridge_host_local("cluster", "cni0", "10.31.0.0/16", &node.data_dir()),
            json!({"cniVersion": "1.0.0", "name": "ptpnet", "plugins": [ptp]}),
        ],
        &node.cni_dir(),
        &plugins(),
    ));
    c["wasmPlugins"] = json!({"ptp": {"hostNetns": true}});
    bytes(&c)
}

fn result(node: &Node, cid: &str) -> Value {
    let cache: Value =
        serde_json::from_slice(&std::fs::read(node.cni_dir().join(cid)).unwrap()).unwrap();
    cache["delegates"][1]["result"].clone()
}

/// Both ends as the kernel has them, the host veth's name masked.
fn state(node: &Node, pod: &Pod, host_veth: &str) -> Value {
    let l = pod.ns.link("net1").unwrap();
    let lines = |out: String| -> Vec<String> {
        out.replace(host_veth, "VETH")
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect()
    };
    let host = node.ns.link(host_veth).unwrap();
    json!({
        "pod": {"kind": l["linkinfo"]["info_kind"], "mtu": l["mtu"],
                "addrs": pod.ns.addrs("net1").unwrap(),
                "routes": lines(pod.ns.ip(&["route", "show", "dev", "net1"]).unwrap())},
        "host": {"kind": host["linkinfo"]["info_kind"], "mtu": host["mtu"],
                 "up": host["flags"].as_array().unwrap().contains(&json!("UP")),
                 "addrs": node.ns.addrs(host_veth).unwrap(),
                 "routes": lines(node.ns.ip(&["route", "show", "dev", host_veth]).unwrap()),
                 "accept_ra": node.sysctl_in(&format!("/proc/sys/net/ipv6/conf/{host_veth}/accept_ra"))},
        "forwarding": node.sysctl_in("/proc/sys/net/ipv4/ip_forward"),
    })
}

fn host_veth(r: &Value) -> String {
    r["interfaces"][0]["name"].as_str().unwrap().to_string()
}

/// The result with what differs between any two pods masked.
fn masked(mut r: Value) -> Value {
    for i in r["interfaces"].as_array_mut().unwrap() {
        i["mac"] = json!("mac");
        if i.get("sandbox").is_some() {
            i["sandbox"] = json!("pod");
        } else {
            i["name"] = json!("VETH");
        }
    }
    if r["dns"] == json!({}) {
        r.as_object_mut().unwrap().remove("dns");
    }
    r
}

#[test]
fn wasm_ptp_matches_reference_ptp() {
    let node = Node::new();
    let (ref_data, wasm_data) = (
        node.dir.path().join("ipam-ref"),
        node.dir.path().join("ipam-wasm"),
    );
    // Each pod its own subnet: both ends' addresses would collide on one
    // node otherwise.
    let reference = conf(&node, &ref_data, json!({}));
    let (ref_pod, wasm_pod) = (Pod::new(), Pod::new());
    let out = node.run("ADD", "ptp-ref", &ref_pod, &reference);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let ref_state = state(&node, &ref_pod, &host_veth(&result(&node, "ptp-ref")));
    let del = node.run("DEL", "ptp-ref", &ref_pod, &reference);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert_eq!(ref_pod.ns.links().unwrap(), ["lo"]);
    node.sysctl_set("/proc/sys/net/ipv4/ip_forward", "0");

    node.install_wasm(&["ptp"]);
    let wasm = conf(&node, &wasm_data, json!({}));
    let out = node.run("ADD", "ptp-wasm", &wasm_pod, &wasm);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let r = result(&node, "ptp-wasm");
    let veth = host_veth(&r);
    assert!(veth.starts_with("veth") && veth.len() == 12, "{veth}");
    let got = state(&node, &wasm_pod, &veth);
    assert_eq!(got["pod"]["addrs"], json!(["10.80.0.2/24"]));
    assert_eq!(got["host"]["addrs"], json!(["10.80.0.1/32"]));
    assert_eq!(got["forwarding"], "1");
    assert_eq!(got, ref_state);
    let check = node.run("CHECK", "ptp-wasm", &wasm_pod, &wasm);
    assert!(check.ok(), "{} {}", check.stdout, check.stderr);

    // The reference pod again, to compare results and DEL side by side.
    let out = node.run("ADD", "ptp-ref2", &ref_pod, &reference);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let mut want = masked(result(&node, "ptp-ref2"));
    let mut have = masked(r);
    // Separate IPAM dirs: both got .2 of the subnet.
    want["ips"][0]["address"] = json!("x");
    have["ips"][0]["address"] = json!("x");
    assert_eq!(have, want);

    for (cid, pod, c) in [
        ("ptp-ref2", &ref_pod, &reference),
        ("ptp-wasm", &wasm_pod, &wasm),
    ] {
        let del = node.run("DEL", cid, pod, c);
        assert!(del.ok(), "{cid}: {} {}", del.stdout, del.stderr);
        assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    }
    assert!(node.veths().is_empty(), "{:?}", node.veths());
    assert!(node.cache_files().is_empty());
}

#[test]
fn ip_masq_is_refused_naming_the_key() {
    let node = Node::new();
    node.install_wasm(&["ptp"]);
    let data = node.dir.path().join("ipam");
    let pod = Pod::new();
    let c = conf(&node, &data, json!({"ipMasq": true}));
    let msg = assert_cni_error(&node.run("ADD", "ptp-m", &pod, &c), 7);
    assert!(msg.contains("ipMasq"), "{msg}");
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    assert!(node.veths().is_empty());
}
