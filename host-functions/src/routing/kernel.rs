//! Routes and rules through rtnetlink on the namespace's worker.

use std::collections::HashMap;
use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

use super::{Family, RouteEntry, RouteOp, RoutingBackend, Rule, RuleOp, TableRoute, MAIN_TABLE};
use crate::netlink::{find, nl, Kernel, Ns};
use crate::HostError;

/// The route's table: the attribute when present (ids above 255), else the
/// header's.
fn table_of(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// The entry of a kernel route message; `None` for what a route entry
/// cannot express (other families).
pub fn entry_of(m: &RouteMessage) -> Option<RouteEntry> {
    let v4 = match m.header.address_family {
        AddressFamily::Inet => true,
        AddressFamily::Inet6 => false,
        _ => return None,
    };
    let mut e = RouteEntry {
        dst: IpNet::new(
            if v4 {
                IpAddr::from([0u8; 4])
            } else {
                IpAddr::from([0u16; 8])
            },
            0,
        )
        .ok()?,
        gw: None,
        src: None,
        table: table_of(m),
        metric: None,
        scope: Some(u8::from(m.header.scope)),
        protocol: Some(u8::from(m.header.protocol)),
    };
    let mut dst = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(a) => dst = route_ip(a),
            RouteAttribute::Gateway(a) => e.gw = route_ip(a),
            RouteAttribute::PrefSource(a) => e.src = route_ip(a),
            RouteAttribute::Priority(p) => e.metric = Some(*p),
            _ => {}
        }
    }
    if let Some(dst) = dst {
        e.dst = IpNet::new(dst, m.header.destination_prefix_length).ok()?;
    }
    Some(e)
}

fn oif(m: &RouteMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// The kernel message for `r` out of link `index`. An absent protocol is
/// `boot` on add, as `ip route add` and the reference plugins use, and
/// matches any protocol on delete.
pub fn entry_message(index: u32, r: &RouteEntry, op: RouteOp) -> Result<RouteMessage, HostError> {
    fn invalid<E: std::fmt::Display>(r: &RouteEntry) -> impl Fn(E) -> HostError + '_ {
        move |e| HostError::Invalid(format!("route {}: {e}", super::describe_route(r)))
    }
    let bad = invalid(r);
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dst.addr(), r.dst.prefix_len())
        .map_err(&bad)?
        .output_interface(index)
        .table_id(r.table);
    if let Some(gw) = r.gw {
        b = b.gateway(gw).map_err(&bad)?;
    }
    if let Some(src) = r.src {
        b = b.pref_source(src).map_err(&bad)?;
    }
    if let Some(m) = r.metric {
        b = b.priority(m);
    }
    if let Some(s) = r.scope {
        b = b.scope(RouteScope::from(s));
    }
    b = b.protocol(match (r.protocol, op) {
        (Some(p), _) => RouteProtocol::from(p),
        (None, RouteOp::Del) => RouteProtocol::Unspec,
        (None, _) => RouteProtocol::Boot,
    });
    Ok(b.build())
}

pub(crate) async fn dump_routes(h: &Handle) -> Result<Vec<RouteMessage>, HostError> {
    let mut out = Vec::new();
    for q in [
        RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
        RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
    ] {
        let msgs: Vec<RouteMessage> = h.route().get(q).execute().try_collect().await.map_err(nl)?;
        out.extend(msgs);
    }
    Ok(out)
}

fn rule_of(m: &RuleMessage) -> Option<Rule> {
    if m.header.action != RuleAction::ToTable {
        return None;
    }
    let family = match m.header.family {
        AddressFamily::Inet => Family::V4,
        AddressFamily::Inet6 => Family::V6,
        _ => return None,
    };
    let mut r = Rule {
        family,
        from: None,
        to: None,
        table: u32::from(m.header.table),
        priority: None,
        iif: None,
        oif: None,
    };
    for a in &m.attributes {
        match a {
            RuleAttribute::Source(ip) => r.from = IpNet::new(*ip, m.header.src_len).ok(),
            RuleAttribute::Destination(ip) => r.to = IpNet::new(*ip, m.header.dst_len).ok(),
            RuleAttribute::Table(t) => r.table = *t,
            RuleAttribute::Priority(p) => r.priority = Some(*p),
            RuleAttribute::Iifname(l) => r.iif = Some(l.clone()),
            RuleAttribute::Oifname(l) => r.oif = Some(l.clone()),
            _ => {}
        }
    }
    Some(r)
}

