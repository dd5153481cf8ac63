//! The WIT result into the runtime's result model.

use multus_host_functions::bindings::multus::plugin::types as wit;

use crate::cni::result::{CniResult, Dns, Interface, IpConfig, Route};

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| format!("{what} {s:?}: {e}"))
}

/// `netns` fills in `sandbox` for the interfaces the plugin placed in the pod.
pub fn result(r: &wit::CniResult, netns: &str) -> Result<CniResult, String> {
    Ok(CniResult {
        interfaces: r
            .interfaces
            .iter()
            .map(|i| Interface {
                name: i.name.clone(),
                mac: i.mac.clone(),
                mtu: i.mtu,
                sandbox: i.sandbox.then(|| netns.to_string()),
                socket_path: None,
                pci_id: None,
            })
            .collect(),
        ips: r
            .ips
            .iter()
            .map(|ip| {
                Ok(IpConfig {
                    version: None,
                    address: parse(&ip.address, "address")?,
                    gateway: ip
                        .gateway
                        .as_deref()
                        .map(|g| parse(g, "gateway"))
                        .transpose()?,
                    interface: ip.interface.map(|i| i as usize),
                })
            })
            .collect::<Result<_, String>>()?,
        routes: r
            .routes
            .iter()
            .map(|rt| {
                Ok(Route {
                    dst: parse(&rt.dst, "route dst")?,
                    gw: rt.gw.as_deref().map(|g| parse(g, "route gw")).transpose()?,
                    mtu: rt.mtu,
                    advmss: rt.advmss,
                    priority: rt.priority,
                    table: rt.table,
                    scope: rt.scope,
                })
            })
            .collect::<Result<_, String>>()?,
        dns: r
            .dns
            .as_ref()
            .map(|d| Dns {
                nameservers: d.nameservers.clone(),
                domain: d.domain.clone().unwrap_or_default(),
                search: d.search.clone(),
                options: d.options.clone(),
            })
            .unwrap_or_default(),
    })
}
