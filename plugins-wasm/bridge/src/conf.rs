//! The reference bridge's config keys, validated as it does, plus the keys
//! this module refuses rather than half-honours.

use multus_plugin_sdk::conf::{ConfDns, NetConf};
use multus_plugin_sdk::{invalid, CniError, Request};
use serde::Deserialize;

pub struct Conf {
    pub bridge: String,
    pub is_gateway: bool,
    pub is_default_gateway: bool,
    pub force_address: bool,
    pub mtu: Option<u32>,
    pub hairpin: bool,
    pub promisc: bool,
    /// The access VLAN (`vlan`), 0 for none.
    pub vlan: u16,
    /// `vlanTrunk`, expanded and sorted.
    pub trunk: Vec<u16>,
    pub preserve_default_vlan: bool,
    /// A VLAN-filtering bridge, when this network tags its ports.
    pub vlan_filtering: bool,
    pub enable_dad: bool,
    pub mac: Option<String>,
    pub layer3: bool,
    pub dns: Option<ConfDns>,
}

#[derive(Deserialize)]
struct TrunkEntry {
    #[serde(rename = "minID")]
    min: Option<i64>,
    #[serde(rename = "maxID")]
    max: Option<i64>,
    id: Option<i64>,
}

fn vid(v: i64, what: &str) -> Result<u16, CniError> {
    if (1..=4094).contains(&v) {
        Ok(v as u16)
    } else {
        Err(invalid(format!(
            "bridge: \"vlanTrunk\": {what} {v} is not a VLAN ID (1 to 4094)"
        )))
    }
}

/// `vlanTrunk` as the reference reads it: ranges and single IDs, merged.
fn trunk(entries: &[TrunkEntry]) -> Result<Vec<u16>, CniError> {
    let mut vids = std::collections::BTreeSet::new();
    for e in entries {
        match (e.min, e.max) {
            (Some(lo), Some(hi)) => {
                let (lo, hi) = (vid(lo, "minID")?, vid(hi, "maxID")?);
                if hi < lo {
                    return Err(invalid(format!(
                        "bridge: \"vlanTrunk\": minID {lo} is greater than maxID {hi}"
                    )));
                }
                vids.extend(lo..=hi);
            }
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "bridge: \"vlanTrunk\": minID and maxID go together",
                ))
            }
        }
        if let Some(id) = e.id {
            vids.insert(vid(id, "id")?);
        }
    }
    Ok(vids.into_iter().collect())
}

/// The MAC the runtime asks for: CNI_ARGS `MAC`, then `args.cni.mac`, then
/// `runtimeConfig.mac`, the last one set winning (as the reference).
fn mac(req: &Request, netconf: &NetConf) -> Result<Option<String>, CniError> {
    let mut mac = req.arg("MAC").map(String::from);
    if let Some(m) = netconf.cni_arg::<String>("mac")? {
        mac = Some(m);
    }
    if let Some(m) = netconf.runtime::<String>("mac")? {
        mac = Some(m);
    }
    Ok(mac.filter(|m| !m.is_empty()))
}

impl Conf {
    pub fn load(req: &Request, netconf: &NetConf) -> Result<Self, CniError> {
        let flag = |k: &str| -> Result<bool, CniError> { Ok(netconf.get(k)?.unwrap_or(false)) };
        for key in ["ipMasq", "macspoofchk"] {
            if flag(key)? {
                return Err(invalid(format!(
                    "bridge: \"{key}\": true is not supported by the wasm bridge (it needs iptables/nftables rules on the node, which it cannot make); set it false or remove bridge.wasm to run the native bridge"
                )));
            }
        }
        let vlan: i64 = netconf.get("vlan")?.unwrap_or(0);
        if !(0..=4094).contains(&vlan) {
            return Err(invalid(format!(
                "bridge: invalid VLAN ID {vlan} in \"vlan\" (must be between 0 and 4094)"
            )));
        }
        let entries: Option<Vec<TrunkEntry>> = netconf.get("vlanTrunk")?;
        let trunk = trunk(entries.as_deref().unwrap_or_default())?;
        if vlan > 0 && !trunk.is_empty() {
            return Err(invalid(
                "bridge: cannot set \"vlan\" and \"vlanTrunk\" at the same time",
            ));
        }
        let is_default_gateway = flag("isDefaultGateway")?;
        let is_gateway = flag("isGateway")? || is_default_gateway;
        if is_gateway && vlan > 0 {
            return Err(invalid(
                "bridge: \"isGateway\" with \"vlan\" is not supported by the wasm bridge (the gateway would live on a host veth \"<bridge>.<vlan>\" no call may create); remove bridge.wasm to run the native bridge",
            ));
        }
        let (hairpin, promisc) = (flag("hairpinMode")?, flag("promiscMode")?);
        if hairpin && promisc {
            return Err(invalid(
                "bridge: cannot set hairpin mode and promiscuous mode at the same time (\"hairpinMode\", \"promiscMode\")",
            ));
        }
        let bridge: String = netconf.get("bridge")?.unwrap_or_default();
        Ok(Self {
            bridge: if bridge.is_empty() {
                "cni0".into()
            } else {
                bridge
            },
            is_gateway,
            is_default_gateway,
            force_address: flag("forceAddress")?,
            mtu: netconf.get::<u32>("mtu")?.filter(|m| *m > 0),
            hairpin,
            promisc,
            vlan: vlan as u16,
            // `vlanTrunk` present, even empty, asks for a filtering bridge.
            vlan_filtering: vlan > 0 || netconf.raw.get("vlanTrunk").is_some_and(|v| !v.is_null()),
            preserve_default_vlan: netconf.get("preserveDefaultVlan")?.unwrap_or(true),
            enable_dad: flag("enabledad")?,
            mac: mac(req, netconf)?,
            layer3: !netconf.ipam_type().is_empty(),
            dns: netconf.dns()?,
            trunk,
        })
    }
}
