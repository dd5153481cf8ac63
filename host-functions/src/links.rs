//! Creating and deleting the pod's interface (`multus:plugin/links`, WIT
//! 0.1.2; the bridge calls 0.1.3), checked against the grant, with a real
//! and a recording backend; and the IPAM delegation an interface plugin
//! asks the host for.

use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use netlink_packet_route::link::{
    AfSpecBridge, BridgeVlanInfoFlags, LinkAttribute, LinkExtentMask, MacVlanMode as NlMode,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkBridgeVlan, LinkMacVlan, LinkUnspec};

use crate::bindings::multus::plugin::types as wit;
use crate::grant::Grant;
use crate::netlink::{find, link_info, nl, Kernel, LinkInfo, Ns};
use crate::{HostError, WitError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvlanMode {
    Bridge,
    Private,
    Vepa,
    Passthru,
}

/// How a missing bridge is made (`bridge-settings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeSettings {
    pub mtu: Option<u32>,
    pub promisc: bool,
    pub vlan_filtering: bool,
}

/// A bridge port's settings (`port-settings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSettings {
    pub hairpin: bool,
    pub drop_default_vlans: bool,
    pub access_vlan: Option<u16>,
    pub trunk_vlans: Vec<u16>,
}

pub trait LinksBackend: Send {
    /// A macvlan of host link `master`, created in the pod as `ifname`.
    fn macvlan_add(
        &mut self,
        master: &str,
        mode: MacvlanMode,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
        ifname: &str,
    ) -> Result<LinkInfo, HostError>;
    /// A veth pair: `ifname` in the pod, `host_name` in the host netns.
    fn veth_add(
        &mut self,
        ifname: &str,
        host_name: &str,
        mtu: Option<u32>,
    ) -> Result<(LinkInfo, LinkInfo), HostError>;
    /// `net.ipv4.ip_forward` / `net.ipv6.conf.all.forwarding` of the host.
    fn enable_forwarding(&mut self, ipv4: bool, ipv6: bool) -> Result<(), HostError>;
    /// Deletes `ifname` in the pod; false when it is not there.
    fn link_del(&mut self, ifname: &str) -> Result<bool, HostError>;
    /// The host bridge `name`, found or created, promiscuous when asked,
    /// `accept_ra` 0, up.
    fn bridge_ensure(&mut self, name: &str, s: BridgeSettings) -> Result<LinkInfo, HostError>;
    /// Host link `port` enslaved to `bridge`, with `s` applied.
    fn bridge_attach(
        &mut self,
        port: &str,
        bridge: &str,
        s: &PortSettings,
    ) -> Result<(), HostError>;
}

/// The host end's name: `veth` and 8 hex digits, chosen by the host.
pub fn host_veth_name() -> String {
    format!("veth{:08x}", rand_suffix())
}

/// May this call build on the host netns at all.
pub fn check_host(grant: &Grant, what: &str) -> Result<(), HostError> {
    if grant.host_netns {
        return Ok(());
    }
    Err(HostError::Denied(format!(
        "plugin {:?} has no hostNetns grant; it may not {what}",
        grant.plugin
    )))
}

/// The config's IPAM, run by the host for an interface plugin.
pub trait IpamBackend: Send {
    fn add(&mut self) -> Result<wit::CniResult, WitError>;
    fn del(&mut self) -> Result<(), WitError>;
    fn check(&mut self) -> Result<(), WitError>;
}

/// May this call build on host link `name` (`what` it would do, for the
/// message): the admin's `hostNetns` grant, and `name` one of the host
/// links the plugin's config names (`master`, `bridge`).
pub fn check_named(grant: &Grant, name: &str, what: &str) -> Result<(), HostError> {
    // The name's own check first: the messages below quote it.
    crate::names::check_ifname(name, "host link")?;
    check_host(grant, &format!("{what} host link {name:?}"))?;
    if !grant.config_names(name) {
        return Err(HostError::Denied(format!(
            "host link {name:?} is not one the plugin's config names (named: {})",
            crate::grant::listed(&grant.host_links)
        )));
    }
    Ok(())
}

/// May this call make `port` a port of `bridge`: the bridge is the
/// config's, and the port a host link this call created, so no host
/// interface (an uplink, say) is ever pulled into a bridge.
pub fn check_attach(grant: &Grant, port: &str, bridge: &str) -> Result<(), HostError> {
    check_named(grant, bridge, "attach ports to")?;
    if !grant.host_created(port) {
        return Err(HostError::Denied(format!(
            "host link {:?} was not created by this call; only those may join bridge {bridge:?} (created: {})",
            crate::text::quoted(port),
            crate::grant::listed(&grant.host_created)
        )));
    }
    Ok(())
}

