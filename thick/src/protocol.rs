//! Upstream's shim <-> daemon protocol: HTTP/1.1 over a unix socket.
//! `POST /cni` carries `{"env": {..}, "config": <stdin, base64>}` (Go
//! encodes `[]byte` as base64); the answer is 200 with `{"Result": ..}`
//! (empty for commands without a result) or 400 with a CNI error.
//! `POST /delegate` (hot-plug) carries one network's own config as `config`
//! and `interfaceAttributes` (`ips`, `mac`, `cni-args`).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const SOCKET: &str = "multus.sock";
pub const PATH_CNI: &str = "/cni";
pub const PATH_DELEGATE: &str = "/delegate";
pub const PATH_HEALTHZ: &str = "/healthz";
pub const PATH_READYZ: &str = "/readyz";

/// The largest request the daemon reads: a CNI conf and the runtime's
/// environment, base64'd, are a few KiB; 1 MiB leaves room for the largest
/// conflists and never lets one connection make the daemon buffer more.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// How long the daemon waits for a request's headers, and then its body,
/// before dropping the connection: a shim sends both at once.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long the shim waits for `/healthz` or `/readyz` to answer: a daemon
/// that cannot answer a probe in this time is treated as unreachable.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub env: BTreeMap<String, String>,
    /// The CNI conf the runtime gave the shim, as base64 on the wire.
    #[serde(with = "bytes_base64")]
    pub config: Vec<u8>,
    /// `/delegate` only: what the new interface should get.
    #[serde(
        rename = "interfaceAttributes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_attributes: Option<InterfaceAttributes>,
}

/// Upstream's `DelegateInterfaceAttributes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InterfaceAttributes {
    #[serde(rename = "ips", default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(rename = "mac", default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(rename = "cni-args", default, skip_serializing_if = "Option::is_none")]
    pub cni_args: Option<serde_json::Map<String, Value>>,
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
    fn delegate_request_as_the_dynamic_networks_controller_sends_it() {
        let wire = r#"{"env":{"CNI_COMMAND":"ADD","CNI_IFNAME":"net2"},"config":"e30=","interfaceAttributes":{"ips":["10.0.0.9/24"],"mac":"02:00:00:00:00:09","cni-args":{"a":"b"}}}"#;
        let r: Request = serde_json::from_str(wire).unwrap();
        let a = r.interface_attributes.as_ref().unwrap();
        assert_eq!(a.ips, ["10.0.0.9/24"]);
        assert_eq!(a.mac.as_deref(), Some("02:00:00:00:00:09"));
        assert_eq!(a.cni_args.as_ref().unwrap()["a"], "b");
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
