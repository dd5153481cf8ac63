//! Guest modules that try to leave their grant, one each: every attempt is
//! refused with a CNI error naming the plugin and the call, the ADD is
//! rolled back, and nothing on the node or in the pod changes.

mod common;

use common::*;
use multus_testbed::confs;
use serde_json::{json, Value};

fn probe_conf(node: &Node, plugin: &str, probe: &str, settings: Value) -> Vec<u8> {
    probe_conf_with(node, plugin, probe, json!({}), settings)
}

/// The probe's conflist entry carries `keys` besides its `probe`.
fn probe_conf_with(
    node: &Node,
    plugin: &str,
    probe: &str,
    keys: Value,
    settings: Value,
) -> Vec<u8> {
    let mut list = confs::bridge_host_local("probed", "cni0", "10.8.0.0/24", &node.data_dir());
    let mut entry = json!({"type": plugin, "probe": probe});
    for (k, v) in keys.as_object().unwrap() {
        entry[k] = v.clone();
    }
    list["plugins"].as_array_mut().unwrap().push(entry);
    let mut conf = node.with_wasm(confs::multus_delegates(
        &[list],
        &node.cni_dir(),
        &plugins(),
    ));
    conf["wasmPlugins"] = json!({ plugin: settings });
    bytes(&conf)
}

fn host_state() -> (String, String) {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    (hostname, forward)
}

/// Runs one probe and checks the refusal and that nothing was left behind.
fn refused(probe: &str, plugin: &str, settings: Value, code: u64, names: &[&str]) {
    refused_with(probe, plugin, json!({}), settings, code, names)
}

/// `refused` with `keys` in the probe's config.
fn refused_with(
    probe: &str,
    plugin: &str,
    keys: Value,
    settings: Value,
    code: u64,
    names: &[&str],
) {
    let node = Node::new();
    node.install_wasm(&[plugin]);
    let pod = Pod::new();
    let before_host = host_state();
    let before_node = node.ns.ip(&["-br", "link"]).unwrap();
    let rules = |ns: &multus_testbed::Netns| {
        let mut r = ns.ip(&["rule", "show"]).unwrap();
        r.push_str(&ns.ip(&["-6", "rule", "show"]).unwrap());
        r
    };
    let before_rules = (rules(&pod.ns), rules(&node.ns));
    let out = node.run(
        "ADD",
        "probe",
        &pod,
        &probe_conf_with(&node, plugin, probe, keys, settings),
    );
    let msg = assert_cni_error(&out, code);
    for n in names {
        assert!(msg.contains(n), "probe {probe}: {msg:?} should name {n:?}");
    }
    assert_eq!(
        pod.ns.links().unwrap(),
        vec!["lo"],
        "probe {probe}: rolled back"
    );
    let lo = pod.ns.link("lo").unwrap();
    assert!(
        lo["flags"].as_array().unwrap().contains(&json!("UP")),
        "probe {probe}: pod lo untouched"
    );
    assert!(node.reservations("probed").is_empty(), "probe {probe}");
    assert!(node.cache_files().is_empty(), "probe {probe}");
    assert_eq!(
        host_state(),
        before_host,
        "probe {probe}: host sysctls untouched"
    );
    assert_eq!(
        (rules(&pod.ns), rules(&node.ns)),
        before_rules,
        "probe {probe}: no rule added in the pod or on the node"
    );
    assert_eq!(
        pod.ns
            .ip(&["route", "show", "table", "all", "type", "unicast"])
            .unwrap(),
        "",
        "probe {probe}: no route left in any table"
    );
    let after_node = node.ns.ip(&["-br", "link"]).unwrap();
    let veths = |s: &str| s.lines().filter(|l| l.starts_with("veth")).count();
    assert_eq!(
        veths(&after_node),
        veths(&before_node),
        "probe {probe}: no host veth left"
    );
    // The cluster network's own bridge stays, as bridges do; nothing else
    // appears or changes master.
    // Names and addresses: a veth pair's carrier state settles on its own.
    let others = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with("veth") && !l.starts_with("cni0"))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                format!("{} {}", f[0], f.get(2).unwrap_or(&""))
            })
            .collect()
    };
    assert_eq!(
        others(&after_node),
        others(&before_node),
        "probe {probe}: host links untouched"
    );
    assert!(
        node.ns.link("uplink0").unwrap()["master"].is_null(),
        "probe {probe}"
    );
}

