//! A NAD author's configs, tried as an attacker would, one per escape of
//! issue 27, through the built `multus`: each is refused with a CNI error
//! naming the key (code 7), and nothing it named on the host was run,
//! read, created or linked; a DEL (the rollback a refused ADD would run)
//! does no more.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use multus_testbed::confs;
use multus_testbed::kube_api::FakeKubeApi;
use serde_json::{json, Value};

/// A script that, if anything ever execs it, leaves `marker` behind.
fn trap_script(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let script = dir.join(name);
    let marker = dir.join(format!("{name}.ran"));
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch {}\ncat >/dev/null\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (script, marker)
}

/// A multus conf whose only network is `net`, with the interface modules
/// granted the host netns (what makes their IPAM delegation reachable).
fn conf_of(node: &Node, net: Value, extra: Value) -> Vec<u8> {
    let mut conf = node.with_wasm(confs::multus_delegates(&[net], &node.cni_dir(), &plugins()));
    let granted = json!({"hostNetns": true});
    conf["wasmPlugins"] = json!({"macvlan": granted, "ptp": granted, "bridge": granted});
    for (k, v) in extra.as_object().unwrap() {
        conf[k] = v.clone();
    }
    bytes(&conf)
}

/// ADD refused with code 7 naming `key`, then DEL; the pod keeps only `lo`.
fn refused(node: &Node, conf: &[u8], key: &str) -> String {
    let pod = Pod::new();
    let out = node.run("ADD", "c1", &pod, conf);
    let msg = assert_cni_error(&out, 7);
    assert!(msg.contains(key), "the error names {key}: {msg}");
    node.run("DEL", "c1", &pod, conf);
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    msg
}

/// Case 1: An interface module's `ipam.type` naming a host binary, by absolute
/// or relative path, or a module and grants the author wrote elsewhere.
#[test]
fn ipam_type_never_names_a_binary_or_a_module_path() {
    let node = Node::new();
    node.install_wasm(&["macvlan", "ptp", "bridge"]);
    let (script, marker) = trap_script(node.dir.path(), "evil");
    // A module and grants beside the script, as in a pod's emptyDir.
    std::fs::copy(
        built_plugins().join("sandbox-probe.wasm"),
        script.with_extension("wasm"),
    )
    .unwrap();
    std::fs::write(
        script.with_extension("grants.json"),
        r#"{"hostNetns":true}"#,
    )
    .unwrap();
    let relative = format!("../../../../..{}", script.display());
    for (ty, extra) in [
        ("macvlan", json!({"master": "uplink0"})),
        ("ptp", json!({})),
        ("bridge", json!({"bridge": "br-hostile"})),
    ] {
        for ipam in [
            script.display().to_string(),
            relative.clone(),
            "/bin/sh".into(),
        ] {
            let mut net = json!({"cniVersion": "1.0.0", "name": "h", "type": ty,
                "ipam": {"type": ipam, "x": "$(touch /tmp/multus-hostile-ran)"}});
            for (k, v) in extra.as_object().unwrap() {
                net[k] = v.clone();
            }
            let msg = refused(&node, &conf_of(&node, net, json!({})), "ipam.type");
            assert!(msg.contains("not a plugin type"), "{msg}");
        }
    }
    assert!(!marker.exists(), "the host binary ran");
    assert!(!Path::new("/tmp/multus-hostile-ran").exists());
    assert!(node.ns.links().unwrap().iter().all(|l| l != "br-hostile"));
}

