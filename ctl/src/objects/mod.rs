//! WasmPlugin objects (`multus-wasm.io/v1alpha1`, cluster-scoped): a wasm
//! plugin as a Kubernetes object. The object's name is the plugin type
//! (`<name>.wasm` on the nodes); its spec says where the module is (a
//! ConfigMap's `binaryData` in the multus namespace, or an OCI image in a
//! registry the nodes were allowed: registry.rs), its required sha256,
//! and its grants (everything `wasmPlugins.<type>` holds, but the pin).
//! Each node's `multusctl plugin sync` places it and says so in its own
//! WasmPluginNode (report.rs); `multusctl plugin aggregate` sums those
//! into the object's `status` (status.rs).

pub mod registry;
pub mod report;
pub mod status;
pub mod sync;
pub mod wait;

use kube::api::ApiResource;
use multus::config::wasm::PluginSettings;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const GROUP: &str = "multus-wasm.io";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "WasmPlugin";
pub const PLURAL: &str = "wasmplugins";

pub fn resource() -> ApiResource {
    group_resource(KIND, PLURAL)
}

/// A kind of this API group.
pub fn group_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

pub fn configmap_resource() -> ApiResource {
    ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// The module's digest (hex): nodes refuse other bytes.
    pub sha256: String,
    pub source: Source,
    /// The role `multusctl plugin inspect` found when it was pushed; nodes
    /// audit the module themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `wasmPlugins.<type>`'s keys but `sha256`: `hostNetns`,
    /// `memoryLimitMib`, `timeoutMs`, `hostCallTimeoutMs`,
    /// `clusterCallTimeoutMs`, `clusterGroups`, `clusterNamespace`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub grants: Map<String, Value>,
}

/// Where the module's bytes are: a ConfigMap, or an OCI image (exactly
/// one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,
    /// An image reference (`registry/repository[:tag]`): nodes pull the
    /// blob `spec.sha256` from its repository (registry.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl Source {
    /// Where the bytes came from, for an error.
    pub fn describe(&self, namespace: &str) -> String {
        match (&self.config_map, &self.image) {
            (Some(cm), _) => format!("ConfigMap {namespace}/{}", cm.name),
            (None, Some(image)) => format!("image {image}"),
            (None, None) => "no source".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigMapSource {
    /// In the multus namespace.
    pub name: String,
    /// The `binaryData` key.
    pub key: String,
}

impl Spec {
    pub fn from_object(obj: &Value) -> Result<Self, String> {
        let spec: Self =
            serde_json::from_value(obj["spec"].clone()).map_err(|e| format!("spec: {e}"))?;
        match (&spec.source.config_map, &spec.source.image) {
            (Some(_), None) | (None, Some(_)) => Ok(spec),
            _ => Err("spec.source: exactly one of configMap and image".into()),
        }
    }

    /// The settings multus applies to this plugin: its grants, pinned to
    /// its digest.
    pub fn settings(&self) -> Result<PluginSettings, String> {
        if self.grants.contains_key("sha256") {
            return Err("spec.grants.sha256: the pin is spec.sha256".into());
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "spec.sha256 {:?} is not a sha256 in hex",
                self.sha256
            ));
        }
        let mut all = self.grants.clone();
        all.insert("sha256".into(), self.sha256.to_ascii_lowercase().into());
        serde_json::from_value(Value::Object(all)).map_err(|e| format!("spec.grants: {e}"))
    }
}

/// Whether `name` can be a WasmPlugin's name and so a module's file name.
pub fn valid_type(name: &str) -> Result<(), String> {
    multus::boundary::PluginType::parse(name, "name")
        .map(drop)
        .map_err(|r| r.msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grants_become_settings_pinned_to_the_digest() {
        let sha = "ab".repeat(32);
        let obj = json!({"spec": {"sha256": sha, "source": {"configMap": {"name": "m", "key": "k"}},
            "grants": {"hostNetns": true, "memoryLimitMib": 16}}});
        let s = Spec::from_object(&obj).unwrap().settings().unwrap();
        assert_eq!(
            (s.sha256.as_deref(), s.host_netns, s.memory_limit_mib),
            (Some(sha.as_str()), true, 16)
        );
        let bad = json!({"spec": {"sha256": sha, "source": {"configMap": {"name": "m", "key": "k"}},
            "grants": {"hostNet": true}}});
        let e = Spec::from_object(&bad).unwrap().settings().unwrap_err();
        assert!(e.contains("spec.grants") && e.contains("hostNet"), "{e}");
        let pin = json!({"spec": {"sha256": sha, "source": {"configMap": {"name": "m", "key": "k"}},
            "grants": {"sha256": sha}}});
        assert!(Spec::from_object(&pin)
            .unwrap()
            .settings()
            .unwrap_err()
            .contains("spec.sha256"));
        let short =
            json!({"spec": {"sha256": "abc", "source": {"configMap": {"name": "m", "key": "k"}}}});
        assert!(Spec::from_object(&short)
            .unwrap()
            .settings()
            .unwrap_err()
            .contains("not a sha256"));
        let image = json!({"spec": {"sha256": sha, "source": {"image": "r.example/p:1"}}});
        assert_eq!(
            Spec::from_object(&image).unwrap().source.image.as_deref(),
            Some("r.example/p:1")
        );
        for source in [
            json!({}),
            json!({"image": "r.example/p:1", "configMap": {"name": "m", "key": "k"}}),
        ] {
            let both = json!({"spec": {"sha256": sha, "source": source}});
            assert!(Spec::from_object(&both)
                .unwrap_err()
                .contains("exactly one"));
        }
        let unknown = json!({"spec": {"sha256": sha, "source": {"url": "x"}}});
        assert!(Spec::from_object(&unknown).unwrap_err().contains("url"));
        assert!(
            valid_type("tuning").is_ok() && valid_type(".x").is_err() && valid_type("a/b").is_err()
        );
        let cm = configmap_resource();
        assert_eq!(
            (
                cm.group.as_str(),
                cm.api_version.as_str(),
                cm.kind.as_str(),
                cm.plural.as_str()
            ),
            ("", "v1", "ConfigMap", "configmaps")
        );
    }
}