fn rule_message(r: &Rule) -> Result<RuleMessage, HostError> {
    let mut m = RuleMessage::default();
    m.header.family = match r.family {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    };
    m.header.action = RuleAction::ToTable;
    for (prefix, what) in [(&r.from, "from"), (&r.to, "to")] {
        if let Some(p) = prefix {
            if Family::of(p.addr()) != r.family {
                return Err(HostError::Invalid(format!(
                    "rule {what} {p} is not of the rule's family"
                )));
            }
        }
    }
    if let Some(f) = r.from {
        m.header.src_len = f.prefix_len();
        m.attributes.push(RuleAttribute::Source(f.addr()));
    }
    if let Some(t) = r.to {
        m.header.dst_len = t.prefix_len();
        m.attributes.push(RuleAttribute::Destination(t.addr()));
    }
    if r.table > 255 {
        m.header.table = RouteHeader::RT_TABLE_UNSPEC;
        m.attributes.push(RuleAttribute::Table(r.table));
    } else {
        m.header.table = r.table as u8;
    }
    if let Some(p) = r.priority {
        m.attributes.push(RuleAttribute::Priority(p));
    }
    if let Some(l) = &r.iif {
        m.attributes.push(RuleAttribute::Iifname(l.clone()));
    }
    if let Some(l) = &r.oif {
        m.attributes.push(RuleAttribute::Oifname(l.clone()));
    }
    Ok(m)
}

impl RoutingBackend for Kernel {
    fn routes(&mut self, ns: Ns, link: &str) -> Result<Vec<RouteEntry>, HostError> {
        let link = link.to_string();
        self.worker(ns)?.run("route-list", move |rt, h| {
            rt.block_on(async {
                let index = find(h, &link).await?.header.index;
                Ok(dump_routes(h)
                    .await?
                    .iter()
                    .filter(|m| oif(m) == Some(index))
                    .filter_map(entry_of)
                    .collect())
            })
        })
    }

    fn route_write(
        &mut self,
        ns: Ns,
        link: &str,
        op: RouteOp,
        r: &RouteEntry,
    ) -> Result<(), HostError> {
        let (link, r) = (link.to_string(), r.clone());
        self.worker(ns)?.run(op.call(), move |rt, h| {
            rt.block_on(async {
                let index = find(h, &link).await?.header.index;
                let m = entry_message(index, &r, op)?;
                match op {
                    RouteOp::Add => h.route().add(m).execute().await,
                    RouteOp::Replace => h.route().add(m).replace().execute().await,
                    RouteOp::Del => h.route().del(m).execute().await,
                }
                .map_err(nl)
            })
        })
    }

    fn rules(&mut self, ns: Ns) -> Result<Vec<Rule>, HostError> {
        self.worker(ns)?.run("rule-list", |rt, h| {
            rt.block_on(async {
                let mut out = Vec::new();
                for v in [IpVersion::V4, IpVersion::V6] {
                    let msgs: Vec<RuleMessage> =
                        h.rule().get(v).execute().try_collect().await.map_err(nl)?;
                    out.extend(msgs.iter().filter_map(rule_of));
                }
                Ok(out)
            })
        })
    }

    fn rule_write(&mut self, ns: Ns, op: RuleOp, r: &Rule) -> Result<(), HostError> {
        let m = rule_message(r)?;
        self.worker(ns)?.run(op.call(), move |rt, h| {
            rt.block_on(async {
                match op {
                    RuleOp::Add => {
                        let mut req = h.rule().add();
                        *req.message_mut() = m;
                        req.execute().await
                    }
                    RuleOp::Del => h.rule().del(m).execute().await,
                }
                .map_err(nl)
            })
        })
    }

    fn table_routes(&mut self, ns: Ns, table: Option<u32>) -> Result<Vec<TableRoute>, HostError> {
        self.worker(ns)?.run("table-routes", move |rt, h| {
            rt.block_on(async {
                let names: HashMap<u32, String> = h
                    .link()
                    .get()
                    .execute()
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(nl)?
                    .iter()
                    .map(|l| {
                        let info = crate::netlink::link_info(l);
                        (info.index, info.name)
                    })
                    .collect();
                Ok(dump_routes(h)
                    .await?
                    .iter()
                    .filter_map(|m| {
                        Some((oif(m).and_then(|i| names.get(&i).cloned()), entry_of(m)?))
                    })
                    .filter(|(_, e)| table.is_none_or(|t| e.table == t))
                    .collect())
            })
        })
    }
}

/// `main` when a 0.1.0 route names no table.
pub fn table_or_main(table: Option<u32>) -> u32 {
    table.unwrap_or(MAIN_TABLE)
}
