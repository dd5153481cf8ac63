//! ADD: plan every attachment, write the cache, run the networks in order,
//! move the default route, write network-status; any failure rolls back.

use std::path::Path;

use serde_json::Value;

use crate::cache::{self, CacheFile};
use crate::cni::result;
use crate::cni::{CniError, Code, Command};
use crate::delegate::chain;
use crate::k8s::devices;
use crate::k8s::{status, PodContext};
use crate::{default_route, readiness};

use super::pod_writes::PodWrites;
use super::{parse_result, DeviceIds, Invocation, Planned};

impl Invocation<'_> {
    /// ADD every attachment in order; on any failure, DEL what was added (in
    /// reverse, the failing one included) and leave no cache behind.
    pub fn add(&self) -> Result<Value, CniError> {
        if let Some(f) = &self.conf.readiness_indicator_file {
            readiness::wait(f, readiness::WAIT)?;
        }
        let cni_dir = &self.conf.cni_dir;
        if let Some(stale) = cache::read(cni_dir, &self.env.container_id, &self.env.ifname)? {
            // A previous ADD died half-way (the runtime must DEL before a new
            // ADD): undo what it recorded instead of leaking it.
            tracing::warn!(pod = %self.pod(), "found the cache of an earlier ADD; deleting its attachments first");
            self.del_cached(stale)?;
        }
        // The pod and its networks are resolved before anything is created:
        // an API or annotation problem leaves no state behind.
        let ctx = PodContext::connect(self.cluster, self.conf, self.env)?;
        let planned = self.plan(ctx.as_ref(), DeviceIds::Allocate)?;
        let mut file = self.new_cache(planned.iter().map(|p| p.cached.clone()).collect());
        cache::write(cni_dir, &file)?;
        let path = self.search_path();
        for (i, p) in planned.iter().enumerate() {
            let target = self.target(&p.cached, &path, &self.env.netns);
            let outcome =
                devices::seed_info_file(p.device_info_source.as_deref(), &p.cached.capability_args)
                    .and_then(|()| {
                        self.run_logged(Command::Add, &p.cached, || {
                            chain::add(self.runner, &p.net, &target)
                        })
                    });
            match outcome {
                Ok(r) => file.delegates[i].result = Some(r),
                Err(e) => return Err(self.rollback(&planned, &file, i, e)),
            }
        }
        let last = planned.len() - 1;
        if let Err(e) = self.move_default_route(&planned, &mut file) {
            return Err(self.rollback(&planned, &file, last, e));
        }
        file.complete = true;
        if let Err(e) = cache::write(cni_dir, &file) {
            return Err(self.rollback(&planned, &file, last, e));
        }
        if let Some(ctx) = ctx {
            let writes = match self.pod_writes(ctx, &planned, &file) {
                Ok(w) => w,
                Err(e) => return Err(self.rollback(&planned, &file, last, e)),
            };
            match self.after_result {
                Some(after) => after.push(Box::new(move || writes.finish_late())),
                None => {
                    if let Err(e) = writes.write() {
                        if self.conf.kube.network_status_required {
                            return Err(self.rollback(&planned, &file, last, e));
                        }
                        tracing::warn!(pod = %self.pod(), error = %e, "network-status not written (networkStatusRequired is false)");
                    }
                }
            }
        }
        let master = &planned[0];
        let raw = file.delegates[0]
            .result
            .as_ref()
            .expect("every delegate has a result");
        result::convert(raw, &master.net.cni_version, &self.conf.cni_version).map_err(|e| {
            e.context(format!(
                "converting the result of network {:?}",
                master.net.name
            ))
        })
    }

    /// Applies a selection's `default-route` in the pod and in the cached
    /// results (which DEL and network-status read).
    fn move_default_route(
        &self,
        planned: &[Planned],
        file: &mut CacheFile,
    ) -> Result<(), CniError> {
        if planned.iter().all(|p| p.default_route.is_none()) {
            return Ok(());
        }
        let mut results = planned
            .iter()
            .zip(&file.delegates)
            .map(|(p, d)| parse_result(p, d))
            .collect::<Result<Vec<_>, _>>()?;
        let timeout = std::time::Duration::from_secs(5);
        let pod = multus_host_functions::netns::PodNetns::open(Path::new(&self.env.netns), timeout)
            .map_err(|e| {
                CniError::new(
                    Code::Internal,
                    format!("default-route: pod netns {}: {e}", self.env.netns),
                )
            })?;
        let mut kernel = multus_host_functions::netlink::Kernel {
            pod: Some(pod),
            host: None,
            timeout,
        };
        let mut attachments: Vec<default_route::Attachment> = planned
            .iter()
            .zip(results.iter_mut())
            .map(|(p, r)| default_route::Attachment {
                ifname: &p.cached.ifname,
                request: p.default_route.as_deref(),
                result: r,
            })
            .collect();
        default_route::apply(&mut kernel, &mut attachments)?;
        for ((p, d), r) in planned.iter().zip(file.delegates.iter_mut()).zip(results) {
            d.result = Some(r.to_value(&p.net.cni_version));
        }
        Ok(())
    }

    /// One network-status entry per sandbox interface of every attachment
    /// (none for pods in `systemNamespaces`), and one `AddedInterface`
    /// event per attachment that reported interfaces or addresses.
    fn pod_writes(
        &self,
        ctx: PodContext,
        planned: &[Planned],
        file: &CacheFile,
    ) -> Result<PodWrites, CniError> {
        let mut entries = Vec::new();
        let mut added = Vec::new();
        for (i, (p, d)) in planned.iter().zip(&file.delegates).enumerate() {
            let r = parse_result(p, d)?;
            let info = devices::read_info_file(&d.capability_args);
            entries.extend(status::entries(&r, &p.status_name, &d.ifname, i == 0, info));
            if !r.interfaces.is_empty() || !r.ips.is_empty() {
                let ips = r.ips.iter().map(|ip| ip.address.to_string()).collect();
                added.push((d.ifname.clone(), ips, p.status_name.clone()));
            }
        }
        let status = (!self.conf.system_namespaces.contains(&ctx.pod_ref.namespace)).then(|| {
            (
                self.conf.kube.network_status_annotation.clone(),
                status::render(&entries),
            )
        });
        Ok(PodWrites {
            events: PodWrites::added_events(&ctx, &added),
            ctx,
            status,
        })
    }

    fn rollback(
        &self,
        planned: &[Planned],
        file: &CacheFile,
        failed: usize,
        err: CniError,
    ) -> CniError {
        let path = self.search_path();
        let mut leftovers = Vec::new();
        for i in (0..=failed).rev() {
            let (p, d) = (&planned[i], &file.delegates[i]);
            let target = self.target(d, &path, &self.env.netns);
            let del = self.run_logged(Command::Del, d, || {
                chain::del(self.runner, &p.net, &target, d.result.as_ref())
            });
            // The failed delegate's DEL only sweeps up after it (its plugin
            // may not even exist); delegates that succeeded hold resources,
            // and if they cannot be deleted the cache stays for the runtime.
            match del {
                Err(e) if d.result.is_some() => leftovers.push(e.msg),
                _ => devices::remove_info_file(&d.capability_args),
            }
        }
        if leftovers.is_empty() {
            if let Err(e) = cache::remove(&self.conf.cni_dir, &self.env.container_id) {
                leftovers.push(e.msg);
            }
        }
        let err = err.context(format!("[{}]", self.pod()));
        if leftovers.is_empty() {
            err
        } else {
            // The cache stays so the runtime's DEL can retry the cleanup.
            err.with_details(format!("rollback incomplete: {}", leftovers.join("; ")))
        }
    }
}
