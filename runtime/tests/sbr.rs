//! The wasm `sbr`, chained after the reference bridge, through the built
//! `multus` in real network namespaces: the same rules, tables and routes as
//! Debian's reference sbr (differential), the keys the packaged reference
//! predates (`table`, `gateways`, `addSourceHints`), `vrfname` refused, and
//! a table another interface's sbr uses refused with nothing left.

mod common;

use common::*;
use multus_testbed::confs;
use serde_json::{json, Value};

/// eth0 on the cluster bridge, then the secondary network `sbrnet` on
/// `net1`: the reference bridge with a gateway, dual-stack host-local with
/// a route via the gateway, then `sbr`.
fn sbr_conf(node: &Node, sbr: Value) -> Vec<u8> {
    sbr_conf_routes(node, sbr, json!([{"dst": "192.168.0.0/16"}]))
}

fn sbr_conf_routes(node: &Node, sbr: Value, ipam_routes: Value) -> Vec<u8> {
    let secondary = json!({"cniVersion": "1.0.0", "name": "sbrnet", "plugins": [
        {"type": "bridge", "bridge": "br-sbr", "isGateway": true,
         "ipam": {"type": "host-local", "dataDir": node.data_dir(),
                  "ranges": [[{"subnet": "10.50.0.0/24"}], [{"subnet": "fd50::/64"}]],
                  "routes": ipam_routes}},
        sbr
    ]});
    bytes(&node.with_wasm(confs::multus_delegates(
        &[
            confs::bridge_host_local("cluster", "cni0", "10.31.0.0/24", &node.data_dir()),
            secondary,
        ],
        &node.cni_dir(),
        &plugins(),
    )))
}

