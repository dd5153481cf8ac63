//! route-override as a sandboxed chained plugin: the keys of the widely
//! used route-override CNI (`flushroutes`, `flushgateway`, `delroutes`,
//! `addroutes`, `skipcheck`), each also settable per pod in `args.cni`, plus
//! a route whose `gw` is `"prevResult"`: the gateway the attachment itself
//! got (the first IP of the route's family with one), so one NAD serves
//! every node of an overlay whose gateway differs per node.
//!
//! It acts on the attachment's own interfaces (`CNI_IFNAME` and the pod
//! interfaces of `prevResult`, what the sandbox grants), in the main table.
//! ADD changes the routes and the result's `routes`; CHECK looks for what
//! ADD did unless `skipcheck`; DEL does nothing, as upstream.

use std::net::IpAddr;

use multus_plugin_sdk::conf::NetConf;
use multus_plugin_sdk::ip::{parse_ip, Cidr};
use multus_plugin_sdk::netlink::{self, Namespace};
use multus_plugin_sdk::{
    code, error, invalid, Attachment, CniError, CniResult, Plugin, Request, Route,
};
use serde::Deserialize;

const MAIN_TABLE: u32 = 254;
const SCOPE_LINK: u32 = 253;
/// The `gw` that means "the attachment's own gateway".
const FROM_RESULT: &str = "prevResult";

#[derive(Deserialize, Clone)]
struct Dst {
    dst: String,
}

#[derive(Deserialize, Clone)]
struct AddRoute {
    dst: String,
    #[serde(default)]
    gw: Option<String>,
}

/// The keys, after `args.cni` overrode the config's.
struct Conf {
    flush_routes: bool,
    flush_gateway: bool,
    del_routes: Vec<Cidr>,
    add_routes: Vec<AddRoute>,
    skip_check: bool,
}

/// The network address of a CIDR, for comparing destinations.
fn network(s: &str) -> Result<Cidr, String> {
    let c = Cidr::parse(s)?;
    Ok(Cidr {
        addr: c.network(),
        prefix: c.prefix,
    })
}

fn key<T: serde::de::DeserializeOwned>(conf: &NetConf, k: &str) -> Result<Option<T>, CniError> {
    match conf.cni_arg(k)? {
        Some(v) => Ok(Some(v)),
        None => conf.get(k),
    }
}

impl Conf {
    fn load(conf: &NetConf) -> Result<Self, CniError> {
        let del_routes = key::<Vec<Dst>>(conf, "delroutes")?
            .unwrap_or_default()
            .iter()
            .map(|d| network(&d.dst).map_err(|e| invalid(format!("delroutes: {e}"))))
            .collect::<Result<_, _>>()?;
        let add_routes: Vec<AddRoute> = key(conf, "addroutes")?.unwrap_or_default();
        for r in &add_routes {
            network(&r.dst).map_err(|e| invalid(format!("addroutes: {e}")))?;
            if let Some(gw) = r.gw.as_deref().filter(|g| *g != FROM_RESULT) {
                parse_ip(gw).map_err(|e| {
                    invalid(format!(
                        "addroutes: gw {gw:?} is neither an IP nor {FROM_RESULT:?}: {e}"
                    ))
                })?;
            }
        }
        Ok(Self {
            flush_routes: key(conf, "flushroutes")?.unwrap_or(false),
            flush_gateway: key(conf, "flushgateway")?.unwrap_or(false),
            del_routes,
            add_routes,
            skip_check: key(conf, "skipcheck")?.unwrap_or(false),
        })
    }
}

fn is_default(dst: &str) -> bool {
    network(dst).is_ok_and(|c| c.prefix == 0)
}

/// The attachment's pod interfaces: `CNI_IFNAME` first, then the sandbox
/// interfaces of `prevResult`.
fn links(req: &Request, prev: &CniResult) -> Vec<String> {
    let mut out = vec![req.ifname.clone()];
    for i in prev.interfaces.iter().filter(|i| i.sandbox) {
        if !out.contains(&i.name) {
            out.push(i.name.clone());
        }
    }
    out
}

/// A connected route the interface needs to reach anything: IPv4 link
/// scope, IPv6 link-local, or the subnet of one of the result's addresses.
fn connected(r: &Route, prev: &CniResult) -> bool {
    let Ok(dst) = network(&r.dst) else {
        return false;
    };
    r.scope == Some(SCOPE_LINK)
        || (dst.prefix >= 10 && matches!(dst.addr, IpAddr::V6(a) if a.is_unicast_link_local()))
        || prev
            .ips
            .iter()
            .any(|ip| network(&ip.address).is_ok_and(|own| own == dst) && r.gw.is_none())
}

fn main_table(r: &Route) -> bool {
    r.table.is_none_or(|t| t == MAIN_TABLE)
}

