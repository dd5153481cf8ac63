//! The selection's `default-route`: one attachment takes the pod's default
//! route; every other interface loses its default routes of that family.
//!
//! Upstream matched only routes with a nil destination, which a netlink
//! library bump turned into "match nothing" (multus PR #1552): the old default
//! stayed and the new one was silently not added. Here a default route is any
//! route with prefix length 0 in the main table, for either family, and a
//! failure to delete or add one fails the ADD.

use std::net::IpAddr;

use multus_host_functions::netlink::{NetlinkBackend, Ns, Route as KernelRoute};
use multus_host_functions::HostError;

use crate::cni::result::{CniResult, Route};
use crate::cni::{CniError, Code};

const MAIN_TABLE: u32 = 254;

/// One attachment as far as default routes go.
pub struct Attachment<'a> {
    pub ifname: &'a str,
    /// What the selection asked for; `None` for attachments that did not.
    pub request: Option<&'a [IpAddr]>,
    pub result: &'a mut CniResult,
}

/// Refuses more than one claimant, or more than one gateway of a family
/// (upstream: "multus does not support ECMP for default-route").
pub fn validate(requests: &[(String, Option<Vec<IpAddr>>)]) -> Result<(), CniError> {
    let claim: Vec<&String> = requests
        .iter()
        .filter(|(_, r)| r.is_some())
        .map(|(n, _)| n)
        .collect();
    if claim.len() > 1 {
        return Err(CniError::new(
            Code::InvalidConfig,
            format!("default-route is requested by more than one network ({claim:?}); only one may own the default route"),
        ));
    }
    for (name, gws) in requests {
        let Some(gws) = gws else { continue };
        for v4 in [true, false] {
            if gws.iter().filter(|g| g.is_ipv4() == v4).count() > 1 {
                return Err(CniError::new(
                    Code::InvalidConfig,
                    format!("network {name}: default-route lists more than one IPv{} gateway; ECMP default routes are not supported", if v4 { 4 } else { 6 }),
                ));
            }
        }
    }
    Ok(())
}

fn same_family(a: &ipnet::IpNet, v4: bool) -> bool {
    matches!(a, ipnet::IpNet::V4(_)) == v4
}

