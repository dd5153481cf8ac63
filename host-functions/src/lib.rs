//! The host side of the `multus:plugin` WIT imports. Each capability sits
//! behind a trait with a real backend (the kernel, the disk) and a
//! recording backend that records the operations and changes nothing.
//! What a guest may touch is decided per invocation by a [`grant::Grant`].

pub mod beneath;
pub mod bindings;
pub mod cluster;
pub mod flock;
pub mod grant;
pub mod links;
pub mod log;
pub mod names;
pub mod netlink;
pub mod netns;
pub mod routing;
pub mod state;
pub mod store;
pub mod sysctl;
pub mod text;
pub mod turns;

use std::time::Duration;

pub use bindings::multus::plugin::types::CniError as WitError;

/// The WIT package this host implements (every file of `wit/` declares it).
pub const WIT_PACKAGE: &str = "multus:plugin@0.1.6";

/// Why a host call failed. Denials are the sandbox saying no.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("denied: {0}")]
    Denied(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{call} timed out after {}ms", after.as_millis())]
    Timeout { call: String, after: Duration },
    #[error("netns: {0}")]
    Netns(String),
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("I/O: {0}")]
    Io(String),
}

impl HostError {
    /// The CNI code a guest sees: 11 for timeouts (retry may help), 7 for
    /// what the config asked wrongly, 999 for the rest.
    pub fn to_wit(&self, call: &str) -> WitError {
        let code = match self {
            HostError::Timeout { .. } => 11,
            HostError::Denied(_) | HostError::Invalid(_) | HostError::NotFound(_) => 7,
            _ => 999,
        };
        WitError {
            code,
            msg: format!("host call {call}: {self}"),
            details: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wit_package_matches_the_wit_files() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let want = format!("package {};", super::WIT_PACKAGE);
            assert!(text.lines().any(|l| l.trim() == want), "{}", path.display());
        }
    }
}
