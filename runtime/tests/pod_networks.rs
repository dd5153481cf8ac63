//! The built `multus` binary exec'd as a runtime does, in real network
//! namespaces, with Debian's reference plugins as delegates.

mod common;

use common::*;
use multus_testbed::confs;
use serde_json::{json, Value};

fn three_networks(node: &Node) -> Value {
    confs::multus_delegates(
        &[
            confs::bridge_host_local("cluster", "cni0", "10.1.0.0/24", &node.data_dir()),
            confs::macvlan_host_local("mv", "uplink0", "10.2.0.0/24", &node.data_dir()),
            confs::bridge_static_tuning("storage", "stor0", "10.3.0.10/24", "net2"),
        ],
        &node.cni_dir(),
        &plugins(),
    )
}

#[test]
fn add_check_del_three_networks() {
    let node = Node::new();
    let pod = Pod::new();
    let netns = pod.path.as_str();
    let conf = bytes(&three_networks(&node));

    let out = node.run("ADD", "c1", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let r = out.json();
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["ips"][0]["address"], "10.1.0.2/24");
    assert_eq!(r["ips"][0]["gateway"], "10.1.0.1");
    let eth0 = r["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0")
        .expect("eth0 in result");
    assert_eq!(eth0["sandbox"], netns);

    let mut links = pod.ns.links().unwrap();
    links.sort();
    assert_eq!(links, vec!["eth0", "lo", "net1", "net2"]);
    assert_eq!(pod.ns.addrs("eth0").unwrap(), vec!["10.1.0.2/24"]);
    assert_eq!(pod.ns.addrs("net1").unwrap(), vec!["10.2.0.2/24"]);
    assert_eq!(pod.ns.addrs("net2").unwrap(), vec!["10.3.0.10/24"]);
    let routes = pod.ns.routes().unwrap();
    let default: Vec<&Value> = routes.iter().filter(|r| r["dst"] == "default").collect();
    assert_eq!(default.len(), 1, "{routes:?}");
    assert_eq!(default[0]["gateway"], "10.1.0.1");
    assert_eq!(default[0]["dev"], "eth0");
    assert_eq!(
        pod.ns.link("net1").unwrap()["linkinfo"]["info_kind"],
        "macvlan"
    );
    let net2 = pod.ns.link("net2").unwrap();
    assert_eq!(net2["mtu"], 1400);
    assert!(
        net2["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("PROMISC")),
        "{net2}"
    );
    assert_eq!(pod.sysctl("/proc/sys/net/ipv4/conf/net2/arp_ignore"), "1");

    assert_eq!(node.reservations("cluster"), vec!["10.1.0.2"]);
    assert_eq!(node.reservations("mv"), vec!["10.2.0.2"]);
    let held = std::fs::read_to_string(node.data_dir().join("cluster/10.1.0.2")).unwrap();
    assert_eq!(held, "c1\r\neth0");
    let cache: Value =
        serde_json::from_slice(&std::fs::read(node.cni_dir().join("c1")).unwrap()).unwrap();
    assert_eq!(cache["kind"], "multusCacheV1");
    assert_eq!(cache["complete"], true);
    assert_eq!(cache["delegates"].as_array().unwrap().len(), 3);
    assert_eq!(node.veths().len(), 2, "one host veth per bridge network");

    let out = node.run("CHECK", "c1", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert!(out.stdout.is_empty());

    let out = node.run("DEL", "c1", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
    assert!(node.reservations("cluster").is_empty());
    assert!(node.reservations("mv").is_empty());
    assert!(node.cache_files().is_empty(), "{:?}", node.cache_files());
    assert!(node.veths().is_empty(), "{:?}", node.veths());

    let out = node.run("DEL", "c1", &pod, &conf);
    assert!(out.ok(), "second DEL: {} {}", out.stdout, out.stderr);
}

#[test]
fn cluster_network_by_name_default_networks_and_result_version() {
    let node = Node::new();
    let pod = Pod::new();
    let netns = pod.path.as_str();
    std::fs::create_dir_all(node.conf_dir()).unwrap();
    let cluster =
        confs::bridge_host_local("k8s-pod-network", "cni0", "10.4.0.0/24", &node.data_dir());
    std::fs::write(node.conf_dir().join("10-k8s.conflist"), bytes(&cluster)).unwrap();
    let extra = confs::macvlan_host_local("extra", "uplink0", "10.5.0.0/24", &node.data_dir());
    std::fs::write(node.conf_dir().join("20-extra.conf"), bytes(&extra)).unwrap();
    let conf = node.with_wasm_dirs(json!({
        "cniVersion": "0.3.1", "name": "multus-cni-network", "type": "multus",
        "ConfDir": node.conf_dir(), "CNIDir": node.cni_dir(), "BinDir": plugins(),
        "clusterNetwork": "k8s-pod-network", "defaultNetworks": ["extra"],
        "LogLevel": "verbose", "LogFile": node.dir.path().join("multus.log"), "logToStderr": false
    }));

    let out = node.run("ADD", "c2", &pod, &bytes(&conf));
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let r = out.json();
    assert_eq!(
        r["cniVersion"], "0.3.1",
        "printed in the multus conf's version"
    );
    assert_eq!(r["ips"][0]["version"], "4");
    assert_eq!(r["ips"][0]["address"], "10.4.0.2/24");
    assert_eq!(pod.ns.addrs("net1").unwrap(), vec!["10.5.0.2/24"]);
    assert!(out.stderr.is_empty(), "logToStderr false: {}", out.stderr);
    let log = std::fs::read_to_string(node.dir.path().join("multus.log")).unwrap();
    assert!(
        log.contains("network=k8s-pod-network")
            && log.contains("ifname=eth0")
            && log.contains("command=ADD"),
        "{log}"
    );
    assert!(
        log.contains("network=extra") && log.contains("duration_ms"),
        "{log}"
    );

    // kube-system pods get no defaultNetworks.
    let pod2 = Pod::new();
    let mut env = pod_env("ADD", "c3", &pod2.path);
    env[4] = (
        "CNI_ARGS",
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=dns",
    );
    let out = node.multus(&env, &bytes(&conf));
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let mut links = pod2.ns.links().unwrap();
    links.sort();
    assert_eq!(links, vec!["eth0", "lo"]);

    for (cid, ns, e) in [
        ("c2", netns, pod_env("DEL", "c2", netns)),
        ("c3", pod2.path.as_str(), env.clone()),
    ] {
        let mut e = e;
        e[0] = ("CNI_COMMAND", "DEL");
        let out = node.multus(&e, &bytes(&conf));
        assert!(out.ok(), "DEL {cid} in {ns}: {} {}", out.stdout, out.stderr);
    }
    assert!(node.reservations("k8s-pod-network").is_empty());
    assert!(node.reservations("extra").is_empty());
    assert!(node.cache_files().is_empty());
}

#[test]
fn del_without_cache_falls_back_to_conf() {
    let node = Node::new();
    let pod = Pod::new();
    let conf = bytes(&three_networks(&node));
    assert!(node.run("ADD", "c4", &pod, &conf).ok());
    std::fs::remove_file(node.cni_dir().join("c4")).unwrap();
    let out = node.run("DEL", "c4", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
    assert!(node.reservations("cluster").is_empty());
    assert!(node.reservations("mv").is_empty());
}

#[test]
fn corrupt_cache_is_an_error_naming_the_file() {
    let node = Node::new();
    let pod = Pod::new();
    let conf = bytes(&three_networks(&node));
    assert!(node.run("ADD", "c5", &pod, &conf).ok());
    let cache = node.cni_dir().join("c5");
    std::fs::write(&cache, b"{\"kind\":\"multusCacheV1\",\"deleg").unwrap();
    let out = node.run("DEL", "c5", &pod, &conf);
    let msg = assert_cni_error(&out, 6);
    assert!(msg.contains(cache.to_str().unwrap()), "{msg}");
    assert_eq!(
        node.reservations("cluster"),
        vec!["10.1.0.2"],
        "nothing deleted behind a corrupt cache"
    );
    std::fs::remove_file(&cache).unwrap();
    assert!(node.run("DEL", "c5", &pod, &conf).ok());
    assert!(node.reservations("cluster").is_empty());
}

#[test]
fn del_reads_go_multus_scratch_cache() {
    use base64::Engine as _;
    let node = Node::new();
    let pod = Pod::new();
    let conf = three_networks(&node);
    assert!(node.run("ADD", "c6", &pod, &bytes(&conf)).ok());
    // What Go multus leaves: a JSON array of delegates, full conf in base64.
    let go: Vec<Value> = conf["delegates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            json!({"Conf": {}, "ConfList": {}, "Name": "", "ifnameRequest": "",
                   "Bytes": base64::engine::general_purpose::STANDARD.encode(bytes(d))})
        })
        .collect();
    std::fs::write(node.cni_dir().join("c6"), bytes(&Value::Array(go))).unwrap();
    let out = node.run("DEL", "c6", &pod, &bytes(&conf));
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
    assert!(node.reservations("cluster").is_empty() && node.reservations("mv").is_empty());
    assert!(node.cache_files().is_empty());
}

#[test]
fn gc_deletes_attachments_not_listed() {
    let node = Node::new();
    let conf = three_networks(&node);
    let keep = Pod::new();
    let stale = Pod::new();
    for (cid, pod) in [("keep", &keep), ("stale", &stale)] {
        let out = node.run("ADD", cid, pod, &bytes(&conf));
        assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    }
    assert_eq!(node.reservations("cluster").len(), 2);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    let out = node.multus(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")],
        &bytes(&gc),
    );
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(stale.ns.links().unwrap(), vec!["lo"]);
    assert_eq!(keep.ns.links().unwrap().len(), 4);
    assert_eq!(node.reservations("cluster"), vec!["10.1.0.2"]);
    assert_eq!(node.cache_files(), vec!["keep"]);
    let out = node.multus(&[("CNI_COMMAND", "GC")], &bytes(&three_networks(&node)));
    assert_cni_error(&out, 7);
}

#[test]
fn status_and_version() {
    let node = Node::new();
    let mut conf = three_networks(&node);
    let ready = node.dir.path().join("ready");
    conf["readinessindicatorfile"] = json!(ready);
    let out = node.multus(&[("CNI_COMMAND", "STATUS")], &bytes(&conf));
    let msg = assert_cni_error(&out, 50);
    assert!(msg.contains("readinessindicatorfile"), "{msg}");
    std::fs::write(&ready, "").unwrap();
    let out = node.multus(&[("CNI_COMMAND", "STATUS")], &bytes(&conf));
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);

    let out = node.multus(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"1.0.0"}"#);
    assert!(out.ok());
    let v = out.json();
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(
        v["supportedVersions"],
        json!(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}
