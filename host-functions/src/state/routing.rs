//! `routing`: routes in any table and policy rules, checked by
//! `routing::policy` against the links, addresses and tables this call owns.

use ipnet::IpNet;

use super::netlink::{ns, parse_net};
use super::HostState;
use crate::bindings::multus::plugin::{netlink, routing};
use crate::netlink::{self as nl, Ns};
use crate::routing::policy::Granted;
use crate::routing::{self as rt, RouteEntry, RouteOp, Rule, RuleOp};
use crate::text::quoted;
use crate::{HostError, WitError};

fn parse_ip(s: &str, what: &str) -> Result<std::net::IpAddr, HostError> {
    s.parse()
        .map_err(|e| HostError::Invalid(format!("{what} {:?}: {e}", crate::text::quoted(s))))
}

fn to_entry(r: &routing::RouteEntry) -> Result<RouteEntry, HostError> {
    Ok(RouteEntry {
        dst: parse_net(&r.dst, "route dst")?,
        gw: r
            .gw
            .as_deref()
            .map(|g| parse_ip(g, "route gw"))
            .transpose()?,
        src: r
            .src
            .as_deref()
            .map(|g| parse_ip(g, "route src"))
            .transpose()?,
        table: r.table.unwrap_or(rt::MAIN_TABLE),
        metric: r.metric,
        scope: r.scope.map(|s| match s {
            routing::Scope::Global => 0,
            routing::Scope::Site => 200,
            routing::Scope::Link => 253,
            routing::Scope::Host => 254,
        }),
        protocol: r.protocol,
    })
}

fn from_entry(r: RouteEntry) -> routing::RouteEntry {
    routing::RouteEntry {
        dst: r.dst.to_string(),
        gw: r.gw.map(|g| g.to_string()),
        src: r.src.map(|g| g.to_string()),
        table: Some(r.table),
        metric: r.metric,
        scope: r.scope.and_then(|s| match s {
            0 => Some(routing::Scope::Global),
            200 => Some(routing::Scope::Site),
            253 => Some(routing::Scope::Link),
            254 => Some(routing::Scope::Host),
            _ => None,
        }),
        protocol: r.protocol,
    }
}

fn to_rule(r: &routing::Rule) -> Result<Rule, HostError> {
    Ok(Rule {
        family: match r.family {
            routing::Family::Ipv4 => rt::Family::V4,
            routing::Family::Ipv6 => rt::Family::V6,
        },
        from: r
            .from
            .as_deref()
            .map(|p| parse_net(p, "rule from"))
            .transpose()?,
        to: r
            .to
            .as_deref()
            .map(|p| parse_net(p, "rule to"))
            .transpose()?,
        table: r.table,
        priority: r.priority,
        iif: r.iif.clone(),
        oif: r.oif.clone(),
    })
}

fn from_rule(r: Rule) -> routing::Rule {
    routing::Rule {
        family: match r.family {
            rt::Family::V4 => routing::Family::Ipv4,
            rt::Family::V6 => routing::Family::Ipv6,
        },
        from: r.from.map(|p| p.to_string()),
        to: r.to.map(|p| p.to_string()),
        table: r.table,
        priority: r.priority,
        iif: r.iif,
        oif: r.oif,
    }
}

impl HostState {
    /// The addresses of the granted links: those prevResult gave them and
    /// those on them now.
    fn granted_addrs(&mut self) -> Vec<IpNet> {
        let mut out = self.grant.addresses.clone();
        for link in self.grant.links.clone() {
            if let Ok(addrs) = self.kernel.addr_list(Ns::Container, &link) {
                out.extend(addrs);
            }
        }
        out
    }

    /// Whether a route to `dst` may be written (or deleted) on `link` in
    /// `table` of `n`.
    pub(super) fn route_allowed(
        &mut self,
        n: Ns,
        link: &str,
        dst: &IpNet,
        table: u32,
        deleting: bool,
    ) -> Result<(), HostError> {
        nl::check(&self.grant, n, link)?;
        if n == Ns::Host {
            return rt::policy::check_host_route(
                &self.grant.host_created,
                &self.grant.pod_addresses,
                link,
                dst,
                table,
                deleting,
            );
        }
        if deleting || rt::policy::shared_table(table) {
            return Ok(());
        }
        let routes = self.kernel.table_routes(n, Some(table))?;
        let rules = self.kernel.rules(n)?;
        let addrs = self.granted_addrs();
        Granted {
            links: &self.grant.links,
            addrs: &addrs,
        }
        .check_route_table(table, &routes, &rules)
    }

    /// Whether `r` may be added (or deleted) in `n`.
    fn rule_allowed(&mut self, n: Ns, r: &Rule, deleting: bool) -> Result<(), HostError> {
        nl::check_namespace(&self.grant, n)?;
        if n == Ns::Host {
            return Err(HostError::Denied(
                "policy rules in the host netns are no plugin's to write".into(),
            ));
        }
        let routes = if rt::policy::shared_table(r.table) {
            Vec::new()
        } else {
            self.kernel.table_routes(n, Some(r.table))?
        };
        let rules = self.kernel.rules(n)?;
        let addrs = self.granted_addrs();
        Granted {
            links: &self.grant.links,
            addrs: &addrs,
        }
        .check_rule(r, &routes, &rules, deleting)
    }

