//! What `multusctl ipam slices` writes into a NodeSlicePool, decided from
//! a snapshot: which NADs cut their whereabouts range into node slices
//! (`node_slice_size`), and, for one pool, which node holds which slice.
//! Pure: the command reads and writes the objects.
//!
//! The list it writes is whereabouts' controller's: every slice of the
//! range, in order, `nodeName` empty on a free one. The whereabouts module
//! reads a node's slices from it, and takes a free one itself (a tested
//! patch) only for a node the controller has not seen yet.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde_json::{json, Value};

/// Slices one NodeSlicePool may list: 1024 entries are about 56 KiB,
/// which every ADD on the range reads, and what one NAD (anyone's who may
/// create one) can have this controller write (a /16 in /26 slices).
pub const MAX_SLICES: u128 = 1024;

/// A range cut into node slices, as one NAD's whereabouts IPAM names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// The NodeSlicePool: `network_name`, else the network's `name`.
    pub pool: String,
    pub range: IpNet,
    pub prefix: u8,
}

impl Network {
    pub fn slice_size(&self) -> String {
        format!("/{}", self.prefix)
    }

    fn count(&self) -> u128 {
        1u128 << (self.prefix - self.range.prefix_len())
    }

    /// The `index`th slice's CIDR.
    fn slice(&self, index: u128) -> String {
        let size_bits = u32::from(self.range.max_prefix_len() - self.prefix);
        let net = match self.range.network() {
            std::net::IpAddr::V4(a) => u128::from(u32::from(a)),
            std::net::IpAddr::V6(a) => u128::from(a),
        } + (index << size_bits);
        let addr: std::net::IpAddr = match self.range {
            IpNet::V4(_) => std::net::Ipv4Addr::from(net as u32).into(),
            IpNet::V6(_) => std::net::Ipv6Addr::from(net).into(),
        };
        IpNet::new(addr, self.prefix)
            .expect("prefix checked")
            .to_string()
    }

    /// Every slice's CIDR, in order.
    pub fn slices(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.count()).map(|i| self.slice(i))
    }
}

/// The whereabouts IPAM section of a NAD's config (a conf or a conflist)
/// that cuts its range into node slices, if one does: one at most (a NAD
/// is one network; more would let one NAD make any number of pools). An
/// error names the key.
pub fn networks(config: &Value) -> Result<Option<Network>, String> {
    let name = config["name"].as_str().unwrap_or_default();
    let plugins: Vec<&Value> = match config["plugins"].as_array() {
        Some(list) => list.iter().collect(),
        None => vec![config],
    };
    let mut out = Vec::new();
    for ipam in plugins.iter().map(|p| &p["ipam"]) {
        if ipam["type"] != "whereabouts" {
            continue;
        }
        let size = match &ipam["node_slice_size"] {
            Value::Null => continue,
            Value::String(s) if s.is_empty() => continue,
            Value::String(s) => s,
            other => return Err(format!("ipam.node_slice_size {other}: not a string")),
        };
        out.push(network(name, ipam, size)?);
    }
    match out.len() {
        0 | 1 => Ok(out.pop()),
        n => Err(format!(
            "{n} plugins cut ranges into node slices (ipam.node_slice_size); a NAD may have one"
        )),
    }
}

/// A Kubernetes object name (DNS-1123 subdomain): the pool's name goes
/// into API paths as it is.
fn object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
}

