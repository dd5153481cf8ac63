//! Parallel pods on one host-local range get distinct addresses.

mod common;

use std::collections::BTreeSet;

use common::*;
use multus::testbed::{confs, Netns};

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
    let pods: Vec<Netns> = (0..PODS).map(|_| Netns::new("t-par").unwrap()).collect();
    let run_all = |cmd: &'static str| -> Vec<String> {
        std::thread::scope(|s| {
            let handles: Vec<_> = pods
                .iter()
                .enumerate()
                .map(|(i, pod)| {
                    let (node, conf) = (&node, &conf);
                    s.spawn(move || {
                        let cid = format!("par{i}");
                        let netns = pod.path();
                        let out = node.multus(&pod_env(cmd, &cid, netns.to_str().unwrap()), conf);
                        assert!(out.ok(), "{cmd} {cid}: {} {}", out.stdout, out.stderr);
                        out.stdout
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let results = run_all("ADD");
    let addrs: BTreeSet<String> = results
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(r).unwrap()["ips"][0]["address"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(addrs.len(), PODS, "{addrs:?}");
    for pod in &pods {
        assert_eq!(pod.addrs("eth0").unwrap().len(), 1);
        assert!(addrs.contains(&pod.addrs("eth0").unwrap()[0]));
    }
    assert_eq!(node.reservations("shared").len(), PODS);
    run_all("DEL");
    assert!(node.reservations("shared").is_empty());
    assert!(node.cache_files().is_empty());
    assert!(node.veths().is_empty());
    for pod in &pods {
        assert_eq!(pod.links().unwrap(), vec!["lo"]);
    }
}
