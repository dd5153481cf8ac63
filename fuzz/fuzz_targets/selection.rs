//! The pod's selection annotation, in both forms (comma list and JSON).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    let _ = multus::k8s::selection::parse(data, "default");
});
