//! The grant of one wasm call, from the admin's config and the CNI request.

use std::path::{Path, PathBuf};

use multus_host_functions::cluster::ClusterGrant;
use multus_host_functions::grant::{read_allowlist, Grant, DEFAULT_SYSCTL_ALLOWLIST};
use multus_host_functions::names::valid_ifname;
use serde_json::Value;

use super::audit::Role;
use super::PluginCall;
use crate::boundary::{store_dir, Bounds, Refused};
use crate::cni::env::validate_id;
use crate::cni::{Code, Command};
use crate::config::PluginSettings;
use multus_host_functions::store::StoreDir;

/// host-local's default state dir.
pub const IPAM_DATA_DIR: &str = "/var/lib/cni/networks";
/// Chained plugins keep per-pod state in tmpfs (`/run/cni/<type>`), as
/// reference tuning does.
pub const CHAINED_DATA_DIR: &str = "/run/cni";
/// The reference tuning plugin's allowlist file.
pub const SYSCTL_ALLOWLIST: &str = "/etc/cni/tuning/allowlist.conf";

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// The pod links a chained plugin may touch: CNI_IFNAME and the interfaces
/// the runtime's own prevResult places in the pod (never a config's
/// `prevResult`: a NAD's author writes that), each a valid interface name.
fn links(call: &PluginCall<'_>) -> Vec<String> {
    let mut links: Vec<String> = Vec::new();
    let ifaces = call
        .known_prev
        .and_then(|p| p.get("interfaces"))
        .and_then(Value::as_array);
    let in_pod = ifaces.into_iter().flatten().filter_map(|i| {
        let sandbox = i.get("sandbox").and_then(Value::as_str);
        sandbox.filter(|s| !s.is_empty())?;
        i.get("name").and_then(Value::as_str)
    });
    for name in std::iter::once(call.ifname).chain(in_pod) {
        if valid_ifname(name) && !links.iter().any(|l| l == name) {
            links.push(name.to_string());
        }
    }
    links
}

/// The addresses the runtime's prevResult gives the granted links: IPs
/// whose interface is one of them, or that name no interface (chained
/// plugins read those as CNI_IFNAME's, as reference sbr does).
fn addresses(prev: Option<&Value>, links: &[String]) -> Vec<ipnet::IpNet> {
    let Some(prev) = prev else {
        return Vec::new();
    };
    let ifaces = prev.get("interfaces").and_then(Value::as_array);
    let granted = |i: u64| {
        ifaces
            .and_then(|v| v.get(i as usize))
            .and_then(|i| i.get("name"))
            .and_then(Value::as_str)
            .is_some_and(|n| links.iter().any(|l| l == n))
    };
    prev.get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|ip| {
            ip.get("interface")
                .and_then(Value::as_u64)
                .is_none_or(granted)
        })
        .filter_map(|ip| ip.get("address")?.as_str()?.parse().ok())
        .collect()
}

/// The store of a call: the directory its config names (`key`) must pass
/// the boundary; the host's `default`, outside roots an admin narrowed,
/// only leaves the module without a store (static IPAM and the interface
/// plugins never open one; a store call is then denied).
fn store(
    bounds: &Bounds,
    named: Option<PathBuf>,
    default: PathBuf,
    key: &str,
) -> Result<Option<StoreDir>, Refused> {
    match named {
        Some(dir) => store_dir(bounds, &dir, key).map(Some),
        None => Ok(store_dir(bounds, &default, key).ok()),
    }
}

/// A grant of nothing: no store, no netns, no links, no sysctls.
pub fn none(plugin: &str, settings: &PluginSettings) -> Grant {
    Grant {
        plugin: plugin.to_string(),
        network: String::new(),
        store_root: None,
        netns: None,
        pod_gone: false,
        links: Vec::new(),
        addresses: Vec::new(),
        cluster: None,
        host_netns: false,
        host_links: Vec::new(),
        host_created: Vec::new(),
        pod_addresses: Vec::new(),
        pod_created: Vec::new(),
        sysctl_allowlist: Vec::new(),
        call_timeout: settings.host_call_timeout(),
    }
}

