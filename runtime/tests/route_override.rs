//! The wasm `route-override`, chained after the reference bridge, through
//! the built `multus` in real network namespaces: the per-node-gateway
//! overlay (one conf entry, each node's own gateway), `flushgateway`, CHECK,
//! `args.cni` overrides and a config error that builds nothing.

mod common;

use common::*;
use multus_testbed::confs;
use serde_json::{json, Value};

/// The secondary overlay as node `n` has it: the reference bridge with the
/// node's own subnet (so its own gateway) and IPAM `routes`, then
/// `route_override` unchanged.
fn overlay(node: &Node, n: u8, ipam_routes: Value, route_override: &Value) -> Value {
    json!({"cniVersion": "1.0.0", "name": "overlay", "plugins": [
        {"type": "bridge", "bridge": "br-ov", "isGateway": true,
         "ipam": {"type": "host-local", "dataDir": node.data_dir(),
                  "ranges": [[{"subnet": format!("10.40.{n}.0/24")}]],
                  "routes": ipam_routes}},
        route_override
    ]})
}

fn multus_conf(node: &Node, overlay: Value) -> Value {
    node.with_wasm(confs::multus_delegates(
        &[
            confs::bridge_host_local("cluster", "cni0", "10.31.0.0/24", &node.data_dir()),
            overlay,
        ],
        &node.cni_dir(),
        &plugins(),
    ))
}

fn routes(pod: &Pod, args: &[&str]) -> String {
    let mut all = vec!["route", "show"];
    all.extend_from_slice(args);
    pod.ns.ip(&all).unwrap()
}

/// net1's result as the cache recorded it.
fn net1_result(node: &Node, cid: &str) -> Value {
    let cache: Value =
        serde_json::from_slice(&std::fs::read(node.cni_dir().join(cid)).unwrap()).unwrap();
    cache["delegates"][1]["result"].clone()
}

#[test]
fn one_conf_gives_each_node_its_own_gateway() {
    let route_override = json!({"type": "route-override", "flushgateway": true,
        "addroutes": [{"dst": "10.40.0.0/16", "gw": "prevResult"}]});
    for n in [1u8, 2] {
        let node = Node::new();
        node.install_wasm(&["route-override"]);
        let conf = bytes(&multus_conf(
            &node,
            overlay(&node, n, json!([{"dst": "0.0.0.0/0"}]), &route_override),
        ));
        let pod = Pod::new();
        let add = node.run("ADD", "ro1", &pod, &conf);
        assert!(add.ok(), "{} {}", add.stdout, add.stderr);
        let gw = format!("10.40.{n}.1");
        // The overlay's range via this node's gateway on net1; the default
        // route the overlay's IPAM asked for is gone; eth0 keeps its own.
        let table = routes(&pod, &[]);
        assert!(
            table.contains(&format!("10.40.0.0/16 via {gw} dev net1")),
            "{table}"
        );
        let defaults = routes(&pod, &["default"]);
        assert!(
            defaults.contains("dev eth0") && !defaults.contains("net1"),
            "{defaults}"
        );
        let r = net1_result(&node, "ro1");
        assert_eq!(
            r["routes"],
            json!([{"dst": "10.40.0.0/16", "gw": gw}]),
            "{r}"
        );
        assert!(r["ips"][0].get("gateway").is_none(), "{r}");

        let check = node.run("CHECK", "ro1", &pod, &conf);
        assert!(check.ok(), "{} {}", check.stdout, check.stderr);
        // CHECK compares: without the route the chain's CHECK fails, naming
        // it (the reference bridge, first in the chain, already sees it).
        pod.ns
            .ip(&["route", "del", "10.40.0.0/16", "via", &gw, "dev", "net1"])
            .unwrap();
        let check = node.run("CHECK", "ro1", &pod, &conf);
        assert!(!check.ok());
        assert!(check.stdout.contains("10.40.0.0"), "{}", check.stdout);

        let del = node.run("DEL", "ro1", &pod, &conf);
        assert!(del.ok(), "{} {}", del.stdout, del.stderr);
        assert_eq!(pod.ns.links().unwrap(), ["lo"]);
        assert!(node.reservations("overlay").is_empty());
        assert!(node.cache_files().is_empty());
    }
}

/// `args.cni` overrides the config's keys per pod (upstream's
/// behaviour): here it keeps the gateway and deletes one of the IPAM's
/// routes instead, with `skipcheck`.
#[test]
fn args_cni_override_the_conf() {
    let node = Node::new();
    node.install_wasm(&["route-override"]);
    let route_override = json!({"type": "route-override", "flushgateway": true,
        "args": {"cni": {"flushgateway": false, "skipcheck": true,
                         "delroutes": [{"dst": "192.168.77.0/24"}]}}});
    let ipam_routes = json!([{"dst": "0.0.0.0/0"}, {"dst": "192.168.77.0/24"}]);
    let conf = bytes(&multus_conf(
        &node,
        overlay(&node, 1, ipam_routes, &route_override),
    ));
    let pod = Pod::new();
    let add = node.run("ADD", "ro2", &pod, &conf);
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    let table = routes(&pod, &[]);
    assert!(!table.contains("192.168.77.0/24"), "{table}");
    assert!(routes(&pod, &["default"]).contains("dev net1"));
    let r = net1_result(&node, "ro2");
    assert_eq!(r["ips"][0]["gateway"], "10.40.1.1");
    assert_eq!(r["routes"], json!([{"dst": "0.0.0.0/0"}]), "{r}");
    let check = node.run("CHECK", "ro2", &pod, &conf);
    assert!(check.ok(), "{} {}", check.stdout, check.stderr);
    assert!(node.run("DEL", "ro2", &pod, &conf).ok());
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
}

/// A route whose `gw` is neither an IP nor `prevResult` is a config error
/// (code 7) naming it; the ADD is rolled back.
#[test]
fn a_bad_gateway_is_refused_and_nothing_is_left() {
    let node = Node::new();
    node.install_wasm(&["route-override"]);
    let route_override = json!({"type": "route-override",
        "addroutes": [{"dst": "10.40.0.0/16", "gw": "the-gateway"}]});
    let conf = bytes(&multus_conf(
        &node,
        overlay(&node, 1, json!([{"dst": "0.0.0.0/0"}]), &route_override),
    ));
    let pod = Pod::new();
    let e = assert_cni_error(&node.run("ADD", "ro3", &pod, &conf), 7);
    assert!(
        e.contains("the-gateway") && e.contains("route-override"),
        "{e}"
    );
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    assert!(node.reservations("overlay").is_empty());
    assert!(node.cache_files().is_empty());
}
