//! What a plugin hands back across the WIT boundary: a result (turned into
//! the CNI result multus prints and caches) and a mapper's selections
//! (validated like the annotation). Any values, never a panic.
#![no_main]
use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use multus_host_functions::bindings::mapper::exports::multus::plugin::mapper as mapper_wit;
use multus_host_functions::bindings::multus::plugin::types as wit;

fn opt_s(u: &mut Unstructured) -> Result<Option<String>> {
    Option::<String>::arbitrary(u)
}

fn result(u: &mut Unstructured) -> Result<wit::CniResult> {
    let mut r = wit::CniResult {
        interfaces: vec![],
        ips: vec![],
        routes: vec![],
        dns: None,
    };
    for _ in 0..u.int_in_range(0..=4)? {
        r.interfaces.push(wit::Interface {
            name: String::arbitrary(u)?,
            mac: opt_s(u)?,
            mtu: Option::<u32>::arbitrary(u)?,
            sandbox: bool::arbitrary(u)?,
        });
    }
    for _ in 0..u.int_in_range(0..=4)? {
        r.ips.push(wit::IpConfig {
            address: String::arbitrary(u)?,
            gateway: opt_s(u)?,
            interface: Option::<u32>::arbitrary(u)?,
        });
    }
    for _ in 0..u.int_in_range(0..=4)? {
        r.routes.push(wit::Route {
            dst: String::arbitrary(u)?,
            gw: opt_s(u)?,
            mtu: Option::<u32>::arbitrary(u)?,
            advmss: Option::<u32>::arbitrary(u)?,
            priority: Option::<u32>::arbitrary(u)?,
            table: Option::<u32>::arbitrary(u)?,
            scope: Option::<u32>::arbitrary(u)?,
        });
    }
    if bool::arbitrary(u)? {
        r.dns = Some(wit::Dns {
            nameservers: Vec::<String>::arbitrary(u)?,
            domain: opt_s(u)?,
            search: Vec::<String>::arbitrary(u)?,
            options: Vec::<String>::arbitrary(u)?,
        });
    }
    Ok(r)
}

fn selection(u: &mut Unstructured) -> Result<mapper_wit::NetworkSelection> {
    Ok(mapper_wit::NetworkSelection {
        name: String::arbitrary(u)?,
        namespace: opt_s(u)?,
        interface: opt_s(u)?,
        ips: Vec::<String>::arbitrary(u)?,
        mac: opt_s(u)?,
        default_route: Option::<Vec<String>>::arbitrary(u)?,
        cni_args: opt_s(u)?,
        port_mappings: opt_s(u)?,
        bandwidth: opt_s(u)?,
        infiniband_guid: opt_s(u)?,
        ipam_claim_reference: opt_s(u)?,
        device_id: opt_s(u)?,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if let Ok(r) = result(&mut u) {
        if let Ok(cni) = multus::delegate::wasm::convert::result(&r, "/run/netns/fuzz") {
            let _ = cni.to_value("1.1.0");
            let _ = multus::delegate::wasm::convert::to_wit(&cni);
        }
    }
    while let Ok(s) = selection(&mut u) {
        let _ = multus::k8s::mapper::from_wit(s, "default");
        if u.is_empty() {
            break;
        }
    }
});
