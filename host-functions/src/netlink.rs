//! Typed netlink operations, checked against the grant, run by rtnetlink on
//! a worker thread inside the target namespace.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::{Handle, LinkUnspec};

use crate::grant::Grant;
use crate::netns::{PodNetns, Worker};
use crate::routing::kernel::{dump_routes, entry_message, entry_of, table_or_main};
use crate::routing::{RouteEntry, RouteOp};
use crate::sysctl::{SysctlBackend, SysctlKey};
use crate::HostError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    Container,
    Host,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub name: String,
    pub index: u32,
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
    pub promisc: bool,
    pub allmulti: bool,
    pub txqlen: u32,
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    pub promisc: Option<bool>,
    pub allmulti: Option<bool>,
    pub txqlen: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u8>,
}

pub trait NetlinkBackend: Send {
    fn link_get(&mut self, ns: Ns, name: &str) -> Result<LinkInfo, HostError>;
    /// Every link of the namespace; the host filters what the guest sees.
    fn link_list(&mut self, ns: Ns) -> Result<Vec<LinkInfo>, HostError>;
    fn link_set(&mut self, ns: Ns, name: &str, change: &LinkChange) -> Result<(), HostError>;
    fn addr_list(&mut self, ns: Ns, name: &str) -> Result<Vec<IpNet>, HostError>;
    fn addr_add(&mut self, ns: Ns, name: &str, addr: IpNet) -> Result<(), HostError>;
    fn addr_del(&mut self, ns: Ns, name: &str, addr: IpNet) -> Result<(), HostError>;
    fn route_list(&mut self, ns: Ns, name: &str) -> Result<Vec<Route>, HostError>;
    fn route_add(&mut self, ns: Ns, name: &str, route: &Route) -> Result<(), HostError>;
    fn route_del(&mut self, ns: Ns, name: &str, route: &Route) -> Result<(), HostError>;
}

/// Checks that the call may act in `ns` at all.
pub fn check_namespace(grant: &Grant, ns: Ns) -> Result<(), HostError> {
    match ns {
        Ns::Host if !grant.host_netns => Err(HostError::Denied(format!(
            "plugin {:?} has no hostNetns grant; the host namespace is off limits",
            grant.plugin
        ))),
        Ns::Container if grant.netns.is_none() && grant.pod_gone => Err(HostError::NotFound(
            "the pod's network namespace is gone (no CNI_NETNS)".into(),
        )),
        Ns::Container if grant.netns.is_none() => {
            Err(HostError::Denied("no container netns in this call".into()))
        }
        _ => Ok(()),
    }
}

/// Checks a netlink call on link `name` against the grant before any
/// backend sees it. In the host netns (with `hostNetns`) only the links the
/// plugin's config names and those this call created may be touched.
pub fn check(grant: &Grant, ns: Ns, name: &str) -> Result<(), HostError> {
    check_namespace(grant, ns)?;
    crate::names::check_ifname(name, "link")?;
    match ns {
        Ns::Host if !grant.host_link_granted(name) => Err(HostError::Denied(format!(
            "host link {name:?} is neither named by the plugin's config nor created by this call (may touch: {})",
            crate::grant::listed(&grant.host_links)
        ))),
        Ns::Host => Ok(()),
        Ns::Container if !grant.link_granted(name) => Err(HostError::Denied(format!(
            "link {name:?} in the container netns was not granted to this call (granted: {})",
            grant.links.join(", ")
        ))),
        Ns::Container => Ok(()),
    }
}

pub fn format_mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Result<[u8; 6], HostError> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut out = [0u8; 6];
    if parts.len() != 6 {
        return Err(HostError::Invalid(format!(
            "MAC {:?}",
            crate::text::quoted(s)
        )));
    }
    for (o, p) in out.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16)
            .map_err(|_| HostError::Invalid(format!("MAC {:?}", crate::text::quoted(s))))?;
    }
    Ok(out)
}

pub(crate) fn nl(e: rtnetlink::Error) -> HostError {
    HostError::Netlink(e.to_string())
}

