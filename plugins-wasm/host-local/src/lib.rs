//! host-local IPAM as a sandboxed component: the reference plugin's config,
//! allocation order and on-disk format, with its state in the host's store
//! (`<dataDir>/<network>/`, one file per IP holding `<id>\r\n<ifname>`).

mod alloc;
mod config;

use multus_plugin_sdk::{
    code, error, store, Attachment, CniError, CniResult, IpConfig, Plugin, Request,
};

use alloc::{Allocator, Reservations};
use config::IpamConf;

struct HostLocal;

impl Plugin for HostLocal {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let conf = IpamConf::load(&req)?;
        let txn = store::open()?;
        let mut res = Reservations::new(&txn);
        let mut requested = conf.requested.clone();
        let mut ips = Vec::new();
        for (idx, set) in conf.ranges.iter().enumerate() {
            let want = requested
                .iter()
                .position(|ip| set.iter().any(|r| r.contains(*ip)))
                .map(|i| requested.remove(i));
            let got = Allocator { set, range_id: idx }.get(
                &mut res,
                &req.container_id,
                &req.ifname,
                want,
            );
            match got {
                Ok((ip, gw, prefix)) => ips.push(IpConfig {
                    address: format!("{ip}/{prefix}"),
                    gateway: Some(gw.to_string()),
                    interface: None,
                }),
                Err(msg) => {
                    // Release what this call took (as the reference does);
                    // a failure on the first range set took nothing.
                    if !ips.is_empty() {
                        res.release_by_id(&req.container_id, &req.ifname)?;
                    }
                    return Err(error(
                        code::INTERNAL,
                        format!("failed to allocate for range {idx}: {msg}"),
                    ));
                }
            }
        }
        if !requested.is_empty() {
            res.release_by_id(&req.container_id, &req.ifname)?;
            let list: Vec<String> = requested.iter().map(|i| i.to_string()).collect();
            return Err(error(
                code::INTERNAL,
                format!("failed to allocate all requested IPs: {}", list.join(" ")),
            ));
        }
        Ok(CniResult {
            interfaces: Vec::new(),
            ips,
            routes: conf.routes.iter().map(Into::into).collect(),
            dns: None,
        })
    }

    fn del(req: Request) -> Result<(), CniError> {
        IpamConf::load(&req)?;
        let txn = store::open()?;
        Reservations::new(&txn).release_by_id(&req.container_id, &req.ifname)?;
        Ok(())
    }

    fn check(req: Request) -> Result<(), CniError> {
        IpamConf::load(&req)?;
        let txn = store::open()?;
        if Reservations::new(&txn)
            .get_by_id(&req.container_id, &req.ifname)?
            .is_empty()
        {
            return Err(error(
                code::INTERNAL,
                format!(
                    "host-local: Failed to find address added by container {}",
                    req.container_id
                ),
            ));
        }
        Ok(())
    }

    fn status(req: Request) -> Result<(), CniError> {
        IpamConf::load(&req)?;
        store::open().map(drop)
    }

    fn gc(req: Request, valid: Vec<Attachment>) -> Result<(), CniError> {
        IpamConf::load(&req)?;
        let txn = store::open()?;
        Reservations::new(&txn).release_unless(&valid)?;
        Ok(())
    }
}

multus_plugin_sdk::export!(HostLocal);