/// Case 2: A kubeconfig the config names: never one the admin did not allow,
/// and none read on a module's behalf runs a command.
#[test]
fn a_config_never_chooses_credentials() {
    let node = Node::new();
    node.install_wasm(&["whereabouts"]);
    let (script, marker) = trap_script(node.dir.path(), "exec-credential");
    let secret = node.dir.path().join("root-only-token");
    std::fs::write(&secret, "SECRET-TOKEN-CANARY").unwrap();
    let kubeconfig = |user: Value| {
        json!({"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": true}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x"})
    };
    let exec = node.dir.path().join("exec.kubeconfig");
    std::fs::write(
        &exec,
        kubeconfig(
            json!({"exec": {"apiVersion": "client.authentication.k8s.io/v1",
        "command": script, "interactiveMode": "Never"}}),
        )
        .to_string(),
    )
    .unwrap();
    let token = node.dir.path().join("token.kubeconfig");
    std::fs::write(&token, kubeconfig(json!({"tokenFile": secret})).to_string()).unwrap();
    let net = |kc: &Path| {
        json!({"cniVersion": "1.0.0", "name": "wa", "type": "bridge", "bridge": "br-wa",
            "ipam": {"type": "whereabouts", "range": "10.91.0.0/24",
                     "kubernetes": {"kubeconfig": kc}}})
    };
    node.install_wasm(&["bridge"]);
    for kc in [&exec, &token] {
        let msg = refused(
            &node,
            &conf_of(&node, net(kc), json!({})),
            "ipam.kubernetes.kubeconfig",
        );
        assert!(
            msg.contains("kubeconfigAllowlist") && !msg.contains("CANARY"),
            "{msg}"
        );
    }
    // Even allowlisted, an exec user is refused before any call.
    let allow = json!({"kubeconfigAllowlist": [node.dir.path()]});
    let msg = refused(
        &node,
        &conf_of(&node, net(&exec), allow),
        "ipam.kubernetes.kubeconfig",
    );
    assert!(msg.contains("runs a command"), "{msg}");
    assert!(!marker.exists(), "the exec credential plugin ran");
}

/// Case 3: A store directory outside the admin's roots, or redirected by a
/// symlink below one, is refused; nothing is created there.
#[test]
fn data_dir_only_beneath_the_store_roots() {
    let node = Node::new();
    node.install_wasm(&["host-local", "tuning"]);
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("etc-like");
    let list = |plugins: Value| json!({"cniVersion": "1.0.0", "name": "st", "plugins": plugins});
    let bridge = |ipam: Value| json!({"type": "bridge", "bridge": "br-st", "ipam": ipam});
    let range = json!([[{"subnet": "10.92.0.0/24"}]]);
    let msg = refused(
        &node,
        &conf_of(
            &node,
            list(json!([bridge(
                json!({"type": "host-local", "ranges": range, "dataDir": target})
            )])),
            json!({}),
        ),
        "ipam.dataDir",
    );
    assert!(msg.contains("storeRoots"), "{msg}");
    let msg = refused(
        &node,
        &conf_of(
            &node,
            list(
                json!([bridge(json!({"type": "host-local", "ranges": range, "dataDir": node.data_dir()})),
            {"type": "tuning", "dataDir": target}]),
            ),
            json!({}),
        ),
        "dataDir",
    );
    assert!(msg.contains("storeRoots"), "{msg}");
    // A symlink below the root, to another network's reservations.
    std::fs::create_dir_all(node.data_dir().join("other")).unwrap();
    std::fs::write(node.data_dir().join("other/10.92.0.9"), "victim\r\neth0").unwrap();
    std::fs::create_dir_all(node.dir.path().join("links")).unwrap();
    std::os::unix::fs::symlink(node.data_dir(), node.dir.path().join("links/ipam")).unwrap();
    let via_link = node.dir.path().join("links/ipam");
    // Refused when the store opens it: the path and the link named.
    let msg = refused(
        &node,
        &conf_of(
            &node,
            list(json!([bridge(
                json!({"type": "host-local", "ranges": range, "dataDir": via_link})
            )])),
            json!({}),
        ),
        "symlink",
    );
    assert!(msg.contains("links/ipam"), "{msg}");
    assert!(!target.exists(), "nothing created outside the roots");
    assert_eq!(node.reservations("other"), ["10.92.0.9"]);
    assert!(
        node.reservations("st").is_empty(),
        "the rolled-back ADD left no reservation"
    );
}

/// Case 4: A config-named file that is a FIFO, a device, huge, or outside the
/// admin's roots: refused at once, never read into memory or waited on.
#[test]
fn config_named_files_are_bounded() {
    let node = Node::new();
    node.install_wasm(&["whereabouts", "bridge"]);
    let roots = node.dir.path().join("whereabouts.d");
    std::fs::create_dir_all(&roots).unwrap();
    let fifo = roots.join("fifo.conf");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let huge = roots.join("huge.conf");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let root_only = node.dir.path().join("root-only.json");
    std::fs::write(
        &root_only,
        r#"{"range": "10.93.0.0/24", "SECRET": "CANARY"}"#,
    )
    .unwrap();
    let extra = json!({"configFileRoots": [roots]});
    let started = std::time::Instant::now();
    for (path, why) in [
        (fifo.display().to_string(), "not a regular file"),
        ("/dev/zero".into(), "configFileRoots"),
        (huge.display().to_string(), "larger than"),
        (root_only.display().to_string(), "configFileRoots"),
    ] {
        let net = json!({"cniVersion": "1.0.0", "name": "cf", "type": "bridge", "bridge": "br-cf",
            "ipam": {"type": "whereabouts", "configuration_path": path}});
        let msg = refused(
            &node,
            &conf_of(&node, net, extra.clone()),
            "ipam.configuration_path",
        );
        assert!(
            msg.contains(why) && !msg.contains("CANARY"),
            "{path}: {msg}"
        );
    }
    // Well inside any deadline: nothing waited on the FIFO.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

/// Case 5: A native plugin's `ipam.type` naming a path to a module: no shim
/// link is ever made outside the cache dir (nor inside, for a path).
#[test]
fn the_ipam_shim_links_only_plain_names() {
    let node = Node::new();
    node.install_wasm(&["host-local"]);
    let x = node.dir.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    std::fs::copy(built_plugins().join("host-local.wasm"), x.join("evil.wasm")).unwrap();
    let ty = format!("/../..{}", x.join("evil").display());
    let net = json!({"cniVersion": "1.0.0", "name": "sh", "type": "bridge", "bridge": "br-sh",
        "ipam": {"type": ty, "ranges": [[{"subnet": "10.94.0.0/24"}]], "dataDir": node.data_dir()}});
    refused(&node, &conf_of(&node, net, json!({})), "ipam.type");
    assert!(
        std::fs::symlink_metadata(x.join("evil")).is_err(),
        "no link at the config's path"
    );
}

/// Case 6: A config's own `prevResult` on the first plugin never reaches a
/// native plugin that echoes it (portmap), so the module after it is not
/// granted the links it names (`lo`).
#[test]
fn a_configs_prev_result_grants_nothing_through_a_native_plugin() {
    let node = Node::new();
    node.install_wasm(&["tuning"]);
    let pod = Pod::new();
    let key = "/proc/sys/net/ipv4/conf/lo/arp_ignore";
    let before = pod.sysctl(key);
    let forged = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "lo", "sandbox": pod.path}],
        "ips": [{"address": "10.95.0.5/24", "interface": 0}]});
    // Every spelling a Go plugin reads as prevResult (the second round of
    // attacks used `PrevResult` and `prevReſult`).
    for spelling in ["prevResult", "PrevResult", "prevresult", "prevRe\u{17f}ult"] {
        let mut first = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        first[spelling] = forged.clone();
        let net = json!({"cniVersion": "1.0.0", "name": "pr", "plugins": [
            first, {"type": "tuning", "sysctl": {"net.ipv4.conf.lo.arp_ignore": "2"}}]});
        let conf = conf_of(&node, net, json!({}));
        let out = node.run("ADD", "c1", &pod, &conf);
        // portmap without a prevResult fails the ADD, or passes an empty
        // one: either way tuning never gets `lo`.
        if !out.ok() {
            assert_cni_error(&out, out.json()["code"].as_u64().unwrap());
        }
        node.run("DEL", "c1", &pod, &conf);
        assert_eq!(
            pod.sysctl(key),
            before,
            "lo's sysctl changed through {spelling}"
        );
    }
}

