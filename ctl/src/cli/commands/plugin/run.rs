//! `multusctl plugin run`: runs a plugin once, outside any pod, for its
//! author. `--dry-run` runs it against the recording backends (nothing on
//! the machine changes) and prints every host call it made; with `--netns`
//! it runs for real in that network namespace. Exits 0 when the plugin
//! succeeded, 1 when it failed (its CNI error printed), 2 on bad arguments.

use std::path::{Path, PathBuf};

use multus::boundary::PluginType;
use multus::cni::Command;
use multus::config::WasmConf;
use multus::delegate::wasm::{self, Backends, Role};
use multus::delegate::PluginCall;
use multus_host_functions::cluster::RecordingCluster;
use multus_host_functions::state::RecordingKernel;
use multus_host_functions::store::RecordingStore;
use serde_json::Value;

use crate::{compile, inspect};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The component to run.
    #[arg(value_name = "MODULE")]
    pub module: PathBuf,
    /// The plugin's config (JSON), as a runtime would give it.
    #[arg(long, value_name = "FILE")]
    pub conf: PathBuf,
    /// A result to give as `prevResult` (chained plugins, CHECK, DEL).
    #[arg(long, value_name = "FILE")]
    pub prev_result: Option<PathBuf>,
    /// ADD, DEL, CHECK, STATUS or GC.
    #[arg(long, value_name = "COMMAND", default_value = "ADD")]
    pub command: String,
    /// CNI_IFNAME.
    #[arg(long, value_name = "IF", default_value = "eth0")]
    pub ifname: String,
    /// CNI_CONTAINERID.
    #[arg(long, value_name = "ID", default_value = "plugin-run")]
    pub container_id: String,
    /// CNI_ARGS.
    #[arg(long, value_name = "ARGS", default_value = "IgnoreUnknown=1")]
    pub args: String,
    /// `ipam` or `chained` [default: from the module's world].
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Record the host calls instead of making them; nothing changes.
    #[arg(long, conflicts_with = "netns")]
    pub dry_run: bool,
    /// Run for real in this network namespace (a path, e.g. /run/netns/x).
    #[arg(long, value_name = "PATH")]
    pub netns: Option<PathBuf>,
    /// Grant the plugin the host netns, as `wasmPlugins.<type>.hostNetns`
    /// does (interface plugins need it to create links on a host link).
    #[arg(long)]
    pub host_netns: bool,
    /// A directory the plugin's store (`dataDir`, `ipam.dataDir`) may lie
    /// beneath, besides the multus conf's default `storeRoots`
    /// (/var/lib/cni/networks, /run/cni); repeatable.
    #[arg(long, value_name = "DIR")]
    pub store_root: Vec<PathBuf>,
}

fn usage(msg: String) -> i32 {
    eprintln!("multusctl plugin run: {msg}");
    2
}

