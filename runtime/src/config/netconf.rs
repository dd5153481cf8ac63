//! A delegate network: one conflist (a single `.conf` is lifted into a list of
//! one, as libcni does), with the exact bytes it was read from.

use serde_json::{Map, Value};

use multus_host_functions::text::parser_message;

use super::keys::FoldedObject;
use crate::boundary::plugin_type::{ipam_type, PluginType};
use crate::cni::env::validate_id;
use crate::cni::{version, CniError, Code};

/// The longest network name: one names a directory (host-local's
/// `/var/lib/cni/networks/<name>`), so a longer one cannot work, and each
/// attachment's messages and log lines carry it. The spec sets no bound.
pub const MAX_NAME_BYTES: usize = 255;

/// The most plugins one conflist may chain: far above any real chain, low
/// enough that a NAD cannot have one ADD run (and its rollback undo, and
/// log) tens of thousands. The spec and libcni set no bound.
pub const MAX_PLUGINS: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub name: String,
    /// The negotiated version injected into every plugin.
    pub cni_version: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    /// Each plugin's config object, unknown keys and their order intact.
    pub plugins: Vec<Map<String, Value>>,
    /// The config exactly as read: what the DEL cache stores.
    pub bytes: Vec<u8>,
}

impl NetworkConfig {
    /// A network a user wrote (a NAD, a hot-plug request): parsed as any
    /// conf, then held to the bounds no admin's conf and no cache (one an
    /// earlier version or upstream wrote, which DEL must still read) is.
    pub fn from_input(bytes: &[u8], origin: &str) -> Result<Self, CniError> {
        let net = Self::from_bytes(bytes, origin)?;
        let over = |what: String| {
            Err(CniError::new(
                Code::InvalidConfig,
                format!("{origin}: {what}"),
            ))
        };
        if net.name.len() > MAX_NAME_BYTES {
            return over(format!(
                "the network name is {} bytes, at most {MAX_NAME_BYTES}",
                net.name.len()
            ));
        }
        if net.plugins.len() > MAX_PLUGINS {
            return over(format!(
                "\"plugins\" has {} plugins, at most {MAX_PLUGINS}",
                net.plugins.len()
            ));
        }
        Ok(net)
    }

    /// Parses a conf or conflist. `origin` names where it came from in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, CniError> {
        let top = FoldedObject::parse(bytes, origin)?;
        let name: String = top.get("name")?.unwrap_or_default();
        if name.is_empty() {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!("{origin}: missing network \"name\""),
            ));
        }
        validate_id(
            &name,
            &format!("{origin}: network name"),
            Code::InvalidConfig,
        )?;
        let declared: Option<String> = top.get("cniVersion")?;
        let declared = version::or_legacy(declared.as_deref()).to_string();
        let versions: Vec<String> = top.get("cniVersions")?.unwrap_or_default();
        let cni_version = version::negotiate(&declared, &versions, origin)?;

        let object = |raw: &str, what: &str| -> Result<Map<String, Value>, CniError> {
            match serde_json::from_str::<Value>(raw) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err(CniError::new(
                    Code::InvalidConfig,
                    format!("{origin}: {what} is not a JSON object"),
                )),
            }
        };
        let plugins = match top.raw("plugins") {
            Some(list) => {
                let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(list.get())
                    .map_err(|e| {
                        CniError::new(
                            Code::InvalidConfig,
                            format!("{origin}: \"plugins\" is not a list: {}", parser_message(e)),
                        )
                    })?;
                if items.is_empty() {
                    return Err(CniError::new(
                        Code::InvalidConfig,
                        format!("{origin}: \"plugins\" is empty"),
                    ));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, p)| object(p.get(), &format!("plugins[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => vec![object(
                std::str::from_utf8(bytes).unwrap_or_default(),
                "the config",
            )?],
        };
        // Types become file names (a module, its grants, an exec): each
        // is checked here, where the config enters, and again where it is
        // used (the runners take only a `PluginType`).
        for (i, p) in plugins.iter().enumerate() {
            let at = |key: &str| format!("{origin}: plugins[{i}] \"{key}\"");
            let bad = |key: &str, msg: String| {
                CniError::new(Code::InvalidConfig, format!("{}: {msg}", at(key)))
            };
            exact_keys(p, &["type", "ipam"]).map_err(|m| bad("type", m))?;
            if let Some(ipam) = p.get("ipam").and_then(Value::as_object) {
                exact_keys(ipam, &["type"]).map_err(|m| bad("ipam", m))?;
            }
            let ty = p.get("type").and_then(Value::as_str).unwrap_or_default();
            let ty = PluginType::parse(ty, &at("type"))?;
            let ipam = ipam_type(p, &at("ipam.type"))?;
            for (t, key) in [(Some(ty), "type"), (ipam, "ipam.type")] {
                if t.as_ref().is_some_and(|t| t.starts_with("multus")) {
                    return Err(bad(key, "multus never delegates to itself (a delegate of type multus* would run with a conf of the config's choosing)".into()));
                }
            }
        }
        Ok(Self {
            name,
            cni_version,
            disable_check: top.get_bool("disableCheck")?.unwrap_or(false),
            disable_gc: top.get_bool("disableGC")?.unwrap_or(false),
            plugins,
            bytes: bytes.to_vec(),
        })
    }

    pub fn version(&self) -> version::Version {
        version::Version::parse(&self.cni_version).expect("negotiated versions are supported")
    }

    /// The plugin types in order, for logs.
    pub fn types(&self) -> Vec<&str> {
        self.plugins
            .iter()
            .map(|p| p.get("type").and_then(Value::as_str).unwrap_or_default())
            .collect()
    }
}

