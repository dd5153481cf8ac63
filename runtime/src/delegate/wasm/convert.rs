//! The WIT result into the runtime's result model, and back (an IPAM's
//! result handed to the interface plugin that asked for it).

use multus_host_functions::bindings::multus::plugin::types as wit;

use crate::cni::result::{CniResult, Dns, Interface, IpConfig, Route};

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| format!("{what} {:?}: {e}", multus_host_functions::text::quoted(s)))
}

/// Bounds on what a plugin may return: far above any real result, low
/// enough that a hostile module cannot make multus cache and print
/// megabytes (the soak's `huge-result` module returned 50 000 routes).
const MAX_INTERFACES: usize = 64;
const MAX_IPS: usize = 64;
const MAX_ROUTES: usize = 1024;
const MAX_DNS_ENTRIES: usize = 64;
const MAX_TEXT: usize = 1024;

fn bounded(r: &wit::CniResult) -> Result<(), String> {
    let dns = r.dns.as_ref();
    let counts = [
        ("interfaces", r.interfaces.len(), MAX_INTERFACES),
        ("ips", r.ips.len(), MAX_IPS),
        ("routes", r.routes.len(), MAX_ROUTES),
        (
            "dns.nameservers",
            dns.map_or(0, |d| d.nameservers.len()),
            MAX_DNS_ENTRIES,
        ),
        (
            "dns.search",
            dns.map_or(0, |d| d.search.len()),
            MAX_DNS_ENTRIES,
        ),
        (
            "dns.options",
            dns.map_or(0, |d| d.options.len()),
            MAX_DNS_ENTRIES,
        ),
    ];
    for (what, n, max) in counts {
        if n > max {
            return Err(format!("the result has {n} {what} (at most {max})"));
        }
    }
    let texts = r
        .interfaces
        .iter()
        .flat_map(|i| std::iter::once(&i.name).chain(&i.mac))
        .chain(
            r.ips
                .iter()
                .flat_map(|ip| std::iter::once(&ip.address).chain(&ip.gateway)),
        )
        .chain(
            r.routes
                .iter()
                .flat_map(|rt| std::iter::once(&rt.dst).chain(&rt.gw)),
        )
        .chain(dns.into_iter().flat_map(|d| {
            d.nameservers
                .iter()
                .chain(&d.search)
                .chain(&d.options)
                .chain(&d.domain)
        }));
    for t in texts {
        if t.len() > MAX_TEXT {
            return Err(format!(
                "the result has a {}-byte name, address or DNS entry (at most {MAX_TEXT})",
                t.len()
            ));
        }
    }
    if let Some(ip) = r.ips.iter().find(|ip| {
        ip.interface
            .is_some_and(|i| i as usize >= r.interfaces.len())
    }) {
        return Err(format!(
            "ip {:?} names interface {} of {}",
            ip.address,
            ip.interface.unwrap_or_default(),
            r.interfaces.len()
        ));
    }
    Ok(())
}

/// Every interface a plugin's result names is a valid interface name, and
/// each it places in the pod is one of `pod_links` (those it was granted or
/// created, as the host recorded): the result becomes the next plugin's
/// prevResult and the cached one, which grant pod links in their turn.
pub fn owned_interfaces(r: &wit::CniResult, pod_links: &[String]) -> Result<(), String> {
    for i in &r.interfaces {
        if !multus_host_functions::names::valid_ifname(&i.name) {
            return Err(format!(
                "interface {:?} is not a valid interface name",
                multus_host_functions::text::quoted(&i.name)
            ));
        }
        if i.sandbox && !pod_links.contains(&i.name) {
            return Err(format!(
                "it places interface {:?} in the pod, which it neither created nor was granted ({})",
                i.name,
                pod_links.join(", ")
            ));
        }
    }
    Ok(())
}

/// `netns` fills in `sandbox` for the interfaces the plugin placed in the pod.
pub fn result(r: &wit::CniResult, netns: &str) -> Result<CniResult, String> {
    bounded(r)?;
    Ok(CniResult {
        interfaces: r
            .interfaces
            .iter()
            .map(|i| Interface {
                name: i.name.clone(),
                mac: i.mac.clone(),
                mtu: i.mtu,
                sandbox: i.sandbox.then(|| netns.to_string()),
                socket_path: None,
                pci_id: None,
            })
            .collect(),
        ips: r
            .ips
            .iter()
            .map(|ip| {
                Ok(IpConfig {
                    version: None,
                    address: parse(&ip.address, "address")?,
                    gateway: ip
                        .gateway
                        .as_deref()
                        .map(|g| parse(g, "gateway"))
                        .transpose()?,
                    interface: ip.interface.map(|i| i as usize),
                })
            })
            .collect::<Result<_, String>>()?,
        routes: r
            .routes
            .iter()
            .map(|rt| {
                Ok(Route {
                    dst: parse(&rt.dst, "route dst")?,
                    gw: rt.gw.as_deref().map(|g| parse(g, "route gw")).transpose()?,
                    mtu: rt.mtu,
                    advmss: rt.advmss,
                    priority: rt.priority,
                    table: rt.table,
                    scope: rt.scope,
                })
            })
            .collect::<Result<_, String>>()?,
        dns: r
            .dns
            .as_ref()
            .map(|d| Dns {
                nameservers: d.nameservers.clone(),
                domain: d.domain.clone().unwrap_or_default(),
                search: d.search.clone(),
                options: d.options.clone(),
            })
            .unwrap_or_default(),
    })
}

