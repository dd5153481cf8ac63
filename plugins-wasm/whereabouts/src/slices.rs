//! Node slices (`node_slice_size`): the range is cut into slices, each node
//! claims slices in the range's `NodeSlicePool` (whereabouts' object: name =
//! `network_name`, else the network's name; `status.allocations` lists
//! `{nodeName, sliceRange}`) with a write guarded by its resourceVersion,
//! and allocates only inside its own slices, each its own IPPool
//! (`<node>-<slice>`, or `<network_name>-<node>-<slice>`). Nodes never
//! write the same pool, so they never contend; a node whose slices are full
//! claims another.

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

/// The claims as (node, slice CIDR).
fn claims(object: &Value) -> Vec<(String, String)> {
    object["status"]["allocations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some((
                a["nodeName"].as_str()?.to_string(),
                a["sliceRange"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The slices `node` holds, in the order it claimed them.
fn held(object: &Value, node: &str, range: &IpRange, prefix: u8) -> Vec<IpRange> {
    claims(object)
        .into_iter()
        .filter(|(n, _)| n == node)
        .filter_map(|(_, s)| {
            let c = Cidr::parse(&s).ok()?;
            let size_bits = u32::from(multus_plugin_sdk::ip::bits(c.addr) - prefix);
            let offset = multus_plugin_sdk::ip::to_u128(c.network())
                .checked_sub(multus_plugin_sdk::ip::to_u128(range.subnet.network()))?;
            range.slice(prefix, offset >> size_bits)
        })
        .collect()
}

/// The NodeSlicePool, created (with no claims) if there is none.
fn read(conf: &Conf, range: &IpRange, prefix: u8) -> Result<Value, CniError> {
    let n = name(conf);
    loop {
        match cluster::get(&kind(), n) {
            Ok(text) => {
                return serde_json::from_str(&text)
                    .map_err(|e| error(code::INTERNAL, format!("NodeSlicePool {n}: {e}")))
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

/// `node`'s slices, without claiming any (DEL, CHECK, GC).
pub fn mine(
    conf: &Conf,
    range: &IpRange,
    prefix: u8,
    node: &str,
) -> Result<Vec<IpRange>, CniError> {
    match cluster::get(&kind(), name(conf)) {
        Ok(text) => {
            let object: Value = serde_json::from_str(&text)
                .map_err(|e| error(code::INTERNAL, format!("NodeSlicePool {}: {e}", name(conf))))?;
            Ok(held(&object, node, range, prefix))
        }
        Err(ClusterError::NotFound(_)) => Ok(Vec::new()),
        Err(e) => Err(cluster_error(
            &format!("reading NodeSlicePool {}", name(conf)),
            e,
        )),
    }
}

/// `node`'s slices, claiming the lowest free one first when it holds none
/// or `another` is asked. Empty when every slice is someone's.
pub fn claim(
    conf: &Conf,
    range: &IpRange,
    prefix: u8,
    node: &str,
    another: bool,
) -> Result<Vec<IpRange>, CniError> {
    for attempt in 0..crate::ATTEMPTS {
        let mut object = read(conf, range, prefix)?;
        let have = held(&object, node, range, prefix);
        if !have.is_empty() && !another {
            return Ok(have);
        }
        let taken: Vec<String> = claims(&object).into_iter().map(|(_, s)| s).collect();
        let free = (0u128..)
            .map_while(|i| range.slice(prefix, i))
            .find(|s| !taken.contains(&s.cidr()));
        let Some(free) = free else {
            return Ok(have);
        };
        let mut list = object["status"]["allocations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.push(json!({"nodeName": node, "sliceRange": free.cidr()}));
        object["status"] = json!({"allocations": list});
        match cluster::replace_status(&kind(), name(conf), &object.to_string()) {
            Ok(_) => {
                let mut out = have;
                out.push(free);
                return Ok(out);
            }
            Err(ClusterError::Conflict(_)) => crate::backoff(attempt),
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
