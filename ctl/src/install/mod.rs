//! `multusctl install`: puts multus on a node from a DaemonSet pod that has
//! the host's paths mounted under a root (default `/host`).
//!
//! The work is a reconcile: read the inputs (the master CNI conf, the
//! service account, `--config`, flags), compute the files the host should
//! have (`plan`), write the ones that differ (`apply`). `--once` does it
//! once; the watching mode does it every interval, so a rotated token, a
//! changed master or a conf another CNI deleted is put right within a tick.

pub mod binaries;
pub mod conf;
pub mod kubeconfig;
pub mod nad;
pub mod owner;
pub mod plan;
pub mod settings;
pub mod watch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use multus::config::master::MasterError;
use multus::k8s::client::KubeError;

/// Where the master conf ends up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MasterMode {
    /// The master stays where it is; multus references it by path.
    Keep,
    /// The master is moved, unaltered, into `confDir` and referenced by name
    /// (xcluster's multus-installer); a NAD for it is created.
    Move,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Where the host's filesystem is mounted ("/" installs on this machine).
    /// Paths written into confs are host paths, without this prefix.
    #[arg(long, value_name = "DIR", default_value = "/host")]
    pub host_root: PathBuf,
    /// The multus CNI binary to install [default: `multus` beside this executable].
    #[arg(long, value_name = "FILE")]
    pub multus_bin: Option<PathBuf>,
    /// Directory of `.wasm` plugins to install into `wasmPluginDir`
    /// [default: `../share/multus/plugins` from this executable, if present].
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// Install the plugins without precompiling them into `wasmCacheDir`.
    #[arg(long)]
    pub skip_precompile: bool,
    /// The host's CNI binary directory.
    #[arg(long, value_name = "DIR", default_value = "/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,
    /// The host's CNI conf directory, where the runtime looks.
    #[arg(long, value_name = "DIR", default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// The master conf's file name in the CNI conf directory [default: the
    /// first `.conf`/`.conflist` in lexical order that is not multus's].
    #[arg(long, value_name = "NAME")]
    pub master_cni_file: Option<String>,
    /// How the master is referenced.
    #[arg(long, value_enum, default_value = "keep")]
    pub master_mode: MasterMode,
    /// Create a NAD for the master in `multusNamespace` (always in `move` mode).
    #[arg(long)]
    pub master_nad: bool,
    /// How long to wait for a master conf (and the readiness indicator file).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub master_wait: Duration,
    /// Wait for this host file before picking the master; written into the
    /// conf as `readinessindicatorfile`.
    #[arg(long, value_name = "FILE")]
    pub readiness_indicator_file: Option<PathBuf>,
    /// A JSON object of multus conf keys (e.g. a mounted ConfigMap); flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The installer pod's service-account mount (token, ca.crt).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount"
    )]
    pub serviceaccount_dir: PathBuf,
    /// Name multus's network after the master instead of `multus-cni-network`.
    #[arg(long)]
    pub override_network_name: bool,
    /// `namespaceIsolation` of the multus conf.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub namespace_isolation: Option<bool>,
    /// `globalNamespaces` of the multus conf (comma list).
    #[arg(long, value_name = "LIST")]
    pub global_namespaces: Option<String>,
    /// `multusNamespace` of the multus conf (also where the master's NAD goes).
    #[arg(long, value_name = "NAMESPACE")]
    pub multus_namespace: Option<String>,
    /// `logLevel` of the multus conf.
    #[arg(long, value_name = "LEVEL")]
    pub multus_log_level: Option<String>,
    /// `logFile` of the multus conf (a host path).
    #[arg(long, value_name = "FILE")]
    pub multus_log_file: Option<String>,
    /// `logToStderr` of the multus conf.
    #[arg(long, value_name = "BOOL")]
    pub multus_log_to_stderr: Option<bool>,
    /// `nodeName` of the multus conf: the Kubernetes node this is (the
    /// DaemonSet gives `spec.nodeName`), which a thin multus, exec'd with
    /// the runtime's environment, cannot learn otherwise when the kubelet's
    /// node name is not the host name (node-sliced cluster IPAM needs it).
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Install once and exit (an init container).
    #[arg(long, conflicts_with = "check")]
    pub once: bool,
    /// Thick mode: install `multus-shim` (from beside this executable) with
    /// `multus` and `multusctl`, and the plugins, then exit: `multus-daemon`
    /// writes and keeps the conf, so no conf or kubeconfig is written.
    #[arg(long, conflicts_with_all = ["check", "cleanup_on_exit"])]
    pub thick: bool,
    /// Only compare the host with what would be written: exit 0 when it is
    /// up to date, 1 otherwise (a readiness probe).
    #[arg(long)]
    pub check: bool,
    /// On SIGTERM, remove multus's conf and move a moved master back, when
    /// the installer's DaemonSet is being deleted (asked of the API with
    /// the pod named by `POD_NAME`/`POD_NAMESPACE`; always when they are
    /// unset), not in a rolling update.
    #[arg(long)]
    pub cleanup_on_exit: bool,
    /// How often the watching installer re-checks its inputs.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub watch_interval: Duration,
}

impl Options {
    /// The path of host path `p` as this process sees it.
    pub fn host(&self, p: &Path) -> PathBuf {
        multus::fsutil::under_root(&self.host_root, p)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    /// The master conf is missing pieces or unreadable: the node's CNI may
    /// still be writing it, so a waiting installer tries again.
    #[error("{0}")]
    Master(String),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error("gave up after {} waiting for {what}", humantime::format_duration(*waited))]
    Timeout { waited: Duration, what: String },
}

impl From<MasterError> for InstallError {
    fn from(e: MasterError) -> Self {
        match e {
            MasterError::Unfinished(msg) => Self::Master(msg),
            MasterError::List { dir, source } => Self::io("listing", &dir, source),
        }
    }
}

impl InstallError {
    pub fn io(what: &str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            what: what.to_string(),
            path: path.to_path_buf(),
            source,
        }
    }
}
