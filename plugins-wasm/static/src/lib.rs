//! static IPAM as a sandboxed component: the reference plugin's config
//! (`addresses` with optional gateways, `routes`, `dns`) and its overrides,
//! each later one replacing the list before it: `CNI_ARGS` `IP=` (added to
//! the configured addresses) and `GATEWAY=`, then `args.cni.ips`, then
//! `runtimeConfig.ips`. No state: DEL does nothing; CHECK finds each address
//! (and its gateway) in `prevResult`. Config errors are code 7 (the
//! reference reports them as 999).

use std::net::IpAddr;

use multus_plugin_sdk::conf::{ConfDns, ConfRoute, NetConf};
use multus_plugin_sdk::ip::{parse_ip, Cidr};
use multus_plugin_sdk::{
    code, error, invalid, Attachment, CniError, CniResult, IpConfig, Plugin, Request,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct AddressConf {
    address: String,
    #[serde(default)]
    gateway: Option<String>,
}

#[derive(Deserialize)]
struct Ipam {
    #[serde(default)]
    addresses: Vec<AddressConf>,
    #[serde(default)]
    routes: Vec<ConfRoute>,
    #[serde(default)]
    dns: Option<ConfDns>,
}

/// An address with its prefix, host bits kept, as the result writes it.
struct Address {
    cidr: Cidr,
    gateway: Option<IpAddr>,
}

struct StaticConf {
    addresses: Vec<Address>,
    routes: Vec<ConfRoute>,
    dns: Option<ConfDns>,
}

fn cidr(s: &str, what: impl Fn(&str) -> String) -> Result<Cidr, CniError> {
    Cidr::parse(s.trim()).map_err(|_| invalid(what(s)))
}

/// `args.cni.ips` or `runtimeConfig.ips`: a list that replaces the
/// addresses, each in CIDR notation, without gateways.
fn replacing(ips: Vec<String>) -> Result<Vec<Address>, CniError> {
    ips.iter()
        .map(|ip| {
            Ok(Address {
                cidr: cidr(ip, |s| {
                    format!("an entry in the 'ips' field is NOT in CIDR notation, got: '{s}'")
                })?,
                gateway: None,
            })
        })
        .collect()
}

impl StaticConf {
    fn load(req: &Request) -> Result<Self, CniError> {
        let conf = NetConf::parse(req)?;
        let ipam: Ipam = conf
            .get("ipam")?
            .ok_or_else(|| invalid("IPAM config missing 'ipam' key"))?;
        let mut addresses = ipam
            .addresses
            .iter()
            .map(|a| {
                Ok(Address {
                    cidr: cidr(&a.address, |s| {
                        format!(
                            "the 'address' field is expected to be in CIDR notation, got: '{s}'"
                        )
                    })?,
                    gateway: a
                        .gateway
                        .as_deref()
                        .filter(|g| !g.is_empty())
                        .map(|g| parse_ip(g).map_err(|e| invalid(format!("gateway: {e}"))))
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>, CniError>>()?;
        // GATEWAY= applies to the addresses IP= adds, never to the
        // configured ones (as the reference, which parses those later).
        let from_args = addresses.len();
        if let Some(ips) = req.arg("IP").filter(|v| !v.is_empty()) {
            for ip in ips.split(',') {
                addresses.push(Address {
                    cidr: cidr(ip, |s| format!("invalid CIDR {s}"))?,
                    gateway: None,
                });
            }
        }
        if let Some(gws) = req.arg("GATEWAY").filter(|v| !v.is_empty()) {
            for gw in gws.split(',') {
                let gw = parse_ip(gw.trim())
                    .map_err(|_| invalid(format!("invalid gateway address: {gw}")))?;
                for a in addresses[from_args..]
                    .iter_mut()
                    .filter(|a| a.cidr.contains(gw))
                {
                    a.gateway = Some(gw);
                }
            }
        }
        if let Some(ips) = conf
            .cni_arg::<Vec<String>>("ips")?
            .filter(|v| !v.is_empty())
        {
            addresses = replacing(ips)?;
        }
        if let Some(ips) = conf
            .runtime::<Vec<String>>("ips")?
            .filter(|v| !v.is_empty())
        {
            addresses = replacing(ips)?;
        }
        let per_family = |v4: bool| {
            addresses
                .iter()
                .filter(|a| a.cidr.addr.is_ipv4() == v4)
                .count()
        };
        if ["0.1.0", "0.2.0"].contains(&conf.cni_version.as_str())
            && (per_family(true) > 1 || per_family(false) > 1)
        {
            return Err(invalid(format!(
                "CNI version {} does not support more than 1 address per family",
                conf.cni_version
            )));
        }
        Ok(Self {
            addresses,
            routes: ipam.routes,
            dns: ipam.dns,
        })
    }
}

struct Static;

impl Plugin for Static {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let conf = StaticConf::load(&req)?;
        Ok(CniResult {
            interfaces: Vec::new(),
            ips: conf
                .addresses
                .iter()
                .map(|a| IpConfig {
                    address: format!("{}/{}", a.cidr.addr, a.cidr.prefix),
                    gateway: a.gateway.map(|g| g.to_string()),
                    interface: None,
                })
                .collect(),
            routes: conf.routes.iter().map(Into::into).collect(),
            dns: conf.dns.map(Into::into),
        })
    }

    /// Nothing was allocated.
    fn del(_: Request) -> Result<(), CniError> {
        Ok(())
    }

    fn check(req: Request) -> Result<(), CniError> {
        let conf = StaticConf::load(&req)?;
        let prev = NetConf::parse(&req)?
            .prev_result()?
            .ok_or_else(|| invalid("Required prevResult missing"))?;
        for a in &conf.addresses {
            let found = prev
                .ips
                .iter()
                .find(|ip| Cidr::parse(&ip.address).is_ok_and(|c| c.addr == a.cidr.addr));
            let gateway_matches = |ip: &IpConfig| {
                a.gateway
                    .is_none_or(|g| ip.gateway.as_deref().and_then(|s| s.parse().ok()) == Some(g))
            };
            if !found.is_some_and(gateway_matches) {
                return Err(error(
                    code::INTERNAL,
                    format!(
                        "static: Failed to match addr {} on interface {}",
                        a.cidr.addr, req.ifname
                    ),
                ));
            }
        }
        Ok(())
    }

    fn status(req: Request) -> Result<(), CniError> {
        StaticConf::load(&req).map(drop)
    }

    fn gc(_: Request, _: Vec<Attachment>) -> Result<(), CniError> {
        Ok(())
    }
}

multus_plugin_sdk::export!(Static);
