//! The WIT result into the runtime's result model, and back (an IPAM's
//! result handed to the interface plugin that asked for it).

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

/// The runtime's result as the WIT result a guest receives.
pub fn to_wit(r: &CniResult) -> wit::CniResult {
    wit::CniResult {
        interfaces: r
            .interfaces
            .iter()
            .map(|i| wit::Interface {
                name: i.name.clone(),
                mac: i.mac.clone(),
                mtu: i.mtu,
                sandbox: i.sandbox.as_deref().is_some_and(|s| !s.is_empty()),
            })
            .collect(),
        ips: r
            .ips
            .iter()
            .map(|ip| wit::IpConfig {
                address: ip.address.to_string(),
                gateway: ip.gateway.map(|g| g.to_string()),
                interface: ip.interface.map(|i| i as u32),
            })
            .collect(),
        routes: r
            .routes
            .iter()
            .map(|rt| wit::Route {
                dst: rt.dst.to_string(),
                gw: rt.gw.map(|g| g.to_string()),
                mtu: rt.mtu,
                advmss: rt.advmss,
                priority: rt.priority,
                table: rt.table,
                scope: rt.scope,
            })
            .collect(),
        dns: (r.dns != Default::default()).then(|| wit::Dns {
            nameservers: r.dns.nameservers.clone(),
            domain: (!r.dns.domain.is_empty()).then(|| r.dns.domain.clone()),
            search: r.dns.search.clone(),
            options: r.dns.options.clone(),
        }),
    }
}
