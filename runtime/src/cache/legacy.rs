//! Reading what Go multus left behind, so DEL still works after an upgrade:
//! its scratch file (a JSON array of `DelegateNetConf`, full delegate JSON in
//! base64 under `Bytes`) and libcni's per-delegate result cache
//! `<cniDir>/results/<network>-<containerID>-<ifname>` (`cniCacheV1`).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{CacheFile, CachedDelegate, KIND};
use crate::config::NetworkConfig;

#[derive(Deserialize)]
struct GoDelegate {
    #[serde(rename = "Bytes")]
    bytes: String,
    /// For a conflist, libcni's parsed list: its `Bytes` are the list as
    /// the master conf has it. The delegate's own `Bytes` are then the
    /// list re-marshalled from Go's typed fields, which drops every key it
    /// does not know (a bridge's `bridge`, host-local's `ranges`): a DEL
    /// from those fails (found on a real node, upgrading from Multus v4.3.0).
    #[serde(rename = "CNINetworkConfigList", default)]
    conflist: Option<GoConfList>,
    #[serde(rename = "ifnameRequest", default)]
    ifname_request: String,
}

#[derive(Deserialize)]
struct GoConfList {
    #[serde(rename = "Bytes", default)]
    bytes: Option<String>,
}

impl GoDelegate {
    /// The delegate's config as it was written: the conflist's own bytes
    /// when there is a conflist, else the delegate's.
    fn config_base64(&self) -> &str {
        self.conflist
            .as_ref()
            .and_then(|c| c.bytes.as_deref())
            .filter(|b| !b.is_empty())
            .unwrap_or(&self.bytes)
    }
}

#[derive(Deserialize, Default)]
struct LibcniCache {
    #[serde(rename = "cniArgs", default)]
    cni_args: Vec<(String, String)>,
    #[serde(rename = "capabilityArgs", default)]
    capability_args: Map<String, Value>,
    #[serde(default)]
    result: Option<Value>,
}

