//! Finding a network config on disk: by name in `confDir`, by file path, or by
//! directory (the first conf in lexical order), as upstream `getNetDelegate`.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::netconf::NetworkConfig;
use crate::cni::{CniError, Code};

const EXTENSIONS: &[&str] = &["conf", "conflist", "json"];

fn is_conf_file(p: &Path) -> bool {
    p.is_file()
        && p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e))
}

/// Conf files of `dir`, sorted by file name.
fn conf_files(dir: &Path, field: &str) -> Result<Vec<PathBuf>, CniError> {
    let entries = fs::read_dir(dir).map_err(|e| {
        CniError::new(
            Code::InvalidConfig,
            format!("{field}: cannot read directory {}: {e}", dir.display()),
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_conf_file(p))
        .collect();
    files.sort();
    Ok(files)
}

fn load_file(path: &Path, field: &str) -> Result<NetworkConfig, CniError> {
    let bytes = fs::read(path).map_err(|e| {
        CniError::new(
            Code::InvalidConfig,
            format!("{field}: cannot read {}: {e}", path.display()),
        )
    })?;
    NetworkConfig::from_bytes(&bytes, &format!("{field} {}", path.display()))
}

/// True for multus's own conf (auto-generated `00-multus.conf*`, or any conf
/// whose plugin is multus), which must never become its own delegate.
pub fn is_multus_conf(path: &Path, bytes: &[u8]) -> bool {
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("00-multus"));
    let typed = serde_json::from_slice::<Value>(bytes)
        .ok()
        .is_some_and(|v| {
            let ty = |p: &Value| {
                p.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("multus"))
            };
            ty(&v)
                || v.get("plugins")
                    .and_then(Value::as_array)
                    .is_some_and(|ps| ps.iter().any(ty))
        });
    named || typed
}

/// Resolves one network reference. `field` names the conf key for errors.
pub fn resolve(reference: &str, conf_dir: &Path, field: &str) -> Result<NetworkConfig, CniError> {
    if reference.contains('/') {
        let path = Path::new(reference);
        if path.is_dir() {
            for file in conf_files(path, field)? {
                let bytes = fs::read(&file).map_err(|e| {
                    CniError::new(
                        Code::InvalidConfig,
                        format!("{field}: cannot read {}: {e}", file.display()),
                    )
                })?;
                if !is_multus_conf(&file, &bytes) {
                    return NetworkConfig::from_bytes(
                        &bytes,
                        &format!("{field} {}", file.display()),
                    );
                }
            }
            return Err(CniError::new(
                Code::InvalidConfig,
                format!("{field}: no network config (.conf, .conflist, .json) in {reference}"),
            ));
        }
        return load_file(path, field);
    }
    if conf_dir.is_dir() {
        // A `.conflist` of that name wins over a `.conf` (multi-net spec §3.4.1).
        let mut files = conf_files(conf_dir, field)?;
        files.sort_by_key(|f| f.extension().and_then(|e| e.to_str()) != Some("conflist"));
        for file in files {
            let Ok(bytes) = fs::read(&file) else { continue };
            // multus's own conf is never a delegate (it would exec multus).
            if is_multus_conf(&file, &bytes) {
                continue;
            }
            let name = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("name").and_then(Value::as_str).map(String::from));
            if name.as_deref() == Some(reference) {
                return NetworkConfig::from_bytes(&bytes, &format!("{field} {}", file.display()));
            }
        }
    }
    Err(CniError::new(
        Code::InvalidConfig,
        format!(
            "{field}: network {reference:?} not found in confDir {}",
            conf_dir.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        fs::write(dir.join(name), body).unwrap();
    }

    #[test]
    fn by_name_file_and_dir() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "00-multus.conf",
            r#"{"cniVersion":"1.0.0","name":"multus","type":"multus"}"#,
        );
        write(
            d.path(),
            "10-b.conflist",
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}"#,
        );
        write(
            d.path(),
            "20-a.conf",
            r#"{"cniVersion":"0.3.1","name":"a","type":"macvlan"}"#,
        );
        write(d.path(), "README", "not a conf");

        assert_eq!(resolve("a", d.path(), "clusterNetwork").unwrap().name, "a");
        let dir = d.path().to_str().unwrap();
        assert_eq!(
            resolve(dir, Path::new("/nonexistent"), "clusterNetwork")
                .unwrap()
                .name,
            "b"
        );
        let file = d.path().join("20-a.conf");
        assert_eq!(
            resolve(file.to_str().unwrap(), Path::new("/x"), "f")
                .unwrap()
                .name,
            "a"
        );
    }

    #[test]
    fn missing_and_unreadable_are_named() {
        let d = tempfile::tempdir().unwrap();
        let e = resolve("nope", d.path(), "clusterNetwork").unwrap_err();
        assert_eq!(e.code, 7);
        assert!(
            e.msg.contains("clusterNetwork") && e.msg.contains("nope"),
            "{}",
            e.msg
        );
        let e = resolve("/nonexistent/x.conf", d.path(), "defaultNetworks[0]").unwrap_err();
        assert!(
            e.msg.contains("defaultNetworks[0]") && e.msg.contains("/nonexistent/x.conf"),
            "{}",
            e.msg
        );
        let e = resolve(d.path().to_str().unwrap(), d.path(), "clusterNetwork").unwrap_err();
        assert!(e.msg.contains("no network config"), "{}", e.msg);
    }
}
