//! macvlan as a sandboxed interface plugin, with the reference macvlan's
//! keys and kernel behaviour: a macvlan of `master` created in the pod as
//! `CNI_IFNAME` (`mode`, `mtu`, `runtimeConfig.mac`), the config's IPAM run
//! by the host (a wasm IPAM in-process, else exec'd), `arp_notify` on, the
//! addresses and routes configured (protocol boot, as the reference's), the
//! link up.
//! DEL runs the IPAM's DEL and deletes the link (gone already is fine);
//! CHECK runs the IPAM's CHECK and compares the link, its addresses and
//! routes with prevResult.

use multus_plugin_sdk::conf::{ConfDns, NetConf};
use multus_plugin_sdk::iface;
use multus_plugin_sdk::links::{self, MacvlanMode};
use multus_plugin_sdk::netlink::Namespace;
use multus_plugin_sdk::{
    invalid, Attachment, CniError, CniResult, Dns, Interface, Plugin, Request,
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
        Ok(Self {
            master,
            mode,
            mtu: netconf.get::<u32>("mtu")?.filter(|m| *m > 0),
            mac: netconf.runtime::<String>("mac")?.filter(|m| !m.is_empty()),
            layer3: !netconf.ipam_type().is_empty(),
            dns: netconf.get("dns")?,
        })
    }
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
            let ipam = iface::ipam_add("macvlan").map_err(undo_link)?;
            let undo_all = |e: CniError| {
                let _ = links::ipam_del();
                undo_link(e)
            };
            result.ips = ipam.ips.clone();
            for ip in &mut result.ips {
                ip.interface = Some(0);
            }
            result.routes = ipam.routes.clone();
            // As the reference (Debian's 1.1.1 sets only this one).
            iface::conf_sysctl(&req.ifname, "ipv4", "arp_notify", "1");
            iface::configure(&req.ifname, &result).map_err(undo_all)?;
        } else {
            multus_plugin_sdk::link_up(NS, &req.ifname).map_err(undo_link)?;
        }
        result.dns = conf.dns.map(Dns::from);
        Ok(result)
    }

    fn del(req: Request) -> Result<(), CniError> {
        // Only what DEL needs: a config ADD refused must still be deletable.
        let netconf = NetConf::parse(&req)?;
        if !netconf.ipam_type().is_empty() {
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
        iface::check("macvlan", &req.ifname, "macvlan", &prev).map(drop)
    }

    fn status(req: Request) -> Result<(), CniError> {
        Conf::load(&NetConf::parse(&req)?).map(drop)
    }

    fn gc(_: Request, _: Vec<Attachment>) -> Result<(), CniError> {
        Ok(())
    }
}

multus_plugin_sdk::export!(Macvlan);
