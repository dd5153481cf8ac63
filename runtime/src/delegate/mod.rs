//! Running delegate plugins: one trait for "run this plugin with this CNI
//! request", the native exec behind it, and conflist semantics on top.

pub mod chain;
pub mod dispatch;
pub mod native;
pub mod runtime_config;
pub mod wasm;

#[cfg(test)]
pub mod recording;

use std::path::PathBuf;

use crate::boundary::PluginType;
use crate::cni::{CniError, Code, Command};

/// One CNI call of one plugin binary (or, later, component).
#[derive(Debug, Clone)]
pub struct PluginCall<'a> {
    /// Checked where the config entered ([`PluginType`]): a file name,
    /// never a path.
    pub plugin_type: &'a PluginType,
    pub command: Command,
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    /// The prevResult the runtime itself produced for this call: the result
    /// of the plugin before it in this chain (ADD) or the attachment's
    /// cached result (DEL, CHECK). Never the `prevResult` a config carries:
    /// this one alone tells a sandbox which pod interfaces and addresses
    /// are the attachment's.
    pub known_prev: Option<&'a serde_json::Value>,
    pub cni_args: &'a str,
    /// Directories searched for the plugin, in order; also its CNI_PATH.
    pub path: &'a [PathBuf],
    /// Further environment for an exec'd plugin.
    pub extra_env: &'a [(String, String)],
    pub stdin: &'a [u8],
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {plugin_type:?} not found in {}", dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":"))]
    NotFound {
        plugin_type: String,
        dirs: Vec<PathBuf>,
    },
    #[error("{0}")]
    Cni(CniError),
    #[error("exec of {plugin:?} failed: {source}")]
    Spawn {
        plugin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin {plugin:?} exited with {status} and no CNI error: {stderr}")]
    Failed {
        plugin: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("plugin {plugin:?} printed invalid JSON: {reason}")]
    BadOutput { plugin: PathBuf, reason: String },
}

impl PluginError {
    /// The CNI error to report; a delegate's own CNI error keeps its code.
    pub fn into_cni(self) -> CniError {
        match self {
            PluginError::Cni(e) => e,
            e @ PluginError::NotFound { .. } => CniError::new(Code::InvalidConfig, e.to_string()),
            e @ PluginError::BadOutput { .. } => CniError::new(Code::Decode, e.to_string()),
            e => CniError::new(Code::Internal, e.to_string()),
        }
    }
}

/// Runs one plugin. The real backend execs binaries; tests use a recording one.
pub trait PluginRunner {
    /// Returns the plugin's stdout on success.
    fn run(&self, call: &PluginCall<'_>) -> Result<Vec<u8>, PluginError>;
}