pub(crate) async fn find(h: &Handle, name: &str) -> Result<LinkMessage, HostError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(HostError::NotFound(format!("link {name:?}"))),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
            Err(HostError::NotFound(format!("link {name:?}")))
        }
        Err(e) => Err(nl(e)),
    }
}

pub(crate) fn link_info(m: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        name: String::new(),
        index: m.header.index,
        mac: String::new(),
        mtu: 0,
        up: m.header.flags.contains(LinkFlags::Up),
        promisc: m.header.flags.contains(LinkFlags::Promisc),
        allmulti: m.header.flags.contains(LinkFlags::Allmulti),
        txqlen: 0,
        kind: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => info.name = n.clone(),
            LinkAttribute::Address(b) => info.mac = format_mac(b),
            LinkAttribute::Mtu(v) => info.mtu = *v,
            LinkAttribute::TxQueueLen(v) => info.txqlen = *v,
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let NlLinkInfo::Kind(k) = i {
                        info.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    info
}

/// A 0.1.0 route as a routing entry: `main` unless it names a table, and
/// `static` as the protocol, which is what 0.1.0 hosts wrote.
fn entry(r: &Route) -> RouteEntry {
    RouteEntry {
        dst: r.dst,
        gw: r.gw,
        src: None,
        table: table_or_main(r.table),
        metric: r.priority,
        scope: r.scope,
        protocol: Some(u8::from(RouteProtocol::Static)),
    }
}

fn route_of(m: &RouteMessage) -> Option<Route> {
    let e = entry_of(m)?;
    Some(Route {
        dst: e.dst,
        gw: e.gw,
        priority: e.metric,
        table: Some(e.table),
        scope: e.scope,
    })
}

/// The kernel: netlink and sysctl through workers in the pod's and, when
/// granted, the host's namespace.
pub struct Kernel {
    pub pod: Option<PodNetns>,
    pub host: Option<Worker>,
    pub timeout: std::time::Duration,
}

impl Kernel {
    pub(crate) fn worker(&mut self, ns: Ns) -> Result<&Worker, HostError> {
        match ns {
            Ns::Container => self
                .pod
                .as_mut()
                .ok_or_else(|| HostError::NotFound("the pod's network namespace is gone".into()))?
                .worker(),
            Ns::Host => {
                if self.host.is_none() {
                    self.host = Some(Worker::spawn(None, "host netns", self.timeout)?);
                }
                Ok(self.host.as_ref().expect("just set"))
            }
        }
    }

    fn on_link<T: Send + 'static>(
        &mut self,
        ns: Ns,
        name: &str,
        call: &str,
        f: impl for<'h> FnOnce(
                &'h Handle,
                LinkMessage,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, HostError>> + 'h>,
            > + Send
            + 'static,
    ) -> Result<T, HostError> {
        let name = name.to_string();
        self.worker(ns)?.run(call, move |rt, h| {
            rt.block_on(async {
                let link = find(h, &name).await?;
                f(h, link).await
            })
        })
    }
}

impl NetlinkBackend for Kernel {
    fn link_get(&mut self, ns: Ns, name: &str) -> Result<LinkInfo, HostError> {
        self.on_link(ns, name, "link-get", |_, l| {
            Box::pin(async move { Ok(link_info(&l)) })
        })
    }

    fn link_list(&mut self, ns: Ns) -> Result<Vec<LinkInfo>, HostError> {
        self.worker(ns)?.run("link-list", |rt, h| {
            rt.block_on(async {
                let links: Vec<LinkMessage> =
                    h.link().get().execute().try_collect().await.map_err(nl)?;
                Ok(links.iter().map(link_info).collect())
            })
        })
    }

