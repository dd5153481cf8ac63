//! Annotation mapper for clusters moving from an older Multus variant: reads
//! a legacy selection annotation (default `tke.cloud.tencent.com/networks`)
//! and appends its networks to the standard selection.
//!
//! Config: `{"annotation": "<key>"}`. The legacy value is either a comma list
//! `[ns/]name[@ifname]` or a JSON list whose elements use the old keys
//! `interfaceRequest`, `ipRequest` (a string or a list) and `macRequest`, or
//! the standard ones.

use multus_plugin_sdk::mapper::{Mapper, NetworkSelection, PodMetadata};
use multus_plugin_sdk::{debug, invalid, CniError};
use serde::Deserialize;

const DEFAULT_ANNOTATION: &str = "tke.cloud.tencent.com/networks";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    annotation: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Legacy {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default, alias = "interface")]
    #[serde(rename = "interfaceRequest")]
    interface_request: Option<String>,
    #[serde(default, alias = "ips")]
    #[serde(rename = "ipRequest")]
    ip_request: Option<OneOrMany>,
    #[serde(default, alias = "mac")]
    #[serde(rename = "macRequest")]
    mac_request: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn from_legacy(l: Legacy) -> NetworkSelection {
    let mut s = NetworkSelection::named(&l.name);
    s.namespace = non_empty(l.namespace);
    s.interface = non_empty(l.interface_request);
    s.mac = non_empty(l.mac_request);
    s.ips = match l.ip_request {
        Some(OneOrMany::One(v)) => v
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
            .collect(),
        Some(OneOrMany::Many(v)) => v,
        None => Vec::new(),
    };
    s
}

fn from_short(item: &str) -> NetworkSelection {
    let (rest, interface) = match item.split_once('@') {
        Some((r, i)) => (r, Some(i.to_string())),
        None => (item, None),
    };
    let (namespace, name) = match rest.split_once('/') {
        Some((ns, n)) => (Some(ns.to_string()), n),
        None => (None, rest),
    };
    let mut s = NetworkSelection::named(name);
    s.namespace = namespace;
    s.interface = interface;
    s
}

fn parse(key: &str, value: &str) -> Result<Vec<NetworkSelection>, CniError> {
    let value = value.trim();
    if value.starts_with('[') {
        let list: Vec<Legacy> = serde_json::from_str(value)
            .map_err(|e| invalid(format!("annotation {key:?}: not a list of networks: {e}")))?;
        Ok(list.into_iter().map(from_legacy).collect())
    } else {
        Ok(value
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(from_short)
            .collect())
    }
}

struct LegacyNetworks;

impl Mapper for LegacyNetworks {
    fn select_networks(
        config: String,
        pod: PodMetadata,
        mut selected: Vec<NetworkSelection>,
    ) -> Result<Vec<NetworkSelection>, CniError> {
        let config: Config = serde_json::from_str(&config)
            .map_err(|e| invalid(format!("legacy-networks config: {e}")))?;
        let key = config.annotation.as_deref().unwrap_or(DEFAULT_ANNOTATION);
        let Some(value) = pod.annotation(key) else {
            return Ok(selected);
        };
        let found = parse(key, value)?;
        debug(&format!("{} network(s) from {key}", found.len()));
        selected.extend(found);
        Ok(selected)
    }
}

multus_plugin_sdk::export_mapper!(LegacyNetworks);