fn network(name: &str, ipam: &Value, size: &str) -> Result<Network, String> {
    let range = ipam["range"].as_str().unwrap_or_default();
    if range.is_empty() {
        return Err("ipam.node_slice_size: node slices cut ipam.range; it is not set".into());
    }
    // "a-b/cidr": the subnet is the CIDR.
    let cidr = match range.split_once('-') {
        Some((_, b)) if b.contains('/') => b,
        _ => range,
    };
    let range: IpNet = cidr
        .parse()
        .map_err(|e| format!("ipam.range {range:?}: {e}"))?;
    let range = range.trunc();
    let prefix: u8 = size
        .trim_start_matches('/')
        .parse()
        .map_err(|_| format!("ipam.node_slice_size {size:?}: not a prefix length like \"/28\""))?;
    // In u32: "/254" must not wrap a u8 sum past the check.
    if prefix <= range.prefix_len() || u32::from(prefix) + 2 > u32::from(range.max_prefix_len()) {
        return Err(format!(
            "ipam.node_slice_size {size:?}: a slice must be smaller than {range} and hold 4 addresses or more"
        ));
    }
    let pool = match ipam["network_name"].as_str() {
        Some(n) if !n.is_empty() => n,
        _ => name,
    };
    if pool.is_empty() {
        return Err("the network has no name (and ipam.network_name is not set)".into());
    }
    if !object_name(pool) {
        return Err(format!(
            "NodeSlicePool name {pool:?} (ipam.network_name, else the network's name) is not a Kubernetes object name"
        ));
    }
    let net = Network {
        pool: pool.to_string(),
        range,
        prefix,
    };
    if net.count() > MAX_SLICES {
        return Err(format!(
            "ipam.node_slice_size {size:?} cuts {range} into {} slices; one NodeSlicePool lists at most {MAX_SLICES}",
            net.count()
        ));
    }
    Ok(net)
}

/// What one pass does to one pool.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `status.allocations` as it should be: every slice, in order.
    pub allocations: Vec<(String, String)>,
    /// (node, slice) given to a node that held none.
    pub assigned: Vec<(String, String)>,
    /// (node, slice) taken back from a node that is gone.
    pub freed: Vec<(String, String)>,
    /// Entries that name no slice of the range, or a slice twice (the
    /// first one holds it, as the module reads the list): dropped.
    pub dropped: Vec<(String, String)>,
    /// Nodes left without a slice: every slice is held.
    pub unplaced: Vec<String>,
}

/// The allocations `status` should list so that every node of `nodes`
/// holds a slice: held slices stay with their nodes, the slices of nodes
/// that are gone are free again, and each node holding none gets the
/// first free one, preferring slices no IPPool holds addresses in
/// (`busy`: a lost node's pods', until `multusctl ipam reconcile` frees
/// them).
pub fn plan(
    net: &Network,
    status: &Value,
    nodes: &BTreeSet<String>,
    busy: &BTreeSet<String>,
) -> Plan {
    let mut plan = Plan::default();
    let slices: Vec<String> = net.slices().collect();
    let index: BTreeMap<&str, usize> = slices
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let mut holder: Vec<String> = vec![String::new(); slices.len()];
    let mut listed = vec![false; slices.len()];
    for (node, slice) in entries(status) {
        match index.get(slice.as_str()) {
            Some(&i) if !listed[i] => {
                listed[i] = true;
                if node.is_empty() || nodes.contains(&node) {
                    holder[i] = node;
                } else {
                    plan.freed.push((node, slice));
                }
            }
            _ => plan.dropped.push((node, slice)),
        }
    }
    let holding: BTreeSet<&str> = holder.iter().map(String::as_str).collect();
    let mut free: Vec<usize> = (0..slices.len())
        .filter(|&i| holder[i].is_empty())
        .collect();
    // Stable: index order within each group.
    free.sort_by_key(|&i| busy.contains(&slices[i]));
    let mut free = free.into_iter();
    let waiting: Vec<&String> = nodes
        .iter()
        .filter(|n| !holding.contains(n.as_str()))
        .collect();
    for node in waiting {
        match free.next() {
            Some(i) => {
                holder[i] = node.clone();
                plan.assigned.push((node.clone(), slices[i].clone()));
            }
            None => plan.unplaced.push(node.clone()),
        }
    }
    plan.allocations = holder.into_iter().zip(slices).collect();
    plan
}

