//! The binaries the runtime execs and the wasm modules multus loads,
//! against what they should be: the image's binaries, each module's
//! `wasmPlugins.<type>.sha256` pin and the installer's record, and each
//! module's precompiled artifact.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use multus::delegate::wasm::artifact::artifact_path;

use super::runtime_conf::Ours;
use super::{Finding, Node};
use crate::install::binaries::{digest, SHIPPED};

const BINARIES: &str = "binaries";
const MODULES: &str = "wasm modules";

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn check_binaries(node: &Node, ours: Option<&Ours>, out: &mut Vec<Finding>) {
    let thick = ours.is_some_and(|o| o.daemon_socket_dir.is_some());
    let mut wanted = vec![if thick { "multus-shim" } else { "multus" }];
    // The shim's DEL runs the thin multus when the daemon is down, and
    // multus execs multusctl to compile a module found without an artifact.
    if thick {
        wanted.push("multus");
    }
    wanted.push("multusctl");
    let dir = node.host(&node.cni_bin_dir);
    for name in wanted {
        let shown = node.cni_bin_dir.join(name);
        let p = dir.join(name);
        if !executable(&p) {
            let why = match name {
                "multusctl" => {
                    "a module without an artifact cannot be compiled: its calls fail with code 7"
                }
                "multus" if thick => {
                    "a DEL while the daemon is down cannot run: the pod's interfaces and IPs leak"
                }
                _ => "the runtime cannot run multus: every pod fails",
            };
            out.push(Finding::error(
                BINARIES,
                format!("{} is missing or not executable: {why}", shown.display()),
                "let the installer copy it (restart the multus DaemonSet's pod on this node)",
            ));
            continue;
        }
        let Some(image) = &node.image_bin_dir else {
            out.push(Finding::ok(BINARIES, format!("{}", shown.display())));
            continue;
        };
        let source = image.join(name);
        match (digest(&p), digest(&source)) {
            (Ok(a), Ok(b)) if a == b => out.push(Finding::ok(
                BINARIES,
                format!("{} is this image's (sha256 {})", shown.display(), &a[..12]),
            )),
            (Ok(a), Ok(b)) => out.push(Finding::warning(
                BINARIES,
                format!(
                    "{} (sha256 {}) is not this image's {} ({})",
                    shown.display(),
                    &a[..12],
                    source.display(),
                    &b[..12]
                ),
                "the installer replaces it when its pod restarts; a node running two versions mixes their behaviour",
            )),
            (_, Err(e)) => out.push(Finding::warning(
                BINARIES,
                format!("cannot compare {} with the image's: {e}", shown.display()),
                "check --image-bin-dir",
            )),
            (Err(e), _) => out.push(Finding::error(
                BINARIES,
                e.to_string(),
                "check the file's permissions",
            )),
        }
    }
}

pub fn check_modules(node: &Node, ours: &Ours, out: &mut Vec<Finding>) {
    let wasm = &ours.conf.wasm;
    let dir = node.host(&wasm.plugin_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            out.push(Finding::ok(
                MODULES,
                format!(
                    "no {}: every delegate is a native plugin",
                    wasm.plugin_dir.display()
                ),
            ));
            return;
        }
        Err(e) => {
            out.push(Finding::error(
                MODULES,
                format!("cannot list {}: {e}", wasm.plugin_dir.display()),
                "multus cannot tell which delegates are modules: check the directory's permissions",
            ));
            return;
        }
    };
    let shipped: BTreeMap<String, String> = std::fs::read(dir.join(SHIPPED))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut modules: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wasm"))
        .collect();
    modules.sort();
    for name in &modules {
        let ty = name.trim_end_matches(".wasm");
        let shown = wasm.plugin_dir.join(name);
        let sha = match digest(&dir.join(name)) {
            Ok(s) => s,
            Err(e) => {
                out.push(Finding::error(
                    MODULES,
                    e.to_string(),
                    "check the file's permissions",
                ));
                continue;
            }
        };
        if let Some(pin) = wasm.plugins.get(ty).and_then(|s| s.sha256.as_deref()) {
            if !pin.eq_ignore_ascii_case(&sha) {
                out.push(Finding::error(
                    MODULES,
                    format!("{} has sha256 {sha}, but wasmPlugins.{ty}.sha256 pins {pin}: every {ty} call fails", shown.display()),
                    "put the pinned module back, or update the pin to the module you meant to install".to_string(),
                ));
                continue;
            }
        }
        if shipped.get(name).is_some_and(|s| s != &sha) {
            out.push(Finding::warning(
                MODULES,
                format!("{} changed since the installer placed it", shown.display()),
                "if that was not you, compare it with the image's copy; the installer no longer manages it",
            ));
        }
        if artifact_path(&node.host(&wasm.cache_dir), &sha).is_file() {
            out.push(Finding::ok(
                MODULES,
                format!("{} (sha256 {}) precompiled", shown.display(), &sha[..12]),
            ));
        } else {
            out.push(Finding::warning(
                MODULES,
                format!("{} has no precompiled artifact in {}: the first call compiles it (100-400 ms) while a pod waits", shown.display(), wasm.cache_dir.display()),
                format!(
                    "multusctl plugin compile --cache-dir {} --index-as {} {}",
                    wasm.cache_dir.display(),
                    shown.display(),
                    shown.display()
                ),
            ));
        }
    }
    for (ty, settings) in &wasm.plugins {
        if settings.sha256.is_some() && !modules.iter().any(|m| m == &format!("{ty}.wasm")) {
            out.push(Finding::warning(
                MODULES,
                format!("wasmPlugins.{ty} pins a module, but {} has no {ty}.wasm: {ty} runs as a native plugin", wasm.plugin_dir.display()),
                format!("install {ty}.wasm, or drop the pin"),
            ));
        }
    }
}
