//! The reference tuning plugin as a sandboxed chained component: sysctls,
//! mac, mtu, promisc, allmulti and txQLen on the pod interface; CHECK
//! compares; DEL restores what it changed (sysctls are not restored, as in
//! the reference). The backup lives in the host's store for this network.

use std::collections::BTreeMap;

use multus_plugin_sdk::conf::NetConf;
use multus_plugin_sdk::netlink::{self, LinkChange, Namespace};
use multus_plugin_sdk::sysctl::{self, Key, LinkKey};
use multus_plugin_sdk::{
    code, error, invalid, store, Attachment, CniError, CniResult, Plugin, Request,
};
use serde::{Deserialize, Serialize};

struct Tuning;

#[derive(Debug, Default)]
struct Conf {
    sysctl: BTreeMap<String, String>,
    mac: Option<String>,
    promisc: bool,
    mtu: Option<u32>,
    allmulti: Option<bool>,
    txqlen: Option<u32>,
}

#[derive(Deserialize, Default)]
struct Overrides {
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    promisc: Option<bool>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    allmulti: Option<bool>,
    #[serde(default, rename = "txQLen")]
    txqlen: Option<u32>,
    #[serde(default)]
    sysctl: Option<BTreeMap<String, String>>,
}

/// What ADD changed, to put back on DEL (the reference's backup file).
#[derive(Serialize, Deserialize, Default)]
struct Backup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    promisc: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allmulti: Option<bool>,
    #[serde(default, rename = "txQLen", skip_serializing_if = "Option::is_none")]
    txqlen: Option<u32>,
}

impl Conf {
    /// Precedence as the reference: conf, then CNI_ARGS MAC, then
    /// runtimeConfig.mac, then args.cni.
    fn load(req: &Request) -> Result<Self, CniError> {
        let n = NetConf::parse(req)?;
        let mut c = Conf {
            sysctl: n.get("sysctl")?.unwrap_or_default(),
            mac: n.get("mac")?,
            promisc: n.get("promisc")?.unwrap_or(false),
            mtu: n.get("mtu")?,
            allmulti: n.get("allmulti")?,
            txqlen: n.get("txQLen")?,
        };
        if let Some(m) = req.arg("MAC") {
            c.mac = Some(m.to_string());
        }
        if let Some(m) = n.runtime::<String>("mac")?.filter(|m| !m.is_empty()) {
            c.mac = Some(m);
        }
        let o: Overrides = match n.raw.get("args").and_then(|a| a.get("cni")) {
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| invalid(format!("args.cni: {e}")))?
            }
            None => Overrides::default(),
        };
        c.mac = o.mac.or(c.mac);
        c.promisc = o.promisc.unwrap_or(c.promisc);
        c.mtu = o.mtu.or(c.mtu);
        c.allmulti = o.allmulti.or(c.allmulti);
        c.txqlen = o.txqlen.or(c.txqlen);
        if let Some(s) = o.sysctl {
            c.sysctl.extend(s);
        }
        Ok(c)
    }

    fn changes_link(&self) -> bool {
        self.mac.is_some()
            || self.mtu.is_some()
            || self.promisc
            || self.allmulti.is_some()
            || self.txqlen.is_some()
    }
}

/// Splits `net.<section>[.<group>.<link>].<name>` into typed parts. The
/// first `IFNAME` stands for the pod interface (which may contain dots).
fn sysctl_key(raw: &str, ifname: &str) -> Result<Key, CniError> {
    let rest = raw.strip_prefix("net.").ok_or_else(|| {
        invalid(format!(
            "invalid net sysctl key: {raw:?} (only net.* keys are allowed)"
        ))
    })?;
    let (section, rest) = rest
        .split_once('.')
        .ok_or_else(|| invalid(format!("invalid net sysctl key: {raw:?}")))?;
    for group in ["conf", "neigh"] {
        if let Some(after) = rest.strip_prefix(group).and_then(|r| r.strip_prefix('.')) {
            let (link, name) = if let Some(name) = after.strip_prefix("IFNAME.") {
                (ifname.to_string(), name)
            } else if let Some(name) = after.strip_prefix(ifname).and_then(|r| r.strip_prefix('.'))
            {
                (ifname.to_string(), name)
            } else {
                let (l, n) = after
                    .split_once('.')
                    .ok_or_else(|| invalid(format!("invalid net sysctl key: {raw:?}")))?;
                (l.to_string(), n)
            };
            return Ok(Key {
                section: section.into(),
                link: Some(LinkKey {
                    group: group.into(),
                    link,
                }),
                name: name.into(),
            });
        }
    }
    Ok(Key {
        section: section.into(),
        link: None,
        name: rest.into(),
    })
}

