//! `links`: the pod's interface created and deleted, host bridges and
//! ports, IP forwarding, and the config's IPAM run for the plugin; each
//! checked by the `links` module's grant checks before the kernel.

use super::netlink::wit_link;
use super::HostState;
use crate::bindings::multus::plugin::{links, netlink, types};
use crate::links::{BridgeSettings, IpamBackend, MacvlanMode, PortSettings};
use crate::netlink::{self as nl, Ns};
use crate::text::quoted;
use crate::{HostError, WitError};

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
        let deleted = nl::check_namespace(&self.grant, Ns::Container)
            .and_then(|()| self.ifname())
            .and_then(|ifname| self.kernel.link_del(&ifname));
        match deleted {
            // The pod's namespace is gone (or was never named, on a
            // repeated DEL), and the link with it.
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
            .map_err(|e| self.fail(&format!("links.macvlan-add({})", quoted(&master)), e))
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
            .map_err(|e| self.fail(&format!("links.bridge-ensure({})", quoted(&name)), e))
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
        out.map_err(|e| {
            self.fail(
                &format!(
                    "links.bridge-attach({}, {})",
                    quoted(&port),
                    quoted(&bridge)
                ),
                e,
            )
        })
    }

    /// The addresses handed out are recorded: they are the only ones the
    /// plugin may then route to or put on host links.
    fn ipam_add(&mut self) -> Result<types::CniResult, WitError> {
        let result = self.ipam_backend()?.add()?;
        let addrs = result
            .ips
            .iter()
            .filter_map(|ip| ip.address.parse::<ipnet::IpNet>().ok());
        self.grant.pod_addresses.extend(addrs);
        Ok(result)
    }

    fn ipam_del(&mut self) -> Result<(), WitError> {
        self.ipam_backend()?.del()
    }

    fn ipam_check(&mut self) -> Result<(), WitError> {
        self.ipam_backend()?.check()
    }
}
