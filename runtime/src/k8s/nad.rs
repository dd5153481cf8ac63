//! From a NetworkAttachmentDefinition to the delegate config multus runs.

use std::path::Path;

use serde_json::{Map, Value};

use super::client::Nad;
use crate::boundary::plugin_type::ipam_type;
use crate::boundary::{Bounds, PluginType};
use crate::cni::{CniError, Code};
use crate::config::{resolve::resolve, NetworkConfig};

/// The NAD's `spec.config` (with the NAD's name injected when it has none,
/// spec §3.4.2), or else the conf file of that name in `conf_dir`.
pub fn network(
    nad: &Nad,
    namespace: &str,
    name: &str,
    conf_dir: &Path,
) -> Result<NetworkConfig, CniError> {
    let origin = format!("network-attachment-definition {namespace}/{name}");
    let Some(config) = &nad.config else {
        return resolve(name, conf_dir, &format!("{origin} (no spec.config)"));
    };
    let mut v: Value = serde_json::from_str(config).map_err(|e| {
        CniError::new(
            Code::InvalidConfig,
            format!("{origin}: spec.config is not JSON: {e}"),
        )
    })?;
    let Some(o) = v.as_object_mut() else {
        return Err(CniError::new(
            Code::InvalidConfig,
            format!("{origin}: spec.config is not a JSON object"),
        ));
    };
    if o.get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        o.insert("name".into(), name.into());
        let bytes = serde_json::to_vec(&v).expect("JSON values serialize");
        return NetworkConfig::from_input(&bytes, &origin);
    }
    NetworkConfig::from_input(config.as_bytes(), &origin)
}

/// The admin's `nadPluginTypes` for a NAD outside `systemNamespaces`:
/// every type its plugins name (`type`, `ipam.type`) must be listed, or
/// nothing of it runs.
pub fn check_types(
    net: &NetworkConfig,
    bounds: &Bounds,
    namespace: &str,
    name: &str,
) -> Result<(), CniError> {
    if bounds.nad_plugin_types.is_none() {
        return Ok(());
    }
    for (i, p) in net.plugins.iter().enumerate() {
        let ty = p.get("type").and_then(Value::as_str).unwrap_or_default();
        let types = [
            Some(PluginType::parse(ty, "type")?),
            ipam_type(p, "ipam.type")?,
        ];
        for (t, key) in types.iter().zip(["type", "ipam.type"]) {
            let Some(t) = t.as_ref().filter(|t| !bounds.nad_may_name(t)) else {
                continue;
            };
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "network-attachment-definition {namespace}/{name}: plugins[{i}] {key} \"{t}\" is not in nadPluginTypes, the plugin types NADs outside systemNamespaces may name"
                ),
            ));
        }
    }
    Ok(())
}

