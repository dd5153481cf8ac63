//! `netlink`: links, addresses and routes of the pod or (with `hostNetns`)
//! the host netns, each call checked by `netlink::check` before the kernel.

use std::str::FromStr;

use ipnet::IpNet;

use super::{HostState, KernelBackend};
use crate::bindings::multus::plugin::{netlink, types};
use crate::netlink::{self as nl, LinkChange, Ns, Route};
use crate::text::quoted;
use crate::{HostError, WitError};

pub(super) fn ns(n: netlink::Namespace) -> Ns {
    match n {
        netlink::Namespace::Container => Ns::Container,
        netlink::Namespace::Host => Ns::Host,
    }
}

pub(super) fn parse_net(s: &str, what: &str) -> Result<IpNet, HostError> {
    IpNet::from_str(s)
        .map_err(|e| HostError::Invalid(format!("{what} {:?}: {e}", crate::text::quoted(s))))
}

fn to_route(r: &types::Route) -> Result<Route, HostError> {
    Ok(Route {
        dst: parse_net(&r.dst, "route dst")?,
        gw: r
            .gw
            .as_deref()
            .map(|g| {
                g.parse().map_err(|e| {
                    HostError::Invalid(format!("route gw {:?}: {e}", crate::text::quoted(g)))
                })
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
        out.map_err(|e| self.fail(&format!("netlink.{call}({})", quoted(name)), e))
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
        let pod_addresses = self.grant.pod_addresses.clone();
        self.netlink("addr-add", n, &name, |k, n| {
            let addr = parse_net(&cidr, "address")?;
            if n == Ns::Host {
                crate::routing::policy::check_host_addr(&pod_addresses, &addr)?;
            }
            k.addr_add(n, &name, addr)
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
        self.route_call("route-add", n, &name, &r, false)
    }

    fn route_del(
        &mut self,
        n: netlink::Namespace,
        name: String,
        r: types::Route,
    ) -> Result<(), WitError> {
        self.route_call("route-del", n, &name, &r, true)
    }
}

impl HostState {
    /// A `netlink` route write, under the same table and host rules as
    /// `routing`'s.
    fn route_call(
        &mut self,
        call: &str,
        n: netlink::Namespace,
        name: &str,
        r: &types::Route,
        deleting: bool,
    ) -> Result<(), WitError> {
        let n = ns(n);
        let out = to_route(r).and_then(|route| {
            let table = route.table.unwrap_or(crate::routing::MAIN_TABLE);
            self.route_allowed(n, name, &route.dst, table, deleting)?;
            if deleting {
                self.kernel.route_del(n, name, &route)
            } else {
                self.kernel.route_add(n, name, &route)
            }
        });
        out.map_err(|e| self.fail(&format!("netlink.{call}({})", quoted(name)), e))
    }
}

pub(super) fn wit_link(l: nl::LinkInfo) -> netlink::LinkInfo {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::multus::plugin::netlink::Host as _;
    use crate::state::{test_state as state, RecordingKernel};

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
}
