//! Parallel pods on one host-local range get distinct addresses.

mod common;

use std::collections::BTreeSet;

use common::*;
use multus_testbed::confs;

const PODS: usize = 20;

#[test]
fn twenty_parallel_pods_get_distinct_addresses_and_delete_cleanly() {
    let node = Node::new();
    let conf = bytes(&confs::multus_delegates(
        &[confs::bridge_host_local(
            "shared",
            "cni0",
            "10.7.0.0/24",
            &node.data_dir(),
        )],
        &node.cni_dir(),
        &plugins(),
    ));
    let pods: Vec<Pod> = (0..PODS).map(|_| Pod::new()).collect();
    let addrs: BTreeSet<String> = node
        .run_parallel("ADD", &pods, &conf)
        .iter()
        .map(|r| r.json()["ips"][0]["address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(addrs.len(), PODS, "{addrs:?}");
    for pod in &pods {
        let held = pod.ns.addrs("eth0").unwrap();
        assert_eq!(held.len(), 1);
        assert!(addrs.contains(&held[0]));
    }
    assert_eq!(node.reservations("shared").len(), PODS);
    node.run_parallel("DEL", &pods, &conf);
    assert!(node.reservations("shared").is_empty());
    assert!(node.cache_files().is_empty());
    assert!(node.veths().is_empty());
    for pod in &pods {
        assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
    }
}