    fn link_set(&mut self, ns: Ns, name: &str, change: &LinkChange) -> Result<(), HostError> {
        let c = change.clone();
        self.on_link(ns, name, "link-set", move |h, l| {
            Box::pin(async move {
                let mut b = LinkUnspec::new_with_index(l.header.index);
                if let Some(mtu) = c.mtu {
                    b = b.mtu(mtu);
                }
                if let Some(mac) = c.mac {
                    b = b.address(mac.to_vec());
                }
                if let Some(p) = c.promisc {
                    b = b.promiscuous(p);
                }
                if let Some(a) = c.allmulti {
                    b = b.allmulticast(a);
                }
                if let Some(q) = c.txqlen {
                    b = b.txqueuelen(q);
                }
                match c.up {
                    Some(true) => b = b.up(),
                    Some(false) => b = b.down(),
                    None => {}
                }
                h.link().set(b.build()).execute().await.map_err(nl)
            })
        })
    }

    fn addr_list(&mut self, ns: Ns, name: &str) -> Result<Vec<IpNet>, HostError> {
        self.on_link(ns, name, "addr-list", |h, l| {
            Box::pin(async move {
                let msgs: Vec<_> = h
                    .address()
                    .get()
                    .set_link_index_filter(l.header.index)
                    .execute()
                    .try_collect()
                    .await
                    .map_err(nl)?;
                Ok(msgs
                    .iter()
                    .filter_map(|m| {
                        let local = m.attributes.iter().find_map(|a| match a {
                            AddressAttribute::Local(ip) => Some(*ip),
                            _ => None,
                        });
                        let addr = m.attributes.iter().find_map(|a| match a {
                            AddressAttribute::Address(ip) => Some(*ip),
                            _ => None,
                        });
                        IpNet::new(local.or(addr)?, m.header.prefix_len).ok()
                    })
                    .collect())
            })
        })
    }

    fn addr_add(&mut self, ns: Ns, name: &str, addr: IpNet) -> Result<(), HostError> {
        self.on_link(ns, name, "addr-add", move |h, l| {
            Box::pin(async move {
                h.address()
                    .add(l.header.index, addr.addr(), addr.prefix_len())
                    .execute()
                    .await
                    .map_err(nl)
            })
        })
    }

    fn addr_del(&mut self, ns: Ns, name: &str, addr: IpNet) -> Result<(), HostError> {
        self.on_link(ns, name, "addr-del", move |h, l| {
            Box::pin(async move {
                let msgs: Vec<_> = h
                    .address()
                    .get()
                    .set_link_index_filter(l.header.index)
                    .set_address_filter(addr.addr())
                    .execute()
                    .try_collect()
                    .await
                    .map_err(nl)?;
                let m = msgs
                    .into_iter()
                    .find(|m| m.header.prefix_len == addr.prefix_len())
                    .ok_or_else(|| HostError::NotFound(format!("address {addr}")))?;
                h.address().del(m).execute().await.map_err(nl)
            })
        })
    }

    fn route_list(&mut self, ns: Ns, name: &str) -> Result<Vec<Route>, HostError> {
        self.on_link(ns, name, "route-list", |h, l| {
            Box::pin(async move {
                Ok(dump_routes(h)
                    .await?
                    .iter()
                    .filter(|m| m.attributes.contains(&RouteAttribute::Oif(l.header.index)))
                    .filter_map(route_of)
                    .collect())
            })
        })
    }

    fn route_add(&mut self, ns: Ns, name: &str, route: &Route) -> Result<(), HostError> {
        let r = route.clone();
        self.on_link(ns, name, "route-add", move |h, l| {
            Box::pin(async move {
                h.route()
                    .add(entry_message(l.header.index, &entry(&r), RouteOp::Add)?)
                    .execute()
                    .await
                    .map_err(nl)
            })
        })
    }

    fn route_del(&mut self, ns: Ns, name: &str, route: &Route) -> Result<(), HostError> {
        let r = route.clone();
        self.on_link(ns, name, "route-del", move |h, l| {
            Box::pin(async move {
                // The kernel matches a non-zero protocol on delete; routes
                // other tools added (proto boot, kernel, ra) must match too.
                let mut e = entry(&r);
                e.protocol = None;
                let m = entry_message(l.header.index, &e, RouteOp::Del)?;
                h.route().del(m).execute().await.map_err(nl)
            })
        })
    }
}

