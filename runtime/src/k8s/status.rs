//! The `k8s.v1.cni.cncf.io/network-status` annotation: built from the
//! delegates' results, written through `pods/status` with conflict retries.
//!
//! Entries follow what consumers parse today (nad-client's `NetworkStatus`):
//! the gateway list is `gateway`, `ips` are bare addresses and `dns` is always
//! present.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use k8s_openapi::api::core::v1::Pod;

use super::api::{ClusterApi, Read};
use super::client::{Kind, KubeError};
use super::pod::{self, PodRef};
use crate::cni::result::{CniResult, Dns};
use crate::cni::CniError;

/// Attempts of GET + PUT when another writer got in between (client-go's
/// `retry.DefaultRetry`: 5 steps, 10 ms apart).
const CONFLICT_ATTEMPTS: u32 = 5;
const CONFLICT_BACKOFF: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkStatus {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    pub dns: Dns,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateway: Vec<String>,
    #[serde(rename = "device-info", skip_serializing_if = "Option::is_none")]
    pub device_info: Option<Value>,
}

/// One entry per sandbox interface of `result`. An attachment whose result
/// names no sandbox interface still gets one entry, under `ifname`.
pub fn entries(
    result: &CniResult,
    name: &str,
    ifname: &str,
    cluster_network: bool,
    device_info: Option<Value>,
) -> Vec<NetworkStatus> {
    let sandboxed: Vec<usize> = result
        .interfaces
        .iter()
        .enumerate()
        .filter(|(_, i)| i.sandbox.as_deref().is_some_and(|s| !s.is_empty()))
        .map(|(n, _)| n)
        .collect();
    let blank = |interface: Option<String>| NetworkStatus {
        name: name.to_string(),
        interface,
        ips: Vec::new(),
        mac: None,
        mtu: None,
        default: false,
        dns: result.dns.clone(),
        gateway: Vec::new(),
        device_info: device_info.clone(),
    };
    let mut out: Vec<NetworkStatus> = sandboxed
        .iter()
        .map(|&n| {
            let i = &result.interfaces[n];
            NetworkStatus {
                mac: i.mac.clone(),
                mtu: i.mtu,
                ..blank(Some(i.name.clone()))
            }
        })
        .collect();
    if out.is_empty() {
        out.push(blank(Some(ifname.to_string())));
    }
    let last = out.len() - 1;
    // Which entry owns an IP: the one its `interface` index names, else the last.
    let owner = |index: Option<usize>| -> usize {
        index
            .and_then(|i| sandboxed.iter().position(|&s| s == i))
            .unwrap_or(last)
    };
    for ip in &result.ips {
        out[owner(ip.interface)]
            .ips
            .push(ip.address.addr().to_string());
    }
    for r in result.routes.iter().filter(|r| r.is_default()) {
        let Some(gw) = r.gw else { continue };
        // The entry with an address in the gateway's subnet, else the last.
        let n = result
            .ips
            .iter()
            .find(|ip| ip.address.contains(&gw))
            .map(|ip| owner(ip.interface))
            .unwrap_or(last);
        let gw = gw.to_string();
        if !out[n].gateway.contains(&gw) {
            out[n].gateway.push(gw);
        }
    }
    if cluster_network {
        let n = out.iter().position(|s| !s.gateway.is_empty()).unwrap_or(0);
        out[n].default = true;
    }
    out
}

/// The annotation's value, indented as upstream writes it.
pub fn render(statuses: &[NetworkStatus]) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    statuses
        .serialize(&mut ser)
        .expect("network statuses serialize");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

