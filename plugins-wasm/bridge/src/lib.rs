//! bridge as a sandboxed interface plugin, with the reference bridge's keys
//! and kernel behaviour: the bridge found or created on the host (`bridge`,
//! `mtu`, `promiscMode`, VLAN filtering when `vlan`/`vlanTrunk`), a veth
//! pair with the host end a port of it (`hairpinMode`, the access or trunk
//! VLANs, `preserveDefaultVlan`), the config's IPAM run by the host, the
//! pod end configured (`enabledad`, `arp_notify`, addresses, routes), and
//! for `isGateway` the gateway addresses on the bridge (`forceAddress`)
//! with forwarding on; `isDefaultGateway` adds the default routes.
//!
//! Where it differs from the reference: a failure after the veth was made
//! removes it (the reference leaves it); CHECK does not compare the
//! bridge's MAC (it changes legitimately as ports come and go) nor look at
//! the host end (the sandbox shows the plugin only the host links its
//! config names); `ipMasq`, `macspoofchk` and `isGateway` with `vlan` are
//! refused, naming the key.

mod conf;
mod gateway;

use conf::Conf;
use multus_plugin_sdk::conf::NetConf;
use multus_plugin_sdk::iface;
use multus_plugin_sdk::ip::Cidr;
use multus_plugin_sdk::links::{self, BridgeSettings, PortSettings};
use multus_plugin_sdk::netlink::{self, LinkChange, Namespace};
use multus_plugin_sdk::{
    code, error, invalid, Attachment, CniError, CniResult, Dns, Interface, Plugin, Request,
};

const HOST: Namespace = Namespace::Host;
const POD: Namespace = Namespace::Container;

fn change() -> LinkChange {
    LinkChange {
        up: None,
        mtu: None,
        mac: None,
        promisc: None,
        allmulti: None,
        txqlen: None,
    }
}

/// The reference's `ensureAddr`: `gw` on the bridge, replacing an address
/// it clashes with only under `forceAddress`; then the bridge's MAC pinned
/// to itself, so it stops following the lowest port MAC.
fn ensure_addr(bridge: &str, gw: Cidr, force: bool) -> Result<(), CniError> {
    let want = gw.to_string();
    for have in netlink::addr_list(HOST, bridge)? {
        if have == want {
            return Ok(());
        }
        let Ok(a) = Cidr::parse(&have) else { continue };
        if a.addr.is_ipv4() != gw.addr.is_ipv4() {
            continue;
        }
        // IPv6 subnets may share a bridge when they do not overlap.
        if gw.addr.is_ipv4() || a.contains(gw.addr) || gw.contains(a.addr) {
            if !force {
                return Err(error(
                    code::INTERNAL,
                    format!("bridge: {bridge:?} already has an IP address different from {want}"),
                ));
            }
            netlink::addr_del(HOST, bridge, &have)?;
        }
    }
    netlink::addr_add(HOST, bridge, &want)?;
    let mac = netlink::link_get(HOST, bridge)?.mac;
    netlink::link_set(
        HOST,
        bridge,
        &LinkChange {
            mac: Some(mac),
            ..change()
        },
    )
}

/// The gateway addresses on the bridge and forwarding on for their
/// families.
fn gateway_bridge(conf: &Conf, gws: &gateway::Gateways) -> Result<(), CniError> {
    for gw in gws.v4.iter().chain(&gws.v6) {
        ensure_addr(&conf.bridge, *gw, conf.force_address)?;
    }
    if !gws.v4.is_empty() || !gws.v6.is_empty() {
        links::enable_forwarding(!gws.v4.is_empty(), !gws.v6.is_empty())?;
    }
    Ok(())
}

/// The veth pair, its host end a port of the bridge; the pod end with the
/// MAC asked for. Both ends up, as the reference's `SetupVeth`.
fn attach(conf: &Conf) -> Result<links::Veth, CniError> {
    let mut veth = links::veth_add(conf.mtu)?;
    // The pod end read back: its MAC as set.
    let setup = || -> Result<netlink::LinkInfo, CniError> {
        if let Some(mac) = &conf.mac {
            netlink::link_set(
                POD,
                &veth.pod.name,
                &LinkChange {
                    mac: Some(mac.clone()),
                    ..change()
                },
            )?;
        }
        multus_plugin_sdk::link_up(POD, &veth.pod.name)?;
        multus_plugin_sdk::link_up(HOST, &veth.host.name)?;
        links::bridge_attach(
            &veth.host.name,
            &conf.bridge,
            &PortSettings {
                hairpin: conf.hairpin,
                drop_default_vlans: (conf.vlan != 0 || !conf.trunk.is_empty())
                    && !conf.preserve_default_vlan,
                access_vlan: (conf.vlan != 0).then_some(conf.vlan),
                trunk_vlans: conf.trunk.clone(),
            },
        )?;
        netlink::link_get(POD, &veth.pod.name)
    };
    match setup() {
        Ok(pod) => {
            veth.pod = pod;
            Ok(veth)
        }
        Err(e) => {
            let _ = links::link_del();
            Err(e)
        }
    }
}