/// Go plugins read JSON keys case-insensitively (the last match wins, and
/// `ſ` reads as `s`), so
/// a key that differs from one of `keys` only in case (`IPAM`, `Type`)
/// would be what a native plugin acts on while multus checked the other:
/// refused.
fn exact_keys(o: &Map<String, Value>, keys: &[&str]) -> Result<(), String> {
    for k in o.keys() {
        let folded = crate::boundary::go_fold(k);
        if let Some(want) = keys.iter().find(|w| **w == folded && *w != k) {
            return Err(format!(
                "key {k:?} differs from {want:?} only in case; Go plugins would read it as {want:?}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_becomes_list_of_one() {
        let b = br#"{"cniVersion":"0.3.1","name":"n","type":"bridge","custom":{"z":1.50}}"#;
        let n = NetworkConfig::from_bytes(b, "x").unwrap();
        assert_eq!(n.name, "n");
        assert_eq!(n.cni_version, "0.3.1");
        assert_eq!(n.plugins.len(), 1);
        assert_eq!(n.types(), vec!["bridge"]);
        assert_eq!(
            serde_json::to_string(&n.plugins[0]["custom"]).unwrap(),
            r#"{"z":1.50}"#
        );
        assert_eq!(n.bytes, b.to_vec());
    }

    #[test]
    fn conflist_with_negotiation_and_flags() {
        let b = br#"{"cniVersion":"0.4.0","cniVersions":["1.1.0"],"name":"n","disableCheck":"true",
                    "plugins":[{"type":"bridge"},{"type":"tuning"}]}"#;
        let n = NetworkConfig::from_bytes(b, "x").unwrap();
        assert_eq!(n.cni_version, "1.1.0");
        assert!(n.disable_check);
        assert!(!n.disable_gc);
        assert_eq!(n.types(), vec!["bridge", "tuning"]);
    }

    /// The name's and the chain's bounds on a user's network, each at its
    /// edge.
    #[test]
    fn names_and_chains_are_bounded() {
        let conf = |name: &str, n: usize| {
            serde_json::to_vec(&serde_json::json!({"cniVersion": "1.0.0", "name": name,
                "plugins": vec![serde_json::json!({"type": "bridge"}); n]}))
            .unwrap()
        };
        let name = "n".repeat(MAX_NAME_BYTES);
        assert!(NetworkConfig::from_input(&conf(&name, MAX_PLUGINS), "d").is_ok());
        let e = NetworkConfig::from_input(&conf(&format!("{name}n"), 1), "d").unwrap_err();
        assert_eq!(e.code, 7);
        assert!(
            e.msg.contains("256 bytes") && e.msg.len() < 128,
            "{}",
            e.msg
        );
        let e = NetworkConfig::from_input(&conf("n", MAX_PLUGINS + 1), "d").unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("65 plugins"), "{}", e.msg);
        // An admin's conf, or a cache an earlier version wrote, is read as is.
        assert!(
            NetworkConfig::from_bytes(&conf(&format!("{name}n"), MAX_PLUGINS + 1), "d").is_ok()
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = NetworkConfig::from_bytes(br#"{"cniVersion":"1.0.0","type":"bridge"}"#, "d")
            .unwrap_err();
        assert!(e.msg.contains("name"), "{}", e.msg);
        let e = NetworkConfig::from_bytes(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../sh"}]}"#,
            "d",
        )
        .unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("plugins[0] \"type\""), "{}", e.msg);
        let e = NetworkConfig::from_bytes(
            br#"{"cniVersion":"1.0.0","name":"n","type":"macvlan","ipam":{"type":"/bin/sh"}}"#,
            "d",
        )
        .unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("plugins[0] \"ipam.type\""), "{}", e.msg);
        for bad in [
            r#"{"cniVersion":"1.0.0","name":"n","type":"multus","delegates":[]}"#,
            r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","ipam":{"type":"multus-shim"}}"#,
            r#"{"cniVersion":"1.0.0","name":"n","type":"ipvlan","ipam":{"type":"static"},"IPAM":{"type":"dhcp"}}"#,
            r#"{"cniVersion":"1.0.0","name":"n","type":"ipvlan","ipam":{"type":"static","Type":"dhcp"}}"#,
            r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","TYPE":"x"}"#,
        ] {
            let e = NetworkConfig::from_bytes(bad.as_bytes(), "d").unwrap_err();
            assert_eq!(e.code, 7, "{bad}");
        }
        let e = NetworkConfig::from_bytes(br#"{"cniVersion":"3.0.0","name":"n","type":"a"}"#, "d")
            .unwrap_err();
        assert_eq!(e.code, 1);
        let e =
            NetworkConfig::from_bytes(br#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#, "d")
                .unwrap_err();
        assert_eq!(e.code, 7);
        let e = NetworkConfig::from_bytes(
            br#"{"cniVersion":"1.0.0","name":"bad name","type":"a"}"#,
            "d",
        )
        .unwrap_err();
        assert_eq!(e.code, 7);
    }
}
