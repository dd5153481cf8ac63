//! `multusctl plugin inspect` on every shipped plugin, a hostile module and
//! a file that is no component.

use std::process::Command;

use multus_testbed::node::built_plugins;
use serde_json::Value;

const MULTUSCTL: &str = env!("CARGO_BIN_EXE_multusctl");

fn inspect(module: &std::path::Path, json: bool) -> (i32, String, String) {
    let mut c = Command::new(MULTUSCTL);
    c.args(["plugin", "inspect"]).arg(module);
    if json {
        c.arg("--json");
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shipped_plugins_are_accepted_in_their_world() {
    for (name, world) in [
        ("host-local", "ipam"),
        ("static", "ipam"),
        ("whereabouts", "cluster-ipam"),
        ("macvlan", "interface-plugin"),
        ("ptp", "interface-plugin"),
        ("bridge", "interface-plugin"),
        ("route-override", "chained"),
        ("sbr", "chained"),
        ("tuning", "chained"),
        ("legacy-networks", "annotation-mapper"),
        ("label-networks", "annotation-mapper"),
    ] {
        let path = built_plugins().join(format!("{name}.wasm"));
        let (code, out, err) = inspect(&path, true);
        assert_eq!(code, 0, "{name}: {err}");
        let r: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["world"], world, "{name}");
        assert_eq!(r["package"], multus_host_functions::WIT_PACKAGE, "{name}");
        assert_eq!(r["size"], std::fs::metadata(&path).unwrap().len());
        assert_eq!(r["sha256"].as_str().unwrap().len(), 64);
        let accepted: Vec<&str> = r["roles"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["accepted"] == true)
            .map(|v| v["role"].as_str().unwrap())
            .collect();
        match world {
            "ipam" => assert_eq!(accepted, ["ipam", "chained"], "{name}"),
            // cluster calls are for IPAM only.
            "cluster-ipam" => assert_eq!(accepted, ["ipam"], "{name}"),
            "interface-plugin" => assert_eq!(accepted, ["chained"], "{name}"),
            other => assert_eq!(accepted, [other], "{name}"),
        }
        let (code, text, _) = inspect(&path, false);
        assert_eq!(code, 0);
        assert!(text.contains(&format!("world     {world}")), "{text}");
    }
}

#[test]
fn a_module_that_reads_files_is_refused_in_every_role() {
    let (code, out, _) = inspect(&built_plugins().join("sandbox-fs.wasm"), false);
    assert_eq!(code, 1, "{out}");
    for role in ["ipam", "chained", "annotation-mapper"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("role      {role}:")))
            .unwrap();
        assert!(
            line.contains("refused") && line.contains("wasi:filesystem/"),
            "{line}"
        );
    }
}

#[test]
fn a_file_that_is_no_component_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let (code, out, err) = inspect(&junk, false);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(
        err.contains(&junk.display().to_string()) && err.contains("not a valid component"),
        "{err}"
    );
    let (code, _, err) = inspect(&dir.path().join("missing.wasm"), true);
    assert_eq!(code, 2);
    assert!(err.contains("missing.wasm"), "{err}");
}

fn write_json(dir: &std::path::Path, name: &str, v: &Value) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p
}

fn plugin_run(module: &str, args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(MULTUSCTL)
        .args(["plugin", "run"])
        .arg(built_plugins().join(format!("{module}.wasm")))
        .arg("--store-root")
        .arg(std::env::temp_dir())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A tuning conf (mtu 1400, a sysctl on net1, its backups under `dir`) and
/// a previous result naming net1 in `sandbox`.
fn tuning_files(
    dir: &std::path::Path,
    sandbox: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    use serde_json::json;
    let conf = write_json(
        dir,
        "tuning.json",
        &json!({"cniVersion": "1.0.0", "name": "t", "type": "tuning", "mtu": 1400,
                "sysctl": {"net.ipv4.conf.net1.arp_ignore": "1"}, "dataDir": dir.join("tuning")}),
    );
    let prev = write_json(
        dir,
        "prev.json",
        &json!({"cniVersion": "1.0.0",
                "interfaces": [{"name": "net1", "mac": "02:00:00:00:00:09", "sandbox": sandbox}],
                "ips": [{"address": "10.9.0.5/24", "interface": 0}]}),
    );
    (conf, prev)
}

/// tuning on net1 with `conf` and `prev`, then `mode`'s flags.
fn tuning_on_net1(
    conf: &std::path::Path,
    prev: &std::path::Path,
    mode: &[&std::ffi::OsStr],
) -> (i32, String, String) {
    on_net1("tuning", conf, prev, mode)
}

/// `module` on net1 with `conf` and `prev`, then `mode`'s flags.
fn on_net1(
    module: &str,
    conf: &std::path::Path,
    prev: &std::path::Path,
    mode: &[&std::ffi::OsStr],
) -> (i32, String, String) {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--conf".as_ref(),
        conf.as_os_str(),
        "--prev-result".as_ref(),
        prev.as_os_str(),
        "--ifname".as_ref(),
        "net1".as_ref(),
    ];
    args.extend_from_slice(mode);
    plugin_run(module, &args)
}

