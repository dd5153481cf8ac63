//! The per-invocation store data: WASI context, grant, backends, and the
//! implementations of the generated host traits, each checking the grant.

use std::str::FromStr;

use ipnet::IpNet;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::multus::plugin::{
    cluster, links, log, netlink, routing, store, sysctl, types,
};
use crate::cluster::{ClusterBackend, ClusterError, Kind};
use crate::grant::Grant;
use crate::links::{
    BridgeSettings, IpamBackend, LinksBackend, MacvlanMode, PortSettings, RecordingLinks,
};
use crate::log::{Level, LogSink};
use crate::netlink::{self as nl, LinkChange, NetlinkBackend, Ns, RecordingNetlink, Route};
use crate::routing::policy::Granted;
use crate::routing::{
    self as rt, RecordingRouting, RouteEntry, RouteOp, RoutingBackend, Rule, RuleOp, TableRoute,
};
use crate::store::{StoreBackend, Transaction};
use crate::sysctl::{RecordingSysctl, SysctlBackend, SysctlKey};
use crate::{HostError, WitError};

/// Netlink, routing and sysctl together: the real `Kernel` shares one
/// worker thread per namespace between them.
pub trait KernelBackend: NetlinkBackend + SysctlBackend + RoutingBackend + LinksBackend {}
impl<T: NetlinkBackend + SysctlBackend + RoutingBackend + LinksBackend> KernelBackend for T {}

/// Records netlink, routing and sysctl calls, changes nothing.
#[derive(Clone, Default)]
pub struct RecordingKernel {
    pub netlink: RecordingNetlink,
    pub routing: RecordingRouting,
    pub sysctl: RecordingSysctl,
    pub links: RecordingLinks,
}

impl LinksBackend for RecordingKernel {
    fn macvlan_add(
        &mut self,
        master: &str,
        mode: MacvlanMode,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
        ifname: &str,
    ) -> Result<nl::LinkInfo, HostError> {
        self.links.macvlan_add(master, mode, mtu, mac, ifname)
    }
    fn veth_add(
        &mut self,
        ifname: &str,
        host_name: &str,
        mtu: Option<u32>,
    ) -> Result<(nl::LinkInfo, nl::LinkInfo), HostError> {
        self.links.veth_add(ifname, host_name, mtu)
    }
    fn enable_forwarding(&mut self, ipv4: bool, ipv6: bool) -> Result<(), HostError> {
        self.links.enable_forwarding(ipv4, ipv6)
    }
    fn link_del(&mut self, ifname: &str) -> Result<bool, HostError> {
        self.links.link_del(ifname)
    }
    fn bridge_ensure(&mut self, name: &str, s: BridgeSettings) -> Result<nl::LinkInfo, HostError> {
        self.links.bridge_ensure(name, s)
    }
    fn bridge_attach(
        &mut self,
        port: &str,
        bridge: &str,
        s: &PortSettings,
    ) -> Result<(), HostError> {
        self.links.bridge_attach(port, bridge, s)
    }
}

impl NetlinkBackend for RecordingKernel {
    fn link_get(&mut self, ns: Ns, name: &str) -> Result<nl::LinkInfo, HostError> {
        self.netlink.link_get(ns, name)
    }
    fn link_list(&mut self, ns: Ns) -> Result<Vec<nl::LinkInfo>, HostError> {
        self.netlink.link_list(ns)
    }
    fn link_set(&mut self, ns: Ns, name: &str, change: &LinkChange) -> Result<(), HostError> {
        self.netlink.link_set(ns, name, change)
    }
    fn addr_list(&mut self, ns: Ns, name: &str) -> Result<Vec<IpNet>, HostError> {
        self.netlink.addr_list(ns, name)
    }
    fn addr_add(&mut self, ns: Ns, name: &str, addr: IpNet) -> Result<(), HostError> {
        self.netlink.addr_add(ns, name, addr)
    }
    fn addr_del(&mut self, ns: Ns, name: &str, addr: IpNet) -> Result<(), HostError> {
        self.netlink.addr_del(ns, name, addr)
    }
    fn route_list(&mut self, ns: Ns, name: &str) -> Result<Vec<Route>, HostError> {
        self.netlink.route_list(ns, name)
    }
    fn route_add(&mut self, ns: Ns, name: &str, route: &Route) -> Result<(), HostError> {
        self.netlink.route_add(ns, name, route)
    }
    fn route_del(&mut self, ns: Ns, name: &str, route: &Route) -> Result<(), HostError> {
        self.netlink.route_del(ns, name, route)
    }
}

