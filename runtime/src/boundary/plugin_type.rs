//! Plugin type names: the file name a module (`<type>.wasm`), its grants
//! (`<type>.grants.json`), the IPAM shim link and a native binary are
//! found by.

use std::fmt;

use super::Refused;

/// Longer names are no plugin anyone ships; the cap keeps file names and
/// messages bounded.
pub const MAX_LEN: usize = 128;

/// A plugin type that is a plain file name: libcni's FindInPath rule (no
/// path separator) and more: no leading `.` or `-`, and only
/// `[A-Za-z0-9_.+-]`, at most [`MAX_LEN`] bytes. The only way to make one
/// is [`PluginType::parse`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PluginType(String);

impl TryFrom<String> for PluginType {
    type Error = Refused;
    fn try_from(s: String) -> Result<Self, Refused> {
        Self::parse(&s, "plugin type")
    }
}

impl From<PluginType> for String {
    fn from(t: PluginType) -> String {
        t.0
    }
}

impl PluginType {
    /// `s` as a plugin type; `key` names the config key it came from.
    pub fn parse(s: &str, key: &str) -> Result<Self, Refused> {
        let why = if s.is_empty() {
            Some("missing")
        } else if s.len() > MAX_LEN {
            Some("longer than 128 bytes")
        } else if s.contains('/') {
            Some("contains '/': a plugin type is a file name, never a path")
        } else if s.starts_with('.') || s.starts_with('-') {
            Some("starts with '.' or '-'")
        } else if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'))
        {
            Some("has characters outside [A-Za-z0-9_.+-]")
        } else {
            None
        };
        match why {
            None => Ok(Self(s.to_string())),
            Some("missing") => Err(Refused::new(key, "missing")),
            Some(why) => Err(Refused::new(
                key,
                format!(
                    "{:?} is not a plugin type: {why}",
                    multus_host_functions::text::quoted(s)
                ),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// As its name, quoted: what messages naming a plugin show.
impl fmt::Debug for PluginType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for PluginType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for PluginType {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A plugin config's `ipam.type` as a plugin type; absent (or empty, or
/// not a string) is `None`. `key` names where the config came from.
pub fn ipam_type(
    plugin: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<PluginType>, Refused> {
    let ty = plugin.get("ipam").and_then(|i| i.get("type"));
    match ty.and_then(serde_json::Value::as_str) {
        None | Some("") => Ok(None),
        Some(t) => PluginType::parse(t, key).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names() {
        for ok in [
            "bridge",
            "host-local",
            "sriov",
            "ovn-k8s-cni-overlay",
            "k8s_net",
            "a.b",
            "c++",
            "10x",
        ] {
            assert_eq!(PluginType::parse(ok, "type").unwrap().as_str(), ok);
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            "/bin/sh",
            "../../../../bin/sh",
            "/../../tmp/x/evil",
            "a/b",
            ".",
            "..",
            ".hidden",
            "-rf",
            "sh\0",
            "sh x",
            "ünï",
            "$(id)",
            "a\nb",
            &long,
        ] {
            let e = PluginType::parse(bad, "ipam.type").unwrap_err();
            assert_eq!(e.key, "ipam.type", "{bad:?}");
        }
    }
}
