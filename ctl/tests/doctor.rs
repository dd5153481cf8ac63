//! `multusctl doctor` on a fake host root: a healthy node gives no warning,
//! and each planted problem is found, with its level and a fix.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use multus::delegate::wasm::artifact::artifact_path;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const CACHE_DIR: &str = "var/lib/cni/multus/wasm-cache";

fn write(root: &Path, rel: &str, bytes: impl AsRef<[u8]>) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
}

fn jwt(exp: u64) -> String {
    let b = |v: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    };
    format!(
        "{}.{}.sig",
        b(json!({"alg": "RS256"})),
        b(json!({"exp": exp, "sub": "system:serviceaccount:kube-system:multus"}))
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn cache_entry(id: &str, netns: &str) -> Value {
    json!({"kind": "multusCacheV1", "containerId": id, "netns": netns, "ifName": "eth0",
        "cniVersion": "1.0.0", "complete": true, "delegates": []})
}

/// A thin install as the installer leaves it, one pod running.
fn healthy(root: &Path) {
    write(
        root,
        "etc/cni/net.d/10-kindnet.conflist",
        r#"{"cniVersion":"1.0.0","name":"kindnet","plugins":[{"type":"ptp","ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.0.0/24"}]]}}]}"#,
    );
    let conf = json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "plugins": [{
        "type": "multus", "clusterNetwork": "/etc/cni/net.d/10-kindnet.conflist",
        "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
        "wasmPlugins": {"host-local": {"sha256": module_sha()}}}]});
    write(root, "etc/cni/net.d/00-multus.conflist", conf.to_string());
    let kubeconfig = json!({"apiVersion": "v1", "kind": "Config", "current-context": "multus",
        "clusters": [{"name": "c", "cluster": {"server": "https://10.96.0.1:443"}}],
        "users": [{"name": "multus", "user": {"tokenFile": "/etc/cni/net.d/multus.d/token"}}],
        "contexts": [{"name": "multus", "context": {"cluster": "c", "user": "multus"}}]});
    write(
        root,
        "etc/cni/net.d/multus.d/multus.kubeconfig",
        kubeconfig.to_string(),
    );
    write(root, "etc/cni/net.d/multus.d/token", jwt(now() + 86400));
    for bin in ["multus", "multusctl"] {
        write(
            root,
            &format!("opt/cni/bin/{bin}"),
            format!("#!/bin/sh\n# {bin}\n"),
        );
        let p = root.join("opt/cni/bin").join(bin);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    write(root, "etc/cni/multus/plugins/host-local.wasm", MODULE);
    let artifact = artifact_path(&root.join(CACHE_DIR), &module_sha());
    write(
        root,
        artifact.strip_prefix(root).unwrap().to_str().unwrap(),
        "artifact",
    );
    write(root, "var/run/netns/pod1", "");
    write(
        root,
        "var/lib/cni/multus/c1",
        cache_entry("c1", "/var/run/netns/pod1").to_string(),
    );
    write(
        root,
        "var/lib/cni/networks/kindnet/10.244.0.5",
        "c1\r\neth0",
    );
    write(
        root,
        "var/lib/cni/networks/kindnet/last_reserved_ip.0",
        "10.244.0.5",
    );
}

const MODULE: &[u8] = b"\0asm not really";

fn module_sha() -> String {
    format!("{:x}", Sha256::digest(MODULE))
}

fn doctor(root: &Path, extra: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_multusctl"))
        .args(["doctor", "--json", "--host-root"])
        .arg(root)
        .args(extra)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report)
}

