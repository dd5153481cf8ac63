//! The wasm `bridge` interface plugin through the built `multus` in real
//! network namespaces, against Debian's reference bridge: two nodes (each
//! its own host netns) get the same conf and the same sequence (two pods on
//! one bridge: ADD, CHECK, ADD, CHECK, DEL, DEL), one through the reference,
//! one through the module, and must end with the same kernel state on both
//! sides of every pair (bridge, host veth, pod link: kinds, masters, MTUs,
//! flags, addresses, routes, VLANs, sysctls) and the same results (MACs
//! and generated names masked). Then what only the module does: the newer
//! VLAN keys, refusals naming the key, rollback, DEL with the pod gone.

mod common;

use common::*;
use multus_testbed::confs;
use serde_json::{json, Value};

const BR: &str = "br-t";

/// The pod's network: `bridge` with `extra` keys, host-local on 10.70.0.0/24
/// (plus fd70::/64 when `dual`), or no IPAM when `ipam` is null.
fn conf(node: &Node, extra: Value, wasm: bool) -> Vec<u8> {
    let mut br = json!({"cniVersion": "1.0.0", "name": "brnet", "type": "bridge", "bridge": BR,
        "ipam": {"type": "host-local", "dataDir": node.data_dir(),
                 "ranges": [[{"subnet": "10.70.0.0/24"}]],
                 "routes": [{"dst": "10.71.0.0/16", "gw": "10.70.0.1"}]}});
    for (k, v) in extra.as_object().unwrap() {
        br[k] = v.clone();
    }
    if br["ipam"].is_null() {
        br.as_object_mut().unwrap().remove("ipam");
    }
    let mut c = node.with_wasm(confs::multus_delegates(
        &[json!({"cniVersion": "1.0.0", "name": "brnet", "plugins": [br]})],
        &node.cni_dir(),
        &plugins(),
    ));
    if wasm {
        node.install_wasm(&["bridge"]);
        c["wasmPlugins"] = json!({"bridge": {"hostNetns": true}});
    }
    bytes(&c)
}

fn dual_stack(node: &Node) -> Value {
    json!({"type": "host-local", "dataDir": node.data_dir(),
           "ranges": [[{"subnet": "10.70.0.0/24"}], [{"subnet": "fd70::/64"}]]})
}

