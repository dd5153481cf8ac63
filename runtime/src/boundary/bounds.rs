//! What the admin lets configs name on the host: the multus conf's
//! `storeRoots`, `configFileRoots`, `kubeconfigAllowlist` and
//! `nadPluginTypes`.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{PluginType, Refused};
use crate::config::keys::FoldedObject;

/// host-local's state dir and the chained plugins' (`/run/cni/<type>`):
/// not all of `/var/lib/cni`, which holds multus's DEL cache, the wasm
/// artifacts and the runtime's cached results.
pub const DEFAULT_STORE_ROOTS: &[&str] = &["/var/lib/cni/networks", "/run/cni"];

/// Where whereabouts keeps its flat file (the directories of
/// [`crate::delegate::wasm::cluster::FLAT_FILES`]): the only places a
/// config's `ipam.configuration_path` may point by default.
pub const DEFAULT_CONFIG_FILE_ROOTS: &[&str] = &[
    "/etc/kubernetes/cni/net.d/whereabouts.d",
    "/etc/cni/net.d/whereabouts.d",
    "/host/etc/cni/net.d/whereabouts.d",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bounds {
    /// Directories a wasm plugin's store (`ipam.dataDir`, a chained
    /// plugin's `dataDir`) must lie beneath.
    pub store_roots: Vec<PathBuf>,
    /// Directories (or files) a config's `ipam.configuration_path` may name.
    pub config_file_roots: Vec<PathBuf>,
    /// Kubeconfigs (files, or directories holding them) a config's
    /// `ipam.kubernetes.kubeconfig` may name besides multus's own.
    pub kubeconfig_allowlist: Vec<PathBuf>,
    /// The plugin types a NAD outside `systemNamespaces` may name (its
    /// plugins' `type` and `ipam.type`); `None` allows any.
    pub nad_plugin_types: Option<Vec<PluginType>>,
    /// multus's own directories (`cniDir`, `wasmCacheDir`,
    /// `wasmPluginDir`): no store may be one of them or lie beneath one,
    /// whatever the roots (a module writing the DEL cache or an artifact
    /// index would be multus's own knowledge, or another type's code).
    #[serde(default)]
    pub reserved: Vec<PathBuf>,
}

impl Default for Bounds {
    fn default() -> Self {
        let paths = |l: &[&str]| l.iter().map(PathBuf::from).collect();
        Self {
            store_roots: paths(DEFAULT_STORE_ROOTS),
            config_file_roots: paths(DEFAULT_CONFIG_FILE_ROOTS),
            kubeconfig_allowlist: Vec::new(),
            nad_plugin_types: None,
            reserved: Vec::new(),
        }
    }
}

/// An admin's root must be absolute and plain (no `.` or `..`), so that
/// "beneath it" means what it says.
fn roots(o: &FoldedObject, key: &str, default: Vec<PathBuf>) -> Result<Vec<PathBuf>, Refused> {
    let Some(list) = o
        .get::<Vec<String>>(key)
        .map_err(|e| Refused::new(key, e.msg))?
    else {
        return Ok(default);
    };
    list.into_iter()
        .map(|s| {
            let p = PathBuf::from(&s);
            let plain = p
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
            if !p.is_absolute() || !plain || p == Path::new("/") {
                return Err(Refused::new(
                    key,
                    format!("{s:?} is not an absolute path without '.' or '..' (and not /)"),
                ));
            }
            Ok(p)
        })
        .collect()
}

impl Bounds {
    pub fn parse(o: &FoldedObject) -> Result<Self, Refused> {
        let d = Self::default();
        let types = o
            .get::<Vec<String>>("nadPluginTypes")
            .map_err(|e| Refused::new("nadPluginTypes", e.msg))?
            .map(|l| {
                l.iter()
                    .map(|t| PluginType::parse(t, "nadPluginTypes"))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Self {
            store_roots: roots(o, "storeRoots", d.store_roots)?,
            config_file_roots: roots(o, "configFileRoots", d.config_file_roots)?,
            kubeconfig_allowlist: roots(o, "kubeconfigAllowlist", d.kubeconfig_allowlist)?,
            nad_plugin_types: types,
            reserved: Vec::new(),
        })
    }

    /// Whether a NAD outside `systemNamespaces` may name `ty`.
    pub fn nad_may_name(&self, ty: &PluginType) -> bool {
        self.nad_plugin_types
            .as_ref()
            .is_none_or(|allowed| allowed.contains(ty))
    }
}

/// `path` split as (root, the part below it) for the first of `roots` it
/// lies strictly beneath (compared by components). `None`: beneath none.
pub fn split_beneath<'a>(roots: &[PathBuf], path: &'a Path) -> Option<(PathBuf, &'a Path)> {
    roots.iter().find_map(|root| {
        path.strip_prefix(root)
            .ok()
            .filter(|rest| !rest.as_os_str().is_empty())
            .map(|rest| (root.clone(), rest))
    })
}

/// `roots` for a message.
pub fn list(roots: &[PathBuf]) -> String {
    if roots.is_empty() {
        return "none".into();
    }
    roots
        .iter()
        .map(|r| r.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Bounds, Refused> {
        Bounds::parse(&FoldedObject::parse(s.as_bytes(), "c").unwrap())
    }

    #[test]
    fn defaults_and_keys() {
        let b = parse("{}").unwrap();
        assert_eq!(b, Bounds::default());
        assert!(b.nad_may_name(&PluginType::parse("anything", "t").unwrap()));
        let b = parse(r#"{"storeRoots":["/data/cni"],"kubeconfigAllowlist":["/etc/wa.kubeconfig"],"nadPluginTypes":["macvlan","static"]}"#).unwrap();
        assert_eq!(b.store_roots, [PathBuf::from("/data/cni")]);
        assert_eq!(
            b.kubeconfig_allowlist,
            [PathBuf::from("/etc/wa.kubeconfig")]
        );
        assert!(b.nad_may_name(&PluginType::parse("static", "t").unwrap()));
        assert!(!b.nad_may_name(&PluginType::parse("bridge", "t").unwrap()));
        for (bad, key) in [
            (r#"{"storeRoots":["relative"]}"#, "storeRoots"),
            (r#"{"storeRoots":["/var/lib/../../etc"]}"#, "storeRoots"),
            (r#"{"configFileRoots":["/"]}"#, "configFileRoots"),
            (r#"{"kubeconfigAllowlist":"/x"}"#, "kubeconfigAllowlist"),
            (r#"{"nadPluginTypes":["../sh"]}"#, "nadPluginTypes"),
        ] {
            assert_eq!(parse(bad).unwrap_err().key, key, "{bad}");
        }
    }

    #[test]
    fn beneath_a_root_or_the_root_file_itself() {
        let roots = [
            PathBuf::from("/var/lib/cni"),
            PathBuf::from("/etc/wa.kubeconfig"),
        ];
        let s =
            |p: &str| split_beneath(&roots, Path::new(p)).map(|(r, rel)| (r, rel.to_path_buf()));
        assert_eq!(
            s("/var/lib/cni/networks"),
            Some((PathBuf::from("/var/lib/cni"), PathBuf::from("networks")))
        );
        assert_eq!(
            s("/etc/wa.kubeconfig"),
            None,
            "an exact file is no root to be beneath"
        );
        assert_eq!(s("/var/lib/cni"), None, "the root itself is no store");
        assert_eq!(
            s("/var/lib/cnix/a"),
            None,
            "components, not string prefixes"
        );
        assert_eq!(s("/etc/passwd"), None);
    }
}