/// The findings of `check` at `level`, as "message | fix" lines.
fn found(report: &Value, check: &str, level: &str) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check && f["level"] == level)
        .map(|f| {
            format!(
                "{} | {}",
                f["message"].as_str().unwrap(),
                f["fix"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

fn has(report: &Value, check: &str, level: &str, words: &[&str]) {
    let all = found(report, check, level);
    assert!(
        all.iter().any(|f| words.iter().all(|w| f.contains(w))),
        "no {level} of {check} with {words:?} in {all:#?}\nreport: {report:#}"
    );
}

#[test]
fn a_healthy_node_has_nothing_to_report() {
    let d = tempfile::tempdir().unwrap();
    healthy(d.path());
    let (code, report) = doctor(d.path(), &[]);
    assert_eq!(
        (code, &report["errors"], &report["warnings"]),
        (0, &json!(0), &json!(0)),
        "{report:#}"
    );
    has(
        &report,
        "runtime conf",
        "ok",
        &["00-multus.conflist", "thin"],
    );
    has(&report, "cluster network", "ok", &["kindnet"]);
    has(
        &report,
        "wasm modules",
        "ok",
        &["host-local.wasm", "precompiled"],
    );
    has(&report, "kubeconfig", "ok", &["tokenFile", "valid for"]);
    has(
        &report,
        "ip reservations",
        "ok",
        &["1 host-local reservation"],
    );
    // The text form says the same, one line per finding.
    let out = Command::new(env!("CARGO_BIN_EXE_multusctl"))
        .args(["doctor", "--host-root"])
        .arg(d.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("0 errors, 0 warnings\n") && text.contains("ok   runtime conf: "),
        "{text}"
    );
}

#[test]
fn each_planted_problem_is_found_with_a_fix() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    healthy(root);
    // The module changed under its pin, and another has no artifact.
    write(
        root,
        "etc/cni/multus/plugins/host-local.wasm",
        b"\0asm swapped",
    );
    write(root, "etc/cni/multus/plugins/tuning.wasm", b"\0asm tuning");
    // The compiler is gone; the token expired.
    std::fs::remove_file(root.join("opt/cni/bin/multusctl")).unwrap();
    write(root, "etc/cni/net.d/multus.d/token", jwt(now() - 7200));
    // A pod gone without its DEL, a cut-short write, an unreadable cache.
    write(
        root,
        "var/lib/cni/multus/c2",
        cache_entry("c2", "/var/run/netns/gone").to_string(),
    );
    write(root, "var/lib/cni/multus/.c2.x7Yq", "{");
    write(root, "var/lib/cni/multus/c3", "{half");
    // An address held by a container multus never attached.
    write(
        root,
        "var/lib/cni/networks/kindnet/10.244.0.9",
        "c9\r\neth0",
    );
    let (code, report) = doctor(root, &[]);
    assert_eq!(code, 1, "{report:#}");
    has(
        &report,
        "wasm modules",
        "error",
        &["host-local.wasm", "pins", "every host-local call fails"],
    );
    has(
        &report,
        "wasm modules",
        "warning",
        &[
            "tuning.wasm",
            "no precompiled artifact",
            "multusctl plugin compile",
        ],
    );
    has(
        &report,
        "binaries",
        "error",
        &["/opt/cni/bin/multusctl", "cannot be compiled"],
    );
    has(&report, "kubeconfig", "error", &["expired", "Unauthorized"]);
    has(
        &report,
        "cache",
        "warning",
        &["container c2", "/var/run/netns/gone", "crictl pods --id c2"],
    );
    has(&report, "cache", "warning", &[".c2.x7Yq"]);
    has(&report, "cache", "error", &["container c3", "corrupt"]);
    has(
        &report,
        "ip reservations",
        "warning",
        &[
            "10.244.0.9",
            "c9",
            "remove /var/lib/cni/networks/kindnet/10.244.0.9",
        ],
    );
    assert!(found(&report, "ip reservations", "warning")
        .iter()
        .all(|f| !f.contains("10.244.0.5")));

    // The master gone: every ADD fails.
    std::fs::remove_file(root.join("etc/cni/net.d/10-kindnet.conflist")).unwrap();
    let (_, report) = doctor(root, &[]);
    has(
        &report,
        "cluster network",
        "error",
        &["10-kindnet.conflist", "does not resolve"],
    );

    // Another CNI's conf sorts first: the runtime never runs multus.
    write(
        root,
        "etc/cni/net.d/00-cilium.conflist",
        r#"{"cniVersion":"1.0.0","name":"cilium","plugins":[{"type":"cilium-cni"}]}"#,
    );
    let (code, report) = doctor(root, &[]);
    assert_eq!(code, 1);
    has(
        &report,
        "runtime conf",
        "error",
        &[
            "00-cilium.conflist",
            "cilium-cni",
            "sorts before multus's 00-multus.conflist",
        ],
    );
}

#[test]
fn binaries_are_compared_with_the_images() {
    let d = tempfile::tempdir().unwrap();
    healthy(d.path());
    let image = tempfile::tempdir().unwrap();
    std::fs::copy(
        d.path().join("opt/cni/bin/multus"),
        image.path().join("multus"),
    )
    .unwrap();
    std::fs::write(
        image.path().join("multusctl"),
        "#!/bin/sh\n# a newer multusctl\n",
    )
    .unwrap();
    let (code, report) = doctor(
        d.path(),
        &["--image-bin-dir", image.path().to_str().unwrap()],
    );
    assert_eq!(code, 0, "{report:#}");
    has(
        &report,
        "binaries",
        "ok",
        &["/opt/cni/bin/multus is this image's"],
    );
    has(
        &report,
        "binaries",
        "warning",
        &["/opt/cni/bin/multusctl", "is not this image's"],
    );
}

/// A daemon stand-in on the socket: `/healthz` 200, `/readyz` as given.
fn serve(socket: &Path, readyz: u16) {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&head).to_string();
            let code = if req.starts_with("GET /readyz") {
                readyz
            } else {
                200
            };
            let _ = write!(s, "HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n");
        }
    });
}