impl LinksBackend for Kernel {
    fn macvlan_add(
        &mut self,
        master: &str,
        mode: MacvlanMode,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
        ifname: &str,
    ) -> Result<LinkInfo, HostError> {
        let pod_path = self
            .pod
            .as_ref()
            .map(|p| p.path.clone())
            .ok_or_else(|| HostError::NotFound("the pod's network namespace is gone".into()))?;
        let pod = std::fs::File::open(&pod_path)
            .map_err(|e| HostError::Netns(format!("{}: {e}", pod_path.display())))?;
        // Created under a temporary name (the host may have a link called
        // `ifname`), in the pod from the start, then renamed there.
        let tmp = format!("mv{:08x}", std::process::id() ^ rand_suffix());
        let master = master.to_string();
        let tmp_name = tmp.clone();
        self.worker(Ns::Host)?.run("macvlan-add", move |rt, h| {
            rt.block_on(async {
                let index = find(h, &master).await?.header.index;
                let mode = match mode {
                    MacvlanMode::Bridge => NlMode::Bridge,
                    MacvlanMode::Private => NlMode::Private,
                    MacvlanMode::Vepa => NlMode::Vepa,
                    MacvlanMode::Passthru => NlMode::Passthrough,
                };
                let mut b = LinkMacVlan::new(&tmp_name, index, mode)
                    .setns_by_fd(std::os::fd::AsRawFd::as_raw_fd(&pod));
                if let Some(m) = mtu {
                    b = b.mtu(m);
                }
                if let Some(a) = mac {
                    b = b.address(a.to_vec());
                }
                h.link().add(b.build()).execute().await.map_err(nl)
            })
        })?;
        let ifname = ifname.to_string();
        self.worker(Ns::Container)?
            .run("macvlan-add", move |rt, h| {
                rt.block_on(async {
                    let l = find(h, &tmp).await?;
                    let renamed = h
                        .link()
                        .set(
                            LinkUnspec::new_with_index(l.header.index)
                                .name(ifname.clone())
                                .build(),
                        )
                        .execute()
                        .await;
                    if let Err(e) = renamed {
                        let _ = h.link().del(l.header.index).execute().await;
                        return Err(nl(e));
                    }
                    Ok(link_info(&find(h, &ifname).await?))
                })
            })
    }

    fn veth_add(
        &mut self,
        ifname: &str,
        host_name: &str,
        mtu: Option<u32>,
    ) -> Result<(LinkInfo, LinkInfo), HostError> {
        // This process lives in the host netns; its pod worker does not.
        let host_ns = std::fs::File::open("/proc/self/ns/net")
            .map_err(|e| HostError::Netns(format!("/proc/self/ns/net: {e}")))?;
        let (pod_name, peer) = (ifname.to_string(), host_name.to_string());
        self.worker(Ns::Container)?.run("veth-add", move |rt, h| {
            rt.block_on(async {
                // The peer is created straight in the host netns, as the
                // reference does: moving it afterwards costs the kernel a
                // synchronize_net (~15 ms here).
                let mut host_end = LinkUnspec::new_with_name(&peer)
                    .setns_by_fd(std::os::fd::AsRawFd::as_raw_fd(&host_ns));
                if let Some(m) = mtu {
                    host_end = host_end.mtu(m);
                }
                let mut b = rtnetlink::LinkVeth::new(&pod_name, &peer).set_info_data(
                    netlink_packet_route::link::InfoData::Veth(
                        netlink_packet_route::link::InfoVeth::Peer(host_end.build()),
                    ),
                );
                if let Some(m) = mtu {
                    b = b.mtu(m);
                }
                h.link().add(b.build()).execute().await.map_err(nl)
            })
        })?;
        let peer = host_name.to_string();
        let host = self.worker(Ns::Host)?.run("veth-add", move |rt, h| {
            // The host end's routes are the plugin's, as the reference's
            // SetupVeth says (best effort: a node may have no IPv6).
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{peer}/accept_ra"), "0");
            rt.block_on(async { Ok(link_info(&find(h, &peer).await?)) })
        })?;
        let pod_name = ifname.to_string();
        let pod = self.worker(Ns::Container)?.run("veth-add", move |rt, h| {
            rt.block_on(async { Ok(link_info(&find(h, &pod_name).await?)) })
        })?;
        Ok((host, pod))
    }

