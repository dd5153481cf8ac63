//! The multus conf keys an admin sets: a ConfigMap-mounted JSON object
//! (`--config`), then single flags on top.

use std::path::Path;

use serde_json::{Map, Value};

use super::InstallError;
use multus::config::multus::KEYS;

/// Keys the installer derives itself, and what sets them instead.
const DERIVED: &[(&str, &str)] = &[
    ("cniVersion", "it follows the master conf"),
    ("cniVersions", "it follows the master conf"),
    ("name", "use --override-network-name"),
    ("type", "it is always multus"),
    (
        "clusterNetwork",
        "the master conf is the cluster network: use --master-cni-file",
    ),
    (
        "delegates",
        "the master conf is the cluster network: use --master-cni-file",
    ),
    ("runtimeConfig", "the container runtime fills it in"),
    (
        "nodeName",
        "it is each node's own: --node-name ($NODE_NAME, the DaemonSet's spec.nodeName)",
    ),
];

/// Upstream keys multus-wasm does not read, and why.
const UPSTREAM_ONLY: &[(&str, &str)] = &[
    (
        "logOptions",
        "log rotation is not implemented: rotate logFile with logrotate",
    ),
    (
        "retryDeleteOnError",
        "multus-wasm always keeps the cache of a failed DEL: remove the key",
    ),
    ("auxiliaryCNIChainName", "not implemented"),
    (
        "cniConf",
        "upstream's misspelling of confDir (it never had an effect): use confDir",
    ),
];

/// The canonical spelling of `key` (matched case-insensitively, as multus
/// reads the conf), or why it cannot be set.
fn canonical(key: &str) -> Result<&'static str, String> {
    let found = |list: &[(&'static str, &'static str)]| {
        list.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .copied()
    };
    if let Some((k, why)) = found(DERIVED) {
        return Err(format!("key {k:?} cannot be set: {why}"));
    }
    if let Some((k, why)) = found(UPSTREAM_ONLY) {
        return Err(format!("key {k:?} is not supported: {why}"));
    }
    KEYS.iter()
        .copied()
        .find(|k| k.eq_ignore_ascii_case(key))
        .ok_or_else(|| format!("unknown multus conf key {key:?}"))
}

/// Parses the `--config` file: one JSON object of multus conf keys.
pub fn parse_config(bytes: &[u8], path: &Path) -> Result<Map<String, Value>, InstallError> {
    let bad = |msg: String| InstallError::Invalid(format!("--config {}: {msg}", path.display()));
    let object: Map<String, Value> = match serde_json::from_slice(bytes) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(bad("not a JSON object".into())),
        Err(e) => return Err(bad(format!("invalid JSON: {e}"))),
    };
    let mut keys = Map::new();
    for (k, v) in object {
        keys.insert(canonical(&k).map_err(bad)?.to_string(), v);
    }
    Ok(keys)
}

/// Reads and parses the `--config` file.
pub fn read_config(path: &Path) -> Result<Map<String, Value>, InstallError> {
    let bytes = std::fs::read(path).map_err(|e| InstallError::io("reading --config", path, e))?;
    parse_config(&bytes, path)
}

/// Single keys set by flags; each wins over `--config`.
pub fn apply_flags(keys: &mut Map<String, Value>, flags: &[(&'static str, Option<Value>)]) {
    for (k, v) in flags {
        if let Some(v) = v {
            keys.insert(k.to_string(), v.clone());
        }
    }
}

/// A string key of the merged settings, if set.
pub fn string<'a>(keys: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    keys.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Map<String, Value>, String> {
        parse_config(s.as_bytes(), Path::new("/etc/multus/config.json")).map_err(|e| e.to_string())
    }

    #[test]
    fn keys_are_canonicalized() {
        let k = parse(r#"{"LogLevel":"debug","namespaceisolation":true,"wasmPlugins":{"tuning":{"hostNetns":false}}}"#).unwrap();
        assert_eq!(k["logLevel"], "debug");
        assert_eq!(k["namespaceIsolation"], true);
        assert!(k.contains_key("wasmPlugins"));
    }

    #[test]
    fn bad_keys_are_named_with_the_file() {
        for (conf, want) in [
            (
                r#"{"logLevl":"debug"}"#,
                "unknown multus conf key \"logLevl\"",
            ),
            (r#"{"clusterNetwork":"x"}"#, "--master-cni-file"),
            (r#"{"Delegates":[]}"#, "\"delegates\" cannot be set"),
            (r#"{"cniVersion":"1.0.0"}"#, "follows the master"),
            (r#"{"logOptions":{}}"#, "logrotate"),
            (r#"{"cniConf":"/x"}"#, "confDir"),
            (r#"{"nodeName":"n1"}"#, "--node-name"),
            ("[1]", "not a JSON object"),
            ("{", "invalid JSON"),
        ] {
            let e = parse(conf).unwrap_err();
            assert!(
                e.contains("--config /etc/multus/config.json") && e.contains(want),
                "{conf}: {e}"
            );
        }
    }

    #[test]
    fn flags_win() {
        let mut k = parse(r#"{"logLevel":"debug","multusNamespace":"a"}"#).unwrap();
        apply_flags(
            &mut k,
            &[
                ("logLevel", Some("error".into())),
                ("multusNamespace", None),
            ],
        );
        assert_eq!(k["logLevel"], "error");
        assert_eq!(string(&k, "multusNamespace"), Some("a"));
    }
}
