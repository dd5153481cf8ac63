//! `multusctl plugin sync`: this node's side of WasmPlugin objects (run
//! by the DaemonSets as a container of its own, so neither the installer
//! nor the daemon carries it). It lists the objects and converges the
//! plugin dir on them, then watches them: each change starts a pass at
//! once, and every `--interval` a full pass runs anyway (a ConfigMap that
//! came after its object, an API error). A node that was down converges
//! on its first pass. SIGTERM/SIGINT end it within a watch window.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multus::fsutil::under_root;
use multus::k8s::client::Kube;

use crate::install::watch::sleep_unless;
use crate::objects::resource;
use crate::objects::sync::{sync_once, Target};

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// This node's name (the DaemonSet sets NODE_NAME).
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node: String,
    /// The host's `/`, as mounted in this container.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,
    /// `wasmPluginDir` of the multus conf, as a host path.
    #[arg(long, value_name = "DIR", default_value = multus::config::wasm::DEFAULT_PLUGIN_DIR)]
    pub plugin_dir: PathBuf,
    /// `wasmCacheDir` of the multus conf, as a host path.
    #[arg(long, value_name = "DIR", default_value = multus::config::wasm::DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Where the modules' ConfigMaps are (the multus namespace).
    #[arg(long, value_name = "NS", default_value = "kube-system")]
    pub namespace: String,
    /// The API credentials; default the pod's service account.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// A full pass at least this often, changes or not.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// One pass, then exit (1 if an object was refused or the API failed).
    #[arg(long)]
    pub once: bool,
}

pub fn run(a: &SyncArgs) -> i32 {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    for (flag, p) in [
        ("--plugin-dir", &a.plugin_dir),
        ("--cache-dir", &a.cache_dir),
    ] {
        if !p.is_absolute() {
            eprintln!(
                "multusctl plugin sync: {flag} {} must be an absolute host path",
                p.display()
            );
            return 2;
        }
    }
    let timeout = Duration::from_secs(10);
    let kube = match &a.kubeconfig {
        Some(k) => Kube::new(k, timeout),
        None => Kube::in_cluster(timeout),
    };
    let kube = match kube {
        Ok(k) => k,
        Err(e) => {
            eprintln!("multusctl plugin sync: {e}");
            return 2;
        }
    };
    let target = Target {
        node: a.node.clone(),
        namespace: a.namespace.clone(),
        plugin_dir: under_root(&a.host_root, &a.plugin_dir),
        cache_dir: under_root(&a.host_root, &a.cache_dir),
        host_plugin_dir: a.plugin_dir.clone(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("multusctl plugin sync: cannot handle signal {sig}: {e}");
            return 1;
        }
    }
    let mut retry = Retry::default();
    loop {
        let (ok, unreported, from, generations) = match sync_once(&kube, &target) {
            Ok(pass) => {
                for ty in &pass.placed {
                    tracing::info!(plugin = %ty, "placed");
                }
                for ty in &pass.removed {
                    tracing::info!(plugin = %ty, "removed: its WasmPlugin is gone");
                }
                (
                    pass.refused.is_empty(),
                    !pass.unreported.is_empty(),
                    pass.resource_version,
                    pass.generations,
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "listing WasmPlugins; the plugin dir is left as it is");
                (false, false, None, Default::default())
            }
        };
        if a.once {
            return i32::from(!ok || unreported);
        }
        if unreported {
            // The status again, from a fresh list, soon.
            if sleep_unless(&stop, retry.next()) {
                return 0;
            }
            continue;
        }
        retry = Retry::default();
        if wait(&kube, from, &generations, a.interval, &stop) {
            return 0;
        }
    }
}

/// How long to wait before a pass whose status write failed is tried
/// again: doubling from 1 s to 30 s, each wait a random part of it, so
/// that the nodes refused at once (an API server behind with a burst of
/// writes to one object) do not all come back at once.
#[derive(Default)]
struct Retry(u32);

impl Retry {
    fn next(&mut self) -> Duration {
        use std::hash::{BuildHasher, Hasher};
        let cap = Duration::from_secs(1) * 2u32.pow(self.0.min(5));
        self.0 += 1;
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        cap / 2 + cap.mul_f64((random % 1000) as f64 / 2000.0)
    }
}

/// One watch request's length: how long a SIGTERM may wait.
const WINDOW: Duration = Duration::from_secs(8);

/// Waits for a change of the objects' specs after `from` (the watch
/// windows going on from the last version seen, so status writes are
/// neither acted on nor replayed), or `interval`; `true` when told to
/// stop. Without a version to watch from (the list failed), or when the
/// watch fails, it waits a window and lists again.
fn wait(
    kube: &Kube,
    mut from: Option<String>,
    generations: &std::collections::BTreeMap<String, i64>,
    interval: Duration,
    stop: &AtomicBool,
) -> bool {
    let until = Instant::now() + interval;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        let Some(rv) = from.as_deref() else {
            return sleep_unless(stop, WINDOW);
        };
        let window = WINDOW.min(until - Instant::now());
        match kube.wait_for_change(&resource(), "", rv, window, generations) {
            Ok(w) if w.changed => return stop.load(Ordering::Relaxed),
            Ok(w) => from = Some(w.resource_version),
            Err(e) => {
                tracing::warn!(error = %e, "watching WasmPlugins; listing again");
                return sleep_unless(stop, Duration::from_secs(2));
            }
        }
    }
    stop.load(Ordering::Relaxed)
}
