//! Failed ADDs roll back completely; bad input gets a clear CNI error and
//! leaves nothing behind.

mod common;

use common::*;
use multus_testbed::confs;
use serde_json::{json, Value};

fn first_two(node: &Node) -> Vec<Value> {
    vec![
        confs::bridge_host_local("cluster", "cni0", "10.1.0.0/24", &node.data_dir()),
        confs::macvlan_host_local("mv", "uplink0", "10.2.0.0/24", &node.data_dir()),
    ]
}

fn assert_rolled_back(node: &Node, pod: &Pod) {
    assert_eq!(pod.ns.links().unwrap(), vec!["lo"]);
    assert!(
        node.reservations("cluster").is_empty(),
        "{:?}",
        node.reservations("cluster")
    );
    assert!(
        node.reservations("mv").is_empty(),
        "{:?}",
        node.reservations("mv")
    );
    assert!(node.cache_files().is_empty(), "{:?}", node.cache_files());
    assert!(node.veths().is_empty(), "{:?}", node.veths());
}

#[test]
fn third_delegate_missing_binary_rolls_back_the_first_two() {
    let node = Node::new();
    let pod = Pod::new();
    let mut delegates = first_two(&node);
    delegates.push(json!({"cniVersion": "1.0.0", "name": "ghost", "type": "no-such-plugin"}));
    let conf = confs::multus_delegates(&delegates, &node.cni_dir(), &plugins());
    let out = node.run("ADD", "r1", &pod, &bytes(&conf));
    let msg = assert_cni_error(&out, 7);
    assert!(
        msg.contains("no-such-plugin") && msg.contains("net2") && msg.contains("default/web"),
        "{msg}"
    );
    assert_rolled_back(&node, &pod);
}

