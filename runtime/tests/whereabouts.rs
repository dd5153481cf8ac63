//! The wasm `whereabouts` IPAM against the in-test API server (whereabouts'
//! CRDs served with resourceVersions, 409s, 404s and 422s), through the
//! built `multus` in real network namespaces: reached from the native
//! reference bridge (the IPAM shim) and in-process.

mod common;

use common::*;
use multus_testbed::kube_api::FakeKubeApi;
use multus_testbed::{confs, CniOutput};
use serde_json::{json, Value};

const NS: &str = "kube-system";

struct Pools {
    node: Node,
    api: FakeKubeApi,
}

impl Pools {
    fn new() -> Self {
        let node = Node::new();
        node.install_wasm(&["whereabouts"]);
        let api = FakeKubeApi::start(&node.ns, "token-1").unwrap();
        Self { node, api }
    }

    /// eth0 on the cluster bridge, net1 on bridge `bridge` with whereabouts
    /// IPAM `ipam` (the kubeconfig added), its timeouts sized for a storm.
    fn conf(&self, bridge: &str, cni_dir: &str, mut ipam: Value) -> Vec<u8> {
        ipam["type"] = json!("whereabouts");
        ipam["kubernetes"] = json!({"kubeconfig": self.api.kubeconfig()});
        let net = json!({"cniVersion": "1.0.0", "name": "wa-net", "plugins": [
            {"type": "bridge", "bridge": bridge, "ipam": ipam}]});
        let mut c = self.node.with_wasm(confs::multus_delegates(
            &[
                confs::bridge_host_local("cluster", "cni0", "10.31.0.0/16", &self.node.data_dir()),
                net,
            ],
            &self.node.dir.path().join(cni_dir),
            &plugins(),
        ));
        c["wasmPlugins"] = json!({"whereabouts": {"timeoutMs": 60000, "hostCallTimeoutMs": 10000}});
        c["kubeconfigAllowlist"] = json!([self.api.kubeconfig()]);
        bytes(&c)
    }

    fn run(&self, cmd: &str, pod: &Pod, name: &str, conf: &[u8]) -> CniOutput {
        self.run_on("node1", cmd, pod, name, conf)
    }

