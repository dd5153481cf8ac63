//! whereabouts' on-cluster objects, exactly as whereabouts writes them:
//! `IPPool` (allocations keyed by the decimal offset from the range's
//! network address) and `OverlappingRangeIPReservation` (one per IP), with
//! whereabouts' names.

use std::collections::BTreeMap;
use std::net::IpAddr;

use multus_plugin_sdk::cluster::Kind;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::conf::IpRange;

const GROUP: &str = "whereabouts.cni.cncf.io";
const VERSION: &str = "v1alpha1";

/// The label naming a reservation's attachment (a hash of its container
/// and interface), so a DEL lists its own reservations, not every one of
/// the namespace. Ours, not whereabouts': whereabouts neither writes nor
/// reads it.
pub const OWNER_LABEL: &str = "multus-wasm.io/owner";

/// FNV-1a, 64 bits, of the parts joined by NULs: a spread of names, not a
/// digest (whatever it maps together is told apart by what it hashed).
pub fn fnv1a(parts: &[&str]) -> u64 {
    parts
        .iter()
        .enumerate()
        .flat_map(|(i, p)| (i > 0).then_some(0).into_iter().chain(p.bytes()))
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

pub fn pools() -> Kind {
    kind("ippools")
}

pub fn reservations() -> Kind {
    kind("overlappingrangeipreservations")
}

fn kind(plural: &str) -> Kind {
    Kind {
        group: GROUP.into(),
        version: VERSION.into(),
        plural: plural.into(),
    }
}

/// `:` and `/` become `-` (a trailing `:` gets a `0` first), as whereabouts
/// makes a range or an IP into an object name.
pub fn normalize(s: &str) -> String {
    let s = if s.ends_with(':') {
        format!("{s}0")
    } else {
        s.to_string()
    };
    s.replace([':', '/'], "-")
}

fn named(network_name: &str, s: String) -> String {
    if network_name.is_empty() {
        s
    } else {
        format!("{network_name}-{s}")
    }
}

pub fn pool_name(network_name: &str, range: &IpRange) -> String {
    named(network_name, normalize(&range.cidr()))
}

pub fn reservation_name(network_name: &str, ip: IpAddr) -> String {
    named(network_name, normalize(&ip.to_string()))
}

/// One entry of `spec.allocations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub id: String,
    pub podref: String,
    #[serde(default)]
    pub ifname: String,
}

/// An IPPool as read: the whole object (kept, so fields we do not know
/// survive a replace) and its allocations by offset.
pub struct Pool {
    object: Value,
    pub allocations: BTreeMap<u128, Allocation>,
}

impl Pool {
    /// A new, empty pool for `range`.
    pub fn new_object(name: &str, range: &IpRange) -> Value {
        json!({"apiVersion": format!("{GROUP}/{VERSION}"), "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"range": range.cidr(), "allocations": {}}})
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let object: Value = serde_json::from_str(text).map_err(|e| format!("IPPool: {e}"))?;
        let mut allocations = BTreeMap::new();
        let entries = object
            .pointer("/spec/allocations")
            .and_then(Value::as_object);
        for (k, v) in entries.into_iter().flatten() {
            let offset: u128 = k
                .parse()
                .map_err(|_| format!("IPPool: allocation key {k:?} is not an offset"))?;
            let a: Allocation = serde_json::from_value(v.clone())
                .map_err(|e| format!("IPPool: allocation {k}: {e}"))?;
            allocations.insert(offset, a);
        }
        Ok(Self {
            object,
            allocations,
        })
    }

    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// The object to replace with: as read (resourceVersion included), with
    /// the allocations as they are now.
    pub fn to_json(&self) -> String {
        let mut o = self.object.clone();
        o["spec"]["allocations"] = self
            .allocations
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::to_value(v).expect("serializes")))
            .collect::<serde_json::Map<_, _>>()
            .into();
        o.to_string()
    }

    /// The offset already held by this attachment, if any.
    pub fn held_by(&self, owner: &Owner) -> Option<u128> {
        self.allocations
            .iter()
            .find(|(_, a)| owner.is(a))
            .map(|(o, _)| *o)
    }
}

/// Who an allocation is for. The same pod and interface get their address
/// back; without a pod name, the same container and interface.
pub struct Owner {
    pub container_id: String,
    pub podref: String,
    pub ifname: String,
}

impl Owner {
    pub fn is(&self, a: &Allocation) -> bool {
        a.ifname == self.ifname
            && if self.podref.is_empty() {
                a.id == self.container_id
            } else {
                a.podref == self.podref
            }
    }

    pub fn allocation(&self) -> Allocation {
        Allocation {
            id: self.container_id.clone(),
            podref: self.podref.clone(),
            ifname: self.ifname.clone(),
        }
    }

    /// The value of [`OWNER_LABEL`] on this attachment's reservations.
    pub fn label(&self) -> String {
        format!("{:016x}", fnv1a(&[&self.container_id, &self.ifname]))
    }

    pub fn reservation(&self, name: &str) -> Value {
        json!({"apiVersion": format!("{GROUP}/{VERSION}"), "kind": "OverlappingRangeIPReservation",
            "metadata": {"name": name, "labels": {OWNER_LABEL: self.label()}},
            "spec": {"containerid": self.container_id, "podref": self.podref, "ifname": self.ifname}})
    }

    /// The reservation object `text`, made this container's, if it is
    /// this attachment's under another container (the pod's earlier
    /// sandbox): left as it was, that container's DEL would find it by its
    /// label and delete it under the address this one now holds.
    pub fn take_over(&self, text: &str) -> Option<Value> {
        let mut v: Value = serde_json::from_str(text).ok()?;
        let current = v["spec"]["containerid"] == self.container_id.as_str()
            && v["metadata"]["labels"][OWNER_LABEL] == self.label().as_str();
        if current {
            return None;
        }
        v["spec"]["containerid"] = self.container_id.clone().into();
        let labels = &mut v["metadata"]["labels"];
        if !labels.is_object() {
            *labels = json!({});
        }
        labels[OWNER_LABEL] = self.label().into();
        Some(v)
    }

    /// True if the reservation object `text` is this attachment's.
    pub fn holds(&self, text: &str) -> bool {
        let v: Value = serde_json::from_str(text).unwrap_or_default();
        let spec = &v["spec"];
        spec["ifname"].as_str().unwrap_or_default() == self.ifname
            && if self.podref.is_empty() {
                spec["containerid"] == self.container_id.as_str()
            } else {
                spec["podref"] == self.podref.as_str()
            }
    }
}

/// The lowest offset of `range` that is neither excluded nor `taken`.
pub fn lowest_free(range: &IpRange, taken: impl Fn(u128) -> bool) -> Option<u128> {
    let excluded = range.excluded();
    let mut candidate = range.first;
    while candidate <= range.last {
        if let Some((_, hi)) = excluded
            .iter()
            .find(|(lo, hi)| (*lo..=*hi).contains(&candidate))
        {
            candidate = hi.checked_add(1)?;
            continue;
        }
        if !taken(candidate) {
            return Some(candidate);
        }
        candidate += 1;
    }
    None
}
