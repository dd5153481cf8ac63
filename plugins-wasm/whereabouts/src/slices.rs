//! Node slices (`node_slice_size`): the range is cut into slices, each node
//! claims slices in the range's `NodeSlicePool` (whereabouts' object: name =
//! `network_name`, else the network's name; `status.allocations` lists
//! `{nodeName, sliceRange}`) and allocates only inside its own slices, each
//! its own IPPool (`<node>-<slice>`, or `<network_name>-<node>-<slice>`).
//! Nodes never write the same pool, so they never contend; a node whose
//! slices are full claims another.
//!
//! A slot whose node is empty is free (whereabouts' own controller lists
//! every slice, unassigned ones so): a node takes one with a JSON patch
//! whose `test` ops (that slot still free) are its only guard, starting at
//! a slot of its own (its name hashed), so nodes taking slots at once
//! rarely meet. A slice not listed at all is appended by a replace of the
//! list guarded by its resourceVersion. Tried and dropped: appending with
//! an unguarded patch (a slice its first entry's): 100 nodes at once on a
//! real API server left half their ADDs without an answer in 10 s, as the
//! API server retries every patch of one object against every other one
//! (O(N²) attempts, 20-26 CPU-seconds), where guarded replaces back off
//! between tries (13 s, no failure).

use std::collections::HashSet;
use std::net::IpAddr;

use multus_plugin_sdk::cluster::{self, ClusterError, Kind};
use multus_plugin_sdk::ip::Cidr;
use multus_plugin_sdk::{code, error, CniError};
use serde_json::{json, Value};

use crate::cluster_error;
use crate::conf::{Conf, IpRange};

fn kind() -> Kind {
    Kind {
        group: "whereabouts.cni.cncf.io".into(),
        version: "v1alpha1".into(),
        plural: "nodeslicepools".into(),
    }
}

fn name(conf: &Conf) -> &str {
    if conf.network_name.is_empty() {
        &conf.name
    } else {
        &conf.network_name
    }
}

/// The IPPool of one of `node`'s slices.
pub fn pool_name(conf: &Conf, node: &str, slice: &IpRange) -> String {
    let range = crate::pool::normalize(&slice.cidr());
    if conf.network_name.is_empty() {
        format!("{node}-{range}")
    } else {
        format!("{}-{node}-{range}", conf.network_name)
    }
}

