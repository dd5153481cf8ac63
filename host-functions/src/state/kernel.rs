//! The backends of one call's kernel: netlink, routing, sysctl and links
//! behind one trait, and the recording kernel that changes nothing.

use ipnet::IpNet;

use crate::links::{BridgeSettings, LinksBackend, MacvlanMode, PortSettings, RecordingLinks};
use crate::netlink::{self as nl, LinkChange, NetlinkBackend, Ns, RecordingNetlink, Route};
use crate::routing::{
    RecordingRouting, RouteEntry, RouteOp, RoutingBackend, Rule, RuleOp, TableRoute,
};
use crate::sysctl::{RecordingSysctl, SysctlBackend, SysctlKey};
use crate::HostError;

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