    fn enable_forwarding(&mut self, ipv4: bool, ipv6: bool) -> Result<(), HostError> {
        self.worker(Ns::Host)?
            .run("enable-forwarding", move |_, _| {
                let keys = [
                    (ipv4, "/proc/sys/net/ipv4/ip_forward"),
                    (ipv6, "/proc/sys/net/ipv6/conf/all/forwarding"),
                ];
                for (_, path) in keys.iter().filter(|(on, _)| *on) {
                    // Written only when off, as the reference does: a write
                    // makes the kernel walk every device even when it was on.
                    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
                        continue;
                    }
                    std::fs::write(path, "1").map_err(|e| HostError::Io(format!("{path}: {e}")))?;
                }
                Ok(())
            })
    }

    fn link_del(&mut self, ifname: &str) -> Result<bool, HostError> {
        let ifname = ifname.to_string();
        self.worker(Ns::Container)?.run("link-del", move |rt, h| {
            rt.block_on(async {
                let mut links = h.link().get().match_name(ifname.clone()).execute();
                match links.try_next().await {
                    Ok(Some(l)) => h
                        .link()
                        .del(l.header.index)
                        .execute()
                        .await
                        .map(|()| true)
                        .map_err(nl),
                    Ok(None) => Ok(false),
                    Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                        Ok(false)
                    }
                    Err(e) => Err(nl(e)),
                }
            })
        })
    }

    fn bridge_ensure(&mut self, name: &str, s: BridgeSettings) -> Result<LinkInfo, HostError> {
        let name = name.to_string();
        self.worker(Ns::Host)?.run("bridge-ensure", move |rt, h| {
            rt.block_on(async {
                let found = match find(h, &name).await {
                    Err(HostError::NotFound(_)) => None,
                    other => Some(other?),
                };
                if found.is_none() {
                    // Created down, as the reference: up only after accept_ra.
                    let mut b = rtnetlink::LinkMessageBuilder::<LinkBridge>::new(&name);
                    if let Some(m) = s.mtu {
                        b = b.mtu(m);
                    }
                    if s.vlan_filtering {
                        b = b.vlan_filtering(true);
                    }
                    match h.link().add(b.build()).execute().await {
                        // Another ADD made it first: use theirs.
                        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {
                        }
                        other => other.map_err(nl)?,
                    }
                }
                let l = link_info(&find(h, &name).await?);
                if l.kind.as_deref() != Some("bridge") {
                    return Err(HostError::Invalid(format!(
                        "{name:?} already exists but is not a bridge"
                    )));
                }
                if s.promisc {
                    h.link()
                        .set(
                            LinkUnspec::new_with_index(l.index)
                                .promiscuous(true)
                                .build(),
                        )
                        .execute()
                        .await
                        .map_err(nl)?;
                }
                // The plugin owns the bridge's routes; like the reference,
                // a node without IPv6 is no error.
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/accept_ra"), "0");
                h.link()
                    .set(LinkUnspec::new_with_index(l.index).up().build())
                    .execute()
                    .await
                    .map_err(nl)?;
                Ok(link_info(&find(h, &name).await?))
            })
        })
    }

    fn bridge_attach(
        &mut self,
        port: &str,
        bridge: &str,
        s: &PortSettings,
    ) -> Result<(), HostError> {
        let (port, bridge, s) = (port.to_string(), bridge.to_string(), s.clone());
        self.worker(Ns::Host)?.run("bridge-attach", move |rt, h| {
            rt.block_on(async {
                let br = find(h, &bridge).await?.header.index;
                let index = find(h, &port).await?.header.index;
                h.link()
                    .set(LinkUnspec::new_with_index(index).controller(br).build())
                    .execute()
                    .await
                    .map_err(nl)?;
                h.link()
                    .set_port(LinkBridgePort::new(index).hairpin(s.hairpin).build())
                    .execute()
                    .await
                    .map_err(nl)?;
                if s.drop_default_vlans {
                    for vid in port_vlans(h, index).await? {
                        let m = LinkBridgeVlan::new(index)
                            .vlan(vid, BridgeVlanInfoFlags::empty())
                            .build();
                        h.link().del_with_message(m).execute().await.map_err(nl)?;
                    }
                }
                if let Some(vid) = s.access_vlan {
                    let flags = BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged;
                    let m = LinkBridgeVlan::new(index).vlan(vid, flags).build();
                    h.link().set(m).execute().await.map_err(nl)?;
                }
                for &vid in &s.trunk_vlans {
                    let m = LinkBridgeVlan::new(index)
                        .vlan(vid, BridgeVlanInfoFlags::empty())
                        .build();
                    h.link().set(m).execute().await.map_err(nl)?;
                }
                Ok(())
            })
        })
    }
}

