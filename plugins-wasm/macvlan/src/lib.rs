//! macvlan as a sandboxed interface plugin, with the reference macvlan's
//! keys and kernel behaviour: a macvlan of `master` created in the pod as
//! `CNI_IFNAME` (`mode`, `mtu`, `runtimeConfig.mac`), the config's IPAM run
//! by the host (a wasm IPAM in-process, else exec'd), `arp_notify` on, the
//! addresses and routes configured (protocol boot, as the reference's), the
//! link up.
//! DEL runs the IPAM's DEL and deletes the link (gone already is fine);
//! CHECK runs the IPAM's CHECK and compares the link, its addresses and
//! routes with prevResult.

use std::net::IpAddr;

use multus_plugin_sdk::conf::{ConfDns, NetConf};
use multus_plugin_sdk::ip::{parse_ip, Cidr};
use multus_plugin_sdk::links::{self, MacvlanMode};
use multus_plugin_sdk::netlink::{self, Namespace};
use multus_plugin_sdk::routing::{self, RouteEntry};
use multus_plugin_sdk::sysctl::{self, Key, LinkKey};
use multus_plugin_sdk::{
    code, error, invalid, Attachment, CniError, CniResult, Dns, Interface, Plugin, Request,
};

const NS: Namespace = Namespace::Container;

struct Conf {
    master: String,
    mode: MacvlanMode,
    mtu: Option<u32>,
    mac: Option<String>,
    layer3: bool,
    dns: Option<ConfDns>,
}

impl Conf {
    fn load(netconf: &NetConf) -> Result<Self, CniError> {
        let master: String = netconf.get("master")?.unwrap_or_default();
        if master.is_empty() {
            return Err(invalid(
                "macvlan: \"master\" is required (the reference falls back to the host's default-route link, which a sandboxed plugin cannot look up; name it)",
            ));
        }
        if netconf.get::<bool>("linkInContainer")?.unwrap_or(false) {
            return Err(invalid(
                "macvlan: \"linkInContainer\" (a master inside the pod) is not supported by the wasm macvlan; remove macvlan.wasm to run the native one",
            ));
        }
        let mode = match netconf
            .get::<String>("mode")?
            .as_deref()
            .unwrap_or("bridge")
        {
            "" | "bridge" => MacvlanMode::Bridge,
            "private" => MacvlanMode::Private,
            "vepa" => MacvlanMode::Vepa,
            "passthru" => MacvlanMode::Passthru,
            other => return Err(invalid(format!("macvlan: unknown \"mode\" {other:?}"))),
        };
        let ipam_type = netconf
            .raw
            .get("ipam")
            .and_then(|i| i.get("type"))
            .and_then(|t| t.as_str())
            .unwrap_or_default();
        Ok(Self {
            master,
            mode,
            mtu: netconf.get::<u32>("mtu")?.filter(|m| *m > 0),
            mac: netconf.runtime::<String>("mac")?.filter(|m| !m.is_empty()),
            layer3: !ipam_type.is_empty(),
            dns: netconf.get("dns")?,
        })
    }
}

fn notify(ifname: &str) {
    // As the reference (Debian's 1.1.1 sets only this one): best effort.
    let _ = sysctl::set(
        &Key {
            section: "ipv4".into(),
            link: Some(LinkKey {
                group: "conf".into(),
                link: ifname.into(),
            }),
            name: "arp_notify".into(),
        },
        "1",
    );
}

/// The gateway of `family`'s first IP that has one.
fn gateway(r: &CniResult, v4: bool) -> Option<String> {
    r.ips
        .iter()
        .filter_map(|ip| ip.gateway.as_deref())
        .find(|g| parse_ip(g).is_ok_and(|g: IpAddr| g.is_ipv4() == v4))
        .map(String::from)
}

