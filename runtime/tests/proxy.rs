//! containerd passes its own environment to every CNI plugin, proxy
//! variables included (common on real nodes, for image pulls). multus's API
//! calls then follow them as client-go does: through `HTTPS_PROXY` unless
//! `NO_PROXY` names the server (by IP, CIDR or name) or the server is
//! loopback. Issue 20: every ADD failed as soon as a proxy was set.

mod common;

use common::*;
use multus_testbed::confs;
use multus_testbed::connect_proxy::ConnectProxy;
use multus_testbed::kube_api::FakeKubeApi;
use serde_json::json;

/// An address of the node netns that is not loopback: where a real API
/// server is.
const API_IP: &str = "198.18.0.1";

struct Setup {
    node: Node,
    api: FakeKubeApi,
    conf: Vec<u8>,
}

fn setup(ip: &str) -> Setup {
    let node = Node::new();
    if ip != "127.0.0.1" {
        node.ns
            .ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .unwrap();
    }
    let api = FakeKubeApi::start_on(&node.ns, "token-1", ip.parse().unwrap()).unwrap();
    let mv = confs::macvlan_host_local("macvlan-conf", "uplink0", "10.20.0.0/24", &node.data_dir());
    api.add_nad("default", "macvlan-conf", Some(&mv.to_string()), &[]);
    api.add_pod(
        "default",
        "web",
        "uid-1",
        &[("k8s.v1.cni.cncf.io/networks", "macvlan-conf")],
        &[],
    );
    let cluster = confs::bridge_host_local("cluster", "cni0", "10.10.0.0/24", &node.data_dir());
    let mut conf = confs::multus_delegates(&[cluster], &node.cni_dir(), &plugins());
    conf["kubeconfig"] = json!(api.kubeconfig());
    let conf = bytes(&conf);
    Setup { node, api, conf }
}

fn run(s: &Setup, cmd: &str, pod: &Pod, proxy_env: &[(&str, &str)]) -> multus_testbed::CniOutput {
    let mut env = pod_env(cmd, "px1", &pod.path);
    for k in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        let v = proxy_env
            .iter()
            .find(|(n, _)| *n == k)
            .map_or("", |(_, v)| *v);
        env.push((k, v));
    }
    s.node.multus(&env, &s.conf)
}

fn add_and_del(s: &Setup, proxy_env: &[(&str, &str)]) {
    let pod = Pod::new();
    let add = run(s, "ADD", &pod, proxy_env);
    assert!(add.ok(), "{proxy_env:?}: {} {}", add.stdout, add.stderr);
    assert_eq!(pod.ns.links().unwrap().len(), 3, "lo, eth0, net1");
    assert!(s
        .api
        .annotation("default", "web", "k8s.v1.cni.cncf.io/network-status")
        .is_some());
    let del = run(s, "DEL", &pod, proxy_env);
    assert!(del.ok(), "{proxy_env:?}: {} {}", del.stdout, del.stderr);
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
}

#[test]
fn api_calls_go_through_https_proxy() {
    let s = setup(API_IP);
    let proxy = ConnectProxy::start(&s.node.ns).unwrap();
    let url = proxy.url();
    add_and_del(&s, &[("HTTPS_PROXY", url.as_str())]);
    let carried = proxy.carried();
    assert!(!carried.is_empty(), "the API calls went through the proxy");
    assert!(
        carried.iter().all(|t| *t == s.api.addr.to_string()),
        "{carried:?}"
    );
    // The lower-case spelling works as well.
    let before = proxy.carried().len();
    add_and_del(&s, &[("https_proxy", url.as_str())]);
    assert!(proxy.carried().len() > before);
}

#[test]
fn no_proxy_names_the_server_by_cidr_ip_or_name() {
    let s = setup(API_IP);
    let proxy = ConnectProxy::start(&s.node.ns).unwrap();
    let url = proxy.url();
    for no_proxy in [
        "127.0.0.1,localhost,node1,198.18.0.0/15",
        " 10.0.0.1 , 198.18.0.1 ",
        "*",
    ] {
        add_and_del(&s, &[("HTTPS_PROXY", url.as_str()), ("NO_PROXY", no_proxy)]);
    }
    add_and_del(
        &s,
        &[("HTTPS_PROXY", url.as_str()), ("no_proxy", "198.18.0.1")],
    );
    assert_eq!(proxy.carried(), Vec::<String>::new(), "nothing proxied");
    // A NO_PROXY that names only the proxy (what kube-rs matched against)
    // does not exempt the server.
    add_and_del(
        &s,
        &[("HTTPS_PROXY", url.as_str()), ("NO_PROXY", "127.0.0.1")],
    );
    assert!(!proxy.carried().is_empty());
}

/// containerd's proxy, dead from the node's point of view (issue 20's
/// `http://127.0.0.1:9/`), with no NO_PROXY: a loopback API server is never
/// proxied, as client-go never proxies loopback.
#[test]
fn a_loopback_server_is_never_proxied() {
    let s = setup("127.0.0.1");
    add_and_del(
        &s,
        &[
            ("HTTPS_PROXY", "http://127.0.0.1:9/"),
            ("HTTP_PROXY", "http://127.0.0.1:9/"),
        ],
    );
}

/// A proxy that does not answer is an API error naming the call (code 11,
/// retried by the kubelet), never a silent success; nothing is left.
#[test]
fn a_dead_proxy_is_a_retriable_error() {
    let s = setup(API_IP);
    let pod = Pod::new();
    let out = run(&s, "ADD", &pod, &[("HTTPS_PROXY", "http://127.0.0.1:9/")]);
    let msg = assert_cni_error(&out, 11);
    assert!(msg.contains("default/web"), "{msg}");
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
    assert!(s.node.cache_files().is_empty());
}
