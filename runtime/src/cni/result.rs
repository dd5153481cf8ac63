//! ADD results of every spec version, one in-memory model, conversion both ways.
//!
//! The model is the 1.1.0 result. Reading a 0.1/0.2 result collects `ip4`/`ip6`
//! into `ips` and their routes into `routes`; writing one keeps the first address
//! of each family, as libcni does. 0.3.x/0.4.0 add `ips[].version`; fields that
//! 1.1.0 introduced are dropped when writing older versions.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{CniError, Code};
use super::version::{Family, Version};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(
        default,
        rename = "socketPath",
        skip_serializing_if = "Option::is_none"
    )]
    pub socket_path: Option<String>,
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Only 0.3.x/0.4.0 carry it; it is recomputed from the address on write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl Route {
    pub fn is_default(&self) -> bool {
        self.dst.prefix_len() == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

/// An ADD result in the 1.1.0 model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    dns: Dns,
}

#[derive(Serialize, Deserialize, Default)]
struct Wire02 {
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip4: Option<IpConfig02>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip6: Option<IpConfig02>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    dns: Dns,
}

#[derive(Serialize, Deserialize)]
struct IpConfig02 {
    ip: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route02>,
}

#[derive(Serialize, Deserialize)]
struct Route02 {
    dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gw: Option<IpAddr>,
}

impl CniResult {
    /// Parses `value` as a result of its own `cniVersion`, or of
    /// `fallback_version` when it has none (as `version.ParsePrevResult` does).
    pub fn parse(value: &Value, fallback_version: &str) -> Result<Self, CniError> {
        let version = value
            .get("cniVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(fallback_version);
        let v = Version::parse(version).ok_or_else(|| {
            CniError::new(
                Code::Decode,
                format!(
                    "result has an invalid cniVersion {:?}",
                    multus_host_functions::text::quoted(version)
                ),
            )
        })?;
        let bad = |e: serde_json::Error| {
            CniError::new(
                Code::Decode,
                format!(
                    "failed to decode a {version} result: {}",
                    multus_host_functions::text::parser_message(e)
                ),
            )
        };
        if v.family() == Family::V02 {
            let w: Wire02 = serde_json::from_value(value.clone()).map_err(bad)?;
            let mut r = CniResult {
                dns: w.dns,
                ..Default::default()
            };
            for ip in [w.ip4, w.ip6].into_iter().flatten() {
                r.ips.push(IpConfig {
                    version: None,
                    address: ip.ip,
                    gateway: ip.gateway,
                    interface: None,
                });
                r.routes.extend(ip.routes.into_iter().map(|rt| Route {
                    dst: rt.dst,
                    gw: rt.gw,
                    mtu: None,
                    advmss: None,
                    priority: None,
                    table: None,
                    scope: None,
                }));
            }
            return Ok(r);
        }
        let w: Wire = serde_json::from_value(value.clone()).map_err(bad)?;
        let mut r = CniResult {
            interfaces: w.interfaces,
            ips: w.ips,
            routes: w.routes,
            dns: w.dns,
        };
        for ip in &mut r.ips {
            ip.version = None;
        }
        Ok(r)
    }

    /// Writes the result as `version` (which must be a supported version).
    pub fn to_value(&self, version: &str) -> Value {
        let v = Version::parse(version).expect("callers pass a supported version");
        let cni_version = version.to_string();
        match v.family() {
            Family::V02 => {
                let pick = |want_v4: bool| {
                    let ip = self
                        .ips
                        .iter()
                        .find(|ip| ip.address.addr().is_ipv4() == want_v4)?;
                    Some(IpConfig02 {
                        ip: ip.address,
                        gateway: ip.gateway,
                        routes: self
                            .routes
                            .iter()
                            .filter(|r| r.dst.addr().is_ipv4() == want_v4)
                            .map(|r| Route02 {
                                dst: r.dst,
                                gw: r.gw,
                            })
                            .collect(),
                    })
                };
                let w = Wire02 {
                    cni_version,
                    ip4: pick(true),
                    ip6: pick(false),
                    dns: self.dns.clone(),
                };
                serde_json::to_value(w).expect("result serializes")
            }
            family => {
                let mut w = Wire {
                    cni_version,
                    interfaces: self.interfaces.clone(),
                    ips: self.ips.clone(),
                    routes: self.routes.clone(),
                    dns: self.dns.clone(),
                };
                if family == Family::V04 {
                    for ip in &mut w.ips {
                        let fam = if ip.address.addr().is_ipv4() {
                            "4"
                        } else {
                            "6"
                        };
                        ip.version = Some(fam.to_string());
                    }
                }
                if family != Family::V11 {
                    for i in &mut w.interfaces {
                        i.mtu = None;
                        i.socket_path = None;
                        i.pci_id = None;
                    }
                    for r in &mut w.routes {
                        r.mtu = None;
                        r.advmss = None;
                        r.priority = None;
                        r.table = None;
                        r.scope = None;
                    }
                }
                serde_json::to_value(w).expect("result serializes")
            }
        }
    }
}

/// Re-labels or converts a raw result to `version`. A result already in that
/// version is passed through untouched so plugin-specific keys survive.
pub fn convert(value: &Value, fallback_version: &str, version: &str) -> Result<Value, CniError> {
    let own = value
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or(fallback_version);
    if own == version {
        return Ok(value.clone());
    }
    Ok(CniResult::parse(value, fallback_version)?.to_value(version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full_11() -> Value {
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "eth0", "mac": "0a:58:0a:01:00:05", "mtu": 1400, "sandbox": "/var/run/netns/p", "socketPath": "/s", "pciID": "0000:00:01.0"}
            ],
            "ips": [
                {"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 0},
                {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 0}
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 1300, "advmss": 1200, "priority": 10, "table": 100, "scope": 0},
                {"dst": "::/0", "gw": "fd00::1"}
            ],
            "dns": {"nameservers": ["10.1.0.2"], "domain": "cluster.local", "search": ["a"], "options": ["ndots:5"]}
        })
    }

    #[test]
    fn v11_round_trips() {
        let r = CniResult::parse(&full_11(), "1.1.0").unwrap();
        assert_eq!(r.to_value("1.1.0"), full_11());
    }

    #[test]
    fn down_to_04_adds_version_and_drops_11_fields() {
        let r = CniResult::parse(&full_11(), "1.1.0").unwrap();
        let v = r.to_value("0.4.0");
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["ips"][0]["version"], "4");
        assert_eq!(v["ips"][1]["version"], "6");
        assert!(v["interfaces"][0].get("mtu").is_none());
        assert!(v["interfaces"][0].get("socketPath").is_none());
        assert!(v["routes"][0].get("table").is_none());
        assert_eq!(v["routes"][0]["gw"], "10.1.0.1");
        assert_eq!(v["interfaces"][0]["mac"], "0a:58:0a:01:00:05");
        let back = CniResult::parse(&v, "0.4.0").unwrap();
        assert_eq!(back.ips, r.ips);
    }

    #[test]
    fn v10_has_no_version_field() {
        let r = CniResult::parse(&full_11(), "1.1.0").unwrap();
        let v = r.to_value("1.0.0");
        assert!(v["ips"][0].get("version").is_none());
        assert!(v["routes"][0].get("priority").is_none());
    }

    #[test]
    fn v03_parses_and_up_converts() {
        let v03 = json!({
            "cniVersion": "0.3.1",
            "interfaces": [{"name": "net1", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/x"}],
            "ips": [{"version": "4", "address": "192.168.1.2/24", "gateway": "192.168.1.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0"}]
        });
        let up = convert(&v03, "0.3.1", "1.1.0").unwrap();
        assert_eq!(up["cniVersion"], "1.1.0");
        assert!(up["ips"][0].get("version").is_none());
        assert_eq!(up["ips"][0]["interface"], 0);
        let down = convert(&up, "1.1.0", "0.3.0").unwrap();
        assert_eq!(down["ips"][0]["version"], "4");
    }

    #[test]
    fn v02_both_ways() {
        let r = CniResult::parse(&full_11(), "1.1.0").unwrap();
        let v = r.to_value("0.2.0");
        assert_eq!(v["ip4"]["ip"], "10.1.0.5/16");
        assert_eq!(v["ip4"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(v["ip6"]["ip"], "fd00::5/64");
        assert_eq!(v["ip6"]["routes"][0]["dst"], "::/0");
        assert!(v.get("interfaces").is_none());
        let back = CniResult::parse(&v, "0.2.0").unwrap();
        assert_eq!(back.ips.len(), 2);
        assert_eq!(back.routes.len(), 2);
        assert_eq!(back.dns.domain, "cluster.local");
    }

    #[test]
    fn missing_version_uses_fallback_and_same_version_passes_through() {
        let raw = json!({"ips": [{"address": "10.0.0.2/24"}], "custom": 1});
        let r = CniResult::parse(&raw, "1.0.0").unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.2/24");
        let same = json!({"cniVersion": "1.0.0", "custom": {"k": true}});
        assert_eq!(convert(&same, "1.0.0", "1.0.0").unwrap(), same);
    }

    #[test]
    fn bad_results_are_decode_errors() {
        let e = CniResult::parse(
            &json!({"cniVersion": "1.0.0", "ips": [{"address": "nope"}]}),
            "1.0.0",
        )
        .unwrap_err();
        assert_eq!(e.code, 6);
        let e = CniResult::parse(&json!({"cniVersion": "x"}), "1.0.0").unwrap_err();
        assert_eq!(e.code, 6);
    }

    #[test]
    fn empty_dns_is_omitted() {
        let r = CniResult::default();
        let v = r.to_value("1.0.0");
        assert_eq!(v, json!({"cniVersion": "1.0.0"}));
    }
}
