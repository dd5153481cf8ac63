//! Chooses, per plugin, between wasm (its `<type>.wasm` is installed) and
//! exec; a native plugin whose `ipam.type` is a wasm module gets the shim
//! directory first in its CNI_PATH so its IPAM exec re-enters multus.

use std::path::Path;

use serde_json::{Map, Value};

use super::native::NativeRunner;
use super::wasm::{self, Role};
use super::{PluginCall, PluginError, PluginRunner};
use crate::boundary::plugin_type::ipam_type;
use crate::cni::{CniError, Code};
use crate::config::WasmConf;
use crate::shim;

pub struct Dispatch<'a> {
    pub wasm: &'a WasmConf,
    /// Where native plugins run (the daemon's `chrootDir`).
    pub chroot: Option<&'a Path>,
    /// The CNI binary dir: with `chroot`, the IPAM shim links to the
    /// `multus` installed there, the one the chrooted plugin can exec.
    pub bin_dir: &'a Path,
}

impl Dispatch<'_> {
    fn native(&self) -> NativeRunner<'_> {
        NativeRunner {
            chroot: self.chroot,
        }
    }
}

impl PluginRunner for Dispatch<'_> {
    fn run(&self, call: &PluginCall<'_>) -> Result<Vec<u8>, PluginError> {
        // The IPAM type becomes a module lookup, a shim link or a native
        // plugin's exec: checked before any of them.
        let ipam = match serde_json::from_slice::<Map<String, Value>>(call.stdin) {
            Ok(c) => ipam_type(&c, "ipam.type").map_err(|r| PluginError::Cni(r.into()))?,
            Err(_) => None,
        };
        if let Some(module) = self.wasm.module(call.plugin_type) {
            // An IPAM plugin run directly as a conflist entry (its `ipam`
            // names itself) gets the ipam role: its store and, for a
            // cluster IPAM, the cluster; never the pod's network.
            let role = match &ipam {
                Some(t) if t == call.plugin_type => Role::Ipam,
                _ => Role::Chained,
            };
            return wasm::run(self.wasm, role, &module, call).map(|(out, _)| out);
        }
        match ipam.filter(|t| self.wasm.module(t).is_some()) {
            None => self.native().run(call),
            Some(ipam) => {
                let me = match self.chroot {
                    Some(_) => self.bin_dir.join("multus"),
                    None => std::env::current_exe().map_err(|e| {
                        PluginError::Cni(CniError::new(
                            Code::Io,
                            format!("wasm IPAM shim: locating the multus binary: {e}"),
                        ))
                    })?,
                };
                let dir = shim::prepare(self.wasm, &ipam, &me).map_err(PluginError::Cni)?;
                let mut path = vec![dir];
                path.extend_from_slice(call.path);
                let env = shim::env(self.wasm);
                self.native().run(&PluginCall {
                    path: &path,
                    extra_env: &env,
                    ..call.clone()
                })
            }
        }
    }
}