/// The entries as (node, slice CIDR), in the list's order.
fn entries(object: &Value) -> Vec<(String, String)> {
    object["status"]["allocations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some((
                a["nodeName"].as_str().unwrap_or_default().to_string(),
                a["sliceRange"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Each listed slice's holder, its first entry's node (empty: a free
/// slot), as (index of that entry, node, slice), in the list's order.
fn holders(entries: &[(String, String)]) -> Vec<(usize, &str, &str)> {
    let mut seen = HashSet::new();
    entries
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| seen.insert(s.as_str()))
        .map(|(i, (n, s))| (i, n.as_str(), s.as_str()))
        .collect()
}

/// The slice of `range` a listed CIDR names, if it is one.
fn slice_of(range: &IpRange, prefix: u8, cidr: &str) -> Option<IpRange> {
    let c = Cidr::parse(cidr).ok()?;
    containing(range, prefix, c.network()).filter(|s| s.cidr() == cidr)
}

/// The slices `node` holds, in the order they are listed.
fn held(object: &Value, node: &str, range: &IpRange, prefix: u8) -> Vec<IpRange> {
    holders(&entries(object))
        .into_iter()
        .filter(|(_, n, _)| *n == node)
        .filter_map(|(_, _, s)| slice_of(range, prefix, s))
        .collect()
}

fn parse(conf: &Conf, text: &str) -> Result<Value, CniError> {
    serde_json::from_str(text)
        .map_err(|e| error(code::INTERNAL, format!("NodeSlicePool {}: {e}", name(conf))))
}

/// Whether the pool's spec cuts the range as this network does (a spec
/// left out cuts nothing against it). A pool of the same name cut another
/// way is another network's (`network_name` is one cluster-wide name
/// space): slices of two cuts would overlap.
fn same_cut(object: &Value, range: &IpRange, prefix: u8) -> bool {
    let spec_range = object["spec"]["range"].as_str();
    let spec_size = object["spec"]["sliceSize"].as_str();
    let range_ok = spec_range.is_none_or(|r| {
        let r = r.rsplit('-').next().unwrap_or(r);
        Cidr::parse(r)
            .is_ok_and(|c| c.prefix == range.subnet.prefix && c.network() == range.subnet.network())
    });
    let size_ok = spec_size.is_none_or(|s| s.trim_start_matches('/').parse::<u8>() == Ok(prefix));
    range_ok && size_ok
}

fn other_cut(conf: &Conf, object: &Value, range: &IpRange, prefix: u8) -> CniError {
    error(
        code::INVALID_CONFIG,
        format!(
            "whereabouts: NodeSlicePool {} cuts {} in {} slices, this network {} in /{prefix} slices: give it its own ipam.network_name",
            name(conf),
            object["spec"]["range"].as_str().unwrap_or_default(),
            object["spec"]["sliceSize"].as_str().unwrap_or_default(),
            range.cidr()
        ),
    )
}

/// The NodeSlicePool as the API server has it: from its watch cache
/// (`cached`: no etcd read, 56 KiB at 1024 slices, but possibly a moment
/// behind) or live.
fn get(conf: &Conf, cached: bool) -> Result<String, ClusterError> {
    crate::patiently("reading the NodeSlicePool", || {
        if cached {
            cluster::get_cached(&kind(), name(conf))
        } else {
            cluster::get(&kind(), name(conf))
        }
    })
}

/// The NodeSlicePool, created (with no entries) if there is none. Only the
/// first read may be `cached`: after a create, the cache may not have it.
fn read(conf: &Conf, range: &IpRange, prefix: u8, cached: bool) -> Result<Value, CniError> {
    let n = name(conf);
    let mut cached = cached;
    loop {
        let from_cache = std::mem::take(&mut cached);
        match get(conf, from_cache) {
            Ok(text) => {
                let object = parse(conf, &text)?;
                if !same_cut(&object, range, prefix) {
                    // The cache may still hold a pool of the name that was
                    // replaced: only a live read refuses the network.
                    if from_cache {
                        continue;
                    }
                    return Err(other_cut(conf, &object, range, prefix));
                }
                return Ok(object);
            }
            Err(ClusterError::NotFound(_)) => {}
            Err(e) => return Err(cluster_error(&format!("reading NodeSlicePool {n}"), e)),
        }
        let object = json!({"apiVersion": "whereabouts.cni.cncf.io/v1alpha1", "kind": "NodeSlicePool",
            "metadata": {"name": n},
            "spec": {"range": range.cidr(), "sliceSize": format!("/{prefix}")}});
        match cluster::create(&kind(), &object.to_string()) {
            Ok(_) | Err(ClusterError::Conflict(_)) => continue,
            Err(e) => return Err(cluster_error(&format!("creating NodeSlicePool {n}"), e)),
        }
    }
}

/// The slice of `range` that `ip` is in, if it is in the range.
pub fn containing(range: &IpRange, prefix: u8, ip: IpAddr) -> Option<IpRange> {
    // An address of the other family (a hand-edited or foreign list, a
    // dual-stack result) is in no slice of this range.
    if ip.is_ipv4() != range.subnet.addr.is_ipv4() {
        return None;
    }
    let size_bits = u32::from(multus_plugin_sdk::ip::bits(ip).checked_sub(prefix)?);
    let offset = multus_plugin_sdk::ip::to_u128(ip)
        .checked_sub(multus_plugin_sdk::ip::to_u128(range.subnet.network()))?;
    range.slice(prefix, offset.checked_shr(size_bits)?)
}

/// `node`'s slices, without claiming any (DEL, CHECK, GC). `cached`: as
/// the API server's cache has them, which may lack a slice claimed a
/// moment ago; a caller that finds nothing in them reads again live.
pub fn mine(
    conf: &Conf,
    range: &IpRange,
    prefix: u8,
    node: &str,
    cached: bool,
) -> Result<Vec<IpRange>, CniError> {
    match get(conf, cached) {
        // Another network's pool: this one never allocated in it.
        Ok(text) => Ok(Some(parse(conf, &text)?)
            .filter(|o| same_cut(o, range, prefix))
            .map(|o| held(&o, node, range, prefix))
            .unwrap_or_default()),
        Err(ClusterError::NotFound(_)) => Ok(Vec::new()),
        Err(e) => Err(cluster_error(
            &format!("reading NodeSlicePool {}", name(conf)),
            e,
        )),
    }
}

/// `node`'s own place among `n` free slots: nodes taking slots at once
/// spread over them.
fn start(node: &str, n: usize) -> usize {
    (crate::pool::fnv1a(&[node]) % n as u64) as usize
}

fn entry(node: &str, slice: &str) -> Value {
    json!({"nodeName": node, "sliceRange": slice})
}

/// The patch that takes free slot `index` (`slice`) for `node`.
fn take_slot(index: usize, slice: &str, node: &str) -> String {
    let at = format!("/status/allocations/{index}");
    json!([
        {"op": "test", "path": format!("{at}/sliceRange"), "value": slice},
        {"op": "test", "path": format!("{at}/nodeName"), "value": ""},
        {"op": "replace", "path": format!("{at}/nodeName"), "value": node},
    ])
    .to_string()
}

/// `node`'s slices, claiming one first when it holds none, or no more
/// than the `full` slices its caller found full (a slice the node claimed
/// meanwhile, which a lagging cache did not list, is used before another
/// is claimed). Unchanged when every slice is someone's.
pub fn claim(
    conf: &Conf,
    range: &IpRange,
    prefix: u8,
    node: &str,
    full: Option<usize>,
) -> Result<Vec<IpRange>, CniError> {
    let enough = full.map_or(1, |n| n + 1);
    for attempt in 0..crate::ATTEMPTS {
        // A node that holds a slice (every ADD but its first) needs no
        // more: the cache can say so without an etcd read. Anything else
        // is decided, and written, from a live read.
        let cached = attempt == 0 && full.is_none();
        let object = read(conf, range, prefix, cached)?;
        let mut have = held(&object, node, range, prefix);
        if have.len() >= enough {
            return Ok(have);
        }
        if cached {
            continue;
        }
        let list = entries(&object);
        let holders = holders(&list);
        let free: Vec<(usize, &str)> = holders
            .iter()
            .filter(|(_, n, s)| n.is_empty() && slice_of(range, prefix, s).is_some())
            .map(|&(i, _, s)| (i, s))
            .collect();
        let written = if free.is_empty() {
            let listed: HashSet<&str> = holders.iter().map(|&(_, _, s)| s).collect();
            let unlisted = (0u128..)
                .map_while(|i| range.slice(prefix, i))
                .find(|s| !listed.contains(s.cidr().as_str()));
            let Some(slice) = unlisted else {
                return Ok(have);
            };
            let mut object = object.clone();
            let mut list = object["status"]["allocations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            list.push(entry(node, &slice.cidr()));
            object["status"] = json!({"allocations": list});
            cluster::replace_status(&kind(), name(conf), &object.to_string()).map(|_| Some(slice))
        } else {
            let (index, slice) = free[start(node, free.len())];
            cluster::patch_status(&kind(), name(conf), &take_slot(index, slice, node))
                .map(|_| slice_of(range, prefix, slice))
        };
        match written {
            Ok(Some(slice)) => {
                have.push(slice);
                return Ok(have);
            }
            Ok(None) | Err(ClusterError::Conflict(_)) => crate::backoff(attempt),
            Err(e) => {
                return Err(cluster_error(
                    &format!("claiming a slice in NodeSlicePool {}", name(conf)),
                    e,
                ))
            }
        }
    }
    Err(error(
        code::TRY_AGAIN_LATER,
        format!(
            "whereabouts: NodeSlicePool {}: still conflicting",
            name(conf)
        ),
    ))
}
