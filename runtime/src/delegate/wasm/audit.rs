//! Fail-closed import audit: a component may import only what its role's
//! world offers, plus the WASI interfaces every wasm32-wasip2 guest links
//! (cli, io, random, clocks). No filesystem, no sockets, no HTTP.

use wasmtime::component::Component;
use wasmtime::Engine;

/// How a plugin is being run, which decides the imports it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// An `ipam.type`: log and store only.
    Ipam,
    /// A plugin of a conflist (chained): log, store, netlink, sysctl.
    Chained,
    /// An annotation mapper: log only.
    Mapper,
}

impl Role {
    /// The role in a sentence ("... which an IPAM plugin may not use").
    pub fn article_name(self) -> &'static str {
        match self {
            Role::Ipam => "an IPAM",
            Role::Chained => "a chained",
            Role::Mapper => "an annotation-mapper",
        }
    }
}

const WASI_ALLOWED: &[&str] = &["wasi:cli/", "wasi:io/", "wasi:random/", "wasi:clocks/"];

fn ours(role: Role) -> &'static [&'static str] {
    match role {
        Role::Ipam => &["types", "log", "store", "cluster"],
        Role::Chained => &[
            "types", "log", "store", "netlink", "sysctl", "routing", "links",
        ],
        Role::Mapper => &["types", "log"],
    }
}

fn allowed(role: Role, name: &str) -> bool {
    if WASI_ALLOWED.iter().any(|p| name.starts_with(p)) {
        return true;
    }
    let Some(rest) = name.strip_prefix("multus:plugin/") else {
        return false;
    };
    let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
    compatible(version) && ours(role).contains(&iface)
}

/// A version of the package this host can serve: 0.1.x up to its own
/// (a module built against a newer 0.1 would miss functions at link time).
fn compatible(version: &str) -> bool {
    let host = multus_host_functions::WIT_PACKAGE
        .rsplit_once('@')
        .map_or("", |(_, v)| v);
    let patch = |v: &str| v.strip_prefix("0.1.")?.parse::<u32>().ok();
    matches!((patch(version), patch(host)), (Some(m), Some(h)) if m <= h)
}

/// The imports `role` does not allow; empty means the component may run.
pub fn refused(engine: &Engine, component: &Component, role: Role) -> Vec<String> {
    refused_names(
        role,
        component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name),
    )
}

/// Of the import names `imports`, those `role` does not allow.
pub fn refused_names<'a>(role: Role, imports: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    imports
        .into_iter()
        .filter(|name| !allowed(role, name))
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        assert!(allowed(Role::Ipam, "multus:plugin/store@0.1.0"));
        assert!(allowed(Role::Ipam, "wasi:cli/stdout@0.2.6"));
        assert!(!allowed(Role::Ipam, "multus:plugin/netlink@0.1.0"));
        assert!(allowed(Role::Chained, "multus:plugin/netlink@0.1.1"));
        assert!(allowed(Role::Chained, "multus:plugin/routing@0.1.1"));
        assert!(!allowed(Role::Ipam, "multus:plugin/routing@0.1.1"));
        assert!(allowed(Role::Ipam, "multus:plugin/cluster@0.1.2"));
        assert!(!allowed(Role::Chained, "multus:plugin/cluster@0.1.2"));
        assert!(!allowed(Role::Mapper, "multus:plugin/cluster@0.1.2"));
        assert!(!allowed(Role::Chained, "multus:plugin/netlink@0.1.99"));
        assert!(!allowed(Role::Chained, "multus:plugin/netlink@0.2.0"));
        assert!(!allowed(Role::Chained, "wasi:filesystem/types@0.2.6"));
        assert!(!allowed(Role::Chained, "wasi:sockets/tcp@0.2.6"));
        assert!(!allowed(Role::Chained, "other:pkg/x@1.0.0"));
        assert!(allowed(Role::Mapper, "multus:plugin/log@0.1.0"));
        assert!(!allowed(Role::Mapper, "multus:plugin/store@0.1.0"));
    }
}
