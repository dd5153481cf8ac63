//! Compile once: precompiled components cached on disk, keyed by the
//! module's sha256 and the engine's compatibility hash (wasmtime version and
//! engine config), loaded with `Component::deserialize_file` (mmap).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::cni::{CniError, Code};

/// A loaded component and what it cost.
pub struct Loaded {
    pub component: Component,
    pub sha256: String,
    /// True when this call compiled (no usable artifact was cached).
    pub compiled: bool,
    pub load_time: Duration,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn engine_key(engine: &Engine) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

pub fn artifact_path(cache_dir: &Path, sha256: &str, engine: &Engine) -> PathBuf {
    cache_dir.join(format!("{sha256}-{}.cwasm", engine_key(engine)))
}

fn err(plugin: &str, msg: String) -> CniError {
    CniError::new(
        Code::InvalidConfig,
        format!("wasm plugin {plugin:?}: {msg}"),
    )
}

/// Loads `module`, refusing it if `pin` is set and does not match.
pub fn load(
    engine: &Engine,
    plugin: &str,
    module: &Path,
    cache_dir: &Path,
    pin: Option<&str>,
) -> Result<Loaded, CniError> {
    let started = Instant::now();
    let bytes = std::fs::read(module)
        .map_err(|e| err(plugin, format!("cannot read {}: {e}", module.display())))?;
    let sha256 = hex(&Sha256::digest(&bytes));
    if let Some(pin) = pin {
        if !pin.eq_ignore_ascii_case(&sha256) {
            return Err(err(
                plugin,
                format!(
                    "{} has sha256 {sha256}, the conf pins {pin}; refusing the changed module",
                    module.display()
                ),
            ));
        }
    }
    let path = artifact_path(cache_dir, &sha256, engine);
    if path.is_file() {
        // SAFETY: the cache dir is root-only and artifacts are written
        // atomically by this code from modules whose digest names the file.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                return Ok(Loaded {
                    component,
                    sha256,
                    compiled: false,
                    load_time: started.elapsed(),
                })
            }
            Err(e) => {
                tracing::warn!(artifact = %path.display(), error = %e, "unusable precompiled artifact; recompiling")
            }
        }
    }
    let component = Component::new(engine, &bytes).map_err(|e| {
        err(
            plugin,
            format!("{} is not a valid component: {e}", module.display()),
        )
    })?;
    if let Err(e) = store(&component, cache_dir, &path) {
        tracing::warn!(dir = %cache_dir.display(), error = %e, "cannot cache the precompiled artifact");
    }
    Ok(Loaded {
        component,
        sha256,
        compiled: true,
        load_time: started.elapsed(),
    })
}

fn store(component: &Component, cache_dir: &Path, path: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache_dir)
        .map_err(|e| e.to_string())?;
    let bytes = component.serialize().map_err(|e| e.to_string())?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".cwasm")
        .tempfile_in(cache_dir)
        .map_err(|e| e.to_string())?;
    tmp.write_all(&bytes).map_err(|e| e.to_string())?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    tmp.persist(path).map_err(|e| e.error.to_string())?;
    Ok(())
}
