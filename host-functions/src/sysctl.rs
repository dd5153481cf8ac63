//! `net.*` sysctls of the pod netns, addressed by typed parts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::grant::Grant;
use crate::HostError;

/// A checked key: the dotted name and its `/proc/sys` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlKey {
    pub dotted: String,
    pub path: PathBuf,
}

fn plain(part: &str, what: &str) -> Result<(), HostError> {
    let ok = !part.is_empty()
        && part.len() <= 64
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(HostError::Denied(format!(
            "sysctl {what} {part:?} is not a plain name"
        )))
    }
}

/// Builds `net.<section>[.<group>.<link>].<name>` and checks every part:
/// names are plain words, the link is granted, the whole key is allowlisted.
pub fn build(
    grant: &Grant,
    section: &str,
    link: Option<(&str, &str)>,
    name: &str,
) -> Result<SysctlKey, HostError> {
    plain(section, "section")?;
    let mut dotted = format!("net.{section}");
    let mut path = PathBuf::from("/proc/sys/net").join(section);
    if let Some((group, ifname)) = link {
        if group != "conf" && group != "neigh" {
            return Err(HostError::Denied(format!(
                "sysctl group {group:?} (want conf or neigh)"
            )));
        }
        crate::names::check_ifname(ifname, "sysctl link")?;
        if !grant.link_granted(ifname) {
            return Err(HostError::Denied(format!(
                "sysctl on link {ifname:?}, which this call was not granted"
            )));
        }
        dotted.push_str(&format!(".{group}.{ifname}"));
        path.push(group);
        path.push(ifname);
    }
    for part in name.split('.') {
        plain(part, "name")?;
        path.push(part);
    }
    dotted.push('.');
    dotted.push_str(name);
    if !grant.sysctl_allowed(&dotted) {
        return Err(HostError::Denied(format!(
            "sysctl {dotted} is not in the allowlist"
        )));
    }
    Ok(SysctlKey { dotted, path })
}

/// A value the host is willing to write: one short line.
pub fn check_value(key: &SysctlKey, value: &str) -> Result<(), HostError> {
    if value.len() > 256 || value.contains('\n') {
        return Err(HostError::Invalid(format!(
            "sysctl {} value too long or multi-line",
            key.dotted
        )));
    }
    Ok(())
}

pub trait SysctlBackend: Send {
    fn get(&mut self, key: &SysctlKey) -> Result<String, HostError>;
    fn set(&mut self, key: &SysctlKey, value: &str) -> Result<(), HostError>;
}

/// Records sysctl writes; answers reads from what was written (or "0").
#[derive(Clone, Default)]
pub struct RecordingSysctl {
    pub values: Arc<Mutex<BTreeMap<String, String>>>,
    pub ops: Arc<Mutex<Vec<String>>>,
}

impl SysctlBackend for RecordingSysctl {
    fn get(&mut self, key: &SysctlKey) -> Result<String, HostError> {
        self.ops
            .lock()
            .expect("ops")
            .push(format!("get {}", key.dotted));
        Ok(self
            .values
            .lock()
            .expect("values")
            .get(&key.dotted)
            .cloned()
            .unwrap_or_else(|| "0".into()))
    }

    fn set(&mut self, key: &SysctlKey, value: &str) -> Result<(), HostError> {
        self.ops
            .lock()
            .expect("ops")
            .push(format!("set {}={value}", key.dotted));
        self.values
            .lock()
            .expect("values")
            .insert(key.dotted.clone(), value.into());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::test_grant;

    fn grant() -> Grant {
        test_grant(&["net1", "eth0.100"])
    }

    #[test]
    fn builds_paths_from_parts() {
        let k = build(&grant(), "ipv4", Some(("conf", "net1")), "arp_ignore").unwrap();
        assert_eq!(k.dotted, "net.ipv4.conf.net1.arp_ignore");
        assert_eq!(
            k.path,
            PathBuf::from("/proc/sys/net/ipv4/conf/net1/arp_ignore")
        );
        // A dot in an interface name stays a dot in the path.
        let k = build(&grant(), "ipv6", Some(("conf", "eth0.100")), "accept_ra").unwrap();
        assert_eq!(
            k.path,
            PathBuf::from("/proc/sys/net/ipv6/conf/eth0.100/accept_ra")
        );
    }

    #[test]
    fn refuses_escapes_ungranted_and_unlisted() {
        let g = grant();
        assert!(build(&g, "..", None, "x").is_err());
        assert!(build(&g, "ipv4", None, "../../kernel/hostname").is_err());
        assert!(build(&g, "ipv4", Some(("conf", "eth0")), "arp_ignore").is_err());
        assert!(build(&g, "ipv4", Some(("route", "net1")), "x").is_err());
        assert!(build(&g, "ipv4", None, "ip_forward").is_err());
        assert!(build(&g, "ipv4", Some(("conf", "../net1")), "x").is_err());
        // Even a grant that somehow holds a path refuses it: the link is
        // checked by the kernel's name rules before the grant and the path.
        let mut g = test_grant(&["/proc/sys/kernel", ".."]);
        g.sysctl_allowlist = vec![".*".into()];
        let e = build(&g, "ipv4", Some(("conf", "/proc/sys/kernel")), "domainname").unwrap_err();
        assert!(e.to_string().contains("not a valid interface name"), "{e}");
        assert!(build(&g, "ipv4", Some(("conf", "..")), "domainname").is_err());
    }
}