#[test]
fn host_netns_without_grant() {
    refused(
        "host-netns",
        "sandbox-probe",
        json!({}),
        7,
        &["sandbox-probe", "netlink.link-get(lo)", "hostNetns"],
    );
}

#[test]
fn link_not_granted() {
    refused(
        "ungranted-link",
        "sandbox-probe",
        json!({}),
        7,
        &["sandbox-probe", "netlink.link-set(lo)", "not granted"],
    );
}

#[test]
fn sysctl_outside_net() {
    refused(
        "sysctl-outside-net",
        "sandbox-probe",
        json!({}),
        7,
        &["sandbox-probe", "sysctl.set", "not a plain name"],
    );
}

#[test]
fn sysctl_off_the_allowlist() {
    refused(
        "sysctl-unlisted",
        "sandbox-probe",
        json!({}),
        7,
        &[
            "sandbox-probe",
            "sysctl.set",
            "net.ipv4.ip_forward",
            "allowlist",
        ],
    );
}

#[test]
fn sysctl_on_another_link() {
    refused(
        "sysctl-other-link",
        "sandbox-probe",
        json!({}),
        7,
        &["sandbox-probe", "sysctl.set", "lo"],
    );
}

#[test]
fn a_swallowed_denial_still_fails() {
    refused(
        "swallow-denial",
        "sandbox-probe",
        json!({}),
        7,
        &["sandbox-probe", "sandbox denied", "netlink.link-get(lo)"],
    );
}

#[test]
fn path_via_wasi_refused_at_load() {
    refused(
        "any",
        "sandbox-fs",
        json!({}),
        7,
        &["sandbox-fs", "wasi:filesystem", "refusing"],
    );
}

#[test]
fn endless_loop_hits_the_deadline() {
    refused(
        "loop",
        "sandbox-probe",
        json!({"timeoutMs": 300}),
        999,
        &["sandbox-probe", "add timed out after 300ms"],
    );
}

#[test]
fn memory_bomb_hits_the_cap() {
    refused(
        "memory",
        "sandbox-probe",
        json!({"memoryLimitMib": 16}),
        999,
        &["sandbox-probe", "add trapped", "16 MiB"],
    );
}

/// A result whose 60 interface names all point at one 512 KiB string of the
/// module's memory: copying it out would cost the host 30 MiB, more than the
/// module's 8 MiB limit. wasmtime's own bound is 128 MiB whatever the limit
/// (the copy went through, and only the size check after it refused it).
#[test]
fn a_result_is_copied_out_within_the_memory_limit() {
    refused(
        "aliased-result",
        "sandbox-probe",
        json!({"memoryLimitMib": 8}),
        999,
        &[
            "sandbox-probe",
            "add failed",
            "fuel allocated for hostcalls",
            "memory limit, 8 MiB",
        ],
    );
}

/// The size checks come before any check whose message names a value: a
/// 2000-byte interface name is refused by its length, not echoed.
#[test]
fn an_overlong_name_is_refused_not_echoed() {
    refused(
        "long-name-result",
        "sandbox-probe",
        json!({}),
        6,
        &["sandbox-probe", "a 2000-byte name"],
    );
}

