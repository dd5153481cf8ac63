//! sbr (source-based routing) as a sandboxed chained plugin, with the
//! reference sbr's keys and kernel behaviour:
//!
//! - without `table`: for each IP of `CNI_IFNAME` in prevResult, the first
//!   table from 100 that no rule and no route uses; a rule `from <ip>/32
//!   lookup <table>`, a default route via the gateway in that table, and the
//!   interface's main-table routes copied into it (those of the IP's subnet,
//!   via a gateway in it, or generic ones), then removed from main;
//! - with `table`: only the rules, into that table (its routes are the
//!   admin's);
//! - `gateways`: a gateway per family that replaces prevResult's;
//! - `addSourceHints`: the subnet routes stay in main, with the IP as their
//!   `src` hint, so traffic the pod originates towards the subnet uses it;
//! - `vrfname`: refused (VRF links are not created by multus-wasm).
//!
//! DEL removes the rules from the interface's addresses (live, and
//! prevResult's when the link is already gone) and, in auto-table mode,
//! the routes it put in those tables. CHECK verifies the rules are there.

use std::collections::BTreeSet;
use std::net::IpAddr;

use multus_plugin_sdk::conf::NetConf;
use multus_plugin_sdk::ip::{bits, parse_ip, Cidr};
use multus_plugin_sdk::netlink::{self, Namespace};
use multus_plugin_sdk::routing::{self, Family, RouteEntry, Rule};
use multus_plugin_sdk::{code, error, invalid, Attachment, CniError, CniResult, Plugin, Request};

const FIRST_TABLE: u32 = 100;
const MAIN_TABLE: u32 = 254;
const NS: Namespace = Namespace::Container;

struct Conf {
    table: Option<u32>,
    gateways: Vec<IpAddr>,
    source_hints: bool,
}

