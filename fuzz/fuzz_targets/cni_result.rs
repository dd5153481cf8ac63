//! CNI results of every version: parsed, printed in every version, and
//! rendered as the network-status annotation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use multus::cni::result::CniResult;
use multus::k8s::status;

const VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for from in VERSIONS {
        let Ok(r) = CniResult::parse(&value, from) else {
            continue;
        };
        for to in VERSIONS {
            let _ = r.to_value(to);
            let _ = multus::cni::result::convert(&value, from, to);
        }
        let entries = status::entries(&r, "ns/net", "net1", true, None);
        let _ = status::render(&entries);
    }
});
