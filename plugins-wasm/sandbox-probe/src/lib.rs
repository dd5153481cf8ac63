//! Test-only: a chained plugin that, on ADD, tries one thing its grant does
//! not allow (chosen by the config's `probe` key). The sandbox tests expect
//! each attempt to be refused with a CNI error naming the plugin and call.

use multus_plugin_sdk::conf::NetConf;
use multus_plugin_sdk::netlink::{self, Namespace};
use multus_plugin_sdk::routing::{self, Family, RouteEntry, Rule};
use multus_plugin_sdk::sysctl::{self, Key, LinkKey};
use multus_plugin_sdk::{invalid, Attachment, CniError, CniResult, Plugin, Request};

struct Probe;

fn rule(from: Option<&str>, to: Option<&str>, table: u32) -> Rule {
    Rule {
        family: Family::Ipv4,
        from: from.map(String::from),
        to: to.map(String::from),
        table,
        priority: None,
        iif: None,
        oif: None,
    }
}

/// The attachment's own address, which a rule may use in the pod but not,
/// without `hostNetns`, in the host.
fn own_ip(conf: &NetConf) -> Result<String, CniError> {
    let prev = conf.prev_result()?.unwrap_or_else(CniResult::empty);
    let ip = prev
        .ips
        .first()
        .ok_or_else(|| invalid("no prevResult IP"))?;
    Ok(ip.address.split('/').next().unwrap_or_default().to_string())
}

/// One more interface, in the pod, named `name`.
fn pod_interface(r: &mut CniResult, name: String) {
    r.interfaces.push(multus_plugin_sdk::Interface {
        name,
        mac: None,
        mtu: None,
        sandbox: true,
    });
}