    /// As multus runs on node `node` (its `NODE_NAME`).
    fn run_on(&self, node: &str, cmd: &str, pod: &Pod, name: &str, conf: &[u8]) -> CniOutput {
        let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}");
        let cid = format!("cid-{}", pod.ns.name());
        let env = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", cid.as_str()),
            ("CNI_NETNS", pod.path.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", args.as_str()),
            ("CNI_PATH", "/opt/cni/bin"),
            ("NODE_NAME", node),
        ];
        self.node.multus(&env, conf)
    }

    fn pool(&self, name: &str) -> Value {
        self.api
            .custom_object("ippools", NS, name)
            .unwrap_or_else(|| panic!("no IPPool {name}"))
    }

    /// The pool's allocations as (offset, podref).
    fn allocations(&self, name: &str) -> Vec<(u128, String)> {
        let mut v: Vec<(u128, String)> = self.pool(name)["spec"]["allocations"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, a)| {
                (
                    k.parse().unwrap(),
                    a["podref"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn reservations(&self) -> Vec<String> {
        self.api
            .custom_objects("overlappingrangeipreservations", NS)
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// NodeSlicePool `name` cutting `range` into `slice_size` slices, its
    /// status listing `allocations`, as a controller would have written it.
    fn put_slice_pool(&self, name: &str, range: &str, slice_size: &str, allocations: Value) {
        self.api.put_custom(
            "nodeslicepools",
            NS,
            json!({"apiVersion": "whereabouts.cni.cncf.io/v1alpha1", "kind": "NodeSlicePool",
                   "metadata": {"name": name},
                   "spec": {"range": range, "sliceSize": slice_size},
                   "status": {"allocations": allocations}}),
        );
    }
}

fn net1(pod: &Pod) -> Vec<String> {
    pod.ns.addrs("net1").unwrap()
}

/// The fixture's conf: a /24 with its first /28 excluded. Addresses come
/// lowest first after the exclusion, the IPPool and reservations have
/// whereabouts' names and shapes, a re-ADD of the same pod gets its
/// address back, CHECK finds the allocation, DEL frees it all.
#[test]
fn allocates_in_order_and_frees_on_del() {
    let c = Pools::new();
    let conf = c.conf(
        "wabr0",
        "cni",
        json!({"range": "10.246.0.0/24", "exclude": ["10.246.0.0/28"],
        "gateway": "10.246.0.1", "log_level": "debug", "sleep_for_race": 1}),
    );
    let pods: Vec<Pod> = (0..3).map(|_| Pod::new()).collect();
    for (i, pod) in pods.iter().enumerate() {
        let out = c.run("ADD", pod, &format!("wa-pod{i}"), &conf);
        assert!(out.ok(), "{} {}", out.stdout, out.stderr);
        assert_eq!(net1(pod), [format!("10.246.0.{}/24", 16 + i)]);
        if i == 0 {
            // A pool that does not exist yet is created holding the
            // allocation: one write, not a create and a replace.
            let pool_requests: Vec<String> = c
                .api
                .requests()
                .into_iter()
                .filter(|r| r.contains("/ippools"))
                .map(|r| r.split(' ').next().unwrap_or_default().to_string())
                .collect();
            assert_eq!(pool_requests, ["GET", "POST"], "{:?}", c.api.requests());
            // (Before other ports change the bridge's MAC, which the
            // reference bridge's own CHECK compares.)
            let check = c.run("CHECK", pod, "wa-pod0", &conf);
            assert!(check.ok(), "{} {}", check.stdout, check.stderr);
        }
    }
    let pool = c.pool("10.246.0.0-24");
    assert_eq!(pool["spec"]["range"], "10.246.0.0/24");
    assert_eq!(
        pool["spec"]["allocations"]["16"],
        json!({"id": format!("cid-{}", pods[0].ns.name()), "podref": "default/wa-pod0", "ifname": "net1"})
    );
    let mut res = c.reservations();
    res.sort();
    assert_eq!(res, ["10.246.0.16", "10.246.0.17", "10.246.0.18"]);
    let r = c
        .api
        .custom_object("overlappingrangeipreservations", NS, "10.246.0.17")
        .unwrap();
    assert_eq!(r["spec"]["podref"], "default/wa-pod1");
    assert_eq!(r["spec"]["ifname"], "net1");

    // The pod's new sandbox (a new container, as after a node reboot that
    // never ran DEL) gets the same address back, now under its ID; the old
    // sandbox's DEL then frees nothing of it.
    let again = Pod::new();
    let out = c.run("ADD", &again, "wa-pod1", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(net1(&again), ["10.246.0.17/24"]);
    let pool = c.pool("10.246.0.0-24");
    assert_eq!(
        pool["spec"]["allocations"]["17"]["id"],
        format!("cid-{}", again.ns.name())
    );
    assert_eq!(pool["spec"]["allocations"].as_object().unwrap().len(), 3);
    assert!(c.run("DEL", &pods[1], "wa-pod1", &conf).ok());
    assert_eq!(c.allocations("10.246.0.0-24").len(), 3);
    // Its reservation too, which the old sandbox's DEL found by its label
    // and deleted while it was still the old container's.
    let r = c
        .api
        .custom_object("overlappingrangeipreservations", NS, "10.246.0.17")
        .expect("the new sandbox's reservation survives the old one's DEL");
    assert_eq!(r["spec"]["containerid"], format!("cid-{}", again.ns.name()));
    assert!(c.run("DEL", &again, "wa-pod1", &conf).ok());
    assert_eq!(c.allocations("10.246.0.0-24").len(), 2);

    for (i, pod) in pods.iter().enumerate() {
        let del = c.run("DEL", pod, &format!("wa-pod{i}"), &conf);
        assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    }
    assert!(c.allocations("10.246.0.0-24").is_empty());
    assert!(c.reservations().is_empty());
    // DEL of what was never allocated succeeds.
    let del = c.run("DEL", &pods[0], "never", &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
}

/// A pool whereabouts itself wrote (its allocations at .16 and .17) is
/// shared: the next address is .18, and ours frees only its own.
#[test]
fn shares_a_pool_with_whereabouts() {
    let c = Pools::new();
    c.api.put_custom(
        "ippools",
        NS,
        json!({
        "apiVersion": "whereabouts.cni.cncf.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "10.246.0.0-24", "generation": 6, "uid": "eb9c1c37"},
        "spec": {"range": "10.246.0.0/24", "allocations": {
            "16": {"id": "wa-pod1-cid", "ifname": "eth0", "podref": "default/wa-pod1"},
            "17": {"id": "wa-pod2-cid", "ifname": "eth0", "podref": "default/wa-pod2"}}}}),
    );
    let conf = c.conf(
        "wabr0",
        "cni",
        json!({"range": "10.246.0.0/24", "exclude": ["10.246.0.0/28"]}),
    );
    let pod = Pod::new();
    let out = c.run("ADD", &pod, "ours", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(net1(&pod), ["10.246.0.18/24"]);
    assert!(c.run("DEL", &pod, "ours", &conf).ok());
    let left: Vec<u128> = c
        .allocations("10.246.0.0-24")
        .iter()
        .map(|(o, _)| *o)
        .collect();
    assert_eq!(left, [16, 17]);
    assert_eq!(c.pool("10.246.0.0-24")["metadata"]["uid"], "eb9c1c37");
}

/// range_start/range_end and the `a-b/cidr` form, `network_name` (its own
/// pool for the same CIDR), dual-stack `ipRanges`, static `addresses`.
#[test]
fn ranges_network_names_and_dual_stack() {
    let c = Pools::new();
    let a = c.conf(
        "wabr0",
        "cni-a",
        json!({"range": "10.50.0.10-10.50.0.11/24"}),
    );
    let b = c.conf(
        "wabr1",
        "cni-b",
        json!({"range": "10.50.0.0/24", "range_start": "10.50.0.200",
        "network_name": "blue"}),
    );
    let d = c.conf(
        "wabr2",
        "cni-d",
        json!({"ipRanges": [{"range": "10.60.0.0/24"}, {"range": "fd60::/64"}],
        "addresses": [{"address": "192.168.9.9/24"}]}),
    );
    let pods: Vec<Pod> = (0..4).map(|_| Pod::new()).collect();
    for (i, conf) in [&a, &a].iter().enumerate() {
        let out = c.run("ADD", &pods[i], &format!("a{i}"), conf);
        assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    }
    assert_eq!(net1(&pods[0]), ["10.50.0.10/24"]);
    assert_eq!(net1(&pods[1]), ["10.50.0.11/24"]);
    // The range ends at .11: full, named in the error, nothing left behind.
    let full = c.run("ADD", &pods[2], "a2", &a);
    let msg = assert_cni_error(&full, 999);
    assert!(
        msg.contains("10.50.0.0/24") && msg.contains("exhausted"),
        "{msg}"
    );
    assert_eq!(pods[2].ns.links().unwrap(), ["lo"]);
    assert_eq!(c.allocations("10.50.0.0-24").len(), 2);

    let out = c.run("ADD", &pods[2], "b0", &b);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(net1(&pods[2]), ["10.50.0.200/24"]);
    assert_eq!(
        c.allocations("blue-10.50.0.0-24"),
        [(200, "default/b0".to_string())]
    );
    assert!(c.reservations().contains(&"blue-10.50.0.200".to_string()));

    let out = c.run("ADD", &pods[3], "d0", &d);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let mut addrs = net1(&pods[3]);
    addrs.sort();
    assert_eq!(addrs, ["10.60.0.1/24", "192.168.9.9/24", "fd60::1/64"]);
    assert_eq!(c.allocations("fd60---64"), [(1, "default/d0".to_string())]);
    assert!(c.reservations().contains(&"fd60--1".to_string()));
    for (pod, name, conf) in [
        (&pods[0], "a0", &a),
        (&pods[1], "a1", &a),
        (&pods[2], "b0", &b),
        (&pods[3], "d0", &d),
    ] {
        let del = c.run("DEL", pod, name, conf);
        assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    }
    assert!(c.reservations().is_empty());
}

/// A /48: 128-bit offsets, allocating at its very end.
#[test]
fn a_wide_ipv6_range_is_usable_to_its_end() {
    let c = Pools::new();
    let conf = c.conf(
        "wabr0",
        "cni",
        json!({"range": "fd48:1:2::/48",
        "range_start": "fd48:1:2:ffff:ffff:ffff:ffff:fffd"}),
    );
    let pods: Vec<Pod> = (0..2).map(|_| Pod::new()).collect();
    for (i, pod) in pods.iter().enumerate() {
        let out = c.run("ADD", pod, &format!("v6-{i}"), &conf);
        assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    }
    assert_eq!(net1(&pods[0]), ["fd48:1:2:ffff:ffff:ffff:ffff:fffd/48"]);
    assert_eq!(net1(&pods[1]), ["fd48:1:2:ffff:ffff:ffff:ffff:fffe/48"]);
    let offsets: Vec<u128> = c
        .allocations("fd48-1-2---48")
        .iter()
        .map(|(o, _)| *o)
        .collect();
    assert_eq!(offsets, [(1u128 << 80) - 3, (1u128 << 80) - 2]);
    let msg = assert_cni_error(&c.run("ADD", &Pod::new(), "v6-2", &conf), 999);
    assert!(msg.contains("exhausted"), "{msg}");
}

/// Conflicts injected on every other pool write, and 50 pods at once from
/// each of two "nodes" (separate multus processes, their own cni dirs and
/// bridges) on one range: 100 distinct addresses, then all freed.
#[test]
fn two_nodes_fifty_at_once_on_one_range() {
    let c = Pools::new();
    c.api.fail_next("PUT", "/ippools/", 409, 40);
    let confs = [
        c.conf("wabr0", "cni-node1", json!({"range": "10.70.0.0/24"})),
        c.conf("wabr1", "cni-node2", json!({"range": "10.70.0.0/24"})),
    ];
    let pods: Vec<Pod> = (0..100).map(|_| Pod::new()).collect();
    let run_all = |cmd: &str| {
        std::thread::scope(|s| {
            let handles: Vec<_> = pods
                .iter()
                .enumerate()
                .map(|(i, pod)| {
                    let conf = &confs[i % 2];
                    let c = &c;
                    let cmd = cmd.to_string();
                    s.spawn(move || {
                        let out = c.run(&cmd, pod, &format!("p{i}"), conf);
                        assert!(out.ok(), "{cmd} p{i}: {} {}", out.stdout, out.stderr);
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        })
    };
    run_all("ADD");
    let mut addrs: Vec<String> = pods.iter().flat_map(net1).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 100, "100 distinct addresses");
    assert_eq!(c.allocations("10.70.0.0-24").len(), 100);
    assert_eq!(c.reservations().len(), 100);
    run_all("DEL");
    assert!(c.allocations("10.70.0.0-24").is_empty());
    assert!(c.reservations().is_empty());
}

/// Pods of one node started at once take turns on their pool
/// (`cluster.take-turn`): every pool write lands at the first try. Each
/// pool request is slowed, so that racing, as they did before, the ten
/// would read one version and nine lose their writes.
#[test]
fn one_nodes_pods_take_turns_on_the_pool() {
    let c = Pools::new();
    let name = "10.71.0.0-24";
    c.api.put_custom(
        "ippools",
        NS,
        json!({"apiVersion": "whereabouts.cni.cncf.io/v1alpha1", "kind": "IPPool",
               "metadata": {"name": name},
               "spec": {"range": "10.71.0.0/24", "allocations": {}}}),
    );
    c.api.delay(
        &format!("/ippools/{name}"),
        std::time::Duration::from_millis(80),
        10,
    );
    let conf = c.conf("wabr0", "cni", json!({"range": "10.71.0.0/24"}));
    let pods: Vec<Pod> = (0..10).map(|_| Pod::new()).collect();
    let run_all = |cmd: &str| {
        std::thread::scope(|s| {
            for (i, pod) in pods.iter().enumerate() {
                let (c, conf) = (&c, &conf);
                s.spawn(move || {
                    let out = c.run(cmd, pod, &format!("t{i}"), conf);
                    assert!(out.ok(), "{cmd} t{i}: {} {}", out.stdout, out.stderr);
                });
            }
        })
    };
    run_all("ADD");
    let mut addrs: Vec<String> = pods.iter().flat_map(net1).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 10, "10 distinct addresses");
    let refused: Vec<String> = c
        .api
        .requests()
        .into_iter()
        .filter(|r| r.contains("/ippools/") && r.ends_with(" 409"))
        .collect();
    assert!(refused.is_empty(), "pool writes refused: {refused:?}");
    // The turns live in the node's wasm cache dir: one slot file here.
    let turns: Vec<_> = std::fs::read_dir(c.node.wasm_cache().join("turns"))
        .unwrap()
        .collect();
    assert_eq!(turns.len(), 1, "{turns:?}");
    run_all("DEL");
    assert!(c.allocations(name).is_empty());
    assert!(c.reservations().is_empty());
}

/// The API server unreachable mid-ADD: code 11 and nothing reserved; down
/// during DEL: a clear error and the cache kept, so the retry frees it.
#[test]
fn api_down_fails_cleanly_and_del_retries() {
    let mut c = Pools::new();
    let conf = c.conf("wabr0", "cni", json!({"range": "10.80.0.0/24"}));
    let pod = Pod::new();
    // 500s (kube-rs itself retries 503s) on the write creating the pool:
    // one unanswered write is read back and made again, the third fails.
    c.api.fail_next("POST", "/ippools", 500, 3);
    let msg = assert_cni_error(&c.run("ADD", &pod, "down", &conf), 11);
    assert!(msg.contains("unavailable"), "{msg}");
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    assert!(
        c.api.custom_object("ippools", NS, "10.80.0.0-24").is_none(),
        "no pool made by the failed create"
    );
    assert!(
        c.reservations().is_empty(),
        "the claim went with the failed write"
    );

    let out = c.run("ADD", &pod, "down", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    // A read is sent three times.
    c.api.fail_next("GET", "/ippools/", 500, 3);
    let del = c.run("DEL", &pod, "down", &conf);
    assert!(!del.ok());
    assert!(del.stdout.contains("whereabouts"), "{}", del.stdout);
    let cache = c.node.dir.path().join("cni");
    assert!(cache.read_dir().unwrap().next().is_some(), "cache kept");
    assert_eq!(c.allocations("10.80.0.0-24").len(), 1);
    let del = c.run("DEL", &pod, "down", &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert!(c.allocations("10.80.0.0-24").is_empty());

    c.api.stop();
    let msg = assert_cni_error(&c.run("ADD", &Pod::new(), "stopped", &conf), 11);
    assert!(msg.contains("whereabouts"), "{msg}");
}

/// A read that gets no answer at all (its stream reset, as when a
/// connection dies under it) is sent again within its budget, as client-go
/// does; a write is not (it may have landed): whereabouts reads the pool
/// again, finds its allocation missing, and writes it once more.
#[test]
fn an_unanswered_read_is_sent_again_never_a_write() {
    let c = Pools::new();
    let conf = c.conf("wabr1", "cni", json!({"range": "10.81.0.0/24"}));
    let pod = Pod::new();
    c.api.reset_next("GET", "/ippools/", 1);
    let out = c.run("ADD", &pod, "reread", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(c.api.faults_fired(), 1, "the read was reset");
    assert_eq!(c.allocations("10.81.0.0-24").len(), 1);
    let del = c.run("DEL", &pod, "reread", &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);

    let pod = Pod::new();
    let before = c.api.requests().len();
    c.api.reset_next("PUT", "/ippools/", 1);
    let out = c.run("ADD", &pod, "rewrite", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(c.api.faults_fired(), 2, "the write was reset");
    let pool_requests: Vec<String> = c.api.requests()[before..]
        .iter()
        .filter(|r| r.contains("/ippools/"))
        .map(|r| {
            let (method, code) = (r.split(' ').next(), r.rsplit(' ').next());
            format!("{} {}", method.unwrap(), code.unwrap())
        })
        .collect();
    assert_eq!(
        pool_requests,
        ["GET 200", "PUT reset", "GET 200", "PUT 200"],
        "the write not sent again by the host, but made again after a read"
    );
    assert_eq!(c.allocations("10.81.0.0-24").len(), 1);
    assert_eq!(c.reservations().len(), 1);
    assert!(c.run("DEL", &pod, "rewrite", &conf).ok());
}

/// Answers slower than one call's budget (an API server under load): the
/// read is sent again, the pool write whose answer came too late (it
/// landed) is read back, found there, and not made twice, and the claim
/// whose answer came too late is sent again, refused, and found this
/// pod's.
#[test]
fn answers_later_than_a_calls_budget() {
    let c = Pools::new();
    let mut conf: Value =
        serde_json::from_slice(&c.conf("wabr2", "cni", json!({"range": "10.83.0.0/24"}))).unwrap();
    conf["wasmPlugins"]["whereabouts"]["clusterCallTimeoutMs"] = json!(300);
    let conf = bytes(&conf);
    let slow = std::time::Duration::from_millis(1000);
    c.api.delay("/ippools/", slow, 1);
    c.api.answer_late("POST", "/ippools", slow, 1);
    c.api
        .answer_late("POST", "/overlappingrangeipreservations", slow, 1);
    let pod = Pod::new();
    let out = c.run("ADD", &pod, "slow", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(net1(&pod), ["10.83.0.1/24"]);
    assert_eq!(c.api.faults_fired(), 3, "the slow read and writes");
    let claims: Vec<String> = c
        .api
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("POST") && r.contains("/overlappingrangeipreservations"))
        .map(|r| r.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(claims, ["201", "409"], "sent again, found landed");
    let writes = c
        .api
        .requests()
        .iter()
        .filter(|r| r.contains("/ippools") && (r.starts_with("POST") || r.starts_with("PUT")))
        .count();
    assert_eq!(writes, 1, "{:?}", c.api.requests());
    assert_eq!(c.allocations("10.83.0.0-24").len(), 1);
    assert_eq!(c.reservations(), ["10.83.0.1"]);
    assert!(c.run("DEL", &pod, "slow", &conf).ok());
    assert!(c.allocations("10.83.0.0-24").is_empty());
}

#[test]
fn a_failed_reservation_delete_is_retried_not_leaked() {
    let c = Pools::new();
    let conf = c.conf("wabr0", "cni", json!({"range": "10.81.0.0/24"}));
    let pod = Pod::new();
    let out = c.run("ADD", &pod, "resv", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(c.reservations().len(), 1);
    c.api
        .fail_next("DELETE", "/overlappingrangeipreservations/", 500, 1);
    let del = c.run("DEL", &pod, "resv", &conf);
    assert!(!del.ok(), "{}", del.stdout);
    assert!(del.stdout.contains("reservation"), "{}", del.stdout);
    assert_eq!(c.allocations("10.81.0.0-24").len(), 1, "kept for the retry");
    let del = c.run("DEL", &pod, "resv", &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert!(c.allocations("10.81.0.0-24").is_empty());
    assert!(c.reservations().is_empty(), "{:?}", c.reservations());
}

/// A DEL lists only its own reservations, by the owner label every
/// reservation it made carries: before, each DEL listed every reservation
/// of the namespace (1000 DELs at once asked the API server for 400 MB).
/// The claim a killed ADD left (labeled, no allocation pointing at it) is
/// still dropped; other pods' reservations, labeled or not, are untouched.
/// A DEL given the ADD's result that freed it lists nothing: that ADD
/// finished, so its claims all became its allocations (1000 such lists
/// at once outran the 10 s budget at 500 nodes).
#[test]
fn a_del_lists_only_its_own_reservations() {
    let c = Pools::new();
    let conf = c.conf("wabr0", "cni", json!({"range": "10.82.0.0/24"}));
    let reservation = |name: &str, cid: &str, labels: Value| {
        json!({"apiVersion": "whereabouts.cni.cncf.io/v1alpha1",
               "kind": "OverlappingRangeIPReservation",
               "metadata": {"name": name, "labels": labels},
               "spec": {"containerid": cid, "podref": "default/other", "ifname": "net1"}})
    };
    for i in 0..20 {
        let labels = if i % 2 == 0 {
            json!({"multus-wasm.io/owner": format!("{i:016x}")})
        } else {
            json!({})
        };
        c.api.put_custom(
            "overlappingrangeipreservations",
            NS,
            reservation(&format!("10.82.1.{i}"), &format!("cid-other-{i}"), labels),
        );
    }
    let pod = Pod::new();
    let out = c.run("ADD", &pod, "own", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let mine = c
        .api
        .custom_object("overlappingrangeipreservations", NS, "10.82.0.1")
        .expect("the ADD's reservation");
    let label = mine["metadata"]["labels"]["multus-wasm.io/owner"]
        .as_str()
        .expect("labeled with its owner")
        .to_string();
    assert_eq!(label.len(), 16);
    // What an ADD killed between its claim and its pool write leaves.
    let cid = format!("cid-{}", pod.ns.name());
    c.api.put_custom(
        "overlappingrangeipreservations",
        NS,
        reservation(
            "10.82.0.200",
            &cid,
            json!({"multus-wasm.io/owner": label.clone()}),
        ),
    );
    // The DEL of a killed ADD has no result (multus's cache never got it).
    std::fs::remove_file(c.node.dir.path().join("cni").join(&cid)).unwrap();
    let lists_since = |before: usize| -> Vec<String> {
        c.api.requests()[before..]
            .iter()
            .filter(|r| r.starts_with("GET ") && r.contains("/overlappingrangeipreservations"))
            .filter(|r| !r.contains("/overlappingrangeipreservations/"))
            .cloned()
            .collect()
    };
    let before = c.api.requests().len();
    let del = c.run("DEL", &pod, "own", &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    let lists = lists_since(before);
    assert_eq!(
        lists,
        [format!(
            "GET /apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/{NS}/overlappingrangeipreservations?labelSelector=multus-wasm.io/owner={label} 200"
        )]
    );
    let mut left = c.reservations();
    left.sort();
    let mut others: Vec<String> = (0..20).map(|i| format!("10.82.1.{i}")).collect();
    others.sort();
    assert_eq!(
        left, others,
        "only the pod's own, the orphan claim included"
    );
    assert!(c.allocations("10.82.0.0-24").is_empty());

    let pod = Pod::new();
    let out = c.run("ADD", &pod, "finished", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let before = c.api.requests().len();
    let del = c.run("DEL", &pod, "finished", &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert_eq!(lists_since(before), Vec::<String>::new());
    assert!(c.allocations("10.82.0.0-24").is_empty());
    assert_eq!(c.reservations().len(), 20);
}

/// The NodeSlicePool is read from the API server's watch cache (no etcd
/// read of 56 KiB per ADD and DEL at 1024 slices), which can be a moment
/// behind: a DEL without the ADD's result that finds nothing in the
/// slices the cache lists reads them again live, so a slice claimed after
/// the cache's last update is still freed (with the cached list alone the
/// DEL reported success and leaked the address). With the cache current,
/// an ADD of a node that holds a slice reads the pool once, from the
/// cache; a DEL given the ADD's result (`prevResult`, from multus's
/// cache) frees the address in its slice's pool without reading it.
#[test]
fn node_slices_read_from_the_cache_and_live_when_it_lags() {
    let c = Pools::new();
    let conf = c.conf(
        "wabr0",
        "cni",
        json!({"range": "10.111.0.0/24", "node_slice_size": "/28"}),
    );
    c.api.lag_cache("nodeslicepools");
    let pod = Pod::new();
    let out = c.run_on("node-a", "ADD", &pod, "lag0", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let slices = c.api.custom_object("nodeslicepools", NS, "wa-net").unwrap();
    let slice = slices["status"]["allocations"][0]["sliceRange"]
        .as_str()
        .unwrap()
        .to_string();
    let pool = format!("node-a-{}", slice.replace('/', "-"));
    assert_eq!(c.allocations(&pool).len(), 1);
    let cached = c.api.cached_reads();
    // Without multus's cache the DEL has no prevResult to go by.
    std::fs::remove_file(
        c.node
            .dir
            .path()
            .join("cni")
            .join(format!("cid-{}", pod.ns.name())),
    )
    .unwrap();
    let del = c.run_on("node-a", "DEL", &pod, "lag0", &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert!(
        c.api.cached_reads() > cached,
        "the DEL asked the cache first"
    );
    assert!(
        c.allocations(&pool).is_empty(),
        "freed past the lagging cache"
    );
    assert!(c.reservations().is_empty(), "{:?}", c.reservations());

    c.api.catch_up_cache();
    let (cached, before) = (c.api.cached_reads(), c.api.requests().len());
    let pod = Pod::new();
    let out = c.run_on("node-a", "ADD", &pod, "lag1", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let slice_reads = c.api.requests()[before..]
        .iter()
        .filter(|r| r.contains("/nodeslicepools/"))
        .count();
    assert_eq!(slice_reads, 1, "{:?}", &c.api.requests()[before..]);
    assert_eq!(c.api.cached_reads(), cached + 1);
    let before = c.api.requests().len();
    let del = c.run_on("node-a", "DEL", &pod, "lag1", &conf);
    assert!(del.ok(), "{} {}", del.stdout, del.stderr);
    assert!(c.allocations(&pool).is_empty());
    let slice_reads: Vec<String> = c.api.requests()[before..]
        .iter()
        .filter(|r| r.contains("/nodeslicepools/"))
        .cloned()
        .collect();
    assert!(slice_reads.is_empty(), "{slice_reads:?}");
}

/// Bad configs name the key, and nothing is built.
#[test]
fn bad_configs_name_the_key() {
    let c = Pools::new();
    let pod = Pod::new();
    for (ipam, want) in [
        (json!({"range": "10.9.0.0/33"}), "ipam.range"),
        (
            json!({"range": "10.9.0.0/24", "range_start": "10.8.0.1"}),
            "range_start",
        ),
        (json!({}), "ipam.range or ipam.ipRanges"),
        (
            json!({"range": "10.9.0.0/24", "node_slice_size": "/24"}),
            "node_slice_size",
        ),
        (
            json!({"ipRanges": [{"range": "10.9.0.0/24"}, {"range": "fd09::/64"}],
                   "node_slice_size": "/28"}),
            "one range",
        ),
        (json!({"range": "10.9.0.0/31"}), "too small"),
        // A u8 sum must not wrap past the check.
        (
            json!({"range": "fd09::/120", "node_slice_size": "/254"}),
            "node_slice_size",
        ),
    ] {
        let conf = c.conf("wabr0", "cni", ipam);
        let msg = assert_cni_error(&c.run("ADD", &pod, "bad", &conf), 7);
        assert!(msg.contains(want), "{msg}");
        assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    }
    assert!(c.api.custom_objects("ippools", NS).is_empty());
}

/// Two networks whose ranges overlap never hand out one address twice: the
/// second finds the first's reservation and takes the next address; with
/// `enable_overlapping_ranges: false` it does not look. Every request made
/// (these and a node-sliced network's) is one `deploy/whereabouts/rbac.yaml`
/// grants, and every rule is used.
#[test]
fn overlapping_ranges_and_the_rbac_they_need() {
    let c = Pools::new();
    let wide = c.conf("wabr0", "cni-a", json!({"range": "10.90.0.0/24"}));
    let narrow = c.conf("wabr1", "cni-b", json!({"range": "10.90.0.0/25"}));
    let blind = c.conf(
        "wabr2",
        "cni-c",
        json!({"range": "10.90.0.0/26", "enable_overlapping_ranges": false}),
    );
    let pods: Vec<Pod> = (0..3).map(|_| Pod::new()).collect();
    for (pod, name, conf) in [
        (&pods[0], "wide", &wide),
        (&pods[1], "narrow", &narrow),
        (&pods[2], "blind", &blind),
    ] {
        let out = c.run("ADD", pod, name, conf);
        assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    }
    assert_eq!(net1(&pods[0]), ["10.90.0.1/24"]);
    assert_eq!(net1(&pods[1]), ["10.90.0.2/25"]);
    assert_eq!(net1(&pods[2]), ["10.90.0.1/26"]);
    let mut res = c.reservations();
    res.sort();
    assert_eq!(res, ["10.90.0.1", "10.90.0.2"]);
    // The first pod's new sandbox takes its address and its reservation
    // over (the reservation's update rule).
    let again = Pod::new();
    let out = c.run("ADD", &again, "wide", &wide);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(net1(&again), ["10.90.0.1/24"]);
    assert!(c.run("DEL", &again, "wide", &wide).ok());
    for (pod, name, conf) in [
        (&pods[0], "wide", &wide),
        (&pods[1], "narrow", &narrow),
        (&pods[2], "blind", &blind),
    ] {
        assert!(c.run("DEL", pod, name, conf).ok());
    }
    assert!(c.reservations().is_empty());
    // Node slices, for the rules they need.
    let sliced = c.conf(
        "wabr3",
        "cni-d",
        json!({"range": "10.91.0.0/24", "node_slice_size": "/28"}),
    );
    let pod = Pod::new();
    assert!(c.run("ADD", &pod, "sliced", &sliced).ok());
    assert!(c.run("DEL", &pod, "sliced", &sliced).ok());
    // A free slot of a pool whereabouts' controller listed: taken by a patch.
    let listed = c.conf(
        "wabr4",
        "cni-e",
        json!({"range": "10.93.0.0/24", "node_slice_size": "/28", "network_name": "listed"}),
    );
    c.put_slice_pool(
        "listed",
        "10.93.0.0/24",
        "/28",
        json!([{"nodeName": "", "sliceRange": "10.93.0.0/28"}]),
    );
    let pod = Pod::new();
    assert!(c.run("ADD", &pod, "listed", &listed).ok());
    assert!(c.run("DEL", &pod, "listed", &listed).ok());

    use multus_testbed::manifests;
    let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(manifests::find_in(
        &manifests::whereabouts(),
        "Role",
        Some("multus-whereabouts"),
    ))
    .unwrap();
    let granted = manifests::grants(&role.rules.unwrap());
    let mut used = std::collections::BTreeSet::new();
    for r in c.api.requests() {
        let (g, res, verb, ns) = manifests::authorization(&r);
        let key = (g, res, verb);
        assert!(granted.contains(&key) && ns == NS, "not granted: {r}");
        used.insert(key);
    }
    assert_eq!(used, granted, "rules nothing calls");
}

/// In-process: whereabouts as a conflist entry of its own (its `ipam`
/// naming itself) runs in the ipam role inside multus, no exec.
#[test]
fn in_process_as_a_conflist_entry() {
    let c = Pools::new();
    let ipam = json!({"type": "whereabouts", "range": "10.95.0.0/24",
        "kubernetes": {"kubeconfig": c.api.kubeconfig()}});
    let net = json!({"cniVersion": "1.0.0", "name": "wa-inproc", "plugins": [
        {"type": "whereabouts", "ipam": ipam}]});
    let mut conf = c.node.with_wasm(confs::multus_delegates(
        &[
            confs::bridge_host_local("cluster", "cni0", "10.31.0.0/16", &c.node.data_dir()),
            net,
        ],
        &c.node.cni_dir(),
        &plugins(),
    ));
    conf["kubeconfigAllowlist"] = json!([c.api.kubeconfig()]);
    let conf = bytes(&conf);
    let pod = Pod::new();
    let out = c.run("ADD", &pod, "inproc", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(
        c.allocations("10.95.0.0-24"),
        [(1, "default/inproc".to_string())]
    );
    // No shim link was made: nothing exec'd the module.
    assert!(!c.node.wasm_cache().join("bin/whereabouts").exists());
    assert!(c.run("DEL", &pod, "inproc", &conf).ok());
    assert!(c.allocations("10.95.0.0-24").is_empty());
}

/// Node slices: each node claims /29 slices of the range in the
/// NodeSlicePool (an entry each, appended) and allocates only in its own
/// slices' pools; a node whose slice is full claims another; DEL frees
/// from the node's slices.
#[test]
fn node_slices_keep_nodes_apart() {
    let c = Pools::new();
    let conf = c.conf(
        "wabr0",
        "cni",
        json!({"range": "10.110.0.0/24", "node_slice_size": "/29"}),
    );
    let a: Vec<Pod> = (0..7).map(|_| Pod::new()).collect();
    for (i, pod) in a.iter().enumerate() {
        let out = c.run_on("node-a", "ADD", pod, &format!("a{i}"), &conf);
        assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    }
    let b = Pod::new();
    let out = c.run_on("node-b", "ADD", &b, "b0", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let slices = c.api.custom_object("nodeslicepools", NS, "wa-net").unwrap();
    assert_eq!(
        slices["spec"],
        json!({"range": "10.110.0.0/24", "sliceSize": "/29"})
    );
    let list = slices["status"]["allocations"].as_array().unwrap();
    let held = |node: &str| -> Vec<u32> {
        list.iter()
            .filter(|a| a["nodeName"] == node)
            .map(|a| {
                let s = a["sliceRange"].as_str().unwrap();
                s["10.110.0.".len()..s.len() - 3].parse().unwrap()
            })
            .collect()
    };
    let (sa, sb) = (held("node-a"), held("node-b"));
    assert_eq!((sa.len(), sb.len(), list.len()), (2, 1, 3), "{list:?}");
    assert!(!sa.contains(&sb[0]));
    let pool = |node: &str, base: u32| format!("{node}-10.110.0.{base}-29");
    // Six of node-a's pods fill one slice (.1-.6 of it), the seventh is .1
    // of its second; node-b's pod is .1 of its own.
    let (full, second): (Vec<u32>, Vec<u32>) = sa
        .iter()
        .partition(|&&base| c.allocations(&pool("node-a", base)).len() == 6);
    assert_eq!((full.len(), second.len()), (1, 1), "{sa:?}");
    let want: Vec<String> = (1..=6)
        .map(|h| full[0] + h)
        .chain([second[0] + 1])
        .map(|h| format!("10.110.0.{h}/24"))
        .collect();
    assert_eq!(a.iter().flat_map(net1).collect::<Vec<_>>(), want);
    assert_eq!(
        c.allocations(&pool("node-a", second[0])),
        [(1, "default/a6".to_string())]
    );
    assert_eq!(net1(&b), [format!("10.110.0.{}/24", sb[0] + 1)]);
    assert_eq!(
        c.allocations(&pool("node-b", sb[0])),
        [(1, "default/b0".to_string())]
    );
    let check = c.run_on("node-b", "CHECK", &b, "b0", &conf);
    assert!(check.ok(), "{} {}", check.stdout, check.stderr);
    for (i, pod) in a.iter().enumerate() {
        assert!(c.run_on("node-a", "DEL", pod, &format!("a{i}"), &conf).ok());
    }
    assert!(c.run_on("node-b", "DEL", &b, "b0", &conf).ok());
    for p in [
        pool("node-a", sa[0]),
        pool("node-a", sa[1]),
        pool("node-b", sb[0]),
    ] {
        assert!(c.allocations(&p).is_empty(), "{p}");
    }
    assert!(c.reservations().is_empty());
}

/// Sixteen nodes claiming their first slice at once, twice: on a
/// NodeSlicePool whose controller listed every slice as a free slot, each
/// takes a slot with a patch guarded only by that slot's `test` ops, so
/// nothing is refused 409 (a guarded replace of the list made every node but
/// one retry); on a pool with no list, each appends with a guarded replace
/// and retries on conflict. Either way every node gets a distinct slice
/// and an address in it, and all are freed.
#[test]
fn node_slices_claimed_at_once() {
    let c = Pools::new();
    let conf = |bridge: &str, range: &str| {
        c.conf(
            bridge,
            &format!("cni-{bridge}"),
            json!({"range": range, "node_slice_size": "/28", "network_name": format!("wa-{bridge}")}),
        )
    };
    c.put_slice_pool(
        "wa-wabr0",
        "10.111.0.0/24",
        "/28",
        json!((0..16)
            .map(|i| json!({"nodeName": "",
                   "sliceRange": format!("10.111.0.{}/28", i * 16)}))
            .collect::<Vec<_>>()),
    );
    for (bridge, range, listed) in [
        ("wabr0", "10.111.0.0/24", true),
        ("wabr1", "10.113.0.0/24", false),
    ] {
        let conf = conf(bridge, range);
        let pods: Vec<Pod> = (0..16).map(|_| Pod::new()).collect();
        let before = c.api.requests().len();
        std::thread::scope(|s| {
            for (i, pod) in pods.iter().enumerate() {
                let (c, conf) = (&c, &conf);
                s.spawn(move || {
                    let out = c.run_on(
                        &format!("node-{i}"),
                        "ADD",
                        pod,
                        &format!("{bridge}-{i}"),
                        conf,
                    );
                    assert!(out.ok(), "node-{i}: {} {}", out.stdout, out.stderr);
                });
            }
        });
        let slices = c
            .api
            .custom_object("nodeslicepools", NS, &format!("wa-{bridge}"))
            .unwrap();
        let mut owners: Vec<&str> = slices["status"]["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["nodeName"].as_str().unwrap())
            .collect();
        owners.sort();
        let mut want: Vec<String> = (0..16).map(|i| format!("node-{i}")).collect();
        want.sort();
        assert_eq!(owners, want, "{bridge}: one slice each, every slice taken");
        let mut slices_used: Vec<u32> = pods
            .iter()
            .flat_map(net1)
            .map(|a| {
                a.trim_end_matches("/24")
                    .rsplit('.')
                    .next()
                    .unwrap()
                    .parse::<u32>()
                    .unwrap()
                    / 16
            })
            .collect();
        slices_used.sort();
        slices_used.dedup();
        assert_eq!(
            slices_used.len(),
            16,
            "{bridge}: each address in its node's own slice"
        );
        let refused = c.api.requests()[before..]
            .iter()
            .filter(|r| r.contains("/nodeslicepools/") && r.ends_with(" 409"))
            .count();
        if listed {
            assert_eq!(refused, 0, "{bridge}: slots taken by tested patches");
        }
        eprintln!("{bridge}: 16 claims at once, {refused} refused 409");
        std::thread::scope(|s| {
            for (i, pod) in pods.iter().enumerate() {
                let (c, conf) = (&c, &conf);
                s.spawn(move || {
                    assert!(c
                        .run_on(
                            &format!("node-{i}"),
                            "DEL",
                            pod,
                            &format!("{bridge}-{i}"),
                            conf
                        )
                        .ok());
                });
            }
        });
    }
    assert!(c.reservations().is_empty());
}

/// A NodeSlicePool whose slots whereabouts' own controller assigned (node
/// names on some, empty on the rest) is read as it means: a node with a
/// slot allocates there without writing the pool; a node without one
/// takes a free slot, not a listed one.
#[test]
fn node_slices_from_whereabouts_controller() {
    let c = Pools::new();
    let conf = c.conf(
        "wabr0",
        "cni",
        json!({"range": "10.112.0.0/24", "node_slice_size": "/26"}),
    );
    let slots = |assigned: &[(&str, u32)]| -> Value {
        (0..4)
            .map(|i| {
                let node = assigned
                    .iter()
                    .find(|(_, s)| *s == i)
                    .map_or("", |(n, _)| n);
                json!({"nodeName": node, "sliceRange": format!("10.112.0.{}/26", i * 64)})
            })
            .collect()
    };
    c.put_slice_pool(
        "wa-net",
        "10.112.0.0/24",
        "/26",
        json!(slots(&[("node-x", 2)])),
    );
    let (x, y) = (Pod::new(), Pod::new());
    let out = c.run_on("node-x", "ADD", &x, "x", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(net1(&x), ["10.112.0.129/24"]);
    assert!(
        !c.api
            .requests()
            .iter()
            .any(|r| r.contains("/nodeslicepools/") && !r.starts_with("GET")),
        "node-x wrote the pool: {:?}",
        c.api.requests()
    );
    let out = c.run_on("node-y", "ADD", &y, "y", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let list = c.api.custom_object("nodeslicepools", NS, "wa-net").unwrap()["status"]
        ["allocations"]
        .clone();
    let y_slot = list
        .as_array()
        .unwrap()
        .iter()
        .position(|a| a["nodeName"] == "node-y")
        .unwrap();
    assert_ne!(y_slot, 2);
    assert_eq!(list[2]["nodeName"], "node-x");
    assert_eq!(list.as_array().unwrap().len(), 4);
    assert_eq!(net1(&y), [format!("10.112.0.{}/24", y_slot * 64 + 1)]);
    assert!(c.run_on("node-x", "DEL", &x, "x", &conf).ok());
    assert!(c.run_on("node-y", "DEL", &y, "y", &conf).ok());
    assert!(c.reservations().is_empty());
}

/// `network_name` is one cluster-wide name space: a NodeSlicePool of the
/// name cut another way is another network's, and this one's ADD is
/// refused (code 7, naming the key) rather than claiming slices that
/// would overlap that pool's; its DEL finds nothing of its own there.
#[test]
fn a_pool_cut_another_way_is_not_used() {
    let c = Pools::new();
    c.put_slice_pool(
        "wa-net",
        "10.114.0.0/24",
        "/26",
        json!([{"nodeName": "node-x", "sliceRange": "10.114.0.0/26"}]),
    );
    let conf = c.conf(
        "wabr0",
        "cni",
        json!({"range": "10.114.0.0/24", "node_slice_size": "/28"}),
    );
    let pod = Pod::new();
    let msg = assert_cni_error(&c.run("ADD", &pod, "p", &conf), 7);
    assert!(
        msg.contains("NodeSlicePool wa-net cuts 10.114.0.0/24 in /26 slices")
            && msg.contains("network_name"),
        "{msg}"
    );
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    assert!(c.api.custom_objects("ippools", NS).is_empty());
    let list =
        &c.api.custom_object("nodeslicepools", NS, "wa-net").unwrap()["status"]["allocations"];
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(c.run("DEL", &pod, "p", &conf).ok());
}

/// A thin multus is exec'd with the runtime's environment, which names no
/// node: the conf's `nodeName` (the installer writes it) is the node, for
/// the IPAM shim a native bridge execs too; the host name is not (the
/// kubelet's node name need not be it).
#[test]
fn the_confs_node_name_is_the_node() {
    let c = Pools::new();
    let conf = c.conf(
        "wabr0",
        "cni",
        json!({"range": "10.113.0.0/24", "node_slice_size": "/26"}),
    );
    let mut conf: Value = serde_json::from_slice(&conf).unwrap();
    conf["nodeName"] = json!("node-from-conf");
    let conf = bytes(&conf);
    let pod = Pod::new();
    let out = c.run_on("", "ADD", &pod, "p", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let list = c.api.custom_object("nodeslicepools", NS, "wa-net").unwrap()["status"]
        ["allocations"]
        .clone();
    assert_eq!(
        list,
        json!([{"nodeName": "node-from-conf", "sliceRange": "10.113.0.0/26"}])
    );
    assert_eq!(
        c.allocations("node-from-conf-10.113.0.0-26"),
        [(1, "default/p".to_string())]
    );
    assert!(c.run_on("", "DEL", &pod, "p", &conf).ok());
    assert!(c.allocations("node-from-conf-10.113.0.0-26").is_empty());
}

/// whereabouts.wasm with the defaults (no timeouts set) against a fresh API
/// server, whose first IPPool write takes seconds (2.3 s on a real one: the
/// quota evaluator of a new kind). The 2 s host-call budget aborted it and
/// every first pod failed (issue 20); a cluster call now has 10 s within
/// the plugin's 30 s. A dead API server is still reported at once.
#[test]
fn a_cold_api_server_first_write_with_the_defaults() {
    let c = Pools::new();
    let mut conf: Value =
        serde_json::from_slice(&c.conf("cold0", "cni-cold", json!({"range": "10.92.0.0/24"})))
            .unwrap();
    conf.as_object_mut().unwrap().remove("wasmPlugins");
    let conf = bytes(&conf);
    c.api
        .slow_first_write("/ippools", std::time::Duration::from_millis(3000));
    let pod = Pod::new();
    let out = c.run("ADD", &pod, "cold", &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(net1(&pod), vec!["10.92.0.1/24"]);
    assert_eq!(c.api.faults_fired(), 1, "the slow write happened");
    assert!(c.run("DEL", &pod, "cold", &conf).ok());

    let mut api = c.api;
    api.stop();
    let pod = Pod::new();
    let started = std::time::Instant::now();
    let out = Pools { node: c.node, api }.run("ADD", &pod, "dead", &conf);
    let msg = assert_cni_error(&out, 11);
    assert!(msg.contains("unavailable"), "{msg}");
    eprintln!("dead API server reported after {:?}", started.elapsed());
}
