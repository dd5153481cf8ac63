//! The multus conf (the master file, the shim's conf): any bytes parse to
//! a conf or a CNI error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = multus::config::multus::MultusConf::parse(data);
});