/// The attachment's own gateway for `dst`'s family. On CHECK, after
/// `flushgateway` cleared the result's gateways, the route ADD added (in
/// the result) still carries it.
fn own_gateway(prev: &CniResult, dst: &Cidr) -> Result<IpAddr, CniError> {
    let from_ips = prev
        .ips
        .iter()
        .filter_map(|ip| ip.gateway.as_deref()?.parse::<IpAddr>().ok())
        .find(|g| g.is_ipv4() == dst.addr.is_ipv4());
    let added = || {
        prev.routes
            .iter()
            .filter(|r| same_dst(&r.dst, dst))
            .find_map(|r| r.gw.as_deref()?.parse::<IpAddr>().ok())
    };
    from_ips.or_else(added).ok_or_else(|| {
        invalid(format!(
            "addroutes: route to {} has gw {FROM_RESULT:?} but prevResult has no {} gateway",
            dst.addr,
            if dst.addr.is_ipv4() { "IPv4" } else { "IPv6" }
        ))
    })
}

/// The routes ADD adds, with every `gw` resolved.
fn resolved(conf: &Conf, prev: &CniResult) -> Result<Vec<Route>, CniError> {
    conf.add_routes
        .iter()
        .map(|r| {
            let dst = network(&r.dst).map_err(invalid)?;
            let gw = match r.gw.as_deref() {
                Some(FROM_RESULT) => Some(own_gateway(prev, &dst)?.to_string()),
                other => other.map(String::from),
            };
            Ok(Route {
                dst: format!("{}/{}", dst.addr, dst.prefix),
                gw,
                mtu: None,
                advmss: None,
                priority: None,
                table: None,
                scope: None,
            })
        })
        .collect()
}

fn load(req: &Request) -> Result<(Conf, CniResult), CniError> {
    let netconf = NetConf::parse(req)?;
    let conf = Conf::load(&netconf)?;
    let prev = netconf
        .prev_result()?
        .ok_or_else(|| invalid("route-override must be chained after a plugin: no prevResult"))?;
    Ok((conf, prev))
}

fn same_dst(a: &str, b: &Cidr) -> bool {
    network(a).is_ok_and(|c| c == *b)
}

struct RouteOverride;

impl Plugin for RouteOverride {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let (conf, mut result) = load(&req)?;
        // Gateways are resolved against the result as the previous plugin
        // left it, so `flushgateway` and a `prevResult` route go together.
        let original = result.clone();
        let links = links(&req, &result);
        for link in &links {
            for r in netlink::route_list(Namespace::Container, link)?
                .into_iter()
                .filter(main_table)
            {
                let flush = conf.flush_routes && !connected(&r, &result);
                let gateway = conf.flush_gateway && is_default(&r.dst);
                let listed = conf.del_routes.iter().any(|d| same_dst(&r.dst, d));
                if flush || gateway || listed {
                    netlink::route_del(Namespace::Container, link, &r)?;
                }
            }
        }
        if conf.flush_routes {
            result.routes.clear();
        }
        if conf.flush_gateway {
            result.routes.retain(|r| !is_default(&r.dst));
            for ip in &mut result.ips {
                ip.gateway = None;
            }
        }
        result
            .routes
            .retain(|r| !conf.del_routes.iter().any(|d| same_dst(&r.dst, d)));
        for r in resolved(&conf, &original)? {
            netlink::route_add(Namespace::Container, &req.ifname, &r)?;
            result.routes.push(r);
        }
        Ok(result)
    }

    fn del(_: Request) -> Result<(), CniError> {
        Ok(())
    }

    fn check(req: Request) -> Result<(), CniError> {
        let (conf, prev) = load(&req)?;
        if conf.skip_check {
            return Ok(());
        }
        let present: Vec<Route> = links(&req, &prev)
            .iter()
            .map(|l| netlink::route_list(Namespace::Container, l))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .filter(main_table)
            .collect();
        for d in &conf.del_routes {
            if present.iter().any(|r| same_dst(&r.dst, d)) {
                return Err(error(
                    code::INTERNAL,
                    format!(
                        "route-override: route to {}/{} is still there",
                        d.addr, d.prefix
                    ),
                ));
            }
        }
        for want in resolved(&conf, &prev)? {
            let dst = network(&want.dst).map_err(invalid)?;
            let gw: Option<IpAddr> = want.gw.as_deref().and_then(|g| g.parse().ok());
            let found = present.iter().any(|r| {
                same_dst(&r.dst, &dst) && r.gw.as_deref().and_then(|g| g.parse().ok()) == gw
            });
            if !found {
                return Err(error(
                    code::INTERNAL,
                    format!(
                        "route-override: route to {} via {} is missing",
                        want.dst,
                        want.gw.as_deref().unwrap_or("the link")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn status(req: Request) -> Result<(), CniError> {
        Conf::load(&NetConf::parse(&req)?).map(drop)
    }

    fn gc(_: Request, _: Vec<Attachment>) -> Result<(), CniError> {
        Ok(())
    }
}

multus_plugin_sdk::export!(RouteOverride);
