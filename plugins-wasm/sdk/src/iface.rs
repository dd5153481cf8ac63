//! The pod interface an interface plugin made, configured and checked as
//! the reference plugins' `ipam.ConfigureIface` and CHECK do.

use std::net::IpAddr;

use crate::ip::{parse_ip, Cidr};
use crate::netlink::{self, Namespace};
use crate::routing::{self, RouteEntry};
use crate::sysctl::{self, Key, LinkKey};
use crate::{code, error, CniError, CniResult};

const POD: Namespace = Namespace::Container;

/// Sets `net.<section>.conf.<ifname>.<name>` in the pod, best effort, as
/// the reference plugins do (a kernel without IPv6 has no such key).
pub fn conf_sysctl(ifname: &str, section: &str, name: &str, value: &str) {
    let _ = sysctl::set(
        &Key {
            section: section.into(),
            link: Some(LinkKey {
                group: "conf".into(),
                link: ifname.into(),
            }),
            name: name.into(),
        },
        value,
    );
}

/// The gateway of the first IP of the family (`v4`) that has one.
pub fn gateway(r: &CniResult, v4: bool) -> Option<String> {
    r.ips
        .iter()
        .filter_map(|ip| ip.gateway.as_deref())
        .find(|g| parse_ip(g).is_ok_and(|g: IpAddr| g.is_ipv4() == v4))
        .map(String::from)
}

/// The config's IPAM result, run by the host; one without any IP is
/// released again and refused, as the reference plugins refuse it.
pub fn ipam_add(plugin: &str) -> Result<CniResult, CniError> {
    let r = crate::links::ipam_add()?;
    if r.ips.is_empty() {
        let _ = crate::links::ipam_del();
        return Err(error(
            code::INTERNAL,
            format!("{plugin}: IPAM plugin returned missing IP config"),
        ));
    }
    Ok(r)
}

/// The result on pod link `ifname`: up, its addresses, its routes (a route
/// without `gw` goes via its family's gateway).
pub fn configure(ifname: &str, r: &CniResult) -> Result<(), CniError> {
    crate::link_up(POD, ifname)?;
    for ip in &r.ips {
        netlink::addr_add(POD, ifname, &ip.address)?;
    }
    for route in &r.routes {
        let v4 = Cidr::parse(&route.dst).is_ok_and(|c| c.addr.is_ipv4());
        let entry = RouteEntry {
            dst: route.dst.clone(),
            gw: route.gw.clone().or_else(|| gateway(r, v4)),
            src: None,
            table: route.table,
            metric: route.priority,
            scope: None,
            protocol: None,
        };
        routing::route_add(POD, ifname, &entry)?;
    }
    Ok(())
}

/// CHECK of pod link `ifname` against prevResult: the kind, the MAC
/// prevResult gives it, its addresses there and every route. Returns the
/// link for the plugin's own further checks.
pub fn check(
    plugin: &str,
    ifname: &str,
    kind: &str,
    prev: &CniResult,
) -> Result<netlink::LinkInfo, CniError> {
    let fail = |m: String| error(code::INTERNAL, format!("{plugin}: {m}"));
    let at = prev
        .interfaces
        .iter()
        .position(|i| i.name == ifname && i.sandbox)
        .ok_or_else(|| fail(format!("prevResult has no {ifname} in the pod")))?;
    let link = netlink::link_get(POD, ifname)?;
    if link.kind.as_deref() != Some(kind) {
        return Err(fail(format!("{ifname} is not a {kind}")));
    }
    if let Some(mac) = &prev.interfaces[at].mac {
        if !mac.eq_ignore_ascii_case(&link.mac) {
            return Err(fail(format!("{ifname} has MAC {}, not {mac}", link.mac)));
        }
    }
    let addrs = netlink::addr_list(POD, ifname)?;
    for ip in prev.ips.iter().filter(|ip| ip.interface == Some(at as u32)) {
        if !addrs.contains(&ip.address) {
            return Err(fail(format!("{ifname} lacks {}", ip.address)));
        }
    }
    let routes = netlink::route_list(POD, ifname)?;
    for want in &prev.routes {
        let found = routes
            .iter()
            .any(|r| r.dst == want.dst && (want.gw.is_none() || r.gw == want.gw));
        if !found {
            return Err(fail(format!("route to {} is missing", want.dst)));
        }
    }
    Ok(link)
}
