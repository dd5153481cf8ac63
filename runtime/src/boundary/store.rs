//! A config's `dataDir` as a wasm plugin's store directory.

use std::path::Path;

use multus_host_functions::store::StoreDir;

use super::bounds::{list, split_beneath};
use super::{Bounds, Refused};

/// `data_dir` (from config key `key`, or the host's default) as a store
/// directory beneath one of the admin's `storeRoots`.
pub fn store_dir(bounds: &Bounds, data_dir: &Path, key: &str) -> Result<StoreDir, Refused> {
    let refused = |why: String| Refused::new(key, format!("{}: {why}", data_dir.display()));
    if !data_dir.is_absolute() {
        return Err(refused("not an absolute path".into()));
    }
    let Some((root, rel)) = split_beneath(&bounds.store_roots, data_dir) else {
        return Err(refused(format!(
            "not beneath a storeRoots entry ({}); the admin sets storeRoots in the multus conf",
            list(&bounds.store_roots)
        )));
    };
    StoreDir::beneath(&root, rel).map_err(refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn only_beneath_the_roots() {
        let b = Bounds::default();
        let ok = store_dir(&b, Path::new("/var/lib/cni/networks"), "ipam.dataDir").unwrap();
        assert_eq!(ok.path(), PathBuf::from("/var/lib/cni/networks"));
        assert_eq!(
            store_dir(&b, Path::new("/run/cni/tuning"), "dataDir")
                .unwrap()
                .path(),
            PathBuf::from("/run/cni/tuning")
        );
        for bad in [
            "/etc",
            "/etc/ssh",
            "/var/lib/cni/../../etc",
            "relative/x",
            "/var/lib/cni",
            "/var/lib/cnix",
        ] {
            let e = store_dir(&b, Path::new(bad), "ipam.dataDir").unwrap_err();
            assert_eq!(e.key, "ipam.dataDir", "{bad}");
            assert!(e.msg.contains(bad), "{e}");
        }
    }
}
