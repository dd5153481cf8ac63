//! What one invocation of one plugin may touch, computed by the runtime from
//! the admin's config and the CNI request, never from the guest.

use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;

/// The default sysctl allowlist when `/etc/cni/tuning/allowlist.conf` is
/// absent: the per-interface keys, with `IFNAME` standing for a granted link.
/// (Reference tuning allows everything then; a sandbox must not.)
pub const DEFAULT_SYSCTL_ALLOWLIST: &[&str] = &[
    r"^net\.ipv4\.conf\.IFNAME\.[a-z_]+$",
    r"^net\.ipv4\.neigh\.IFNAME\.[a-z_]+$",
    r"^net\.ipv6\.conf\.IFNAME\.[a-z_]+$",
    r"^net\.ipv6\.neigh\.IFNAME\.[a-z_]+$",
];

#[derive(Debug, Clone)]
pub struct Grant {
    /// The plugin type, for messages.
    pub plugin: String,
    pub network: String,
    /// The store's directory; `None` denies the store.
    pub store_root: Option<crate::store::StoreDir>,
    /// The pod netns path (CNI_NETNS); `None` denies container netlink/sysctl.
    pub netns: Option<PathBuf>,
    /// A DEL, GC or STATUS with no pod netns (CNI_NETNS empty, as
    /// containerd sends its repeated DEL once the netns is removed): calls
    /// into the pod find nothing (`NotFound`) instead of being denied, so a
    /// DEL of what is already gone succeeds, as the CNI spec requires.
    pub pod_gone: bool,
    /// Links of the pod netns this call may touch.
    pub links: Vec<String>,
    /// The addresses prevResult gives those links (rules from them are
    /// this call's even before the addresses are on the links).
    pub addresses: Vec<ipnet::IpNet>,
    /// The admin's `hostNetns` grant for this plugin.
    pub host_netns: bool,
    /// Host links the plugin's config names (`master`, `bridge`): the only
    /// ones it may build on, and only with `host_netns`.
    pub host_links: Vec<String>,
    /// Host links this call created (a veth's host end): it may configure
    /// them and make them bridge ports. Filled in by the host as it goes.
    pub host_created: Vec<String>,
    /// The pod's addresses this call's IPAM returned, recorded by the host
    /// when the plugin asked for them: the only host routes and host
    /// addresses a plugin may write are for these.
    pub pod_addresses: Vec<ipnet::IpNet>,
    /// Pod links this call created: their per-interface sysctls are the
    /// plugin's to set (as the reference plugins do) even when the admin's
    /// tuning allowlist does not list them.
    pub pod_created: Vec<String>,
    /// Sysctl key patterns; `IFNAME` in a pattern matches only granted links.
    pub sysctl_allowlist: Vec<String>,
    /// The API groups and namespace cluster calls may reach; `None` denies
    /// them.
    pub cluster: Option<crate::cluster::ClusterGrant>,
    /// Budget of every single host call.
    pub call_timeout: Duration,
}

/// `items` joined for a message, `none` when there are none.
pub fn listed<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Grant {
    pub fn link_granted(&self, name: &str) -> bool {
        self.links.iter().any(|l| l == name)
    }

    /// A host link this call created (its veth's host end).
    pub fn host_created(&self, name: &str) -> bool {
        self.host_created.iter().any(|l| l == name)
    }

    /// A host link the plugin's config names, or one this call created.
    pub fn host_link_granted(&self, name: &str) -> bool {
        self.config_names(name) || self.host_created(name)
    }

    /// A host link the plugin's config names.
    pub fn config_names(&self, name: &str) -> bool {
        self.host_links.iter().any(|l| l == name)
    }

    /// True if the full sysctl key matches an allowlist pattern, with
    /// `IFNAME` replaced by each granted link in turn; or is a
    /// per-interface key of a pod link this call created.
    pub fn sysctl_allowed(&self, key: &str) -> bool {
        pattern_matches(&self.sysctl_allowlist, &self.links, key)
            || pattern_matches(DEFAULT_SYSCTL_ALLOWLIST, &self.pod_created, key)
    }
}

fn pattern_matches<P: AsRef<str>>(patterns: &[P], links: &[String], key: &str) -> bool {
    patterns.iter().map(AsRef::as_ref).any(|pat: &str| {
        let candidates: Vec<String> = if pat.contains("IFNAME") {
            links
                .iter()
                .map(|l| pat.replace("IFNAME", &regex::escape(l)))
                .collect()
        } else {
            vec![pat.to_string()]
        };
        candidates
            .iter()
            .any(|p| Regex::new(p).is_ok_and(|re| re.is_match(key)))
    })
}

/// Reads an allowlist file (one regex per line, `#` comments), as the
/// reference tuning plugin does; `None` when the file does not exist.
pub fn read_allowlist(path: &std::path::Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect(),
    )
}

/// A chained-plugin grant on `links` with the default allowlist, for tests.
#[cfg(test)]
pub(crate) fn test_grant(links: &[&str]) -> Grant {
    Grant {
        plugin: "tuning".into(),
        network: "n".into(),
        store_root: None,
        netns: None,
        pod_gone: false,
        links: links.iter().map(|l| l.to_string()).collect(),
        addresses: Vec::new(),
        cluster: None,
        host_netns: false,
        host_links: Vec::new(),
        host_created: Vec::new(),
        pod_addresses: Vec::new(),
        pod_created: Vec::new(),
        sysctl_allowlist: DEFAULT_SYSCTL_ALLOWLIST
            .iter()
            .map(|s| s.to_string())
            .collect(),
        call_timeout: Duration::from_secs(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        test_grant(&["net1"])
    }

    #[test]
    fn allowlist_binds_ifname_to_granted_links() {
        let g = grant();
        assert!(g.sysctl_allowed("net.ipv4.conf.net1.arp_ignore"));
        assert!(g.sysctl_allowed("net.ipv6.neigh.net1.base_reachable_time_ms"));
        assert!(!g.sysctl_allowed("net.ipv4.conf.eth0.arp_ignore"));
        assert!(!g.sysctl_allowed("net.ipv4.ip_forward"));
        assert!(!g.sysctl_allowed("net.ipv4.conf.all.forwarding"));
    }

    #[test]
    fn allowlist_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("allowlist.conf");
        assert!(read_allowlist(&f).is_none());
        std::fs::write(&f, "# comment\n^net\\.core\\.somaxconn$\n\n").unwrap();
        let mut g = grant();
        g.sysctl_allowlist = read_allowlist(&f).unwrap();
        assert!(g.sysctl_allowed("net.core.somaxconn"));
        assert!(!g.sysctl_allowed("net.ipv4.conf.net1.arp_ignore"));
    }
}
