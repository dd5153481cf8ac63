//! Compile once: precompiled components cached on disk, keyed by the
//! module's sha256 and the engine settings tag, loaded with
//! `Component::deserialize_file` (mmap). This binary carries no compiler:
//! on a miss it execs `multusctl plugin compile` (installed beside it),
//! once (loads that miss at the same time take turns on the cache's
//! compile lock, and the later ones find the artifact); wasmtime checks an
//! artifact's version and settings when loading it, and an unusable one is
//! compiled again.
//!
//! Hashing the module on every call would cost more than loading the
//! artifact, so an index file remembers each module's digest together with
//! a stamp of its file (device, inode, size, ctime, mtime); the module is
//! read and hashed again only when the stamp changed. A pin is checked
//! against that digest too. What runs is always the artifact named by the
//! digest compared with the pin, compiled from bytes of that digest (the
//! stamp is taken before the bytes are read, by this code and by the
//! compiler), so a pinned call runs the pinned module or fails. A write
//! moves ctime (user space cannot set it back) and a replaced file has
//! another inode; writes through a shared mapping of already dirty pages
//! may not, and such a change is seen only at the next stamp change: the
//! pinned module's artifact keeps running until then. The index lives in
//! `wasmCacheDir`, which no store or config value may name, beside the
//! artifacts that are loaded as native code anyway.

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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the artifact of a module with digest `sha256` lives.
pub fn artifact_path(cache_dir: &Path, sha256: &str) -> PathBuf {
    cache_dir.join(format!("{sha256}-{}.cwasm", super::engine::ARTIFACT_TAG))
}

fn index_path(cache_dir: &Path, module: &Path) -> PathBuf {
    cache_dir.join(format!(
        "{}.idx",
        hex(&Sha256::digest(module.as_os_str().as_encoded_bytes()))
    ))
}

