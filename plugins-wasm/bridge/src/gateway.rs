//! The reference bridge's `calcGateways`: every IP on the pod interface
//! (index 2), a gateway computed for gateway bridges (the subnet's first
//! address), a default route per family for default-gateway bridges, and
//! the addresses the bridge itself must carry.

use multus_plugin_sdk::ip::{next, Cidr};
use multus_plugin_sdk::{invalid, CniError, CniResult, Route};

/// The gateway addresses the bridge gets, in CIDR form with the pod
/// address's prefix, per family.
#[derive(Default)]
pub struct Gateways {
    pub v4: Vec<Cidr>,
    pub v6: Vec<Cidr>,
}

fn is_default(dst: &str, v4: bool) -> bool {
    Cidr::parse(dst).is_ok_and(|c| c.prefix == 0 && c.addr.is_ipv4() == v4)
}

pub fn apply(r: &mut CniResult, is_gateway: bool, default_gw: bool) -> Result<Gateways, CniError> {
    let mut gws = Gateways::default();
    let mut default_found = [false, false];
    for i in 0..r.ips.len() {
        let addr = Cidr::parse(&r.ips[i].address).map_err(invalid)?;
        let v4 = addr.addr.is_ipv4();
        let ip = &mut r.ips[i];
        ip.interface = Some(2);
        if ip.gateway.is_none() && is_gateway {
            ip.gateway = Some(next(addr.network()).to_string());
        }
        let gateway = ip.gateway.clone();
        if default_gw {
            let found = &mut default_found[usize::from(!v4)];
            *found = *found
                || r.routes
                    .iter()
                    .any(|rt| rt.gw.is_some() && is_default(&rt.dst, v4));
            if !*found {
                r.routes.push(Route {
                    dst: if v4 { "0.0.0.0/0" } else { "::/0" }.into(),
                    gw: gateway.clone(),
                    mtu: None,
                    advmss: None,
                    priority: None,
                    table: None,
                    scope: None,
                });
                *found = true;
            }
        }
        if is_gateway {
            let gw = gateway.as_deref().unwrap_or_default();
            let gw = Cidr {
                addr: multus_plugin_sdk::ip::parse_ip(gw).map_err(invalid)?,
                prefix: addr.prefix,
            };
            if v4 {
                gws.v4.push(gw);
            } else {
                gws.v6.push(gw);
            }
        }
    }
    Ok(gws)
}
