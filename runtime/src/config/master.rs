//! The master CNI conf: the node's own network (kindnet, flannel, calico,
//! ...), which multus attaches as every pod's eth0. Read by the installer
//! (thin) and by the daemon (thick, for the shim conf it writes).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::resolve::is_multus_conf;
use super::NetworkConfig;

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// The master is missing pieces or unreadable: the node's CNI may still
    /// be writing it, so a waiting caller tries again.
    #[error("{0}")]
    Unfinished(String),
    #[error("listing {}: {source}", dir.display())]
    List {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The name of the conf multus writes, by the master's format.
pub const CONF: &str = "00-multus.conf";
pub const CONFLIST: &str = "00-multus.conflist";

#[derive(Debug, Clone)]
pub struct Master {
    /// The file name, e.g. `10-kindnet.conflist`.
    pub file_name: String,
    pub bytes: Vec<u8>,
    pub net: NetworkConfig,
}

/// A `.conf` or `.conflist` that is not multus's own by name. The runtime
/// also reads `.json`, but upstream never picks one as master.
pub fn is_candidate(name: &str) -> bool {
    (name.ends_with(".conf") || name.ends_with(".conflist")) && !name.starts_with("00-multus")
}

/// Reads and validates the master at `path`.
pub fn read(path: &Path) -> Result<Master, MasterError> {
    let bytes = std::fs::read(path).map_err(|e| {
        MasterError::Unfinished(format!("reading the master conf {}: {e}", path.display()))
    })?;
    let net = NetworkConfig::from_bytes(&bytes, &format!("master conf {}", path.display()))
        .map_err(|e| MasterError::Unfinished(e.msg))?;
    Ok(Master {
        file_name: file_name(path),
        bytes,
        net,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The master in `dir`: `wanted` when given, else the first candidate in
/// lexical order that is not a multus conf by its content either. `None`
/// when there is none (yet).
pub fn find(dir: &Path, wanted: Option<&str>) -> Result<Option<PathBuf>, MasterError> {
    if let Some(name) = wanted {
        let p = dir.join(name);
        return Ok(p.exists().then_some(p));
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(MasterError::List {
                dir: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_candidate(n))
        .collect();
    names.sort();
    for name in names {
        let p = dir.join(&name);
        // A conf that delegates to multus (an old thin install under another
        // name) must never become multus's own cluster network.
        if std::fs::read(&p).is_ok_and(|b| is_multus_conf(&p, &b)) {
            continue;
        }
        return Ok(Some(p));
    }
    Ok(None)
}

/// The union of the capabilities the master's plugins declare (`true`
/// only), so the runtime hands multus every capability arg the master needs.
pub fn capabilities(net: &NetworkConfig) -> Map<String, Value> {
    let mut caps = Map::new();
    for plugin in &net.plugins {
        if let Some(Value::Object(c)) = plugin.get("capabilities") {
            for (k, v) in c {
                if v.as_bool() == Some(true) {
                    caps.insert(k.clone(), Value::Bool(true));
                }
            }
        }
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).unwrap();
    }

    #[test]
    fn first_candidate_in_lexical_order_skipping_ours() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "00-multus.conflist",
            r#"{"name":"multus-cni-network","plugins":[{"type":"multus"}]}"#,
        );
        write(
            d.path(),
            "05-old-multus.conf",
            r#"{"name":"m","type":"multus-shim"}"#,
        );
        write(
            d.path(),
            "10-kindnet.conflist",
            r#"{"cniVersion":"0.3.1","name":"kindnet","plugins":[{"type":"ptp"}]}"#,
        );
        write(d.path(), "20-other.conf", r#"{"name":"o","type":"bridge"}"#);
        write(d.path(), "01-notes.json", "{}");
        write(d.path(), "02-bak.conflist.cilium_bak", "{}");
        std::fs::create_dir(d.path().join("03-dir.conf")).unwrap();
        let p = find(d.path(), None).unwrap().unwrap();
        assert_eq!(file_name(&p), "10-kindnet.conflist");
        let p = find(d.path(), Some("20-other.conf")).unwrap().unwrap();
        assert_eq!(read(&p).unwrap().net.name, "o");
        assert!(find(d.path(), Some("99-missing.conf")).unwrap().is_none());
        assert!(find(&d.path().join("absent"), None).unwrap().is_none());
    }

    #[test]
    fn invalid_masters_are_named() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "10-a.conf",
            r#"{"cniVersion":"1.0.0","name":"a"}"#,
        );
        let e = read(&d.path().join("10-a.conf")).unwrap_err().to_string();
        assert!(e.contains("10-a.conf") && e.contains("type"), "{e}");
        write(
            d.path(),
            "10-b.conflist",
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[]}"#,
        );
        let e = read(&d.path().join("10-b.conflist"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("10-b.conflist") && e.contains("plugins"), "{e}");
        write(d.path(), "10-c.conf", "{half");
        let e = read(&d.path().join("10-c.conf")).unwrap_err().to_string();
        assert!(e.contains("10-c.conf"), "{e}");
    }

    #[test]
    fn capabilities_union_of_true_ones() {
        let net = NetworkConfig::from_bytes(
            br#"{"cniVersion":"1.0.0","name":"k","plugins":[
                {"type":"ptp","capabilities":{"ips":true,"mac":false}},
                {"type":"portmap","capabilities":{"portMappings":true}},
                {"type":"bandwidth","capabilities":{"bandwidth":true,"ips":true}}]}"#,
            "t",
        )
        .unwrap();
        let caps = capabilities(&net);
        assert_eq!(
            Value::Object(caps),
            serde_json::json!({"ips":true,"portMappings":true,"bandwidth":true})
        );
    }
}