fn backup_key(req: &Request) -> String {
    format!("{}_{}.json", req.container_id, req.ifname)
}

fn prev_result(req: &Request) -> Result<CniResult, CniError> {
    NetConf::parse(req)?
        .prev_result()?
        .ok_or_else(|| invalid("tuning must be called as a chained plugin (no prevResult)"))
}

impl Plugin for Tuning {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let conf = Conf::load(&req)?;
        let mut result = prev_result(&req)?;
        for (k, v) in &conf.sysctl {
            sysctl::set(&sysctl_key(k, &req.ifname)?, v)?;
        }
        if conf.changes_link() {
            let link = netlink::link_get(Namespace::Container, &req.ifname)?;
            let backup = Backup {
                mac: conf.mac.as_ref().map(|_| link.mac.clone()),
                promisc: conf.promisc.then_some(link.promisc),
                mtu: conf.mtu.map(|_| link.mtu),
                allmulti: conf.allmulti.map(|_| link.allmulti),
                txqlen: conf.txqlen.map(|_| link.txqlen),
            };
            let txn = store::open()?;
            txn.put(
                &backup_key(&req),
                &serde_json::to_string(&backup).expect("backup serializes"),
            )?;
            netlink::link_set(
                Namespace::Container,
                &req.ifname,
                &LinkChange {
                    up: None,
                    mtu: conf.mtu,
                    mac: conf.mac.clone(),
                    promisc: conf.promisc.then_some(true),
                    allmulti: conf.allmulti,
                    txqlen: conf.txqlen,
                },
            )?;
        }
        if let Some(mac) = &conf.mac {
            for i in result
                .interfaces
                .iter_mut()
                .filter(|i| i.name == req.ifname && i.sandbox)
            {
                i.mac = Some(mac.to_lowercase());
            }
        }
        Ok(result)
    }

    fn del(req: Request) -> Result<(), CniError> {
        Conf::load(&req)?;
        let txn = store::open()?;
        let key = backup_key(&req);
        let Some(saved) = txn.get(&key)? else {
            return Ok(());
        };
        txn.remove(&key)?;
        let b: Backup = serde_json::from_str(&saved).unwrap_or_default();
        // Best effort, as the reference: the pod may already be gone.
        let _ = netlink::link_set(
            Namespace::Container,
            &req.ifname,
            &LinkChange {
                up: None,
                mtu: b.mtu,
                mac: b.mac,
                promisc: b.promisc,
                allmulti: b.allmulti,
                txqlen: b.txqlen,
            },
        );
        Ok(())
    }

    fn check(req: Request) -> Result<(), CniError> {
        let conf = Conf::load(&req)?;
        prev_result(&req)?;
        for (k, want) in &conf.sysctl {
            let have = sysctl::get(&sysctl_key(k, &req.ifname)?)?;
            if have.trim() != want.trim() {
                return Err(error(
                    code::INTERNAL,
                    format!(
                        "Error: Tuning configured value of {k} is {want}, current value is {have}"
                    ),
                ));
            }
        }
        if conf.changes_link() {
            let l = netlink::link_get(Namespace::Container, &req.ifname)?;
            let bad = |what: &str, want: String, have: String| {
                error(
                    code::INTERNAL,
                    format!(
                        "Error: Tuning configured {what} of {} is {want}, current value is {have}",
                        req.ifname
                    ),
                )
            };
            if let Some(m) = conf.mtu.filter(|m| *m != l.mtu) {
                return Err(bad("MTU", m.to_string(), l.mtu.to_string()));
            }
            if let Some(m) = conf
                .mac
                .as_ref()
                .filter(|m| !m.eq_ignore_ascii_case(&l.mac))
            {
                return Err(bad("Ethernet MAC address", m.clone(), l.mac));
            }
            if conf.promisc && !l.promisc {
                return Err(bad("promiscuous mode", "on".into(), "off".into()));
            }
            if let Some(a) = conf.allmulti.filter(|a| *a != l.allmulti) {
                return Err(bad(
                    "all-multicast mode",
                    a.to_string(),
                    l.allmulti.to_string(),
                ));
            }
            if let Some(q) = conf.txqlen.filter(|q| *q != l.txqlen) {
                return Err(bad(
                    "transmit queue length",
                    q.to_string(),
                    l.txqlen.to_string(),
                ));
            }
        }
        Ok(())
    }

    fn status(req: Request) -> Result<(), CniError> {
        Conf::load(&req).map(drop)
    }

    fn gc(_req: Request, _valid: Vec<Attachment>) -> Result<(), CniError> {
        Ok(())
    }
}

multus_plugin_sdk::export!(Tuning);