/// Moves the default routes in the pod (through `kernel`) and in the results
/// ADD reports. Nothing happens unless an attachment has a request.
pub fn apply(
    kernel: &mut dyn NetlinkBackend,
    attachments: &mut [Attachment<'_>],
) -> Result<(), CniError> {
    let Some(chosen) = attachments.iter().position(|a| a.request.is_some()) else {
        return Ok(());
    };
    let gateways: Vec<IpAddr> = attachments[chosen].request.unwrap_or_default().to_vec();
    // An empty list keeps the chosen network's own default routes and claims
    // both families; gateways claim their own families.
    let claimed: Vec<bool> = if gateways.is_empty() {
        vec![true, false]
    } else {
        let mut f: Vec<bool> = gateways.iter().map(IpAddr::is_ipv4).collect();
        f.dedup();
        f
    };
    let fail = |ifname: &str, what: String, e: HostError| {
        CniError::new(
            Code::Internal,
            format!("default-route: interface {ifname}: {what}: {e}"),
        )
    };
    for (i, a) in attachments.iter_mut().enumerate() {
        let drop_families: Vec<bool> = if i == chosen {
            gateways.iter().map(IpAddr::is_ipv4).collect()
        } else {
            claimed.clone()
        };
        if drop_families.is_empty() {
            continue;
        }
        let routes = match kernel.route_list(Ns::Container, a.ifname) {
            Ok(r) => r,
            // An attachment with no netdev in the pod (a DPDK-bound VF, say)
            // has no routes to move.
            Err(HostError::NotFound(_)) if i != chosen => Vec::new(),
            Err(e) => return Err(fail(a.ifname, "listing routes".into(), e)),
        };
        for r in routes.iter().filter(|r| {
            r.dst.prefix_len() == 0
                && r.table.unwrap_or(MAIN_TABLE) == MAIN_TABLE
                && drop_families.iter().any(|&v4| same_family(&r.dst, v4))
        }) {
            kernel.route_del(Ns::Container, a.ifname, r).map_err(|e| {
                fail(
                    a.ifname,
                    format!("deleting default route via {:?}", r.gw),
                    e,
                )
            })?;
        }
        a.result.routes.retain(|r| {
            !(r.is_default() && drop_families.iter().any(|&v4| same_family(&r.dst, v4)))
        });
    }
    let a = &mut attachments[chosen];
    for gw in gateways {
        let dst = if gw.is_ipv4() {
            "0.0.0.0/0".parse().expect("valid")
        } else {
            "::/0".parse().expect("valid")
        };
        let route = KernelRoute {
            dst,
            gw: Some(gw),
            priority: None,
            table: None,
            scope: None,
        };
        kernel
            .route_add(Ns::Container, a.ifname, &route)
            .map_err(|e| fail(a.ifname, format!("adding default route via {gw}"), e))?;
        a.result.routes.push(Route {
            dst,
            gw: Some(gw),
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use multus_host_functions::netlink::RecordingNetlink;
    use serde_json::json;

    fn result(routes: serde_json::Value) -> CniResult {
        CniResult::parse(&json!({"cniVersion":"1.0.0","routes":routes}), "1.0.0").unwrap()
    }

    #[test]
    fn validation() {
        let gw = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(validate(&[
            ("a".into(), None),
            ("b".into(), Some(vec![gw("10.0.0.1"), gw("fd00::1")]))
        ])
        .is_ok());
        let e = validate(&[("a".into(), Some(vec![])), ("b".into(), Some(vec![]))]).unwrap_err();
        assert!(e.msg.contains("more than one network"), "{}", e.msg);
        let e = validate(&[("b".into(), Some(vec![gw("10.0.0.1"), gw("10.0.0.2")]))]).unwrap_err();
        assert!(
            e.msg.contains("IPv4") && e.msg.contains("network b"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn no_request_touches_nothing() {
        let rec = RecordingNetlink::default();
        let mut k = rec.clone();
        let mut r = result(json!([{"dst":"0.0.0.0/0","gw":"10.0.0.1"}]));
        apply(
            &mut k,
            &mut [Attachment {
                ifname: "eth0",
                request: None,
                result: &mut r,
            }],
        )
        .unwrap();
        assert!(rec.ops.lock().unwrap().is_empty());
        assert_eq!(r.routes.len(), 1);
    }

    /// The recording backend, except that `missing` has no netdev in the pod.
    struct NoNetdev {
        inner: RecordingNetlink,
        missing: &'static str,
    }

    impl NetlinkBackend for NoNetdev {
        fn link_get(
            &mut self,
            ns: Ns,
            name: &str,
        ) -> Result<multus_host_functions::netlink::LinkInfo, HostError> {
            self.inner.link_get(ns, name)
        }
        fn link_list(
            &mut self,
            ns: Ns,
        ) -> Result<Vec<multus_host_functions::netlink::LinkInfo>, HostError> {
            self.inner.link_list(ns)
        }
        fn link_set(
            &mut self,
            ns: Ns,
            name: &str,
            c: &multus_host_functions::netlink::LinkChange,
        ) -> Result<(), HostError> {
            self.inner.link_set(ns, name, c)
        }
        fn addr_list(&mut self, ns: Ns, name: &str) -> Result<Vec<ipnet::IpNet>, HostError> {
            self.inner.addr_list(ns, name)
        }
        fn addr_add(&mut self, ns: Ns, name: &str, a: ipnet::IpNet) -> Result<(), HostError> {
            self.inner.addr_add(ns, name, a)
        }
        fn addr_del(&mut self, ns: Ns, name: &str, a: ipnet::IpNet) -> Result<(), HostError> {
            self.inner.addr_del(ns, name, a)
        }
        fn route_list(&mut self, ns: Ns, name: &str) -> Result<Vec<KernelRoute>, HostError> {
            if name == self.missing {
                return Err(HostError::NotFound(format!("link {name:?}")));
            }
            self.inner.route_list(ns, name)
        }
        fn route_add(&mut self, ns: Ns, name: &str, r: &KernelRoute) -> Result<(), HostError> {
            if name == self.missing {
                return Err(HostError::NotFound(format!("link {name:?}")));
            }
            self.inner.route_add(ns, name, r)
        }
        fn route_del(&mut self, ns: Ns, name: &str, r: &KernelRoute) -> Result<(), HostError> {
            self.inner.route_del(ns, name, r)
        }
    }

    #[test]
    fn attachments_without_a_netdev() {
        let gws = ["10.0.0.1".parse().unwrap()];
        let (mut a, mut b) = (result(json!([])), result(json!([])));
        // A DPDK VF with no netdev loses nothing and does not fail the move.
        let mut k = NoNetdev {
            inner: RecordingNetlink::default(),
            missing: "vf0",
        };
        apply(
            &mut k,
            &mut [
                Attachment {
                    ifname: "vf0",
                    request: None,
                    result: &mut a,
                },
                Attachment {
                    ifname: "eth0",
                    request: Some(&gws),
                    result: &mut b,
                },
            ],
        )
        .unwrap();
        assert_eq!(b.routes.len(), 1);
        // But the chosen interface must exist.
        let mut k = NoNetdev {
            inner: RecordingNetlink::default(),
            missing: "eth0",
        };
        let e = apply(
            &mut k,
            &mut [Attachment {
                ifname: "eth0",
                request: Some(&gws),
                result: &mut b,
            }],
        )
        .unwrap_err();
        assert!(e.msg.contains("interface eth0"), "{}", e.msg);
    }

    #[test]
    fn results_follow_the_move() {
        let mut k = RecordingNetlink::default();
        let mut eth0 = result(
            json!([{"dst":"0.0.0.0/0","gw":"10.0.0.1"},{"dst":"::/0","gw":"fd00::1"},{"dst":"10.9.0.0/16"}]),
        );
        let mut net1 = result(json!([{"dst":"0.0.0.0/0","gw":"192.168.1.254"}]));
        let gws = ["192.168.1.1".parse().unwrap()];
        apply(
            &mut k,
            &mut [
                Attachment {
                    ifname: "eth0",
                    request: None,
                    result: &mut eth0,
                },
                Attachment {
                    ifname: "net1",
                    request: Some(&gws),
                    result: &mut net1,
                },
            ],
        )
        .unwrap();
        // Only IPv4 was claimed: eth0 keeps its IPv6 default and other routes.
        let dsts: Vec<String> = eth0.routes.iter().map(|r| r.dst.to_string()).collect();
        assert_eq!(dsts, vec!["::/0", "10.9.0.0/16"]);
        let net1: Vec<String> = net1
            .routes
            .iter()
            .map(|r| format!("{} {:?}", r.dst, r.gw))
            .collect();
        assert_eq!(net1, vec!["0.0.0.0/0 Some(192.168.1.1)"]);
        let ops = k.ops.lock().unwrap().join("\n");
        assert!(ops.contains("route-add") && ops.contains("net1"), "{ops}");
    }
}
