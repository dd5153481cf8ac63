//! The conf the runtime finds: `<cniConfigDir>/00-multus.conf`, of type
//! `multus-shim`, written by the daemon as upstream's does (the master
//! found in `multusAutoconfigDir` is the cluster network, its capabilities
//! advertised). It also carries the daemon config's multus keys, so that the
//! shim's own DEL (daemon down) runs with the conf the daemon would have
//! used. Paths in it are the daemon's: run it with the host's paths at the
//! same places.

use std::path::{Path, PathBuf};

use multus::config::master;
use multus::config::MultusConf;
use serde_json::{Map, Value};

pub const FILE: &str = "00-multus.conf";

/// Where the shim conf comes from (`multusConfigFile`).
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// `auto`: made from the master conf.
    Auto {
        /// `multusAutoconfigDir`.
        dir: PathBuf,
        /// `multusMasterCNI`: the master's file name, else the first.
        master: Option<String>,
        /// `overrideNetworkName`: the master's name instead of upstream's.
        override_name: bool,
    },
    /// Any other value: that file, copied as it is.
    File(PathBuf),
}

/// The shim conf for the master at `path`.
pub fn render(
    path: &Path,
    override_name: bool,
    overrides: &Map<String, Value>,
    socket_dir: &Path,
) -> Result<Vec<u8>, String> {
    let m = master::read(path).map_err(|e| e.to_string())?;
    let mut c = Map::new();
    c.insert("cniVersion".into(), m.net.cni_version.clone().into());
    let name = if override_name {
        m.net.name.clone()
    } else {
        "multus-cni-network".into()
    };
    c.insert("name".into(), name.into());
    c.insert("type".into(), "multus-shim".into());
    let caps = master::capabilities(&m.net);
    if !caps.is_empty() {
        c.insert("capabilities".into(), Value::Object(caps));
    }
    c.insert("clusterNetwork".into(), path.display().to_string().into());
    c.insert(
        "daemonSocketDir".into(),
        socket_dir.display().to_string().into(),
    );
    for (k, v) in overrides {
        c.insert(k.clone(), v.clone());
    }
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(c)).expect("JSON values serialize");
    bytes.push(b'\n');
    // What the shim's own DEL will parse.
    MultusConf::parse(&bytes).map_err(|e| format!("the shim conf would be invalid: {}", e.msg))?;
    Ok(bytes)
}

/// The conf `source` gives now; `None` while the master is missing.
pub fn current(
    source: &Source,
    overrides: &Map<String, Value>,
    socket_dir: &Path,
) -> Result<Option<Vec<u8>>, String> {
    match source {
        Source::File(p) => std::fs::read(p)
            .map(Some)
            .map_err(|e| format!("multusConfigFile {}: {e}", p.display())),
        Source::Auto {
            dir,
            master: wanted,
            override_name,
        } => match master::find(dir, wanted.as_deref()).map_err(|e| e.to_string())? {
            Some(p) => render(&p, *override_name, overrides, socket_dir).map(Some),
            None => Ok(None),
        },
    }
}

/// Writes `bytes` to `<dir>/00-multus.conf` unless it already holds them.
/// Returns whether it wrote.
pub fn write(dir: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let path = dir.join(FILE);
    if std::fs::read(&path).is_ok_and(|b| b == bytes) {
        return Ok(false);
    }
    multus::fsutil::write_atomic(&path, bytes, 0o600)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_the_master_with_the_daemons_keys() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("10-kindnet.conflist");
        std::fs::write(&m, r#"{"cniVersion":"1.0.0","name":"kindnet","plugins":[{"type":"ptp","capabilities":{"portMappings":true}}]}"#).unwrap();
        let mut keys = Map::new();
        keys.insert("cniDir".into(), "/var/lib/cni/multus".into());
        let src = Source::Auto {
            dir: d.path().into(),
            master: None,
            override_name: false,
        };
        let b = current(&src, &keys, Path::new("/run/multus/"))
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["type"], "multus-shim");
        assert_eq!(v["name"], "multus-cni-network");
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["capabilities"], serde_json::json!({"portMappings": true}));
        assert_eq!(v["clusterNetwork"], m.display().to_string());
        assert_eq!(v["daemonSocketDir"], "/run/multus/");
        assert_eq!(v["cniDir"], "/var/lib/cni/multus");
        assert!(write(d.path(), &b).unwrap());
        assert!(!write(d.path(), &b).unwrap(), "unchanged: not rewritten");
        // Our own conf is never taken as the master.
        let again = current(&src, &keys, Path::new("/run/multus/"))
            .unwrap()
            .unwrap();
        assert_eq!(again, b);
        let empty = tempfile::tempdir().unwrap();
        let none = Source::Auto {
            dir: empty.path().into(),
            master: None,
            override_name: true,
        };
        assert!(current(&none, &keys, Path::new("/r")).unwrap().is_none());
    }
}
