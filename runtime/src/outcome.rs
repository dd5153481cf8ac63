//! What a run of the binary prints and returns, shared by the CNI entry
//! (`app`) and the IPAM shim (`shim`).

use serde_json::Value;

use crate::cni::{version, CniError};

/// What to print on stdout and the exit status.
pub struct Outcome {
    pub stdout: String,
    pub status: i32,
}

pub fn failure(e: &CniError, cni_version: &str) -> Outcome {
    Outcome {
        stdout: e.to_json(cni_version),
        status: 1,
    }
}

/// The version to answer an unparsable request in: the one stdin asks for
/// when it is readable and supported, else the newest.
pub fn error_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .filter(|v| version::SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| version::CURRENT.to_string())
}

/// The answer to VERSION.
pub fn version_info() -> Outcome {
    Outcome {
        stdout: serde_json::json!({"cniVersion": version::CURRENT, "supportedVersions": version::SUPPORTED})
            .to_string(),
        status: 0,
    }
}
