//! Compile once: precompiled components cached on disk, keyed by the
//! module's sha256 and the engine's compatibility hash (wasmtime version and
//! engine config), loaded with `Component::deserialize_file` (mmap).
//!
//! Hashing the module on every call would cost more than loading the
//! artifact, so an index file remembers each module's digest together with
//! a stamp of its file (device, inode, size, ctime, mtime); the module is
//! read and hashed again only when the stamp changed, or always when the
//! conf pins its digest.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
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

fn index_path(cache_dir: &Path, module: &Path) -> PathBuf {
    cache_dir.join(format!(
        "{}.idx",
        hex(&Sha256::digest(module.as_os_str().as_encoded_bytes()))
    ))
}

/// What changes whenever the module file's content may have (ctime cannot
/// be set from user space).
fn stamp(module: &Path) -> std::io::Result<String> {
    let m = std::fs::metadata(module)?;
    Ok(format!(
        "{} {} {} {}.{} {}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.ctime(),
        m.ctime_nsec(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// The module's digest from the index, if its stamp still matches.
fn indexed_sha(cache_dir: &Path, module: &Path, stamp: &str) -> Option<String> {
    let idx = std::fs::read_to_string(index_path(cache_dir, module)).ok()?;
    let (s, sha) = idx.trim_end().rsplit_once(' ')?;
    (s == stamp).then(|| sha.to_string())
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
    let unreadable =
        |e: std::io::Error| err(plugin, format!("cannot read {}: {e}", module.display()));
    let stamp = stamp(module).map_err(unreadable)?;
    let mut bytes = None;
    let sha256 = match indexed_sha(cache_dir, module, &stamp).filter(|_| pin.is_none()) {
        Some(sha) => sha,
        None => {
            let b = std::fs::read(module).map_err(unreadable)?;
            let sha = hex(&Sha256::digest(&b));
            bytes = Some(b);
            sha
        }
    };
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
                if bytes.is_some() {
                    remember(cache_dir, module, &stamp, &sha256);
                }
                return Ok(Loaded {
                    component,
                    sha256,
                    compiled: false,
                    load_time: started.elapsed(),
                });
            }
            Err(e) => {
                tracing::warn!(artifact = %path.display(), error = %e, "unusable precompiled artifact; recompiling")
            }
        }
    }
    let bytes = match bytes {
        Some(b) => b,
        None => std::fs::read(module).map_err(unreadable)?,
    };
    if hex(&Sha256::digest(&bytes)) != sha256 {
        return Err(CniError::new(
            Code::TryAgainLater,
            format!(
                "wasm plugin {plugin:?}: {} changed while it was loaded",
                module.display()
            ),
        ));
    }
    let component = Component::new(engine, &bytes).map_err(|e| {
        err(
            plugin,
            format!("{} is not a valid component: {e}", module.display()),
        )
    })?;
    match component.serialize() {
        Ok(artifact) => match write_atomic(&path, &artifact) {
            Ok(()) => remember(cache_dir, module, &stamp, &sha256),
            Err(e) => {
                tracing::warn!(dir = %cache_dir.display(), error = %e, "cannot cache the precompiled artifact")
            }
        },
        Err(e) => tracing::warn!(error = %e, "cannot serialize the compiled component"),
    }
    Ok(Loaded {
        component,
        sha256,
        compiled: true,
        load_time: started.elapsed(),
    })
}

fn remember(cache_dir: &Path, module: &Path, stamp: &str, sha256: &str) {
    let line = format!("{stamp} {sha256}\n");
    if let Err(e) = write_atomic(&index_path(cache_dir, module), line.as_bytes()) {
        tracing::warn!(dir = %cache_dir.display(), error = %e, "cannot index the module digest");
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, bytes, 0o600)
}

/// What `precompile` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precompiled {
    pub sha256: String,
    /// False when a usable artifact was already cached.
    pub compiled: bool,
}

/// Compiles `module` into `cache_dir` ahead of the first call and indexes
/// its digest under `indexed_as`, the path the runtime will load it from
/// (an installer sees the host's files under a prefix; the file, and so its
/// stamp, is the same).
pub fn precompile(
    engine: &Engine,
    module: &Path,
    indexed_as: &Path,
    cache_dir: &Path,
) -> Result<Precompiled, String> {
    let stamp = stamp(module).map_err(|e| format!("{}: {e}", module.display()))?;
    let bytes = std::fs::read(module).map_err(|e| format!("{}: {e}", module.display()))?;
    let sha256 = hex(&Sha256::digest(&bytes));
    let path = artifact_path(cache_dir, &sha256, engine);
    // SAFETY: as in `load`: a root-only dir of artifacts this code wrote.
    let cached = path.is_file() && unsafe { Component::deserialize_file(engine, &path) }.is_ok();
    if !cached {
        let component = Component::new(engine, &bytes)
            .map_err(|e| format!("{} is not a valid component: {e}", module.display()))?;
        let artifact = component
            .serialize()
            .map_err(|e| format!("serializing {}: {e}", module.display()))?;
        write_atomic(&path, &artifact).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let line = format!("{stamp} {sha256}\n");
    let index = index_path(cache_dir, indexed_as);
    write_atomic(&index, line.as_bytes()).map_err(|e| format!("{}: {e}", index.display()))?;
    Ok(Precompiled {
        sha256,
        compiled: !cached,
    })
}
