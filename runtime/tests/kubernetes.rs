//! multus against an in-test Kubernetes API server (real Kubernetes JSON over
//! HTTPS inside the node netns), with the reference plugins in real netns.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use multus_testbed::kube_api::FakeKubeApi;
use multus_testbed::pod_resources::FakePodResources;
use multus_testbed::{confs, exec_cni, CniOutput};
use serde_json::{json, Value};

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const STATUS: &str = "k8s.v1.cni.cncf.io/network-status";

struct Cluster {
    node: Node,
    api: FakeKubeApi,
}

impl Cluster {
    /// A node whose cluster network is bridge `cni0` (a conf file), and an
    /// API server with two NADs: `default/macvlan-conf` (macvlan on uplink0)
    /// and `other/storage` (bridge `stor0`).
    fn new() -> Self {
        let node = Node::new();
        let api = FakeKubeApi::start(&node.ns, "token-1").unwrap();
        std::fs::create_dir_all(node.conf_dir()).unwrap();
        let cluster = confs::bridge_host_local("cluster", "cni0", "10.10.0.0/24", &node.data_dir());
        std::fs::write(node.conf_dir().join("10-cluster.conflist"), bytes(&cluster)).unwrap();
        let mv =
            confs::macvlan_host_local("macvlan-conf", "uplink0", "10.20.0.0/24", &node.data_dir());
        api.add_nad("default", "macvlan-conf", Some(&mv.to_string()), &[]);
        let storage =
            confs::bridge_host_local("storage", "stor0", "10.30.0.0/24", &node.data_dir());
        api.add_nad("other", "storage", Some(&storage.to_string()), &[]);
        Self { node, api }
    }

    /// Pod `default/web` (UID `uid-1`) selecting `macvlan-conf`, and its netns.
    fn web_pod(&self) -> Pod {
        self.api.add_pod(
            "default",
            "web",
            "uid-1",
            &[(NETWORKS, "macvlan-conf")],
            &[],
        );
        Pod::new()
    }

    fn conf(&self, extra: Value) -> Vec<u8> {
        let mut c = self.node.with_wasm_dirs(json!({
            "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
            "kubeconfig": self.api.kubeconfig(), "clusterNetwork": "cluster",
            "confDir": self.node.conf_dir(), "cniDir": self.node.cni_dir(), "binDir": plugins(),
            "podWaitMs": 600,
        }));
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        bytes(&c)
    }

    fn run(
        &self,
        cmd: &str,
        cid: &str,
        pod: &Pod,
        name: &str,
        uid: &str,
        conf: &[u8],
    ) -> CniOutput {
        self.run_in("default", cmd, cid, pod, name, uid, conf)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_in(
        &self,
        ns: &str,
        cmd: &str,
        cid: &str,
        pod: &Pod,
        name: &str,
        uid: &str,
        conf: &[u8],
    ) -> CniOutput {
        let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID={uid}");
        let path = plugins();
        let env = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", pod.path.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", args.as_str()),
            ("CNI_PATH", path.to_str().unwrap()),
        ];
        exec_cni(
            std::path::Path::new(MULTUS),
            Some(&self.node.ns),
            &env,
            conf,
        )
        .unwrap()
    }

    fn status(&self, ns: &str, name: &str) -> Vec<Value> {
        let s = self
            .api
            .annotation(ns, name, STATUS)
            .expect("network-status written");
        serde_json::from_str(&s).unwrap()
    }

    /// Nothing of a pod left: links, IPs, cache.
    fn assert_clean(&self, pod: &Pod) {
        assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
        for net in ["cluster", "macvlan-conf", "storage"] {
            assert!(
                self.node.reservations(net).is_empty(),
                "{net}: {:?}",
                self.node.reservations(net)
            );
        }
        assert!(
            self.node.cache_files().is_empty(),
            "{:?}",
            self.node.cache_files()
        );
    }
}