/// Writes `value` under `key` on the pod through `pods/status`, with the
/// resourceVersion of `known` (the pod as ADD read it, saving a GET when
/// nothing changed since); a conflict re-GETs, re-checks the UID and tries
/// again. The first attempt is `first`'s (which may send other requests
/// with it), the others `replace_pod_status`. `Ok(false)`: the pod was
/// deleted meanwhile, so there is nothing to annotate (the runtime DELs
/// the sandbox next).
pub fn write(
    kube: &dyn ClusterApi,
    want: &PodRef,
    known: &Pod,
    key: &str,
    value: &str,
    first: impl FnOnce(&Pod) -> Result<Pod, KubeError>,
) -> Result<bool, CniError> {
    let mut first = Some(first);
    let mut current = known.clone();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut annotations: BTreeMap<String, String> = pod::annotations(&current);
        annotations.insert(key.to_string(), value.to_string());
        current.metadata.annotations = Some(annotations);
        let written = match first.take() {
            Some(f) => f(&current),
            None => kube.replace_pod_status(&current),
        };
        match written {
            Ok(_) => return Ok(true),
            Err(e) if e.kind == Kind::NotFound => return Ok(false),
            Err(e) if e.kind == Kind::Conflict && attempt < CONFLICT_ATTEMPTS => {
                tracing::debug!(pod = %want, attempt, "network-status write conflicted; retrying");
                std::thread::sleep(CONFLICT_BACKOFF * attempt);
                current = match kube.get_pod(want, Read::Live) {
                    Ok(p) => p,
                    Err(e) if e.kind == Kind::NotFound => return Ok(false),
                    Err(e) => return Err(pod::to_cni(e, &format!("writing {key}"))),
                };
                pod::check_uid(&current, want)?;
            }
            Err(e) => {
                return Err(pod::to_cni(
                    e,
                    &format!("writing {key} (attempt {attempt})"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(v: Value) -> CniResult {
        CniResult::parse(&v, "1.0.0").unwrap()
    }

    #[test]
    fn one_entry_per_sandbox_interface() {
        let r = result(json!({"cniVersion":"1.0.0",
            "interfaces":[{"name":"cni0","mac":"aa:aa:aa:aa:aa:aa"},
                          {"name":"veth1","mac":"bb:bb:bb:bb:bb:bb"},
                          {"name":"eth0","mac":"02:00:00:00:00:01","mtu":1450,"sandbox":"/var/run/netns/p"}],
            "ips":[{"address":"10.0.0.5/24","gateway":"10.0.0.1","interface":2},
                   {"address":"fd00::5/64","interface":2}],
            "routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"},{"dst":"10.9.0.0/16","gw":"10.0.0.1"}],
            "dns":{"nameservers":["10.96.0.10"],"search":["svc.cluster.local"]}}));
        let s = entries(&r, "cbr0", "eth0", true, None);
        assert_eq!(s.len(), 1);
        let v = serde_json::to_value(&s[0]).unwrap();
        assert_eq!(
            v,
            json!({"name":"cbr0","interface":"eth0","ips":["10.0.0.5","fd00::5"],
                   "mac":"02:00:00:00:00:01","mtu":1450,"default":true,
                   "dns":{"nameservers":["10.96.0.10"],"search":["svc.cluster.local"]},
                   "gateway":["10.0.0.1"]})
        );
    }

    #[test]
    fn secondary_without_interfaces_or_routes() {
        let r = result(json!({"cniVersion":"1.0.0","ips":[{"address":"192.168.1.200/24"}]}));
        let info = json!({"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:00.1"}});
        let s = entries(&r, "ns/sriov", "net1", false, Some(info.clone()));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            json!([{"name":"ns/sriov","interface":"net1","ips":["192.168.1.200"],
                    "dns":{},"device-info":info}])
        );
    }

    #[test]
    fn unindexed_ips_go_last_and_default_goes_to_the_gateway_owner() {
        let r = result(json!({"cniVersion":"1.0.0",
            "interfaces":[{"name":"a","sandbox":"/p"},{"name":"b","sandbox":"/p"}],
            "ips":[{"address":"10.0.0.5/24","interface":0},{"address":"10.1.0.5/24"}],
            "routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}]}));
        let s = entries(&r, "n", "eth0", true, None);
        assert_eq!(s[0].ips, vec!["10.0.0.5"]);
        assert_eq!(s[1].ips, vec!["10.1.0.5"]);
        assert_eq!(s[1].gateway, vec!["10.1.0.1"]);
        assert!(!s[0].default && s[1].default);
        assert!(render(&s).starts_with("[\n    {\n        \"name\": \"n\""));
    }
}
