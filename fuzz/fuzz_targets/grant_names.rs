//! The grant's path and name checks against any names a config, a
//! prevResult or a plugin can bring: whatever the input, a granted link is
//! a valid interface name, a sysctl the host builds is a path under
//! `/proc/sys/net` with nothing but plain components, and a netlink call is
//! allowed only on a granted, valid link; a plugin type the boundary
//! accepts is a plain file name, and a store it grants lies beneath an
//! admin's root by plain names. Property checks, not just "no panic".
#![no_main]
use std::path::Component;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use multus::boundary::{Bounds, PluginType};
use multus::cni::Command;
use multus::config::PluginSettings;
use multus::delegate::wasm::{grant, Role};
use multus::delegate::PluginCall;
use multus_host_functions::names::valid_ifname;
use multus_host_functions::netlink::{check, Ns};
use multus_host_functions::sysctl::build;
use serde_json::json;

#[derive(Arbitrary, Debug)]
struct Input {
    ifname: String,
    prev_interfaces: Vec<(String, bool)>,
    master: String,
    bridge: String,
    section: String,
    group: String,
    link: String,
    name: String,
    probe: String,
    plugin: String,
    data_dir: String,
}

fuzz_target!(|data: &[u8]| {
    let Ok(i) = Input::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let interfaces: Vec<_> = i
        .prev_interfaces
        .iter()
        .map(|(n, pod)| json!({"name": n, "sandbox": if *pod { "/run/netns/p" } else { "" }}))
        .collect();
    let prev = json!({"interfaces": interfaces, "ips": []});
    if let Ok(t) = PluginType::parse(&i.plugin, "type") {
        let s = t.as_str();
        assert!(!s.is_empty() && s.len() <= 128 && !s.contains('/'), "{s:?}");
        assert!(!s.starts_with('.') && !s.starts_with('-'), "{s:?}");
    }
    let bounds = Bounds::default();
    let store_config = json!({"name": "n", "dataDir": i.data_dir});
    let tuning = PluginType::parse("tuning", "type").unwrap();
    let store_call = PluginCall {
        plugin_type: &tuning,
        command: Command::Add,
        container_id: "c",
        netns: "/run/netns/p",
        ifname: "net1",
        known_prev: None,
        cni_args: "",
        path: &[],
        extra_env: &[],
        stdin: b"",
    };
    let settings = PluginSettings::default();
    if let Ok(g) = grant::compute(
        Role::Chained,
        &store_call,
        &store_config,
        &settings,
        &bounds,
        "node1",
    ) {
        if let Some(dir) = g.store_root {
            let p = dir.path();
            let root = bounds.store_roots.iter().find(|r| p.starts_with(r));
            let rest = p.strip_prefix(root.expect("beneath a root")).unwrap();
            assert!(rest.components().count() > 0, "{p:?}");
            assert!(
                rest.components().all(|c| matches!(c, Component::Normal(_))),
                "{p:?}"
            );
        }
    }
    let config = json!({"name": "n", "master": i.master, "bridge": i.bridge,
        "prevResult": {"interfaces": [{"name": i.probe, "sandbox": "/run/netns/p"}]}});
    let call = PluginCall {
        plugin_type: &tuning,
        command: Command::Add,
        container_id: "c",
        netns: "/run/netns/p",
        ifname: &i.ifname,
        known_prev: Some(&prev),
        cni_args: "",
        path: &[],
        extra_env: &[],
        stdin: b"",
    };
    let mut g = grant::compute(Role::Chained, &call, &config, &settings, &bounds, "node1")
        .expect("the default store is beneath the default roots");
    for l in g.links.iter().chain(&g.host_links) {
        assert!(valid_ifname(l), "granted {l:?}");
    }
    // The config's own prevResult grants nothing.
    if !i
        .prev_interfaces
        .iter()
        .any(|(n, pod)| *pod && *n == i.probe)
        && i.probe != i.ifname
    {
        assert!(
            !g.links.contains(&i.probe),
            "config prevResult granted {:?}",
            i.probe
        );
    }
    // Every key allowed, so only the name and path checks stand between
    // the input and the kernel.
    g.sysctl_allowlist = vec![".*".into()];
    for link in [None, Some((i.group.as_str(), i.link.as_str()))] {
        if let Ok(k) = build(&g, &i.section, link, &i.name) {
            assert!(k.path.starts_with("/proc/sys/net/"), "{k:?}");
            assert!(k.dotted.starts_with("net."), "{k:?}");
            for c in k.path.components().skip(1) {
                match c {
                    Component::Normal(s) => assert!(!s.is_empty() && s != "." && s != ".."),
                    other => panic!("{k:?} has {other:?}"),
                }
            }
            if let Some((_, l)) = link {
                assert!(g.links.iter().any(|x| x == l) && valid_ifname(l), "{k:?}");
            }
        }
    }
    g.netns = Some("/run/netns/p".into());
    if check(&g, Ns::Container, &i.link).is_ok() {
        assert!(valid_ifname(&i.link) && g.links.contains(&i.link));
    }
    g.host_netns = true;
    if check(&g, Ns::Host, &i.link).is_ok() {
        assert!(valid_ifname(&i.link));
    }
});