impl RoutingBackend for RecordingKernel {
    fn routes(&mut self, ns: Ns, link: &str) -> Result<Vec<RouteEntry>, HostError> {
        self.routing.routes(ns, link)
    }
    fn route_write(
        &mut self,
        ns: Ns,
        link: &str,
        op: RouteOp,
        r: &RouteEntry,
    ) -> Result<(), HostError> {
        self.routing.route_write(ns, link, op, r)
    }
    fn rules(&mut self, ns: Ns) -> Result<Vec<Rule>, HostError> {
        self.routing.rules(ns)
    }
    fn rule_write(&mut self, ns: Ns, op: RuleOp, r: &Rule) -> Result<(), HostError> {
        self.routing.rule_write(ns, op, r)
    }
    fn table_routes(&mut self, ns: Ns, table: Option<u32>) -> Result<Vec<TableRoute>, HostError> {
        self.routing.table_routes(ns, table)
    }
}

impl SysctlBackend for RecordingKernel {
    fn get(&mut self, key: &SysctlKey) -> Result<String, HostError> {
        self.sysctl.get(key)
    }
    fn set(&mut self, key: &SysctlKey, value: &str) -> Result<(), HostError> {
        self.sysctl.set(key, value)
    }
}

pub struct HostState {
    pub grant: Grant,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    pub store: Option<Box<dyn StoreBackend>>,
    pub kernel: Box<dyn KernelBackend>,
    /// Cluster calls, when the grant allows any.
    pub cluster: Option<Box<dyn ClusterBackend>>,
    /// The config's IPAM, for interface plugins.
    pub ipam: Option<Box<dyn IpamBackend>>,
    pub log: LogSink,
    /// Every refusal, so the runtime can name it even if the guest hides it.
    pub denials: Vec<String>,
}

impl HostState {
    pub fn new(
        grant: Grant,
        wasi: WasiCtx,
        memory_limit: usize,
        store: Option<Box<dyn StoreBackend>>,
        kernel: Box<dyn KernelBackend>,
        container_id: &str,
    ) -> Self {
        let log = LogSink::new(&grant.plugin, container_id);
        Self {
            grant,
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_limit)
                .instances(16)
                .tables(64)
                .build(),
            store,
            kernel,
            cluster: None,
            ipam: None,
            log,
            denials: Vec::new(),
        }
    }

    fn fail(&mut self, call: &str, e: HostError) -> WitError {
        if matches!(e, HostError::Denied(_)) {
            self.denials.push(format!("{call}: {e}"));
        }
        e.to_wit(call)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.log.log(level, &message);
    }
}

impl store::Host for HostState {
    fn open(&mut self) -> Result<Resource<Transaction>, WitError> {
        let Some(backend) = &self.store else {
            let e = HostError::Denied(format!(
                "plugin {:?} was granted no store",
                self.grant.plugin
            ));
            return Err(self.fail("store.open", e));
        };
        let txn = backend.open().map_err(|e| e.to_wit("store.open"))?;
        self.table
            .push(Transaction(txn))
            .map_err(|e| HostError::Io(e.to_string()).to_wit("store.open"))
    }
}

impl HostState {
    fn txn<T>(
        &mut self,
        r: &Resource<Transaction>,
        call: &str,
        f: impl FnOnce(&mut dyn crate::store::Txn) -> Result<T, HostError>,
    ) -> Result<T, WitError> {
        let t = self
            .table
            .get_mut(r)
            .map_err(|e| HostError::Invalid(e.to_string()).to_wit(call))?;
        let out = f(t.0.as_mut());
        out.map_err(|e| self.fail(call, e))
    }
}

