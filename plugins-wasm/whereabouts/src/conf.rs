//! The whereabouts IPAM config (`ipam` of the network), as whereabouts reads
//! it, after the host merged its flat-file defaults.

use std::net::IpAddr;

use multus_plugin_sdk::conf::{ConfDns, ConfRoute, NetConf};
use multus_plugin_sdk::ip::{bits, from_u128, parse_ip, to_u128, Cidr};
use multus_plugin_sdk::{debug, invalid, CniError};
use serde::Deserialize;
use serde_json::Value;

/// whereabouts' keys this plugin reads; the rest are listed in [`IGNORED`].
const KNOWN: &[&str] = &[
    "type",
    "range",
    "range_start",
    "range_end",
    "exclude",
    "ipRanges",
    "gateway",
    "routes",
    "dns",
    "addresses",
    "network_name",
    "enable_overlapping_ranges",
    "node_slice_size",
    "configuration_path",
    "kubernetes",
    "datastore",
];

/// whereabouts-only keys that mean nothing here (no leader election, no
/// log file, no cron in the plugin): accepted, ignored, logged.
const IGNORED: &[&str] = &[
    "leader_lease_duration",
    "leader_renew_deadline",
    "leader_retry_period",
    "sleep_for_race",
    "log_file",
    "log_level",
    "reconciler_cron_expression",
    "etcd_host",
    "etcd_username",
    "etcd_password",
    "etcd_key_file",
    "etcd_cert_file",
    "etcd_ca_cert_file",
    "name",
    "podName",
    "podNamespace",
];

/// One range: its subnet, the first and last usable offsets from the
/// subnet's network address, and the excluded subnets.
#[derive(Debug, Clone)]
pub struct IpRange {
    pub subnet: Cidr,
    pub first: u128,
    pub last: u128,
    pub exclude: Vec<Cidr>,
}

impl IpRange {
    /// "10.1.0.0/24", as `spec.range` of the pool.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet.network(), self.subnet.prefix)
    }

    pub fn ip(&self, offset: u128) -> IpAddr {
        from_u128(to_u128(self.subnet.network()) + offset, self.subnet.addr)
    }

    /// The excluded offsets as inclusive intervals within the range.
    pub fn excluded(&self) -> Vec<(u128, u128)> {
        self.exclude
            .iter()
            .filter(|c| c.addr.is_ipv4() == self.subnet.addr.is_ipv4())
            .map(|c| {
                let lo = to_u128(c.network()).max(to_u128(self.subnet.network()));
                let hi = to_u128(c.last()).min(to_u128(self.subnet.last()));
                (
                    lo.saturating_sub(to_u128(self.subnet.network())),
                    hi.saturating_sub(to_u128(self.subnet.network())),
                )
            })
            .collect()
    }
}

#[derive(Deserialize, Default)]
struct RangeKeys {
    #[serde(default)]
    range: String,
    #[serde(default)]
    range_start: Option<String>,
    #[serde(default)]
    range_end: Option<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

#[derive(Deserialize)]
struct StaticAddress {
    address: String,
    #[serde(default)]
    gateway: Option<String>,
}

pub struct Conf {
    pub ranges: Vec<IpRange>,
    pub gateway: Option<IpAddr>,
    pub routes: Vec<ConfRoute>,
    pub dns: Option<ConfDns>,
    /// Static addresses appended to the result.
    pub addresses: Vec<(Cidr, Option<IpAddr>)>,
    pub network_name: String,
    pub overlapping: bool,
    /// `node_slice_size` as a prefix length: each node allocates in slices
    /// of the range it claimed.
    pub slice_prefix: Option<u8>,
    /// The network's name (the NodeSlicePool's when `network_name` is unset).
    pub name: String,
}

fn key<T: serde::de::DeserializeOwned>(ipam: &Value, k: &str) -> Result<Option<T>, CniError> {
    match ipam.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| invalid(format!("whereabouts: ipam.{k}: {e}"))),
    }
}

fn range(keys: &RangeKeys, at: &str) -> Result<IpRange, CniError> {
    let bad = |e: String| invalid(format!("whereabouts: {at}: {e}"));
    // "a-b/cidr": the range's first and last address with the subnet.
    let (subnet, mut start, mut end) = match keys.range.split_once('-') {
        Some((a, b)) if b.contains('/') => {
            let first = parse_ip(a).map_err(bad)?;
            let c = Cidr::parse(b).map_err(bad)?;
            (c, Some(first), Some(c.addr))
        }
        _ => (Cidr::parse(&keys.range).map_err(bad)?, None, None),
    };
    if let Some(s) = &keys.range_start {
        start = Some(parse_ip(s).map_err(|e| bad(format!("range_start: {e}")))?);
    }
    if let Some(e) = &keys.range_end {
        end = Some(parse_ip(e).map_err(|e| bad(format!("range_end: {e}")))?);
    }
    let host_bits = bits(subnet.addr) - subnet.prefix;
    if host_bits < 2 {
        return Err(bad(format!(
            "{:?} is too small: the mask must leave 2 or more host bits",
            keys.range
        )));
    }
    let net = to_u128(subnet.network());
    // The network and the all-ones address are never handed out.
    let (mut first, mut last) = (1u128, to_u128(subnet.last()) - net - 1);
    for (what, ip) in [("range_start", start), ("range_end", end)] {
        let Some(ip) = ip else { continue };
        if !subnet.contains(ip) {
            return Err(bad(format!("{what} {ip} is outside {}", keys.range)));
        }
        let off = to_u128(ip) - net;
        if what == "range_start" {
            first = first.max(off);
        } else {
            last = last.min(off);
        }
    }
    if first > last {
        return Err(bad("range_start is after range_end".into()));
    }
    let exclude = keys
        .exclude
        .iter()
        .map(|e| Cidr::parse(e).map_err(|m| bad(format!("exclude: {m}"))))
        .collect::<Result<_, _>>()?;
    Ok(IpRange {
        subnet: Cidr {
            addr: subnet.network(),
            prefix: subnet.prefix,
        },
        first,
        last,
        exclude,
    })
}