/// The pod's rules and routes, link-local addresses (derived from MACs)
/// masked.
fn state(pod: &Pod) -> Value {
    let text = pod.ns.routing_state().unwrap().to_string();
    let masked: String = text
        .split('"')
        .map(|s| {
            if s.starts_with("fe80::") && s.len() > 6 {
                "fe80::x"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("\"");
    serde_json::from_str(&masked).unwrap()
}

fn rules_from(pod: &Pod, family: &str) -> Vec<(String, String)> {
    pod.ns.routing_state().unwrap()[format!("rules{family}")]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("src").is_some_and(|s| s != "all"))
        .map(|r| {
            (
                r["src"].as_str().unwrap().to_string(),
                r["table"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn table(pod: &Pod, t: &str) -> String {
    let mut out = pod
        .ns
        .ip(&["-4", "route", "show", "table", t])
        .unwrap_or_default();
    out.push_str(
        &pod.ns
            .ip(&["-6", "route", "show", "table", t])
            .unwrap_or_default(),
    );
    out
}

/// net1's result as the cache recorded it, without what differs between
/// any two pods (MACs, the host veth's name, the netns path) and with the
/// reference's empty `dns` object dropped.
fn net1_result(node: &Node, cid: &str) -> Value {
    let cache: Value =
        serde_json::from_slice(&std::fs::read(node.cni_dir().join(cid)).unwrap()).unwrap();
    let mut r = cache["delegates"][1]["result"].clone();
    for i in r["interfaces"].as_array_mut().unwrap() {
        let i = i.as_object_mut().unwrap();
        i.remove("mac");
        if i.contains_key("sandbox") {
            i.insert("sandbox".into(), json!("pod"));
        } else if i["name"].as_str().unwrap().starts_with("veth") {
            i.insert("name".into(), json!("veth"));
        }
    }
    if r["dns"] == json!({}) {
        r.as_object_mut().unwrap().remove("dns");
    }
    r
}

fn assert_clean(node: &Node, pod: &Pod, fresh: &Value) {
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    assert_eq!(&state(pod), fresh, "no rule and no route left");
    assert!(node.cache_files().is_empty());
    assert!(node.reservations("sbrnet").is_empty());
}

#[test]
fn wasm_sbr_matches_reference_sbr() {
    let (ref_node, wasm_node) = (Node::new(), Node::new());
    wasm_node.install_wasm(&["sbr"]);
    let (ref_pod, wasm_pod) = (Pod::new(), Pod::new());
    let fresh = state(&ref_pod);
    let sbr = json!({"type": "sbr"});
    let (ref_conf, wasm_conf) = (sbr_conf(&ref_node, sbr.clone()), sbr_conf(&wasm_node, sbr));

    let out_ref = ref_node.run("ADD", "sbr-ref", &ref_pod, &ref_conf);
    assert!(out_ref.ok(), "{} {}", out_ref.stdout, out_ref.stderr);
    let out_wasm = wasm_node.run("ADD", "sbr-wasm", &wasm_pod, &wasm_conf);
    assert!(out_wasm.ok(), "{} {}", out_wasm.stdout, out_wasm.stderr);

    // The kernel state the reference leaves: one table per IP from 100,
    // `from <ip>` rules, net1's routes moved out of main.
    assert_eq!(
        rules_from(&wasm_pod, "4"),
        [("10.50.0.2".to_string(), "100".to_string())]
    );
    assert_eq!(
        rules_from(&wasm_pod, "6"),
        [("fd50::2".to_string(), "101".to_string())]
    );
    let t100 = table(&wasm_pod, "100");
    assert!(t100.contains("default via 10.50.0.1 dev net1"), "{t100}");
    assert!(
        t100.contains("192.168.0.0/16 via 10.50.0.1 dev net1"),
        "{t100}"
    );
    assert!(
        t100.contains("10.50.0.0/24 dev net1 proto kernel scope link src 10.50.0.2"),
        "{t100}"
    );
    let t101 = table(&wasm_pod, "101");
    assert!(t101.contains("default via fd50::1 dev net1"), "{t101}");
    let main = wasm_pod.ns.ip(&["route", "show"]).unwrap();
    assert!(!main.contains("net1"), "net1's routes left main: {main}");
    assert_eq!(state(&wasm_pod), state(&ref_pod));
    assert_eq!(
        net1_result(&wasm_node, "sbr-wasm"),
        net1_result(&ref_node, "sbr-ref")
    );

    // CHECK: the same outcome. The reference bridge, first in the chain,
    // looks for its routes in main, where sbr no longer leaves them, so
    // upstream's bridge + sbr chain never passes CHECK; neither does ours.
    let check_ref = ref_node.run("CHECK", "sbr-ref", &ref_pod, &ref_conf);
    let check_wasm = wasm_node.run("CHECK", "sbr-wasm", &wasm_pod, &wasm_conf);
    assert_eq!(
        assert_cni_error(&check_wasm, 999),
        assert_cni_error(&check_ref, 999)
    );

    for (node, cid, pod, conf) in [
        (&ref_node, "sbr-ref", &ref_pod, &ref_conf),
        (&wasm_node, "sbr-wasm", &wasm_pod, &wasm_conf),
    ] {
        let del = node.run("DEL", cid, pod, conf);
        assert!(del.ok(), "{} {}", del.stdout, del.stderr);
        assert_clean(node, pod, &fresh);
    }
}

/// With `table` the reference adds only the rules, into that table (the
/// packaged reference predates the key); DEL removes exactly them.
#[test]
fn a_fixed_table_gets_only_the_rules() {
    let node = Node::new();
    node.install_wasm(&["sbr"]);
    let pod = Pod::new();
    let fresh = state(&pod);
    let conf = sbr_conf_routes(&node, json!({"type": "sbr", "table": 300}), json!([]));
    let out = node.run("ADD", "sbr-t", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(
        rules_from(&pod, "4"),
        [("10.50.0.2".to_string(), "300".to_string())]
    );
    assert_eq!(
        rules_from(&pod, "6"),
        [("fd50::2".to_string(), "300".to_string())]
    );
    let main = pod.ns.ip(&["route", "show"]).unwrap();
    assert!(main.contains("10.50.0.0/24 dev net1"), "{main}");
    assert_eq!(table(&pod, "300"), "");
    let check = node.run("CHECK", "sbr-t", &pod, &conf);
    assert!(check.ok(), "{} {}", check.stdout, check.stderr);
    // Ours checks its rules (the reference's CHECK checks nothing).
    pod.ns
        .ip(&["-6", "rule", "del", "from", "fd50::2", "table", "300"])
        .unwrap();
    let msg = assert_cni_error(&node.run("CHECK", "sbr-t", &pod, &conf), 999);
    assert!(msg.contains("no rule from fd50::2/128"), "{msg}");
    let del = node.run("DEL", "sbr-t", &pod, &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert_clean(&node, &pod, &fresh);
}

/// `gateways` replaces prevResult's gateway in the table; `addSourceHints`
/// keeps the subnet routes in main with the address as `src`.
#[test]
fn gateways_and_source_hints() {
    let node = Node::new();
    node.install_wasm(&["sbr"]);
    let pod = Pod::new();
    let fresh = state(&pod);
    let conf = sbr_conf(
        &node,
        json!({"type": "sbr", "gateways": ["10.50.0.254"], "addSourceHints": true}),
    );
    let out = node.run("ADD", "sbr-g", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let t100 = table(&pod, "100");
    assert!(t100.contains("default via 10.50.0.254 dev net1"), "{t100}");
    let t101 = table(&pod, "101");
    assert!(t101.contains("default via fd50::1 dev net1"), "{t101}");
    let main4 = pod.ns.ip(&["route", "show"]).unwrap();
    assert!(
        main4.contains("10.50.0.0/24 dev net1 proto kernel scope link src 10.50.0.2"),
        "{main4}"
    );
    assert!(!main4.contains("192.168.0.0/16"), "{main4}");
    let main6 = pod.ns.ip(&["-6", "route", "show"]).unwrap();
    assert!(
        main6.contains("fd50::/64 dev net1 proto kernel src fd50::2"),
        "{main6}"
    );
    let del = node.run("DEL", "sbr-g", &pod, &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert_clean(&node, &pod, &fresh);
}

#[test]
fn vrfname_is_refused_and_nothing_is_left() {
    let node = Node::new();
    node.install_wasm(&["sbr"]);
    let pod = Pod::new();
    let fresh = state(&pod);
    let conf = sbr_conf(&node, json!({"type": "sbr", "vrfname": "blue"}));
    let msg = assert_cni_error(&node.run("ADD", "sbr-v", &pod, &conf), 7);
    assert!(msg.contains("vrfname") && msg.contains("sbr"), "{msg}");
    assert_clean(&node, &pod, &fresh);
}

/// net2's sbr asks for the table net1's sbr took: the sandbox refuses the
/// rule (the table holds another interface's routes), the ADD fails and is
/// rolled back completely.
#[test]
fn another_interfaces_table_is_refused() {
    let node = Node::new();
    node.install_wasm(&["sbr"]);
    let pod = Pod::new();
    let fresh = state(&pod);
    let secondary = |name: &str, bridge: &str, subnet: &str, sbr: Value| {
        json!({"cniVersion": "1.0.0", "name": name, "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true,
             "ipam": {"type": "host-local", "dataDir": node.data_dir(),
                      "ranges": [[{"subnet": subnet}]]}},
            sbr
        ]})
    };
    let conf = bytes(&node.with_wasm(confs::multus_delegates(
        &[
            confs::bridge_host_local("cluster", "cni0", "10.31.0.0/24", &node.data_dir()),
            secondary("first", "br-a", "10.51.0.0/24", json!({"type": "sbr"})),
            secondary(
                "second",
                "br-b",
                "10.52.0.0/24",
                json!({"type": "sbr", "table": 100}),
            ),
        ],
        &node.cni_dir(),
        &plugins(),
    )));
    let msg = assert_cni_error(&node.run("ADD", "sbr-x", &pod, &conf), 7);
    assert!(
        msg.contains("routing.rule-add") && msg.contains("table 100") && msg.contains("net1"),
        "{msg}"
    );
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    assert_eq!(state(&pod), fresh);
    assert!(node.cache_files().is_empty());
}