fn mac_of(pod: &Pod, ifname: &str) -> String {
    pod.ns.link(ifname).unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn annotation_networks_and_network_status() {
    let c = Cluster::new();
    let pod = Pod::new();
    c.api.add_pod(
        "default",
        "web",
        "uid-1",
        &[(NETWORKS, "macvlan-conf@data0, other/storage")],
        &[],
    );
    // Two writers race us to the pod: the first PUTs conflict.
    c.api.conflict_next_status_writes(2);
    let conf = c.conf(json!({}));
    // The NADs are fetched at once (the cluster network's name is looked up
    // as a NAD first, as upstream does): a slow API server costs one
    // round trip, not three.
    c.api.delay(
        "/network-attachment-definitions/",
        std::time::Duration::from_millis(300),
        3,
    );
    let nads = ["/network-attachment-definitions/"];
    c.api.track_peak(&nads);
    // The status write and the events, at once too: each an etcd write
    // on a real API server. Slowed, so that at once means overlapping.
    let writes = [
        "PUT /api/v1/namespaces/default/pods/web/status",
        "POST /api/v1/namespaces/default/events",
    ];
    c.api.track_peak(&writes);
    c.api
        .delay("/status", std::time::Duration::from_millis(300), 1);
    c.api
        .delay("/events", std::time::Duration::from_millis(300), 3);
    let (conns, h2_conns) = c.api.connections();

    let out = c.run("ADD", "c1", &pod, "web", "uid-1", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(c.api.peak(&nads), 3, "{:?}", c.api.requests());
    assert_eq!(c.api.peak(&writes), 4, "{:?}", c.api.requests());
    // Every call of the ADD (the pod, three NADs at once, three status
    // writes, three events at once) on one HTTP/2 connection: one TLS
    // handshake, as client-go makes (over HTTP/1.1, each call in flight
    // took a connection of its own).
    let (after, h2) = c.api.connections();
    assert_eq!(
        (after - conns, h2 - h2_conns),
        (1, 1),
        "{:?}",
        c.api.requests()
    );
    assert_eq!(out.json()["ips"][0]["address"], "10.10.0.2/24");
    let mut links = pod.ns.links().unwrap();
    links.sort();
    assert_eq!(links, vec!["data0", "eth0", "lo", "net2"]);
    assert_eq!(pod.ns.addrs("data0").unwrap(), vec!["10.20.0.2/24"]);
    assert_eq!(pod.ns.addrs("net2").unwrap(), vec!["10.30.0.2/24"]);

    let s = c.status("default", "web");
    assert_eq!(
        s,
        vec![
            json!({"name":"cluster","interface":"eth0","ips":["10.10.0.2"],"mac":mac_of(&pod,"eth0"),
                   "default":true,"dns":{},"gateway":["10.10.0.1"]}),
            json!({"name":"default/macvlan-conf","interface":"data0","ips":["10.20.0.2"],
                   "mac":mac_of(&pod,"data0"),"dns":{}}),
            json!({"name":"other/storage","interface":"net2","ips":["10.30.0.2"],
                   "mac":mac_of(&pod,"net2"),"dns":{},"gateway":["10.30.0.1"]}),
        ]
    );
    let reqs = c.api.requests();
    let puts: Vec<&String> = reqs.iter().filter(|r| r.starts_with("PUT")).collect();
    assert_eq!(
        puts,
        vec![
            "PUT /api/v1/namespaces/default/pods/web/status 409",
            "PUT /api/v1/namespaces/default/pods/web/status 409",
            "PUT /api/v1/namespaces/default/pods/web/status 200"
        ],
        "{reqs:?}"
    );
    assert!(reqs.contains(
        &"GET /apis/k8s.cni.cncf.io/v1/namespaces/other/network-attachment-definitions/storage 200"
            .to_string()
    ));
    // Posted at once: in any order.
    let mut events: Vec<(String, String, String)> = c
        .api
        .events()
        .iter()
        .map(|e| {
            assert_eq!(e["involvedObject"]["uid"], "uid-1");
            assert_eq!(e["source"]["component"], "multus");
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("type"), s("reason"), s("message"))
        })
        .collect();
    events.sort();
    let added = |m: &str| {
        (
            "Normal".to_string(),
            "AddedInterface".to_string(),
            m.to_string(),
        )
    };
    assert_eq!(
        events,
        vec![
            added("Add data0 [10.20.0.2/24] from default/macvlan-conf"),
            added("Add eth0 [10.10.0.2/24] from cluster"),
            added("Add net2 [10.30.0.2/24] from other/storage"),
        ]
    );
    // The selection annotation and everything else on the pod are kept.
    assert_eq!(
        c.api.annotation("default", "web", NETWORKS).as_deref(),
        Some("macvlan-conf@data0, other/storage")
    );

    let out = c.run("CHECK", "c1", &pod, "web", "uid-1", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let out = c.run("DEL", "c1", &pod, "web", "uid-1", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    c.assert_clean(&pod);
}

#[test]
fn default_route_moves_to_the_selected_network_for_both_families() {
    let c = Cluster::new();
    let dual = |name: &str, bridge: &str, v4: &str, v6: &str| {
        json!({"cniVersion":"1.0.0","name":name,"plugins":[{"type":"bridge","bridge":bridge,
            "isGateway":true,"isDefaultGateway":true,
            "ipam":{"type":"host-local","dataDir":c.node.data_dir(),
                    "ranges":[[{"subnet":v4}],[{"subnet":v6}]]}}]})
    };
    std::fs::write(
        c.node.conf_dir().join("10-cluster.conflist"),
        bytes(&dual("cluster", "cni0", "10.10.0.0/24", "fd10::/64")),
    )
    .unwrap();
    let mv = json!({"cniVersion":"1.0.0","name":"mv6","type":"macvlan","master":"uplink0","mode":"bridge",
        "ipam":{"type":"host-local","dataDir":c.node.data_dir(),
                "ranges":[[{"subnet":"10.20.0.0/24"}],[{"subnet":"fd20::/64"}]]}});
    c.api.add_nad("default", "mv6", Some(&mv.to_string()), &[]);
    let pod = Pod::new();
    // No duplicate address detection: IPv6 routes need the addresses usable at once.
    for k in ["all", "default"] {
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                pod.ns.name(),
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{k}.accept_dad=0"),
            ])
            .status()
            .unwrap();
    }
    c.api.add_pod(
        "default",
        "router",
        "uid-r",
        &[(
            NETWORKS,
            r#"[{"name":"mv6","interface":"data0","default-route":["10.20.0.254","fd20::fe"]}]"#,
        )],
        &[],
    );
    let conf = c.conf(json!({}));
    let out = c.run("ADD", "c1", &pod, "router", "uid-r", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);

    let defaults = |v6: bool| -> Vec<(String, String)> {
        let mut cmd = vec!["netns", "exec", pod.ns.name(), "ip", "-j"];
        if v6 {
            cmd.push("-6");
        }
        cmd.extend(["route", "show", "default"]);
        let out = std::process::Command::new("ip")
            .args(&cmd)
            .output()
            .unwrap();
        let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.iter()
            .map(|r| {
                (
                    r["gateway"].as_str().unwrap_or("").to_string(),
                    r["dev"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        defaults(false),
        vec![("10.20.0.254".to_string(), "data0".to_string())]
    );
    assert_eq!(
        defaults(true),
        vec![("fd20::fe".to_string(), "data0".to_string())]
    );
    let printed = out.json();
    assert!(
        !printed["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["dst"] == "0.0.0.0/0" || r["dst"] == "::/0"),
        "the cluster network's result lost its default routes: {printed}"
    );
    let s = c.status("default", "router");
    assert_eq!(s[0]["interface"], "eth0");
    assert_eq!(
        s[0]["default"], true,
        "the cluster network stays the default network"
    );
    assert!(s[0].get("gateway").is_none(), "{s:?}");
    assert_eq!(s[1]["interface"], "data0");
    assert_eq!(s[1]["gateway"], json!(["10.20.0.254", "fd20::fe"]));

    let out = c.run("DEL", "c1", &pod, "router", "uid-r", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
    assert!(c.node.cache_files().is_empty());
}

#[test]
fn legacy_selection_key_from_the_conf() {
    let c = Cluster::new();
    let pod = Pod::new();
    c.api.add_pod(
        "default",
        "old",
        "uid-o",
        &[(
            "tke.cloud.tencent.com/networks",
            r#"[{"name":"macvlan-conf","interfaceRequest":"eth1"}]"#,
        )],
        &[],
    );
    let conf = c.conf(json!({"networksAnnotations": ["tke.cloud.tencent.com/networks", NETWORKS]}));
    let out = c.run("ADD", "c1", &pod, "old", "uid-o", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(pod.ns.addrs("eth1").unwrap(), vec!["10.20.0.2/24"]);
    assert_eq!(c.status("default", "old")[1]["interface"], "eth1");
    // With the default keys, the legacy annotation is not read.
    let pod2 = Pod::new();
    c.api.add_pod(
        "default",
        "old2",
        "uid-o2",
        &[("tke.cloud.tencent.com/networks", "macvlan-conf")],
        &[],
    );
    let out = c.run("ADD", "c2", &pod2, "old2", "uid-o2", &c.conf(json!({})));
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(pod2.ns.links().unwrap().len(), 2, "lo and eth0 only");
    for (cid, p, name, uid) in [
        ("c1", &pod, "old", "uid-o"),
        ("c2", &pod2, "old2", "uid-o2"),
    ] {
        assert!(c.run("DEL", cid, p, name, uid, &conf).ok());
    }
    c.assert_clean(&pod);
}

#[test]
fn del_while_the_api_server_is_down_or_the_pod_is_gone() {
    let mut c = Cluster::new();
    let (pod1, pod2) = (Pod::new(), Pod::new());
    c.api
        .add_pod("default", "a", "uid-a", &[(NETWORKS, "macvlan-conf")], &[]);
    c.api
        .add_pod("default", "b", "uid-b", &[(NETWORKS, "other/storage")], &[]);
    let conf = c.conf(json!({}));
    assert!(c.run("ADD", "c1", &pod1, "a", "uid-a", &conf).ok());
    assert!(c.run("ADD", "c2", &pod2, "b", "uid-b", &conf).ok());

    c.api.remove_pod("default", "a");
    let out = c.run("DEL", "c1", &pod1, "a", "uid-a", &conf);
    assert!(out.ok(), "pod gone: {} {}", out.stdout, out.stderr);
    assert_eq!(pod1.ns.links().unwrap(), vec!["lo"]);

    let before = c.api.requests().len();
    c.api.stop();
    let out = c.run("DEL", "c2", &pod2, "b", "uid-b", &conf);
    assert!(out.ok(), "API down: {} {}", out.stdout, out.stderr);
    assert_eq!(
        c.api.requests().len(),
        before,
        "DEL from the cache asks the API nothing"
    );
    c.assert_clean(&pod2);

    // No cache and no API: the conf's networks are still deleted.
    let out = c.run("DEL", "c9", &pod2, "b", "uid-b", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
}

#[test]
fn uid_mismatch_is_retriable_and_builds_nothing() {
    let c = Cluster::new();
    let pod = Pod::new();
    c.api.add_pod(
        "default",
        "web",
        "uid-new",
        &[(NETWORKS, "macvlan-conf")],
        &[],
    );
    let out = c.run("ADD", "c1", &pod, "web", "uid-old", &c.conf(json!({})));
    let msg = assert_cni_error(&out, 11);
    assert!(
        msg.contains("default/web") && msg.contains("uid-old") && msg.contains("recreated"),
        "{msg}"
    );
    c.assert_clean(&pod);
}

#[test]
fn namespace_isolation_refuses_a_cross_namespace_nad() {
    let c = Cluster::new();
    let pod = Pod::new();
    c.api
        .add_pod("team", "web", "uid-t", &[(NETWORKS, "other/storage")], &[]);
    let conf = c.conf(json!({"namespaceIsolation": true}));
    let out = c.run_in("team", "ADD", "c1", &pod, "web", "uid-t", &conf);
    let msg = assert_cni_error(&out, 7);
    assert!(
        msg.contains("other/storage") && msg.contains("namespaceIsolation"),
        "{msg}"
    );
    c.assert_clean(&pod);
    // A NAD in a global namespace ("default") is allowed.
    c.api.add_pod(
        "team",
        "web2",
        "uid-t2",
        &[(NETWORKS, "default/macvlan-conf")],
        &[],
    );
    let out = c.run_in("team", "ADD", "c2", &pod, "web2", "uid-t2", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert!(c
        .run_in("team", "DEL", "c2", &pod, "web2", "uid-t2", &conf)
        .ok());
    c.assert_clean(&pod);
}

/// The default-network override is a selection too: under
/// namespaceIsolation it may not name another namespace's NAD (it did).
#[test]
fn namespace_isolation_holds_for_the_default_network_override() {
    let c = Cluster::new();
    let pod = Pod::new();
    c.api.add_pod(
        "team",
        "web",
        "uid-t",
        &[("v1.multus-cni.io/default-network", "other/storage")],
        &[],
    );
    let conf = c.conf(json!({"namespaceIsolation": true}));
    let out = c.run_in("team", "ADD", "c1", &pod, "web", "uid-t", &conf);
    let msg = assert_cni_error(&out, 7);
    assert!(
        msg.contains("other/storage") && msg.contains("namespaceIsolation"),
        "{msg}"
    );
    c.assert_clean(&pod);
}

#[test]
fn api_faults_and_bad_selections() {
    let c = Cluster::new();
    let pod = c.web_pod();
    let conf = c.conf(json!({"kubeRequestTimeoutMs": 1000}));

    // A stale token: 401, re-read, still 401: a clear error.
    c.api.accept_token("token-2");
    let out = c.run("ADD", "c1", &pod, "web", "uid-1", &conf);
    let msg = assert_cni_error(&out, 999);
    assert!(
        msg.contains("GET pod default/web") && msg.contains("Unauthorized"),
        "{msg}"
    );
    c.assert_clean(&pod);
    // The rotated token lands in the token file: the next call uses it.
    c.api.write_token_file("token-2").unwrap();

    // A slow answer (past the 1 s budget) is retried.
    c.api.delay("/pods/web", Duration::from_millis(1500), 1);
    let out = c.run("ADD", "c1", &pod, "web", "uid-1", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert!(c.run("DEL", "c1", &pod, "web", "uid-1", &conf).ok());
    c.assert_clean(&pod);

    // A NAD read whose connection dies under it is sent again, as every
    // read is (the NADs go out at once, on a path of their own).
    let fired = c.api.faults_fired();
    c.api
        .reset_next("GET", "/network-attachment-definitions/macvlan-conf", 1);
    let out = c.run("ADD", "c1", &pod, "web", "uid-1", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(c.api.faults_fired(), fired + 1, "the NAD read was reset");
    assert!(c.run("DEL", "c1", &pod, "web", "uid-1", &conf).ok());
    c.assert_clean(&pod);

    // A pod the API never shows: retriable, after podWaitMs.
    let out = c.run("ADD", "c2", &pod, "ghost", "uid-g", &conf);
    let msg = assert_cni_error(&out, 11);
    assert!(
        msg.contains("default/ghost") && msg.contains("not found"),
        "{msg}"
    );

    // A missing NAD, and an invalid element: code 7 naming them.
    for (annotation, want) in [
        (
            "nosuchnet",
            "network-attachment-definition default/nosuchnet not found",
        ),
        ("macvlan-conf, Bad_Name", "element 1 (\"Bad_Name\")"),
        (r#"[{"name":"macvlan-conf","mac":"zz"}]"#, "\"mac\""),
        (
            r#"[{"name":"macvlan-conf","default-route":["10.20.0.1"]},{"name":"macvlan-conf","interface":"x1","default-route":[]}]"#,
            "more than one network",
        ),
    ] {
        c.api
            .add_pod("default", "bad", "uid-b", &[(NETWORKS, annotation)], &[]);
        let out = c.run("ADD", "c3", &pod, "bad", "uid-b", &conf);
        let msg = assert_cni_error(&out, 7);
        assert!(
            msg.contains(want) && msg.contains("default/bad"),
            "{annotation}: {msg}"
        );
        c.assert_clean(&pod);
    }
    let warnings: Vec<String> = c
        .api
        .events()
        .iter()
        .filter(|e| e["type"] == "Warning")
        .map(|e| {
            format!(
                "{} {}",
                e["reason"].as_str().unwrap(),
                e["message"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        warnings,
        vec!["NoNetworkFound cannot find a network-attachment-definition (nosuchnet) in namespace (default)"]
    );
    assert!(
        c.api
            .events()
            .iter()
            .all(|e| e["involvedObject"]["name"] != "bad" || e["type"] == "Warning"),
        "failed ADDs record no AddedInterface"
    );
}

/// A native delegate standing in for SR-IOV (no VFs on this machine): it
/// records the config it was given and reports one interface.
fn capture_plugin(dir: &std::path::Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\ncat > {}/$CNI_COMMAND-$CNI_IFNAME.json\n[ \"$CNI_COMMAND\" = ADD ] && printf '{{\"cniVersion\":\"1.0.0\",\"interfaces\":[{{\"name\":\"%s\",\"sandbox\":\"%s\"}}]}}' \"$CNI_IFNAME\" \"$CNI_NETNS\"\nexit 0\n",
        dir.display()
    );
    let p = bin.join("vf-capture");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(
        &p,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    bin
}

#[test]
fn device_ids_from_the_pod_resources_api() {
    let c = Cluster::new();
    let bin = capture_plugin(c.node.dir.path());
    for p in ["bridge", "host-local"] {
        std::os::unix::fs::symlink(plugins().join(p), bin.join(p)).unwrap();
    }
    let vf = json!({"cniVersion":"1.0.0","name":"vf","plugins":[{"type":"vf-capture","capabilities":{"deviceID":true,"CNIDeviceInfoFile":true}}]});
    for name in ["vf-a", "vf-b"] {
        c.api.add_nad(
            "default",
            name,
            Some(&vf.to_string()),
            &[("k8s.v1.cni.cncf.io/resourceName", "example.com/vf")],
        );
    }
    let devinfo = c.node.dir.path().join("devinfo");
    std::fs::create_dir_all(devinfo.join("dp")).unwrap();
    let dp_info = json!({"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:00.1"}});
    std::fs::write(
        devinfo.join("dp/example.com-vf-0000:03:00.1-device.json"),
        dp_info.to_string(),
    )
    .unwrap();

    for with_get in [true, false] {
        let socket = c.node.dir.path().join(format!("kubelet-{with_get}.sock"));
        let devices: &[(&str, &[&str])] = &[
            ("example.com/vf", &["0000:03:00.2", "0000:03:00.1"]),
            ("other/res", &["x"]),
        ];
        let _kubelet =
            FakePodResources::start(&socket, &[("default", "dpdk", devices)], with_get).unwrap();
        c.api
            .add_pod("default", "dpdk", "uid-d", &[(NETWORKS, "vf-a, vf-b")], &[]);
        let conf =
            c.conf(json!({"binDir": bin, "podResourcesSocket": socket, "deviceInfoDir": devinfo}));
        let pod = Pod::new();
        let out = c.run("ADD", "c1", &pod, "dpdk", "uid-d", &conf);
        assert!(out.ok(), "get={with_get}: {} {}", out.stdout, out.stderr);
        for (ifname, id) in [("net1", "0000:03:00.1"), ("net2", "0000:03:00.2")] {
            let seen: Value = serde_json::from_slice(
                &std::fs::read(c.node.dir.path().join(format!("ADD-{ifname}.json"))).unwrap(),
            )
            .unwrap();
            assert_eq!(seen["deviceID"], id, "{seen}");
            assert_eq!(seen["pciBusID"], id);
            assert_eq!(seen["runtimeConfig"]["deviceID"], id);
            let info = format!(
                "{}/cni/default-vf-{}-c1_{ifname}",
                devinfo.display(),
                if ifname == "net1" { "a" } else { "b" }
            );
            assert_eq!(seen["runtimeConfig"]["CNIDeviceInfoFile"], info.as_str());
        }
        let s = c.status("default", "dpdk");
        assert_eq!(s[1]["name"], "default/vf-a");
        assert_eq!(
            s[1]["device-info"], dp_info,
            "copied from the device plugin's file"
        );
        assert!(s[2].get("device-info").is_none());
        assert!(c.run("DEL", "c1", &pod, "dpdk", "uid-d", &conf).ok());
        assert!(
            multus_testbed::files_under(&devinfo.join("cni")).is_empty(),
            "device-info files removed on DEL"
        );
        c.assert_clean(&pod);
    }

    // More attachments than devices: a clear error, nothing built.
    let socket = c.node.dir.path().join("kubelet-few.sock");
    let _kubelet = FakePodResources::start(
        &socket,
        &[(
            "default",
            "greedy",
            &[("example.com/vf", &["0000:03:00.1"])],
        )],
        true,
    )
    .unwrap();
    c.api.add_pod(
        "default",
        "greedy",
        "uid-g",
        &[(NETWORKS, "vf-a, vf-b")],
        &[],
    );
    let conf =
        c.conf(json!({"binDir": bin, "podResourcesSocket": socket, "deviceInfoDir": devinfo}));
    let pod = Pod::new();
    let msg = assert_cni_error(&c.run("ADD", "c2", &pod, "greedy", "uid-g", &conf), 7);
    assert!(
        msg.contains("default/vf-b") && msg.contains("example.com/vf"),
        "{msg}"
    );
    c.assert_clean(&pod);
}

#[test]
fn annotation_mappers_legacy_key_and_label() {
    let c = Cluster::new();
    c.node.install_wasm(&["legacy-networks", "label-networks"]);
    let pod = Pod::new();
    c.api.add_pod(
        "default",
        "mapped",
        "uid-m",
        &[(
            "tke.cloud.tencent.com/networks",
            r#"[{"name":"macvlan-conf","interfaceRequest":"eth1","ipRequest":"10.20.0.77/24"}]"#,
        )],
        &[("example.com/net-profile", "db")],
    );
    let mv_static = json!({"cniVersion":"1.0.0","name":"mv-static","type":"macvlan","master":"uplink0","mode":"bridge",
        "capabilities":{"ips":true},"ipam":{"type":"static"}});
    c.api
        .add_nad("default", "macvlan-conf", Some(&mv_static.to_string()), &[]);
    let conf = c.node.with_wasm(serde_json::from_slice(&c.conf(json!({
        "annotationMappers": [
            "legacy-networks",
            {"module": "label-networks", "config": {"label": "example.com/net-profile",
                "profiles": {"db": [{"name": "storage", "namespace": "other", "interface": "db0"}]}}}
        ]
    })))
    .unwrap());
    let conf = bytes(&conf);
    let out = c.run("ADD", "c1", &pod, "mapped", "uid-m", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    // The legacy ipRequest reached the static IPAM as runtimeConfig.ips.
    assert_eq!(pod.ns.addrs("eth1").unwrap(), vec!["10.20.0.77/24"]);
    assert_eq!(pod.ns.addrs("db0").unwrap(), vec!["10.30.0.2/24"]);
    let s = c.status("default", "mapped");
    let names: Vec<(&str, &str)> = s
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["interface"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("cluster", "eth0"),
            ("default/macvlan-conf", "eth1"),
            ("other/storage", "db0")
        ]
    );
    assert!(c.run("DEL", "c1", &pod, "mapped", "uid-m", &conf).ok());
    c.assert_clean(&pod);

    // A mapper whose output is invalid or whose profile is unknown fails the
    // ADD before anything is built, naming the mapper.
    for (annotation, label, want) in [
        (
            r#"[{"name":"macvlan-conf","interfaceRequest":"bad/if"}]"#,
            "db",
            "annotation mapper \"legacy-networks\": element 0: \"interface\"",
        ),
        (
            "[not json",
            "db",
            "wasm plugin \"legacy-networks\": annotation \"tke.cloud.tencent.com/networks\"",
        ),
        ("", "nope", "no profile \"nope\""),
    ] {
        c.api.add_pod(
            "default",
            "bad",
            "uid-b",
            &[("tke.cloud.tencent.com/networks", annotation)],
            &[("example.com/net-profile", label)],
        );
        let msg = assert_cni_error(&c.run("ADD", "c2", &pod, "bad", "uid-b", &conf), 7);
        assert!(
            msg.contains(want) && msg.contains("default/bad"),
            "{annotation}: {msg}"
        );
        c.assert_clean(&pod);
    }
}

/// An annotation mapper built against WIT 0.1.0 (kept in
/// `tests/fixtures/wit-0.1.0/`) still maps on this 0.1.1 host.
#[test]
fn mapper_built_against_wit_0_1_0_still_maps() {
    let c = Cluster::new();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wit-0.1.0/label-networks.wasm");
    c.node.install_wasm_file("label-networks", &fixture);
    let pod = Pod::new();
    c.api.add_pod(
        "default",
        "old",
        "uid-o",
        &[],
        &[("example.com/net-profile", "db")],
    );
    let conf = c.node.with_wasm(serde_json::from_slice(&c.conf(json!({
        "annotationMappers": [
            {"module": "label-networks", "config": {"label": "example.com/net-profile",
                "profiles": {"db": [{"name": "storage", "namespace": "other", "interface": "db0"}]}}}
        ]
    })))
    .unwrap());
    let conf = bytes(&conf);
    let out = c.run("ADD", "c1", &pod, "old", "uid-o", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(pod.ns.addrs("db0").unwrap(), vec!["10.30.0.2/24"]);
    assert!(c.run("DEL", "c1", &pod, "old", "uid-o", &conf).ok());
    c.assert_clean(&pod);
}

#[test]
fn cluster_and_default_networks_from_nads_and_status_rules() {
    let c = Cluster::new();
    // clusterNetwork and defaultNetworks name NADs in multusNamespace; the
    // default network's NAD has no spec.config: the conf file of that name.
    let k8s = confs::bridge_host_local("k8s-net", "cni1", "10.40.0.0/24", &c.node.data_dir());
    c.api
        .add_nad("kube-system", "k8s-net", Some(&k8s.to_string()), &[]);
    c.api.add_nad("kube-system", "extra", None, &[]);
    let extra = confs::macvlan_host_local("extra", "uplink0", "10.50.0.0/24", &c.node.data_dir());
    std::fs::write(c.node.conf_dir().join("30-extra.conf"), bytes(&extra)).unwrap();
    let conf = c.conf(json!({"clusterNetwork": "k8s-net", "defaultNetworks": ["extra"]}));
    let pod = Pod::new();
    c.api.add_pod("default", "a", "uid-a", &[], &[]);
    let out = c.run("ADD", "c1", &pod, "a", "uid-a", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(pod.ns.addrs("eth0").unwrap(), vec!["10.40.0.2/24"]);
    assert_eq!(pod.ns.addrs("net1").unwrap(), vec!["10.50.0.2/24"]);
    let names: Vec<String> = c
        .status("default", "a")
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["kube-system/k8s-net", "kube-system/extra"]);
    assert!(c.run("DEL", "c1", &pod, "a", "uid-a", &conf).ok());

    // The pod's v1.multus-cni.io/default-network replaces the cluster network.
    c.api.add_pod(
        "default",
        "b",
        "uid-b",
        &[("v1.multus-cni.io/default-network", "default/macvlan-conf")],
        &[],
    );
    let out = c.run("ADD", "c2", &pod, "b", "uid-b", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(
        pod.ns.link("eth0").unwrap()["linkinfo"]["info_kind"],
        "macvlan"
    );
    assert_eq!(c.status("default", "b")[0]["name"], "default/macvlan-conf");
    assert_eq!(c.status("default", "b")[0]["default"], true);
    assert!(c.run("DEL", "c2", &pod, "b", "uid-b", &conf).ok());

    // Pods in a system namespace get no defaultNetworks and no status write
    // (decided by the namespace, not by the pod's name as upstream does).
    c.api.add_pod("kube-system", "dns", "uid-d", &[], &[]);
    let out = c.run_in("kube-system", "ADD", "c3", &pod, "dns", "uid-d", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(pod.ns.links().unwrap().len(), 2, "lo and eth0");
    assert!(c.api.annotation("kube-system", "dns", STATUS).is_none());
    assert!(c
        .run_in("kube-system", "DEL", "c3", &pod, "dns", "uid-d", &conf)
        .ok());
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);

    // STATUS concerns no pod: the NAD cluster network is still found.
    let out = c.run("STATUS", "", &pod, "", "", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    // A DEL with no cache and no API cannot resolve the NAD networks; none
    // of ours ran (the cache precedes every delegate), so it succeeds.
    let mut c = c;
    c.api.stop();
    let out = c.run("DEL", "c9", &pod, "a", "uid-a", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
}

#[test]
fn a_failed_status_write_rolls_back_unless_optional() {
    let c = Cluster::new();
    let pod = c.web_pod();
    // More conflicts than retries.
    c.api.conflict_next_status_writes(10);
    let out = c.run("ADD", "c1", &pod, "web", "uid-1", &c.conf(json!({})));
    let msg = assert_cni_error(&out, 11);
    assert!(
        msg.contains("network-status") && msg.contains("attempt 5"),
        "{msg}"
    );
    c.assert_clean(&pod);
    assert!(c.node.veths().is_empty(), "{:?}", c.node.veths());

    let conf = c.conf(json!({"networkStatusRequired": false}));
    let out = c.run("ADD", "c1", &pod, "web", "uid-1", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert!(c.api.annotation("default", "web", STATUS).is_none());
    assert!(c.run("DEL", "c1", &pod, "web", "uid-1", &conf).ok());
    c.assert_clean(&pod);
}

#[test]
fn client_certificate_kubeconfig() {
    let c = Cluster::new();
    let pod = c.web_pod();
    // The token is no longer accepted: only the certificate can authenticate.
    c.api.accept_token("another-token");
    let conf = c.conf(json!({"kubeconfig": c.api.client_cert_kubeconfig()}));
    let out = c.run("ADD", "c1", &pod, "web", "uid-1", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(
        c.status("default", "web")[1]["name"],
        "default/macvlan-conf"
    );
    assert!(c.run("DEL", "c1", &pod, "web", "uid-1", &conf).ok());
    c.assert_clean(&pod);
    // The token kubeconfig, without a certificate, is refused.
    let msg = assert_cni_error(
        &c.run("ADD", "c2", &pod, "web", "uid-1", &c.conf(json!({}))),
        999,
    );
    assert!(msg.contains("Unauthorized"), "{msg}");
}
