//! The IPAM an interface plugin delegates to (`links.ipam-*`): the
//! config's `ipam.type`, run in-process when its module is installed, else
//! exec'd from `CNI_PATH` as the reference plugins do, with the interface
//! plugin's own request (container, netns, ifname, args, config).

use std::path::PathBuf;

use multus_host_functions::bindings::multus::plugin::types as wit;
use multus_host_functions::links::IpamBackend;
use multus_host_functions::WitError;
use serde_json::Value;

use super::{convert, Role};
use crate::boundary::PluginType;
use crate::cni::result::CniResult;
use crate::cni::Command;
use crate::config::WasmConf;
use crate::delegate::native::NativeRunner;
use crate::delegate::{PluginCall, PluginError, PluginRunner};

/// One interface-plugin call's request, kept for its IPAM calls.
pub struct DelegatedIpam {
    /// A dry run's recording backends: a wasm IPAM runs against them too,
    /// a native one is not exec'd.
    pub dry_run: Option<super::Backends>,
    pub wasm: WasmConf,
    pub ipam_type: PluginType,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub cni_args: String,
    pub path: Vec<PathBuf>,
    pub stdin: Vec<u8>,
}

fn wit_error(e: PluginError) -> WitError {
    match e {
        PluginError::Cni(c) => WitError {
            code: c.code,
            msg: c.msg,
            details: c.details,
        },
        other => WitError {
            code: 999,
            msg: other.to_string(),
            details: String::new(),
        },
    }
}

impl DelegatedIpam {
    pub(super) fn run(&self, command: Command) -> Result<Vec<u8>, WitError> {
        let call = PluginCall {
            plugin_type: &self.ipam_type,
            command,
            container_id: &self.container_id,
            netns: &self.netns,
            ifname: &self.ifname,
            known_prev: None,
            cni_args: &self.cni_args,
            path: &self.path,
            extra_env: &[],
            stdin: &self.stdin,
        };
        let out = match (self.wasm.module(&self.ipam_type), &self.dry_run) {
            (Some(module), Some(b)) => {
                super::run_with(&self.wasm, Role::Ipam, &module, &call, b.recording_clone())
                    .map(|(o, _)| o)
            }
            (Some(module), None) => {
                super::run(&self.wasm, Role::Ipam, &module, &call).map(|(o, _)| o)
            }
            (None, Some(_)) => Err(PluginError::Cni(crate::cni::CniError::new(
                crate::cni::Code::Internal,
                format!(
                    "a dry run does not exec the native IPAM {:?}; install its module to see it",
                    self.ipam_type
                ),
            ))),
            (None, None) => NativeRunner { chroot: None }.run(&call),
        };
        out.map_err(wit_error)
    }
}

impl IpamBackend for DelegatedIpam {
    fn add(&mut self) -> Result<wit::CniResult, WitError> {
        let out = self.run(Command::Add)?;
        let bad = |m: String| WitError {
            code: 999,
            msg: format!("IPAM {:?} returned {m}", self.ipam_type),
            details: String::new(),
        };
        let v: Value = serde_json::from_slice(&out).map_err(|e| bad(format!("no JSON: {e}")))?;
        let version = v
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("1.1.0");
        let r = CniResult::parse(&v, version).map_err(|e| bad(e.msg))?;
        Ok(convert::to_wit(&r))
    }

    fn del(&mut self) -> Result<(), WitError> {
        self.run(Command::Del).map(drop)
    }

    fn check(&mut self) -> Result<(), WitError> {
        self.run(Command::Check).map(drop)
    }
}
