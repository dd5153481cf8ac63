//! How multus talks to Kubernetes: which annotations it reads and writes,
//! time limits, the kubelet pod-resources socket and the annotation mappers.
//! Every key is optional; the defaults are upstream Multus's.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::keys::FoldedObject;
use crate::cni::{CniError, Code};

pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
pub const DEFAULT_NETWORK_ANNOTATION: &str = "v1.multus-cni.io/default-network";
pub const RESOURCE_NAME_ANNOTATION: &str = "k8s.v1.cni.cncf.io/resourceName";
pub const DEFAULT_POD_RESOURCES_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";
pub const DEFAULT_DEVICE_INFO_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo";

/// One annotation mapper: a wasm module in `wasmPluginDir` and its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MapperRef {
    pub module: crate::boundary::PluginType,
    /// Handed to the mapper as JSON text.
    pub config: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KubeConf {
    /// Selection annotation keys, read in this order and concatenated
    /// (`networksAnnotations`), e.g. a TKE cluster's
    /// `tke.cloud.tencent.com/networks` next to the upstream key.
    pub networks_annotations: Vec<String>,
    /// Where network-status is written (`networkStatusAnnotation`).
    pub network_status_annotation: String,
    /// A failed network-status write fails (and rolls back) the ADD unless
    /// this is false (`networkStatusRequired`).
    pub network_status_required: bool,
    /// Budget of one API request (`kubeRequestTimeoutMs`).
    pub request_timeout: Duration,
    /// How long ADD waits for a pod the API does not show yet (`podWaitMs`).
    pub pod_wait: Duration,
    pub pod_resources_socket: PathBuf,
    /// Root of the device-info files (`deviceInfoDir`): the device plugin's
    /// `dp/` and multus's `cni/`.
    pub device_info_dir: PathBuf,
    pub annotation_mappers: Vec<MapperRef>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MapperEntry {
    Module(String),
    Full {
        module: String,
        #[serde(default)]
        config: Map<String, Value>,
    },
}

impl KubeConf {
    pub fn parse(o: &FoldedObject) -> Result<Self, CniError> {
        let networks_annotations: Vec<String> = o
            .get("networksAnnotations")?
            .unwrap_or_else(|| vec![NETWORKS_ANNOTATION.to_string()]);
        if networks_annotations.iter().any(|k| k.is_empty()) {
            return Err(CniError::new(
                Code::InvalidConfig,
                "multus conf: \"networksAnnotations\" has an empty key",
            ));
        }
        let mappers: Vec<Value> = o.get("annotationMappers")?.unwrap_or_default();
        let annotation_mappers = mappers
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let (module, config) = match serde_json::from_value::<MapperEntry>(v) {
                    Ok(MapperEntry::Module(module)) => (module, Map::new()),
                    Ok(MapperEntry::Full { module, config }) => (module, config),
                    Err(_) => return Err(CniError::new(
                        Code::InvalidConfig,
                        format!("multus conf: \"annotationMappers\"[{i}]: want a module name or {{\"module\": .., \"config\": {{..}}}}"),
                    )),
                };
                let key = format!("multus conf: \"annotationMappers\"[{i}] module");
                Ok(MapperRef {
                    module: crate::boundary::PluginType::parse(&module, &key)?,
                    config,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ms = |key: &str, default: u64| -> Result<Duration, CniError> {
            Ok(Duration::from_millis(o.get(key)?.unwrap_or(default)))
        };
        Ok(Self {
            networks_annotations,
            network_status_annotation: o
                .get("networkStatusAnnotation")?
                .unwrap_or_else(|| NETWORK_STATUS_ANNOTATION.to_string()),
            network_status_required: o.get_bool("networkStatusRequired")?.unwrap_or(true),
            request_timeout: ms("kubeRequestTimeoutMs", 10_000)?,
            pod_wait: ms("podWaitMs", 2_500)?,
            pod_resources_socket: o
                .get::<String>("podResourcesSocket")?
                .unwrap_or_else(|| DEFAULT_POD_RESOURCES_SOCKET.to_string())
                .into(),
            device_info_dir: o
                .get::<String>("deviceInfoDir")?
                .unwrap_or_else(|| DEFAULT_DEVICE_INFO_DIR.to_string())
                .into(),
            annotation_mappers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<KubeConf, CniError> {
        KubeConf::parse(&FoldedObject::parse(s.as_bytes(), "t").unwrap())
    }

    #[test]
    fn defaults_and_keys() {
        let d = parse("{}").unwrap();
        assert_eq!(d.networks_annotations, vec![NETWORKS_ANNOTATION]);
        assert_eq!(d.network_status_annotation, NETWORK_STATUS_ANNOTATION);
        assert!(d.network_status_required);
        assert_eq!(d.pod_wait, Duration::from_millis(2500));
        assert!(d.annotation_mappers.is_empty());
        let c = parse(
            r#"{"networksAnnotations":["tke.cloud.tencent.com/networks","k8s.v1.cni.cncf.io/networks"],
                "networkStatusRequired":false,"kubeRequestTimeoutMs":500,
                "annotationMappers":["tke",{"module":"label","config":{"label":"nets"}}]}"#,
        )
        .unwrap();
        assert_eq!(c.networks_annotations[0], "tke.cloud.tencent.com/networks");
        assert!(!c.network_status_required);
        assert_eq!(c.request_timeout, Duration::from_millis(500));
        assert_eq!(c.annotation_mappers[0].module.as_str(), "tke");
        assert_eq!(c.annotation_mappers[1].config["label"], "nets");
    }

    #[test]
    fn errors_name_the_key() {
        for (s, want) in [
            (r#"{"networksAnnotations":"x"}"#, "networksAnnotations"),
            (r#"{"networksAnnotations":[""]}"#, "empty key"),
            (r#"{"annotationMappers":[1]}"#, "annotationMappers\"[0]"),
            (r#"{"annotationMappers":["../x"]}"#, "module"),
            (r#"{"podWaitMs":"soon"}"#, "podWaitMs"),
        ] {
            let e = parse(s).unwrap_err();
            assert_eq!(e.code, 7, "{s}");
            assert!(e.msg.contains(want), "{s}: {}", e.msg);
        }
    }
}
