//! Wasm plugins through the built `multus` binary, in real network
//! namespaces, compared with the reference plugins.

mod common;

use common::*;
use multus::testbed::confs;
use serde_json::{json, Value};

fn bridge_conf(node: &Node, data: &std::path::Path) -> Value {
    node.with_wasm(confs::multus_delegates(
        &[confs::bridge_host_local(
            "cluster",
            "cni0",
            "10.1.0.0/24",
            data,
        )],
        &node.cni_dir(),
        &plugins(),
    ))
}

#[test]
fn wasm_host_local_as_ipam_of_native_bridge() {
    let node = Node::new();
    node.install_wasm(&["host-local"]);
    let conf = bytes(&bridge_conf(&node, &node.data_dir()));
    let pod = Pod::new();
    let out = node.run("ADD", "w1", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let r = out.json();
    assert_eq!(r["ips"][0]["address"], "10.1.0.2/24");
    assert_eq!(r["ips"][0]["gateway"], "10.1.0.1");
    assert_eq!(pod.ns.addrs("eth0").unwrap(), vec!["10.1.0.2/24"]);
    assert_eq!(node.reservations("cluster"), vec!["10.1.0.2"]);
    assert_eq!(
        std::fs::read_to_string(node.data_dir().join("cluster/10.1.0.2")).unwrap(),
        "w1\r\neth0"
    );
    let artifacts = multus::testbed::files_under(&node.wasm_cache());
    assert!(
        artifacts.iter().any(|f| f.ends_with(".cwasm")),
        "{artifacts:?}"
    );
    assert!(node.run("CHECK", "w1", &pod, &conf).ok());
    let out = node.run("DEL", "w1", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert!(node.reservations("cluster").is_empty());
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
}