#[test]
fn thick_mode_asks_the_daemon() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    healthy(root);
    std::fs::remove_file(root.join("etc/cni/net.d/00-multus.conflist")).unwrap();
    let shim = json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim",
        // The daemon's path, as multus-daemon writes it in deploy/thick.
        "clusterNetwork": "/host/etc/cni/net.d/10-kindnet.conflist", "daemonSocketDir": "/run/multus/",
        "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig"});
    write(root, "etc/cni/net.d/00-multus.conf", shim.to_string());
    std::fs::copy(
        root.join("opt/cni/bin/multus"),
        root.join("opt/cni/bin/multus-shim"),
    )
    .unwrap();
    // No daemon: an error naming the socket.
    std::fs::create_dir_all(root.join("run/multus")).unwrap();
    let (code, report) = doctor(root, &[]);
    assert_eq!(code, 1, "{report:#}");
    has(&report, "runtime conf", "ok", &["thick"]);
    has(
        &report,
        "cluster network",
        "ok",
        &[
            "the daemon's path",
            "/etc/cni/net.d/10-kindnet.conflist",
            "kindnet",
        ],
    );
    has(
        &report,
        "daemon",
        "error",
        &["/run/multus/multus.sock", "no daemon answers"],
    );
    // A daemon that is stopping: healthy, not ready.
    serve(&root.join("run/multus/multus.sock"), 503);
    let (code, report) = doctor(root, &[]);
    assert_eq!(code, 0, "{report:#}");
    has(&report, "daemon", "warning", &["not ready (503)"]);
    // The shim's fallback for a DEL without the daemon needs the thin multus.
    std::fs::remove_file(root.join("opt/cni/bin/multus")).unwrap();
    let (_, report) = doctor(root, &[]);
    has(
        &report,
        "binaries",
        "error",
        &["/opt/cni/bin/multus ", "DEL while the daemon is down"],
    );
}

#[test]
fn bad_flags_name_themselves() {
    let out = Command::new(env!("CARGO_BIN_EXE_multusctl"))
        .args(["doctor", "--host-root", "/nonexistent/root"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--host-root /nonexistent/root"));
    let out = Command::new(env!("CARGO_BIN_EXE_multusctl"))
        .args(["doctor", "--cni-conf-dir", "etc/cni/net.d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cni-conf-dir"));
}