/// The admin's `nadPluginTypes`: a NAD outside `systemNamespaces` naming
/// another type (its own or its IPAM's) is refused and nothing runs; a NAD
/// in a system namespace is not bound by it.
#[test]
fn nad_plugin_types_bound_user_namespaces_only() {
    let node = Node::new();
    node.install_wasm(&["macvlan", "static"]);
    let api = FakeKubeApi::start(&node.ns, "token-1").unwrap();
    std::fs::create_dir_all(node.conf_dir()).unwrap();
    let cluster = json!({"cniVersion": "1.0.0", "name": "cluster", "type": "macvlan", "master": "uplink0",
        "ipam": {"type": "static", "addresses": [{"address": "10.96.0.2/24"}]}});
    std::fs::write(node.conf_dir().join("10-cluster.conf"), bytes(&cluster)).unwrap();
    let nad = |ipam: &str| {
        json!({"cniVersion": "1.0.0", "name": "mv", "type": "macvlan", "master": "uplink0",
        "ipam": {"type": ipam, "addresses": [{"address": "10.97.0.5/24"}], "ranges": [[{"subnet": "10.97.0.0/24"}]],
                 "dataDir": node.data_dir()}}).to_string()
    };
    api.add_nad("team", "allowed", Some(&nad("static")), &[]);
    api.add_nad("team", "denied", Some(&nad("host-local")), &[]);
    api.add_nad("kube-system", "sys", Some(&nad("host-local")), &[]);
    let networks = "k8s.v1.cni.cncf.io/networks";
    api.add_pod("team", "ok", "uid-1", &[(networks, "allowed")], &[]);
    api.add_pod("team", "bad", "uid-2", &[(networks, "denied")], &[]);
    api.add_pod(
        "team",
        "sys",
        "uid-3",
        &[(networks, "kube-system/sys")],
        &[],
    );
    let mut conf = node.with_wasm(
        json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
        "kubeconfig": api.kubeconfig(), "clusterNetwork": "cluster", "confDir": node.conf_dir(),
        "cniDir": node.cni_dir(), "binDir": plugins(), "nadPluginTypes": ["macvlan", "static"]}),
    );
    conf["wasmPlugins"] = json!({"macvlan": {"hostNetns": true}});
    let conf = bytes(&conf);
    let run = |cmd: &str, pod: &Pod, name: &str, uid: &str| {
        let args =
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=team;K8S_POD_NAME={name};K8S_POD_UID={uid}");
        let env = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", name),
            ("CNI_NETNS", pod.path.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", args.as_str()),
            ("CNI_PATH", "/usr/lib/cni"),
        ];
        node.multus(&env, &conf)
    };
    let ok = Pod::new();
    let out = run("ADD", &ok, "ok", "uid-1");
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(ok.ns.addrs("net1").unwrap(), ["10.97.0.5/24"]);
    run("DEL", &ok, "ok", "uid-1");
    let bad = Pod::new();
    let out = run("ADD", &bad, "bad", "uid-2");
    let msg = assert_cni_error(&out, 7);
    assert!(
        msg.contains("nadPluginTypes") && msg.contains("host-local") && msg.contains("team/denied"),
        "{msg}"
    );
    assert_eq!(
        bad.ns.links().unwrap(),
        ["lo"],
        "nothing ran, not even the cluster network"
    );
    assert!(node.reservations("mv").is_empty());
    let sys = Pod::new();
    let out = run("ADD", &sys, "sys", "uid-3");
    assert!(
        out.ok(),
        "a system namespace's NAD is the admin's: {} {}",
        out.stdout,
        out.stderr
    );
    run("DEL", &sys, "sys", "uid-3");
}