fn sorted_flags(l: &Value) -> Vec<String> {
    let mut f: Vec<String> = l["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    f.sort();
    f
}

fn lines(out: String, veth: &str) -> Vec<String> {
    let mut l: Vec<String> = out
        .replace(veth, "VETH")
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect();
    l.sort();
    l
}

/// `bridge vlan show dev` in the node: the port's VLANs with their flags.
fn vlans(node: &Node, dev: &str) -> Value {
    let out = std::process::Command::new("bridge")
        .args(["-n", node.ns.name(), "-j", "vlan", "show", "dev", dev])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(json!([]));
    v.as_array()
        .and_then(|a| a.first())
        .map(|p| p["vlans"].clone())
        .unwrap_or(json!([]))
}

fn bridge_state(node: &Node) -> Value {
    let b = node.ns.link(BR).unwrap();
    json!({"kind": b["linkinfo"]["info_kind"], "mtu": b["mtu"], "flags": sorted_flags(&b),
           "promiscuity": b["promiscuity"], "txqlen": b["txqlen"],
           "vlan_filtering": b["linkinfo"]["info_data"]["vlan_filtering"],
           "addrs": node.ns.addrs(BR).unwrap(),
           "accept_ra": node.sysctl_in(&format!("/proc/sys/net/ipv6/conf/{BR}/accept_ra")),
           "vlans": vlans(node, BR)})
}

/// Both ends of one pod's pair, the host veth's name masked.
fn pair_state(node: &Node, pod: &Pod, veth: &str) -> Value {
    let h = node.ns.link(veth).unwrap();
    let p = pod.ns.link("eth0").unwrap();
    let psys = |k: &str| pod.sysctl(&format!("/proc/sys/net/{k}"));
    json!({
        "host": {"kind": h["linkinfo"]["info_kind"], "mtu": h["mtu"], "flags": sorted_flags(&h),
                 "master": h["master"], "slave": h["linkinfo"]["info_slave_kind"],
                 "hairpin": h["linkinfo"]["info_slave_data"]["hairpin"],
                 "addrs": node.ns.addrs(veth).unwrap(), "vlans": vlans(node, veth),
                 "accept_ra": node.sysctl_in(&format!("/proc/sys/net/ipv6/conf/{veth}/accept_ra"))},
        "pod": {"kind": p["linkinfo"]["info_kind"], "mtu": p["mtu"], "flags": sorted_flags(&p),
                "addrs": pod.ns.addrs("eth0").unwrap(),
                "routes4": lines(pod.ns.ip(&["-4", "route", "show", "dev", "eth0"]).unwrap(), veth),
                "routes6": lines(pod.ns.ip(&["-6", "route", "show", "dev", "eth0"]).unwrap(), veth),
                "accept_dad": psys("ipv6/conf/eth0/accept_dad"),
                "enhanced_dad": psys("ipv6/conf/eth0/enhanced_dad"),
                "arp_notify": psys("ipv4/conf/eth0/arp_notify")},
    })
}

fn result(node: &Node, cid: &str) -> Value {
    let cache: Value =
        serde_json::from_slice(&std::fs::read(node.cni_dir().join(cid)).unwrap()).unwrap();
    cache["delegates"][0]["result"].clone()
}

/// The result with MACs, the host veth's name and the netns path masked.
fn masked(mut r: Value) -> Value {
    for i in r["interfaces"].as_array_mut().unwrap() {
        i["mac"] = json!("mac");
        if i.get("sandbox").is_some() {
            i["sandbox"] = json!("pod");
        } else if i["name"] != BR {
            i["name"] = json!("VETH");
        }
    }
    if r["dns"] == json!({}) {
        r.as_object_mut().unwrap().remove("dns");
    }
    r
}

fn host_veth(r: &Value) -> String {
    r["interfaces"][1]["name"].as_str().unwrap().to_string()
}

/// The whole sequence on one node; returns everything observed, masked.
fn sequence(node: &Node, conf: &[u8]) -> Value {
    let pods = [Pod::new(), Pod::new()];
    let mut seen = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let cid = format!("br-{i}");
        let out = node.run("ADD", &cid, pod, conf);
        assert!(out.ok(), "ADD {cid}: {} {}", out.stdout, out.stderr);
        let r = result(node, &cid);
        let check = node.run("CHECK", &cid, pod, conf);
        seen.push(json!({"result": masked(r.clone()),
                         "pair": pair_state(node, pod, &host_veth(&r)),
                         "check": check.ok()}));
    }
    seen.push(json!({"bridge": bridge_state(node),
                     "forwarding": [node.sysctl_in("/proc/sys/net/ipv4/ip_forward"),
                                    node.sysctl_in("/proc/sys/net/ipv6/conf/all/forwarding")]}));
    for (i, pod) in pods.iter().enumerate() {
        let del = node.run("DEL", &format!("br-{i}"), pod, conf);
        assert!(del.ok(), "DEL br-{i}: {} {}", del.stdout, del.stderr);
        assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    }
    assert!(node.veths().is_empty(), "{:?}", node.veths());
    assert!(node.cache_files().is_empty());
    assert!(node.reservations("brnet").is_empty());
    // The bridge stays, as the reference leaves it.
    seen.push(bridge_state(node));
    Value::Array(seen)
}