    fn route_write(
        &mut self,
        n: netlink::Namespace,
        link: &str,
        op: RouteOp,
        r: &routing::RouteEntry,
    ) -> Result<(), WitError> {
        let n = ns(n);
        let out = to_entry(r).and_then(|e| {
            self.route_allowed(n, link, &e.dst, e.table, op == RouteOp::Del)?;
            self.kernel.route_write(n, link, op, &e)
        });
        out.map_err(|e| self.fail(&format!("routing.{}({})", op.call(), quoted(link)), e))
    }

    fn rule_write(
        &mut self,
        n: netlink::Namespace,
        op: RuleOp,
        r: &routing::Rule,
    ) -> Result<(), WitError> {
        let n = ns(n);
        let out = to_rule(r).and_then(|rule| {
            self.rule_allowed(n, &rule, op == RuleOp::Del)?;
            self.kernel.rule_write(n, op, &rule)
        });
        out.map_err(|e| self.fail(&format!("routing.{}", op.call()), e))
    }
}

impl routing::Host for HostState {
    fn route_list(
        &mut self,
        n: netlink::Namespace,
        link: String,
    ) -> Result<Vec<routing::RouteEntry>, WitError> {
        let n = ns(n);
        let out = nl::check(&self.grant, n, &link).and_then(|()| self.kernel.routes(n, &link));
        out.map(|v| v.into_iter().map(from_entry).collect())
            .map_err(|e| self.fail(&format!("routing.route-list({})", quoted(&link)), e))
    }

    fn route_add(
        &mut self,
        n: netlink::Namespace,
        link: String,
        r: routing::RouteEntry,
    ) -> Result<(), WitError> {
        self.route_write(n, &link, RouteOp::Add, &r)
    }

    fn route_replace(
        &mut self,
        n: netlink::Namespace,
        link: String,
        r: routing::RouteEntry,
    ) -> Result<(), WitError> {
        self.route_write(n, &link, RouteOp::Replace, &r)
    }

    fn route_del(
        &mut self,
        n: netlink::Namespace,
        link: String,
        r: routing::RouteEntry,
    ) -> Result<(), WitError> {
        self.route_write(n, &link, RouteOp::Del, &r)
    }

    fn rule_list(&mut self, n: netlink::Namespace) -> Result<Vec<routing::Rule>, WitError> {
        let n = ns(n);
        let out = nl::check_namespace(&self.grant, n).and_then(|()| self.kernel.rules(n));
        out.map(|v| v.into_iter().map(from_rule).collect())
            .map_err(|e| self.fail("routing.rule-list", e))
    }

    fn rule_add(&mut self, n: netlink::Namespace, r: routing::Rule) -> Result<(), WitError> {
        self.rule_write(n, RuleOp::Add, &r)
    }

    fn rule_del(&mut self, n: netlink::Namespace, r: routing::Rule) -> Result<(), WitError> {
        self.rule_write(n, RuleOp::Del, &r)
    }

    fn table_list(&mut self, n: netlink::Namespace) -> Result<Vec<u32>, WitError> {
        let n = ns(n);
        let out =
            nl::check_namespace(&self.grant, n).and_then(|()| self.kernel.table_routes(n, None));
        let mut tables: Vec<u32> = out
            .map_err(|e| self.fail("routing.table-list", e))?
            .into_iter()
            .map(|(_, r)| r.table)
            .collect();
        tables.sort_unstable();
        tables.dedup();
        Ok(tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{test_state as state, RecordingKernel};

    #[test]
    fn routing_checks_the_grant_before_the_backend() {
        use crate::bindings::multus::plugin::routing::Host as _;
        let k = RecordingKernel::default();
        let mut s = state(None, k.clone());
        s.grant.addresses = vec!["10.1.0.5/24".parse().unwrap()];
        let rule = |from: &str| routing::Rule {
            family: routing::Family::Ipv4,
            from: Some(from.into()),
            to: None,
            table: 100,
            priority: None,
            iif: None,
            oif: None,
        };
        s.rule_add(netlink::Namespace::Container, rule("10.1.0.5/32"))
            .unwrap();
        let e = s
            .rule_add(netlink::Namespace::Container, rule("10.2.0.9/32"))
            .unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("routing.rule-add"), "{}", e.msg);
        let e = s
            .rule_add(netlink::Namespace::Host, rule("10.1.0.5/32"))
            .unwrap_err();
        assert!(e.msg.contains("hostNetns"), "{}", e.msg);
        let entry = routing::RouteEntry {
            dst: "0.0.0.0/0".into(),
            gw: Some("10.1.0.1".into()),
            src: None,
            table: Some(100),
            metric: None,
            scope: None,
            protocol: None,
        };
        let add = routing::Host::route_add;
        add(
            &mut s,
            netlink::Namespace::Container,
            "net1".into(),
            entry.clone(),
        )
        .unwrap();
        assert!(add(&mut s, netlink::Namespace::Container, "eth0".into(), entry).is_err());
        let writes: Vec<String> = k
            .routing
            .ops
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.contains("-add "))
            .cloned()
            .collect();
        assert_eq!(
            writes,
            vec![
                "rule-add Container from 10.1.0.5/32 lookup 100",
                "route-add Container net1 0.0.0.0/0 via 10.1.0.1 table 100"
            ],
            "denied calls never reach the backend"
        );
        assert_eq!(s.denials.len(), 3);
    }
}