/// Applies a selection's `cni-args` (into every plugin's `args.cni`, the pod's
/// value winning over the NAD's) and an allocated device ID (top-level
/// `deviceID` and `pciBusID` of every plugin, as upstream SR-IOV expects).
pub fn inject(
    net: &NetworkConfig,
    cni_args: Option<&Map<String, Value>>,
    device_id: Option<&str>,
) -> Result<NetworkConfig, CniError> {
    if cni_args.is_none() && device_id.is_none() {
        return Ok(net.clone());
    }
    let mut v: Value = serde_json::from_slice(&net.bytes)
        .map_err(|e| CniError::new(Code::InvalidConfig, format!("network {:?}: {e}", net.name)))?;
    let apply = |p: &mut Map<String, Value>| {
        if let Some(args) = cni_args {
            let outer = p.entry("args").or_insert_with(|| Value::Object(Map::new()));
            if !outer.is_object() {
                *outer = Value::Object(Map::new());
            }
            let cni = outer
                .as_object_mut()
                .expect("made an object")
                .entry("cni")
                .or_insert_with(|| Value::Object(Map::new()));
            if !cni.is_object() {
                *cni = Value::Object(Map::new());
            }
            let cni = cni.as_object_mut().expect("made an object");
            for (k, val) in args {
                cni.insert(k.clone(), val.clone());
            }
        }
        if let Some(id) = device_id {
            p.insert("deviceID".into(), id.into());
            p.insert("pciBusID".into(), id.into());
        }
    };
    let top = v.as_object_mut().expect("a parsed network is an object");
    match top.get_mut("plugins").and_then(Value::as_array_mut) {
        Some(plugins) => plugins
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .for_each(apply),
        None => apply(top),
    }
    let bytes = serde_json::to_vec(&v).expect("JSON values serialize");
    NetworkConfig::from_bytes(&bytes, &format!("network {:?}", net.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nad(config: Option<&str>) -> Nad {
        Nad {
            annotations: Default::default(),
            config: config.map(String::from),
        }
    }

    #[test]
    fn nad_plugin_types_bound_every_type_a_nad_names() {
        let net = |c: &str| NetworkConfig::from_bytes(c.as_bytes(), "t").unwrap();
        let b = Bounds {
            nad_plugin_types: Some(vec![
                PluginType::parse("macvlan", "t").unwrap(),
                PluginType::parse("static", "t").unwrap(),
            ]),
            ..Bounds::default()
        };
        let ok =
            net(r#"{"cniVersion":"1.0.0","name":"n","type":"macvlan","ipam":{"type":"static"}}"#);
        check_types(&ok, &b, "ns", "n").unwrap();
        check_types(&ok, &Bounds::default(), "ns", "n").unwrap();
        let ipam = net(
            r#"{"cniVersion":"1.0.0","name":"n","type":"macvlan","ipam":{"type":"host-local"}}"#,
        );
        let e = check_types(&ipam, &b, "ns", "n").unwrap_err();
        assert!(
            e.code == 7 && e.msg.contains("ipam.type") && e.msg.contains("host-local"),
            "{}",
            e.msg
        );
        let chained = net(
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"macvlan"},{"type":"tuning"}]}"#,
        );
        let e = check_types(&chained, &b, "ns", "n").unwrap_err();
        assert!(e.msg.contains("plugins[1] type \"tuning\""), "{}", e.msg);
    }

    #[test]
    fn spec_config_name_injected_or_kept() {
        let d = tempfile::tempdir().unwrap();
        let n = network(
            &nad(Some(r#"{"cniVersion":"1.0.0","type":"macvlan"}"#)),
            "ns",
            "mv",
            d.path(),
        )
        .unwrap();
        assert_eq!(n.name, "mv");
        let n = network(
            &nad(Some(
                r#"{"cniVersion":"1.0.0","name":"own","type":"macvlan"}"#,
            )),
            "ns",
            "mv",
            d.path(),
        )
        .unwrap();
        assert_eq!(n.name, "own");
        assert_eq!(
            n.bytes,
            br#"{"cniVersion":"1.0.0","name":"own","type":"macvlan"}"#
        );
    }

    #[test]
    fn empty_spec_falls_back_to_a_file_conflist_first() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("10-mv.conf"),
            r#"{"cniVersion":"1.0.0","name":"mv","type":"macvlan"}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("20-mv.conflist"),
            r#"{"cniVersion":"1.0.0","name":"mv","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        let n = network(&nad(None), "ns", "mv", d.path()).unwrap();
        assert_eq!(n.types(), vec!["bridge"]);
        let e = network(&nad(None), "ns", "other", d.path()).unwrap_err();
        assert!(
            e.msg.contains("ns/other") && e.msg.contains("not found"),
            "{}",
            e.msg
        );
        let e = network(&nad(Some("[1]")), "ns", "mv", d.path()).unwrap_err();
        assert!(e.msg.contains("ns/mv: spec.config"), "{}", e.msg);
    }

    #[test]
    fn cni_args_and_device_id_reach_every_plugin() {
        let net = NetworkConfig::from_bytes(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"sriov","args":{"cni":{"a":"nad","b":"nad"}}},{"type":"tuning"}]}"#,
            "t",
        )
        .unwrap();
        let args = json!({"a":"pod"}).as_object().unwrap().clone();
        let out = inject(&net, Some(&args), Some("0000:03:00.1")).unwrap();
        assert_eq!(out.plugins[0]["args"]["cni"], json!({"a":"pod","b":"nad"}));
        assert_eq!(out.plugins[1]["args"]["cni"], json!({"a":"pod"}));
        for p in &out.plugins {
            assert_eq!(p["deviceID"], "0000:03:00.1");
            assert_eq!(p["pciBusID"], "0000:03:00.1");
        }
        let single = NetworkConfig::from_bytes(
            br#"{"cniVersion":"1.0.0","name":"n","type":"macvlan"}"#,
            "t",
        )
        .unwrap();
        let out = inject(&single, Some(&args), None).unwrap();
        assert_eq!(out.plugins[0]["args"]["cni"]["a"], "pod");
        assert_eq!(inject(&single, None, None).unwrap(), single);
    }
}
