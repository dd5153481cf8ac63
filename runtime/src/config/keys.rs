//! Go's `encoding/json` matches object keys to fields case-insensitively and
//! the last duplicate wins; upstream configs rely on it (`LogFile`, `logFile`).

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use multus_host_functions::text::{parser_message, quoted};

use crate::cni::{CniError, Code};

/// A JSON object's members keyed by lower-cased name, values kept as raw text
/// so nested delegate configs reach the delegate byte for byte.
pub struct FoldedObject {
    what: String,
    members: IndexMap<String, Box<RawValue>>,
}

impl FoldedObject {
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self, CniError> {
        let raw: IndexMap<String, Box<RawValue>> = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                Code::Decode,
                format!(
                    "{what}: failed to decode JSON object: {}",
                    parser_message(e)
                ),
            )
        })?;
        let mut members = IndexMap::with_capacity(raw.len());
        for (k, v) in raw {
            members.insert(k.to_ascii_lowercase(), v);
        }
        Ok(Self {
            what: what.to_string(),
            members,
        })
    }

    pub fn raw(&self, key: &str) -> Option<&RawValue> {
        self.members.get(&key.to_ascii_lowercase()).map(|b| &**b)
    }

    /// The member `key` decoded as `T`; `null` counts as absent, as in Go.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CniError> {
        let Some(raw) = self.raw(key) else {
            return Ok(None);
        };
        if raw.get() == "null" {
            return Ok(None);
        }
        serde_json::from_str(raw.get()).map(Some).map_err(|e| {
            CniError::new(
                Code::InvalidConfig,
                format!(
                    "{}: invalid value for {key:?}: {}",
                    self.what,
                    parser_message(e)
                ),
            )
        })
    }

    /// A boolean member; like libcni, the strings "true"/"false" are accepted.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, CniError> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum B {
            Bool(bool),
            Str(String),
        }
        match self.get::<B>(key)? {
            None => Ok(None),
            Some(B::Bool(b)) => Ok(Some(b)),
            Some(B::Str(s)) => match s.as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(CniError::new(
                    Code::InvalidConfig,
                    format!(
                        "{}: invalid value for {key:?}: {:?} is not a boolean",
                        self.what,
                        quoted(&s)
                    ),
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_last_wins() {
        let o =
            FoldedObject::parse(br#"{"LogFile":"/a","logfile":"/b","X":null}"#, "conf").unwrap();
        assert_eq!(o.get::<String>("logFile").unwrap().as_deref(), Some("/b"));
        assert_eq!(o.get::<String>("x").unwrap(), None);
    }

    #[test]
    fn type_errors_name_the_key() {
        let o = FoldedObject::parse(br#"{"logToStderr": 3, "b": "true"}"#, "multus conf").unwrap();
        let e = o.get_bool("logToStderr").unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("logToStderr"), "{}", e.msg);
        assert_eq!(o.get_bool("B").unwrap(), Some(true));
    }

    #[test]
    fn not_an_object_is_decode_error() {
        assert_eq!(FoldedObject::parse(b"[1]", "c").err().unwrap().code, 6);
        assert_eq!(FoldedObject::parse(b"{", "c").err().unwrap().code, 6);
    }
}