/// `status.allocations` as (node, slice), in the list's order.
pub fn entries(status: &Value) -> Vec<(String, String)> {
    status["allocations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["nodeName"].as_str().unwrap_or_default().to_string(),
                a["sliceRange"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `status.allocations` as the object carries it.
pub fn status_of(allocations: &[(String, String)]) -> Value {
    let list: Vec<Value> = allocations
        .iter()
        .map(|(n, s)| json!({"nodeName": n, "sliceRange": s}))
        .collect();
    json!({ "allocations": list })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(range: &str, prefix: u8) -> Network {
        Network {
            pool: "p".into(),
            range: range.parse().unwrap(),
            prefix,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn listed(pairs: &[(&str, &str)]) -> Value {
        status_of(
            &pairs
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn networks_are_read_from_confs_and_conflists() {
        let conf = json!({"name": "n", "type": "macvlan",
            "ipam": {"type": "whereabouts", "range": "10.1.0.0/16", "node_slice_size": "/24"}});
        assert_eq!(
            networks(&conf).unwrap(),
            Some(net("10.1.0.0/16", 24).with_pool("n"))
        );
        let list = json!({"name": "l", "plugins": [
            {"type": "bridge", "ipam": {"type": "whereabouts", "range": "10.2.0.5-10.2.0.50/24",
                                         "node_slice_size": "28", "network_name": "blue"}},
            {"type": "tuning"}]});
        assert_eq!(
            networks(&list).unwrap(),
            Some(net("10.2.0.0/24", 28).with_pool("blue"))
        );
        let v6 = json!({"name": "six", "ipam": {"type": "whereabouts", "range": "fd00::/112", "node_slice_size": "/120"}});
        let n = networks(&v6).unwrap().unwrap();
        assert_eq!(n.slices().nth(1).unwrap(), "fd00::100/120");
        // Not sliced, or not whereabouts: nothing to do.
        for c in [
            json!({"name": "a", "ipam": {"type": "whereabouts", "range": "10.0.0.0/24"}}),
            json!({"name": "a", "ipam": {"type": "host-local", "node_slice_size": "/28"}}),
            json!({"name": "a", "ipam": {"type": "whereabouts", "range": "10.0.0.0/24", "node_slice_size": ""}}),
        ] {
            assert_eq!(networks(&c).unwrap(), None);
        }
    }

    #[test]
    fn bad_slice_configs_name_the_key() {
        let with = |range: &str, size: Value| {
            networks(&json!({"name": "n", "ipam": {"type": "whereabouts", "range": range, "node_slice_size": size}}))
                .unwrap_err()
        };
        assert!(with("10.0.0.0/24", json!("/24")).contains("smaller than 10.0.0.0/24"));
        assert!(with("10.0.0.0/24", json!("/31")).contains("4 addresses"));
        assert!(with("10.0.0.0/24", json!("x")).contains("node_slice_size \"x\""));
        assert!(with("10.0.0.0/24", json!(28)).contains("not a string"));
        assert!(with("nonsense", json!("/28")).contains("ipam.range \"nonsense\""));
        assert!(with("", json!("/28")).contains("ipam.range; it is not set"));
        assert!(with("10.0.0.0/8", json!("/30")).contains("4194304 slices"));
        assert!(with("10.0.0.0/16", json!("/28")).contains("at most 1024"));
        // A u8 sum must not wrap past the check.
        for size in ["/254", "/255"] {
            assert!(
                with("fd00::/120", json!(size)).contains("4 addresses"),
                "{size}"
            );
        }
        let named = |name: &str| {
            networks(
                &json!({"name": name, "ipam": {"type": "whereabouts", "range": "10.0.0.0/24", "node_slice_size": "/28"}}),
            )
        };
        let long = "a".repeat(254);
        for bad in [
            "a/status",
            "..",
            "x?y=1",
            "Upper",
            "a\nb",
            "-a",
            long.as_str(),
        ] {
            assert!(
                named(bad)
                    .unwrap_err()
                    .contains("not a Kubernetes object name"),
                "{bad:?}"
            );
        }
        assert!(named("blue.net-2").is_ok());
        // One sliced network per NAD.
        let two = json!({"name": "l", "plugins": [
            {"ipam": {"type": "whereabouts", "range": "10.2.0.0/24", "node_slice_size": "/28", "network_name": "p1"}},
            {"ipam": {"type": "whereabouts", "range": "10.3.0.0/24", "node_slice_size": "/28", "network_name": "p2"}}]});
        assert!(networks(&two).unwrap_err().contains("a NAD may have one"));
    }

    #[test]
    fn every_node_gets_a_slice_and_held_ones_stay() {
        let n = net("10.0.0.0/24", 26);
        // Empty pool: nodes in name order, slices in index order.
        let p = plan(&n, &json!({}), &set(&["b", "a"]), &set(&[]));
        assert_eq!(
            p.assigned,
            vec![
                ("a".into(), "10.0.0.0/26".into()),
                ("b".into(), "10.0.0.64/26".into())
            ]
        );
        assert_eq!(p.allocations.len(), 4);
        assert_eq!(p.allocations[3], (String::new(), "10.0.0.192/26".into()));
        // A node's slice stays its own; a new node takes a free one.
        let now = status_of(&p.allocations);
        let p = plan(&n, &now, &set(&["a", "b", "c"]), &set(&[]));
        assert_eq!(p.assigned, vec![("c".into(), "10.0.0.128/26".into())]);
        assert_eq!(p.allocations[0].0, "a");
        assert_eq!(p.allocations[1].0, "b");
        // Nothing to change: the same list again.
        let again = plan(
            &n,
            &status_of(&p.allocations),
            &set(&["a", "b", "c"]),
            &set(&[]),
        );
        assert_eq!(again.allocations, p.allocations);
        assert!(again.assigned.is_empty() && again.freed.is_empty());
    }

    #[test]
    fn gone_nodes_free_their_slices_and_busy_ones_go_last() {
        let n = net("10.0.0.0/24", 26);
        let now = listed(&[
            ("a", "10.0.0.0/26"),
            ("gone", "10.0.0.64/26"),
            ("", "10.0.0.128/26"),
        ]);
        // The lost node's slice still has addresses in its IPPool: the new
        // node gets an unused one (even one never listed) first.
        let p = plan(&n, &now, &set(&["a", "new"]), &set(&["10.0.0.64/26"]));
        assert_eq!(p.freed, vec![("gone".into(), "10.0.0.64/26".into())]);
        assert_eq!(p.assigned, vec![("new".into(), "10.0.0.128/26".into())]);
        assert_eq!(p.allocations[1].0, "");
        // Only busy ones left: they are given out, not refused.
        let full = listed(&[
            ("a", "10.0.0.0/26"),
            ("b", "10.0.0.64/26"),
            ("c", "10.0.0.128/26"),
        ]);
        let p = plan(
            &n,
            &full,
            &set(&["a", "b", "c", "d"]),
            &set(&["10.0.0.192/26"]),
        );
        assert_eq!(p.assigned, vec![("d".into(), "10.0.0.192/26".into())]);
    }

    #[test]
    fn a_full_range_leaves_nodes_unplaced_and_junk_is_dropped() {
        let n = net("10.0.0.0/25", 26);
        let now = listed(&[
            ("a", "10.0.0.0/26"),
            ("b", "10.0.0.0/26"),
            ("c", "192.168.0.0/26"),
            ("c", "10.0.0.64/26"),
        ]);
        let p = plan(&n, &now, &set(&["a", "b", "c", "d"]), &set(&[]));
        // The first entry of a slice holds it, as the module reads it.
        assert_eq!(
            p.dropped,
            vec![
                ("b".into(), "10.0.0.0/26".into()),
                ("c".into(), "192.168.0.0/26".into())
            ]
        );
        assert_eq!(
            p.allocations,
            vec![
                ("a".into(), "10.0.0.0/26".into()),
                ("c".into(), "10.0.0.64/26".into())
            ]
        );
        assert_eq!(p.unplaced, vec!["b".to_string(), "d".to_string()]);
    }

    impl Network {
        fn with_pool(mut self, pool: &str) -> Self {
            self.pool = pool.into();
            self
        }
    }
}