/// The same conf through the module on one node and the reference on
/// another: what each observed.
fn both(extra: impl Fn(&Node) -> Value) -> (Value, Value) {
    let (reference, wasm) = (Node::new(), Node::new());
    let want = sequence(&reference, &conf(&reference, extra(&reference), false));
    let have = sequence(&wasm, &conf(&wasm, extra(&wasm), true));
    (have, want)
}

/// Every observation equal.
fn differential(extra: impl Fn(&Node) -> Value) -> Value {
    let (have, want) = both(extra);
    assert_same(&have, &want);
    have
}

fn assert_same(have: &Value, want: &Value) {
    assert_eq!(
        have,
        want,
        "module:\n{}\nreference:\n{}",
        serde_json::to_string_pretty(&have).unwrap(),
        serde_json::to_string_pretty(&want).unwrap()
    );
}

#[test]
fn plain_bridge_with_mtu_matches_reference() {
    let seen = differential(|_| json!({"mtu": 1400}));
    assert_eq!(seen[0]["pair"]["pod"]["addrs"], json!(["10.70.0.2/24"]));
    assert_eq!(seen[0]["pair"]["pod"]["mtu"], 1400);
    assert_eq!(seen[0]["pair"]["host"]["master"], BR);
    assert_eq!(seen[2]["bridge"]["addrs"], json!([]));
}

#[test]
fn default_gateway_bridge_dual_stack_matches_reference() {
    let seen = differential(|n| json!({"isDefaultGateway": true, "ipam": dual_stack(n)}));
    assert_eq!(
        seen[2]["bridge"]["addrs"],
        json!(["10.70.0.1/24", "fd70::1/64"])
    );
    assert_eq!(seen[2]["forwarding"], json!(["1", "1"]));
    assert!(seen[0]["check"].as_bool().unwrap());
}

/// Can this kernel make a VLAN-filtering bridge (CONFIG_BRIDGE_VLAN_FILTERING)?
fn kernel_filters_vlans() -> bool {
    let ns = multus_testbed::Netns::new("t-vlan").unwrap();
    ns.ip(&[
        "link",
        "add",
        "brv",
        "type",
        "bridge",
        "vlan_filtering",
        "1",
    ])
    .is_ok()
}