#[test]
fn third_delegate_range_exhausted_rolls_back_the_first_two() {
    let node = Node::new();
    let pod = Pod::new();
    let mut delegates = first_two(&node);
    // A /30 has one usable address besides the gateway; another pod holds it.
    let full = node.data_dir().join("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("10.9.0.2"), "other\r\neth0").unwrap();
    let mut third = confs::bridge_host_local("full", "full0", "10.9.0.0/30", &node.data_dir());
    third["plugins"][0]["isDefaultGateway"] = json!(false);
    delegates.push(third);
    let conf = confs::multus_delegates(&delegates, &node.cni_dir(), &plugins());
    let out = node.run("ADD", "r2", &pod, &bytes(&conf));
    assert_eq!(out.status, Some(1), "{}", out.stdout);
    let msg = out.json()["msg"].as_str().unwrap().to_string();
    assert!(
        msg.contains("network \"full\"") && msg.contains("no IP addresses available"),
        "{msg}"
    );
    assert_rolled_back(&node, &pod);
    assert_eq!(
        node.reservations("full"),
        vec!["10.9.0.2"],
        "the other pod's reservation is untouched"
    );
}

/// One bad input: the env and stdin, the code, and a word the message must hold.
struct Case {
    what: &'static str,
    drop_var: Option<&'static str>,
    set: Option<(&'static str, &'static str)>,
    conf: Value,
    code: u64,
    names: &'static str,
}

#[test]
fn bad_input_gets_clear_errors_and_leaves_nothing() {
    let node = Node::new();
    let pod = Pod::new();
    let good = confs::multus_delegates(&first_two(&node), &node.cni_dir(), &plugins());
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let cases = vec![
        Case {
            what: "malformed JSON",
            drop_var: None,
            set: None,
            conf: Value::String("{\"cniVersion\":".into()),
            code: 6,
            names: "decode",
        },
        Case {
            what: "no CNI_CONTAINERID",
            drop_var: Some("CNI_CONTAINERID"),
            set: None,
            conf: good.clone(),
            code: 4,
            names: "CNI_CONTAINERID",
        },
        Case {
            what: "no CNI_NETNS",
            drop_var: Some("CNI_NETNS"),
            set: None,
            conf: good.clone(),
            code: 4,
            names: "CNI_NETNS",
        },
        Case {
            what: "no CNI_IFNAME",
            drop_var: Some("CNI_IFNAME"),
            set: None,
            conf: good.clone(),
            code: 4,
            names: "CNI_IFNAME",
        },
        Case {
            what: "ifname of 16 bytes",
            drop_var: None,
            set: Some(("CNI_IFNAME", "abcdefghijklmnop")),
            conf: good.clone(),
            code: 4,
            names: "CNI_IFNAME",
        },
        Case {
            what: "unsupported cniVersion",
            drop_var: None,
            set: None,
            conf: with("cniVersion", json!("0.9.9")),
            code: 1,
            names: "0.9.9",
        },
        Case {
            what: "delegate type with no binary",
            drop_var: None,
            set: None,
            conf: confs::multus_delegates(
                &[json!({"cniVersion":"1.0.0","name":"x","type":"nope-plugin"})],
                &node.cni_dir(),
                &plugins(),
            ),
            code: 7,
            names: "nope-plugin",
        },
        Case {
            what: "unreadable clusterNetwork",
            drop_var: None,
            set: None,
            conf: with("clusterNetwork", json!("/nonexistent/dir/net.conflist")),
            code: 7,
            names: "clusterNetwork",
        },
        Case {
            what: "delegate type escaping binDir",
            drop_var: None,
            set: None,
            conf: confs::multus_delegates(
                &[json!({"cniVersion":"1.0.0","name":"x","type":"../../bin/sh"})],
                &node.cni_dir(),
                &plugins(),
            ),
            code: 7,
            names: "type",
        },
    ];
    for c in cases {
        let mut env = pod_env("ADD", "bad", &pod.path);
        env.retain(|(k, _)| Some(*k) != c.drop_var);
        if let Some((k, v)) = c.set {
            env.iter_mut().find(|(n, _)| *n == k).unwrap().1 = v;
        }
        let stdin = match &c.conf {
            Value::String(raw) => raw.as_bytes().to_vec(),
            v => bytes(v),
        };
        let out = node.multus(&env, &stdin);
        assert_eq!(out.status, Some(1), "{}: {}", c.what, out.stdout);
        let e = out.json();
        assert_eq!(e["code"], c.code, "{}: {}", c.what, out.stdout);
        let msg = e["msg"].as_str().unwrap_or_default();
        assert!(
            msg.contains(c.names),
            "{}: message {msg:?} should name {:?}",
            c.what,
            c.names
        );
        assert_rolled_back(&node, &pod);
    }
}

/// Run by hand (no `CNI_COMMAND`), multus says what it is on stderr and
/// exits 0, as the reference plugins do; `-version` as upstream's.
#[test]
fn run_by_hand_it_says_what_it_is() {
    let node = Node::new();
    let pod = Pod::new();
    let conf = confs::multus_delegates(&first_two(&node), &node.cni_dir(), &plugins());
    let mut env = common::pod_env("ADD", "hand", &pod.path);
    env.retain(|(k, _)| *k != "CNI_COMMAND");
    let out = node.multus(&env, &bytes(&conf));
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("Multus CNI meta-plugin v"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "CNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(pod.ns.links().unwrap(), ["lo"]);
    assert!(node.cache_files().is_empty());

    for flag in ["-version", "--version"] {
        let out = std::process::Command::new(common::MULTUS)
            .arg(flag)
            .output()
            .unwrap();
        assert!(out.status.success());
        let line = String::from_utf8_lossy(&out.stdout);
        assert!(
            line.starts_with("multus-wasm version:v")
                && line.contains(&format!("wit:{}", multus_host_functions::WIT_PACKAGE)),
            "{line}"
        );
    }
}

/// An upstream key multus-wasm does not act on is named in the log with
/// what to do instead (it was accepted silently); the ADD still works.
#[test]
fn upstream_keys_not_implemented_are_named_in_the_log() {
    let node = Node::new();
    let pod = Pod::new();
    let mut conf = confs::multus_delegates(&first_two(&node)[..1], &node.cni_dir(), &plugins());
    conf["auxiliaryCNIChainName"] = json!("vrf-chain");
    conf["logOptions"] = json!({"maxAge": 5});
    conf["logLevel"] = json!("verbose");
    let out = node.run("ADD", "w1", &pod, &bytes(&conf));
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    for key in ["auxiliaryCNIChainName", "logOptions"] {
        assert!(
            out.stderr
                .contains(&format!("the multus conf sets \"{key}\"")),
            "{key}: {}",
            out.stderr
        );
    }
    assert!(node.run("DEL", "w1", &pod, &bytes(&conf)).ok());
    assert_rolled_back(&node, &pod);
}

/// The binary starts without Rust's own start (`multus::entry`), and keeps
/// what of it a plugin needs: a runtime that stopped reading gets an exit
/// status, not a process killed by SIGPIPE; a closed stdout is /dev/null.
#[test]
fn a_reader_gone_or_a_closed_stdout_is_survived() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let (read, write) = std::io::pipe().unwrap();
    drop(read);
    let status = std::process::Command::new(MULTUS)
        .env("CNI_COMMAND", "VERSION")
        .stdout(write)
        .status()
        .unwrap();
    assert_eq!(
        (status.signal(), status.code()),
        (None, Some(0)),
        "{status}"
    );
    let mut closed = std::process::Command::new(MULTUS);
    closed.env("CNI_COMMAND", "VERSION");
    // SAFETY: close(2) between fork and exec.
    unsafe {
        closed.pre_exec(|| {
            libc::close(1);
            Ok(())
        });
    }
    let status = closed.status().unwrap();
    assert_eq!(
        (status.signal(), status.code()),
        (None, Some(0)),
        "{status}"
    );
}
