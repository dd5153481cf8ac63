//! `sysctl`: `net.*` keys of the pod netns, built from typed parts and
//! checked by `sysctl::build` (plain names, granted links, the allowlist).

use super::HostState;
use crate::bindings::multus::plugin::sysctl;
use crate::sysctl::SysctlKey;
use crate::{HostError, WitError};

impl sysctl::Host for HostState {
    fn get(&mut self, key: sysctl::Key) -> Result<String, WitError> {
        let built = self.sysctl_key(&key);
        let out = built.and_then(|k| self.kernel.get(&k));
        out.map_err(|e| self.fail("sysctl.get", e))
    }

    fn set(&mut self, key: sysctl::Key, value: String) -> Result<(), WitError> {
        let built = self.sysctl_key(&key);
        let out = built
            .and_then(|k| crate::sysctl::check_value(&k, &value).map(|()| k))
            .and_then(|k| self.kernel.set(&k, &value));
        out.map_err(|e| self.fail("sysctl.set", e))
    }
}

impl HostState {
    fn sysctl_key(&self, key: &sysctl::Key) -> Result<SysctlKey, HostError> {
        crate::netlink::check_namespace(&self.grant, crate::netlink::Ns::Container)?;
        let link = key
            .link
            .as_ref()
            .map(|l| (l.group.as_str(), l.link.as_str()));
        crate::sysctl::build(&self.grant, &key.section, link, &key.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::multus::plugin::sysctl::Host as _;
    use crate::state::{test_state as state, RecordingKernel};

    #[test]
    fn sysctl_keys_are_built_and_checked() {
        let k = RecordingKernel::default();
        let mut s = state(None, k.clone());
        let key = |section: &str, link: Option<&str>, name: &str| sysctl::Key {
            section: section.into(),
            link: link.map(|l| sysctl::LinkKey {
                group: "conf".into(),
                link: l.into(),
            }),
            name: name.into(),
        };
        s.set(key("ipv4", Some("net1"), "arp_ignore"), "1".into())
            .unwrap();
        assert!(s.set(key("ipv4", None, "ip_forward"), "1".into()).is_err());
        assert!(s.set(key("..", None, "x"), "1".into()).is_err());
        assert!(s
            .set(key("ipv4", Some("net1"), "arp_ignore"), "1\n2".into())
            .is_err());
        assert_eq!(
            k.sysctl.ops.lock().unwrap().clone(),
            vec!["set net.ipv4.conf.net1.arp_ignore=1"]
        );
    }
}