/// What changes whenever the module file's content may have (ctime cannot
/// be set from user space).
pub fn stamp(module: &Path) -> std::io::Result<String> {
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

/// The digest indexed for the module multus knows as `module`, if the
/// file `seen` (the same file, as another mount namespace names it) still
/// has the stamp it was indexed with: what a module's digest is without
/// reading it.
pub fn indexed_digest(cache_dir: &Path, module: &Path, seen: &Path) -> Option<String> {
    indexed_sha(cache_dir, module, &stamp(seen).ok()?)
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

/// Components this process loaded, by module path: a long-lived process
/// (the daemon) loads each module once, and again only when its file's
/// stamp changes.
struct Warm {
    stamp: String,
    sha256: String,
    component: Component,
}

static WARM: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<PathBuf, Warm>>> =
    std::sync::OnceLock::new();

fn warm() -> std::sync::MutexGuard<'static, std::collections::HashMap<PathBuf, Warm>> {
    WARM.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
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
    if let Some(w) = warm().get(module).filter(|w| w.stamp == stamp) {
        check_pin(plugin, module, pin, &w.sha256)?;
        return Ok(Loaded {
            component: w.component.clone(),
            sha256: w.sha256.clone(),
            compiled: false,
            load_time: started.elapsed(),
        });
    }
    let loaded = load_cold(engine, plugin, module, cache_dir, pin, &stamp, started)?;
    warm().insert(
        module.to_path_buf(),
        Warm {
            stamp,
            sha256: loaded.sha256.clone(),
            component: loaded.component.clone(),
        },
    );
    Ok(loaded)
}

/// Refuses a module whose digest is not the conf's pin.
fn check_pin(plugin: &str, module: &Path, pin: Option<&str>, sha256: &str) -> Result<(), CniError> {
    match pin {
        Some(pin) if !pin.eq_ignore_ascii_case(sha256) => Err(err(
            plugin,
            format!(
                "{} has sha256 {sha256}, the conf pins {pin}; refusing the changed module",
                module.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// `load` without a warm component: the digest (indexed or hashed), the
/// pin, the artifact (compiled first when missing).
fn load_cold(
    engine: &Engine,
    plugin: &str,
    module: &Path,
    cache_dir: &Path,
    pin: Option<&str>,
    stamp: &str,
    started: Instant,
) -> Result<Loaded, CniError> {
    let unreadable =
        |e: std::io::Error| err(plugin, format!("cannot read {}: {e}", module.display()));
    let mut bytes = None;
    let sha256 = match indexed_sha(cache_dir, module, stamp) {
        Some(sha) => sha,
        None => {
            let b = std::fs::read(module).map_err(unreadable)?;
            let sha = hex(&Sha256::digest(&b));
            bytes = Some(b);
            sha
        }
    };
    check_pin(plugin, module, pin, &sha256)?;
    let path = artifact_path(cache_dir, &sha256);
    let cached = || {
        if !path.is_file() {
            return None;
        }
        // SAFETY: the cache dir is root-only and artifacts are written
        // atomically by this code from modules whose digest names the file.
        unsafe { Component::deserialize_file(engine, &path) }
            .inspect_err(|e| tracing::warn!(artifact = %path.display(), error = %e, "unusable precompiled artifact; recompiling"))
            .ok()
    };
    let mut found = cached();
    // Held while this load compiles; let go at once when whoever had the
    // turn before compiled it, so that loads waiting together go on
    // together (a node's pods started at once share their reads).
    let _turn = if found.is_none() {
        let turn = compile_turn(cache_dir);
        if turn.is_some() && path.is_file() {
            drop(turn);
            found = cached();
            None
        } else {
            turn
        }
    } else {
        None
    };
    if let Some(component) = found {
        if bytes.is_some() {
            remember(cache_dir, module, stamp, &sha256);
        }
        return Ok(Loaded {
            component,
            sha256,
            compiled: false,
            load_time: started.elapsed(),
        });
    }
    compile(plugin, module, cache_dir)?;
    // SAFETY: as above; the compiler wrote it atomically just now.
    let component = unsafe { Component::deserialize_file(engine, &path) }.map_err(|e| {
        if path.is_file() {
            err(
                plugin,
                format!(
                    "the compiled artifact {} does not load: {e}",
                    path.display()
                ),
            )
        } else {
            // The compiler read other bytes than we hashed.
            CniError::new(
                Code::TryAgainLater,
                format!(
                    "wasm plugin {plugin:?}: {} changed while it was loaded",
                    module.display()
                ),
            )
        }
    })?;
    if bytes.is_some() {
        remember(cache_dir, module, stamp, &sha256);
    }
    Ok(Loaded {
        component,
        sha256,
        compiled: true,
        load_time: started.elapsed(),
    })
}

/// How long a load waits for another one compiling into the same cache
/// before it compiles the module itself: a debug build's compile of a
/// large module, on a node busy starting pods.
const COMPILE_WAIT: Duration = Duration::from_secs(20);

/// The cache's compile lock, taken (`None` when it cannot be opened or did
/// not come within [`COMPILE_WAIT`]: the caller compiles anyway). A node's
/// pods started together after a module changed would otherwise each
/// compile it, N times a compile's CPU on the node's cores (100 thin
/// processes at once spent 40 s of a 60 s deadline so). One lock for the
/// whole cache: compiles are CPU-bound, so two at once finish no sooner.
/// flock is released when the holder exits, however it exits.
fn compile_turn(cache_dir: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    // As the compiler's own write of the artifact makes it.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache_dir)
        .ok()?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(cache_dir.join("compile.lock"))
        .ok()?;
    let got = multus_host_functions::flock::exclusive_within(
        &lock,
        COMPILE_WAIT,
        Duration::from_millis(50),
    );
    matches!(got, Ok(true)).then_some(lock)
}

/// The compiler: `multusctl` beside this executable.
fn compiler() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("locating this executable: {e}"))?;
    Ok(me.parent().unwrap_or(Path::new("/")).join("multusctl"))
}

/// Runs `multusctl plugin compile` for `module` into `cache_dir`.
fn compile(plugin: &str, module: &Path, cache_dir: &Path) -> Result<(), CniError> {
    let ctl = compiler().map_err(|e| err(plugin, e))?;
    let out = std::process::Command::new(&ctl)
        .args(["plugin", "compile", "--cache-dir"])
        .arg(cache_dir)
        .arg("--index-as")
        .arg(module)
        .arg(module)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            err(
                plugin,
                format!(
                    "{} is not precompiled and the compiler {} cannot run: {e} (multusctl install puts it beside multus)",
                    module.display(),
                    ctl.display()
                ),
            )
        })?;
    if !out.status.success() {
        return Err(err(
            plugin,
            format!(
                "compiling {}: {}",
                module.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// Records `module`'s digest with the stamp of its file, so the next load
/// need not hash it; the index file is named after `module`'s path.
pub fn write_index(
    cache_dir: &Path,
    module: &Path,
    stamp: &str,
    sha256: &str,
) -> std::io::Result<()> {
    write_atomic(
        &index_path(cache_dir, module),
        format!("{stamp} {sha256}\n").as_bytes(),
    )
}

/// `write_index`, for a cache that only saves work: a failure is logged.
fn remember(cache_dir: &Path, module: &Path, stamp: &str, sha256: &str) {
    if let Err(e) = write_index(cache_dir, module, stamp, sha256) {
        tracing::warn!(dir = %cache_dir.display(), error = %e, "cannot index the module digest");
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, bytes, 0o600)
}
