//! `multusctl plugin sync`: this node's side of WasmPlugin objects (run
//! by the DaemonSets as a container of its own, so neither the installer
//! nor the daemon carries it). Every `--interval` it lists the objects and
//! converges the plugin dir on them; a node that was down converges on
//! its first pass. SIGTERM/SIGINT end it between passes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multus::k8s::client::Kube;

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
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// One pass, then exit (1 if an object was refused or the API failed).
    #[arg(long)]
    pub once: bool,
}

fn host(root: &std::path::Path, p: &std::path::Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
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
        plugin_dir: host(&a.host_root, &a.plugin_dir),
        cache_dir: host(&a.host_root, &a.cache_dir),
        host_plugin_dir: a.plugin_dir.clone(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("multusctl plugin sync: cannot handle signal {sig}: {e}");
            return 1;
        }
    }
    loop {
        let ok = match sync_once(&kube, &target) {
            Ok(pass) => {
                for ty in &pass.placed {
                    tracing::info!(plugin = %ty, "placed");
                }
                for ty in &pass.removed {
                    tracing::info!(plugin = %ty, "removed: its WasmPlugin is gone");
                }
                pass.refused.is_empty()
            }
            Err(e) => {
                tracing::error!(error = %e, "listing WasmPlugins; the plugin dir is left as it is");
                false
            }
        };
        if a.once {
            return i32::from(!ok);
        }
        let until = Instant::now() + a.interval;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return 0;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
