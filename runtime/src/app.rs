//! One run of the `multus` binary: environment and stdin in, stdout and exit
//! status out.

use std::io::Read;

use serde_json::Value;

use crate::cni::{version, CniEnv, CniError, Code, Command};
use crate::config::MultusConf;
use crate::delegate::dispatch::Dispatch;
use crate::invoke::Invocation;
use crate::logging;

/// What to print on stdout and the exit status.
pub struct Outcome {
    pub stdout: String,
    pub status: i32,
}

pub(crate) fn failure(e: &CniError, cni_version: &str) -> Outcome {
    Outcome {
        stdout: e.to_json(cni_version),
        status: 1,
    }
}

/// The version to answer an unparsable request in: the one stdin asks for
/// when it is readable and supported, else the newest.
pub(crate) fn error_version(stdin: &[u8]) -> String {
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

fn version_info() -> String {
    serde_json::json!({"cniVersion": version::CURRENT, "supportedVersions": version::SUPPORTED})
        .to_string()
}

/// What the binary is, printed on stderr when it is run by hand (no
/// `CNI_COMMAND`), as the reference plugins do.
pub fn about() -> String {
    format!(
        "multus-wasm: the Multus CNI meta-plugin v{}\nCNI protocol versions supported: {}",
        env!("CARGO_PKG_VERSION"),
        version::SUPPORTED.join(", ")
    )
}

/// Upstream's `multus -version` line.
pub fn version_line() -> String {
    format!(
        "multus-wasm version:v{}, wit:{}, cni:{}",
        env!("CARGO_PKG_VERSION"),
        multus_host_functions::WIT_PACKAGE,
        version::CURRENT
    )
}

/// Runs one CNI command with the process environment and stdin.
pub fn run() -> Outcome {
    let env = match CniEnv::from_vars(|k| std::env::var(k).ok()) {
        Ok(env) => env,
        Err(e) => return failure(&e, version::CURRENT),
    };
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        return failure(
            &CniError::new(Code::Io, format!("reading stdin: {e}")),
            version::CURRENT,
        );
    }
    run_with(&env, &stdin)
}

pub fn run_with(env: &CniEnv, stdin: &[u8]) -> Outcome {
    if env.command == Command::Version {
        return Outcome {
            stdout: version_info(),
            status: 0,
        };
    }
    let conf = match MultusConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => {
            return failure(&e, &error_version(stdin));
        }
    };
    logging::init(&conf);
    let runner = Dispatch { wasm: &conf.wasm };
    let inv = Invocation {
        env,
        conf: &conf,
        runner: &runner,
    };
    let done = match env.command {
        Command::Add => inv.add().map(|r| r.to_string()),
        Command::Del => inv.del().map(|_| String::new()),
        Command::Check => inv.check().map(|_| String::new()),
        Command::Status => inv.status().map(|_| String::new()),
        Command::Gc => inv.gc().map(|_| String::new()),
        Command::Version => unreachable!("answered above"),
    };
    match done {
        Ok(stdout) => Outcome { stdout, status: 0 },
        Err(e) => {
            tracing::error!(command = %env.command, code = e.code, "{e}");
            failure(&e, &conf.cni_version)
        }
    }
}
