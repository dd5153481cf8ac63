//! What a granted call may do with routes and rules, decided from the grant
//! and the namespace's current rules and routes. Pure: the caller gathers
//! the facts.

use ipnet::IpNet;

use super::{Rule, TableRoute, MAIN_TABLE};
use crate::HostError;

/// `unspec`, `default`, `main` and `local`: shared by every interface, so
/// never owned by one call.
pub fn shared_table(table: u32) -> bool {
    matches!(table, 0 | 253 | MAIN_TABLE | 255)
}

/// A route write in the host netns: only on a link this call created (its
/// veth's host end), only in `main`, and (adding) only a host route to an
/// address this call's IPAM gave the pod: the route ptp adds. Nothing else
/// of the node's routing is any plugin's, whatever its config names.
pub fn check_host_route(
    created: &[String],
    pod_addrs: &[IpNet],
    link: &str,
    dst: &IpNet,
    table: u32,
    deleting: bool,
) -> Result<(), HostError> {
    if !created.iter().any(|l| l == link) {
        return Err(HostError::Denied(format!(
            "host routes only on links this call created, not {link:?} (created: {})",
            crate::grant::listed(created)
        )));
    }
    if table != MAIN_TABLE {
        return Err(HostError::Denied(format!(
            "host routes only in table main, not {table}"
        )));
    }
    let to_pod = dst.prefix_len() == dst.max_prefix_len()
        && pod_addrs.iter().any(|a| a.addr() == dst.addr());
    if !deleting && !to_pod {
        return Err(HostError::Denied(format!(
            "host route to {dst}: only a host route to the pod's own address is allowed (this call's IPAM gave: {})",
            crate::grant::listed(pod_addrs)
        )));
    }
    Ok(())
}

/// An address written on a host link: inside the subnet of an address this
/// call's IPAM gave the pod (a gateway, as bridge and ptp set).
pub fn check_host_addr(pod_addrs: &[IpNet], addr: &IpNet) -> Result<(), HostError> {
    if pod_addrs.iter().any(|a| a.trunc().contains(&addr.addr())) {
        return Ok(());
    }
    Err(HostError::Denied(format!(
        "host address {addr} is outside the subnets this call's IPAM gave the pod ({})",
        crate::grant::listed(pod_addrs)
    )))
}

/// What this call was granted in the container netns: its links and the
/// addresses on them (live, and those of prevResult).
pub struct Granted<'a> {
    pub links: &'a [String],
    pub addrs: &'a [IpNet],
}

