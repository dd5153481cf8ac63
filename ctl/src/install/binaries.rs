//! The `multus` binary (and `multusctl`, its compiler; `multus-shim` in
//! thick mode) into the host's CNI bin dir and the shipped wasm plugins into `wasmPluginDir`, each replaced atomically (a node booting
//! while the old binary runs never sees "text file busy", upstream #1221),
//! then the plugins precompiled so the first pod never waits for a compile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::settings;
use super::{InstallError, Options};
use crate::compile;
use multus::config::wasm::{DEFAULT_CACHE_DIR, DEFAULT_PLUGIN_DIR};
use multus::fsutil;

/// What was installed, for the log and the bench.
#[derive(Debug, Default)]
pub struct Installed {
    pub copied: Vec<PathBuf>,
    pub unchanged: Vec<PathBuf>,
    pub compiled: Vec<String>,
    pub precompile_time: Duration,
    /// Modules a previous install shipped and this one does not.
    pub removed: Vec<PathBuf>,
}

fn current_exe() -> Result<PathBuf, InstallError> {
    std::env::current_exe()
        .map_err(|e| InstallError::io("locating", Path::new("/proc/self/exe"), e))
}

/// `rel` beside the running executable.
fn beside_me(rel: &str) -> Result<PathBuf, InstallError> {
    Ok(current_exe()?.parent().unwrap_or(Path::new("/")).join(rel))
}

/// Copies `from` to `to` unless `to` already has the same bytes.
fn install_file(
    from: &Path,
    to: &Path,
    mode: u32,
    done: &mut Installed,
) -> Result<(), InstallError> {
    std::fs::metadata(from).map_err(|e| InstallError::io("reading", from, e))?;
    if fsutil::same_content(from, to).unwrap_or(false) {
        done.unchanged.push(to.to_path_buf());
        return Ok(());
    }
    fsutil::copy_atomic(from, to, mode).map_err(|e| InstallError::io("installing", to, e))?;
    done.copied.push(to.to_path_buf());
    Ok(())
}

/// The `.wasm` files of `dir`, sorted.
fn modules(dir: &Path) -> Result<Vec<PathBuf>, InstallError> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| InstallError::io("listing --plugins", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    found.sort();
    Ok(found)
}

/// What the installer last placed in the plugin dir (name to sha256), so
/// a module a later image no longer ships is removed; modules an admin
/// dropped there are not in it and stay.
pub const SHIPPED: &str = ".multusctl-shipped.json";

pub fn digest(p: &Path) -> Result<String, InstallError> {
    let bytes = std::fs::read(p).map_err(|e| InstallError::io("reading", p, e))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// Removes the modules the last install shipped and this one does not, if
/// still as installed (one an admin replaced since is theirs now), then
/// records what this install shipped. A leftover module would keep taking
/// over its type: a `bridge.wasm` no longer shipped would still run every
/// bridge network, the cluster network's included.
fn remove_unshipped(
    plugin_dir: &Path,
    shipped: &BTreeMap<String, String>,
) -> Result<Vec<PathBuf>, InstallError> {
    let record = plugin_dir.join(SHIPPED);
    let before: BTreeMap<String, String> = match std::fs::read(&record) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(InstallError::io("reading", &record, e)),
    };
    let mut removed = Vec::new();
    for (name, sha) in before.iter().filter(|(n, _)| !shipped.contains_key(*n)) {
        let p = plugin_dir.join(name);
        match digest(&p) {
            Ok(now) if &now == sha => {
                std::fs::remove_file(&p).map_err(|e| InstallError::io("removing", &p, e))?;
                removed.push(p);
            }
            Ok(_) => {
                tracing::info!(module = %p.display(), "no longer shipped but changed since installed; left in place")
            }
            Err(_) => {}
        }
    }
    if before != *shipped {
        let bytes = serde_json::to_vec_pretty(shipped).expect("a map serializes");
        fsutil::write_atomic(&record, &bytes, 0o644)
            .map_err(|e| InstallError::io("writing", &record, e))?;
    }
    Ok(removed)
}

pub fn install(opts: &Options, keys: &Map<String, Value>) -> Result<Installed, InstallError> {
    let mut done = Installed::default();
    let bin = match &opts.multus_bin {
        Some(p) => p.clone(),
        None => beside_me("multus")?,
    };
    let bin_dir = opts.host(&opts.cni_bin_dir);
    install_file(&bin, &bin_dir.join("multus"), 0o755, &mut done)?;
    // multus execs it to compile a module that was not precompiled.
    install_file(
        &current_exe()?,
        &bin_dir.join("multusctl"),
        0o755,
        &mut done,
    )?;
    if opts.thick {
        install_file(
            &beside_me("multus-shim")?,
            &bin_dir.join("multus-shim"),
            0o755,
            &mut done,
        )?;
    }

    let plugins = match &opts.plugins {
        Some(p) => p.clone(),
        None => {
            let shipped = beside_me("../share/multus/plugins")?;
            if !shipped.is_dir() {
                tracing::info!(dir = %shipped.display(), "no shipped wasm plugins here; none installed");
                return Ok(done);
            }
            shipped
        }
    };
    let plugin_dir_host =
        PathBuf::from(settings::string(keys, "wasmPluginDir").unwrap_or(DEFAULT_PLUGIN_DIR));
    let cache_dir = opts.host(Path::new(
        settings::string(keys, "wasmCacheDir").unwrap_or(DEFAULT_CACHE_DIR),
    ));
    let plugin_dir = opts.host(&plugin_dir_host);
    let mut installed = Vec::new();
    let mut shipped = BTreeMap::new();
    for module in modules(&plugins)? {
        let name = module
            .file_name()
            .expect("listed files have names")
            .to_owned();
        let to = plugin_dir.join(&name);
        install_file(&module, &to, 0o644, &mut done)?;
        shipped.insert(name.to_string_lossy().into_owned(), digest(&to)?);
        installed.push((to, plugin_dir_host.join(&name)));
    }
    done.removed = remove_unshipped(&plugin_dir, &shipped)?;
    if opts.skip_precompile || installed.is_empty() {
        return Ok(done);
    }
    let started = Instant::now();
    let engine = compile::engine().map_err(InstallError::Invalid)?;
    for (seen, host) in installed {
        let p = compile::precompile(&engine, &seen, &host, &cache_dir)
            .map_err(|e| InstallError::Invalid(format!("precompiling {}: {e}", seen.display())))?;
        if p.compiled {
            done.compiled.push(host.display().to_string());
        }
    }
    done.precompile_time = started.elapsed();
    Ok(done)
}