impl Conf {
    fn load(netconf: &NetConf) -> Result<Self, CniError> {
        if netconf.raw.get("vrfname").is_some_and(|v| !v.is_null()) {
            return Err(invalid(
                "sbr: \"vrfname\" is not supported by the wasm sbr (multus-wasm creates no VRF links); remove the key, or remove sbr.wasm to run the native sbr",
            ));
        }
        let gateways = netconf
            .get::<Vec<String>>("gateways")?
            .unwrap_or_default()
            .iter()
            .map(|g| parse_ip(g).map_err(|e| invalid(format!("sbr: gateways: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        for fam in [true, false] {
            if gateways.iter().filter(|g| g.is_ipv4() == fam).count() > 1 {
                return Err(invalid(format!(
                    "sbr: gateways: more than one {} gateway",
                    if fam { "IPv4" } else { "IPv6" }
                )));
            }
        }
        let table = netconf.get::<i64>("table")?;
        if let Some(t) = table {
            if !(1..=i64::from(u32::MAX)).contains(&t) || matches!(t, 253..=255) {
                return Err(invalid(format!(
                    "sbr: table {t} is not a table sbr may use (1 to 4294967295, not default/main/local)"
                )));
            }
        }
        Ok(Self {
            table: table.map(|t| t as u32),
            gateways,
            source_hints: netconf.get("addSourceHints")?.unwrap_or(false),
        })
    }

    /// The gateway of the IP's default route in its table.
    fn gateway(&self, ip: &IpCfg) -> Option<IpAddr> {
        self.gateways
            .iter()
            .copied()
            .find(|g| g.is_ipv4() == ip.addr.addr.is_ipv4())
            .or(ip.gateway)
    }
}

struct IpCfg {
    addr: Cidr,
    gateway: Option<IpAddr>,
}

impl IpCfg {
    fn family(&self) -> Family {
        if self.addr.addr.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }

    /// The rule's `from`: the address alone, never its subnet.
    fn host(&self) -> String {
        format!("{}/{}", self.addr.addr, bits(self.addr.addr))
    }

    fn rule(&self, table: u32) -> Rule {
        Rule {
            family: self.family(),
            from: Some(self.host()),
            to: None,
            table,
            priority: None,
            iif: None,
            oif: None,
        }
    }
}

/// The IPs of `ifname` in prevResult: those whose interface is it, or that
/// name none (as the reference reads them).
fn ip_cfgs(ifname: &str, prev: &CniResult) -> Result<Vec<IpCfg>, CniError> {
    if prev.ips.is_empty() {
        return Err(invalid(format!(
            "sbr: prevResult has no IP addresses for {ifname}"
        )));
    }
    prev.ips
        .iter()
        .filter(|ip| {
            ip.interface.is_none_or(|i| {
                prev.interfaces
                    .get(i as usize)
                    .is_none_or(|iface| iface.name == ifname)
            })
        })
        .map(|ip| {
            Ok(IpCfg {
                addr: Cidr::parse(&ip.address)
                    .map_err(|e| invalid(format!("sbr: prevResult: {e}")))?,
                gateway: ip
                    .gateway
                    .as_deref()
                    .map(|g| parse_ip(g).map_err(|e| invalid(format!("sbr: prevResult: {e}"))))
                    .transpose()?,
            })
        })
        .collect()
}

fn load(req: &Request) -> Result<(Conf, Option<CniResult>), CniError> {
    let netconf = NetConf::parse(req)?;
    Ok((Conf::load(&netconf)?, netconf.prev_result()?))
}

fn ip_of(s: &Option<String>) -> Option<IpAddr> {
    s.as_deref().and_then(|s| s.parse().ok())
}

/// A main-table route belongs in the IP's table if it leaves from the IP's
/// subnet, goes via a gateway in it, or names neither (a generic route).
fn belongs(r: &RouteEntry, ip: &IpCfg) -> bool {
    let (src, gw) = (ip_of(&r.src), ip_of(&r.gw));
    src.is_some_and(|s| ip.addr.contains(s))
        || gw.is_some_and(|g| ip.addr.contains(g))
        || (src.is_none() && gw.is_none())
}

/// The connected route of the IP's subnet, which `addSourceHints` keeps.
fn subnet_route(r: &RouteEntry, ip: &IpCfg) -> bool {
    r.gw.is_none()
        && Cidr::parse(&r.dst)
            .is_ok_and(|d| d.prefix == ip.addr.prefix && d.network() == ip.addr.network())
}

fn default_route(ip: &IpCfg, gw: IpAddr, table: u32) -> RouteEntry {
    RouteEntry {
        dst: if ip.addr.addr.is_ipv4() {
            "0.0.0.0/0".into()
        } else {
            "::/0".into()
        },
        gw: Some(gw.to_string()),
        src: None,
        table: Some(table),
        metric: None,
        scope: None,
        protocol: None,
    }
}

/// The first table from `start` that no rule, no route and no earlier IP
/// of this call uses.
fn free_table(start: u32, used: &BTreeSet<u32>) -> u32 {
    (start..).find(|t| !used.contains(t)).unwrap_or(start)
}

fn add_auto(ifname: &str, conf: &Conf, ips: &[IpCfg]) -> Result<(), CniError> {
    let mut used: BTreeSet<u32> = routing::rule_list(NS)?.iter().map(|r| r.table).collect();
    used.extend(routing::table_list(NS)?);
    let main: Vec<RouteEntry> = routing::route_list(NS, ifname)?
        .into_iter()
        .filter(|r| r.table.unwrap_or(MAIN_TABLE) == MAIN_TABLE)
        .collect();
    let mut table = free_table(FIRST_TABLE, &used);
    for ip in ips {
        routing::rule_add(NS, &ip.rule(table))?;
        used.insert(table);
        if let Some(gw) = conf.gateway(ip) {
            routing::route_add(NS, ifname, &default_route(ip, gw, table))?;
        }
        for r in main.iter().filter(|r| belongs(r, ip)) {
            let mut moved = r.clone();
            moved.table = Some(table);
            routing::route_replace(NS, ifname, &moved)?;
        }
        table = free_table(table + 1, &used);
    }
    // Removed only after every table has its copy: two IPs of one subnet
    // both need the subnet route while their default routes are added.
    for r in &main {
        let hint = ips
            .iter()
            .find(|ip| conf.source_hints && subnet_route(r, ip))
            .map(|ip| ip.addr.addr.to_string());
        match hint {
            Some(src) if r.src.as_deref() == Some(src.as_str()) => {}
            Some(src) => {
                let mut hint = r.clone();
                hint.src = Some(src);
                routing::route_replace(NS, ifname, &hint)?;
            }
            None => routing::route_del(NS, ifname, r)?,
        }
    }
    Ok(())
}

/// The addresses whose rules are this interface's: on the link now, and
/// prevResult's (the link may be gone already on DEL).
fn own_addresses(req: &Request, prev: Option<&CniResult>) -> Result<Vec<IpAddr>, CniError> {
    let mut out: Vec<IpAddr> = match netlink::addr_list(NS, &req.ifname) {
        Ok(addrs) => addrs
            .iter()
            .filter_map(|a| Cidr::parse(a).ok())
            .map(|c| c.addr)
            .collect(),
        // Not found: the interface is gone with its routes; rules stay.
        Err(e) if e.code == code::INVALID_CONFIG && e.msg.contains("not found") => Vec::new(),
        Err(e) => return Err(e),
    };
    if let Some(prev) = prev.filter(|p| !p.ips.is_empty()) {
        out.extend(ip_cfgs(&req.ifname, prev)?.iter().map(|ip| ip.addr.addr));
    }
    Ok(out)
}

fn rule_from(r: &Rule) -> Option<IpAddr> {
    Cidr::parse(r.from.as_deref()?).ok().map(|c| c.addr)
}

struct Sbr;

impl Plugin for Sbr {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let (conf, prev) = load(&req)?;
        let prev =
            prev.ok_or_else(|| invalid("sbr must be called as a chained plugin: no prevResult"))?;
        let ips = ip_cfgs(&req.ifname, &prev)?;
        match conf.table {
            Some(table) => {
                for ip in &ips {
                    routing::rule_add(NS, &ip.rule(table))?;
                }
            }
            None => add_auto(&req.ifname, &conf, &ips)?,
        }
        Ok(prev)
    }

    fn del(req: Request) -> Result<(), CniError> {
        let (conf, prev) = load(&req)?;
        let addrs = own_addresses(&req, prev.as_ref())?;
        let ours: Vec<Rule> = routing::rule_list(NS)?
            .into_iter()
            .filter(|r| rule_from(r).is_some_and(|f| addrs.contains(&f)))
            .filter(|r| conf.table.is_none_or(|t| r.table == t))
            .collect();
        // As the reference: go on after a failed delete, report the last.
        let mut failed = None;
        let mut tables = BTreeSet::new();
        for r in &ours {
            match routing::rule_del(NS, r) {
                Ok(()) => {
                    tables.insert(r.table);
                }
                Err(e) => failed = Some(e),
            }
        }
        if conf.table.is_none() && !tables.is_empty() {
            let routes = match routing::route_list(NS, &req.ifname) {
                Ok(routes) => routes,
                Err(e) if e.msg.contains("not found") => Vec::new(),
                Err(e) => return Err(e),
            };
            for r in routes
                .iter()
                .filter(|r| r.table.is_some_and(|t| tables.contains(&t)))
            {
                if let Err(e) = routing::route_del(NS, &req.ifname, r) {
                    failed = Some(e);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    fn check(req: Request) -> Result<(), CniError> {
        let (conf, prev) = load(&req)?;
        let prev =
            prev.ok_or_else(|| invalid("sbr must be called as a chained plugin: no prevResult"))?;
        let rules = routing::rule_list(NS)?;
        for ip in ip_cfgs(&req.ifname, &prev)? {
            let found = rules.iter().any(|r| {
                rule_from(r) == Some(ip.addr.addr) && conf.table.is_none_or(|t| r.table == t)
            });
            if !found {
                return Err(error(
                    code::INTERNAL,
                    format!("sbr: no rule from {} on {}", ip.host(), req.ifname),
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

multus_plugin_sdk::export!(Sbr);
