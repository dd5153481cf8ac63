//! Multi-call: a native main plugin (bridge, macvlan, ...) execs its IPAM
//! from CNI_PATH. For a wasm IPAM, multus puts a directory first in that
//! CNI_PATH whose entry `<type>` links back to the multus binary; started
//! under that name, multus runs the component and answers in CNI's exec
//! protocol. The wasm settings travel in the environment.

use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::boundary::{Bounds, PluginType};
use crate::cni::{CniEnv, CniError, Code, Command};
use crate::config::WasmConf;
use crate::delegate::wasm::{self, Role};
use crate::delegate::PluginCall;
use crate::outcome::{self, Outcome};

const ENV_PLUGIN_DIR: &str = "MULTUS_WASM_PLUGIN_DIR";
const ENV_CACHE_DIR: &str = "MULTUS_WASM_CACHE_DIR";
const ENV_PLUGINS: &str = "MULTUS_WASM_PLUGINS";
const ENV_KUBECONFIG: &str = "MULTUS_WASM_KUBECONFIG";
const ENV_BOUNDS: &str = "MULTUS_WASM_BOUNDS";
const ENV_NODE_NAME: &str = "MULTUS_WASM_NODE_NAME";

/// The environment that lets a re-entered multus find its wasm settings.
pub fn env(conf: &WasmConf) -> Vec<(String, String)> {
    let mut env = vec![
        (ENV_PLUGIN_DIR.into(), conf.plugin_dir.display().to_string()),
        (ENV_CACHE_DIR.into(), conf.cache_dir.display().to_string()),
        (
            ENV_PLUGINS.into(),
            serde_json::to_string(&conf.plugins).expect("settings serialize"),
        ),
        (
            ENV_BOUNDS.into(),
            serde_json::to_string(&conf.bounds).expect("bounds serialize"),
        ),
    ];
    if let Some(k) = &conf.kubeconfig {
        env.push((ENV_KUBECONFIG.into(), k.display().to_string()));
    }
    if let Some(n) = &conf.node_name {
        env.push((ENV_NODE_NAME.into(), n.clone()));
    }
    env
}

/// Makes `<cacheDir>/bin/<ipam>` a link to the `multus` binary at `me`;
/// returns the dir.
pub fn prepare(conf: &WasmConf, ipam: &PluginType, me: &Path) -> Result<PathBuf, CniError> {
    let dir = conf.cache_dir.join("bin");
    let io = |what: &str, p: &Path, e: std::io::Error| {
        CniError::new(
            Code::Io,
            format!("wasm IPAM shim: {what} {}: {e}", p.display()),
        )
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| io("creating", &dir, e))?;
    let link = dir.join(ipam.as_str());
    if std::fs::read_link(&link).is_ok_and(|t| t == me) {
        return Ok(dir);
    }
    // Unique per call, not per process: the daemon's concurrent calls
    // each link their own (a per-process name failed all but one of a
    // node's pods started together with "File exists").
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{ipam}.{}.{call}", std::process::id()));
    // One left by a killed process that had this PID.
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(me, &tmp).map_err(|e| io("linking", &tmp, e))?;
    std::fs::rename(&tmp, &link).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("installing", &link, e)
    })?;
    Ok(dir)
}

/// The wasm plugin this process was started as, if it was.
pub fn invoked_as() -> Option<String> {
    let argv0 = std::env::args_os().next()?;
    let name = Path::new(&argv0).file_name()?.to_str()?.to_string();
    (name != "multus" && std::env::var_os(ENV_PLUGIN_DIR).is_some()).then_some(name)
}

fn conf_from_env() -> Result<WasmConf, CniError> {
    let var = |k: &str| {
        std::env::var(k).map_err(|_| CniError::new(Code::InvalidEnv, format!("{k} missing")))
    };
    let plugins = serde_json::from_str(&var(ENV_PLUGINS)?)
        .map_err(|e| CniError::new(Code::InvalidEnv, format!("{ENV_PLUGINS}: {e}")))?;
    // Missing (a parent multus from before the bounds, mid-upgrade): the
    // defaults, which are the tightest.
    let bounds: Bounds = match std::env::var(ENV_BOUNDS) {
        Ok(b) => serde_json::from_str(&b)
            .map_err(|e| CniError::new(Code::InvalidEnv, format!("{ENV_BOUNDS}: {e}")))?,
        Err(_) => Bounds::default(),
    };
    Ok(WasmConf {
        plugin_dir: var(ENV_PLUGIN_DIR)?.into(),
        cache_dir: var(ENV_CACHE_DIR)?.into(),
        plugins,
        kubeconfig: std::env::var_os(ENV_KUBECONFIG).map(Into::into),
        bounds,
        node_name: std::env::var(ENV_NODE_NAME).ok(),
    })
}

/// Runs as the IPAM plugin `plugin`.
pub fn run(plugin: &str) -> Outcome {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let asked = outcome::error_version(&stdin);
    let fail = |e: CniError| outcome::failure(&e, &asked);
    let env = match CniEnv::from_vars(|k| std::env::var(k).ok()) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    if env.command == Command::Version {
        return outcome::version_info();
    }
    let conf = match conf_from_env() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let plugin = match PluginType::parse(plugin, "the IPAM shim's name") {
        Ok(p) => p,
        Err(r) => return fail(r.into()),
    };
    let Some(module) = conf.module(&plugin) else {
        return fail(CniError::new(
            Code::InvalidConfig,
            format!(
                "wasm plugin {plugin:?} not found in {}",
                conf.plugin_dir.display()
            ),
        ));
    };
    let cni_args = std::env::var("CNI_ARGS").unwrap_or_default();
    let call = PluginCall {
        plugin_type: &plugin,
        command: env.command,
        container_id: &env.container_id,
        netns: &env.netns,
        ifname: &env.ifname,
        known_prev: None,
        cni_args: &cni_args,
        path: &[],
        extra_env: &[],
        stdin: &stdin,
    };
    match wasm::run(&conf, Role::Ipam, &module, &call) {
        Ok((out, _)) => Outcome {
            stdout: String::from_utf8_lossy(&out).into_owned(),
            status: 0,
        },
        Err(e) => fail(e.into_cni()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls of one process at once (the daemon's pods) each install the
    /// link, and leave no temporary behind.
    #[test]
    fn concurrent_calls_each_install_the_link() {
        let d = tempfile::tempdir().unwrap();
        let conf = WasmConf {
            plugin_dir: d.path().join("plugins"),
            cache_dir: d.path().join("cache"),
            plugins: Default::default(),
            kubeconfig: None,
            bounds: Bounds::default(),
            node_name: None,
        };
        let ipam = PluginType::parse("whereabouts", "ipam.type").unwrap();
        let together = std::sync::Barrier::new(16);
        std::thread::scope(|s| {
            for i in 0..16 {
                let (conf, ipam, together) = (&conf, &ipam, &together);
                // Half point elsewhere first, so every call relinks.
                let me = d.path().join(if i % 2 == 0 { "multus" } else { "other" });
                s.spawn(move || {
                    together.wait();
                    prepare(conf, ipam, &me).unwrap()
                });
            }
        });
        let bin = conf.cache_dir.join("bin");
        let names: Vec<_> = std::fs::read_dir(&bin)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["whereabouts"], "temporaries left");
    }
}