impl SysctlBackend for Kernel {
    fn get(&mut self, key: &SysctlKey) -> Result<String, HostError> {
        let (path, dotted) = (key.path.clone(), key.dotted.clone());
        self.worker(Ns::Container)?.run("sysctl get", move |_, _| {
            std::fs::read_to_string(&path)
                .map(|s| s.trim_end().to_string())
                .map_err(|e| HostError::NotFound(format!("sysctl {dotted}: {e}")))
        })
    }

    fn set(&mut self, key: &SysctlKey, value: &str) -> Result<(), HostError> {
        let (path, dotted, value) = (key.path.clone(), key.dotted.clone(), value.to_string());
        self.worker(Ns::Container)?.run("sysctl set", move |_, _| {
            std::fs::write(&path, value.as_bytes())
                .map_err(|e| HostError::Io(format!("sysctl {dotted}: {e}")))
        })
    }
}

/// `dst [via gw] [table t] [metric m] [scope s]`, as a log line names a route.
fn describe_route(r: &Route) -> String {
    let mut out = r.dst.to_string();
    if let Some(gw) = r.gw {
        out.push_str(&format!(" via {gw}"));
    }
    if let Some(t) = r.table {
        out.push_str(&format!(" table {t}"));
    }
    if let Some(p) = r.priority {
        out.push_str(&format!(" metric {p}"));
    }
    if let Some(s) = r.scope {
        out.push_str(&format!(" scope {s}"));
    }
    out
}

/// Records netlink calls and answers from a fake link table; changes nothing.
#[derive(Clone, Default)]
pub struct RecordingNetlink {
    pub ops: Arc<Mutex<Vec<String>>>,
}

impl RecordingNetlink {
    fn record(&self, op: String) {
        self.ops.lock().expect("ops").push(op);
    }
}

impl NetlinkBackend for RecordingNetlink {
    fn link_get(&mut self, ns: Ns, name: &str) -> Result<LinkInfo, HostError> {
        self.record(format!("link-get {ns:?} {name}"));
        Ok(LinkInfo {
            name: name.into(),
            index: 2,
            mac: "02:00:00:00:00:01".into(),
            mtu: 1500,
            up: true,
            promisc: false,
            allmulti: false,
            txqlen: 1000,
            kind: Some("veth".into()),
        })
    }
    fn link_list(&mut self, ns: Ns) -> Result<Vec<LinkInfo>, HostError> {
        self.record(format!("link-list {ns:?}"));
        Ok(Vec::new())
    }
    fn link_set(&mut self, ns: Ns, name: &str, change: &LinkChange) -> Result<(), HostError> {
        self.record(format!("link-set {ns:?} {name} {change:?}"));
        Ok(())
    }
    fn addr_list(&mut self, ns: Ns, name: &str) -> Result<Vec<IpNet>, HostError> {
        self.record(format!("addr-list {ns:?} {name}"));
        Ok(Vec::new())
    }
    fn addr_add(&mut self, ns: Ns, name: &str, addr: IpNet) -> Result<(), HostError> {
        self.record(format!("addr-add {ns:?} {name} {addr}"));
        Ok(())
    }
    fn addr_del(&mut self, ns: Ns, name: &str, addr: IpNet) -> Result<(), HostError> {
        self.record(format!("addr-del {ns:?} {name} {addr}"));
        Ok(())
    }
    fn route_list(&mut self, ns: Ns, name: &str) -> Result<Vec<Route>, HostError> {
        self.record(format!("route-list {ns:?} {name}"));
        Ok(Vec::new())
    }
    fn route_add(&mut self, ns: Ns, name: &str, route: &Route) -> Result<(), HostError> {
        self.record(format!("route-add {ns:?} {name} {}", describe_route(route)));
        Ok(())
    }
    fn route_del(&mut self, ns: Ns, name: &str, route: &Route) -> Result<(), HostError> {
        self.record(format!("route-del {ns:?} {name} {}", describe_route(route)));
        Ok(())
    }
}
