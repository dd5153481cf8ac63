//! Compiling wasm plugins ahead of their first call, into the artifact cache
//! the `multus` binary (which has no compiler) loads from.

use std::path::Path;

use multus::delegate::wasm::artifact::{artifact_path, hex, stamp, write_index};
use multus::delegate::wasm::engine;
use multus::fsutil;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// What `precompile` did.
#[derive(Clone)]
pub struct Precompiled {
    pub sha256: String,
    /// False when a usable artifact was already cached.
    pub compiled: bool,
    /// The module's size in bytes.
    pub size: u64,
    /// The component, compiled or loaded from the cache.
    pub component: Component,
}

/// An engine with multus's settings and a compiler.
pub fn engine() -> Result<Engine, String> {
    Engine::new(&engine::config()).map_err(|e| format!("starting wasmtime: {e}"))
}

/// Compiles `module` into `cache_dir` (unless a usable artifact is there)
/// and indexes its digest under `indexed_as`, the path the runtime will
/// load it from (an installer sees the host's files under a prefix; the
/// file, and so its stamp, is the same).
pub fn precompile(
    engine: &Engine,
    module: &Path,
    indexed_as: &Path,
    cache_dir: &Path,
) -> Result<Precompiled, String> {
    let stamp = stamp(module).map_err(|e| format!("{}: {e}", module.display()))?;
    let bytes = std::fs::read(module).map_err(|e| format!("{}: {e}", module.display()))?;
    let sha256 = hex(&Sha256::digest(&bytes));
    let path = artifact_path(cache_dir, &sha256);
    // SAFETY: a root-only dir of artifacts written atomically by this code.
    let cached = path
        .is_file()
        .then(|| unsafe { Component::deserialize_file(engine, &path) }.ok())
        .flatten();
    let compiled = cached.is_none();
    let component = match cached {
        Some(c) => c,
        None => {
            let component = Component::new(engine, &bytes)
                .map_err(|e| format!("{} is not a valid component: {e}", module.display()))?;
            let artifact = component
                .serialize()
                .map_err(|e| format!("serializing {}: {e}", module.display()))?;
            fsutil::write_atomic(&path, &artifact, 0o600)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            component
        }
    };
    write_index(cache_dir, indexed_as, &stamp, &sha256).map_err(|e| {
        format!(
            "indexing {} in {}: {e}",
            indexed_as.display(),
            cache_dir.display()
        )
    })?;
    Ok(Precompiled {
        sha256,
        compiled,
        size: bytes.len() as u64,
        component,
    })
}