/// The pod end with the IPAM's result, as the reference: DAD as
/// `enabledad` says, `arp_notify` on, then addresses and routes.
fn configure_pod(ifname: &str, conf: &Conf, result: &CniResult) -> Result<(), CniError> {
    if conf.enable_dad {
        iface::conf_sysctl(ifname, "ipv6", "enhanced_dad", "1");
        iface::conf_sysctl(ifname, "ipv6", "accept_dad", "1");
    } else {
        iface::conf_sysctl(ifname, "ipv6", "accept_dad", "0");
    }
    iface::conf_sysctl(ifname, "ipv4", "arp_notify", "1");
    iface::configure(ifname, result)
}

struct Bridge;

impl Plugin for Bridge {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let conf = Conf::load(&req, &NetConf::parse(&req)?)?;
        links::bridge_ensure(
            &conf.bridge,
            BridgeSettings {
                mtu: conf.mtu,
                promisc: conf.promisc,
                vlan_filtering: conf.vlan_filtering,
            },
        )?;
        let veth = attach(&conf)?;
        let undo_link = |e: CniError| {
            let _ = links::link_del();
            e
        };
        let mut result = CniResult::empty();
        if conf.layer3 {
            let ipam = iface::ipam_add("bridge").map_err(undo_link)?;
            let undo_all = |e: CniError| {
                let _ = links::ipam_del();
                undo_link(e)
            };
            result.ips = ipam.ips;
            result.routes = ipam.routes;
            result.dns = ipam.dns;
            let gws = gateway::apply(&mut result, conf.is_gateway, conf.is_default_gateway)
                .map_err(undo_all)?;
            configure_pod(&req.ifname, &conf, &result).map_err(undo_all)?;
            if conf.is_gateway {
                gateway_bridge(&conf, &gws).map_err(undo_all)?;
            }
        }
        // Read back: the bridge's MAC follows its ports unless pinned, and
        // the host end's may have changed on attach.
        let bridge = netlink::link_get(HOST, &conf.bridge).map_err(undo_link)?;
        let host = netlink::link_get(HOST, &veth.host.name).map_err(undo_link)?;
        result.interfaces = vec![
            Interface {
                name: bridge.name,
                mac: Some(bridge.mac),
                mtu: None,
                sandbox: false,
            },
            Interface {
                name: host.name,
                mac: Some(host.mac),
                mtu: None,
                sandbox: false,
            },
            Interface {
                name: req.ifname.clone(),
                mac: Some(veth.pod.mac),
                mtu: None,
                sandbox: true,
            },
        ];
        if let Some(d) = conf.dns {
            result.dns = Some(Dns::from(d));
        }
        Ok(result)
    }

    fn del(req: Request) -> Result<(), CniError> {
        // Only what DEL needs: a config ADD refused must still be deletable.
        let netconf = NetConf::parse(&req)?;
        links::link_del()?;
        if !netconf.ipam_type().is_empty() {
            links::ipam_del()?;
        }
        Ok(())
    }

    fn check(req: Request) -> Result<(), CniError> {
        let netconf = NetConf::parse(&req)?;
        let conf = Conf::load(&req, &netconf)?;
        if conf.layer3 {
            links::ipam_check()?;
        }
        let prev = netconf
            .prev_result()?
            .ok_or_else(|| invalid("bridge: Required prevResult missing"))?;
        let fail = |m: String| error(code::INTERNAL, format!("bridge: {m}"));
        if !prev
            .interfaces
            .iter()
            .any(|i| i.name == conf.bridge && !i.sandbox)
        {
            return Err(fail(format!("prevResult has no bridge {:?}", conf.bridge)));
        }
        let bridge = netlink::link_get(HOST, &conf.bridge).map_err(|_| {
            fail(format!(
                "bridge {:?} in the host netns was not found",
                conf.bridge
            ))
        })?;
        if bridge.kind.as_deref() != Some("bridge") {
            return Err(fail(format!("{:?} is not a bridge", conf.bridge)));
        }
        if bridge.promisc != conf.promisc {
            return Err(fail(format!(
                "bridge {:?} is{} promiscuous, \"promiscMode\" says {}",
                conf.bridge,
                if bridge.promisc { "" } else { " not" },
                conf.promisc
            )));
        }
        iface::check("bridge", &req.ifname, "veth", &prev).map(drop)
    }

    fn status(req: Request) -> Result<(), CniError> {
        Conf::load(&req, &NetConf::parse(&req)?).map(drop)
    }

    fn gc(_: Request, _: Vec<Attachment>) -> Result<(), CniError> {
        Ok(())
    }
}

multus_plugin_sdk::export!(Bridge);
