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
        ("route-override", "chained"),
        ("tuning", "chained"),
        ("legacy-networks", "annotation-mapper"),
        ("label-networks", "annotation-mapper"),
    ] {
        let path = built_plugins().join(format!("{name}.wasm"));
        let (code, out, err) = inspect(&path, true);
        assert_eq!(code, 0, "{name}: {err}");
        let r: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["world"], world, "{name}");
        assert_eq!(r["package"], "multus:plugin@0.1.0", "{name}");
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
