//! Wasm plugins through the built `multus` binary, in real network
//! namespaces, compared with the reference plugins.

mod common;

use common::*;
use multus_testbed::confs;
use serde_json::{json, Value};

fn bridge_conf(node: &Node, data: &std::path::Path) -> Value {
    node.with_wasm(confs::multus_delegates(
        &[confs::bridge_host_local(
            "cluster",
            "cni0",
            "10.1.0.0/24",
            data,
        )],
        &node.cni_dir(),
        &plugins(),
    ))
}

#[test]
fn wasm_host_local_as_ipam_of_native_bridge() {
    let node = Node::new();
    node.install_wasm(&["host-local"]);
    let conf = bytes(&bridge_conf(&node, &node.data_dir()));
    let pod = Pod::new();
    let out = node.run("ADD", "w1", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let r = out.json();
    assert_eq!(r["ips"][0]["address"], "10.1.0.2/24");
    assert_eq!(r["ips"][0]["gateway"], "10.1.0.1");
    assert_eq!(pod.ns.addrs("eth0").unwrap(), vec!["10.1.0.2/24"]);
    assert_eq!(node.reservations("cluster"), vec!["10.1.0.2"]);
    assert_eq!(
        std::fs::read_to_string(node.data_dir().join("cluster/10.1.0.2")).unwrap(),
        "w1\r\neth0"
    );
    let artifacts = multus_testbed::files_under(&node.wasm_cache());
    assert!(
        artifacts.iter().any(|f| f.ends_with(".cwasm")),
        "{artifacts:?}"
    );
    assert!(node.run("CHECK", "w1", &pod, &conf).ok());
    let out = node.run("DEL", "w1", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert!(node.reservations("cluster").is_empty());
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
}

/// `multus` carries no compiler: a module nobody precompiled is compiled
/// by the `multusctl` beside it. Without one, the ADD fails naming it and
/// leaves nothing.
#[test]
fn a_module_not_precompiled_needs_multusctl_beside_multus() {
    let node = Node::new();
    node.install_wasm(&["host-local"]);
    let alone = node.dir.path().join("alone");
    std::fs::create_dir(&alone).unwrap();
    std::fs::copy(MULTUS, alone.join("multus")).unwrap();
    let conf = bytes(&bridge_conf(&node, &node.data_dir()));
    let pod = Pod::new();
    let env = pod_env("ADD", "nc1", &pod.path);
    let out = multus_testbed::exec_cni(&alone.join("multus"), Some(&node.ns), &env, &conf).unwrap();
    let msg = assert_cni_error(&out, 7);
    assert!(
        msg.contains("not precompiled")
            && msg.contains(&alone.join("multusctl").display().to_string()),
        "{msg}"
    );
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
    assert!(node.reservations("cluster").is_empty());
    assert!(node.cache_files().is_empty(), "{:?}", node.cache_files());

    // Precompiled by multusctl (as the installer does), the same binary
    // runs it with no compiler at hand.
    let ctl = multus_testbed::node::built("multusctl");
    let plugin = node.dir.path().join("plugins/host-local.wasm");
    let out = std::process::Command::new(ctl)
        .args(["plugin", "compile", "--cache-dir"])
        .arg(node.wasm_cache())
        .arg(&plugin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The failed ADD left the reference bridge without ports; its MAC is
    // then zero and the reference plugin cannot reuse it.
    node.ns.ip(&["link", "del", "cni0"]).unwrap();
    let out = multus_testbed::exec_cni(&alone.join("multus"), Some(&node.ns), &env, &conf).unwrap();
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let del = pod_env("DEL", "nc1", &pod.path);
    assert!(
        multus_testbed::exec_cni(&alone.join("multus"), Some(&node.ns), &del, &conf)
            .unwrap()
            .ok()
    );
    assert!(node.reservations("cluster").is_empty());
}

/// Pods started together after a module changed (no artifact yet) compile
/// it once: the others wait for the artifact, where each compiled it
/// (100 thin processes at once spent 40 s of a 60 s deadline so).
#[test]
fn loads_that_miss_together_compile_once() {
    let node = Node::new();
    let plugin_dir = node.install_wasm(&["host-local"]);
    let alone = node.dir.path().join("alone");
    std::fs::create_dir(&alone).unwrap();
    // The wasm IPAM as a main plugin execs it, with a compiler beside it
    // that counts its runs.
    std::fs::copy(MULTUS, alone.join("host-local")).unwrap();
    let runs = node.dir.path().join("compiler-runs");
    let ctl = multus_testbed::node::built("multusctl");
    std::fs::write(
        alone.join("multusctl"),
        format!(
            "#!/bin/sh\necho run >> {}\nexec {} \"$@\"\n",
            runs.display(),
            ctl.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        alone.join("multusctl"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let env = shim_env(&plugin_dir, &node);
    let conf = json!({"cniVersion": "1.0.0", "name": "herd", "type": "bridge",
        "ipam": {"type": "host-local", "dataDir": node.dir.path().join("data"),
            "ranges": [[{"subnet": "10.7.0.0/24"}]]}});
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (env, conf, program) = (&env, &conf, alone.join("host-local"));
                s.spawn(move || ipam(&program, env, "ADD", &format!("c{i}"), "eth0", "", conf))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &outs {
        assert!(o.ok(), "{} {}", o.stdout, o.stderr);
    }
    let mut addrs: Vec<_> = outs
        .iter()
        .map(|o| o.json()["ips"][0]["address"].to_string())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 6, "{addrs:?}");
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "run\n");
}

/// The wasm IPAM `name` installed on `node`, as a main plugin execs it: a
/// link to `multus` under that name, and the environment that finds the
/// module.
fn ipam_shim(node: &Node, name: &str) -> (std::path::PathBuf, Vec<(&'static str, String)>) {
    let plugin_dir = node.install_wasm(&[name]);
    let shim = node.dir.path().join("shim");
    std::fs::create_dir_all(&shim).unwrap();
    std::os::unix::fs::symlink(MULTUS, shim.join(name)).unwrap();
    (shim.join(name), shim_env(&plugin_dir, node))
}

/// The environment an IPAM shim finds its module by (as multus passes it to
/// a main plugin it execs).
fn shim_env(plugin_dir: &std::path::Path, node: &Node) -> Vec<(&'static str, String)> {
    vec![
        ("MULTUS_WASM_PLUGIN_DIR", plugin_dir.display().to_string()),
        (
            "MULTUS_WASM_CACHE_DIR",
            node.wasm_cache().display().to_string(),
        ),
        ("MULTUS_WASM_PLUGINS", "{}".to_string()),
        (
            "MULTUS_WASM_BOUNDS",
            json!({"storeRoots": [node.dir.path()], "configFileRoots": [],
                "kubeconfigAllowlist": [], "nadPluginTypes": null})
            .to_string(),
        ),
    ]
}

/// Runs one IPAM plugin binary directly, as a main plugin would exec it.
fn ipam(
    program: &std::path::Path,
    extra: &[(&str, String)],
    cmd: &str,
    cid: &str,
    ifname: &str,
    args: &str,
    conf: &Value,
) -> multus_testbed::CniOutput {
    let mut env: Vec<(&str, &str)> = vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", "/run/netns/none"),
        ("CNI_IFNAME", ifname),
        ("CNI_ARGS", args),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
    multus_testbed::exec_cni(program, None, &env, &bytes(conf)).unwrap()
}

fn dual_stack(data: &std::path::Path) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": "dual", "type": "bridge",
        "ipam": {
            "type": "host-local", "dataDir": data,
            "ranges": [
                [{"subnet": "10.5.0.0/24", "rangeStart": "10.5.0.10", "rangeEnd": "10.5.0.13"},
                 {"subnet": "10.6.0.0/30"}],
                [{"subnet": "fd00:5::/64", "rangeStart": "fd00:5::a", "rangeEnd": "fd00:5::e"}]
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "fd00:9::/64", "gw": "fd00:5::1"}]
        }
    })
}

/// The same sequence of ADD/DEL on reference host-local and on the wasm one
/// (re-entered through its shim, exactly as bridge would exec it) must give
/// the same addresses, routes and files.
#[test]
fn wasm_host_local_matches_reference_host_local() {
    let node = Node::new();
    let (wasm, wasm_env) = ipam_shim(&node, "host-local");
    let (ref_data, wasm_data) = (node.dir.path().join("ref"), node.dir.path().join("wasm"));
    let reference = plugins().join("host-local");
    // (command, container, ifname, CNI_ARGS)
    let steps: &[(&str, &str, &str, &str)] = &[
        ("ADD", "p1", "eth0", ""),
        ("ADD", "p2", "eth0", ""),
        ("ADD", "p3", "net1", "IgnoreUnknown=1;IP=10.5.0.13"),
        ("ADD", "p4", "eth0", ""),
        ("DEL", "p2", "eth0", ""),
        ("ADD", "p5", "eth0", ""),
        ("ADD", "p6", "eth0", ""),
        ("ADD", "p7", "eth0", ""),
        ("ADD", "p8", "eth0", ""),
        ("ADD", "p1", "eth0", ""),
        ("CHECK", "p5", "eth0", ""),
        ("CHECK", "gone", "eth0", ""),
        ("DEL", "p4", "eth0", ""),
        ("DEL", "nobody", "eth0", ""),
    ];
    for (i, (cmd, cid, ifname, args)) in steps.iter().enumerate() {
        let r = ipam(
            &reference,
            &[],
            cmd,
            cid,
            ifname,
            args,
            &dual_stack(&ref_data),
        );
        let w = ipam(
            &wasm,
            &wasm_env,
            cmd,
            cid,
            ifname,
            args,
            &dual_stack(&wasm_data),
        );
        assert_eq!(
            r.ok(),
            w.ok(),
            "step {i} {cmd} {cid}: reference {} / wasm {} {}",
            r.stdout,
            w.stdout,
            w.stderr
        );
        if r.ok() {
            assert_eq!(r.json()["ips"], w.json()["ips"], "step {i} {cmd} {cid}");
            assert_eq!(
                r.json()["routes"],
                w.json()["routes"],
                "step {i} {cmd} {cid}"
            );
        } else {
            assert_eq!(
                r.json()["code"],
                w.json()["code"],
                "step {i}: {} vs {}",
                r.stdout,
                w.stdout
            );
        }
        let files = |d: &std::path::Path| -> Vec<(String, String)> {
            multus_testbed::files_under(&d.join("dual"))
                .into_iter()
                .filter(|f| f != "lock")
                .map(|f| {
                    (
                        f.clone(),
                        std::fs::read_to_string(d.join("dual").join(&f)).unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(files(&ref_data), files(&wasm_data), "step {i} {cmd} {cid}");
    }
}

#[test]
fn reservations_of_reference_host_local_are_honoured() {
    let node = Node::new();
    let (a, b, c) = (Pod::new(), Pod::new(), Pod::new());
    let reference = bytes(&confs::multus_delegates(
        &[confs::bridge_host_local(
            "cluster",
            "cni0",
            "10.1.0.0/24",
            &node.data_dir(),
        )],
        &node.cni_dir(),
        &plugins(),
    ));
    assert!(node.run("ADD", "ma", &a, &reference).ok());
    assert!(node.run("ADD", "mb", &b, &reference).ok());
    // Upgrade: the wasm host-local takes over the same network.
    node.install_wasm(&["host-local"]);
    let wasm = bytes(&bridge_conf(&node, &node.data_dir()));
    let out = node.run("ADD", "mc", &c, &wasm);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(
        out.json()["ips"][0]["address"],
        "10.1.0.4/24",
        "continues after the reference's last_reserved_ip"
    );
    let out = node.run("DEL", "ma", &a, &wasm);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(node.reservations("cluster"), vec!["10.1.0.3", "10.1.0.4"]);
    for (cid, pod) in [("mb", &b), ("mc", &c)] {
        assert!(node.run("DEL", cid, pod, &wasm).ok());
    }
    assert!(node.reservations("cluster").is_empty());
}

#[test]
fn fifty_parallel_adds_through_wasm_host_local() {
    const PODS: usize = 50;
    let node = Node::new();
    node.install_wasm(&["host-local"]);
    let conf = bytes(&bridge_conf(&node, &node.data_dir()));
    let pods: Vec<Pod> = (0..PODS).map(|_| Pod::new()).collect();
    let results: Vec<String> = node
        .run_parallel("ADD", &pods, &conf)
        .iter()
        .map(|o| o.json()["ips"][0]["address"].as_str().unwrap().to_string())
        .collect();
    let distinct: std::collections::BTreeSet<_> = results.iter().collect();
    assert_eq!(distinct.len(), PODS, "{results:?}");
    assert_eq!(node.reservations("cluster").len(), PODS);
    for (i, pod) in pods.iter().enumerate() {
        assert!(node.run("DEL", &format!("par{i}"), pod, &conf).ok());
    }
    assert!(node.reservations("cluster").is_empty());
}

#[test]
fn changed_module_is_picked_up_and_pins_refuse_it() {
    let node = Node::new();
    let dir = node.install_wasm(&["host-local"]);
    let pod = Pod::new();
    let conf = bridge_conf(&node, &node.data_dir());
    assert!(node.run("ADD", "k1", &pod, &bytes(&conf)).ok());
    assert!(node.run("DEL", "k1", &pod, &bytes(&conf)).ok());
    let cwasm = || {
        multus_testbed::files_under(&node.wasm_cache())
            .into_iter()
            .filter(|f| f.ends_with(".cwasm"))
            .count()
    };
    assert_eq!(cwasm(), 1);
    // Same behaviour, different bytes: a custom section appended.
    let module = dir.join("host-local.wasm");
    let mut b = std::fs::read(&module).unwrap();
    b.extend_from_slice(&[0x00, 0x06, 0x04, b't', b'e', b's', b't', 0x01]);
    std::fs::write(&module, &b).unwrap();
    assert!(node.run("ADD", "k2", &pod, &bytes(&conf)).ok());
    assert_eq!(cwasm(), 2, "the changed module was compiled anew");
    assert!(node.run("DEL", "k2", &pod, &bytes(&conf)).ok());

    let mut pinned = conf.clone();
    pinned["wasmPlugins"] = json!({"host-local": {"sha256": "00".repeat(32)}});
    let out = node.run("ADD", "k3", &pod, &bytes(&pinned));
    let msg = assert_cni_error(&out, 7);
    assert!(msg.contains("host-local") && msg.contains("pins"), "{msg}");
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
    assert!(node.reservations("cluster").is_empty());

    // The right pin runs it (checked against the digest indexed with the
    // file's stamp); the same file changed in place, to the same size,
    // moves its ctime, so it is hashed again and refused.
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    pinned["wasmPlugins"] = json!({"host-local": {"sha256": sha}});
    assert!(node.run("ADD", "k4", &pod, &bytes(&pinned)).ok());
    assert!(node.run("DEL", "k4", &pod, &bytes(&pinned)).ok());
    let last = b.len() - 1;
    b[last] = 0x02;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&module)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &b))
        .unwrap();
    let out = node.run("ADD", "k5", &pod, &bytes(&pinned));
    let msg = assert_cni_error(&out, 7);
    assert!(msg.contains("pins"), "{msg}");
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
    assert!(node.reservations("cluster").is_empty());
}

/// bridge + static, then tuning (reference, or wasm once installed).
/// Debian's reference tuning (v1.1.1) predates `txQLen`, so only the wasm
/// run sets it.
/// Each pod gets its own bridge: a Linux bridge takes the lowest MAC of its
/// ports, and reference bridge's CHECK fails once a second port changes it.
fn tuning_conf(node: &Node, bridge: &str, data: &std::path::Path, txqlen: Option<u32>) -> Value {
    let mut list = confs::bridge_static_tuning("storage", bridge, "10.3.0.10/24", "eth0");
    list["plugins"][1]["mac"] = json!("0a:58:0a:03:00:0a");
    if let Some(q) = txqlen {
        list["plugins"][1]["txQLen"] = json!(q);
    }
    list["plugins"][1]["allmulti"] = json!(true);
    list["plugins"][1]["dataDir"] = json!(data);
    node.with_wasm(confs::multus_delegates(
        &[list],
        &node.cni_dir(),
        &plugins(),
    ))
}

fn link_state(pod: &Pod) -> (Value, String) {
    let l = pod.ns.link("eth0").unwrap();
    let mut flags: Vec<String> = l["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    flags.sort();
    let sysctl = pod.sysctl("/proc/sys/net/ipv4/conf/eth0/arp_ignore");
    (
        json!({"mtu": l["mtu"], "mac": l["address"], "txqlen": l["txqlen"], "flags": flags}),
        sysctl,
    )
}

#[test]
fn wasm_tuning_matches_reference_tuning() {
    let node = Node::new();
    let (ref_pod, wasm_pod) = (Pod::new(), Pod::new());
    let (ref_data, wasm_data) = (
        node.dir.path().join("tuning-ref"),
        node.dir.path().join("tuning-wasm"),
    );
    let reference = bytes(&tuning_conf(&node, "stor0", &ref_data, None));
    let out_ref = node.run("ADD", "t-ref", &ref_pod, &reference);
    assert!(out_ref.ok(), "{} {}", out_ref.stdout, out_ref.stderr);
    node.install_wasm(&["tuning"]);
    let wasm = bytes(&tuning_conf(&node, "stor1", &wasm_data, Some(500)));
    let out_wasm = node.run("ADD", "t-wasm", &wasm_pod, &wasm);
    assert!(out_wasm.ok(), "{} {}", out_wasm.stdout, out_wasm.stderr);

    let (mut want, mut got) = (link_state(&ref_pod), link_state(&wasm_pod));
    assert_eq!(got.0["txqlen"], 500);
    want.0["txqlen"] = Value::Null;
    got.0["txqlen"] = Value::Null;
    assert_eq!(want, got);
    assert_eq!(got.0["mtu"], 1400);
    assert_eq!(got.0["mac"], "0a:58:0a:03:00:0a");
    assert!(got.0["flags"]
        .as_array()
        .unwrap()
        .contains(&json!("PROMISC")));
    assert_eq!(got.1, "1");
    let mac = |r: &Value| {
        r["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "eth0")
            .unwrap()["mac"]
            .clone()
    };
    assert_eq!(mac(&out_ref.json()), mac(&out_wasm.json()));
    assert_eq!(out_wasm.json()["ips"], out_ref.json()["ips"]);
    let state = |d: &std::path::Path| -> Vec<String> {
        multus_testbed::files_under(d)
            .into_iter()
            .filter(|f| f != "lock")
            .collect()
    };
    assert_eq!(
        state(&wasm_data),
        vec!["t-wasm_eth0.json"],
        "one backup for DEL"
    );

    let out = node.run("CHECK", "t-ref", &ref_pod, &reference);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let out = node.run("CHECK", "t-wasm", &wasm_pod, &wasm);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    // Drift is caught by CHECK, as by the reference.
    wasm_pod
        .ns
        .ip(&["link", "set", "eth0", "mtu", "1300"])
        .unwrap();
    let out = node.run("CHECK", "t-wasm", &wasm_pod, &wasm);
    let msg = assert_cni_error(&out, 999);
    assert!(msg.contains("MTU") && msg.contains("tuning"), "{msg}");

    // The reference pod is deleted by the wasm tuning now installed: it
    // finds and restores the reference's backup.
    for (cid, pod, conf) in [
        ("t-ref", &ref_pod, &reference),
        ("t-wasm", &wasm_pod, &wasm),
    ] {
        let out = node.run("DEL", cid, pod, conf);
        assert!(out.ok(), "{} {}", out.stdout, out.stderr);
        assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
    }
    assert!(state(&wasm_data).is_empty());
    assert!(
        state(&ref_data).is_empty(),
        "{:?}",
        multus_testbed::files_under(&ref_data)
    );
}

#[test]
fn wasm_tuning_del_after_the_pod_netns_is_gone() {
    let node = Node::new();
    node.install_wasm(&["tuning"]);
    let data = node.dir.path().join("tuning");
    let conf = bytes(&tuning_conf(&node, "stor0", &data, Some(500)));
    let pod = Pod::new();
    let out = node.run("ADD", "gone", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let path = pod.path.clone();
    drop(pod);
    let out = node.multus(&pod_env("DEL", "gone", &path), &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let left: Vec<String> = multus_testbed::files_under(&data)
        .into_iter()
        .filter(|f| f != "lock")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(node.cache_files().is_empty());
}

/// Debian's reference `static` and the wasm one (re-entered through its
/// shim, as a main plugin would exec it) on the same confs and arguments:
/// the same addresses, gateways, routes and DNS; the same failures (ours
/// code 7 for a bad config where the reference says 999); CHECK against a
/// `prevResult` as the reference does.
#[test]
fn wasm_static_matches_reference_static() {
    let node = Node::new();
    let (wasm, wasm_env) = ipam_shim(&node, "static");
    let conf = |version: &str, ipam: Value, extra: Value| {
        let mut c = json!({"cniVersion": version, "name": "st", "type": "bridge", "ipam": ipam});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let base = json!({"type": "static",
        "addresses": [{"address": "10.9.0.5/24", "gateway": "10.9.0.1"}, {"address": "fd00:9::5/64"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.99.0.0/16", "gw": "10.9.0.254"}],
        "dns": {"nameservers": ["10.9.0.53"], "domain": "example.org", "search": ["a.example.org"]}});
    let one_v4 = json!({"type": "static", "addresses": [{"address": "10.9.0.5/24"}]});
    let two_v4 = json!({"type": "static", "addresses": [{"address": "10.9.0.5/24"}, {"address": "10.9.5.5/24"}]});
    let cases: Vec<(&str, &str, Value)> = vec![
        ("plain", "", conf("1.0.0", base.clone(), json!({}))),
        (
            "IP= adds",
            "IgnoreUnknown=1;IP=10.9.1.7/24",
            conf("1.0.0", base.clone(), json!({})),
        ),
        (
            "IP= and GATEWAY=",
            "IgnoreUnknown=1;IP=10.9.1.7/24,fd00:1::7/64;GATEWAY=10.9.1.1,fd00:9::1",
            conf("1.0.0", base.clone(), json!({})),
        ),
        (
            "args.cni.ips replace",
            "IgnoreUnknown=1;IP=10.9.1.7/24",
            conf(
                "1.0.0",
                base.clone(),
                json!({"args": {"cni": {"ips": ["10.9.2.8/24"]}}}),
            ),
        ),
        (
            "runtimeConfig.ips win",
            "",
            conf(
                "1.0.0",
                base.clone(),
                json!({"args": {"cni": {"ips": ["10.9.2.8/24"]}}, "runtimeConfig": {"ips": ["10.9.3.9/24", "fd00:3::9/64"]}}),
            ),
        ),
        (
            "no ipam addresses",
            "",
            conf("1.0.0", json!({"type": "static"}), json!({})),
        ),
        (
            "0.2.0, one per family",
            "",
            conf("0.2.0", one_v4, json!({})),
        ),
        ("0.2.0, two v4", "", conf("0.2.0", two_v4, json!({}))),
        (
            "address without prefix",
            "",
            conf(
                "1.0.0",
                json!({"type": "static", "addresses": [{"address": "10.9.0.5"}]}),
                json!({}),
            ),
        ),
        (
            "IP= without prefix",
            "IgnoreUnknown=1;IP=10.9.1.7",
            conf("1.0.0", base.clone(), json!({})),
        ),
        (
            "args ips without prefix",
            "",
            conf(
                "1.0.0",
                base.clone(),
                json!({"args": {"cni": {"ips": ["10.9.2.8"]}}}),
            ),
        ),
        (
            "GATEWAY= not an IP",
            "IgnoreUnknown=1;GATEWAY=nope",
            conf("1.0.0", base.clone(), json!({})),
        ),
        (
            "no ipam",
            "",
            json!({"cniVersion": "1.0.0", "name": "st", "type": "bridge"}),
        ),
    ];
    let reference = plugins().join("static");
    for (name, args, c) in &cases {
        let r = ipam(&reference, &[], "ADD", "s1", "net1", args, c);
        let w = ipam(&wasm, &wasm_env, "ADD", "s1", "net1", args, c);
        assert_eq!(
            r.ok(),
            w.ok(),
            "{name}: reference {} / wasm {} {}",
            r.stdout,
            w.stdout,
            w.stderr
        );
        if r.ok() {
            for key in ["ips", "routes", "dns"] {
                // Go prints an unset `dns` as {}; multus leaves it out.
                let unset_is_empty = |v: &Value| match &v[key] {
                    Value::Null => json!({}),
                    other => other.clone(),
                };
                assert_eq!(
                    unset_is_empty(&r.json()),
                    unset_is_empty(&w.json()),
                    "{name}: {key}"
                );
            }
            // CHECK (0.4.0 and later) against the ADD's result passes on
            // both; DEL is a no-op.
            let mut with_prev = c.clone();
            with_prev["prevResult"] = r.json();
            let commands: &[&str] = if c["cniVersion"] == "1.0.0" {
                &["CHECK", "DEL"]
            } else {
                &["DEL"]
            };
            for &cmd in commands {
                let r2 = ipam(&reference, &[], cmd, "s1", "net1", args, &with_prev);
                let w2 = ipam(&wasm, &wasm_env, cmd, "s1", "net1", args, &with_prev);
                assert!(
                    r2.ok() && w2.ok(),
                    "{name} {cmd}: {} / {}",
                    r2.stdout,
                    w2.stdout
                );
            }
        } else {
            assert_eq!(w.json()["code"], 7, "{name}: {}", w.stdout);
        }
    }

    // CHECK: a prevResult with another gateway, or none at all, fails on
    // both. One without a configured address fails ours; the reference
    // passes it (it only compares the addresses it finds: docs/wasm-plugins.md).
    let c = conf("1.0.0", base.clone(), json!({}));
    let added = ipam(&reference, &[], "ADD", "s1", "net1", "", &c).json();
    let mut other_gw = added.clone();
    other_gw["ips"][0]["gateway"] = "10.9.0.2".into();
    let mut missing = added.clone();
    missing["ips"] = json!([added["ips"][1]]);
    for (name, prev) in [
        ("other gateway", Some(other_gw)),
        ("missing", Some(missing)),
        ("none", None),
    ] {
        let mut with_prev = c.clone();
        if let Some(p) = prev {
            with_prev["prevResult"] = p;
        }
        let r = ipam(&reference, &[], "CHECK", "s1", "net1", "", &with_prev);
        let w = ipam(&wasm, &wasm_env, "CHECK", "s1", "net1", "", &with_prev);
        assert_eq!(
            r.ok(),
            name == "missing",
            "reference CHECK {name}: {}",
            r.stdout
        );
        assert!(!w.ok(), "CHECK {name}: {}", w.stdout);
    }
}

/// A module built against WIT 0.1.0 (kept byte for byte in
/// `tests/fixtures/wit-0.1.0/`) loads and runs unchanged on this 0.1.1 host:
/// the same ADD, CHECK and DEL as today's tuning.
#[test]
fn tuning_built_against_wit_0_1_0_still_runs() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wit-0.1.0/tuning.wasm");
    let module = std::fs::read(&fixture).unwrap();
    let has = |s: &str| module.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(has("multus:plugin/netlink@0.1.0") && !has("@0.1.1"));

    let node = Node::new();
    node.install_wasm_file("tuning", &fixture);
    let data = node.dir.path().join("tuning");
    let conf = bytes(&tuning_conf(&node, "stor0", &data, Some(500)));
    let pod = Pod::new();
    let out = node.run("ADD", "t-old", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let (state, arp_ignore) = link_state(&pod);
    assert_eq!(state["mtu"], 1400);
    assert_eq!(state["txqlen"], 500);
    assert_eq!(state["mac"], "0a:58:0a:03:00:0a");
    assert_eq!(arp_ignore, "1");
    let out = node.run("CHECK", "t-old", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    let out = node.run("DEL", "t-old", &pod, &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
}
