//! Policy routing (`multus:plugin/routing`, WIT 0.1.1): routes in any table
//! with every attribute the kernel keeps, policy rules, and table usage.
//! The grant rules live in [`policy`], the kernel side in [`kernel`].

pub mod kernel;
pub mod policy;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

use crate::netlink::Ns;
use crate::HostError;

/// The kernel's `main` table, which a route without a table goes to.
pub const MAIN_TABLE: u32 = 254;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// A route as the kernel keeps it. `scope` and `protocol` are the kernel's
/// numbers (`rtm_scope`, `rtm_protocol`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub src: Option<IpAddr>,
    pub table: u32,
    pub metric: Option<u32>,
    pub scope: Option<u8>,
    pub protocol: Option<u8>,
}

/// A policy rule that looks a table up (`ip rule ... lookup N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub family: Family,
    pub from: Option<IpNet>,
    pub to: Option<IpNet>,
    pub table: u32,
    pub priority: Option<u32>,
    pub iif: Option<String>,
    pub oif: Option<String>,
}

impl Rule {
    /// True if `self` is what a delete of `query` removes: every field the
    /// query gives matches.
    pub fn matches(&self, query: &Rule) -> bool {
        self.family == query.family
            && self.from == query.from
            && self.to == query.to
            && self.table == query.table
            && query.priority.is_none_or(|p| self.priority == Some(p))
            && self.iif == query.iif
            && self.oif == query.oif
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOp {
    Add,
    Replace,
    Del,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOp {
    Add,
    Del,
}

impl RouteOp {
    /// The WIT call's name.
    pub fn call(self) -> &'static str {
        match self {
            RouteOp::Add => "route-add",
            RouteOp::Replace => "route-replace",
            RouteOp::Del => "route-del",
        }
    }
}

impl RuleOp {
    /// The WIT call's name.
    pub fn call(self) -> &'static str {
        match self {
            RuleOp::Add => "rule-add",
            RuleOp::Del => "rule-del",
        }
    }
}

/// A route of some table with the link it leaves through (`None`: no
/// output link, e.g. a blackhole).
pub type TableRoute = (Option<String>, RouteEntry);

pub trait RoutingBackend: Send {
    /// Routes out of `link`, every table.
    fn routes(&mut self, ns: Ns, link: &str) -> Result<Vec<RouteEntry>, HostError>;
    fn route_write(
        &mut self,
        ns: Ns,
        link: &str,
        op: RouteOp,
        r: &RouteEntry,
    ) -> Result<(), HostError>;
    fn rules(&mut self, ns: Ns) -> Result<Vec<Rule>, HostError>;
    fn rule_write(&mut self, ns: Ns, op: RuleOp, r: &Rule) -> Result<(), HostError>;
    /// The routes of `table` (every table when `None`), with their links.
    fn table_routes(&mut self, ns: Ns, table: Option<u32>) -> Result<Vec<TableRoute>, HostError>;
}

/// `dst [via gw] [src s] table t [metric m] [scope s] [proto p]`.
pub fn describe_route(r: &RouteEntry) -> String {
    let mut out = r.dst.to_string();
    if let Some(gw) = r.gw {
        out.push_str(&format!(" via {gw}"));
    }
    if let Some(s) = r.src {
        out.push_str(&format!(" src {s}"));
    }
    out.push_str(&format!(" table {}", r.table));
    if let Some(m) = r.metric {
        out.push_str(&format!(" metric {m}"));
    }
    if let Some(s) = r.scope {
        out.push_str(&format!(" scope {s}"));
    }
    if let Some(p) = r.protocol {
        out.push_str(&format!(" proto {p}"));
    }
    out
}

/// `[from p] [to p] [iif l] [oif l] lookup t [pref n]`, as `ip rule` prints.
pub fn describe_rule(r: &Rule) -> String {
    let mut out = format!(
        "{}from {}",
        if r.family == Family::V6 { "-6 " } else { "" },
        r.from.map_or("all".into(), |f| f.to_string())
    );
    if let Some(t) = r.to {
        out.push_str(&format!(" to {t}"));
    }
    if let Some(i) = &r.iif {
        out.push_str(&format!(" iif {i}"));
    }
    if let Some(o) = &r.oif {
        out.push_str(&format!(" oif {o}"));
    }
    out.push_str(&format!(" lookup {}", r.table));
    if let Some(p) = r.priority {
        out.push_str(&format!(" pref {p}"));
    }
    out
}

/// Records routing calls and answers from an empty namespace; changes
/// nothing.
#[derive(Clone, Default)]
pub struct RecordingRouting {
    pub ops: Arc<Mutex<Vec<String>>>,
}

impl RecordingRouting {
    fn record(&self, op: String) {
        self.ops.lock().expect("ops").push(op);
    }
}

impl RoutingBackend for RecordingRouting {
    fn routes(&mut self, ns: Ns, link: &str) -> Result<Vec<RouteEntry>, HostError> {
        self.record(format!("route-list {ns:?} {link}"));
        Ok(Vec::new())
    }
    fn route_write(
        &mut self,
        ns: Ns,
        link: &str,
        op: RouteOp,
        r: &RouteEntry,
    ) -> Result<(), HostError> {
        self.record(format!("{} {ns:?} {link} {}", op.call(), describe_route(r)));
        Ok(())
    }
    fn rules(&mut self, ns: Ns) -> Result<Vec<Rule>, HostError> {
        self.record(format!("rule-list {ns:?}"));
        Ok(Vec::new())
    }
    fn rule_write(&mut self, ns: Ns, op: RuleOp, r: &Rule) -> Result<(), HostError> {
        self.record(format!("{} {ns:?} {}", op.call(), describe_rule(r)));
        Ok(())
    }
    fn table_routes(&mut self, ns: Ns, table: Option<u32>) -> Result<Vec<TableRoute>, HostError> {
        match table {
            Some(t) => self.record(format!("table-routes {ns:?} {t}")),
            None => self.record(format!("table-list {ns:?}")),
        }
        Ok(Vec::new())
    }
}