/// The IPAM result on the link, as the reference's `ConfigureIface`: up,
/// its addresses, its routes (a route without `gw` goes via its family's
/// gateway).
fn configure(ifname: &str, r: &CniResult) -> Result<(), CniError> {
    multus_plugin_sdk::link_up(NS, ifname)?;
    for ip in &r.ips {
        netlink::addr_add(NS, ifname, &ip.address)?;
    }
    for route in &r.routes {
        let v4 = Cidr::parse(&route.dst).is_ok_and(|c| c.addr.is_ipv4());
        let entry = RouteEntry {
            dst: route.dst.clone(),
            gw: route.gw.clone().or_else(|| gateway(r, v4)),
            src: None,
            table: route.table,
            metric: route.priority,
            scope: None,
            protocol: None,
        };
        routing::route_add(NS, ifname, &entry)?;
    }
    Ok(())
}

struct Macvlan;

impl Plugin for Macvlan {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let conf = Conf::load(&NetConf::parse(&req)?)?;
        let link = links::macvlan_add(&conf.master, conf.mode, conf.mtu, conf.mac.as_deref())?;
        let undo_link = |e: CniError| {
            let _ = links::link_del();
            e
        };
        let mut result = CniResult::empty();
        result.interfaces.push(Interface {
            name: req.ifname.clone(),
            mac: Some(link.mac.clone()),
            mtu: None,
            sandbox: true,
        });
        if conf.layer3 {
            let ipam = links::ipam_add().map_err(undo_link)?;
            let undo_all = |e: CniError| {
                let _ = links::ipam_del();
                undo_link(e)
            };
            if ipam.ips.is_empty() {
                return Err(undo_all(error(
                    code::INTERNAL,
                    "macvlan: IPAM plugin returned missing IP config",
                )));
            }
            result.ips = ipam.ips.clone();
            for ip in &mut result.ips {
                ip.interface = Some(0);
            }
            result.routes = ipam.routes.clone();
            notify(&req.ifname);
            configure(&req.ifname, &result).map_err(undo_all)?;
        } else {
            multus_plugin_sdk::link_up(NS, &req.ifname).map_err(undo_link)?;
        }
        result.dns = conf.dns.map(Dns::from);
        Ok(result)
    }

    fn del(req: Request) -> Result<(), CniError> {
        let conf = Conf::load(&NetConf::parse(&req)?)?;
        if conf.layer3 {
            links::ipam_del()?;
        }
        links::link_del().map(drop)
    }

    fn check(req: Request) -> Result<(), CniError> {
        let netconf = NetConf::parse(&req)?;
        let conf = Conf::load(&netconf)?;
        if conf.layer3 {
            links::ipam_check()?;
        }
        let prev = netconf
            .prev_result()?
            .ok_or_else(|| invalid("macvlan: required prevResult missing"))?;
        let fail = |m: String| error(code::INTERNAL, format!("macvlan: {m}"));
        let at = prev
            .interfaces
            .iter()
            .position(|i| i.name == req.ifname && i.sandbox)
            .ok_or_else(|| fail(format!("prevResult has no {} in the pod", req.ifname)))?;
        let link = netlink::link_get(NS, &req.ifname)?;
        if link.kind.as_deref() != Some("macvlan") {
            return Err(fail(format!("{} is not a macvlan", req.ifname)));
        }
        if let Some(mac) = &prev.interfaces[at].mac {
            if !mac.eq_ignore_ascii_case(&link.mac) {
                return Err(fail(format!(
                    "{} has MAC {}, not {mac}",
                    req.ifname, link.mac
                )));
            }
        }
        let addrs = netlink::addr_list(NS, &req.ifname)?;
        for ip in prev.ips.iter().filter(|ip| ip.interface == Some(at as u32)) {
            if !addrs.contains(&ip.address) {
                return Err(fail(format!("{} lacks {}", req.ifname, ip.address)));
            }
        }
        let routes = netlink::route_list(NS, &req.ifname)?;
        for want in &prev.routes {
            let found = routes
                .iter()
                .any(|r| r.dst == want.dst && (want.gw.is_none() || r.gw == want.gw));
            if !found {
                return Err(fail(format!("route to {} is missing", want.dst)));
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

multus_plugin_sdk::export!(Macvlan);