/// Found by attacking the boundary: a delegate of type `multus` would run
/// multus again with a conf of the NAD's choosing (its `binDir`, grants,
/// roots); a NAD with no `spec.config` named after multus's own conf would
/// make it recurse; a key differing only in case (`IPAM`) is what a Go
/// plugin would act on; a store in multus's own cache dir would forge
/// another type's artifact index or the DEL cache.
#[test]
fn multus_never_delegates_to_itself_nor_stores_in_its_own_dirs() {
    let node = Node::new();
    node.install_wasm(&["tuning"]);
    let (script, marker) = trap_script(node.dir.path(), "payload");
    let bin = script.parent().unwrap();
    let own = json!({"cniVersion": "1.0.0", "name": "pwn", "type": "multus", "binDir": bin,
        "cniDir": node.dir.path().join("pwn"), "delegates": [{"cniVersion": "1.0.0", "name": "x", "type": "payload"}]});
    let msg = refused(&node, &conf_of(&node, own, json!({})), "type");
    assert!(msg.contains("never delegates to itself"), "{msg}");
    let case = json!({"cniVersion": "1.0.0", "name": "ci", "type": "bridge", "bridge": "br-ci",
        "ipam": {"type": "static", "addresses": [{"address": "10.98.0.2/24"}]}, "IPAM": {"type": "payload"}});
    let msg = refused(&node, &conf_of(&node, case, json!({})), "IPAM");
    assert!(msg.contains("only in case"), "{msg}");
    for dir in [node.wasm_cache(), node.cni_dir()] {
        let list = json!({"cniVersion": "1.0.0", "name": "own", "plugins": [
            {"type": "bridge", "bridge": "br-own", "ipam": {"type": "host-local",
                "ranges": [[{"subnet": "10.99.0.0/24"}]], "dataDir": node.data_dir()}},
            {"type": "tuning", "dataDir": dir}]});
        let msg = refused(&node, &conf_of(&node, list, json!({})), "dataDir");
        assert!(msg.contains("multus's own"), "{msg}");
    }
    assert!(!marker.exists(), "the payload ran");

    // A NAD without spec.config named after multus's own network.
    let api = FakeKubeApi::start(&node.ns, "token-1").unwrap();
    std::fs::create_dir_all(node.conf_dir()).unwrap();
    let multus_conf = node.with_wasm(json!({"cniVersion": "1.0.0", "name": "multus-cni-network",
        "type": "multus", "kubeconfig": api.kubeconfig(), "clusterNetwork": "cluster",
        "confDir": node.conf_dir(), "cniDir": node.cni_dir(), "binDir": plugins()}));
    std::fs::write(node.conf_dir().join("00-multus.conf"), bytes(&multus_conf)).unwrap();
    let cluster = confs::bridge_host_local("cluster", "cni0", "10.100.0.0/24", &node.data_dir());
    std::fs::write(node.conf_dir().join("10-cluster.conflist"), bytes(&cluster)).unwrap();
    api.add_nad("default", "multus-cni-network", None, &[]);
    api.add_pod(
        "default",
        "web",
        "uid-1",
        &[("k8s.v1.cni.cncf.io/networks", "multus-cni-network")],
        &[],
    );
    let pod = Pod::new();
    let out = node.run("ADD", "c1", &pod, &bytes(&multus_conf));
    let msg = assert_cni_error(&out, 7);
    assert!(
        msg.contains("multus-cni-network") && msg.contains("not found"),
        "{msg}"
    );
    node.run("DEL", "c1", &pod, &bytes(&multus_conf));
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
}

