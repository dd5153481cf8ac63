//! The cache file DEL reads: ours, Go multus's scratch list, or anything a
//! crash or a disk left there.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temp dir"))
        .path()
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(multus::cache::path(dir(), "fuzz"), data).expect("writes");
    if let Ok(Some(loaded)) = multus::cache::read(dir(), "fuzz", "eth0") {
        for d in &loaded.file().delegates {
            let _ = d.network(std::path::Path::new("fuzz"));
        }
    }
});