/// "/28" or "28": the slice size, which must cut the (single) range into
/// slices of at least 4 addresses.
fn slice_prefix(s: &str, ranges: &[IpRange]) -> Result<u8, CniError> {
    let bad = |m: String| invalid(format!("whereabouts: ipam.node_slice_size {s:?}: {m}"));
    let p: u8 = s
        .trim_start_matches('/')
        .parse()
        .map_err(|_| bad("not a prefix length like \"/28\"".into()))?;
    let [range] = ranges else {
        return Err(bad(
            "node slices cut one range; give ipam.range alone".into()
        ));
    };
    // In u32: "/254" must not wrap a u8 sum past the check.
    if p <= range.subnet.prefix || u32::from(p) + 2 > u32::from(bits(range.subnet.addr)) {
        return Err(bad(format!(
            "a slice must be smaller than {} and hold 4 addresses or more",
            range.cidr()
        )));
    }
    Ok(p)
}

impl IpRange {
    /// The `index`th slice of this range with prefix `prefix`, as a range
    /// of its own (its network and last address excluded, the range's
    /// excludes kept), or `None` past the end.
    pub fn slice(&self, prefix: u8, index: u128) -> Option<IpRange> {
        let size = 1u128 << (bits(self.subnet.addr) - prefix);
        let count = 1u128 << (prefix - self.subnet.prefix);
        (index < count).then(|| IpRange {
            subnet: Cidr {
                addr: from_u128(
                    to_u128(self.subnet.network()) + index * size,
                    self.subnet.addr,
                ),
                prefix,
            },
            first: 1,
            last: size - 2,
            exclude: self.exclude.clone(),
        })
    }
}

impl Conf {
    pub fn load(netconf: &NetConf) -> Result<Self, CniError> {
        let ipam = netconf
            .raw
            .get("ipam")
            .filter(|v| v.is_object())
            .ok_or_else(|| invalid("whereabouts: no ipam object in the config"))?;
        for k in ipam
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
        {
            if IGNORED.contains(&k) {
                debug(&format!(
                    "whereabouts: ipam.{k} means nothing here; ignored"
                ));
            } else if !KNOWN.contains(&k) {
                debug(&format!("whereabouts: unknown key ipam.{k}; ignored"));
            }
        }
        if let Some(d) = key::<String>(ipam, "datastore")? {
            if d != "kubernetes" {
                return Err(invalid(format!(
                    "whereabouts: ipam.datastore {d:?}: only \"kubernetes\" is supported"
                )));
            }
        }
        let mut ranges = Vec::new();
        let top: RangeKeys = serde_json::from_value(ipam.clone()).unwrap_or_default();
        if !top.range.is_empty() {
            ranges.push(range(&top, "ipam.range")?);
        }
        for (i, r) in key::<Vec<RangeKeys>>(ipam, "ipRanges")?
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            ranges.push(range(r, &format!("ipam.ipRanges[{i}]"))?);
        }
        if ranges.is_empty() {
            return Err(invalid(
                "whereabouts: give ipam.range or ipam.ipRanges (no range to allocate from)",
            ));
        }
        let gateway = key::<String>(ipam, "gateway")?
            .filter(|g| !g.is_empty())
            .map(|g| parse_ip(&g).map_err(|e| invalid(format!("whereabouts: ipam.gateway: {e}"))))
            .transpose()?;
        let addresses = key::<Vec<StaticAddress>>(ipam, "addresses")?
            .unwrap_or_default()
            .iter()
            .map(|a| {
                let bad = |e: String| invalid(format!("whereabouts: ipam.addresses: {e}"));
                Ok((
                    Cidr::parse(&a.address).map_err(bad)?,
                    a.gateway
                        .as_deref()
                        .map(parse_ip)
                        .transpose()
                        .map_err(bad)?,
                ))
            })
            .collect::<Result<_, CniError>>()?;
        let slice_prefix = key::<String>(ipam, "node_slice_size")?
            .filter(|s| !s.is_empty())
            .map(|s| slice_prefix(&s, &ranges))
            .transpose()?;
        Ok(Self {
            slice_prefix,
            name: netconf.name.clone(),
            ranges,
            gateway,
            routes: key(ipam, "routes")?.unwrap_or_default(),
            dns: key(ipam, "dns")?,
            addresses,
            network_name: key(ipam, "network_name")?.unwrap_or_default(),
            overlapping: key(ipam, "enable_overlapping_ranges")?.unwrap_or(true),
        })
    }
}
