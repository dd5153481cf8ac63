//! ptp as a sandboxed interface plugin, with the reference ptp's keys and
//! kernel behaviour: the IPAM first (run by the host), IP forwarding on, a
//! veth pair (`CNI_IFNAME` in the pod, `veth<hex>` on the host, `mtu`), the
//! pod end with the addresses and only a /32 (/128) route to the gateway
//! plus the subnet via the gateway, the host end with the gateway address
//! and a host route to the pod. `ipMasq` is refused: masquerading needs
//! iptables/nftables rules on the node, which no host call makes (yet).

use multus_plugin_sdk::conf::{ConfDns, NetConf};
use multus_plugin_sdk::iface;
use multus_plugin_sdk::ip::{bits, parse_ip, Cidr};
use multus_plugin_sdk::links;
use multus_plugin_sdk::netlink::{self, Namespace};
use multus_plugin_sdk::routing::{self, RouteEntry, Scope};
use multus_plugin_sdk::{
    invalid, Attachment, CniError, CniResult, Dns, Interface, Plugin, Request,
};

struct Conf {
    mtu: Option<u32>,
    dns: Option<ConfDns>,
}

impl Conf {
    fn load(netconf: &NetConf) -> Result<Self, CniError> {
        if netconf.get::<bool>("ipMasq")?.unwrap_or(false) {
            return Err(invalid(
                "ptp: \"ipMasq\": true is not supported by the wasm ptp (masquerading needs iptables/nftables rules on the node, which it cannot make); set it false or remove ptp.wasm to run the native ptp",
            ));
        }
        if netconf.ipam_type().is_empty() {
            return Err(invalid("ptp: \"ipam\" with a \"type\" is required"));
        }
        Ok(Self {
            mtu: netconf.get::<u32>("mtu")?.filter(|m| *m > 0),
            dns: netconf.dns()?,
        })
    }
}

fn route(dst: String, gw: Option<String>, src: Option<String>, scope: Scope) -> RouteEntry {
    RouteEntry {
        dst,
        gw,
        src,
        table: None,
        metric: None,
        scope: Some(scope),
        protocol: None,
    }
}

/// The pod end, as the reference's: the addresses, the IPAM's routes, then
/// instead of the subnet's connected route a /32 to the gateway and the
/// subnet via it, so all traffic goes through the host end.
fn pod_end(ifname: &str, r: &CniResult) -> Result<(), CniError> {
    const POD: Namespace = Namespace::Container;
    multus_plugin_sdk::link_up(POD, ifname)?;
    for ip in &r.ips {
        netlink::addr_add(POD, ifname, &ip.address)?;
    }
    for rt in &r.routes {
        let v4 = Cidr::parse(&rt.dst).is_ok_and(|c| c.addr.is_ipv4());
        let gw = rt.gw.clone().or_else(|| {
            r.ips
                .iter()
                .filter_map(|ip| ip.gateway.clone())
                .find(|g| parse_ip(g).is_ok_and(|g| g.is_ipv4() == v4))
        });
        routing::route_add(POD, ifname, &route(rt.dst.clone(), gw, None, Scope::Global))?;
    }
    for ip in &r.ips {
        let addr = Cidr::parse(&ip.address).map_err(invalid)?;
        let gw = ip
            .gateway
            .clone()
            .ok_or_else(|| invalid(format!("ptp: IPAM gave {} no gateway", ip.address)))?;
        let subnet = format!("{}/{}", addr.network(), addr.prefix);
        let mut connected = route(subnet.clone(), None, None, Scope::Link);
        if !addr.addr.is_ipv4() {
            connected.scope = None;
        }
        routing::route_del(POD, ifname, &connected)?;
        let host = format!("{gw}/{}", bits(addr.addr));
        let src = Some(addr.addr.to_string());
        routing::route_add(POD, ifname, &route(host, None, src.clone(), Scope::Link))?;
        routing::route_add(POD, ifname, &route(subnet, Some(gw), src, Scope::Global))?;
    }
    Ok(())
}

/// The host end: up, the gateway address (/32, /128), a host route to the
/// pod's address.
fn host_end(host: &str, r: &CniResult) -> Result<(), CniError> {
    const HOST: Namespace = Namespace::Host;
    multus_plugin_sdk::link_up(HOST, host)?;
    for ip in &r.ips {
        let addr = Cidr::parse(&ip.address).map_err(invalid)?;
        let full = bits(addr.addr);
        if let Some(gw) = &ip.gateway {
            netlink::addr_add(HOST, host, &format!("{gw}/{full}"))?;
        }
        let to_pod = format!("{}/{full}", addr.addr);
        routing::route_add(HOST, host, &route(to_pod, None, None, Scope::Host))?;
    }
    Ok(())
}

struct Ptp;

impl Plugin for Ptp {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let conf = Conf::load(&NetConf::parse(&req)?)?;
        let mut result = iface::ipam_add("ptp")?;
        let undo_ipam = |e: CniError| {
            let _ = links::ipam_del();
            e
        };
        let v4 = result.ips.iter().any(|ip| !ip.address.contains(':'));
        let v6 = result.ips.iter().any(|ip| ip.address.contains(':'));
        links::enable_forwarding(v4, v6).map_err(undo_ipam)?;
        let veth = links::veth_add(conf.mtu).map_err(undo_ipam)?;
        let undo_all = |e: CniError| {
            let _ = links::link_del();
            undo_ipam(e)
        };
        result.interfaces = vec![
            Interface {
                name: veth.host.name.clone(),
                mac: Some(veth.host.mac.clone()),
                mtu: None,
                sandbox: false,
            },
            Interface {
                name: req.ifname.clone(),
                mac: Some(veth.pod.mac.clone()),
                mtu: None,
                sandbox: true,
            },
        ];
        for ip in &mut result.ips {
            ip.interface = Some(1);
        }
        pod_end(&req.ifname, &result).map_err(undo_all)?;
        host_end(&veth.host.name, &result).map_err(undo_all)?;
        if let Some(d) = conf.dns {
            result.dns = Some(Dns::from(d));
        }
        Ok(result)
    }

    fn del(req: Request) -> Result<(), CniError> {
        NetConf::parse(&req)?;
        links::ipam_del()?;
        links::link_del().map(drop)
    }

    fn check(req: Request) -> Result<(), CniError> {
        let netconf = NetConf::parse(&req)?;
        Conf::load(&netconf)?;
        links::ipam_check()?;
        let prev = netconf
            .prev_result()?
            .ok_or_else(|| invalid("ptp: Required prevResult missing"))?;
        iface::check("ptp", &req.ifname, "veth", &prev).map(drop)
    }

    fn status(req: Request) -> Result<(), CniError> {
        Conf::load(&NetConf::parse(&req)?).map(drop)
    }

    fn gc(_: Request, _: Vec<Attachment>) -> Result<(), CniError> {
        Ok(())
    }
}

multus_plugin_sdk::export!(Ptp);
