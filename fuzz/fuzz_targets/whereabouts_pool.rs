//! whereabouts IPPool and reservation objects as `multusctl ipam
//! reconcile` reads them from the API.
#![no_main]
use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let live: BTreeSet<String> = ["default/web".to_string()].into();
    let _ = multusctl::reconcile::free_orphans(&value, &live);
    if let Some(list) = value.as_array() {
        let _ = multusctl::reconcile::orphan_reservations(list, &live);
    }
});
