//! A config's `dataDir` as a wasm plugin's store directory.

use std::path::Path;

use multus_host_functions::store::StoreDir;
use multus_host_functions::text::quoted;

use super::bounds::{list, split_beneath};
use super::{Bounds, Refused};

/// `data_dir` (from config key `key`, or the host's default) as a store
/// directory beneath one of the admin's `storeRoots`.
pub fn store_dir(bounds: &Bounds, data_dir: &Path, key: &str) -> Result<StoreDir, Refused> {
    let shown = data_dir.display().to_string();
    let refused = |why: String| Refused::new(key, format!("{}: {why}", quoted(&shown)));
    if !data_dir.is_absolute() {
        return Err(refused("not an absolute path".into()));
    }
    let Some((root, rel)) = split_beneath(&bounds.store_roots, data_dir) else {
        return Err(refused(format!(
            "not beneath a storeRoots entry ({}); the admin sets storeRoots in the multus conf",
            list(&bounds.store_roots)
        )));
    };
    let dir = StoreDir::beneath(&root, rel).map_err(refused)?;
    // Compared as the kernel resolves them, so `/var/run` and `/run`, or a
    // symlinked root, do not hide an overlap.
    let store = canonical(&dir.path());
    if let Some(r) = bounds
        .reserved
        .iter()
        .find(|r| store.starts_with(canonical(r)))
    {
        return Err(refused(format!(
            "lies in multus's own {} (its DEL cache, artifacts or modules), which is no store",
            r.display()
        )));
    }
    Ok(dir)
}

/// `p` with its longest existing prefix resolved.
fn canonical(p: &Path) -> std::path::PathBuf {
    match (p.canonicalize(), p.parent(), p.file_name()) {
        (Ok(c), _, _) => c,
        (Err(_), Some(parent), Some(name)) => canonical(parent).join(name),
        _ => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn only_beneath_the_roots() {
        let b = Bounds::default();
        let ok = store_dir(&b, Path::new("/var/lib/cni/networks/n"), "ipam.dataDir").unwrap();
        assert_eq!(ok.path(), PathBuf::from("/var/lib/cni/networks/n"));
        assert_eq!(
            store_dir(&b, Path::new("/run/cni/tuning"), "dataDir")
                .unwrap()
                .path(),
            PathBuf::from("/run/cni/tuning")
        );
        for bad in [
            "/etc",
            "/etc/ssh",
            "/var/lib/cni/networks/../../etc",
            "relative/x",
            "/var/lib/cni/networks",
            "/var/lib/cni/networksx",
            "/var/lib/cni/multus",
            "/var/lib/cni/results",
        ] {
            let e = store_dir(&b, Path::new(bad), "ipam.dataDir").unwrap_err();
            assert_eq!(e.key, "ipam.dataDir", "{bad}");
            assert!(e.msg.contains(bad), "{e}");
        }
    }

    /// Roots an admin widened to all of a state dir still leave multus's
    /// own directories out, however they are spelled.
    #[test]
    fn never_multus_own_directories() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        std::fs::create_dir_all(state.join("multus/wasm-cache")).unwrap();
        std::os::unix::fs::symlink(&state, d.path().join("alias")).unwrap();
        let b = Bounds {
            store_roots: vec![d.path().join("alias")],
            reserved: vec![state.join("multus"), state.join("multus/wasm-cache")],
            ..Bounds::default()
        };
        for bad in [
            "alias/multus",
            "alias/multus/wasm-cache",
            "alias/multus/x/y",
        ] {
            let e = store_dir(&b, &d.path().join(bad), "dataDir").unwrap_err();
            assert!(e.msg.contains("multus's own"), "{bad}: {e}");
        }
        assert!(store_dir(&b, &d.path().join("alias/networks"), "dataDir").is_ok());
    }
}
