//! Network configs for the reference plugins, as a cluster admin writes them.

use std::path::Path;

use serde_json::{json, Value};

fn host_local(subnet: &str, data_dir: &Path) -> Value {
    json!({"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": data_dir})
}

/// bridge + host-local (the reference pairing for a cluster default network).
pub fn bridge_host_local(name: &str, bridge: &str, subnet: &str, data_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{
            "type": "bridge", "bridge": bridge, "isGateway": true, "isDefaultGateway": true,
            "ipam": host_local(subnet, data_dir)
        }]
    })
}

/// macvlan (bridge mode) on `master` + host-local, as a single .conf.
pub fn macvlan_host_local(name: &str, master: &str, subnet: &str, data_dir: &Path) -> Value {
    json!({
        "cniVersion": "0.4.0", "name": name, "type": "macvlan", "master": master, "mode": "bridge",
        "ipam": host_local(subnet, data_dir)
    })
}

/// bridge + static IPAM, then tuning (mtu, promisc, a sysctl) on `ifname`.
/// The sysctl names the interface instead of using `IFNAME` because the
/// packaged reference tuning does not substitute `IFNAME` on CHECK.
pub fn bridge_static_tuning(name: &str, bridge: &str, address: &str, ifname: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge,
             "ipam": {"type": "static", "addresses": [{"address": address}]}},
            {"type": "tuning", "mtu": 1400, "promisc": true,
             "sysctl": {format!("net.ipv4.conf.{ifname}.arp_ignore"): "1"}}
        ]
    })
}

/// A multus conf with a static delegate list (`delegates[0]` is eth0). Its
/// `wasmPluginDir` does not exist (`Node::with_wasm` sets the node's): a
/// test never picks up modules a real install left on the machine.
pub fn multus_delegates(delegates: &[Value], cni_dir: &Path, bin_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
        "cniDir": cni_dir, "binDir": bin_dir, "delegates": delegates,
        "wasmPluginDir": cni_dir.with_extension("no-wasm-plugins")
    })
}
