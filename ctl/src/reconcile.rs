//! What `multusctl ipam reconcile` frees, decided from a snapshot: the
//! allocations of whereabouts IPPools, and the reservations, whose pod no
//! longer exists. Pure: the command reads and writes the objects.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

/// One allocation freed from a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freed {
    pub pool: String,
    pub ip: IpAddr,
    pub podref: String,
    pub id: String,
    pub ifname: String,
}

/// The address at `offset` (decimal) from the network of `range`.
fn address(range: &IpNet, offset: &str) -> Result<IpAddr, String> {
    let off: u128 = offset
        .parse()
        .map_err(|_| format!("allocation key {offset:?} is not an offset"))?;
    let (base, bits) = match range.network() {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let host_bits = bits - u32::from(range.prefix_len());
    let last = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    if off > last {
        return Err(format!("offset {off} is outside {range}"));
    }
    let v = base + off;
    Ok(match range.addr() {
        IpAddr::V4(_) => IpAddr::V4((v as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(v.into()),
    })
}

/// `pool` without the allocations of pods not in `live` ("ns/name"), and
/// what was taken out. Allocations without a podref are left alone: they
/// were not made for a pod.
pub fn free_orphans(pool: &Value, live: &BTreeSet<String>) -> Result<(Value, Vec<Freed>), String> {
    let name = pool["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let range: IpNet = pool["spec"]["range"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("IPPool {name}: spec.range: {e}"))?;
    let mut out = pool.clone();
    let mut freed = Vec::new();
    let allocations = out["spec"]["allocations"].as_object_mut();
    for allocations in allocations.into_iter() {
        let orphans: Vec<String> = allocations
            .iter()
            .filter(|(_, a)| {
                a["podref"]
                    .as_str()
                    .is_some_and(|p| !p.is_empty() && !live.contains(p))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in orphans {
            let a = allocations.remove(&k).expect("listed");
            let s = |f: &str| a[f].as_str().unwrap_or_default().to_string();
            freed.push(Freed {
                pool: name.clone(),
                ip: address(&range, &k).map_err(|e| format!("IPPool {name}: {e}"))?,
                podref: s("podref"),
                id: s("id"),
                ifname: s("ifname"),
            });
        }
    }
    Ok((out, freed))
}

/// The reservations (name, podref) whose pod is not in `live`.
pub fn orphan_reservations(
    reservations: &[Value],
    live: &BTreeSet<String>,
) -> Vec<(String, String)> {
    reservations
        .iter()
        .filter_map(|r| {
            let podref = r["spec"]["podref"].as_str()?;
            (!podref.is_empty() && !live.contains(podref)).then(|| {
                (
                    r["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    podref.to_string(),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(pods: &[&str]) -> BTreeSet<String> {
        pods.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn frees_what_no_pod_holds() {
        let pool = json!({"metadata": {"name": "10.246.0.0-24", "resourceVersion": "7"},
            "spec": {"range": "10.246.0.0/24", "allocations": {
                "16": {"id": "c1", "podref": "default/a", "ifname": "net1"},
                "17": {"id": "c2", "podref": "default/gone", "ifname": "net1"},
                "18": {"id": "c3", "podref": ""}}}});
        let (kept, freed) = free_orphans(&pool, &live(&["default/a"])).unwrap();
        assert_eq!(
            freed,
            [Freed {
                pool: "10.246.0.0-24".into(),
                ip: "10.246.0.17".parse().unwrap(),
                podref: "default/gone".into(),
                id: "c2".into(),
                ifname: "net1".into()
            }]
        );
        let keys: Vec<&String> = kept["spec"]["allocations"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["16", "18"]);
        assert_eq!(
            kept["metadata"]["resourceVersion"], "7",
            "the guard travels along"
        );
    }

    #[test]
    fn wide_ipv6_offsets() {
        let pool = json!({"metadata": {"name": "p"}, "spec": {"range": "fd48:1:2::/48",
            "allocations": {"1208925819614629174706173": {"id": "c", "podref": "x/y"}}}});
        let (_, freed) = free_orphans(&pool, &live(&[])).unwrap();
        assert_eq!(
            freed[0].ip,
            "fd48:1:2:ffff:ffff:ffff:ffff:fffd"
                .parse::<IpAddr>()
                .unwrap()
        );
        let bad = json!({"metadata": {"name": "p"}, "spec": {"range": "10.0.0.0/24",
            "allocations": {"999": {"id": "c", "podref": "x/y"}}}});
        assert!(free_orphans(&bad, &live(&[]))
            .unwrap_err()
            .contains("outside"));
    }

    #[test]
    fn reservations_of_gone_pods() {
        let r = [
            json!({"metadata": {"name": "10.246.0.16"}, "spec": {"podref": "default/a"}}),
            json!({"metadata": {"name": "10.246.0.17"}, "spec": {"podref": "default/gone"}}),
        ];
        assert_eq!(
            orphan_reservations(&r, &live(&["default/a"])),
            [("10.246.0.17".to_string(), "default/gone".to_string())]
        );
    }
}