pub fn run(a: &RunArgs) -> i32 {
    let Some(command) =
        Command::parse(&a.command.to_ascii_uppercase()).filter(|c| *c != Command::Version)
    else {
        return usage(format!(
            "--command {:?}: expected ADD, DEL, CHECK, STATUS or GC",
            a.command
        ));
    };
    if !a.dry_run && a.netns.is_none() {
        return usage("give --dry-run, or --netns PATH to run for real".into());
    }
    let read_json = |flag: &str, p: &PathBuf| -> Result<Value, String> {
        let bytes = std::fs::read(p).map_err(|e| format!("{flag} {}: {e}", p.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{flag} {}: {e}", p.display()))
    };
    let mut conf = match read_json("--conf", &a.conf) {
        Ok(Value::Object(o)) => Value::Object(o),
        Ok(_) => return usage(format!("--conf {}: not a JSON object", a.conf.display())),
        Err(e) => return usage(e),
    };
    if let Some(p) = &a.prev_result {
        match read_json("--prev-result", p) {
            Ok(v) => conf["prevResult"] = v,
            Err(e) => return usage(e),
        }
    }
    let engine = match compile::engine() {
        Ok(e) => e,
        Err(e) => return usage(e),
    };
    // Compiled once, into a cache of this run's own.
    let cache = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return usage(format!("a temporary cache: {e}")),
    };
    let compiled = match compile::precompile(&engine, &a.module, &a.module, cache.path()) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let report = inspect::report(
        &engine,
        &a.module,
        compiled.size,
        compiled.sha256,
        &compiled.component,
    );
    let role = match (a.role.as_deref(), report.world) {
        (Some("ipam"), _) | (None, "ipam" | "cluster-ipam") => Role::Ipam,
        (Some("chained"), _) | (None, "chained" | "interface-plugin") => Role::Chained,
        (Some(other), _) => return usage(format!("--role {other:?}: expected ipam or chained")),
        (None, world) => {
            return usage(format!(
                "{} is a {world} module, not a plugin (see `multusctl plugin inspect`)",
                a.module.display()
            ))
        }
    };
    let mut wasm_conf = WasmConf {
        plugin_dir: a.module.parent().map(PathBuf::from).unwrap_or_default(),
        cache_dir: cache.path().to_path_buf(),
        plugins: Default::default(),
        kubeconfig: None,
        bounds: Default::default(),
        node_name: None,
    };
    wasm_conf.bounds.reserved = vec![wasm_conf.cache_dir.clone(), wasm_conf.plugin_dir.clone()];
    // The conf is the operator's own, given on the command line: a
    // kubeconfig it names is theirs to use (still never running a command).
    if let Some(kc) = conf
        .pointer("/ipam/kubernetes/kubeconfig")
        .and_then(Value::as_str)
    {
        if Path::new(kc).is_absolute() {
            wasm_conf.bounds.kubeconfig_allowlist.push(kc.into());
        }
    }
    for root in &a.store_root {
        if !root.is_absolute() {
            return usage(format!(
                "--store-root {}: not an absolute path",
                root.display()
            ));
        }
        wasm_conf.bounds.store_roots.push(root.clone());
    }
    let named = conf["type"]
        .as_str()
        .map(String::from)
        .or_else(|| {
            a.module
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let plugin_type = match PluginType::parse(&named, "the conf's \"type\"") {
        Ok(t) => t,
        Err(e) => return usage(format!("--conf {}: {e}", a.conf.display())),
    };
    if a.host_netns {
        let settings = multus::config::PluginSettings {
            host_netns: true,
            ..Default::default()
        };
        wasm_conf.plugins.insert(plugin_type.to_string(), settings);
    }
    let netns = match &a.netns {
        Some(p) => p.display().to_string(),
        // The grant needs a pod netns; the recording backends never open it.
        None => "/run/netns/multusctl-dry-run".into(),
    };
    let stdin = serde_json::to_vec(&conf).expect("JSON values serialize");
    let call = PluginCall {
        plugin_type: &plugin_type,
        command,
        container_id: &a.container_id,
        netns: &netns,
        ifname: &a.ifname,
        // Here the runtime is the author at the terminal: the config's own
        // prevResult is the one to grant from.
        known_prev: conf.get("prevResult"),
        cni_args: &a.args,
        path: &[],
        extra_env: &[],
        stdin: &stdin,
    };
    let (kernel, store, cluster) = (
        RecordingKernel::default(),
        RecordingStore::default(),
        RecordingCluster::default(),
    );
    let backends = if a.dry_run {
        Backends::Recording {
            kernel: kernel.clone(),
            store: store.clone(),
            cluster: cluster.clone(),
        }
    } else {
        Backends::Real
    };
    let outcome = wasm::run_with(&wasm_conf, role, &a.module, &call, backends);
    if a.dry_run {
        for (what, ops) in [
            ("netlink", &kernel.netlink.ops),
            ("routing", &kernel.routing.ops),
            ("links", &kernel.links.ops),
            ("sysctl", &kernel.sysctl.ops),
            ("store", &store.ops),
            ("cluster", &cluster.ops),
        ] {
            for op in ops.lock().expect("ops").iter() {
                println!("{what}: {op}");
            }
        }
    }
    match outcome {
        Ok((out, _)) if out.is_empty() => {
            println!("{command}: ok");
            0
        }
        Ok((out, _)) => {
            println!("{command}: {}", String::from_utf8_lossy(&out));
            0
        }
        Err(e) => {
            println!("{command}: error: {e}");
            1
        }
    }
}
