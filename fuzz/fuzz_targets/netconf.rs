//! Delegate confs and conflists (files, NAD spec.config, cache entries).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = multus::config::NetworkConfig::from_bytes(data, "fuzz");
});
