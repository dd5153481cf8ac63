//! Annotation mapper that selects networks from a pod label, for workloads
//! whose templates can carry labels but not annotations.
//!
//! Config: `{"label": "<key>", "profiles": {"<value>": [<selection>, ..]}}`.
//! With `profiles`, the label's value names a profile and its selections
//! (keys `name`, `namespace`, `interface`, `ips`, `mac`, `default-route`)
//! are appended; an unknown value is an error. Without `profiles`, the value
//! is NAD names joined by `.` (`macvlan-conf.storage`), in the pod's
//! namespace. Pods without the label are left alone.

use std::collections::BTreeMap;

use multus_plugin_sdk::mapper::{Mapper, NetworkSelection, PodMetadata};
use multus_plugin_sdk::{invalid, CniError};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    label: String,
    #[serde(default)]
    profiles: Option<BTreeMap<String, Vec<ProfileEntry>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileEntry {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default, rename = "default-route")]
    default_route: Option<Vec<String>>,
}

impl From<&ProfileEntry> for NetworkSelection {
    fn from(p: &ProfileEntry) -> Self {
        let mut s = NetworkSelection::named(&p.name);
        s.namespace = p.namespace.clone();
        s.interface = p.interface.clone();
        s.ips = p.ips.clone();
        s.mac = p.mac.clone();
        s.default_route = p.default_route.clone();
        s
    }
}

struct LabelNetworks;

impl Mapper for LabelNetworks {
    fn select_networks(
        config: String,
        pod: PodMetadata,
        mut selected: Vec<NetworkSelection>,
    ) -> Result<Vec<NetworkSelection>, CniError> {
        let config: Config = serde_json::from_str(&config)
            .map_err(|e| invalid(format!("label-networks config: {e}")))?;
        let Some(value) = pod.label(&config.label) else {
            return Ok(selected);
        };
        match &config.profiles {
            Some(profiles) => {
                let entries = profiles.get(value).ok_or_else(|| {
                    invalid(format!(
                        "label {:?}: no profile {value:?} (profiles: {:?})",
                        config.label,
                        profiles.keys().collect::<Vec<_>>()
                    ))
                })?;
                selected.extend(entries.iter().map(NetworkSelection::from));
            }
            None => selected.extend(
                value
                    .split('.')
                    .filter(|n| !n.is_empty())
                    .map(NetworkSelection::named),
            ),
        }
        Ok(selected)
    }
}

multus_plugin_sdk::export_mapper!(LabelNetworks);
