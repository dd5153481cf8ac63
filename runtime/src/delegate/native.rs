//! Exec of native plugin binaries with the CNI exec protocol, as libcni does.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use super::{PluginCall, PluginError, PluginRunner};
use crate::cni::error::PRINTED_BYTES;
use crate::cni::CniError;

/// Execs plugins; with `chroot`, inside that root (the daemon's
/// `chrootDir`, the host's root mounted in its container): the plugin, its
/// `CNI_PATH` and `CNI_NETNS` are paths of that root.
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeRunner<'a> {
    pub chroot: Option<&'a Path>,
}

impl NativeRunner<'_> {
    /// `p` as this process sees it.
    fn seen(&self, p: &Path) -> PathBuf {
        match self.chroot {
            Some(root) => crate::fsutil::under_root(root, p),
            None => p.to_path_buf(),
        }
    }

    fn find(&self, call: &PluginCall<'_>) -> Result<PathBuf, PluginError> {
        call.path
            .iter()
            .map(|d| d.join(call.plugin_type.as_str()))
            .find(|p| self.seen(p).is_file())
            .ok_or_else(|| PluginError::NotFound {
                plugin_type: call.plugin_type.to_string(),
                dirs: call.path.to_vec(),
            })
    }
}

impl PluginRunner for NativeRunner<'_> {
    fn run(&self, call: &PluginCall<'_>) -> Result<Vec<u8>, PluginError> {
        let plugin = self.find(call)?;
        let cni_path = std::env::join_paths(call.path).unwrap_or_default();
        let mut process = Process::new(&plugin);
        if let Some(root) = self.chroot {
            let root = root.to_path_buf();
            // SAFETY: chroot(2) and chdir(2) only, between fork and exec.
            unsafe {
                process.pre_exec(move || {
                    std::os::unix::fs::chroot(&root)?;
                    std::env::set_current_dir("/")
                });
            }
        }
        let mut child = process
            .env("CNI_COMMAND", call.command.as_str())
            .env("CNI_CONTAINERID", call.container_id)
            .env("CNI_NETNS", call.netns)
            .env("CNI_IFNAME", call.ifname)
            .env("CNI_ARGS", call.cni_args)
            .env("CNI_PATH", cni_path)
            .envs(call.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| PluginError::Spawn {
                plugin: plugin.clone(),
                source,
            })?;
        // A plugin that exits without reading stdin closes the pipe; its exit
        // status and output tell what happened, so a write error is not fatal.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(call.stdin);
        }
        let out = child
            .wait_with_output()
            .map_err(|source| PluginError::Spawn {
                plugin: plugin.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        // A plugin may echo a config value whole, and its error is logged
        // (per plugin, on every DEL of a rollback) before it is printed.
        let cut = |s: String| multus_host_functions::text::clip(s, PRINTED_BYTES);
        if let Ok(err) = serde_json::from_slice::<CniErrorWire>(&out.stdout) {
            return Err(PluginError::Cni(CniError {
                code: err.code,
                msg: cut(err.msg),
                details: cut(err.details),
            }));
        }
        Err(PluginError::Failed {
            plugin,
            status: out.status.to_string(),
            stderr: cut(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        })
    }
}

#[derive(serde::Deserialize)]
struct CniErrorWire {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}
