//! The reference host-local config: `ranges` (range sets, dual-stack), the
//! legacy single-range keys, routes, and the requested IPs from CNI_ARGS,
//! `args.cni.ips` and `runtimeConfig.ips`.

use std::net::IpAddr;

use multus_plugin_sdk::conf::{ConfRoute, NetConf};
use multus_plugin_sdk::ip::{next, parse_ip, prev, Cidr};
use multus_plugin_sdk::{code, error, invalid, CniError, Request};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RangeConf {
    #[serde(default)]
    pub subnet: String,
    #[serde(default, rename = "rangeStart")]
    pub range_start: Option<String>,
    #[serde(default, rename = "rangeEnd")]
    pub range_end: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// A canonical range: every address from `start` to `end`, minus `gateway`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: Cidr,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

impl Range {
    fn canonical(c: &RangeConf) -> Result<Self, String> {
        let subnet = Cidr::parse(&c.subnet)?;
        let bits = if subnet.addr.is_ipv4() { 32 } else { 128 };
        if subnet.prefix > bits - 2 {
            return Err(format!("Network {} too small to allocate from", c.subnet));
        }
        if subnet.network() != subnet.addr {
            return Err(format!(
                "network has host bits set. For a subnet mask of length {} the network address is {}",
                subnet.prefix,
                subnet.network()
            ));
        }
        let inside = |s: &Option<String>, what: &str| -> Result<Option<IpAddr>, String> {
            let Some(s) = s.as_deref().filter(|s| !s.is_empty()) else {
                return Ok(None);
            };
            let ip = parse_ip(s)?;
            if !subnet.contains(ip) {
                return Err(format!("{what} {ip} not in network {subnet}"));
            }
            Ok(Some(ip))
        };
        let gateway = match c.gateway.as_deref().filter(|s| !s.is_empty()) {
            Some(g) => parse_ip(g)?,
            None => next(subnet.addr),
        };
        let start = inside(&c.range_start, "RangeStart")?.unwrap_or_else(|| next(subnet.addr));
        // IPv4's last address is the broadcast address; IPv6 has none.
        let last = if subnet.addr.is_ipv4() {
            prev(subnet.last())
        } else {
            subnet.last()
        };
        let end = inside(&c.range_end, "RangeEnd")?.unwrap_or(last);
        Ok(Self {
            subnet,
            start,
            end,
            gateway,
        })
    }

    /// In the subnet and between start and end (inclusive).
    pub fn contains(&self, ip: IpAddr) -> bool {
        use multus_plugin_sdk::ip::to_u128;
        self.subnet.contains(ip)
            && to_u128(ip) >= to_u128(self.start)
            && to_u128(ip) <= to_u128(self.end)
    }

    fn overlaps(&self, o: &Range) -> bool {
        self.subnet.addr.is_ipv4() == o.subnet.addr.is_ipv4()
            && (self.contains(o.start)
                || self.contains(o.end)
                || o.contains(self.start)
                || o.contains(self.end))
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

pub type RangeSet = Vec<Range>;

pub fn set_string(set: &RangeSet) -> String {
    set.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub struct IpamConf {
    pub ranges: Vec<RangeSet>,
    pub routes: Vec<ConfRoute>,
    pub requested: Vec<IpAddr>,
}

#[derive(Deserialize)]
struct Ipam {
    #[serde(default)]
    ranges: Vec<Vec<RangeConf>>,
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default, rename = "rangeStart")]
    range_start: Option<String>,
    #[serde(default, rename = "rangeEnd")]
    range_end: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    routes: Vec<ConfRoute>,
    #[serde(default, rename = "resolvConf")]
    resolv_conf: Option<String>,
}

impl IpamConf {
    pub fn load(req: &Request) -> Result<Self, CniError> {
        let conf = NetConf::parse(req)?;
        let ipam: Ipam = conf
            .get("ipam")?
            .ok_or_else(|| invalid("IPAM config missing 'ipam' key"))?;
        if ipam.resolv_conf.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(error(
                code::UNSUPPORTED_FIELD,
                "ipam.resolvConf: not supported by the wasm host-local (it has no filesystem access); set dns in the result another way",
            ));
        }
        let mut sets = Vec::new();
        if let Some(subnet) = ipam.subnet.filter(|s| !s.is_empty()) {
            sets.push(vec![RangeConf {
                subnet,
                range_start: ipam.range_start,
                range_end: ipam.range_end,
                gateway: ipam.gateway,
            }]);
        }
        sets.extend(ipam.ranges);
        if sets.is_empty() {
            return Err(invalid("no IP ranges specified"));
        }
        let mut ranges: Vec<RangeSet> = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            if set.is_empty() {
                return Err(invalid(format!("ipam.ranges[{i}]: no IP ranges specified")));
            }
            let rs: RangeSet = set
                .iter()
                .map(|r| {
                    Range::canonical(r).map_err(|m| invalid(format!("invalid range set {i}: {m}")))
                })
                .collect::<Result<_, _>>()?;
            let fam = rs[0].subnet.addr.is_ipv4();
            if rs.iter().any(|r| r.subnet.addr.is_ipv4() != fam) {
                return Err(invalid(format!(
                    "invalid range set {i}: mixed address families"
                )));
            }
            for (a, ra) in rs.iter().enumerate() {
                for rb in &rs[a + 1..] {
                    if ra.overlaps(rb) {
                        return Err(invalid(format!(
                            "invalid range set {i}: subnets {} and {} overlap",
                            ra.subnet, rb.subnet
                        )));
                    }
                }
            }
            for (j, other) in ranges.iter().enumerate() {
                if other.iter().any(|o| rs.iter().any(|r| r.overlaps(o))) {
                    return Err(invalid(format!("range set {i} overlaps with {j}")));
                }
            }
            ranges.push(rs);
        }
        let v4 = ranges.iter().filter(|s| s[0].subnet.addr.is_ipv4()).count();
        let legacy = conf.cni_version.starts_with("0.1.")
            || conf.cni_version.starts_with("0.2.")
            || conf.cni_version.is_empty();
        if legacy && (v4 > 1 || ranges.len() - v4 > 1) {
            return Err(invalid(format!(
                "CNI version {} does not support more than 1 address per family",
                conf.cni_version
            )));
        }
        let mut requested = Vec::new();
        if let Some(ips) = req.arg("IP") {
            for s in ips.split(',').filter(|s| !s.is_empty()) {
                requested.push(
                    parse_ip(s)
                        .map_err(|m| error(code::INVALID_ENV, format!("CNI_ARGS IP: {m}")))?,
                );
            }
        }
        for src in [
            conf.cni_arg::<Vec<String>>("ips")?,
            conf.runtime::<Vec<String>>("ips")?,
        ]
        .into_iter()
        .flatten()
        {
            for s in src {
                requested.push(parse_ip(&s).map_err(|m| invalid(format!("requested IP: {m}")))?);
            }
        }
        requested.dedup();
        Ok(Self {
            ranges,
            routes: ipam.routes,
            requested,
        })
    }
}