/// The grant of `call` on node `node`; its store directory passes the
/// boundary (`storeRoots`), or the call is refused naming the key.
pub fn compute(
    role: Role,
    call: &PluginCall<'_>,
    config: &Value,
    settings: &PluginSettings,
    bounds: &Bounds,
    node: &str,
) -> Result<Grant, Refused> {
    let network = config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // IPAM state is per network (host-local's layout); a chained plugin's
    // per-attachment state sits directly in its dataDir, keyed by container
    // and interface, exactly where reference tuning keeps its backups, so a
    // pod added by one is deleted correctly by the other.
    let (store_root, netns, links) = match role {
        // `<dataDir>/<name>` is an IPAM module's store (a dataDir that is
        // a root itself is fine, its networks lie beneath it).
        Role::Ipam => {
            let root = match network.as_str() {
                "" => None,
                n => {
                    validate_id(n, "name", Code::InvalidConfig)
                        .map_err(|e| Refused::new("name", e.msg))?;
                    let named = str_at(config, &["ipam", "dataDir"]).map(|d| Path::new(d).join(n));
                    store(
                        bounds,
                        named,
                        Path::new(IPAM_DATA_DIR).join(n),
                        "ipam.dataDir",
                    )?
                }
            };
            (root, None, Vec::new())
        }
        Role::Chained => {
            let netns = (!call.netns.is_empty()).then(|| PathBuf::from(call.netns));
            let named = str_at(config, &["dataDir"]).map(PathBuf::from);
            let default = Path::new(CHAINED_DATA_DIR).join(call.plugin_type.as_str());
            (
                store(bounds, named, default, "dataDir")?,
                netns,
                links(call),
            )
        }
        Role::Mapper => return Ok(none(call.plugin_type, settings)),
    };
    let sysctl_allowlist = read_allowlist(Path::new(SYSCTL_ALLOWLIST)).unwrap_or_else(|| {
        DEFAULT_SYSCTL_ALLOWLIST
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    let addresses = addresses(call.known_prev, &links);
    // IPAM modules may keep cluster-wide pools, in the groups the admin
    // allows (whereabouts' by default).
    let cluster =
        (role == Role::Ipam && !settings.cluster_groups.is_empty()).then(|| ClusterGrant {
            groups: settings.cluster_groups.clone(),
            node: node.to_string(),
        });
    // containerd repeats DEL with no CNI_NETNS after removing the netns.
    let pod_gone = role == Role::Chained
        && netns.is_none()
        && matches!(call.command, Command::Del | Command::Gc | Command::Status);
    Ok(Grant {
        plugin: call.plugin_type.to_string(),
        network,
        store_root,
        netns,
        pod_gone,
        links,
        addresses,
        cluster,
        host_netns: settings.host_netns,
        host_links: match role {
            // The links the admin's config names, for interface plugins.
            Role::Chained => ["master", "bridge"]
                .iter()
                .filter_map(|k| str_at(config, &[k]))
                .filter(|n| valid_ifname(n))
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        },
        host_created: Vec::new(),
        pod_addresses: Vec::new(),
        pod_created: Vec::new(),
        sysctl_allowlist,
        call_timeout: settings.host_call_timeout(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boundary::PluginType;
    use serde_json::json;

    fn ty(s: &str) -> &'static PluginType {
        Box::leak(Box::new(PluginType::parse(s, "type").unwrap()))
    }

    fn call<'a>(stdin: &'a [u8], t: &str) -> PluginCall<'a> {
        let ty = ty(t);
        PluginCall {
            plugin_type: ty,
            command: Command::Add,
            container_id: "c",
            netns: "/run/netns/p",
            ifname: "net1",
            known_prev: None,
            cni_args: "",
            path: &[],
            extra_env: &[],
            stdin,
        }
    }

    #[test]
    fn ipam_gets_store_only() {
        let conf = json!({"name": "n", "ipam": {"type": "host-local", "dataDir": "/var/lib/cni/networks/d"}});
        let g = compute(
            Role::Ipam,
            &call(b"", "host-local"),
            &conf,
            &PluginSettings::default(),
            &Bounds::default(),
            "node1",
        )
        .unwrap();
        assert_eq!(
            g.store_root.map(|d| d.path()),
            Some(PathBuf::from("/var/lib/cni/networks/d/n"))
        );
        assert!(g.netns.is_none() && g.links.is_empty() && !g.host_netns);
        let conf = json!({"name": "n", "ipam": {"type": "host-local"}});
        let g = compute(
            Role::Ipam,
            &call(b"", "host-local"),
            &conf,
            &PluginSettings::default(),
            &Bounds::default(),
            "node1",
        )
        .unwrap();
        assert_eq!(
            g.store_root.map(|d| d.path()),
            Some(PathBuf::from("/var/lib/cni/networks/n"))
        );
    }

    #[test]
    fn chained_gets_ifname_and_pod_interfaces() {
        let prev = json!({"interfaces": [
            {"name": "veth1", "mac": "x"}, {"name": "net1", "sandbox": "/run/netns/p"}, {"name": "extra", "sandbox": "/run/netns/p"},
            {"name": "/proc/sys/kernel", "sandbox": "/run/netns/p"}, {"name": "..", "sandbox": "/run/netns/p"}
        ], "ips": [
            {"address": "10.1.0.5/24", "interface": 1},
            {"address": "10.9.0.1/24", "interface": 0},
            {"address": "fd00::5/64"}
        ]});
        let conf = json!({"name": "n"});
        let g = compute(
            Role::Chained,
            &PluginCall {
                known_prev: Some(&prev),
                ..call(b"", "tuning")
            },
            &conf,
            &PluginSettings::default(),
            &Bounds::default(),
            "node1",
        )
        .unwrap();
        assert_eq!(g.links, vec!["net1", "extra"], "no path is ever a link");
        let addrs: Vec<String> = g.addresses.iter().map(ToString::to_string).collect();
        assert_eq!(
            addrs,
            vec!["10.1.0.5/24", "fd00::5/64"],
            "not the host veth's"
        );
        assert_eq!(g.netns, Some(PathBuf::from("/run/netns/p")));
        assert_eq!(
            g.store_root.map(|d| d.path()),
            Some(PathBuf::from("/run/cni/tuning"))
        );
    }

    /// A dataDir outside the admin's store roots, or a network name that is
    /// a path, is refused naming the key.
    #[test]
    fn a_store_only_beneath_the_roots() {
        let refused = |role: Role, ty: &str, conf: serde_json::Value| {
            compute(
                role,
                &call(b"", ty),
                &conf,
                &PluginSettings::default(),
                &Bounds::default(),
                "node1",
            )
            .unwrap_err()
            .key
        };
        assert_eq!(
            refused(
                Role::Ipam,
                "host-local",
                json!({"name": "n", "ipam": {"dataDir": "/etc/ssh"}})
            ),
            "ipam.dataDir"
        );
        assert_eq!(
            refused(
                Role::Ipam,
                "host-local",
                json!({"name": "../../../etc", "ipam": {}})
            ),
            "name"
        );
        assert_eq!(
            refused(
                Role::Chained,
                "tuning",
                json!({"name": "n", "dataDir": "/root/.ssh"})
            ),
            "dataDir"
        );
        assert_eq!(
            refused(
                Role::Chained,
                "tuning",
                json!({"name": "n", "dataDir": "/run/cni/../../etc"})
            ),
            "dataDir"
        );
        let b = Bounds::default();
        let at_root = json!({"name": "n", "ipam": {"dataDir": "/var/lib/cni/networks"}});
        let g = compute(
            Role::Ipam,
            &call(b"", "host-local"),
            &at_root,
            &PluginSettings::default(),
            &b,
            "node1",
        )
        .unwrap();
        assert_eq!(
            g.store_root.map(|d| d.path()),
            Some(PathBuf::from("/var/lib/cni/networks/n")),
            "a root as dataDir"
        );
        let narrowed = Bounds {
            store_roots: vec![PathBuf::from("/data")],
            ..b
        };
        let g = compute(
            Role::Chained,
            &call(b"", "macvlan"),
            &json!({"name": "n"}),
            &PluginSettings::default(),
            &narrowed,
            "node1",
        )
        .unwrap();
        assert!(
            g.store_root.is_none(),
            "the default outside narrowed roots: no store, no failure"
        );
    }

    /// A config's own `prevResult` is what a NAD's author wrote: it grants
    /// nothing (the escape of issue 19 named `/proc/sys/kernel` there).
    #[test]
    fn a_configs_prev_result_grants_nothing() {
        let conf = json!({"name": "n", "master": "../x", "bridge": "cni0", "prevResult": {"interfaces": [
            {"name": "/proc/sys/kernel", "sandbox": "/var/run/netns/escns"},
            {"name": "eth0", "sandbox": "/run/netns/p"}
        ], "ips": [{"address": "0.0.0.0/0", "interface": 1}]}});
        let g = compute(
            Role::Chained,
            &call(b"", "tuning"),
            &conf,
            &PluginSettings::default(),
            &Bounds::default(),
            "node1",
        )
        .unwrap();
        assert_eq!(g.links, vec!["net1"]);
        assert!(g.addresses.is_empty());
        assert_eq!(g.host_links, vec!["cni0"], "a path is no host link either");
    }
}
