//! What DEL, CHECK and GC need after ADD: one file per container,
//! `<cniDir>/<containerID>`, written atomically (temp file + rename, 0600 in a
//! 0700 directory).
//!
//! Format `multusCacheV1` (a JSON object):
//! ```json
//! {"kind":"multusCacheV1","containerId":"..","netns":"..","ifName":"eth0",
//!  "cniVersion":"1.1.0","complete":true,
//!  "delegates":[{"networkName":"..","ifName":"eth0","clusterNetwork":true,
//!                "config":"<base64 of the exact conf/conflist bytes>",
//!                "cniArgs":"IgnoreUnknown=1;K8S_POD_NAME=..",
//!                "capabilityArgs":{..},"result":{..}}]}
//! ```
//! `complete` is false while ADD runs: the file is written before the first
//! delegate so a crash mid-ADD still leaves DEL a complete list. Upstream Go
//! multus writes a JSON *array* at the same path; `legacy` reads it.

pub mod legacy;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cni::{CniError, Code};
use crate::config::NetworkConfig;

pub const KIND: &str = "multusCacheV1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheFile {
    pub kind: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    pub netns: String,
    #[serde(rename = "ifName")]
    pub ifname: String,
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub complete: bool,
    pub delegates: Vec<CachedDelegate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedDelegate {
    #[serde(rename = "networkName")]
    pub network_name: String,
    #[serde(rename = "ifName")]
    pub ifname: String,
    #[serde(rename = "clusterNetwork")]
    pub cluster_network: bool,
    /// Base64 of the delegate's config bytes, exactly as ADD used them.
    pub config: String,
    #[serde(rename = "cniArgs")]
    pub cni_args: String,
    #[serde(rename = "capabilityArgs", default)]
    pub capability_args: Map<String, Value>,
    #[serde(default)]
    pub result: Option<Value>,
}

impl CachedDelegate {
    pub fn new(
        net: &NetworkConfig,
        ifname: &str,
        cluster_network: bool,
        cni_args: &str,
        capability_args: &Map<String, Value>,
    ) -> Self {
        Self {
            network_name: net.name.clone(),
            ifname: ifname.to_string(),
            cluster_network,
            config: base64::engine::general_purpose::STANDARD.encode(&net.bytes),
            cni_args: cni_args.to_string(),
            capability_args: capability_args.clone(),
            result: None,
        }
    }

    /// The delegate's config, re-parsed from the stored bytes.
    pub fn network(&self, file: &Path) -> Result<NetworkConfig, CniError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.config)
            .map_err(|e| {
                CniError::new(
                    Code::Decode,
                    format!(
                        "cache {}: delegate {:?}: bad config encoding: {e}",
                        file.display(),
                        self.network_name
                    ),
                )
            })?;
        NetworkConfig::from_bytes(
            &bytes,
            &format!("cache {} delegate {:?}", file.display(), self.network_name),
        )
    }
}

pub fn path(cni_dir: &Path, container_id: &str) -> PathBuf {
    cni_dir.join(container_id)
}

fn io_err(what: &str, p: &Path, e: std::io::Error) -> CniError {
    CniError::new(Code::Io, format!("cache: {what} {}: {e}", p.display()))
}

/// Writes `file` atomically; readers see the old or the new file, never half.
pub fn write(cni_dir: &Path, file: &CacheFile) -> Result<(), CniError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cni_dir)
        .map_err(|e| io_err("cannot create", cni_dir, e))?;
    let dest = path(cni_dir, &file.container_id);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", file.container_id))
        .tempfile_in(cni_dir)
        .map_err(|e| io_err("cannot create a temp file in", cni_dir, e))?;
    let bytes = serde_json::to_vec(file).expect("cache serializes");
    tmp.write_all(&bytes)
        .map_err(|e| io_err("cannot write", tmp.path(), e))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err("cannot chmod", tmp.path(), e))?;
    tmp.persist(&dest)
        .map_err(|e| io_err("cannot rename into", &dest, e.error))?;
    Ok(())
}

/// What a cache file held.
#[derive(Debug)]
pub enum Loaded {
    Current(CacheFile),
    /// Go multus's scratch file, converted; with the libcni result files that
    /// belong to it, to remove after a successful DEL.
    Legacy(CacheFile, Vec<PathBuf>),
}

impl Loaded {
    pub fn file(&self) -> &CacheFile {
        match self {
            Loaded::Current(f) | Loaded::Legacy(f, _) => f,
        }
    }
}

/// Reads the cache of `container_id`. Missing is `Ok(None)`; anything that
/// exists but cannot be understood is an error naming the file, because
/// treating it as missing would skip DEL and leak what the delegates hold.
pub fn read(
    cni_dir: &Path,
    container_id: &str,
    multus_ifname: &str,
) -> Result<Option<Loaded>, CniError> {
    let p = path(cni_dir, container_id);
    let bytes = match fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot read", &p, e)),
    };
    parse(cni_dir, &p, &bytes, container_id, multus_ifname).map(Some)
}

