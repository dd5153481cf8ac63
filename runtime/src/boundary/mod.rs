//! The one typed boundary where a config value becomes a host resource.
//!
//! Every string in a NAD, a pod annotation or a module's output is hostile
//! input ([`docs/threat-model.md`]). Where such a value must select
//! something on the host, it passes exactly one of these, each bounded by
//! what the admin set in the multus conf ([`Bounds`]):
//! - a plugin type: [`PluginType`], a plain file name, before any module
//!   lookup, grants file, shim link or exec;
//! - a store directory: [`store_dir`], beneath `storeRoots`, no symlink
//!   followed below the root;
//! - a file a config names: [`file::read`], beneath an admin root, a
//!   regular file, size-capped, within a deadline, never blocking;
//! - credentials: [`kubeconfig::choose`], only multus's own or the admin's
//!   `kubeconfigAllowlist`, loaded without running a command.
//!
//! Nothing else in the runtime turns a config string into a path, a
//! binary, a file read, a credential or a grant.

pub mod bounds;
pub mod file;
pub mod kubeconfig;
pub mod plugin_type;
mod store;

pub use bounds::Bounds;
pub use plugin_type::PluginType;
pub use store::store_dir;

use crate::cni::{CniError, Code};

/// `key` as Go's `encoding/json` matches it to a field: case-insensitively,
/// with Unicode's simple folds (`ſ` is `s`, the Kelvin sign `k`). Native
/// plugins read their configs this way, so a key that folds to one multus
/// decides on (`type`, `ipam`, `prevResult`) is that key to them.
pub fn go_fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// A config value the boundary refused: the key it came from and why.
#[cfg(test)]
mod tests {
    #[test]
    fn keys_fold_as_go_reads_them() {
        for k in [
            "prevResult",
            "PrevResult",
            "prevresult",
            "prevReſult",
            "PREVRESULT",
        ] {
            assert_eq!(super::go_fold(k), "prevresult", "{k}");
        }
        assert_eq!(super::go_fold("IPAM"), "ipam");
        assert_ne!(super::go_fold("ipam2"), "ipam");
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {msg}")]
pub struct Refused {
    pub key: String,
    pub msg: String,
}

impl Refused {
    pub fn new(key: impl Into<String>, msg: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            msg: msg.into(),
        }
    }
}

impl From<Refused> for CniError {
    /// A refused value is a bad config (code 7).
    fn from(r: Refused) -> Self {
        CniError::new(Code::InvalidConfig, r.to_string())
    }
}
