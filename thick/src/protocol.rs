//! Upstream's shim <-> daemon protocol: HTTP/1.1 over a unix socket.
//! `POST /cni` carries `{"env": {..}, "config": <stdin, base64>}` (Go
//! encodes `[]byte` as base64); the answer is 200 with `{"Result": ..}`
//! (empty for commands without a result) or 400 with a CNI error.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const SOCKET: &str = "multus.sock";
pub const PATH_CNI: &str = "/cni";
pub const PATH_HEALTHZ: &str = "/healthz";
pub const PATH_READYZ: &str = "/readyz";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub env: BTreeMap<String, String>,
    /// The CNI conf the runtime gave the shim, as base64 on the wire.
    #[serde(with = "bytes_base64")]
    pub config: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(rename = "Result")]
    pub result: Value,
}

mod bytes_base64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_as_upstreams_shim_sends_it() {
        // encoding/json of upstream's api.Request: config is []byte.
        let wire = r#"{"env":{"CNI_COMMAND":"ADD","CNI_IFNAME":"eth0"},"config":"eyJjbmlWZXJzaW9uIjoiMS4wLjAifQ=="}"#;
        let r: Request = serde_json::from_str(wire).unwrap();
        assert_eq!(r.config, br#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(r.env["CNI_COMMAND"], "ADD");
        assert_eq!(serde_json::to_string(&r).unwrap(), wire);
    }

    #[test]
    fn response_keeps_upstreams_field_name() {
        let r = Response {
            result: serde_json::json!({"cniVersion": "1.0.0"}),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"Result":{"cniVersion":"1.0.0"}}"#
        );
    }
}