impl store::HostTransaction for HostState {
    fn get(&mut self, r: Resource<Transaction>, key: String) -> Result<Option<String>, WitError> {
        self.txn(&r, "store.get", |t| t.get(&key))
    }
    fn insert(
        &mut self,
        r: Resource<Transaction>,
        key: String,
        value: String,
    ) -> Result<bool, WitError> {
        self.txn(&r, "store.insert", |t| t.insert(&key, &value))
    }
    fn put(
        &mut self,
        r: Resource<Transaction>,
        key: String,
        value: String,
    ) -> Result<(), WitError> {
        self.txn(&r, "store.put", |t| t.put(&key, &value))
    }
    fn remove(&mut self, r: Resource<Transaction>, key: String) -> Result<bool, WitError> {
        self.txn(&r, "store.remove", |t| t.remove(&key))
    }
    fn keys(&mut self, r: Resource<Transaction>) -> Result<Vec<String>, WitError> {
        self.txn(&r, "store.keys", |t| t.keys())
    }
    fn drop(&mut self, r: Resource<Transaction>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

fn ns(n: netlink::Namespace) -> Ns {
    match n {
        netlink::Namespace::Container => Ns::Container,
        netlink::Namespace::Host => Ns::Host,
    }
}

fn parse_net(s: &str, what: &str) -> Result<IpNet, HostError> {
    IpNet::from_str(s).map_err(|e| HostError::Invalid(format!("{what} {s:?}: {e}")))
}

fn to_route(r: &types::Route) -> Result<Route, HostError> {
    Ok(Route {
        dst: parse_net(&r.dst, "route dst")?,
        gw: r
            .gw
            .as_deref()
            .map(|g| {
                g.parse()
                    .map_err(|e| HostError::Invalid(format!("route gw {g:?}: {e}")))
            })
            .transpose()?,
        priority: r.priority,
        table: r.table,
        scope: r.scope.map(|s| s.min(255) as u8),
    })
}

fn from_route(r: Route) -> types::Route {
    types::Route {
        dst: r.dst.to_string(),
        gw: r.gw.map(|g| g.to_string()),
        mtu: None,
        advmss: None,
        priority: r.priority,
        table: r.table,
        scope: r.scope.map(u32::from),
    }
}

impl HostState {
    /// Checks the grant, then runs one netlink call on the kernel backend.
    fn netlink<T>(
        &mut self,
        call: &str,
        n: netlink::Namespace,
        name: &str,
        f: impl FnOnce(&mut dyn KernelBackend, Ns) -> Result<T, HostError>,
    ) -> Result<T, WitError> {
        let n = ns(n);
        let out = nl::check(&self.grant, n, name).and_then(|()| f(self.kernel.as_mut(), n));
        out.map_err(|e| self.fail(&format!("netlink.{call}({name})"), e))
    }
}

impl netlink::Host for HostState {
    fn link_get(
        &mut self,
        n: netlink::Namespace,
        name: String,
    ) -> Result<netlink::LinkInfo, WitError> {
        self.netlink("link-get", n, &name, |k, n| k.link_get(n, &name))
            .map(wit_link)
    }

    fn link_list(&mut self, n: netlink::Namespace) -> Result<Vec<netlink::LinkInfo>, WitError> {
        let n = ns(n);
        let out = nl::check_namespace(&self.grant, n).and_then(|()| self.kernel.link_list(n));
        let links = out.map_err(|e| self.fail("netlink.link-list", e))?;
        Ok(links
            .into_iter()
            .filter(|l| match n {
                Ns::Host => self.grant.host_link_granted(&l.name),
                Ns::Container => self.grant.link_granted(&l.name),
            })
            .map(wit_link)
            .collect())
    }

    fn link_set(
        &mut self,
        n: netlink::Namespace,
        name: String,
        c: netlink::LinkChange,
    ) -> Result<(), WitError> {
        self.netlink("link-set", n, &name, |k, n| {
            let change = LinkChange {
                up: c.up,
                mtu: c.mtu,
                mac: c.mac.as_deref().map(nl::parse_mac).transpose()?,
                promisc: c.promisc,
                allmulti: c.allmulti,
                txqlen: c.txqlen,
            };
            k.link_set(n, &name, &change)
        })
    }

    fn addr_list(&mut self, n: netlink::Namespace, name: String) -> Result<Vec<String>, WitError> {
        self.netlink("addr-list", n, &name, |k, n| k.addr_list(n, &name))
            .map(|v| v.into_iter().map(|a| a.to_string()).collect())
    }

    fn addr_add(
        &mut self,
        n: netlink::Namespace,
        name: String,
        cidr: String,
    ) -> Result<(), WitError> {
        self.netlink("addr-add", n, &name, |k, n| {
            k.addr_add(n, &name, parse_net(&cidr, "address")?)
        })
    }

    fn addr_del(
        &mut self,
        n: netlink::Namespace,
        name: String,
        cidr: String,
    ) -> Result<(), WitError> {
        self.netlink("addr-del", n, &name, |k, n| {
            k.addr_del(n, &name, parse_net(&cidr, "address")?)
        })
    }

    fn route_list(
        &mut self,
        n: netlink::Namespace,
        name: String,
    ) -> Result<Vec<types::Route>, WitError> {
        self.netlink("route-list", n, &name, |k, n| k.route_list(n, &name))
            .map(|v| v.into_iter().map(from_route).collect())
    }

    fn route_add(
        &mut self,
        n: netlink::Namespace,
        name: String,
        r: types::Route,
    ) -> Result<(), WitError> {
        if let Some(table) = r.table {
            let out = self.writable_table(ns(n), table);
            out.map_err(|e| self.fail(&format!("netlink.route-add({name})"), e))?;
        }
        self.netlink("route-add", n, &name, |k, n| {
            k.route_add(n, &name, &to_route(&r)?)
        })
    }

    fn route_del(
        &mut self,
        n: netlink::Namespace,
        name: String,
        r: types::Route,
    ) -> Result<(), WitError> {
        self.netlink("route-del", n, &name, |k, n| {
            k.route_del(n, &name, &to_route(&r)?)
        })
    }
}

fn wit_link(l: nl::LinkInfo) -> netlink::LinkInfo {
    netlink::LinkInfo {
        name: l.name,
        index: l.index,
        mac: l.mac,
        mtu: l.mtu,
        up: l.up,
        promisc: l.promisc,
        allmulti: l.allmulti,
        txqlen: l.txqlen,
        kind: l.kind,
    }
}

fn parse_ip(s: &str, what: &str) -> Result<std::net::IpAddr, HostError> {
    s.parse()
        .map_err(|e| HostError::Invalid(format!("{what} {s:?}: {e}")))
}

fn to_entry(r: &routing::RouteEntry) -> Result<RouteEntry, HostError> {
    Ok(RouteEntry {
        dst: parse_net(&r.dst, "route dst")?,
        gw: r
            .gw
            .as_deref()
            .map(|g| parse_ip(g, "route gw"))
            .transpose()?,
        src: r
            .src
            .as_deref()
            .map(|g| parse_ip(g, "route src"))
            .transpose()?,
        table: r.table.unwrap_or(rt::MAIN_TABLE),
        metric: r.metric,
        scope: r.scope.map(|s| match s {
            routing::Scope::Global => 0,
            routing::Scope::Site => 200,
            routing::Scope::Link => 253,
            routing::Scope::Host => 254,
        }),
        protocol: r.protocol,
    })
}

fn from_entry(r: RouteEntry) -> routing::RouteEntry {
    routing::RouteEntry {
        dst: r.dst.to_string(),
        gw: r.gw.map(|g| g.to_string()),
        src: r.src.map(|g| g.to_string()),
        table: Some(r.table),
        metric: r.metric,
        scope: r.scope.and_then(|s| match s {
            0 => Some(routing::Scope::Global),
            200 => Some(routing::Scope::Site),
            253 => Some(routing::Scope::Link),
            254 => Some(routing::Scope::Host),
            _ => None,
        }),
        protocol: r.protocol,
    }
}

fn to_rule(r: &routing::Rule) -> Result<Rule, HostError> {
    Ok(Rule {
        family: match r.family {
            routing::Family::Ipv4 => rt::Family::V4,
            routing::Family::Ipv6 => rt::Family::V6,
        },
        from: r
            .from
            .as_deref()
            .map(|p| parse_net(p, "rule from"))
            .transpose()?,
        to: r
            .to
            .as_deref()
            .map(|p| parse_net(p, "rule to"))
            .transpose()?,
        table: r.table,
        priority: r.priority,
        iif: r.iif.clone(),
        oif: r.oif.clone(),
    })
}

fn from_rule(r: Rule) -> routing::Rule {
    routing::Rule {
        family: match r.family {
            rt::Family::V4 => routing::Family::Ipv4,
            rt::Family::V6 => routing::Family::Ipv6,
        },
        from: r.from.map(|p| p.to_string()),
        to: r.to.map(|p| p.to_string()),
        table: r.table,
        priority: r.priority,
        iif: r.iif,
        oif: r.oif,
    }
}

impl HostState {
    /// The addresses of the granted links: those prevResult gave them and
    /// those on them now.
    fn granted_addrs(&mut self) -> Vec<IpNet> {
        let mut out = self.grant.addresses.clone();
        for link in self.grant.links.clone() {
            if let Ok(addrs) = self.kernel.addr_list(Ns::Container, &link) {
                out.extend(addrs);
            }
        }
        out
    }

    /// Whether a route may be written into `table` of `n`.
    fn writable_table(&mut self, n: Ns, table: u32) -> Result<(), HostError> {
        nl::check_namespace(&self.grant, n)?;
        if n == Ns::Host || rt::policy::shared_table(table) {
            return Ok(());
        }
        let routes = self.kernel.table_routes(n, Some(table))?;
        let rules = self.kernel.rules(n)?;
        let addrs = self.granted_addrs();
        Granted {
            links: &self.grant.links,
            addrs: &addrs,
        }
        .check_route_table(table, &routes, &rules)
    }

    /// Whether `r` may be added (or deleted) in `n`.
    fn rule_allowed(&mut self, n: Ns, r: &Rule, deleting: bool) -> Result<(), HostError> {
        nl::check_namespace(&self.grant, n)?;
        if n == Ns::Host {
            return Ok(());
        }
        let routes = if rt::policy::shared_table(r.table) {
            Vec::new()
        } else {
            self.kernel.table_routes(n, Some(r.table))?
        };
        let rules = self.kernel.rules(n)?;
        let addrs = self.granted_addrs();
        Granted {
            links: &self.grant.links,
            addrs: &addrs,
        }
        .check_rule(r, &routes, &rules, deleting)
    }

    fn route_write(
        &mut self,
        n: netlink::Namespace,
        link: &str,
        op: RouteOp,
        r: &routing::RouteEntry,
    ) -> Result<(), WitError> {
        let n = ns(n);
        let out = nl::check(&self.grant, n, link)
            .and_then(|()| to_entry(r))
            .and_then(|e| {
                if op != RouteOp::Del {
                    self.writable_table(n, e.table)?;
                }
                self.kernel.route_write(n, link, op, &e)
            });
        out.map_err(|e| self.fail(&format!("routing.{}({link})", op.call()), e))
    }

    fn rule_write(
        &mut self,
        n: netlink::Namespace,
        op: RuleOp,
        r: &routing::Rule,
    ) -> Result<(), WitError> {
        let n = ns(n);
        let out = to_rule(r).and_then(|rule| {
            self.rule_allowed(n, &rule, op == RuleOp::Del)?;
            self.kernel.rule_write(n, op, &rule)
        });
        out.map_err(|e| self.fail(&format!("routing.{}", op.call()), e))
    }
}

impl routing::Host for HostState {
    fn route_list(
        &mut self,
        n: netlink::Namespace,
        link: String,
    ) -> Result<Vec<routing::RouteEntry>, WitError> {
        let n = ns(n);
        let out = nl::check(&self.grant, n, &link).and_then(|()| self.kernel.routes(n, &link));
        out.map(|v| v.into_iter().map(from_entry).collect())
            .map_err(|e| self.fail(&format!("routing.route-list({link})"), e))
    }

    fn route_add(
        &mut self,
        n: netlink::Namespace,
        link: String,
        r: routing::RouteEntry,
    ) -> Result<(), WitError> {
        self.route_write(n, &link, RouteOp::Add, &r)
    }

    fn route_replace(
        &mut self,
        n: netlink::Namespace,
        link: String,
        r: routing::RouteEntry,
    ) -> Result<(), WitError> {
        self.route_write(n, &link, RouteOp::Replace, &r)
    }

    fn route_del(
        &mut self,
        n: netlink::Namespace,
        link: String,
        r: routing::RouteEntry,
    ) -> Result<(), WitError> {
        self.route_write(n, &link, RouteOp::Del, &r)
    }

    fn rule_list(&mut self, n: netlink::Namespace) -> Result<Vec<routing::Rule>, WitError> {
        let n = ns(n);
        let out = nl::check_namespace(&self.grant, n).and_then(|()| self.kernel.rules(n));
        out.map(|v| v.into_iter().map(from_rule).collect())
            .map_err(|e| self.fail("routing.rule-list", e))
    }

    fn rule_add(&mut self, n: netlink::Namespace, r: routing::Rule) -> Result<(), WitError> {
        self.rule_write(n, RuleOp::Add, &r)
    }

    fn rule_del(&mut self, n: netlink::Namespace, r: routing::Rule) -> Result<(), WitError> {
        self.rule_write(n, RuleOp::Del, &r)
    }

    fn table_list(&mut self, n: netlink::Namespace) -> Result<Vec<u32>, WitError> {
        let n = ns(n);
        let out =
            nl::check_namespace(&self.grant, n).and_then(|()| self.kernel.table_routes(n, None));
        let mut tables: Vec<u32> = out
            .map_err(|e| self.fail("routing.table-list", e))?
            .into_iter()
            .map(|(_, r)| r.table)
            .collect();
        tables.sort_unstable();
        tables.dedup();
        Ok(tables)
    }
}

fn wit_cluster_error(e: ClusterError) -> cluster::ClusterError {
    match e {
        ClusterError::NotFound(m) => cluster::ClusterError::NotFound(m),
        ClusterError::Conflict(m) => cluster::ClusterError::Conflict(m),
        ClusterError::Invalid(m) => cluster::ClusterError::Invalid(m),
        ClusterError::Denied(m) => cluster::ClusterError::Denied(m),
        ClusterError::Unavailable(m) => cluster::ClusterError::Unavailable(m),
    }
}

impl HostState {
    /// Checks the grant, then runs one cluster call on the backend.
    fn cluster_call<T>(
        &mut self,
        call: &str,
        kind: &cluster::Kind,
        f: impl FnOnce(&mut dyn ClusterBackend, &Kind) -> Result<T, ClusterError>,
    ) -> Result<T, cluster::ClusterError> {
        let kind = Kind {
            group: kind.group.clone(),
            version: kind.version.clone(),
            plural: kind.plural.clone(),
        };
        let checked = match (&self.grant.cluster, self.cluster.as_deref_mut()) {
            (Some(g), Some(backend)) => g.check(&self.grant.plugin, &kind).map(|()| backend),
            _ => Err(ClusterError::Denied(format!(
                "plugin {:?} was granted no cluster access",
                self.grant.plugin
            ))),
        };
        match checked {
            Ok(backend) => f(backend, &kind).map_err(wit_cluster_error),
            Err(e) => {
                self.denials.push(format!("cluster.{call}({kind}): {e}"));
                Err(wit_cluster_error(e))
            }
        }
    }
}

impl cluster::Host for HostState {
    /// Empty when the call has no cluster access or no usable credentials;
    /// the next call then says why.
    fn namespace(&mut self) -> String {
        match (&self.grant.cluster, self.cluster.as_deref_mut()) {
            (Some(_), Some(backend)) => backend.namespace().unwrap_or_default(),
            _ => String::new(),
        }
    }

    fn get(&mut self, kind: cluster::Kind, name: String) -> Result<String, cluster::ClusterError> {
        self.cluster_call("get", &kind, |b, k| b.get(k, &name))
    }

    fn list(&mut self, kind: cluster::Kind) -> Result<String, cluster::ClusterError> {
        self.cluster_call("list", &kind, |b, k| b.list(k))
    }

    fn create(
        &mut self,
        kind: cluster::Kind,
        object: String,
    ) -> Result<String, cluster::ClusterError> {
        self.cluster_call("create", &kind, |b, k| b.create(k, &object))
    }

    fn replace(
        &mut self,
        kind: cluster::Kind,
        name: String,
        object: String,
    ) -> Result<String, cluster::ClusterError> {
        self.cluster_call("replace", &kind, |b, k| b.replace(k, &name, &object))
    }

    fn node_name(&mut self) -> String {
        self.grant
            .cluster
            .as_ref()
            .map(|g| g.node.clone())
            .unwrap_or_default()
    }

    fn replace_status(
        &mut self,
        kind: cluster::Kind,
        name: String,
        object: String,
    ) -> Result<String, cluster::ClusterError> {
        self.cluster_call("replace-status", &kind, |b, k| {
            b.replace_status(k, &name, &object)
        })
    }

    fn delete(&mut self, kind: cluster::Kind, name: String) -> Result<(), cluster::ClusterError> {
        self.cluster_call("delete", &kind, |b, k| b.delete(k, &name))
    }
}

impl HostState {
    /// `CNI_IFNAME`: the first granted link.
    fn ifname(&self) -> Result<String, HostError> {
        self.grant
            .links
            .first()
            .cloned()
            .ok_or_else(|| HostError::Denied("no pod interface in this call".into()))
    }

    fn macvlan(
        &mut self,
        master: &str,
        mode: MacvlanMode,
        mtu: Option<u32>,
        mac: Option<&str>,
    ) -> Result<nl::LinkInfo, HostError> {
        nl::check_namespace(&self.grant, Ns::Container)?;
        crate::links::check_named(&self.grant, master, "create links on")?;
        let ifname = self.ifname()?;
        let mac = mac.map(nl::parse_mac).transpose()?;
        let made = self.kernel.macvlan_add(master, mode, mtu, mac, &ifname)?;
        self.grant.pod_created.push(ifname);
        Ok(made)
    }

    fn veth(&mut self, mtu: Option<u32>) -> Result<(nl::LinkInfo, nl::LinkInfo), HostError> {
        nl::check_namespace(&self.grant, Ns::Container)?;
        crate::links::check_host(&self.grant, "create a veth pair")?;
        let ifname = self.ifname()?;
        let host_name = crate::links::host_veth_name();
        let made = self.kernel.veth_add(&ifname, &host_name, mtu)?;
        // The host end may be configured from now on.
        self.grant.host_created.push(host_name);
        self.grant.pod_created.push(ifname);
        Ok(made)
    }

    fn unlink(&mut self) -> Result<bool, HostError> {
        nl::check_namespace(&self.grant, Ns::Container)?;
        let ifname = self.ifname()?;
        match self.kernel.link_del(&ifname) {
            // The pod's namespace is gone, and the link with it.
            Err(HostError::NotFound(_)) => Ok(false),
            other => other,
        }
    }

    fn ipam_backend(&mut self) -> Result<&mut Box<dyn IpamBackend>, WitError> {
        match self.ipam.as_mut() {
            Some(b) => Ok(b),
            None => {
                Err(HostError::Invalid("the config has no ipam.type".into()).to_wit("links.ipam"))
            }
        }
    }
}

impl links::Host for HostState {
    fn macvlan_add(
        &mut self,
        master: String,
        mode: links::MacvlanMode,
        mtu: Option<u32>,
        mac: Option<String>,
    ) -> Result<netlink::LinkInfo, WitError> {
        let mode = match mode {
            links::MacvlanMode::Bridge => MacvlanMode::Bridge,
            links::MacvlanMode::Private => MacvlanMode::Private,
            links::MacvlanMode::Vepa => MacvlanMode::Vepa,
            links::MacvlanMode::Passthru => MacvlanMode::Passthru,
        };
        let out = self.macvlan(&master, mode, mtu, mac.as_deref());
        out.map(wit_link)
            .map_err(|e| self.fail(&format!("links.macvlan-add({master})"), e))
    }

    fn veth_add(&mut self, mtu: Option<u32>) -> Result<links::Veth, WitError> {
        let out = self.veth(mtu);
        out.map(|(host, pod)| links::Veth {
            host: wit_link(host),
            pod: wit_link(pod),
        })
        .map_err(|e| self.fail("links.veth-add", e))
    }

    fn enable_forwarding(&mut self, ipv4: bool, ipv6: bool) -> Result<(), WitError> {
        let out = crate::links::check_host(&self.grant, "turn on IP forwarding")
            .and_then(|()| self.kernel.enable_forwarding(ipv4, ipv6));
        out.map_err(|e| self.fail("links.enable-forwarding", e))
    }

    fn link_del(&mut self) -> Result<bool, WitError> {
        let out = self.unlink();
        out.map_err(|e| self.fail("links.link-del", e))
    }

    fn bridge_ensure(
        &mut self,
        name: String,
        s: links::BridgeSettings,
    ) -> Result<netlink::LinkInfo, WitError> {
        let settings = BridgeSettings {
            mtu: s.mtu,
            promisc: s.promisc,
            vlan_filtering: s.vlan_filtering,
        };
        let out = crate::links::check_named(&self.grant, &name, "create or set up")
            .and_then(|()| self.kernel.bridge_ensure(&name, settings));
        out.map(wit_link)
            .map_err(|e| self.fail(&format!("links.bridge-ensure({name})"), e))
    }

    fn bridge_attach(
        &mut self,
        port: String,
        bridge: String,
        s: links::PortSettings,
    ) -> Result<(), WitError> {
        let settings = PortSettings {
            hairpin: s.hairpin,
            drop_default_vlans: s.drop_default_vlans,
            access_vlan: s.access_vlan,
            trunk_vlans: s.trunk_vlans,
        };
        let out = crate::links::check_attach(&self.grant, &port, &bridge)
            .and_then(|()| self.kernel.bridge_attach(&port, &bridge, &settings));
        out.map_err(|e| self.fail(&format!("links.bridge-attach({port}, {bridge})"), e))
    }

    fn ipam_add(&mut self) -> Result<types::CniResult, WitError> {
        self.ipam_backend()?.add()
    }

    fn ipam_del(&mut self) -> Result<(), WitError> {
        self.ipam_backend()?.del()
    }

    fn ipam_check(&mut self) -> Result<(), WitError> {
        self.ipam_backend()?.check()
    }
}

impl sysctl::Host for HostState {
    fn get(&mut self, key: sysctl::Key) -> Result<String, WitError> {
        let built = self.sysctl_key(&key);
        let out = built.and_then(|k| self.kernel.get(&k));
        out.map_err(|e| self.fail("sysctl.get", e))
    }

    fn set(&mut self, key: sysctl::Key, value: String) -> Result<(), WitError> {
        let built = self.sysctl_key(&key);
        let out = built
            .and_then(|k| crate::sysctl::check_value(&k, &value).map(|()| k))
            .and_then(|k| self.kernel.set(&k, &value));
        out.map_err(|e| self.fail("sysctl.set", e))
    }
}

impl HostState {
    fn sysctl_key(&self, key: &sysctl::Key) -> Result<SysctlKey, HostError> {
        if self.grant.netns.is_none() {
            return Err(HostError::Denied("no container netns in this call".into()));
        }
        let link = key
            .link
            .as_ref()
            .map(|l| (l.group.as_str(), l.link.as_str()));
        crate::sysctl::build(&self.grant, &key.section, link, &key.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::multus::plugin::netlink::Host as _;
    use crate::bindings::multus::plugin::store::{Host as _, HostTransaction as _};
    use crate::bindings::multus::plugin::sysctl::Host as _;
    use crate::grant::test_grant;
    use crate::store::RecordingStore;

    fn state(store: Option<RecordingStore>, kernel: RecordingKernel) -> HostState {
        let mut g = test_grant(&["net1"]);
        g.netns = Some("/run/netns/pod".into());
        let store = store.map(|s| Box::new(s) as Box<dyn StoreBackend>);
        HostState::new(
            g,
            WasiCtx::builder().build(),
            1 << 20,
            store,
            Box::new(kernel),
            "cid",
        )
    }

    fn no_change() -> netlink::LinkChange {
        netlink::LinkChange {
            up: Some(true),
            mtu: None,
            mac: None,
            promisc: None,
            allmulti: None,
            txqlen: None,
        }
    }

    #[test]
    fn netlink_checks_the_grant_before_the_backend() {
        let k = RecordingKernel::default();
        let mut s = state(None, k.clone());
        s.link_get(netlink::Namespace::Container, "net1".into())
            .unwrap();
        let e = s
            .link_get(netlink::Namespace::Host, "lo".into())
            .unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("hostNetns"), "{}", e.msg);
        let e = s
            .link_set(netlink::Namespace::Container, "eth0".into(), no_change())
            .unwrap_err();
        assert!(e.msg.contains("not granted"), "{}", e.msg);
        let ops = k.netlink.ops.lock().unwrap().clone();
        assert_eq!(
            ops,
            vec!["link-get Container net1"],
            "denied calls never reach the backend"
        );
        assert_eq!(s.denials.len(), 2);
    }

    #[test]
    fn routing_checks_the_grant_before_the_backend() {
        use crate::bindings::multus::plugin::routing::Host as _;
        let k = RecordingKernel::default();
        let mut s = state(None, k.clone());
        s.grant.addresses = vec!["10.1.0.5/24".parse().unwrap()];
        let rule = |from: &str| routing::Rule {
            family: routing::Family::Ipv4,
            from: Some(from.into()),
            to: None,
            table: 100,
            priority: None,
            iif: None,
            oif: None,
        };
        s.rule_add(netlink::Namespace::Container, rule("10.1.0.5/32"))
            .unwrap();
        let e = s
            .rule_add(netlink::Namespace::Container, rule("10.2.0.9/32"))
            .unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("routing.rule-add"), "{}", e.msg);
        let e = s
            .rule_add(netlink::Namespace::Host, rule("10.1.0.5/32"))
            .unwrap_err();
        assert!(e.msg.contains("hostNetns"), "{}", e.msg);
        let entry = routing::RouteEntry {
            dst: "0.0.0.0/0".into(),
            gw: Some("10.1.0.1".into()),
            src: None,
            table: Some(100),
            metric: None,
            scope: None,
            protocol: None,
        };
        let add = routing::Host::route_add;
        add(
            &mut s,
            netlink::Namespace::Container,
            "net1".into(),
            entry.clone(),
        )
        .unwrap();
        assert!(add(&mut s, netlink::Namespace::Container, "eth0".into(), entry).is_err());
        let writes: Vec<String> = k
            .routing
            .ops
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.contains("-add "))
            .cloned()
            .collect();
        assert_eq!(
            writes,
            vec![
                "rule-add Container from 10.1.0.5/32 lookup 100",
                "route-add Container net1 0.0.0.0/0 via 10.1.0.1 table 100"
            ],
            "denied calls never reach the backend"
        );
        assert_eq!(s.denials.len(), 3);
    }

    #[test]
    fn cluster_calls_reach_only_granted_groups() {
        use crate::cluster::{ClusterGrant, RecordingCluster};
        let rec = RecordingCluster::default();
        let mut s = state(None, RecordingKernel::default());
        let kind = |group: &str, plural: &str| cluster::Kind {
            group: group.into(),
            version: "v1".into(),
            plural: plural.into(),
        };
        // No grant: nothing reaches the backend.
        s.cluster = Some(Box::new(rec.clone()));
        assert!(matches!(
            cluster::Host::get(
                &mut s,
                kind("whereabouts.cni.cncf.io", "ippools"),
                "p".into()
            ),
            Err(cluster::ClusterError::Denied(_))
        ));
        s.grant.cluster = Some(ClusterGrant {
            groups: vec!["whereabouts.cni.cncf.io".into()],
            node: "node1".into(),
        });
        assert!(matches!(
            cluster::Host::get(
                &mut s,
                kind("whereabouts.cni.cncf.io", "ippools"),
                "p".into()
            ),
            Err(cluster::ClusterError::NotFound(_))
        ));
        let e = cluster::Host::get(&mut s, kind("", "secrets"), "token".into()).unwrap_err();
        assert!(
            matches!(&e, cluster::ClusterError::Denied(m) if m.contains("granted: whereabouts.cni.cncf.io")),
            "{e:?}"
        );
        assert_eq!(cluster::Host::namespace(&mut s), "kube-system");
        assert_eq!(
            rec.ops.lock().unwrap().clone(),
            vec!["get ippools.whereabouts.cni.cncf.io/v1 p"],
            "denied calls never reach the backend"
        );
        assert_eq!(s.denials.len(), 2);
    }

    #[test]
    fn sysctl_keys_are_built_and_checked() {
        let k = RecordingKernel::default();
        let mut s = state(None, k.clone());
        let key = |section: &str, link: Option<&str>, name: &str| sysctl::Key {
            section: section.into(),
            link: link.map(|l| sysctl::LinkKey {
                group: "conf".into(),
                link: l.into(),
            }),
            name: name.into(),
        };
        s.set(key("ipv4", Some("net1"), "arp_ignore"), "1".into())
            .unwrap();
        assert!(s.set(key("ipv4", None, "ip_forward"), "1".into()).is_err());
        assert!(s.set(key("..", None, "x"), "1".into()).is_err());
        assert!(s
            .set(key("ipv4", Some("net1"), "arp_ignore"), "1\n2".into())
            .is_err());
        assert_eq!(
            k.sysctl.ops.lock().unwrap().clone(),
            vec!["set net.ipv4.conf.net1.arp_ignore=1"]
        );
    }

    #[test]
    fn store_is_denied_without_a_grant_and_recorded_with_one() {
        let mut s = state(None, RecordingKernel::default());
        let e = s.open().unwrap_err();
        assert!(e.msg.contains("no store"), "{}", e.msg);
        let rec = RecordingStore::default();
        let mut s = state(Some(rec.clone()), RecordingKernel::default());
        let t = s.open().unwrap();
        let t2 = Resource::new_borrow(t.rep());
        assert!(s
            .insert(t2, "10.0.0.2".into(), "cid\r\neth0".into())
            .unwrap());
        let t3 = Resource::new_borrow(t.rep());
        assert!(s.insert(t3, "../x".into(), "v".into()).is_err());
        crate::bindings::multus::plugin::store::HostTransaction::drop(&mut s, t).unwrap();
        assert_eq!(
            rec.ops.lock().unwrap().clone(),
            vec!["open", "insert 10.0.0.2=\"cid\\r\\neth0\""]
        );
    }
}