/// The runtime's result as the WIT result a guest receives.
pub fn to_wit(r: &CniResult) -> wit::CniResult {
    wit::CniResult {
        interfaces: r
            .interfaces
            .iter()
            .map(|i| wit::Interface {
                name: i.name.clone(),
                mac: i.mac.clone(),
                mtu: i.mtu,
                sandbox: i.sandbox.as_deref().is_some_and(|s| !s.is_empty()),
            })
            .collect(),
        ips: r
            .ips
            .iter()
            .map(|ip| wit::IpConfig {
                address: ip.address.to_string(),
                gateway: ip.gateway.map(|g| g.to_string()),
                interface: ip.interface.map(|i| i as u32),
            })
            .collect(),
        routes: r
            .routes
            .iter()
            .map(|rt| wit::Route {
                dst: rt.dst.to_string(),
                gw: rt.gw.map(|g| g.to_string()),
                mtu: rt.mtu,
                advmss: rt.advmss,
                priority: rt.priority,
                table: rt.table,
                scope: rt.scope,
            })
            .collect(),
        dns: (r.dns != Default::default()).then(|| wit::Dns {
            nameservers: r.dns.nameservers.clone(),
            domain: (!r.dns.domain.is_empty()).then(|| r.dns.domain.clone()),
            search: r.dns.search.clone(),
            options: r.dns.options.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> wit::CniResult {
        wit::CniResult {
            interfaces: vec![wit::Interface {
                name: "net1".into(),
                mac: Some("02:00:00:00:00:01".into()),
                mtu: None,
                sandbox: true,
            }],
            ips: vec![wit::IpConfig {
                address: "10.1.0.5/24".into(),
                gateway: None,
                interface: Some(0),
            }],
            routes: Vec::new(),
            dns: None,
        }
    }

    fn route(dst: String) -> wit::Route {
        wit::Route {
            dst,
            gw: None,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }

    #[test]
    fn a_real_result_passes() {
        let mut r = plain();
        r.routes = (0..MAX_ROUTES)
            .map(|i| route(format!("10.{}.{}.0/24", i / 256, i % 256)))
            .collect();
        let out = result(&r, "/run/netns/p").unwrap();
        assert_eq!(out.routes.len(), MAX_ROUTES);
        assert_eq!(out.interfaces[0].sandbox.as_deref(), Some("/run/netns/p"));
    }

    #[test]
    fn enormous_results_are_refused_naming_what() {
        let mut r = plain();
        r.routes = (0..50_000)
            .map(|i| route(format!("10.{}.{}.0/24", i / 256 % 256, i % 256)))
            .collect();
        assert_eq!(
            result(&r, "p").unwrap_err(),
            "the result has 50000 routes (at most 1024)"
        );
        let mut r = plain();
        r.interfaces[0].name = "x".repeat(5000);
        assert!(result(&r, "p").unwrap_err().contains("5000-byte"));
        // Every string the checks after it would quote: an address too.
        let mut r = plain();
        r.ips[0].address = "1".repeat(5000);
        assert!(result(&r, "p")
            .unwrap_err()
            .contains("5000-byte name, address"));
        let mut r = plain();
        r.routes = vec![route("9".repeat(900))];
        let e = result(&r, "p").unwrap_err();
        assert!(e.len() < 200 && e.starts_with("route dst"), "{e}");
    }

    #[test]
    fn an_ip_on_a_missing_interface_is_refused() {
        let mut r = plain();
        r.ips[0].interface = Some(99);
        assert_eq!(
            result(&r, "p").unwrap_err(),
            "ip \"10.1.0.5/24\" names interface 99 of 1"
        );
    }

    #[test]
    fn a_result_claims_only_its_own_pod_interfaces() {
        let links = ["net1".to_string()];
        owned_interfaces(&plain(), &links).unwrap();
        let mut r = plain();
        r.interfaces[0].name = "eth0".into();
        let e = owned_interfaces(&r, &links).unwrap_err();
        assert!(
            e.contains("\"eth0\"") && e.contains("neither created"),
            "{e}"
        );
        r.interfaces[0].sandbox = false;
        owned_interfaces(&r, &links).unwrap();
        r.interfaces[0].name = "/proc/sys/kernel".into();
        assert!(owned_interfaces(&r, &links)
            .unwrap_err()
            .contains("not a valid interface name"));
    }
}