/// The VLANs the bridge port `index` has (AF_BRIDGE dump; the kernel
/// cannot filter it by link).
async fn port_vlans(h: &Handle, index: u32) -> Result<Vec<u16>, HostError> {
    let mut dump = h
        .link()
        .get()
        .set_filter_mask(AddressFamily::Bridge, vec![LinkExtentMask::Brvlan])
        .execute();
    let mut vids = Vec::new();
    while let Some(m) = dump.try_next().await.map_err(nl)? {
        if m.header.index != index {
            continue;
        }
        for a in &m.attributes {
            if let LinkAttribute::AfSpecBridge(specs) = a {
                vids.extend(specs.iter().filter_map(|s| match s {
                    AfSpecBridge::VlanInfo(v) => Some(v.vid),
                    _ => None,
                }));
            }
        }
    }
    Ok(vids)
}

/// A few random bits for temporary link names.
fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u32
}

/// Records link calls; answers with a made-up link.
#[derive(Clone, Default)]
pub struct RecordingLinks {
    pub ops: Arc<Mutex<Vec<String>>>,
}

impl LinksBackend for RecordingLinks {
    fn macvlan_add(
        &mut self,
        master: &str,
        mode: MacvlanMode,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
        ifname: &str,
    ) -> Result<LinkInfo, HostError> {
        self.ops.lock().expect("ops").push(format!(
            "macvlan-add {master} {mode:?} mtu {mtu:?} mac {:?} as {ifname}",
            mac.map(|m| crate::netlink::format_mac(&m))
        ));
        Ok(LinkInfo {
            name: ifname.into(),
            index: 3,
            mac: mac.map_or("02:00:00:00:00:02".into(), |m| {
                crate::netlink::format_mac(&m)
            }),
            mtu: mtu.unwrap_or(1500),
            up: false,
            promisc: false,
            allmulti: false,
            txqlen: 0,
            kind: Some("macvlan".into()),
        })
    }

    fn veth_add(
        &mut self,
        ifname: &str,
        host_name: &str,
        mtu: Option<u32>,
    ) -> Result<(LinkInfo, LinkInfo), HostError> {
        self.ops
            .lock()
            .expect("ops")
            .push(format!("veth-add {ifname} peer {host_name} mtu {mtu:?}"));
        let link = |name: &str, index: u32, mac: &str| LinkInfo {
            name: name.into(),
            index,
            mac: mac.into(),
            mtu: mtu.unwrap_or(1500),
            up: false,
            promisc: false,
            allmulti: false,
            txqlen: 1000,
            kind: Some("veth".into()),
        };
        Ok((
            link(host_name, 7, "02:00:00:00:00:07"),
            link(ifname, 2, "02:00:00:00:00:02"),
        ))
    }

    fn enable_forwarding(&mut self, ipv4: bool, ipv6: bool) -> Result<(), HostError> {
        self.ops
            .lock()
            .expect("ops")
            .push(format!("enable-forwarding ipv4 {ipv4} ipv6 {ipv6}"));
        Ok(())
    }

    fn link_del(&mut self, ifname: &str) -> Result<bool, HostError> {
        self.ops
            .lock()
            .expect("ops")
            .push(format!("link-del {ifname}"));
        Ok(true)
    }

    fn bridge_ensure(&mut self, name: &str, s: BridgeSettings) -> Result<LinkInfo, HostError> {
        self.ops.lock().expect("ops").push(format!(
            "bridge-ensure {name} mtu {:?} promisc {} vlan-filtering {}",
            s.mtu, s.promisc, s.vlan_filtering
        ));
        Ok(LinkInfo {
            name: name.into(),
            index: 5,
            mac: "02:00:00:00:00:05".into(),
            mtu: s.mtu.unwrap_or(1500),
            up: true,
            promisc: s.promisc,
            allmulti: false,
            txqlen: 1000,
            kind: Some("bridge".into()),
        })
    }

    fn bridge_attach(
        &mut self,
        port: &str,
        bridge: &str,
        s: &PortSettings,
    ) -> Result<(), HostError> {
        self.ops.lock().expect("ops").push(format!(
            "bridge-attach {port} to {bridge} hairpin {} drop-default-vlans {} access {:?} trunk {:?}",
            s.hairpin, s.drop_default_vlans, s.access_vlan, s.trunk_vlans
        ));
        Ok(())
    }
}