fn parse(
    cni_dir: &Path,
    p: &Path,
    bytes: &[u8],
    container_id: &str,
    multus_ifname: &str,
) -> Result<Loaded, CniError> {
    let corrupt = |why: String| {
        CniError::new(
            Code::Decode,
            format!("cache file {} is corrupt ({why}); inspect it, then remove it to let DEL fall back to the conf", p.display()),
        )
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    match &value {
        Value::Array(_) => legacy::convert(cni_dir, &value, container_id, multus_ifname)
            .map(|(f, extra)| Loaded::Legacy(f, extra))
            .map_err(corrupt),
        Value::Object(o) if o.get("kind").and_then(Value::as_str) == Some(KIND) => {
            serde_json::from_value(value)
                .map(Loaded::Current)
                .map_err(|e| corrupt(e.to_string()))
        }
        _ => Err(corrupt(format!(
            "not a {KIND} object nor a Go multus delegate list"
        ))),
    }
}

pub fn remove(cni_dir: &Path, container_id: &str) -> Result<(), CniError> {
    let p = path(cni_dir, container_id);
    match fs::remove_file(&p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot remove", &p, e)),
    }
    remove_temp_files(cni_dir, container_id);
    Ok(())
}

/// The container's temp files a write killed before its rename left
/// behind (`write` names them `.<container>.<random>`). Requests for one
/// container never overlap (the runtime's rule, the daemon's turn), so
/// none is being written now.
fn remove_temp_files(cni_dir: &Path, container_id: &str) {
    let prefix = format!(".{container_id}.");
    let Ok(entries) = fs::read_dir(cni_dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix))
        {
            if let Err(err) = fs::remove_file(e.path()) {
                tracing::warn!(file = %e.path().display(), error = %err, "cannot remove a stale cache temp file");
            }
        }
    }
}

/// Every container ID with a cache file in `cni_dir` (temp files and the
/// libcni `results` directory excluded), sorted.
pub fn list(cni_dir: &Path) -> Result<Vec<String>, CniError> {
    let entries = match fs::read_dir(cni_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("cannot list", cni_dir, e)),
    };
    let mut ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(cid: &str) -> CacheFile {
        let net = NetworkConfig::from_bytes(
            br#"{"cniVersion":"1.0.0","name":"n","type":"bridge","x":1.0}"#,
            "t",
        )
        .unwrap();
        let mut d = CachedDelegate::new(&net, "eth0", true, "IgnoreUnknown=1", &Map::new());
        d.result = Some(json!({"cniVersion":"1.0.0"}));
        CacheFile {
            kind: KIND.into(),
            container_id: cid.into(),
            netns: "/run/netns/p".into(),
            ifname: "eth0".into(),
            cni_version: "1.0.0".into(),
            complete: true,
            delegates: vec![d],
        }
    }

    #[test]
    fn write_read_remove() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("multus");
        write(&dir, &sample("c1")).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            fs::metadata(dir.join("c1")).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let got = read(&dir, "c1", "eth0").unwrap().unwrap();
        assert_eq!(got.file(), &sample("c1"));
        let net = got.file().delegates[0].network(Path::new("x")).unwrap();
        assert_eq!(
            net.bytes,
            br#"{"cniVersion":"1.0.0","name":"n","type":"bridge","x":1.0}"#.to_vec()
        );
        fs::create_dir(dir.join("results")).unwrap();
        assert_eq!(list(&dir).unwrap(), vec!["c1"]);
        // A write killed before its rename left its temp file (the soak
        // found one): the container's DEL removes it, not another's.
        fs::write(dir.join(".c1.Xyz123"), b"{").unwrap();
        fs::write(dir.join(".c10.Xyz123"), b"{").unwrap();
        remove(&dir, "c1").unwrap();
        remove(&dir, "c1").unwrap();
        assert!(read(&dir, "c1", "eth0").unwrap().is_none());
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(left.contains(&".c10.Xyz123".to_string()), "{left:?}");
        assert!(!left.contains(&".c1.Xyz123".to_string()), "{left:?}");
    }

    #[test]
    fn corrupt_cache_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("c1"), b"{\"kind\":\"multusCacheV1\"").unwrap();
        let e = read(d.path(), "c1", "eth0").unwrap_err();
        assert_eq!(e.code, 6);
        assert!(
            e.msg.contains(&d.path().join("c1").display().to_string()),
            "{}",
            e.msg
        );
        fs::write(d.path().join("c2"), b"{\"kind\":\"other\"}").unwrap();
        assert!(read(d.path(), "c2", "eth0").is_err());
    }
}