/// A NAD's values are quoted by their head in the error that refuses them,
/// and any error is printed at most 4 KiB of message (a native delegate
/// may echo a value whole): the kubelet makes it an event on every retry
/// of the sandbox. Before, a 100 KB value came back whole, or twice.
#[test]
fn a_huge_value_makes_a_small_error() {
    let node = Node::new();
    node.install_wasm(&["host-local"]);
    let big = "a".repeat(100_000);
    let bridge = json!({"type": "bridge", "bridge": "br-hv", "ipam": {"type": "static",
        "addresses": [{"address": "10.97.0.2/24"}]}});
    let list = |name: &str, plugins: Value| json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins});
    let mut cases = vec![
        (list(&big, json!([bridge])), 7, "network name"),
        (list(&format!("{big}/"), json!([bridge])), 7, "network name"),
        (
            json!({"cniVersion": big, "name": "hv", "type": "bridge"}),
            1,
            "incompatible CNI version",
        ),
        (
            json!({"cniVersion": "1.0.0", "name": "hv", "plugins": big}),
            7,
            "plugins",
        ),
        (list("hv", json!(vec![bridge.clone(); 65])), 7, "at most 64"),
        (
            json!({"cniVersion": "1.0.0", "name": "hv", "type": "bridge", "disableCheck": big}),
            7,
            "disableCheck",
        ),
        (
            list(
                "hv",
                json!([{"type": "bridge", "bridge": "br-hv", "ipam": {"type": "host-local",
            "ranges": [[{"subnet": "10.97.0.0/24"}]], "dataDir": format!("/{big}")}}]),
            ),
            7,
            "dataDir",
        ),
    ];
    // The reference macvlan quotes its master whole: bounded at the edge.
    let echo = list(
        "hv",
        json!([{"type": "macvlan", "master": big, "ipam": {"type": "static",
        "addresses": [{"address": "10.97.0.3/24"}]}}]),
    );
    cases.push((echo, 0, "plugin \"macvlan\" ADD"));
    // Each a NAD the pod selects, after the admin's cluster network.
    let api = FakeKubeApi::start(&node.ns, "token-1").unwrap();
    std::fs::create_dir_all(node.conf_dir()).unwrap();
    let cluster = confs::bridge_host_local("cluster", "cni0", "10.96.0.0/24", &node.data_dir());
    std::fs::write(node.conf_dir().join("10-cluster.conflist"), bytes(&cluster)).unwrap();
    let conf = bytes(
        &node.with_wasm(json!({"cniVersion": "1.0.0", "name": "multus-cni-network",
        "type": "multus", "kubeconfig": api.kubeconfig(), "clusterNetwork": "cluster",
        "confDir": node.conf_dir(), "cniDir": node.cni_dir(), "binDir": plugins()})),
    );
    api.add_pod(
        "default",
        "web",
        "uid-1",
        &[("k8s.v1.cni.cncf.io/networks", "hv")],
        &[],
    );
    for (net, code, names) in cases {
        let pod = Pod::new();
        api.add_nad("default", "hv", Some(&net.to_string()), &[]);
        let out = node.run("ADD", "c1", &pod, &conf);
        assert_eq!(
            out.status,
            Some(1),
            "{names}: {}",
            &out.stdout[..out.stdout.len().min(300)]
        );
        let e = out.json();
        if code != 0 {
            assert_eq!(e["code"], code, "{names}");
            assert!(
                out.stdout.len() < 1024,
                "{names}: {} bytes",
                out.stdout.len()
            );
        } else {
            assert!(
                out.stdout.len() < 4096 + 512,
                "{names}: {} bytes",
                out.stdout.len()
            );
        }
        let msg = e["msg"].as_str().unwrap();
        assert!(msg.contains(names), "{names}: {msg}");
        assert!(
            out.stderr.len() < 16 * 1024,
            "{names}: a log of {} bytes",
            out.stderr.len()
        );
        node.run("DEL", "c1", &pod, &conf);
        assert_eq!(pod.ns.links().unwrap(), ["lo"], "{names}");
    }
    // The pod's networks together: four NADs of 64 plugins each and the
    // cluster network's, over the 256 a pod's ADD may chain; none runs.
    let chain = list("hv", json!(vec![json!({"type": "tuning"}); 64]));
    api.add_nad("default", "hv", Some(&chain.to_string()), &[]);
    api.add_pod(
        "default",
        "web",
        "uid-1",
        &[("k8s.v1.cni.cncf.io/networks", "hv,hv,hv,hv")],
        &[],
    );
    let pod = Pod::new();
    let out = node.run("ADD", "c1", &pod, &conf);
    let msg = assert_cni_error(&out, 7);
    assert!(msg.contains("257 plugins, at most 256"), "{msg}");
    assert_eq!(pod.ns.links().unwrap(), ["lo"], "nothing ran");
    node.run("DEL", "c1", &pod, &conf);
}
