//! One run of the `multus` binary: environment and stdin in, stdout and exit
//! status out.

use std::io::Read;
use std::path::Path;

use crate::cni::{version, CniEnv, CniError, Code, Command};
use crate::config::{MultusConf, NetworkConfig};
use crate::delegate::dispatch::Dispatch;
use crate::invoke::hotplug::Attributes;
use crate::invoke::pod_writes::AfterResult;
use crate::invoke::Invocation;
use crate::k8s::api::{Connect, FromKubeconfig};
use crate::logging;
use crate::outcome::{error_version, failure, version_info, Outcome};

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
    run_with(&env, &stdin, &Host::THIN)
}

/// What the process serving a request brings to it.
pub struct Host<'a> {
    /// The API client: built per call from the conf's kubeconfig (thin), or
    /// the daemon's shared, cached one.
    pub cluster: &'a dyn Connect,
    /// Native delegates run chrooted here (the daemon's `chrootDir`).
    pub chroot: Option<&'a Path>,
    /// Where ADD leaves the pod's API writes for after the answer (the
    /// daemon's); `None`: written before it.
    pub after_result: Option<&'a AfterResult>,
}

impl Host<'static> {
    /// The thin `multus` binary.
    pub const THIN: Self = Self {
        cluster: &FromKubeconfig,
        chroot: None,
        after_result: None,
    };
}

/// Runs one CNI command for `host`.
pub fn run_with(env: &CniEnv, stdin: &[u8], host: &Host) -> Outcome {
    if env.command == Command::Version {
        return version_info();
    }
    with_invocation(env, stdin, host, |inv| match env.command {
        Command::Add => inv.add().map(|r| r.to_string()),
        Command::Del => inv.del().map(|_| String::new()),
        Command::Check => inv.check().map(|_| String::new()),
        Command::Status => inv.status().map(|_| String::new()),
        Command::Gc => inv.gc().map(|_| String::new()),
        Command::Version => unreachable!("answered above"),
    })
}

/// Hot-plug (`/delegate`): the network `delegate` (its own config) as
/// `CNI_IFNAME` of a running pod, under the multus keys of `conf`.
pub fn delegate(
    env: &CniEnv,
    conf: &[u8],
    delegate: &[u8],
    attrs: &Attributes,
    host: &Host,
) -> Outcome {
    with_invocation(env, conf, host, |inv| {
        let net = NetworkConfig::from_bytes(delegate, "the delegate request's config")?;
        match env.command {
            Command::Add => inv.hotplug_add(&net, attrs).map(|r| r.to_string()),
            Command::Del => inv.hotplug_del(&net).map(|_| String::new()),
            Command::Check => inv.hotplug_check().map(|_| String::new()),
            other => Err(CniError::new(
                Code::InvalidConfig,
                format!("a delegate request takes ADD, DEL or CHECK, not {other}"),
            )),
        }
    })
}

/// Parses the multus conf, sets up logging and runs `f` on the invocation.
fn with_invocation(
    env: &CniEnv,
    conf: &[u8],
    host: &Host,
    f: impl FnOnce(&Invocation) -> Result<String, CniError>,
) -> Outcome {
    let conf_bytes = conf;
    let conf = match MultusConf::parse(conf_bytes) {
        Ok(c) => c,
        Err(e) => {
            return failure(&e, &error_version(conf_bytes));
        }
    };
    logging::init(&conf);
    for (key, instead) in &conf.unimplemented {
        tracing::warn!(
            key,
            "the multus conf sets {key:?}, which multus-wasm does not implement: {instead}"
        );
    }
    let runner = Dispatch {
        wasm: &conf.wasm,
        chroot: host.chroot,
        bin_dir: &conf.bin_dir,
    };
    let inv = Invocation {
        env,
        conf: &conf,
        runner: &runner,
        cluster: host.cluster,
        after_result: host.after_result,
    };
    match f(&inv) {
        Ok(stdout) => Outcome { stdout, status: 0 },
        Err(e) => {
            tracing::error!(command = %env.command, code = e.code, "{e}");
            failure(&e, &conf.cni_version)
        }
    }
}
