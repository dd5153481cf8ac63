//! `multusctl plugin sync`: this node's side of WasmPlugin objects (run
//! by the DaemonSets as a container of its own, so neither the installer
//! nor the daemon carries it). It lists the objects and converges the
//! plugin dir on them, then watches them: each change starts a pass at
//! once, and every `--interval` a full pass runs anyway (a ConfigMap that
//! came after its object, an API error). A node that was down converges
//! on its first pass. SIGTERM/SIGINT end it within a watch window.

use std::path::PathBuf;
use std::time::Duration;

use multus::fsutil::under_root;

use crate::install::watch::sleep_unless;
use crate::objects::registry::Registries;
use crate::objects::report::Reporter;
use crate::objects::resource;
use crate::objects::sync::{sync_once, Target};
use crate::objects::wait::{start, wait, Retry};

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
    /// A registry (`host[:port]`, over HTTPS) WasmPlugins with an image
    /// source may name; repeatable. Any other is refused.
    #[arg(long = "registry", value_name = "HOST")]
    pub registries: Vec<String>,
    /// A registry reached over plain HTTP (a registry on the node's own
    /// network); repeatable. Allowed as `--registry` is.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// A docker config (a mounted `kubernetes.io/dockerconfigjson` pull
    /// secret): credentials for the registries it names, sent to those
    /// only. No such file (an optional secret not created): anonymous.
    #[arg(long, value_name = "FILE")]
    pub registry_auth: Option<PathBuf>,
    /// CA certificates (PEM, one or more) to trust besides the system's
    /// for the `--registry` registries (a private CA's).
    #[arg(long, value_name = "FILE")]
    pub registry_ca: Option<PathBuf>,
}

pub fn run(a: &SyncArgs) -> i32 {
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
    let registries = match Registries::new(
        &a.registries,
        &a.insecure_registries,
        a.registry_auth.as_deref(),
        "--registry-auth",
    )
    .and_then(|r| r.with_ca(a.registry_ca.as_deref(), "--registry-ca"))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("multusctl plugin sync: {e}");
            return 2;
        }
    };
    let (kube, stop) = match start("plugin sync", a.kubeconfig.as_ref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let target = Target {
        node: a.node.clone(),
        namespace: a.namespace.clone(),
        plugin_dir: under_root(&a.host_root, &a.plugin_dir),
        cache_dir: under_root(&a.host_root, &a.cache_dir),
        host_plugin_dir: a.plugin_dir.clone(),
        registries,
        held: Default::default(),
    };
    let mut reporter = Reporter::new(&kube, &a.node);
    let mut retry = Retry::default();
    loop {
        let (ok, unreported, from, generations) = match sync_once(&kube, &target, &mut reporter) {
            Ok(pass) => {
                for ty in &pass.placed {
                    tracing::info!(plugin = %ty, "placed");
                }
                for ty in &pass.removed {
                    tracing::info!(plugin = %ty, "removed: its WasmPlugin is gone");
                }
                (
                    pass.refused.is_empty(),
                    pass.unreported,
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
            // The report again, from a fresh list, soon.
            if sleep_unless(&stop, retry.backoff()) {
                return 0;
            }
            continue;
        }
        retry = Retry::default();
        if wait(&kube, &resource(), from, &generations, a.interval, &stop) {
            return 0;
        }
    }
}