impl Plugin for Probe {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let conf = NetConf::parse(&req)?;
        let probe: String = conf.get("probe")?.unwrap_or_default();
        match probe.as_str() {
            "host-netns" => {
                netlink::link_get(Namespace::Host, "lo")?;
            }
            "ungranted-link" => {
                netlink::link_set(
                    Namespace::Container,
                    "lo",
                    &netlink::LinkChange {
                        up: Some(false),
                        mtu: None,
                        mac: None,
                        promisc: None,
                        allmulti: None,
                        txqlen: None,
                    },
                )?;
            }
            "sysctl-outside-net" => {
                sysctl::set(
                    &Key {
                        section: "..".into(),
                        link: None,
                        name: "kernel.hostname".into(),
                    },
                    "pwned",
                )?;
            }
            "sysctl-unlisted" => {
                sysctl::set(
                    &Key {
                        section: "ipv4".into(),
                        link: None,
                        name: "ip_forward".into(),
                    },
                    "1",
                )?;
            }
            "sysctl-other-link" => {
                sysctl::set(
                    &Key {
                        section: "ipv4".into(),
                        link: Some(LinkKey {
                            group: "conf".into(),
                            link: "lo".into(),
                        }),
                        name: "arp_ignore".into(),
                    },
                    "1",
                )?;
            }
            "route-ungranted-link" => {
                routing::route_add(
                    Namespace::Container,
                    "lo",
                    &RouteEntry {
                        dst: "10.99.0.0/16".into(),
                        gw: None,
                        src: None,
                        table: Some(100),
                        metric: None,
                        scope: None,
                        protocol: None,
                    },
                )?;
            }
            "rule-other-address" => {
                routing::rule_add(Namespace::Container, &rule(Some("10.99.0.7/32"), None, 100))?;
            }
            "rule-main-without-from" => {
                routing::rule_add(Namespace::Container, &rule(None, Some("0.0.0.0/0"), 254))?;
            }
            "rule-no-selector" => {
                // No from, iif or oif: every interface's traffic, eth0's too.
                routing::rule_add(Namespace::Container, &rule(None, None, 100))?;
            }
            "host-rule" => {
                // With hostNetns: `from all lookup 100 pref 0` on the node.
                let mut r = rule(None, None, 100);
                r.priority = Some(0);
                routing::rule_add(Namespace::Host, &r)?;
            }
            "host-route-named" => {
                // With hostNetns, a route on the host link its config names.
                let master: String = conf.get("master")?.unwrap_or_default();
                routing::route_add(
                    Namespace::Host,
                    &master,
                    &RouteEntry {
                        dst: "10.99.0.0/16".into(),
                        gw: None,
                        src: None,
                        table: Some(254),
                        metric: None,
                        scope: None,
                        protocol: None,
                    },
                )?;
            }
            "host-addr" => {
                // With hostNetns, an address no IPAM gave this call.
                let master: String = conf.get("master")?.unwrap_or_default();
                netlink::addr_add(Namespace::Host, &master, "10.96.0.1/32")?;
            }
            "claim-lo" => {
                // A result placing a pod interface it was never granted.
                let mut r = conf.prev_result()?.unwrap_or_else(CniResult::empty);
                r.interfaces.push(multus_plugin_sdk::Interface {
                    name: "lo".into(),
                    mac: None,
                    mtu: None,
                    sandbox: true,
                });
                return Ok(r);
            }
            "rule-host-netns" => {
                let own = format!("{}/32", own_ip(&conf)?);
                routing::rule_add(Namespace::Host, &rule(Some(&own), None, 100))?;
            }
            "link-list" => {
                // Succeeds only if exactly the granted link is listed: the
                // pod's lo exists but was not granted.
                let names: Vec<String> = netlink::link_list(Namespace::Container)?
                    .into_iter()
                    .map(|l| l.name)
                    .collect();
                if names != [req.ifname.clone()] {
                    return Err(invalid(format!("link-list showed {names:?}")));
                }
            }
            "macvlan-unnamed-master" => {
                multus_plugin_sdk::links::macvlan_add(
                    "uplink0",
                    multus_plugin_sdk::links::MacvlanMode::Bridge,
                    None,
                    None,
                )?;
            }
            "veth" => {
                multus_plugin_sdk::links::veth_add(None)?;
            }
            "bridge-ensure" => {
                multus_plugin_sdk::links::bridge_ensure(
                    "br-evil",
                    multus_plugin_sdk::links::BridgeSettings {
                        mtu: None,
                        promisc: false,
                        vlan_filtering: false,
                    },
                )?;
            }
            "bridge-attach-master" => {
                // Both names are in this probe's config; the master is still
                // no link this call created.
                let bridge: String = conf.get("bridge")?.unwrap_or_default();
                let master: String = conf.get("master")?.unwrap_or_default();
                multus_plugin_sdk::links::bridge_attach(
                    &master,
                    &bridge,
                    &multus_plugin_sdk::links::PortSettings {
                        hairpin: false,
                        drop_default_vlans: false,
                        access_vlan: None,
                        trunk_vlans: Vec::new(),
                    },
                )?;
            }
            "forwarding" => {
                multus_plugin_sdk::links::enable_forwarding(true, false)?;
            }
            "swallow-denial" => {
                // A plugin that ignores the refusal must still fail.
                let _ = netlink::link_get(Namespace::Host, "lo");
            }
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(vec![1u8; 8 << 20]);
                    std::hint::black_box(&hog);
                }
            }
            "log-flood" => {
                let line = "x".repeat(1024);
                // 20 MB against a 64 KiB log budget per call.
                for _ in 0..20_000 {
                    multus_plugin_sdk::info(&line);
                }
            }
            "host-call-loop" => {
                for _ in 0..1_000_000 {
                    netlink::link_get(Namespace::Container, &req.ifname)?;
                }
            }
            "every-denied" => {
                // Each refused, each refusal ignored: the call must fail anyway.
                let _ = netlink::link_get(Namespace::Host, "lo");
                let _ = netlink::link_get(Namespace::Container, "lo");
                let _ = multus_plugin_sdk::links::veth_add(None);
                let _ = multus_plugin_sdk::links::enable_forwarding(true, true);
                let _ = sysctl::set(
                    &Key {
                        section: "ipv4".into(),
                        link: None,
                        name: "ip_forward".into(),
                    },
                    "1",
                );
                let _ = routing::rule_add(Namespace::Container, &rule(None, None, 254));
            }
            "store-race" => {
                // Pods racing on one key of the plugin's store: exactly one
                // insert wins; the losers fail naming the key.
                let tx = multus_plugin_sdk::store::open()?;
                if !tx.insert("the-one-key", &req.container_id)? {
                    return Err(invalid(format!(
                        "store-race: {} lost the key",
                        req.container_id
                    )));
                }
            }
            "huge-result" => {
                let mut r = conf.prev_result()?.unwrap_or_else(CniResult::empty);
                for i in 0..50_000 {
                    r.routes.push(multus_plugin_sdk::Route {
                        dst: format!("10.{}.{}.0/24", i / 256 % 256, i % 256),
                        gw: None,
                        mtu: None,
                        advmss: None,
                        priority: None,
                        table: None,
                        scope: None,
                    });
                }
                return Ok(r);
            }
            "aliased-result" => {
                // 60 interface names that are all one 512 KiB buffer: 30 MiB
                // for the host to copy out of 512 KiB of the guest's memory.
                let mut r = conf.prev_result()?.unwrap_or_else(CniResult::empty);
                let mut buf = vec![b'a'; 512 * 1024];
                let (ptr, len) = (buf.as_mut_ptr(), buf.len());
                std::mem::forget(buf);
                for _ in 0..60 {
                    // SAFETY: none; aliasing on purpose, as a hostile module
                    // would. The call never returns to this instance.
                    pod_interface(&mut r, unsafe { String::from_raw_parts(ptr, len, len) });
                }
                return Ok(r);
            }
            "long-name-result" => {
                let mut r = conf.prev_result()?.unwrap_or_else(CniResult::empty);
                pod_interface(&mut r, "n".repeat(2000));
                return Ok(r);
            }
            "malformed-result" => {
                let mut r = conf.prev_result()?.unwrap_or_else(CniResult::empty);
                r.ips.push(multus_plugin_sdk::IpConfig {
                    address: "not-an-address".into(),
                    gateway: Some("nor-a-gateway".into()),
                    interface: Some(99),
                });
                return Ok(r);
            }
            other => return Err(invalid(format!("unknown probe {other:?}"))),
        }
        Ok(conf.prev_result()?.unwrap_or_else(CniResult::empty))
    }

    fn del(req: Request) -> Result<(), CniError> {
        // The store-race winner gives its key back.
        if NetConf::parse(&req)?.get::<String>("probe")?.as_deref() == Some("store-race") {
            let tx = multus_plugin_sdk::store::open()?;
            if tx.get("the-one-key")?.as_deref() == Some(req.container_id.as_str()) {
                tx.remove("the-one-key")?;
            }
        }
        Ok(())
    }

    fn check(_req: Request) -> Result<(), CniError> {
        Ok(())
    }

    fn status(_req: Request) -> Result<(), CniError> {
        Ok(())
    }

    fn gc(_req: Request, _valid: Vec<Attachment>) -> Result<(), CniError> {
        Ok(())
    }
}

multus_plugin_sdk::export!(Probe);
