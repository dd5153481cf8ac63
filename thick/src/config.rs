//! The daemon config (`-config`, upstream's `daemon-config.json`): the
//! daemon's own keys, and multus conf keys that override the conf each
//! shim sends, as upstream's `overrideCNIConfigWithServerConfig` does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use multus::cni::{CniError, Code};
use multus::config::multus::KEYS;
use multus::config::LogLevel;
use multus::config::NetworkConfig;

use crate::shim_conf::Source;

pub const DEFAULT_PATH: &str = "/etc/cni/net.d/multus.d/daemon-config.json";
pub const DEFAULT_SOCKET_DIR: &str = "/run/multus/";

/// `requestTimeoutMs`'s default. A shim's request may wait for the
/// container's turn and then for an admission turn (`queueTimeoutMs` each,
/// 30 s by default) before it runs, and the shim gives up on the daemon
/// after `daemonRequestTimeoutMs` (120 s by default, the kubelet's own CRI
/// deadline). 2 × 30 s + 50 s leaves 10 s, so the runtime gets the daemon's
/// own answer (naming the pod and what ran too long) rather than the shim's
/// "no answer" (which cannot say what happened); 50 s is still far beyond
/// any healthy ADD (milliseconds, or a few seconds with slow IPAM).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(50);

/// Upstream daemon keys this daemon does not implement yet, and why.
const NOT_YET: &[(&str, &str)] = &[
    ("enablePprof", "not implemented"),
    ("perNodeCertificate", "not implemented: use a kubeconfig"),
    (
        "forceCNIVersion",
        "the daemon never rewrites the master conf: fix its cniVersion at the source",
    ),
];

/// Requests run at once unless `connectionLimit` says: four per CPU, at
/// least 8 and at most 64. An ADD is mostly the delegates' CPU (plugin
/// execs, netlink), so more at once finish no sooner and each holds a
/// thread whose stack stays resident: 50 pods at once on 2 CPUs, 32 slots
/// ran ADDs in 464 ms median at a 24.1 MiB peak, 8 slots in 378 ms at
/// 18.3 MiB (`scripts/bench --concurrency-only`). A slow API server makes
/// requests wait instead; those past `queueTimeoutMs` are code 11, which
/// the kubelet retries.
pub fn default_connection_limit() -> usize {
    let cpus = std::thread::available_parallelism().map_or(2, usize::from);
    (4 * cpus).clamp(8, 64)
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// Where `multus.sock` goes (`socketDir`).
    pub socket_dir: PathBuf,
    /// Requests run at once (`connectionLimit`); the rest wait.
    pub connection_limit: usize,
    /// How long a request may wait for its turn before code 11
    /// (`queueTimeoutMs`, ours).
    pub queue_timeout: Duration,
    /// How long an admitted request may run before the daemon answers it
    /// with an error and frees its admission turn (`requestTimeoutMs`,
    /// ours): config apply, the API calls and every delegate. Work that
    /// cannot be stopped keeps the container's turn until it ends.
    pub request_timeout: Duration,
    /// Where `/metrics` is served (`metricsPort`, all addresses as upstream).
    pub metrics_port: Option<u16>,
    /// ADD answers before writing the pod's network-status and events,
    /// which follow within the container's turn (`networkStatusAfterResult`,
    /// ours, default true).
    pub status_after_result: bool,
    /// Multus conf keys that replace the shim's.
    pub overrides: Map<String, Value>,
    /// The shim conf to write (`multusConfigFile`), and where
    /// (`cniConfigDir`, default `/etc/cni/net.d`).
    pub shim_conf: Option<(Source, PathBuf)>,
    /// The root native delegates are exec'd in (`chrootDir`: the host's
    /// root, mounted in the daemon's container).
    pub chroot_dir: Option<PathBuf>,
    /// The daemon's own logging (`logLevel`, `logFile`, `logToStderr`, as
    /// upstream's daemon reads them).
    pub log: DaemonLog,
}