impl Granted<'_> {
    fn link(&self, name: &str) -> bool {
        self.links.iter().any(|l| l == name)
    }

    /// True if `prefix` lies inside the subnet of a granted address.
    pub fn covers(&self, prefix: &IpNet) -> bool {
        self.addrs.iter().any(|a| a.trunc().contains(prefix))
    }

    /// A rule this call may account for: from one of its addresses, or
    /// bound to one of its links.
    fn owns_rule(&self, r: &Rule) -> bool {
        r.from.is_some_and(|f| self.covers(&f))
            || r.iif.as_deref().is_some_and(|l| self.link(l))
            || r.oif.as_deref().is_some_and(|l| self.link(l))
    }

    /// Why `table` belongs to someone else, if it does: a route out of a
    /// link not granted, or a rule this call cannot account for (`except`
    /// is the rule being deleted).
    pub fn foreign(
        &self,
        table: u32,
        routes: &[TableRoute],
        rules: &[Rule],
        except: Option<&Rule>,
    ) -> Option<String> {
        if let Some((link, r)) = routes
            .iter()
            .find(|(link, r)| r.table == table && !link.as_deref().is_some_and(|l| self.link(l)))
        {
            return Some(format!(
                "table {table} holds {} out of {}",
                r.dst,
                link.as_deref().unwrap_or("no link")
            ));
        }
        rules
            .iter()
            .filter(|r| r.table == table && !except.is_some_and(|e| r.matches(e)))
            .find(|r| !self.owns_rule(r))
            .map(|r| {
                format!(
                    "table {table} is looked up by another rule ({})",
                    super::describe_rule(r)
                )
            })
    }

    /// A rule add or delete: it selects this call's traffic (a `from` of
    /// ours, or `iif`/`oif` one of our links; a rule with none of them,
    /// `to` alone included, would pull every interface's traffic), its
    /// links granted, its `from` one of ours, and its table ours (or
    /// shared, reached only from our addresses).
    pub fn check_rule(
        &self,
        r: &Rule,
        routes: &[TableRoute],
        rules: &[Rule],
        deleting: bool,
    ) -> Result<(), HostError> {
        if r.from.is_none() && r.iif.is_none() && r.oif.is_none() {
            return Err(HostError::Denied(format!(
                "a rule must select this call's traffic (from an address of a granted link, or iif/oif a granted link): {}",
                super::describe_rule(r)
            )));
        }
        for link in [&r.iif, &r.oif].into_iter().flatten() {
            crate::names::check_ifname(link, "rule link")?;
            if !self.link(link) {
                return Err(HostError::Denied(format!(
                    "rule names link {link:?}, which was not granted to this call (granted: {})",
                    self.links.join(", ")
                )));
            }
        }
        if let Some(from) = &r.from {
            if !self.covers(from) {
                return Err(HostError::Denied(format!(
                    "rule from {from}: not an address of a granted link ({})",
                    crate::grant::listed(self.addrs)
                )));
            }
        }
        if shared_table(r.table) {
            return match r.from {
                Some(_) => Ok(()),
                None => Err(HostError::Denied(format!(
                    "a rule into the shared table {} needs a `from` of a granted link",
                    r.table
                ))),
            };
        }
        let except = deleting.then_some(r);
        match self.foreign(r.table, routes, rules, except) {
            Some(why) => Err(HostError::Denied(format!(
                "table {} is not this call's: {why}",
                r.table
            ))),
            None => Ok(()),
        }
    }

    /// A route write into `table`: the shared tables as before 0.1.1, any
    /// other only if it is not someone else's.
    pub fn check_route_table(
        &self,
        table: u32,
        routes: &[TableRoute],
        rules: &[Rule],
    ) -> Result<(), HostError> {
        if shared_table(table) {
            return Ok(());
        }
        match self.foreign(table, routes, rules, None) {
            Some(why) => Err(HostError::Denied(format!(
                "table {table} is not this call's: {why}"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Family, RouteEntry};
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn rule(from: Option<&str>, table: u32) -> Rule {
        Rule {
            family: Family::V4,
            from: from.map(net),
            to: None,
            table,
            priority: None,
            iif: None,
            oif: None,
        }
    }

    fn route(link: &str, dst: &str, table: u32) -> TableRoute {
        (
            Some(link.to_string()),
            RouteEntry {
                dst: net(dst),
                gw: None,
                src: None,
                table,
                metric: None,
                scope: None,
                protocol: None,
            },
        )
    }

    fn check(
        g: &Granted,
        r: &Rule,
        routes: &[TableRoute],
        rules: &[Rule],
    ) -> Result<(), HostError> {
        g.check_rule(r, routes, rules, false)
    }

    #[test]
    fn rules_from_our_addresses_into_free_or_own_tables() {
        let links = vec!["net1".to_string()];
        let addrs = vec![net("10.1.0.5/24")];
        let g = Granted {
            links: &links,
            addrs: &addrs,
        };
        let ours = rule(Some("10.1.0.5/32"), 100);
        check(&g, &ours, &[], &[]).unwrap();
        let own_routes = [route("net1", "0.0.0.0/0", 100)];
        check(&g, &ours, &own_routes, std::slice::from_ref(&ours)).unwrap();
        check(&g, &rule(Some("10.1.0.5/32"), MAIN_TABLE), &[], &[]).unwrap();
        let mut iif = rule(None, 100);
        iif.iif = Some("net1".into());
        check(&g, &iif, &[], &[]).unwrap();
    }

    #[test]
    fn someone_elses_address_link_or_table_is_refused() {
        let links = vec!["net1".to_string()];
        let addrs = vec![net("10.1.0.5/24")];
        let g = Granted {
            links: &links,
            addrs: &addrs,
        };
        let e = check(&g, &rule(Some("10.2.0.7/32"), 100), &[], &[]).unwrap_err();
        assert!(
            e.to_string().contains("not an address of a granted link"),
            "{e}"
        );
        let mut oif = rule(Some("10.1.0.5/32"), 100);
        oif.oif = Some("eth0".into());
        assert!(check(&g, &oif, &[], &[]).is_err());
        let theirs = [route("net2", "0.0.0.0/0", 100)];
        let e = check(&g, &rule(Some("10.1.0.5/32"), 100), &theirs, &[]).unwrap_err();
        assert!(e.to_string().contains("out of net2"), "{e}");
        let their_rule = rule(Some("10.2.0.7/32"), 100);
        let e = check(&g, &rule(Some("10.1.0.5/32"), 100), &[], &[their_rule]).unwrap_err();
        assert!(e.to_string().contains("another rule"), "{e}");
        let mut iif_main = rule(None, MAIN_TABLE);
        iif_main.iif = Some("net1".into());
        let e = check(&g, &iif_main, &[], &[]).unwrap_err();
        assert!(e.to_string().contains("shared table"), "{e}");
        assert!(g
            .check_route_table(100, &[route("eth0", "10.9.0.0/16", 100)], &[])
            .is_err());
        g.check_route_table(MAIN_TABLE, &[], &[]).unwrap();
    }

    #[test]
    fn deleting_a_rule_does_not_count_itself() {
        let links = vec!["net1".to_string()];
        let addrs = vec![];
        let g = Granted {
            links: &links,
            addrs: &addrs,
        };
        let mut r = rule(None, 100);
        r.iif = Some("net1".into());
        let mut theirs = rule(None, 100);
        theirs.iif = Some("eth0".into());
        let mut ours_too = r.clone();
        ours_too.to = Some(net("10.9.0.0/16"));
        assert!(g.check_rule(&ours_too, &[], &[r.clone()], false).is_ok());
        assert!(g
            .check_rule(&r, &[], &[r.clone(), theirs.clone()], true)
            .is_err());
        g.check_rule(&r, &[], std::slice::from_ref(&r), true)
            .unwrap();
    }

    #[test]
    fn a_rule_must_select_this_calls_traffic() {
        let links = vec!["net1".to_string()];
        let addrs = vec![net("10.1.0.5/24")];
        let g = Granted {
            links: &links,
            addrs: &addrs,
        };
        for r in [rule(None, 100), {
            let mut to = rule(None, 100);
            to.to = Some(net("0.0.0.0/0"));
            to
        }] {
            let e = check(&g, &r, &[], &[]).unwrap_err();
            assert!(
                e.to_string().contains("must select this call's traffic"),
                "{e}"
            );
        }
        let mut bad = rule(None, 100);
        bad.iif = Some("../x".into());
        assert!(check(&g, &bad, &[], &[]).is_err());
    }

    #[test]
    fn host_routes_only_to_the_pod_on_a_created_link_in_main() {
        let created = vec!["veth01".to_string()];
        let pod = vec![net("10.1.0.5/24")];
        let ok = |link: &str, dst: &str, table: u32| {
            check_host_route(&created, &pod, link, &net(dst), table, false)
        };
        ok("veth01", "10.1.0.5/32", MAIN_TABLE).unwrap();
        assert!(ok("eth0", "10.1.0.5/32", MAIN_TABLE).is_err());
        assert!(ok("veth01", "10.1.0.0/24", MAIN_TABLE).is_err());
        assert!(ok("veth01", "0.0.0.0/0", MAIN_TABLE).is_err());
        assert!(ok("veth01", "10.1.0.5/32", 255).is_err());
        assert!(ok("veth01", "10.1.0.5/32", 100).is_err());
        check_host_route(
            &created,
            &[],
            "veth01",
            &net("10.9.9.9/32"),
            MAIN_TABLE,
            true,
        )
        .unwrap();
        assert!(
            check_host_route(&created, &[], "eth0", &net("10.9.9.9/32"), MAIN_TABLE, true).is_err()
        );
        check_host_addr(&pod, &net("10.1.0.1/24")).unwrap();
        assert!(check_host_addr(&pod, &net("10.96.0.1/32")).is_err());
        assert!(check_host_addr(&[], &net("10.1.0.1/24")).is_err());
    }
}