pub fn libcni_cache_path(
    cni_dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> PathBuf {
    cni_dir
        .join("results")
        .join(format!("{network}-{container_id}-{ifname}"))
}

/// Converts a Go scratch list. Returns the cache and the libcni files used.
pub fn convert(
    cni_dir: &Path,
    list: &Value,
    container_id: &str,
    multus_ifname: &str,
) -> Result<(CacheFile, Vec<PathBuf>), String> {
    let go: Vec<GoDelegate> = serde_json::from_value(list.clone())
        .map_err(|e| format!("Go multus delegate list: {e}"))?;
    let mut delegates = Vec::with_capacity(go.len());
    let mut extra = Vec::new();
    for (i, d) in go.iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(d.config_base64())
            .map_err(|e| format!("delegate {i}: Bytes is not base64: {e}"))?;
        let net = NetworkConfig::from_bytes(&bytes, &format!("Go multus delegate {i}"))
            .map_err(|e| e.msg)?;
        let ifname = match (d.ifname_request.as_str(), i) {
            ("", 0) => multus_ifname.to_string(),
            ("", i) => format!("net{i}"),
            (req, _) => req.to_string(),
        };
        let lib_path = libcni_cache_path(cni_dir, &net.name, container_id, &ifname);
        // No libcni file is normal (a delegate without a cached result);
        // one that cannot be read or parsed is not: its result and runtime
        // args would silently become defaults, and the DEL would miss what
        // they name.
        let lib: LibcniCache = match std::fs::read(&lib_path) {
            Ok(b) => {
                let lib = serde_json::from_slice(&b)
                    .map_err(|e| format!("libcni cache {}: {e}", lib_path.display()))?;
                extra.push(lib_path);
                lib
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => LibcniCache::default(),
            Err(e) => return Err(format!("libcni cache {}: {e}", lib_path.display())),
        };
        let cni_args = lib
            .cni_args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let mut c = CachedDelegate::new(&net, &ifname, i == 0, &cni_args, &lib.capability_args);
        c.result = lib.result;
        delegates.push(c);
    }
    Ok((
        CacheFile {
            kind: KIND.into(),
            container_id: container_id.to_string(),
            netns: String::new(),
            ifname: multus_ifname.to_string(),
            cni_version: String::new(),
            complete: true,
            delegates,
        },
        extra,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_scratch_and_libcni_cache() {
        let d = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let master = r#"{"cniVersion":"0.4.0","name":"k8s","plugins":[{"type":"bridge","kubeconfig":"/k"}]}"#;
        let extra = r#"{"cniVersion":"0.3.1","name":"mv","type":"macvlan"}"#;
        let list = json!([
            {"Conf":{},"ConfList":{},"Name":"","ifnameRequest":"","Bytes": b64(master)},
            {"Conf":{},"Name":"default/mv","ifnameRequest":"","Bytes": b64(extra)},
            {"Conf":{},"Name":"default/mv2","ifnameRequest":"sriov1","Bytes": b64(extra)}
        ]);
        std::fs::create_dir(d.path().join("results")).unwrap();
        let lib = libcni_cache_path(d.path(), "k8s", "cid", "eth0");
        std::fs::write(&lib, json!({"kind":"cniCacheV1","cniArgs":[["K8S_POD_NAME","p"]],"capabilityArgs":{"mac":"m"},"result":{"cniVersion":"0.4.0","ips":[]}}).to_string()).unwrap();
        let (f, files) = convert(d.path(), &list, "cid", "eth0").unwrap();
        assert_eq!(files, vec![lib]);
        let names: Vec<_> = f.delegates.iter().map(|d| d.ifname.as_str()).collect();
        assert_eq!(names, vec!["eth0", "net1", "sriov1"]);
        assert!(f.delegates[0].cluster_network);
        assert_eq!(f.delegates[0].cni_args, "K8S_POD_NAME=p");
        assert_eq!(f.delegates[0].capability_args["mac"], "m");
        assert!(f.delegates[0].result.is_some());
        assert!(f.delegates[1].result.is_none());
        let net = f.delegates[0].network(Path::new("x")).unwrap();
        assert_eq!(net.bytes, master.as_bytes());
    }

    /// A libcni cache that exists but is not one is an error naming it (it
    /// used to become defaults, and DEL then ran without its result).
    #[test]
    fn a_corrupt_libcni_cache_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let master = r#"{"cniVersion":"0.4.0","name":"k8s","type":"bridge"}"#;
        let list = json!([{"Name":"","ifnameRequest":"","Bytes": b64(master)}]);
        std::fs::create_dir(d.path().join("results")).unwrap();
        let lib = libcni_cache_path(d.path(), "k8s", "cid", "eth0");
        std::fs::write(&lib, "{\"kind\":\"cniCacheV1\",\"result\":").unwrap();
        let e = convert(d.path(), &list, "cid", "eth0").unwrap_err();
        assert!(e.contains(&lib.display().to_string()), "{e}");
        std::fs::write(&lib, r#"{"cniArgs":"not a list"}"#).unwrap();
        assert!(convert(d.path(), &list, "cid", "eth0").is_err());
    }

    /// Upstream's thick cache of a conflist master (recorded from Multus
    /// v4.3.0 on a real node): the delegate's `Bytes` lost `bridge` and
    /// `ranges`; the conflist's own `Bytes` have them, and DEL uses those.
    #[test]
    fn a_conflist_delegate_keeps_its_original_bytes() {
        let d = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let original = r#"{"cniVersion":"1.0.0","name":"cluster","plugins":[{"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.0.0/24"}]]}}]}"#;
        let lossy = r#"{"cniVersion":"1.0.0","name":"cluster","plugins":[{"ipam":{"type":"host-local"},"type":"bridge"}]}"#;
        let single = r#"{"cniVersion":"1.0.0","name":"br-us","type":"bridge","bridge":"e2ebr0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.61.0.0/24"}]]}}"#;
        let list = json!([
            {"Conf": {"ipam": {}}, "Name": "cluster", "ifnameRequest": "",
             "CNINetworkConfigList": {"Name": "cluster", "CNIVersion": "1.0.0", "Bytes": b64(original)},
             "Bytes": b64(lossy)},
            {"Conf": {"type": "bridge"}, "Name": "default/br-us", "ifnameRequest": "",
             "CNINetworkConfigList": {"Name": "", "Plugins": null, "Bytes": null},
             "Bytes": b64(single)}
        ]);
        let (f, _) = convert(d.path(), &list, "cid", "eth0").unwrap();
        let net = f.delegates[0].network(Path::new("x")).unwrap();
        assert_eq!(net.bytes, original.as_bytes());
        let net = f.delegates[1].network(Path::new("x")).unwrap();
        assert_eq!(net.bytes, single.as_bytes());
    }
}