#[test]
fn host_netns_with_grant_is_allowed() {
    let node = Node::new();
    node.install_wasm(&["sandbox-probe"]);
    let pod = Pod::new();
    // The link its config names ("master"), and only that one.
    let mut conf: serde_json::Value = serde_json::from_slice(&probe_conf(
        &node,
        "sandbox-probe",
        "host-netns",
        json!({"hostNetns": true}),
    ))
    .unwrap();
    conf["delegates"][0]["plugins"][1]["master"] = json!("lo");
    let conf = bytes(&conf);
    let out = node.run("ADD", "granted", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert!(node.run("DEL", "granted", &pod, &conf).ok());
}

#[test]
fn route_on_an_ungranted_link() {
    refused(
        "route-ungranted-link",
        "sandbox-probe",
        json!({}),
        7,
        &["sandbox-probe", "routing.route-add(lo)", "not granted"],
    );
}

#[test]
fn rule_for_someone_elses_address() {
    refused(
        "rule-other-address",
        "sandbox-probe",
        json!({}),
        7,
        &[
            "sandbox-probe",
            "routing.rule-add",
            "10.99.0.7/32",
            "not an address of a granted link",
        ],
    );
}

#[test]
fn rule_into_main_for_all_sources() {
    refused(
        "rule-main-without-from",
        "sandbox-probe",
        json!({}),
        7,
        &[
            "sandbox-probe",
            "routing.rule-add",
            "must select this call's traffic",
        ],
    );
}

#[test]
fn rule_in_the_host_netns_without_grant() {
    refused(
        "rule-host-netns",
        "sandbox-probe",
        json!({}),
        7,
        &["sandbox-probe", "routing.rule-add", "hostNetns"],
    );
}

/// `link-list` shows the granted links only (the probe fails otherwise).
#[test]
fn link_list_shows_only_granted_links() {
    let node = Node::new();
    node.install_wasm(&["sandbox-probe"]);
    let pod = Pod::new();
    let conf = probe_conf(&node, "sandbox-probe", "link-list", json!({}));
    let out = node.run("ADD", "probe", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert!(node.run("DEL", "probe", &pod, &conf).ok());
}

#[test]
fn host_link_the_config_does_not_name() {
    refused(
        "host-netns",
        "sandbox-probe",
        json!({"hostNetns": true}),
        7,
        &[
            "sandbox-probe",
            "netlink.link-get(lo)",
            "neither named by the plugin's config",
        ],
    );
}

#[test]
fn macvlan_on_a_master_the_config_does_not_name() {
    refused(
        "macvlan-unnamed-master",
        "sandbox-probe",
        json!({"hostNetns": true}),
        7,
        &[
            "sandbox-probe",
            "links.macvlan-add(uplink0)",
            "not one the plugin's config names",
        ],
    );
}

#[test]
fn veth_without_the_host_grant() {
    refused(
        "veth",
        "sandbox-probe",
        json!({}),
        7,
        &["sandbox-probe", "links.veth-add", "hostNetns"],
    );
}

#[test]
fn forwarding_without_the_host_grant() {
    refused(
        "forwarding",
        "sandbox-probe",
        json!({}),
        7,
        &["sandbox-probe", "links.enable-forwarding", "hostNetns"],
    );
}

#[test]
fn bridge_without_the_host_grant() {
    refused(
        "bridge-ensure",
        "sandbox-probe",
        json!({}),
        7,
        &["sandbox-probe", "links.bridge-ensure(br-evil)", "hostNetns"],
    );
}

#[test]
fn bridge_the_config_does_not_name() {
    refused(
        "bridge-ensure",
        "sandbox-probe",
        json!({"hostNetns": true}),
        7,
        &[
            "sandbox-probe",
            "links.bridge-ensure(br-evil)",
            "not one the plugin's config names",
        ],
    );
}

/// Even with the bridge and the master named in its config and the host
/// grant, a plugin cannot pull a host link it did not create (an uplink)
/// into a bridge.
#[test]
fn bridge_port_the_call_did_not_create() {
    refused_with(
        "bridge-attach-master",
        "sandbox-probe",
        json!({"bridge": "cni0", "master": "uplink0"}),
        json!({"hostNetns": true}),
        7,
        &[
            "sandbox-probe",
            "links.bridge-attach(uplink0, cni0)",
            "was not created by this call",
        ],
    );
}

/// Found by the soak: a module could return 50 000 routes, which multus
/// cached and printed. Now refused at the boundary, naming the count.
#[test]
fn an_enormous_result_is_refused() {
    refused(
        "huge-result",
        "sandbox-probe",
        json!({}),
        6,
        &["sandbox-probe", "its result", "routes (at most 1024)"],
    );
}

#[test]
fn a_malformed_result_is_refused() {
    refused(
        "malformed-result",
        "sandbox-probe",
        json!({}),
        6,
        &["sandbox-probe", "not-an-address"],
    );
}

/// Every denied call in one run, each refusal ignored by the module: the
/// call fails anyway, naming the first.
#[test]
fn every_denied_call_in_one_run() {
    refused(
        "every-denied",
        "sandbox-probe",
        json!({}),
        7,
        &["sandbox-probe", "netlink.link-get(lo)"],
    );
}

/// Issue 19's confirmed escape, as a user found it: the shipped tuning
/// module as the first plugin of a NAD's conflist, its config carrying a
/// `prevResult` that names `/proc/sys/kernel` as a pod interface. The
/// host's `kernel.domainname` was rewritten. Now a config's prevResult
/// never reaches the chain (the first plugin of an ADD gets none, as the
/// spec says), so tuning refuses to run without one.
#[test]
fn a_configs_prev_result_reaches_no_host_sysctl() {
    let node = Node::new();
    node.install_wasm(&["tuning"]);
    let pod = Pod::new();
    let before = std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    let cluster = confs::bridge_host_local("cluster", "cni0", "10.8.0.0/24", &node.data_dir());
    let esc = json!({"cniVersion": "1.0.0", "name": "esc", "plugins": [{"type": "tuning",
        "prevResult": {"cniVersion": "1.0.0",
            "interfaces": [{"name": "/proc/sys/kernel", "sandbox": "/var/run/netns/escns"}], "ips": []},
        "sysctl": {"net.ipv4.conf./proc/sys/kernel.domainname": "escaped"}}]});
    let conf = node.with_wasm(confs::multus_delegates(
        &[cluster, esc],
        &node.cni_dir(),
        &plugins(),
    ));
    let out = node.run("ADD", "esc", &pod, &bytes(&conf));
    let msg = assert_cni_error(&out, 7);
    assert!(
        msg.contains("tuning") && msg.contains("no prevResult"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap(),
        before,
        "the host's kernel.domainname is untouched"
    );
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"], "rolled back");
    assert!(node.cache_files().is_empty());
}

/// The same escape through a granted pod link: a config's prevResult
/// naming the pod's `lo` does not make `lo` this call's.
#[test]
fn a_configs_prev_result_grants_no_pod_link() {
    let node = Node::new();
    node.install_wasm(&["sandbox-probe"]);
    let pod = Pod::new();
    let cluster = confs::bridge_host_local("cluster", "cni0", "10.8.0.0/24", &node.data_dir());
    let probe = json!({"cniVersion": "1.0.0", "name": "p", "plugins": [{"type": "sandbox-probe",
        "probe": "ungranted-link",
        "prevResult": {"cniVersion": "1.0.0",
            "interfaces": [{"name": "lo", "sandbox": pod.ns.path()}], "ips": []}}]});
    let conf = node.with_wasm(confs::multus_delegates(
        &[cluster, probe],
        &node.cni_dir(),
        &plugins(),
    ));
    let out = node.run("ADD", "lo", &pod, &bytes(&conf));
    let msg = assert_cni_error(&out, 7);
    assert!(
        msg.contains("netlink.link-set(lo)") && msg.contains("not granted"),
        "{msg}"
    );
    let lo = pod.ns.link("lo").unwrap();
    assert!(lo["flags"].as_array().unwrap().contains(&json!("UP")));
}

/// A rule with no from, iif or oif into a table nobody uses: it would pull
/// every interface's traffic, eth0's included, into the plugin's table.
#[test]
fn rule_without_a_selector() {
    refused(
        "rule-no-selector",
        "sandbox-probe",
        json!({}),
        7,
        &[
            "sandbox-probe",
            "routing.rule-add",
            "must select this call's traffic",
        ],
    );
}

/// `hostNetns` covers the links a config names, never the node's policy
/// routing: `from all lookup 100 pref 0` is refused.
#[test]
fn host_rule_even_with_the_grant() {
    refused(
        "host-rule",
        "sandbox-probe",
        json!({"hostNetns": true}),
        7,
        &[
            "sandbox-probe",
            "routing.rule-add",
            "host netns are no plugin's",
        ],
    );
}

/// Nor the node's routes: a route on the host link the config names, in
/// main, is refused (only a host route to the pod, on a link the call
/// created, may be written).
#[test]
fn host_route_on_a_named_link_even_with_the_grant() {
    refused_with(
        "host-route-named",
        "sandbox-probe",
        json!({"master": "uplink0"}),
        json!({"hostNetns": true}),
        7,
        &[
            "sandbox-probe",
            "routing.route-add(uplink0)",
            "links this call created",
        ],
    );
}

/// Nor an address its IPAM did not hand out on a host link it names.
#[test]
fn host_address_outside_the_pods_subnets() {
    refused_with(
        "host-addr",
        "sandbox-probe",
        json!({"master": "uplink0"}),
        json!({"hostNetns": true}),
        7,
        &[
            "sandbox-probe",
            "netlink.addr-add(uplink0)",
            "outside the subnets",
        ],
    );
}

/// A result that places a pod interface the module neither created nor was
/// granted: it would become the next plugin's grant and the cached one.
#[test]
fn a_result_claiming_a_pod_interface_it_does_not_own() {
    refused(
        "claim-lo",
        "sandbox-probe",
        json!({}),
        6,
        &[
            "sandbox-probe",
            "its result",
            "\"lo\"",
            "neither created nor was granted",
        ],
    );
}