/// Where and how much the daemon logs.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonLog {
    /// `logLevel`; unset, the daemon logs at `verbose` (info): a daemon
    /// says what it serves, where upstream's thin default (`panic`) says
    /// nothing.
    pub level: LogLevel,
    pub file: Option<PathBuf>,
    /// `logToStderr`, default true.
    pub to_stderr: bool,
}

impl DaemonLog {
    fn from_overrides(o: &Map<String, Value>) -> Result<Self, String> {
        let level = match o.get("logLevel") {
            None | Some(Value::Null) => LogLevel::Verbose,
            Some(Value::String(s)) if s.is_empty() => LogLevel::Verbose,
            Some(Value::String(s)) => LogLevel::parse(s).ok_or_else(|| {
                format!("\"logLevel\" {s:?} is not debug, verbose, info, error or panic")
            })?,
            Some(_) => return Err("\"logLevel\" must be a string".into()),
        };
        let file = match o.get("logFile") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(PathBuf::from(s)),
            Some(_) => return Err("\"logFile\" must be a path".into()),
        };
        let to_stderr = match o.get("logToStderr") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("\"logToStderr\" must be a boolean".into()),
        };
        Ok(Self {
            level,
            file,
            to_stderr,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("daemon config {path}: {msg}")]
pub struct ConfigError {
    pub path: String,
    pub msg: String,
}

impl DaemonConfig {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        Self::parse(&bytes).map_err(|msg| ConfigError {
            path: path.display().to_string(),
            msg,
        })
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let object: Map<String, Value> = match serde_json::from_slice(bytes) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err("not a JSON object".into()),
            Err(e) => return Err(format!("invalid JSON: {e}")),
        };
        let mut c = Self {
            socket_dir: DEFAULT_SOCKET_DIR.into(),
            connection_limit: default_connection_limit(),
            queue_timeout: Duration::from_secs(30),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            metrics_port: None,
            status_after_result: true,
            overrides: Map::new(),
            shim_conf: None,
            chroot_dir: None,
            log: DaemonLog {
                level: LogLevel::Verbose,
                file: None,
                to_stderr: true,
            },
        };
        let (mut file, mut auto_dir, mut master, mut conf_dir, mut override_name) = (
            None::<String>,
            None::<String>,
            None::<String>,
            None::<String>,
            false,
        );
        let text = |k: &str, v: &Value| -> Result<Option<String>, String> {
            match v {
                Value::Null => Ok(None),
                Value::String(s) if s.is_empty() => Ok(None),
                Value::String(s) => Ok(Some(s.clone())),
                _ => Err(format!("{k:?} must be a string")),
            }
        };
        for (k, v) in object {
            let is = |name: &str| k.eq_ignore_ascii_case(name);
            if is("socketDir") {
                c.socket_dir = v
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .ok_or("\"socketDir\" must be a path")?
                    .into();
            } else if is("connectionLimit") {
                c.connection_limit = v
                    .as_u64()
                    .filter(|n| *n > 0)
                    .ok_or("\"connectionLimit\" must be a number above 0")?
                    as usize;
            } else if is("metricsPort") {
                let port = v.as_u64().filter(|p| (1..=65535).contains(p));
                c.metrics_port = Some(port.ok_or("\"metricsPort\" must be a port number")? as u16);
            } else if is("queueTimeoutMs") {
                c.queue_timeout =
                    Duration::from_millis(v.as_u64().ok_or("\"queueTimeoutMs\" must be a number")?);
            } else if is("requestTimeoutMs") {
                c.request_timeout = Duration::from_millis(
                    v.as_u64()
                        .filter(|n| *n > 0)
                        .ok_or("\"requestTimeoutMs\" must be a number above 0")?,
                );
            } else if is("networkStatusAfterResult") {
                c.status_after_result = v
                    .as_bool()
                    .ok_or("\"networkStatusAfterResult\" must be a boolean")?;
            } else if is("multusConfigFile") {
                file = text("multusConfigFile", &v)?;
            } else if is("multusAutoconfigDir") {
                auto_dir = text("multusAutoconfigDir", &v)?;
            } else if is("multusMasterCNI") {
                master = text("multusMasterCNI", &v)?;
            } else if is("chrootDir") {
                c.chroot_dir = text("chrootDir", &v)?.map(PathBuf::from);
            } else if is("cniConfigDir") {
                conf_dir = text("cniConfigDir", &v)?;
            } else if is("overrideNetworkName") {
                override_name = v
                    .as_bool()
                    .ok_or("\"overrideNetworkName\" must be a boolean")?;
            } else if let Some((name, why)) = NOT_YET.iter().find(|(n, _)| is(n)) {
                let empty = v.is_null() || v == Value::Bool(false) || v.as_str() == Some("");
                if !empty {
                    return Err(format!("{name:?} is not supported: {why}"));
                }
            } else if let Some(key) = KEYS.iter().find(|key| is(key)) {
                c.overrides.insert(key.to_string(), v);
            } else {
                return Err(format!("unknown key {k:?}"));
            }
        }
        c.log = DaemonLog::from_overrides(&c.overrides)?;
        let conf_dir = PathBuf::from(conf_dir.unwrap_or_else(|| "/etc/cni/net.d".into()));
        c.shim_conf = file.map(|f| {
            let source = if f == "auto" {
                Source::Auto {
                    dir: auto_dir
                        .map(PathBuf::from)
                        .unwrap_or_else(|| conf_dir.clone()),
                    master,
                    override_name,
                }
            } else {
                Source::File(f.into())
            };
            (source, conf_dir)
        });
        Ok(c)
    }

    /// The daemon's own kubeconfig (`kubeconfig`), for its shared client.
    pub fn kubeconfig(&self) -> Option<PathBuf> {
        self.overrides
            .get("kubeconfig")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    }

    pub fn socket(&self) -> PathBuf {
        self.socket_dir.join(crate::protocol::SOCKET)
    }

    /// The multus conf a `/delegate` request runs under: this config's
    /// multus keys around the one network it carries.
    pub fn delegate_conf(&self, delegate: &[u8]) -> Result<Vec<u8>, CniError> {
        let net = NetworkConfig::from_input(delegate, "the delegate request's config")?;
        let conf = serde_json::json!({"cniVersion": net.cni_version, "name": "multus-delegate",
            "type": "multus", "delegates": [serde_json::from_slice::<Value>(delegate).expect("parsed above")]});
        self.apply(&serde_json::to_vec(&conf).expect("JSON values serialize"))
            .map_err(|msg| CniError::new(Code::Decode, msg))
    }

    /// The wasm settings the daemon config's keys give (`wasmPluginDir`,
    /// `wasmCacheDir`, `wasmPlugins`, else their defaults): what the daemon
    /// warms at start.
    pub fn wasm(&self) -> Result<multus::config::WasmConf, String> {
        let bytes = serde_json::to_vec(&self.overrides).expect("a JSON object");
        multus::config::keys::FoldedObject::parse(&bytes, "the daemon config")
            .and_then(|o| multus::config::WasmConf::parse(&o))
            .map_err(|e| e.to_string())
    }

    /// The shim's conf with this config's multus keys put over it.
    pub fn apply(&self, conf: &[u8]) -> Result<Vec<u8>, String> {
        if self.overrides.is_empty() {
            return Ok(conf.to_vec());
        }
        let mut v: Map<String, Value> =
            serde_json::from_slice(conf).map_err(|e| format!("the shim's conf: {e}"))?;
        for (k, val) in &self.overrides {
            v.retain(|existing, _| !existing.eq_ignore_ascii_case(k));
            v.insert(k.clone(), val.clone());
        }
        Ok(serde_json::to_vec(&v).expect("JSON values serialize"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_own_logging() {
        let c = DaemonConfig::parse(br#"{}"#).unwrap();
        assert_eq!(c.log.level, LogLevel::Verbose);
        assert!(c.log.to_stderr && c.log.file.is_none());
        let c = DaemonConfig::parse(
            br#"{"logLevel":"error","logFile":"/var/log/multus.log","logToStderr":false}"#,
        )
        .unwrap();
        assert_eq!(c.log.level, LogLevel::Error);
        assert_eq!(c.log.file, Some(PathBuf::from("/var/log/multus.log")));
        assert!(!c.log.to_stderr);
        let e = DaemonConfig::parse(br#"{"logLevel":"loud"}"#).unwrap_err();
        assert!(e.contains("logLevel") && e.contains("loud"), "{e}");
        assert!(DaemonConfig::parse(br#"{"logToStderr":"yes"}"#).is_err());
    }

    #[test]
    fn connection_limit_scales_with_cpus() {
        let c = DaemonConfig::parse(br#"{}"#).unwrap();
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        assert_eq!(c.connection_limit, (4 * cpus).clamp(8, 64));
        assert!(DaemonConfig::parse(br#"{"connectionLimit":0}"#).is_err());
    }

    #[test]
    fn keys_and_defaults() {
        let c = DaemonConfig::parse(br#"{"socketDir":"/host/run/multus/","connectionLimit":8,"LogLevel":"debug","cniDir":"/var/lib/cni/multus","chrootDir":""}"#).unwrap();
        assert_eq!(c.socket(), PathBuf::from("/host/run/multus/multus.sock"));
        assert_eq!(c.connection_limit, 8);
        assert_eq!(c.overrides["logLevel"], "debug");
        let conf = c
            .apply(br#"{"type":"multus-shim","loglevel":"error","cniDir":"/x"}"#)
            .unwrap();
        let v: Value = serde_json::from_slice(&conf).unwrap();
        assert_eq!(v["logLevel"], "debug");
        assert!(v.get("loglevel").is_none());
        assert_eq!(v["cniDir"], "/var/lib/cni/multus");
        let d = DaemonConfig::parse(b"{}").unwrap();
        assert_eq!(d.socket(), PathBuf::from("/run/multus/multus.sock"));
    }

    #[test]
    fn request_timeout() {
        let d = DaemonConfig::parse(b"{}").unwrap();
        assert_eq!(d.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        // Both queue waits and the deadline end before the shim's own
        // default deadline (daemonRequestTimeoutMs, 120 s).
        assert!(2 * d.queue_timeout + d.request_timeout < Duration::from_secs(120));
        let c = DaemonConfig::parse(br#"{"requestTimeoutMs":1500,"queueTimeoutMs":200}"#).unwrap();
        assert_eq!(c.request_timeout, Duration::from_millis(1500));
        assert_eq!(c.queue_timeout, Duration::from_millis(200));
        // Not a multus conf key: never put over the shims' confs.
        assert!(c.overrides.is_empty());
    }

    #[test]
    fn unsupported_and_bad_keys_are_named() {
        for (conf, want) in [
            (r#"{"chrootDir":7}"#, "\"chrootDir\" must be a string"),
            (r#"{"metricsPort":"x"}"#, "metricsPort"),
            (r#"{"forceCNIVersion":true}"#, "never rewrites the master"),
            (r#"{"multusConfigFile":3}"#, "must be a string"),
            (r#"{"connectionLimit":0}"#, "connectionLimit"),
            (
                r#"{"requestTimeoutMs":0}"#,
                "\"requestTimeoutMs\" must be a number above 0",
            ),
            (r#"{"requestTimeoutMs":"5s"}"#, "requestTimeoutMs"),
            (r#"{"sockDir":"/x"}"#, "unknown key \"sockDir\""),
            ("[]", "not a JSON object"),
        ] {
            let e = DaemonConfig::parse(conf.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{conf}: {e}");
        }
    }
}