#[test]
fn vlan_filtering_bridge_matches_reference() {
    if !kernel_filters_vlans() {
        // This machine's kernel has no bridge VLAN filtering: both plugins
        // must fail alike and leave nothing; the port VLAN calls are
        // covered by multusctl's dry run (ctl/tests/plugin.rs).
        eprintln!("kernel without CONFIG_BRIDGE_VLAN_FILTERING: comparing the failure instead");
        for wasm in [false, true] {
            let node = Node::new();
            let pod = Pod::new();
            let out = node.run(
                "ADD",
                "br-v",
                &pod,
                &conf(&node, json!({"vlan": 100}), wasm),
            );
            let msg = assert_cni_error(&out, 999);
            assert!(msg.contains("not supported"), "wasm={wasm}: {msg}");
            assert_eq!(pod.ns.links().unwrap(), ["lo"]);
            assert!(!node.ns.links().unwrap().iter().any(|l| l == BR));
            assert!(node.veths().is_empty() && node.cache_files().is_empty());
            assert!(node.reservations("brnet").is_empty());
        }
        return;
    }
    let seen = differential(|_| json!({"vlan": 100}));
    assert_eq!(seen[2]["bridge"]["vlan_filtering"], 1);
    let vids: Vec<u64> = seen[0]["pair"]["host"]["vlans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["vlan"].as_u64().unwrap())
        .collect();
    assert!(vids.contains(&100), "{vids:?}");
}

#[test]
fn hairpin_and_dad_match_reference() {
    let seen = differential(|_| json!({"hairpinMode": true, "enabledad": true}));
    assert_eq!(seen[0]["pair"]["host"]["hairpin"], true);
}

#[test]
fn promiscuous_bridge_with_mac_matches_reference() {
    let seen = differential(
        |_| json!({"promiscMode": true, "args": {"cni": {"mac": "02:42:ac:11:00:07"}}}),
    );
    assert_eq!(seen[2]["bridge"]["promiscuity"], 1);
}

#[test]
fn layer2_bridge_matches_reference() {
    let (seen, mut want) = both(|_| json!({"ipam": null}));
    // Upstream's CHECK execs the IPAM even when there is none, and fails.
    for i in 0..2 {
        assert_eq!(want[i]["check"], false);
        want[i]["check"] = json!(true);
    }
    assert_same(&seen, &want);
    assert_eq!(seen[0]["result"]["ips"], Value::Null);
}

/// Nothing of the attachment on the node or in the pod.
fn assert_nothing_left(node: &Node, pod: &Pod) {
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    assert!(node.veths().is_empty(), "{:?}", node.veths());
    assert!(node.reservations("brnet").is_empty());
    assert!(node.cache_files().is_empty(), "{:?}", node.cache_files());
}

/// Keys the module will not half-honour, and bad values: code 7 naming
/// the key, before anything is made (not even the bridge).
#[test]
fn refusals_name_the_key_and_make_nothing() {
    let node = Node::new();
    let pod = Pod::new();
    for (extra, key) in [
        (json!({"ipMasq": true}), "ipMasq"),
        (json!({"macspoofchk": true}), "macspoofchk"),
        (json!({"isGateway": true, "vlan": 10}), "isGateway"),
        (
            json!({"hairpinMode": true, "promiscMode": true}),
            "hairpinMode",
        ),
        (json!({"vlan": 5000}), "vlan"),
        (json!({"vlan": 10, "vlanTrunk": [{"id": 20}]}), "vlanTrunk"),
        (
            json!({"vlanTrunk": [{"minID": 30, "maxID": 20}]}),
            "vlanTrunk",
        ),
        (json!({"vlanTrunk": [{"minID": 3}]}), "vlanTrunk"),
        (json!({"mtu": "big"}), "mtu"),
    ] {
        let msg = assert_cni_error(
            &node.run("ADD", "br-r", &pod, &conf(&node, extra.clone(), true)),
            7,
        );
        assert!(msg.contains(key), "{extra}: {msg}");
        assert!(!node.ns.links().unwrap().iter().any(|l| l == BR), "{extra}");
        assert_nothing_left(&node, &pod);
    }
}

/// A host link of the bridge's name that is no bridge: an invalid config
/// (code 7), and the link untouched.
#[test]
fn a_non_bridge_of_that_name_is_an_error() {
    let node = Node::new();
    let pod = Pod::new();
    let c = conf(&node, json!({"bridge": "uplink0"}), true);
    let msg = assert_cni_error(&node.run("ADD", "br-n", &pod, &c), 7);
    assert!(
        msg.contains("\"uplink0\" already exists but is not a bridge"),
        "{msg}"
    );
    let up = node.ns.link("uplink0").unwrap();
    assert_eq!(up["linkinfo"]["info_kind"], "veth");
    assert!(up["master"].is_null());
    assert_nothing_left(&node, &pod);
}

/// A gateway bridge already holding another IPv4 address: refused without
/// `forceAddress`, and unlike the reference (which leaves the veth and
/// the IP), nothing is left; with it, the address is replaced.
#[test]
fn gateway_address_clash_rolls_back_or_is_forced() {
    let node = Node::new();
    let pod = Pod::new();
    node.ns.ip(&["link", "add", BR, "type", "bridge"]).unwrap();
    node.ns
        .ip(&["addr", "add", "10.9.9.1/24", "dev", BR])
        .unwrap();
    let c = conf(&node, json!({"isGateway": true}), true);
    let msg = assert_cni_error(&node.run("ADD", "br-g", &pod, &c), 999);
    assert!(
        msg.contains("already has an IP address different from 10.70.0.1/24"),
        "{msg}"
    );
    assert_eq!(node.ns.addrs(BR).unwrap(), ["10.9.9.1/24"]);
    assert_nothing_left(&node, &pod);

    let c = conf(
        &node,
        json!({"isGateway": true, "forceAddress": true}),
        true,
    );
    let out = node.run("ADD", "br-g", &pod, &c);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(node.ns.addrs(BR).unwrap(), ["10.70.0.1/24"]);
    let del = node.run("DEL", "br-g", &pod, &c);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert_nothing_left(&node, &pod);
}

/// DEL after the pod's netns is gone: the kernel took both veth ends with
/// it; the IP and the cache are freed.
#[test]
fn del_after_the_pod_netns_is_gone() {
    let node = Node::new();
    let pod = Pod::new();
    let c = conf(&node, json!({}), true);
    let out = node.run("ADD", "br-d", &pod, &c);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(node.reservations("brnet").len(), 1);
    multus_testbed::ip(&["netns", "del", pod.ns.name()]).unwrap();
    let del = node.run("DEL", "br-d", &pod, &c);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    // The kernel tears a deleted netns down in the background; the host
    // end goes with it, not with anything DEL does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !node.veths().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(node.veths().is_empty(), "{:?}", node.veths());
    assert!(node.reservations("brnet").is_empty());
    assert!(node.cache_files().is_empty());
    let again = node.run("DEL", "br-d", &pod, &c);
    assert!(again.ok(), "{} {}", again.stdout, again.stderr);
}

/// containerd's sequence: StopPodSandbox's DEL with the netns, the netns
/// removed, then RemovePodSandbox's DEL again with CNI_NETNS empty. The
/// repeated DEL failed (`sandbox denied links.link-del: no container netns
/// in this call`), so the sandbox could never be removed (issue 20). Also a
/// first DEL with no netns at all (the cache there) frees the IP.
#[test]
fn del_repeated_with_no_netns_as_containerd_does() {
    let node = Node::new();
    let c = conf(&node, json!({}), true);
    let pod = Pod::new();
    assert!(node.run("ADD", "br-r", &pod, &c).ok());
    assert!(node.run("DEL", "br-r", &pod, &c).ok());
    multus_testbed::ip(&["netns", "del", pod.ns.name()]).unwrap();
    let repeat = node.multus(&pod_env("DEL", "br-r", ""), &c);
    assert!(repeat.ok(), "{} {}", repeat.stdout, repeat.stderr);

    let pod = Pod::new();
    let out = node.run("ADD", "br-n", &pod, &c);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    multus_testbed::ip(&["netns", "del", pod.ns.name()]).unwrap();
    let del = node.multus(&pod_env("DEL", "br-n", ""), &c);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert!(node.reservations("brnet").is_empty());
    assert!(node.cache_files().is_empty());
}

/// multus killed with SIGKILL after the veth pair was made and while its
/// (native, slow) IPAM runs: the runtime's DEL removes both ends.
#[test]
fn killed_after_the_veth_then_del_removes_it() {
    let node = Node::new();
    node.install_wasm(&["bridge"]);
    let bin = node.dir.path().join("bin");
    slow_ipam(&bin);
    let mut c = node.with_wasm(confs::multus_delegates(
        &[
            json!({"cniVersion": "1.0.0", "name": "brnet", "type": "bridge",
                 "bridge": BR, "ipam": {"type": "slow-ipam"}}),
        ],
        &node.cni_dir(),
        &bin,
    ));
    c["wasmPlugins"] = json!({"bridge": {"hostNetns": true}});
    let conf = bytes(&c);
    let pod = Pod::new();
    node.kill_add_once_linked("crash", &pod, &conf, "eth0");
    assert_eq!(node.veths().len(), 1, "left behind by the kill");

    let del = node.run("DEL", "crash", &pod, &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    assert!(node.veths().is_empty(), "{:?}", node.veths());
    assert!(node.cache_files().is_empty());
}