/// The root netns's links, addresses and routes.
fn host_network() -> String {
    ["link", "addr", "route"]
        .iter()
        .map(|what| {
            let out = Command::new("ip").args(["-o", what]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect()
}

/// `--dry-run` prints every host call with its arguments and the result,
/// and changes nothing: no file in the IPAM's data dir, the same links,
/// addresses and routes.
#[test]
fn dry_run_prints_the_calls_and_changes_nothing() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ipam");
    let hl = write_json(
        dir.path(),
        "hl.json",
        &json!({"cniVersion": "1.0.0", "name": "hl", "type": "bridge",
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.77.0.0/24"}]], "dataDir": data}}),
    );
    let before = host_network();
    let (code, out, err) = plugin_run(
        "host-local",
        &["--conf".as_ref(), hl.as_os_str(), "--dry-run".as_ref()],
    );
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        out.contains("store: insert 10.77.0.2=\"plugin-run\\r\\neth0\""),
        "{out}"
    );
    assert!(
        out.contains("store: put last_reserved_ip.0=\"10.77.0.2\""),
        "{out}"
    );
    let result: Value =
        serde_json::from_str(out.lines().last().unwrap().strip_prefix("ADD: ").unwrap()).unwrap();
    assert_eq!(result["ips"][0]["address"], "10.77.0.2/24");
    assert!(!data.exists(), "the dry run wrote to the data dir");

    let (tuning, prev) = tuning_files(dir.path(), std::path::Path::new("/run/netns/p"));
    let (code, out, err) = tuning_on_net1(&tuning, &prev, &["--dry-run".as_ref()]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        out.contains("netlink: link-set Container net1") && out.contains("mtu: Some(1400)"),
        "{out}"
    );
    assert!(
        out.contains("sysctl: set net.ipv4.conf.net1.arp_ignore=1"),
        "{out}"
    );
    assert_eq!(
        host_network(),
        before,
        "the dry run changed the host's network"
    );

    // The sandbox still applies: a link the call was not granted.
    let (code, out, _) = plugin_run(
        "tuning",
        &[
            "--conf".as_ref(),
            tuning.as_os_str(),
            "--ifname".as_ref(),
            "net9".as_ref(),
            "--dry-run".as_ref(),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error:"), "{out}");

    // Neither --dry-run nor --netns: refused, naming both.
    let (code, _, err) = plugin_run("host-local", &["--conf".as_ref(), hl.as_os_str()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--dry-run") && err.contains("--netns"),
        "{err}"
    );
}

/// With `--netns` the plugin runs for real there.
#[test]
fn run_for_real_in_a_netns() {
    let ns = multus_testbed::Netns::new("t-run").unwrap();
    ns.ip(&[
        "link", "add", "net1", "type", "veth", "peer", "name", "net1p",
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (tuning, prev) = tuning_files(dir.path(), &ns.path());
    let (code, out, err) =
        tuning_on_net1(&tuning, &prev, &["--netns".as_ref(), ns.path().as_os_str()]);
    assert_eq!(code, 0, "{out} {err}");
    let link = ns.ip(&["link", "show", "net1"]).unwrap();
    assert!(link.contains("mtu 1400"), "{link}");
}

/// sbr run on its own in a netns: ADD moves net1's routes into table 100
/// behind a rule; its own DEL (here without the interface plugin's, which
/// would take the link and its routes along) leaves no rule and no table
/// route, while net1 stays up. `--dry-run` of the same ADD prints the
/// routing calls and changes nothing.
#[test]
fn sbr_del_clears_its_rules_and_table_routes() {
    use serde_json::json;
    let ns = multus_testbed::Netns::new("t-sbr").unwrap();
    for args in [
        &[
            "link", "add", "net1", "type", "veth", "peer", "name", "net1p",
        ][..],
        &["addr", "add", "10.60.0.5/24", "dev", "net1"],
        // No IPv6 link-local addresses: their local routes appear some
        // time after the links come up, between the tables compared below.
        &["link", "set", "net1", "addrgenmode", "none"],
        &["link", "set", "net1p", "addrgenmode", "none"],
        &["link", "set", "net1", "up"],
        &["link", "set", "net1p", "up"],
        &[
            "route",
            "add",
            "10.61.0.0/16",
            "via",
            "10.60.0.1",
            "dev",
            "net1",
        ],
    ] {
        ns.ip(args).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = write_json(
        dir.path(),
        "sbr.json",
        &json!({"cniVersion": "1.0.0", "name": "s", "type": "sbr"}),
    );
    let prev = write_json(
        dir.path(),
        "prev.json",
        &json!({"cniVersion": "1.0.0",
                "interfaces": [{"name": "net1", "sandbox": ns.path()}],
                "ips": [{"address": "10.60.0.5/24", "gateway": "10.60.0.1", "interface": 0}]}),
    );
    let run = |command: &str, mode: &[&std::ffi::OsStr]| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["--command".as_ref(), command.as_ref()];
        args.extend_from_slice(mode);
        on_net1("sbr", &conf, &prev, &args)
    };
    let rules = || ns.ip(&["rule", "show"]).unwrap();
    let fresh = (rules(), ns.ip(&["route", "show", "table", "all"]).unwrap());

    let (code, out, err) = run("ADD", &["--dry-run".as_ref()]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        out.contains("routing: rule-add Container from 10.60.0.5/32 lookup 100"),
        "{out}"
    );
    assert!(
        out.contains("routing: route-add Container net1 0.0.0.0/0 via 10.60.0.1 table 100"),
        "{out}"
    );
    assert_eq!(
        (rules(), ns.ip(&["route", "show", "table", "all"]).unwrap()),
        fresh
    );

    let path = ns.path();
    let netns: [&std::ffi::OsStr; 2] = ["--netns".as_ref(), path.as_os_str()];
    let (code, out, err) = run("ADD", &netns);
    assert_eq!(code, 0, "{out} {err}");
    assert!(rules().contains("from 10.60.0.5 lookup 100"), "{}", rules());
    let t100 = ns.ip(&["route", "show", "table", "100"]).unwrap();
    assert!(t100.contains("default via 10.60.0.1 dev net1"), "{t100}");
    assert!(
        t100.contains("10.61.0.0/16 via 10.60.0.1 dev net1"),
        "{t100}"
    );
    assert!(!ns.ip(&["route", "show"]).unwrap().contains("net1"));

    let (code, out, err) = run("DEL", &netns);
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(rules(), fresh.0);
    let left: String = ["-4", "-6"]
        .iter()
        .map(|f| {
            ns.ip(&[f, "route", "show", "table", "100"])
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(left, "", "table 100 is empty");
    assert!(ns.ip(&["link", "show", "net1"]).unwrap().contains("UP"));
    // A second DEL finds nothing to do and succeeds.
    let (code, out, err) = run("DEL", &netns);
    assert_eq!(code, 0, "{out} {err}");
}

/// An interface plugin's dry run: the macvlan it would create and, through
/// the host, its wasm IPAM's own store calls; with the grant it needs, and
/// refused without.
#[test]
fn macvlan_dry_run_shows_the_link_and_its_ipam() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let conf = write_json(
        dir.path(),
        "mv.json",
        &json!({"cniVersion": "1.0.0", "name": "mv", "type": "macvlan", "master": "uplink0",
                "dataDir": dir.path().join("state"),
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.66.0.0/24"}]],
                         "dataDir": dir.path().join("ipam")}}),
    );
    let before = host_network();
    let args = |extra: &[&str]| -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["--conf".into(), conf.clone().into_os_string()];
        a.extend(["--ifname", "net1", "--dry-run"].iter().map(Into::into));
        a.extend(extra.iter().map(Into::into));
        a
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        let refs: Vec<&std::ffi::OsStr> = a.iter().map(|s| s.as_os_str()).collect();
        plugin_run("macvlan", &refs)
    };
    let (code, out, err) = run(&["--host-netns"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("links: macvlan-add uplink0 Bridge"), "{out}");
    assert!(out.contains("store: insert 10.66.0.2="), "{out}");
    assert!(
        out.contains("netlink: addr-add Container net1 10.66.0.2/24"),
        "{out}"
    );
    assert_eq!(host_network(), before);
    assert!(!dir.path().join("ipam").exists());
    assert!(
        !dir.path().join("state").exists(),
        "nothing written beside the store"
    );
    let (code, out, _) = run(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("hostNetns"), "{out}");
}

/// The bridge's dry run with the VLAN keys this machine's kernel cannot
/// run (it has no bridge VLAN filtering): the filtering bridge and the
/// trunk port as the calls the host would make, the default VLAN dropped.
#[test]
fn bridge_dry_run_shows_the_bridge_and_its_vlan_port() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let conf = write_json(
        dir.path(),
        "br.json",
        &json!({"cniVersion": "1.0.0", "name": "br", "type": "bridge", "bridge": "br-trunk",
                "mtu": 9000, "preserveDefaultVlan": false,
                "vlanTrunk": [{"minID": 200, "maxID": 202}, {"id": 300}],
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.67.0.0/24"}]],
                         "dataDir": dir.path().join("ipam")}}),
    );
    let before = host_network();
    let (code, out, err) = plugin_run(
        "bridge",
        &[
            "--conf".as_ref(),
            conf.as_os_str(),
            "--ifname".as_ref(),
            "net1".as_ref(),
            "--host-netns".as_ref(),
            "--dry-run".as_ref(),
        ],
    );
    assert_eq!(code, 0, "{out} {err}");
    for want in [
        "links: bridge-ensure br-trunk mtu Some(9000) promisc false vlan-filtering true",
        "links: veth-add net1 peer veth",
        "drop-default-vlans true access None trunk [200, 201, 202, 300]",
        "netlink: addr-add Container net1 10.67.0.2/24",
    ] {
        assert!(out.contains(want), "{want:?} in {out}");
    }
    assert_eq!(host_network(), before);
    assert!(!dir.path().join("ipam").exists());
}

/// `plugin new` for each world: the crate builds for wasm32-wasip2 as it
/// comes, and does what its README says under `plugin run --dry-run` (or,
/// for a mapper, `inspect`).
#[test]
fn new_plugins_build_and_run() {
    let dir = tempfile::tempdir().unwrap();
    // Shared between runs, so only the first compiles the SDK's deps.
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm-new");
    let new = |name: &str, world: &str| {
        Command::new(MULTUSCTL)
            .args(["plugin", "new", name, "--world", world, "--dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    for (name, world) in [
        ("my-ipam", "ipam"),
        ("my-chained", "chained"),
        ("my-mapper", "annotation-mapper"),
    ] {
        let out = new(name, world);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let root = dir.path().join(name);
        let build = Command::new("cargo")
            .args(["build", "--release", "--quiet"])
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(
            build.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&build.stderr)
        );
        let module = target.join(format!(
            "wasm32-wasip2/release/{}.wasm",
            name.replace('-', "_")
        ));
        let (code, out, err) = inspect(&module, true);
        assert_eq!(code, 0, "{err}");
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["world"], world);
        let run = |extra: &[&str]| {
            let out = Command::new(MULTUSCTL)
                .args(["plugin", "run"])
                .arg(&module)
                .args(["--conf", "example.json", "--dry-run"])
                .args(extra)
                .current_dir(&root)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        match world {
            "ipam" => assert!(run(&[]).contains("10.10.0.5/24")),
            "chained" => assert!(
                run(&["--prev-result", "example-prev.json", "--ifname", "net1"])
                    .contains("mtu: Some(1400)")
            ),
            _ => {}
        }
    }
    // An existing directory is never touched; a bad name is refused.
    let again = new("my-ipam", "ipam");
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = new("My_Plugin", "ipam");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("NAME"));
    assert!(!dir.path().join("My_Plugin").exists());
}
